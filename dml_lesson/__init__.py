"""dml_lesson: the package behind the course "distributed machine learning, from gradient descent to
distributed SGD on a real Dask cluster".

Notebooks import it as ``import dml_lesson as dml`` and call the names below: the course's contract (data,
single-machine optimizers, the cluster, the synchronous parameter server and its variants). Everything else
lives in the layers, each a subpackage that imports only from the layers before it (see ARCHITECTURE.md)::

    core  <-  cluster  <-  ps  <-  variants  <-  analysis  <-  teaching

and notebooks import a layer's modules as ``from dml_lesson.teaching import plots, widgets``.
"""

from . import analysis, cluster, core, ps, teaching, variants
from .cluster.client import close_client, dashboard_link, get_client, worker_addresses, worker_table
from .cluster.memory import PeakMemory
from .cluster.shards import gather_rows, place_shards
from .core.data import lineage, make_classification, make_regression, to_numpy
from .core.layout import Layout, assign_rows
from .core.models import LINEAR, lipschitz_constant, mse, mse_gradient
from .core.optim import gradient_descent, minibatch_indices, sgd, step_decay
from .core.result import TrainingResult
from .ps.comm import formula_nbytes, serialized_nbytes
from .ps.node import NodeConfig, node_step
from .ps.server import combine, distributed_gd, distributed_sgd
from .variants.async_server import async_sgd
from .variants.local_sgd import local_sgd

# Every process that imports the package, the workers that run its tasks included, drops the one Dask error log
# that a Stop or a killed peer causes and Dask recovers from (see cluster.startstop.ClosedTransfer).
cluster.startstop.add_filter_once("distributed.worker", cluster.startstop.ClosedTransfer())

__version__ = "0.1.0"

__all__ = [
    # data and models (notebooks 00-02)
    "make_regression", "make_classification", "to_numpy", "lineage", "LINEAR", "mse", "mse_gradient",
    "lipschitz_constant",
    # one machine (notebooks 01, 02)
    "gradient_descent", "sgd", "minibatch_indices", "step_decay", "TrainingResult",
    # the cluster (notebooks 00, 03)
    "get_client", "close_client", "dashboard_link", "worker_addresses", "worker_table", "PeakMemory",
    "Layout", "assign_rows", "place_shards", "gather_rows",
    # the parameter server (notebooks 04-08)
    "NodeConfig", "node_step", "combine", "distributed_gd", "distributed_sgd", "formula_nbytes",
    "serialized_nbytes", "async_sgd", "local_sgd",
    # the layers
    "core", "cluster", "ps", "variants", "analysis", "teaching",
]
