"""dml_lesson: the package behind the course "distributed machine learning, from gradient descent to
distributed SGD on a real Dask cluster".

Notebooks import it as ``import dml_lesson as dml`` and call the names below.
"""

from .cluster.client import (
    close_client,
    dashboard_link,
    get_client,
    restore_workers,
    worker_addresses,
    worker_table,
)
from .cluster.memory import PeakMemory
from .cluster.shards import gather_rows, place_shards
from .cluster.startstop import ClosedTransfer, add_filter_once
from .core.data import Dataset, lineage, make_classification, make_regression, to_numpy
from .core.layout import LAYOUTS, Layout, assign_rows, node_of_rows
from .core.models import LINEAR, LOGISTIC, Model, lipschitz_constant, mse, mse_gradient, sigmoid
from .core.optim import gradient_descent, make_schedule, minibatch_indices, sgd, step_decay
from .core.result import TrainingResult
from .ps.comm import formula_nbytes, serialized_nbytes
from .ps.node import NodeConfig, NodeReply, node_step
from .ps.server import combine, distributed_gd, distributed_sgd
from .variants.async_server import AsyncResult, async_sgd
from .variants.dp import dp_sgd, privacy_budget
from .variants.local_sgd import local_sgd

# Every process that imports the package, the workers that run its tasks included, drops the one Dask error log
# that a Stop or a killed peer causes and Dask recovers from (see startstop.ClosedTransfer).
add_filter_once("distributed.worker", ClosedTransfer())

__version__ = "0.1.0"

__all__ = [
    "AsyncResult", "async_sgd", "dp_sgd", "local_sgd", "privacy_budget",
    "NodeConfig", "NodeReply", "PeakMemory", "gather_rows", "lineage", "node_step", "place_shards",
    "LAYOUTS", "LINEAR", "LOGISTIC", "Dataset", "Layout", "Model", "TrainingResult", "assign_rows",
    "close_client", "combine", "dashboard_link", "distributed_gd", "distributed_sgd", "formula_nbytes",
    "get_client", "gradient_descent", "lipschitz_constant", "make_classification", "make_regression",
    "make_schedule", "minibatch_indices", "mse", "mse_gradient", "node_of_rows", "restore_workers", "serialized_nbytes",
    "sgd", "sigmoid", "step_decay", "to_numpy", "worker_addresses", "worker_table",
]
