"""The course's sliders: each notebook's :class:`~dml_lesson.teaching.widgets.explorer.Explorer`, importable from here.

``from dml_lesson.teaching import widgets`` then ``widgets.lr_explorer(...)``.
"""

from .asynchronous import IID_LABELS, LOCAL_STEPS, local_steps_explorer, staleness_explorer
from .explorer import STOPPED, Explorer, in_kernel
from .privacy import dp_explorer
from .scaling import MAX_FRAME, presets, scaling_explorer, scaling_status, topology_explorer
from .training import (
    aggregate_explorer,
    codec_explorer,
    dsgd_explorer,
    layout_explorer,
    lr_explorer,
    sgd_explorer,
    straggler_explorer,
)

__all__ = [
    "Explorer",
    "IID_LABELS",
    "LOCAL_STEPS",
    "MAX_FRAME",
    "STOPPED",
    "aggregate_explorer",
    "codec_explorer",
    "dp_explorer",
    "dsgd_explorer",
    "in_kernel",
    "layout_explorer",
    "local_steps_explorer",
    "lr_explorer",
    "presets",
    "scaling_explorer",
    "scaling_status",
    "sgd_explorer",
    "staleness_explorer",
    "straggler_explorer",
    "topology_explorer",
]
