"""The third layer: the synchronous parameter server, the one training loop of the course.

Modules: ``node`` (what a node computes in a step: the compute kernel, pure), ``transport`` (how the server
reaches its nodes: actors or tasks, and recovery from lost workers), ``setup`` (the checks and placement every
run starts with), ``server`` (the loop: pull, local gradients, push, combine, update; ``distributed_gd`` and
``distributed_sgd``), ``ring`` (ring all-reduce, the server-free topology of the same loop), ``comm`` and
``bytecount`` (the bytes a message takes, and the bytes Dask really moved). Imports from ``core`` and ``cluster``.
"""
