"""The fourth layer: the parameter server changed in one way each. Asynchronous and stale-synchronous SGD
(``async_server``, its actor in ``async_actor``), local SGD (``local_sgd``, a setting of the synchronous loop),
differential privacy (``dp``) and secure aggregation (``secagg``). Imports from ``core``, ``cluster`` and ``ps``.
"""
