"""Figures of notebooks 00 to 07, drawn from ``TrainingResult`` records with matplotlib's object API (no pyplot state).

Each ``*_figure`` function returns a new ``Figure``; a notebook shows it as the cell's value and the widgets in
:mod:`dml_lesson.teaching.widgets.training` redraw the same function at the slider's values, so the static figure
above a widget
is exactly what the widget shows at its defaults.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ...core.result import TrainingResult
from .base import COLORS, DPI, log_scale, new_figure, recycle


def mse_grid(X: np.ndarray, y: np.ndarray, w0s: np.ndarray, w1s: np.ndarray) -> np.ndarray:
    """MSE on a grid of two weights, from the quadratic form ``w.A.w - 2 b.w + c`` (2-column X only)."""
    n = len(y)
    A, b, c = X.T @ X / n, X.T @ y / n, y @ y / n
    W0, W1 = np.meshgrid(w0s, w1s)
    return A[0, 0] * W0**2 + 2 * A[0, 1] * W0 * W1 + A[1, 1] * W1**2 - 2 * (b[0] * W0 + b[1] * W1) + c


def plot_contour(ax: Any, X: np.ndarray, y: np.ndarray, center: np.ndarray, radius: float = 2.5) -> None:
    """Log-spaced contours of the MSE around ``center`` for a model with two weights (notebooks 01, 02)."""
    w0s = np.linspace(center[0] - radius, center[0] + radius, 120)
    w1s = np.linspace(center[1] - radius, center[1] + radius, 120)
    Z = mse_grid(X, y, w0s, w1s)
    levels = np.geomspace(max(Z.min(), 1e-3) * 1.05, Z.max(), 14)
    ax.contour(w0s, w1s, Z, levels=levels, cmap="viridis", linewidths=0.8)
    ax.plot(*center, marker="*", color="k", markersize=10, linestyle="none", label="minimum")
    ax.set_xlim(w0s[0], w0s[-1])
    ax.set_ylim(w1s[0], w1s[-1])
    ax.set_xlabel("$w_0$ (intercept)")
    ax.set_ylabel("$w_1$")


def plot_trajectory(ax: Any, weights: np.ndarray, color: str = "C3", label: str | None = None,
                    markers: bool = True) -> None:
    """The path of ``(w_0, w_1)`` over the steps; points outside the axes are clipped, not dropped."""
    style = {"marker": "o", "markersize": 2.5} if markers else {}
    ax.plot(weights[:, 0], weights[:, 1], color=color, linewidth=1.0, label=label, **style)


def plot_losses(ax: Any, results: dict[str, TrainingResult], x: str = "step", floor: float | None = None) -> None:
    """Loss curves on a log scale against ``"step"``, ``"epoch"`` or ``"time"`` (seconds); a diverged
    run ends with a red cross at the step where it was stopped."""
    for i, (label, res) in enumerate(results.items()):
        xs = {"step": np.arange(len(res.losses)), "epoch": res.epochs, "time": res.elapsed}[x]
        first = 1 if x == "time" else 0  # time starts at 0, which a log axis cannot show
        color = COLORS[i % len(COLORS)]
        ax.plot(xs[first:], res.losses[first:], color=color, label=label, linewidth=1.3)
        if res.diverged:
            ax.plot(xs[-1], res.losses[-1], marker="x", color="red", markersize=9, mew=2)
    if floor is not None:
        ax.axhline(floor, color="gray", linestyle=":", linewidth=1, label="best possible")
    log_scale(ax, "y")
    if x == "time":
        log_scale(ax, "x")
    if x == "step":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel({"step": "step", "epoch": "epochs (passes over the data)", "time": "seconds (log scale)"}[x])
    ax.set_ylabel("full-data loss")
    ax.legend(fontsize=8, loc="best", framealpha=0.9)


def lr_figure(res: TrainingResult, X: np.ndarray, y: np.ndarray, w_star: np.ndarray, bound: float,
              lr_range: tuple[float, float] = (0.01, 1.0), into: Figure | None = None) -> Figure:
    """Notebook 01: the trajectory on the loss contours, the loss curve, and where ``lr`` sits against 2/L.

    ``into``: a figure this function drew before, redrawn in place (:func:`recycle`; the explorer's frames).
    """
    if into is None:
        fig = Figure(figsize=(9.5, 4.0), dpi=DPI)
        grid = fig.add_gridspec(2, 2, height_ratios=[1, 7], left=0.08, right=0.98, bottom=0.12, top=0.93,
                                wspace=0.25, hspace=0.45)
        scale, ax_c, ax_l = fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    else:
        fig = recycle(into)
        scale, ax_c, ax_l = fig.axes
    lr = res.params["lr"]
    log_scale(scale, "x")
    scale.set_xlim(*lr_range)
    scale.axvspan(bound, lr_range[1], color="#f4cccc")
    scale.axvspan(bound / 2, bound, color="#fff2cc")
    scale.axvline(bound, color="red")
    scale.plot([lr], [0.5], marker="v", color="k", markersize=10)
    scale.set_yticks([])
    scale.set_title(f"lr = {lr:.3g}    1/L = {bound / 2:.3g} (oscillation starts)    2/L = {bound:.3g} (divergence)",
                    fontsize=9)
    plot_contour(ax_c, X, y, w_star, radius=2.8)
    plot_trajectory(ax_c, res.weights, label=f"lr = {lr:.3g}")
    ax_c.legend(fontsize=8, loc="lower left", framealpha=0.9)
    plot_losses(ax_l, {f"lr = {lr:.3g}": res}, floor=float(np.mean((X @ w_star - y) ** 2)))
    if res.diverged:
        ax_l.set_title(f"diverged at step {res.diverged_at}: lr is above 2/L", color="red", fontsize=10)
        ax_c.set_title("the steps overshoot further and further", color="red", fontsize=10)
    return fig


def layout_figure(shards: list[np.ndarray], n_rows: int, workers: list[int], y: np.ndarray | None = None,
                  title: str = "") -> Figure:
    """Notebook 03: one lane per node marking the rows it holds, colored by its worker; with ``y``, the
    distribution of each node's targets beside it (equal boxes: IID shards; shifted boxes: non-IID)."""
    fig = new_figure(2 if y is not None else 1, 1, width=10.0, height=0.45 * len(shards) + 1.3,
                     **({"width_ratios": [3, 1]} if y is not None else {}))
    fig.subplots_adjust(left=0.14)
    ax = fig.axes[0]
    lanes = np.full((len(shards), n_rows, 3), 1.0)
    for node, rows in enumerate(shards):
        lanes[node, rows] = _rgb(COLORS[workers[node] % len(COLORS)])
    ax.imshow(lanes, aspect="auto", extent=(0, n_rows, len(shards) - 0.5, -0.5), interpolation="nearest")
    ax.set_yticks(range(len(shards)), [f"node {i} · worker {workers[i]}" for i in range(len(shards))], fontsize=8)
    ax.set_xlabel("row of the dataset")
    ax.set_title(title, fontsize=10)
    key = [Patch(color=COLORS[w], label=f"worker {w}") for w in sorted(set(workers))]
    ax.legend(handles=key, fontsize=7, loc="upper right", bbox_to_anchor=(1.0, 1.25), ncol=len(key), frameon=False)
    if y is not None:
        ax_y = fig.axes[1]
        ax_y.boxplot([y[rows] for rows in shards], orientation="horizontal", positions=range(len(shards)), widths=0.6,
                     showfliers=False, medianprops={"color": "black"})
        ax_y.set_ylim(len(shards) - 0.5, -0.5)
        ax_y.set_yticks(range(len(shards)), [f"node {i}" for i in range(len(shards))], fontsize=7)
        ax_y.set_xlabel("target y of the node's rows")
    return fig


def _rgb(hex_color: str) -> tuple[float, float, float]:
    h = hex_color.lstrip("#")
    return tuple(int(h[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


MIN_BAR_MS = 0.3


def task_stream_figure(tasks: list[dict[str, Any]], workers: list[str]) -> Figure:
    """Notebooks 03 and 04: a Gantt chart of Dask's task stream, one row per worker, time from 0."""
    fig = new_figure(1, 1, height=2.2)
    ax = fig.axes[0]
    t0 = min(s["start"] for t in tasks for s in t["startstops"] if s["action"] == "compute")
    for t in tasks:
        row = workers.index(t["worker"]) if t["worker"] in workers else len(workers)
        for s in t["startstops"]:
            if s["action"] == "compute":
                name = t["key"][0] if isinstance(t["key"], tuple) else t["key"]
                color = COLORS[zlib.crc32(str(name).rsplit("-", 1)[0].encode()) % len(COLORS)]
                width = max((s["stop"] - s["start"]) * 1e3, MIN_BAR_MS)  # keep sub-millisecond tasks visible
                ax.barh(row, width, left=(s["start"] - t0) * 1e3, color=color, height=0.6)
    ax.set_yticks(range(len(workers)), [f"worker {i}" for i in range(len(workers))])
    ax.set_xlabel("milliseconds")
    ax.invert_yaxis()
    return fig


def sgd_figure(results: dict[str, TrainingResult], X: np.ndarray, y: np.ndarray, w_star: np.ndarray,
               into: Figure | None = None) -> Figure:
    """Notebook 02: trajectories on the contours, loss per epoch, and loss per second, for each run.

    ``into``: a figure this function drew before, redrawn in place (:func:`recycle`; the explorer's frames).
    """
    fig = new_figure(3, 1, width=11.0, height=3.5, into=into)
    ax_c, ax_e, ax_t = fig.axes
    plot_contour(ax_c, X, y, w_star, radius=2.8)
    for i, (label, res) in enumerate(results.items()):
        plot_trajectory(ax_c, res.weights, color=COLORS[i], label=label, markers=False)
    ax_c.legend(fontsize=7, loc="lower left", framealpha=0.9)
    floor = float(np.mean((X @ w_star - y) ** 2))
    plot_losses(ax_e, results, x="epoch", floor=floor)
    plot_losses(ax_t, results, x="time", floor=floor)
    ax_e.get_legend().remove()
    ax_t.legend(fontsize=7, loc="lower left", framealpha=0.9)
    return fig


def aggregate_figure(results: dict[str, TrainingResult], n_nodes: int, into: Figure | None = None) -> Figure:
    """Notebook 04: the loss with the weighted mean against the source's sum, for ``n_nodes`` nodes (``into``: as
    :func:`new_figure`)."""
    fig = new_figure(1, 1, width=6.5, height=3.3, into=into)
    ax = fig.axes[0]
    plot_losses(ax, results)
    bad = [label for label, res in results.items() if res.diverged]
    title = f"{n_nodes} nodes: " + (", ".join(bad) + " diverged" if bad else "both converge")
    ax.set_title(title, color="red" if bad else "black", fontsize=10)
    return fig


def dsgd_figure(results: dict[str, TrainingResult], floor: float | None = None,
                into: Figure | None = None) -> Figure:
    """Notebook 05: loss against steps and against epochs for distributed SGD runs (``into``: as
    :func:`new_figure`)."""
    fig = new_figure(2, 1, width=10.0, height=3.4, into=into)
    plot_losses(fig.axes[0], results, x="step", floor=floor)
    plot_losses(fig.axes[1], results, x="epoch", floor=floor)
    fig.axes[1].get_legend().remove()
    return fig


def timeline_figure(rows: list[Any], title: str = "", into: Figure | None = None) -> Figure:
    """Notebook 07: a Gantt chart of synchronous steps, one lane per node: computing (solid, one color per
    step) and waiting at the barrier for the slowest node (hatched); dashed lines mark the barriers (``into``: as
    :func:`new_figure`)."""
    nodes = sorted({r.node for r in rows})
    fig = new_figure(1, 1, width=10.0, height=0.4 * len(nodes) + 1.4, into=into)
    ax = fig.axes[0]
    for r in rows:
        lane = nodes.index(r.node)
        color = COLORS[r.step % 2]
        ax.barh(lane, max(r.compute, MIN_BAR_MS / 1e3) * 1e3, left=r.start * 1e3, color=color, height=0.6)
        if r.waiting > 0:
            ax.barh(lane, r.waiting * 1e3, left=r.stop * 1e3, color="none", edgecolor="#999", hatch="///",
                    height=0.6, linewidth=0)
    for barrier in sorted({r.barrier for r in rows}):
        ax.axvline(barrier * 1e3, color="k", linestyle=":", linewidth=0.8)
    ax.set_yticks(range(len(nodes)), [f"node {n}" for n in nodes])
    ax.yaxis.set_inverted(True)  # node 0 on top (invert_yaxis would flip a recycled axes back)
    ax.set_xlabel("milliseconds (solid: computing, hatched: waiting at the barrier)")
    ax.set_title(title, fontsize=10)
    return fig


def bytes_figure(results: dict[str, TrainingResult], into: Figure | None = None) -> Figure:
    """Notebook 06: full-data loss against the megabytes the nodes sent up (cumulative): the honest frontier
    (``into``: as :func:`new_figure`)."""
    fig = new_figure(2, 1, width=10.0, height=3.4, into=into)
    ax_b, ax_s = fig.axes
    for i, (label, res) in enumerate(results.items()):
        sent = np.concatenate([[0], np.cumsum(res.bytes_received)]) / 1e6
        ax_b.plot(sent[: len(res.losses)], res.losses, color=COLORS[i], label=label)
        ax_s.plot(res.losses, color=COLORS[i], label=label)
    for ax in (ax_b, ax_s):
        log_scale(ax, "y")
        ax.set_ylabel("full-data loss")
    ax_b.set_xlabel("megabytes sent up by the nodes")
    ax_s.set_xlabel("step")
    ax_b.legend(fontsize=8)
    return fig
