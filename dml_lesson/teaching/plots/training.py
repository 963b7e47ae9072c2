"""Figures of notebooks 00 to 07, drawn from ``TrainingResult`` records with matplotlib's object API (no pyplot state).

Each ``*_figure`` function returns a new ``Figure``; a notebook shows it as the cell's value and the widgets in
:mod:`dml_lesson.teaching.widgets.training` redraw the same function at the slider's values, so the static figure
above a widget
is exactly what the widget shows at its defaults.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from dask.utils import key_split
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
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
        ax.axhline(floor, color="gray", linestyle=":", linewidth=1, label="least squares on these rows")
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


def task_stream_figure(tasks: list[dict[str, Any]], workers: list[str],
                       kinds: dict[str, str] | None = None) -> Figure:
    """Notebook 00: a Gantt chart of Dask's task stream, one row per worker, time in seconds from 0; one colour per
    kind of task, named in the legend. ``kinds`` maps a task's name without its unique suffix (``key_split``, as
    the dashboard names them) to the kind shown; by default notebook 00's mean squared error: making a block,
    multiplying, squaring and summing a block, adding the partial sums. Names not in ``kinds`` show as they are."""
    if kinds is None:
        kinds = {"make_rows": "making a block", "X": "making a block", "y": "making a block",
                 "getitem": "making a block", "array-getitem": "making a block",
                 "matmul-getitem": "multiplying X @ w", "matmul": "multiplying X @ w",
                 "mean_chunk": "squaring and summing a block", "mean_combine-partial": "adding the partial sums",
                 "mean_agg-aggregate": "adding the partial sums",
                 "finalize-hlgfinalizecompute": "adding the partial sums"}
    fig = new_figure(1, 1, height=2.2)
    fig.subplots_adjust(right=0.72)  # room for the legend on the right
    ax = fig.axes[0]
    t0 = min(s["start"] for t in tasks for s in t["startstops"] if s["action"] == "compute")
    names: dict[str, str] = {}  # kind of task -> colour, in the order they first started
    for t in sorted(tasks, key=lambda t: min((s["start"] for s in t["startstops"]), default=0.0)):
        name = kinds.get(key_split(t["key"]), key_split(t["key"]))
        color = names.setdefault(name, COLORS[len(names) % len(COLORS)])
        row = workers.index(t["worker"]) if t["worker"] in workers else len(workers)
        for s in t["startstops"]:
            if s["action"] == "compute":
                width = max(s["stop"] - s["start"], MIN_BAR_MS / 1e3)  # keep sub-millisecond tasks visible
                ax.barh(row, width, left=s["start"] - t0, color=color, height=0.6)
    ax.set_yticks(range(len(workers)), [f"worker {i}" for i in range(len(workers))])
    ax.set_xlabel("seconds")
    ax.invert_yaxis()
    ax.legend([Patch(color=c) for c in names.values()], list(names), title="task", fontsize=7, title_fontsize=7,
              loc="upper left", bbox_to_anchor=(1.01, 1.05), ncol=1 if len(names) <= 6 else 2, frameon=False)
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
        if res.params.get("batch_size") is None:  # full-batch GD: few steps, drawn bold on top with a dot per step
            ax_c.plot(res.weights[:, 0], res.weights[:, 1], color=COLORS[i], linewidth=2.4, marker="o",
                      markersize=5, markeredgecolor="white", markeredgewidth=0.8, zorder=5, label=label)
        else:  # drawn above GD's path (which may hide a large batch's), each ending in a dot where it stopped
            plot_trajectory(ax_c, res.weights, color=COLORS[i], label=label, markers=False)
            ax_c.lines[-1].set_zorder(6)
            ax_c.plot(*res.weights[-1, :2], marker="o", markersize=6, color=COLORS[i], markeredgecolor="k",
                      markeredgewidth=0.8, linestyle="none", zorder=7)
    ax_c.lines[0].set_zorder(8)  # the minimum's star stays visible above the dots that end next to it
    ax_c.legend(fontsize=7, loc="lower left", framealpha=0.9)
    floor = float(np.mean((X @ w_star - y) ** 2))
    plot_losses(ax_e, results, x="epoch", floor=floor)
    plot_losses(ax_t, results, x="time", floor=floor)
    ax_e.get_legend().remove()
    ax_t.legend(fontsize=7, loc="upper right", framealpha=0.9)  # the curves fall from the upper left
    return fig


def aggregate_figure(results: dict[str, TrainingResult], n_nodes: int, into: Figure | None = None) -> Figure:
    """Notebook 04: the loss with the weighted mean against the source's sum, for ``n_nodes`` nodes (``into``: as
    :func:`new_figure`). The legend sits right of the axes, off the curves whatever they do."""
    fig = new_figure(1, 1, width=8.0, height=3.3, into=into)
    fig.subplots_adjust(right=1 - 2.0 / 8.0)
    ax = fig.axes[0]
    plot_losses(ax, results)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    bad = [label for label, res in results.items() if res.diverged]
    nodes = f"{n_nodes} node{'s' if n_nodes != 1 else ''}"
    title = f"{nodes}: " + (", ".join(bad) + " diverged" if bad else "both converge")
    ax.set_title(title, color="red" if bad else "black", fontsize=10)
    return fig


def dsgd_figure(results: dict[str, TrainingResult], floor: float | None = None,
                into: Figure | None = None) -> Figure:
    """Notebook 05: loss against steps and against epochs for distributed SGD runs (``into``: as
    :func:`new_figure`). One legend, in a row above the left panel, off the curves."""
    fig = new_figure(2, 1, width=10.0, height=3.6, into=into)
    fig.subplots_adjust(top=1 - 0.45 / 3.6)
    plot_losses(fig.axes[0], results, x="step", floor=floor)
    plot_losses(fig.axes[1], results, x="epoch", floor=floor)
    fig.axes[1].get_legend().remove()
    fig.axes[0].legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=3, frameon=False)
    return fig


def timeline_figure(rows: list[Any], title: str = "", into: Figure | None = None,
                    n_nodes: int | None = None, workers: list[str] | None = None) -> Figure:
    """Notebooks 03 and 07: a Gantt chart of synchronous steps, one lane per node, labelled with the worker it ran
    on: computing (solid, dark and light teal alternating by step, so that blue and orange keep meaning workers 0
    and 1 as in the layout figures) and waiting for the step's last task to end (hatched); dotted lines mark where
    each step's last task ended. With ``n_nodes``, a node step with no recorded task (backup nodes: the server
    went on and released it) is marked with a grey cross at its step's start. ``workers``: the worker addresses in
    the order they are numbered (``dml.worker_addresses``; by default the sorted addresses in ``rows``).
    ``into``: as :func:`new_figure`."""
    nodes = sorted({r.node for r in rows} | set(range(n_nodes or 0)))
    workers = list(workers) if workers is not None else sorted({r.worker for r in rows})
    fig = new_figure(1, 1, width=10.0, height=0.4 * len(nodes) + 1.8, into=into)
    fig.subplots_adjust(left=0.14, bottom=0.95 / (0.4 * len(nodes) + 1.8))  # room for lane labels and legend
    ax = fig.axes[0]
    step_colors = ("#2a7f7a", "#94d2cc")  # not COLORS[0] / COLORS[1]: those mean workers 0 and 1 elsewhere
    for r in rows:
        lane = nodes.index(r.node)
        color = step_colors[r.step % 2]
        ax.barh(lane, max(r.compute, MIN_BAR_MS / 1e3) * 1e3, left=r.start * 1e3, color=color, height=0.6)
        if r.waiting > 0:
            ax.barh(lane, r.waiting * 1e3, left=r.stop * 1e3, color="none", edgecolor="#999", hatch="///",
                    height=0.6, linewidth=0)
    for barrier in sorted({r.barrier for r in rows}):
        ax.axvline(barrier * 1e3, color="k", linestyle=":", linewidth=0.8)
    handles = [Patch(color=step_colors[0]), Patch(color=step_colors[1]),
               Patch(facecolor="none", edgecolor="#999", hatch="///", linewidth=0),
               Line2D([], [], color="k", linestyle=":", linewidth=0.8)]
    labels = ["computing: steps 0, 2, ...", "steps 1, 3, ...", "waiting for the step's last task",
              "the step's last task ends"]
    if n_nodes is not None:
        starts = {s: min(r.start for r in rows if r.step == s) for s in {r.step for r in rows}}
        done = {(r.step, r.node) for r in rows}
        dropped = [(s, n) for s in sorted(starts) for n in range(n_nodes) if (s, n) not in done]
        if dropped:
            ax.plot([starts[s] * 1e3 for s, _ in dropped], [nodes.index(n) for _, n in dropped], "x",
                    color="#777", markersize=7)
            handles.append(Line2D([], [], marker="x", color="#777", linestyle="none"))
            labels.append("no task recorded (dropped)")
            ax.set_xlim(-0.015 * ax.get_xlim()[1], None)  # a cross at 0 ms is drawn whole

    def lane_label(node: int) -> str:  # "node 1 · worker 1": the worker(s) its recorded tasks ran on
        ran_on = sorted({workers.index(r.worker) if r.worker in workers else -1 for r in rows if r.node == node})
        names = "/".join("?" if i < 0 else str(i) for i in ran_on)
        return f"node {node} · worker {names}" if names else f"node {node}"

    ax.set_yticks(range(len(nodes)), [lane_label(n) for n in nodes], fontsize=8)
    ax.yaxis.set_inverted(True)  # node 0 on top (invert_yaxis would flip a recycled axes back)
    ax.set_xlabel("milliseconds from the first task's start")
    ax.set_title(title, fontsize=10)
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.55 / (0.4 * len(nodes) + 0.8)),
              ncol=len(handles), fontsize=8, frameon=False, handlelength=1.6, columnspacing=1.2)
    return fig


def bytes_figure(results: dict[str, TrainingResult], into: Figure | None = None) -> Figure:
    """Notebook 06: full-data loss against the megabytes moved so far, both ways (``w`` down to the nodes and
    their gradients up, as Dask serialized them): the honest frontier (``into``: as :func:`new_figure`)."""
    fig = new_figure(2, 1, width=10.0, height=3.4, into=into)
    ax_b, ax_s = fig.axes
    for i, (label, res) in enumerate(results.items()):
        sent = np.concatenate([[0], np.cumsum(res.bytes_sent + res.bytes_received)]) / 1e6
        ax_b.plot(sent[: len(res.losses)], res.losses, color=COLORS[i], label=label)
        ax_s.plot(res.losses, color=COLORS[i], label=label)
    for ax in (ax_b, ax_s):
        log_scale(ax, "y")
        ax.set_ylabel("full-data loss")
    ax_b.set_xlabel("megabytes moved, both ways (w down, gradients up)")
    ax_s.set_xlabel("step")
    ax_b.legend(fontsize=8)
    return fig
