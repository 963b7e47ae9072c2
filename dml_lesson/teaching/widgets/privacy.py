"""Notebook 10's slider: the DP-SGD noise multiplier (and clipping norm) against accuracy and epsilon.

Built on :class:`~dml_lesson.teaching.widgets.training.Explorer`: each release reruns DP-SGD on the cluster and redraws
:func:`~dml_lesson.teaching.plots.privacy.dp_figure`, the same figure the notebook draws statically above the widget.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import ipywidgets as w
import numpy as np
from matplotlib.figure import Figure

from ...cluster.client import get_client
from ...core.result import TrainingResult
from ...ps.server import distributed_sgd
from ...variants.dp import dp_sgd, privacy_budget
from .. import plots
from .training import Explorer

CURVE_SIGMAS = (0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0)


def dp_runs(X: Any, y: Any, noise_multiplier: float = 1.0, clip_norm: float = 1.0, *, n_nodes: int = 2,
            lr: float = 0.1, batch_size: int = 20, n_steps: int = 100, seed: int = 0, client: Any = None,
            baseline: TrainingResult | None = None) -> dict[str, TrainingResult]:
    """Non-private distributed SGD and DP-SGD with the same data, batches and seed (notebook 10).

    ``baseline``: a non-private run already made with these settings (the widget reuses it).
    """
    kw = dict(n_nodes=n_nodes, lr=lr, batch_size=batch_size, n_steps=n_steps, seed=seed, client=client)
    return {
        "non-private SGD": baseline if baseline is not None else distributed_sgd(X, y, **kw),
        f"DP-SGD, σ = {noise_multiplier:g}, C = {clip_norm:g}": dp_sgd(
            X, y, noise_multiplier=noise_multiplier, clip_norm=clip_norm, **kw),
    }


@lru_cache(maxsize=64)
def _epsilon(sigma: float, n_steps: int, batch_size: int, shard_sizes: tuple[int, ...], delta: float,
             sampling: str) -> float:
    return privacy_budget(sigma, n_steps, batch_size, list(shard_sizes), delta, sampling)


def epsilon_curve(n_steps: int, batch_size: int, shard_sizes: list[int], delta: float = 1e-5,
                  sigmas: tuple[float, ...] = CURVE_SIGMAS) -> dict[str, np.ndarray]:
    """Epsilon for each noise multiplier in ``sigmas``, both ways (see :func:`~dml_lesson.variants.dp.privacy_budget`).

    Results are cached, so a slider that only changes sigma does not recompute the curve.
    """
    sizes = tuple(int(s) for s in shard_sizes)
    curve = {"sigma": np.array(sigmas, dtype=float)}
    for sampling in ("poisson", "no-amplification"):
        curve[sampling] = np.array([_epsilon(float(s), n_steps, batch_size, sizes, delta, sampling) for s in sigmas])
    return curve


def dp_status(runs: dict[str, TrainingResult], delta: float = 1e-5) -> str:
    """Final losses of both runs and the DP run's epsilon, both ways, in one line."""
    base, dp = runs.values()
    p = dp.params
    sigma, sizes = p["noise_multiplier"], tuple(p["shard_sizes"])
    eps = {s: _epsilon(sigma, dp.n_steps, p["batch_size"], sizes, delta, s) for s in ("poisson", "no-amplification")}
    if sigma == 0:
        privacy = "no noise: no privacy guarantee (ε = ∞)"
    else:
        privacy = (f"ε = {eps['poisson']:.3g} if sampling were Poisson, "
                   f"ε ≤ {eps['no-amplification']:.3g} proven for these shuffled batches (δ = {delta:g})")
    return (f"σ = {sigma:g}, C = {p['clip_norm']:g}: final loss {dp.losses[-1]:.4g} "
            f"(non-private {base.losses[-1]:.4g}); {privacy}")


def dp_explorer(X: Any, y: Any, noise_multiplier: float = 1.0, clip_norm: float = 1.0, *, n_nodes: int = 2,
                lr: float = 0.1, batch_size: int = 20, n_steps: int = 100, seed: int = 0, delta: float = 1e-5,
                client: Any = None) -> Explorer:
    """Notebook 10: noise-multiplier and clipping-norm sliders over DP-SGD, with epsilon on the right."""
    client = client or get_client()
    controls = {
        "noise_multiplier": w.FloatSlider(value=noise_multiplier, min=0.0, max=8.0, step=0.25,
                                          description="noise multiplier σ"),
        "clip_norm": w.FloatLogSlider(value=clip_norm, base=10, min=-1, max=1, step=0.1, description="clip norm C",
                                      readout_format=".2f"),
    }

    cache: dict[str, TrainingResult] = {}

    def step(v: dict[str, Any], into: Figure | None) -> tuple[Figure, str]:
        runs = dp_runs(X, y, v["noise_multiplier"], v["clip_norm"], n_nodes=n_nodes, lr=lr, batch_size=batch_size,
                       n_steps=n_steps, seed=seed, client=client, baseline=cache.get("baseline"))
        cache["baseline"] = runs["non-private SGD"]
        dp = list(runs.values())[1]
        curve = epsilon_curve(dp.n_steps, batch_size, dp.params["shard_sizes"], delta)
        return plots.dp_figure(runs, curve, v["noise_multiplier"], into=into), dp_status(runs, delta)

    return Explorer(controls, step, redraw_into=True)
