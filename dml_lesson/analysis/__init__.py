"""The fifth layer: questions asked of the algorithms. When distributing pays (``costmodel``, calibrated on this
machine by ``calibration``), choosing the learning rate on the cluster (``tuning``), imbalanced classes
(``imbalance``) and scikit-learn estimators that train on the cluster (``estimators``). Imports from the layers
before it.
"""
