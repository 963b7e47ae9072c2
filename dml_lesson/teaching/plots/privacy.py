"""Figures of notebook 10: the DP-SGD noise/accuracy trade-off and the server's view under secure aggregation.

Same conventions as :mod:`dml_lesson.teaching.plots.training`: each function returns a new ``Figure`` (no pyplot
state), and the
widget in :mod:`dml_lesson.teaching.widgets.privacy` redraws the same function the notebook uses for its static figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ...core.result import TrainingResult
from .base import COLORS, log_scale, new_figure


def dp_figure(runs: dict[str, TrainingResult], curve: dict[str, np.ndarray], sigma: float | None = None,
              into: Figure | None = None, floor: float | None = None) -> Figure:
    """Left: training loss (MSE) per step of each run (e.g. non-private and DP-SGD), with the in-sample
    least-squares ``floor`` when given. Right: epsilon against the noise multiplier: as the Poisson-sampling
    accountant reports it and as the valid no-amplification bound, both for zero-out neighbours, and the bound
    for replace-one neighbours; ``sigma`` marked (notebook 10).

    ``curve`` holds ``"sigma"``, ``"poisson"``, ``"no-amplification"`` and ``"no-amplification, replace-one"``
    arrays (see :func:`~dml_lesson.teaching.experiments.epsilon_curve`). ``into``: as
    :func:`~dml_lesson.teaching.plots.base.new_figure`.
    """
    fig = new_figure(2, 1, width=10.0, height=4.2, into=into)
    fig.subplots_adjust(bottom=1.15 / 4.2)  # room below the right panel for its legend
    ax, ax_eps = fig.axes
    for i, (label, res) in enumerate(runs.items()):
        ax.plot(np.arange(len(res.losses)), res.losses, color=COLORS[i % len(COLORS)], lw=1.2,
                label=f"{label}: final {res.losses[-1]:.4g}")
    if floor is not None:
        ax.axhline(floor, color="0.4", lw=1, linestyle=":", label=f"least squares on these rows: {floor:.4g}")
    log_scale(ax, "y")
    ax.set(xlabel="step", ylabel="training loss (MSE)", title="the cost: training loss per step")
    ax.legend(fontsize=8, loc="upper right", framealpha=0.9)
    ax_eps.plot(curve["sigma"], curve["poisson"], color=COLORS[0], marker=".",
                label="Poisson (assumed), zero-out = add/remove")
    ax_eps.plot(curve["sigma"], curve["no-amplification"], color=COLORS[3], marker=".", linestyle="--",
                label="shuffled (proven), zero-out")
    ax_eps.plot(curve["sigma"], curve["no-amplification, replace-one"], color=COLORS[1], marker=".",
                linestyle="-.", label="shuffled (proven), replace-one")
    if sigma is not None and sigma > 0:
        ax_eps.axvline(sigma, color="k", lw=0.8, linestyle=":", label=f"σ = {sigma:g}")
    log_scale(ax_eps, "x")
    log_scale(ax_eps, "y")
    ax_eps.set(xlabel="noise multiplier σ", ylabel="ε (δ fixed)",
               title="privacy: ε after the run (smaller is more private)")
    ax_eps.set_xticks(curve["sigma"], [f"{s:g}" for s in curve["sigma"]])
    ax_eps.minorticks_off()
    values = np.concatenate([curve[k] for k in ("poisson", "no-amplification", "no-amplification, replace-one")])
    values = values[np.isfinite(values) & (values > 0)]
    if len(values):  # the axis ends just beyond the data; the legend sits below the panel
        ax_eps.set_ylim(float(values.min()) / 1.5, float(values.max()) * 1.5)
    ax_eps.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.42, -0.19), ncol=2, frameon=False,
                  handlelength=1.6, columnspacing=0.8)
    return fig


def secagg_figure(parts: list[np.ndarray], masked: list[np.ndarray], total: np.ndarray) -> Figure:
    """Three panels (notebook 10): each node's true gradient sum (what the server must not see), the masked
    vectors it does see (each entry scaled to [0, 1): uniform noise), and the decoded sum against the true one.
    """
    fig = new_figure(3, 1, width=11.0, height=3.4)
    ax_true, ax_seen, ax_sum = fig.axes
    d, k = len(total), len(parts)
    width = 0.8 / k
    entries = np.arange(d)
    for i, g in enumerate(parts):
        ax_true.bar(entries + (i - (k - 1) / 2) * width, g, width, color=COLORS[i % len(COLORS)], label=f"node {i}")
    ax_true.set(xlabel="gradient entry", ylabel="gradient sum", title="each node's gradient (private)")
    ax_true.legend(fontsize=7)
    for i, m in enumerate(masked):
        ax_seen.plot(entries + (i - (k - 1) / 2) * width, np.asarray(m, dtype=np.uint64) / 2.0**64, "o",
                     color=COLORS[i % len(COLORS)], label=f"node {i}")
    ax_seen.set(ylim=(0, 1.22), xlabel="gradient entry", ylabel="masked value / 2⁶⁴",
                title="what the server receives")
    ax_seen.set_yticks(np.linspace(0, 1, 6))
    ax_seen.legend(fontsize=7, ncol=min(k, 4), loc="upper center", handletextpad=0.1, columnspacing=0.6)
    true_sum = np.sum(parts, axis=0)
    ax_sum.bar(entries - 0.2, true_sum, 0.4, color="0.6", label="true sum (never sent)")
    ax_sum.bar(entries + 0.2, total, 0.4, color=COLORS[2], label="sum of masked vectors, decoded")
    err = float(np.max(np.abs(total - true_sum)))
    ax_sum.set(xlabel="gradient entry", ylabel="sum over nodes", title=f"the sum it learns (max error {err:.0e})")
    ax_sum.set_ylim(top=max(0.0, float(np.max(true_sum))) + 0.45 * float(np.ptp(true_sum)))
    ax_sum.legend(fontsize=7, loc="upper right")
    for ax in fig.axes:
        ax.set_xticks(entries)
    return fig


def clipping_figure(norms: Any, clip_norm: float) -> Figure:
    """Histogram of per-example gradient norms, on a log axis, with the clipping norm C marked (notebook 10)."""
    norms = np.asarray(norms, dtype=float)
    fig = new_figure(1, 1, width=6.5, height=3.0)
    ax = fig.axes[0]
    positive = norms[norms > 0]
    low, high = min(float(positive.min()), clip_norm) / 1.2, max(float(positive.max()), clip_norm) * 1.2
    ax.hist(positive, bins=np.geomspace(low, high, 41), color=COLORS[0])
    log_scale(ax, "x")
    ax.axvline(clip_norm, color=COLORS[3], lw=1.5, label=f"C = {clip_norm:g}: longer gradients are scaled to C")
    ax.set(xlabel="per-example gradient norm (log scale)", ylabel="rows", title="per-example gradient norms at w = 0")
    ax.legend(fontsize=8, loc="upper left")
    return fig
