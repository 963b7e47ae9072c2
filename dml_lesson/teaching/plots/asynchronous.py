"""Figures of notebook 08: synchronous, asynchronous and local SGD side by side, and the staleness histogram.

Built like :mod:`dml_lesson.teaching.plots.training` (matplotlib's object API, fixed margins, one new ``Figure`` per
call) and from
the same records: :class:`~dml_lesson.core.result.TrainingResult` and its asynchronous form
:class:`~dml_lesson.variants.async_server.AsyncResult`. The explorers of
:mod:`dml_lesson.teaching.widgets.asynchronous` redraw these
functions, so a static figure above a widget is what the widget shows at its defaults.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ...core.result import TrainingResult
from .base import COLORS, log_scale, new_figure
from .training import plot_losses


def messages(res: TrainingResult) -> np.ndarray:
    """Messages exchanged (each ``w`` sent down and each reply sent up counts one) by each entry of ``losses``.

    Runs of :mod:`dml_lesson.variants.async_server` and :mod:`dml_lesson.variants.local_sgd` record
    ``messages_per_step``; a
    synchronous step of ``distributed_sgd`` moves ``2 * n_nodes`` messages.
    """
    per_step = res.params.get("messages_per_step", 2 * res.params.get("n_nodes", 1))
    return np.arange(len(res.losses)) * per_step


def plot_against_messages(ax: Any, results: dict[str, TrainingResult], floor: float | None = None) -> None:
    """Loss curves against the messages exchanged so far (both axes log scale), with their legend."""
    for i, (label, res) in enumerate(results.items()):
        ax.plot(messages(res), res.losses, color=COLORS[i % len(COLORS)], label=label, linewidth=1.3)
        if res.diverged:
            ax.plot(messages(res)[-1], res.losses[-1], marker="x", color="red", markersize=9, mew=2)
    if floor is not None:
        ax.axhline(floor, color="gray", linestyle=":", linewidth=1, label="best possible")
    log_scale(ax, "y")
    log_scale(ax, "x")
    ax.set_xlabel("messages exchanged (log scale)")
    ax.set_ylabel("full-data loss")
    ax.legend(fontsize=8, loc="upper right", framealpha=0.9)


def compare_figure(results: dict[str, TrainingResult], floor: float | None = None) -> Figure:
    """Notebook 08: the same data trained three ways: loss against seconds and against messages."""
    fig = new_figure(2, 1, width=10.5, height=3.6)
    ax_t, ax_m = fig.axes
    plot_losses(ax_t, results, x="time", floor=floor)
    plot_against_messages(ax_m, results, floor=floor)
    ax_t.get_legend().remove()
    ax_t.set_title("against wall time", fontsize=10)
    ax_m.set_title("against messages", fontsize=10)
    return fig


def plot_staleness(ax: Any, results: dict[str, Any], bound: int | None = None) -> None:
    """Share of gradients at each staleness, one group of bars per run; the bound as a dashed line."""
    top = max(int(r.staleness.max()) for r in results.values()) if results else 0
    width = 0.8 / max(len(results), 1)
    for i, (label, res) in enumerate(results.items()):
        share = np.bincount(res.staleness, minlength=top + 1) / len(res.staleness)
        ax.bar(np.arange(top + 1) + (i - (len(results) - 1) / 2) * width, share, width=width,
               color=COLORS[i % len(COLORS)], label=label)
    if bound is not None:
        ax.axvline(bound + 0.5, color="red", linestyle="--", linewidth=1, label=f"bound {bound}")
    ax.set_xlabel("staleness (updates the gradient did not see)")
    ax.set_ylabel("share of gradients")
    ax.legend(fontsize=8, loc="upper right", framealpha=0.9)


def staleness_figure(results: dict[str, Any], bound: int | None = None, floor: float | None = None,
                     into: Figure | None = None) -> Figure:
    """Notebook 08: the staleness histogram of asynchronous runs, and their losses against time (``into``: as
    :func:`~dml_lesson.teaching.plots.training.new_figure`)."""
    fig = new_figure(2, 1, width=10.5, height=3.5, into=into)
    ax_h, ax_t = fig.axes
    plot_staleness(ax_h, {k: r for k, r in results.items() if hasattr(r, "staleness")}, bound)
    plot_losses(ax_t, results, x="time", floor=floor)
    ax_t.legend(fontsize=8, loc="upper right", framealpha=0.9)
    return fig


def local_figure(results: dict[str, TrainingResult], floor: float | None = None, into: Figure | None = None) -> Figure:
    """Notebook 08: local SGD runs against epochs (the same rows used) and against messages (the cost); ``into``:
    as :func:`~dml_lesson.teaching.plots.training.new_figure`."""
    fig = new_figure(2, 1, width=10.5, height=3.5, into=into)
    ax_e, ax_m = fig.axes
    plot_losses(ax_e, results, x="epoch", floor=floor)
    plot_against_messages(ax_m, results, floor=floor)
    ax_e.get_legend().remove()
    return fig
