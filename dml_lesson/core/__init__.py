"""The first layer: what needs no cluster. Models, data, layouts, single-machine optimizers, codecs, the
training record, input checks and the settings every layer shares.

Modules: ``checks`` (input checks), ``settings`` (timeouts, poll intervals, restart advice), ``models`` (loss and
gradient of one block), ``data`` (datasets made block by block from a seed), ``layout`` (which rows each node
holds), ``optim`` (gradient descent, SGD, the mini-batch sampler), ``codecs`` (gradient compression),
``result`` (``TrainingResult``, the one record every run returns). Imports nothing from the other layers.
"""
