"""Figures of notebook 09: the trials of learning-rate searches, the classes on each node, and imbalance remedies.

Like :mod:`dml_lesson.teaching.plots.training`, every function returns a new matplotlib ``Figure`` (object API, no
pyplot state).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ...analysis.imbalance import ClassReport
from ...analysis.tuning import SearchResult
from .base import COLORS, log_scale, new_figure

_MARKERS = ["o", "s", "^", "D", "v"]
_LINESTYLES = ["-", "--", "-.", ":"]  # curves that coincide stay distinguishable
_NICE = [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0]  # tick values on the zoomed log axis


def trials_figure(results: dict[str, SearchResult]) -> Figure:
    """Left: each trial's validation loss against its learning rate (diverged trials as red crosses on top;
    successive halving's later rounds as larger markers). Right: the best loss found against the SGD steps
    spent so far, the cost of each search, zoomed on where the searches end (notebook 09)."""
    fig = new_figure(2, width=10.0, height=3.8)
    ax_lr, ax_cost = fig.axes
    finite = [t.score for r in results.values() for t in r.trials if not t.diverged]
    top = min(max(finite), 100 * min(finite)) * 2 if finite else 1.0  # far-off losses would squash the rest
    for i, (name, res) in enumerate(results.items()):
        color, marker = COLORS[i % len(COLORS)], _MARKERS[i % len(_MARKERS)]
        ok = [t for t in res.trials if t.score < top]
        bad = [t for t in res.trials if t.score >= top]
        sizes = 18 * (1 + np.array([t.round for t in ok])) if res.method == "successive halving" else 18
        ax_lr.scatter([t.lr for t in ok], [t.score for t in ok], s=sizes, color=color, marker=marker,
                      alpha=0.75, label=f"{name} (best lr {res.best.lr:.3g})")
        ax_lr.scatter([t.lr for t in bad], [top] * len(bad), marker="x", color="red", s=30)
        steps = np.cumsum([t.budget for t in res.trials])
        best = np.minimum.accumulate([t.score for t in res.trials])
        ax_cost.step(steps, best, where="post", color=color, linestyle=_LINESTYLES[i % len(_LINESTYLES)],
                     label=f"{name}: {res.total_steps} steps")
    log_scale(ax_lr, "x")
    log_scale(ax_lr, "y")
    ax_lr.set_xlabel("learning rate (log scale); red x: diverged or off the chart")
    ax_lr.set_ylim(top=top * 1.6)
    ax_lr.set_ylabel("validation loss")
    ax_lr.legend(fontsize=7, loc="upper center", framealpha=0.9)
    log_scale(ax_cost, "x")
    log_scale(ax_cost, "y")
    ax_cost.set_xlabel("SGD steps spent by the search so far")
    ax_cost.set_ylabel("best validation loss so far (log scale)")
    ends = [r.best.score for r in results.values() if not r.best.diverged]
    if ends:  # zoom on where the searches end; early, far-off losses leave through the top (the legend's corner)
        low, high = min(ends) * 0.95, min(ends) * 2.5
        ax_cost.set_ylim(low, high)
        ticks = [v for v in np.outer(10.0 ** np.arange(-3, 4), _NICE).ravel() if low <= v <= high]
        ax_cost.set_yticks(ticks, [f"{v:g}" for v in ticks])
        ax_cost.set_yticks([], minor=True)
    ax_cost.legend(fontsize=7, loc="upper left", framealpha=0.9)
    return fig


def shard_classes_figure(counts: dict[str, np.ndarray]) -> Figure:
    """Rows of each class on each node, one panel per layout (counts from
    :func:`~dml_lesson.analysis.imbalance.shard_class_counts`)."""
    fig = new_figure(len(counts), width=4.2 * len(counts), height=3.0)
    for ax, (name, c) in zip(fig.axes, counts.items()):
        nodes = np.arange(len(c))
        ax.bar(nodes, c[:, 0], color="#9ecae1", label="class 0")
        ax.bar(nodes, c[:, 1], bottom=c[:, 0], color="#d62728", label="class 1 (rare)")
        for n, (n0, n1) in enumerate(c):
            ax.text(n, n0 + n1, f"{n1}", ha="center", va="bottom", fontsize=8, color="#d62728")
        ax.set_xticks(nodes, [f"node {n}" for n in nodes])
        ax.set_title(f"{name} layout", fontsize=10)
        ax.set_ylabel("rows")
        ax.set_ylim(0, c.sum(axis=1).max() * 1.15)
    fig.axes[0].legend(fontsize=8, loc="lower left", framealpha=0.9)
    return fig


def remedies_figure(reports: dict[str, ClassReport]) -> Figure:
    """Accuracy, balanced accuracy and the recall of each class for each remedy, as grouped bars."""
    fig = new_figure(1, width=9.0, height=3.4)
    ax = fig.axes[0]
    metrics = {"accuracy": lambda r: r.accuracy, "balanced accuracy": lambda r: r.balanced_accuracy,
               "recall, class 0": lambda r: r.recall[0], "recall, class 1 (rare)": lambda r: r.recall[1]}
    width = 0.8 / len(reports)
    for i, (name, report) in enumerate(reports.items()):
        xs = np.arange(len(metrics)) + (i - (len(reports) - 1) / 2) * width
        values = [f(report) for f in metrics.values()]
        ax.bar(xs, values, width=width * 0.95, color=COLORS[i % len(COLORS)], label=name)
        for x, v in zip(xs, values):
            ax.text(x, v + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=6.5)
    ax.set_xticks(np.arange(len(metrics)), list(metrics))
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("on the test rows")
    ax.legend(fontsize=8, loc="lower left", ncols=len(reports), framealpha=0.9)
    return fig
