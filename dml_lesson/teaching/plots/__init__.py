"""The course's figures, one module per group of notebooks; every public figure function is importable from here.

``from dml_lesson.teaching import plots`` then ``plots.lr_figure(...)``: notebooks do not need to know which module
draws what.
"""

from .asynchronous import (
    compare_figure,
    local_figure,
    messages,
    plot_against_messages,
    plot_staleness,
    staleness_figure,
)
from .base import COLORS, DPI, PlainLogFormatter, log_scale, new_figure, recycle, to_png
from .privacy import clipping_figure, dp_figure, secagg_figure
from .scaling import N_MAX, busiest_link_figure, ring_bytes_figure, scaling_figure, topology_figure, topology_frames
from .training import (
    MIN_BAR_MS,
    aggregate_figure,
    bytes_figure,
    dsgd_figure,
    layout_figure,
    lr_figure,
    mse_grid,
    plot_contour,
    plot_losses,
    plot_trajectory,
    sgd_figure,
    task_stream_figure,
    timeline_figure,
)
from .tuning import remedies_figure, shard_classes_figure, trials_figure

__all__ = [
    "COLORS",
    "DPI",
    "MIN_BAR_MS",
    "N_MAX",
    "PlainLogFormatter",
    "aggregate_figure",
    "busiest_link_figure",
    "bytes_figure",
    "clipping_figure",
    "compare_figure",
    "dp_figure",
    "dsgd_figure",
    "layout_figure",
    "local_figure",
    "log_scale",
    "lr_figure",
    "messages",
    "mse_grid",
    "new_figure",
    "plot_against_messages",
    "plot_contour",
    "plot_losses",
    "plot_staleness",
    "plot_trajectory",
    "recycle",
    "remedies_figure",
    "ring_bytes_figure",
    "scaling_figure",
    "secagg_figure",
    "sgd_figure",
    "shard_classes_figure",
    "staleness_figure",
    "task_stream_figure",
    "timeline_figure",
    "to_png",
    "topology_figure",
    "topology_frames",
    "trials_figure",
]
