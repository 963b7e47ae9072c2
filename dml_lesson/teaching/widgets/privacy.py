"""Notebook 10's slider: the DP-SGD noise multiplier (and clipping norm) against accuracy and epsilon.

Built on :class:`~dml_lesson.teaching.widgets.training.Explorer`: each release reruns DP-SGD on the cluster and redraws
:func:`~dml_lesson.teaching.plots.privacy.dp_figure`, the same figure the notebook draws statically above the widget.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
from matplotlib.figure import Figure

from ...cluster.client import get_client
from ...core.data import to_numpy
from ...core.models import least_squares_floor
from ...core.result import TrainingResult
from .. import plots
from ..experiments import dp_runs, dp_status, epsilon_curve
from .explorer import Explorer


def dp_explorer(X: Any, y: Any, noise_multiplier: float = 1.0, clip_norm: float = 1.0, *, n_nodes: int = 2,
                lr: float = 0.1, batch_size: int = 20, n_steps: int = 100, seed: int = 0, delta: float = 1e-5,
                client: Any = None) -> Explorer:
    """Notebook 10: noise-multiplier and clipping-norm sliders over DP-SGD, with epsilon on the right.

    The loss panel draws the in-sample floor (least squares on these rows), as the notebook's static figure does.
    """
    client = client or get_client()
    floor = least_squares_floor(*to_numpy(X, y))
    controls = {
        "noise_multiplier": w.FloatSlider(value=noise_multiplier, min=0.0, max=8.0, step=0.5,
                                          description="noise multiplier σ"),
        "clip_norm": w.FloatLogSlider(value=clip_norm, base=10, min=-1, max=1, step=0.25, description="clip norm C",
                                      readout_format=".2f"),
    }

    cache: dict[str, TrainingResult] = {}

    def step(v: dict[str, Any], into: Figure | None) -> tuple[Figure, str]:
        runs = dp_runs(X, y, v["noise_multiplier"], v["clip_norm"], n_nodes=n_nodes, lr=lr, batch_size=batch_size,
                       n_steps=n_steps, seed=seed, client=client, baseline=cache.get("baseline"))
        cache["baseline"] = runs["non-private SGD"]
        dp = list(runs.values())[1]
        curve = epsilon_curve(dp.n_steps, batch_size, dp.params["shard_sizes"], delta)
        return plots.dp_figure(runs, curve, v["noise_multiplier"], into=into, floor=floor), dp_status(runs, delta)

    return Explorer(controls, step, redraw_into=True)
