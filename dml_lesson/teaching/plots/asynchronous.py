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
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

from ...core.result import TrainingResult
from .base import COLORS, PlainLogFormatter, log_scale, new_figure
from .training import plot_losses

FLOOR_LABEL = "least squares on these rows"


def plot_floor(ax: Any, floor: float | None) -> None:
    """The in-sample floor as a dotted line: the least-squares loss on the training rows
    (:func:`~dml_lesson.core.models.least_squares_floor`), the lowest any linear model reaches on them. It lies
    below the noise variance, which is the expected loss on new rows."""
    if floor is not None:
        ax.axhline(floor, color="gray", linestyle=":", linewidth=1, label=FLOOR_LABEL)


def messages(res: TrainingResult) -> np.ndarray:
    """Messages exchanged (each ``w`` sent down and each reply sent up counts one) by each entry of ``losses``.

    Runs of :mod:`dml_lesson.variants.async_server` and :mod:`dml_lesson.variants.local_sgd` record
    ``messages_per_step``; a
    synchronous step of ``distributed_sgd`` moves ``2 * n_nodes`` messages.
    """
    per_step = res.params.get("messages_per_step", 2 * res.params.get("n_nodes", 1))
    return np.arange(len(res.losses)) * per_step


def symlog_x(ax: Any, xs: list[np.ndarray], label: str) -> None:
    """A log x axis that keeps 0, where every run starts: linear from 0 to the smallest positive value of ``xs``
    (the curves' x values), logarithmic beyond (matplotlib's ``symlog``). A plain log axis drops x = 0, so a run
    whose first recorded step is a big one (a local-SGD round) would seem to start lower than the others."""
    positive = np.concatenate([np.asarray(v, dtype=float) for v in xs] + [np.empty(0)])
    positive = positive[np.isfinite(positive) & (positive > 0)]
    low, high = (positive.min(), positive.max()) if len(positive) else (1.0, 10.0)
    ax.set_xscale("symlog", linthresh=low, linscale=0.4)
    # 0, then the powers of ten clear of the linear part (a label right next to 0 would overlap it)
    powers = 10.0 ** np.arange(np.ceil(np.log10(1.2 * low)), np.floor(np.log10(high)) + 1)
    ax.xaxis.set_major_locator(FixedLocator(np.concatenate([[0.0], powers])))
    ax.xaxis.set_major_formatter(PlainLogFormatter(10))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(left=0)
    ax.set_xlabel(f"{label} (log scale, linear up to the first update)")


def plot_against(ax: Any, results: dict[str, TrainingResult], x: str, floor: float | None = None,
                 legend: str = "lower left") -> None:
    """Loss curves from x = 0 against ``"messages"`` exchanged or ``"time"`` (seconds), both axes log
    (:func:`symlog_x`); a diverged run ends with a red cross. ``legend``: where the legend goes (matplotlib's
    ``loc``; the default corner stays empty when every run falls steeply)."""
    curves = []
    for i, (label, res) in enumerate(results.items()):
        xs = messages(res) if x == "messages" else res.elapsed
        curves.append(xs)
        ax.plot(xs, res.losses, color=COLORS[i % len(COLORS)], label=label, linewidth=1.3)
        if res.diverged:
            ax.plot(xs[-1], res.losses[-1], marker="x", color="red", markersize=9, mew=2)
    plot_floor(ax, floor)
    log_scale(ax, "y")
    symlog_x(ax, curves, "messages exchanged" if x == "messages" else "seconds")
    ax.set_ylabel("full-data loss")
    ax.legend(fontsize=8, loc=legend, framealpha=0.9)


def plot_against_messages(ax: Any, results: dict[str, TrainingResult], floor: float | None = None) -> None:
    """Loss curves against the messages exchanged so far, from 0 (:func:`plot_against`)."""
    plot_against(ax, results, "messages", floor)


def compare_figure(results: dict[str, TrainingResult], floor: float | None = None) -> Figure:
    """Notebook 08: the same data trained three ways: loss against seconds and against messages."""
    fig = new_figure(2, 1, width=10.5, height=3.6)
    ax_t, ax_m = fig.axes
    plot_against(ax_t, results, "time", floor)
    plot_against(ax_m, results, "messages", floor)
    ax_m.get_legend().remove()  # one legend, where the curves leave its corner empty
    ax_t.set_title("against wall time", fontsize=10)
    ax_m.set_title("against messages", fontsize=10)
    return fig


def plot_staleness(ax: Any, results: dict[str, Any], bound: int | None = None) -> None:
    """Share of gradients at each staleness, one group of bars per run; the bound as a dashed line.

    Staleness is counted in gradients in every mode (``AsyncResult.staleness``): a bound of ``s`` clocks lets a
    gradient miss up to ``s`` clocks of ``n_nodes`` gradients, so the line stands at ``n_nodes * s``. The axis
    ends at the largest 99th percentile of the runs (or the bound, always labelled); the rarer, staler gradients
    share a last bar, set apart by an empty slot. A bounded run never reaches that bar: only runs without a bound do.
    The means of bounded and unbounded runs can be alike (bound 2 puts gradients at 0, 4 and 8): SSP cuts the
    tail, not the mean."""
    n = max((r.params.get("n_nodes", 1) for r in results.values() if r.params.get("staleness_bound") is not None),
            default=1)
    runs = [np.asarray(r.staleness, dtype=np.int64) for r in results.values()]
    top = max([int(np.percentile(v, 99)) for v in runs if len(v)] + [n * bound if bound is not None else 0])
    tail = any(len(v) and v.max() > top for v in runs)
    at_tail = top + 2  # one empty slot before the bar of the rarer, staler gradients: it is no bin of the axis
    width, highest = 0.8 / max(len(results), 1), 0.0
    for i, (label, v) in enumerate(zip(results, runs)):
        share = np.bincount(np.minimum(v, top + 1), minlength=top + 2) / max(len(v), 1)
        highest = max(highest, float(share.max()))
        place = np.append(np.arange(top + 1), at_tail)
        keep = slice(None) if tail else slice(0, top + 1)
        ax.bar(place[keep] + (i - (len(results) - 1) / 2) * width, share[keep], width=width,
               color=COLORS[i % len(COLORS)], label=label)
    ticks = {int(t) for t in MaxNLocator(nbins=8, integer=True).tick_values(0, top) if 0 <= t <= top}
    if bound is not None:
        ax.axvline(n * bound + 0.5, color="red", linestyle="--", linewidth=1,
                   label=f"bound {bound}: that run's τ ≤ {n * bound}")
        ticks.add(n * bound)
    ticks = sorted(ticks)
    ax.set_xticks(ticks + [at_tail] if tail else ticks, [str(t) for t in ticks] + ([f">{top}"] if tail else []))
    ax.set_xlabel("staleness τ (gradients applied since the w it read)")
    ax.set_ylabel("share of gradients")
    ax.set_ylim(0, 1.5 * highest or 1.0)  # the top third is the legend's, above every bar
    ax.legend(fontsize=8, loc="upper right", framealpha=0.9)


def staleness_figure(results: dict[str, Any], bound: int | None = None, floor: float | None = None,
                     into: Figure | None = None) -> Figure:
    """Notebook 08: the staleness histogram of asynchronous runs, and their losses against time (``into``: as
    :func:`~dml_lesson.teaching.plots.training.new_figure`)."""
    fig = new_figure(2, 1, width=10.5, height=3.5, into=into)
    ax_h, ax_t = fig.axes
    plot_staleness(ax_h, {k: r for k, r in results.items() if hasattr(r, "staleness")}, bound)
    plot_against(ax_t, results, "time", floor)
    return fig


def local_figure(results: dict[str, TrainingResult], floor: float | None = None, into: Figure | None = None) -> Figure:
    """Notebook 08: local SGD runs against epochs (the same rows used) and against messages (the cost); ``into``:
    as :func:`~dml_lesson.teaching.plots.training.new_figure`."""
    fig = new_figure(2, 1, width=10.5, height=3.5, into=into)
    ax_e, ax_m = fig.axes
    plot_losses(ax_e, results, x="epoch")
    plot_floor(ax_e, floor)
    plot_against(ax_m, results, "messages", floor, legend="upper right")  # a slow fall: the top right is empty
    ax_e.get_legend().remove()
    return fig
