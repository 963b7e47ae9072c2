"""Figures of notebook 12: the two topologies step by step, the bytes they move, and the scaling model.

Each ``*_figure`` returns a new ``Figure`` (matplotlib's object API); :mod:`dml_lesson.teaching.widgets.scaling` redraws
the same functions at the sliders' values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Rectangle

from ...analysis.costmodel import (
    EVERY_NODE,
    Calibration,
    Network,
    compared,
    label,
    local_step_time,
    predict_step_time,
    speedup,
)
from ...ps.bytecount import SERVER, ByteReport
from ...ps.ring import ring_rounds, ring_schedule
from .base import COLORS, log_scale, new_figure

N_MAX = 1024


def topology_frames(topology: str, n_nodes: int) -> list[dict[str, Any]]:
    """The states of one all-reduce, frame by frame: ``held[i][c]`` is the set of nodes whose piece ``c`` node
    ``i`` has added up so far; ``arrows`` the messages of the frame ``(sender, receiver, piece)`` (piece -1: the
    whole vector; :data:`~dml_lesson.ps.bytecount.SERVER` is the server)."""
    n = n_nodes
    held = [[{i} for _ in range(n)] for i in range(n)]
    frames = [{"title": "before: each node has its own gradient", "held": _copy(held), "arrows": [],
               "server": None}]
    if topology == "server":
        everyone = set(range(n))
        frames.append({"title": "push: gradients to the server", "held": _copy(held),
                       "arrows": [(i, SERVER, -1) for i in range(n)], "server": everyone})
        held = [[set(everyone) for _ in range(n)] for _ in range(n)]
        frames.append({"title": "pull: the result back to every node", "held": _copy(held),
                       "arrows": [(SERVER, i, -1) for i in range(n)], "server": everyone})
        return frames
    for hop_round in ring_rounds(ring_schedule(n)):
        moved = [(h, set(held[h.sender][h.piece])) for h in hop_round]
        for h, value in moved:
            held[h.receiver][h.piece] = (held[h.receiver][h.piece] | value) if h.phase == "reduce-scatter" else value
        title = f"{hop_round[0].phase}, round {hop_round[0].round} of {n - 1}"
        frames.append({"title": title, "held": _copy(held),
                       "arrows": [(h.sender, h.receiver, h.piece) for h in hop_round], "server": None})
    return frames


def _copy(held: list[list[set]]) -> list[list[set]]:
    return [[set(p) for p in node] for node in held]


def topology_figure(topology: str, n_nodes: int, frame: int | None = None, width: float = 9.0) -> Figure:
    """One frame (``frame``, past the last: the last) or every frame (``None``) of :func:`topology_frames`: nodes on a
    circle, each with its ``N`` pieces; a piece's colour fills up as it holds more nodes' contributions."""
    frames = topology_frames(topology, n_nodes)
    chosen = list(range(len(frames))) if frame is None else [min(max(frame, 0), len(frames) - 1)]
    ncols = min(len(chosen), 4)
    nrows = -(-len(chosen) // ncols)
    fig = new_figure(ncols, nrows, width=width, height=2.6 * nrows if frame is None else 3.6)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.9 if nrows == 1 else 0.95, wspace=0.05,
                        hspace=0.25)
    for ax, k in zip(fig.axes, chosen):
        _draw_frame(ax, frames[k], n_nodes, k, topology)
    for ax in fig.axes[len(chosen):]:
        ax.set_axis_off()
    return fig


def _draw_frame(ax: Any, frame: dict[str, Any], n: int, k: int, topology: str) -> None:
    ax.set_axis_off()
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(-1.5, 1.55)
    ax.set_aspect("equal")
    ax.set_title(f"{k}. {frame['title']}", fontsize=7.5)
    angles = np.pi / 2 - 2 * np.pi * np.arange(n) / n
    pos = {i: (1.05 * np.cos(a), 1.05 * np.sin(a)) for i, a in enumerate(angles)}
    pos[SERVER] = (0.0, 0.0)
    # the links every frame uses, faint: who can talk to whom
    links = [(i, SERVER) for i in range(n)] if topology == "server" else [(i, (i + 1) % n) for i in range(n)]
    for i, j in links:
        ax.plot(*zip(pos[i], pos[j]), color="0.85", linewidth=0.8, linestyle="--", zorder=0)
    for src, dst, piece in frame["arrows"]:
        color = "0.3" if piece < 0 else COLORS[piece % len(COLORS)]
        ax.add_patch(FancyArrowPatch(pos[src], pos[dst], arrowstyle="-|>", mutation_scale=9, color=color,
                                     shrinkA=16, shrinkB=16, linewidth=1.4, connectionstyle="arc3,rad=0.15"))
    if topology == "server":
        ax.add_patch(Rectangle((-0.28, -0.17), 0.56, 0.34, facecolor="0.9", edgecolor="0.2"))
        ax.text(0, 0, "server", ha="center", va="center", fontsize=7)
    if k == 0:  # the key, where the first frame has room
        ax.text(0, -0.42 if topology == "server" else 0, f"pale: own part\ndark: sum of {n}",
                ha="center", va="center", fontsize=6.5, color="0.3")
    cell = 0.5 / n
    for i in range(n):
        x, y = pos[i]
        below = y < -0.5  # the bottom node's name under its pieces, away from the arrows
        ax.text(x, y - 0.16 if below else y + 0.2, f"node {i}", ha="center", va="top" if below else "bottom",
                fontsize=7)
        ax.add_patch(Rectangle((x - 0.25, y - 0.1), 0.5, 0.2, facecolor="white", edgecolor="none"))  # hides links
        for c in range(n):
            share = len(frame["held"][i][c]) / n
            ax.add_patch(Rectangle((x - 0.25 + c * cell, y - 0.1), cell, 0.2, edgecolor="0.2", linewidth=0.5,
                                   facecolor=COLORS[c % len(COLORS)], alpha=0.15 + 0.85 * share))


def ring_bytes_figure(reports: dict[str, ByteReport]) -> Figure:
    """Bytes per step sent and received by each endpoint: measured (bars) and textbook (black ticks)."""
    fig = new_figure(len(reports), 1, width=9.0, height=3.4, sharey=True)
    fig.subplots_adjust(bottom=0.2)  # room for the legend under the panels
    for ax, (name, r) in zip(fig.axes, reports.items()):
        ends = list(r.textbook_sent)
        names = ["server" if e == SERVER else f"node {e}" for e in ends]
        x = np.arange(len(ends))
        ax.bar(x - 0.2, [r.measured_sent[e] / 1e3 for e in ends], 0.4, label="sent (measured)", color=COLORS[0])
        ax.bar(x + 0.2, [r.measured_received[e] / 1e3 for e in ends], 0.4, label="received (measured)",
               color=COLORS[1])
        ax.scatter(x - 0.2, [r.textbook_sent[e] / 1e3 for e in ends], marker="_", s=250, color="k", zorder=3,
                   label="textbook (one machine per node)")
        ax.scatter(x + 0.2, [r.textbook_received[e] / 1e3 for e in ends], marker="_", s=250, color="k", zorder=3)
        ax.set_xticks(x, names, fontsize=8)
        ax.set_ylabel("kB per step")
        ax.set_title(f"{name}: {r.n_nodes} nodes, d + 2 = {r.n_values} values", fontsize=9)
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=7, frameon=False)
    return fig


def busiest_link_figure(n_nodes: list[int], server_bytes: list[float], ring_bytes: list[float],
                        n_values: int) -> Figure:
    """Bytes per step on the busiest link against N: the server's (grows with N) and a ring node's (flat)."""
    fig = new_figure(1, 1, width=8.5, height=3.0)
    fig.subplots_adjust(right=0.62)  # the legend to the right of the data
    ax = fig.axes[0]
    n = np.array(n_nodes, dtype=float)
    # hollow and larger: the server's point at N = 2 stays visible around the ring's (816 B against 832 B)
    ax.plot(n, np.array(server_bytes) / 1e3, "o", color=COLORS[3], markersize=11, fillstyle="none",
            markeredgewidth=1.5, label="server's link, measured here")
    ax.plot(n, np.array(ring_bytes) / 1e3, "s", color=COLORS[2], markersize=5,
            label="a ring node's link, measured here")
    grid = np.linspace(1, n.max(), 50)
    ax.plot(grid, 2 * grid * n_values * 8 / 1e3, color=COLORS[3], alpha=0.5, label="server, textbook 2 N d")
    ax.plot(grid, 2 * 2 * (grid - 1) / grid * n_values * 8 / 1e3, color=COLORS[2], alpha=0.5,
            label="ring node, textbook 2 · 2 (N−1)/N · d")
    ax.set_xlabel("nodes N")
    ax.set_ylabel("kB per step (in + out)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return fig


def _style(topology: str, shards: int | str) -> dict[str, Any]:
    """Colour, line style and markers of a compared topology. The ring has hollow circles and the server with every
    node a shard is dashed: in the classic model (``g = a``) their curves coincide, and both stay visible."""
    if topology == "ring":
        return {"color": COLORS[2], "linestyle": "-", "marker": "o", "fillstyle": "none", "markersize": 6}
    if topology == "tree":
        return {"color": COLORS[0], "linestyle": "-"}
    if shards == EVERY_NODE:
        return {"color": COLORS[4], "linestyle": (0, (3, 2)), "linewidth": 2.0}
    return {"color": COLORS[3] if shards == 1 else COLORS[1], "linestyle": "-"}


def scaling_figure(n_rows: int, n_weights: int, network: Network, compute_per_value: float,
                   n_nodes: int = 64, calibration: Calibration | None = None,
                   measured: dict[str, Any] | None = None, buckets: int = 1, shards: int = 8,
                   into: Figure | None = None) -> Figure:
    """Predicted time per step (left) and speedup (right) against N, from 1 to 1,024 nodes, for every topology
    of :func:`~dml_lesson.analysis.costmodel.compared` (``shards``: the dedicated shards) (notebook 12).

    ``buckets`` > 1: the backward pass overlaps with the buckets' all-reduces
    (:func:`~dml_lesson.analysis.costmodel.step_time`); the speedups without overlap are then drawn thin and pale
    beside them. The lines are ``network`` with one machine per node. With ``calibration``, the left panel adds
    the model of this laptop (N nodes on its 2 workers, N <= 8, dotted). ``measured`` (``{"n_rows",
    "n_weights", "server": {N: seconds}, "ring": {N: seconds}}``): step times measured here, drawn as squares when
    the sizes are the figure's. ``n_nodes`` is marked on the right. One legend, right of the panels.
    ``into``: the explorer's last frame, drawn into again (:func:`~dml_lesson.teaching.plots.training.recycle`).
    """
    fig = new_figure(2, 1, width=9.5, height=3.6, into=into)
    fig.subplots_adjust(left=0.07, right=0.76, wspace=0.32)
    for legend in list(fig.legends):
        legend.remove()
    ax_t, ax_s = fig.axes
    nodes = 2 ** np.arange(11)
    single = compute_per_value * n_rows * n_weights
    same_size = measured is not None and (measured["n_rows"], measured["n_weights"]) == (n_rows, n_weights)
    for topology, s in compared(shards):
        style = _style(topology, s)
        same = s == EVERY_NODE and network.overhead == network.latency  # the classic model: on the ring
        name = label(topology, s) + (" (= ring here)" if same else "")
        times = predict_step_time(n_rows, n_weights, nodes, topology, network, compute_per_value, s, buckets)
        on_top = 3 if s == EVERY_NODE else 2  # dashed over the ring it equals when g = a
        ax_t.plot(nodes, times * 1e3, label=name, zorder=on_top, **style)
        ax_s.plot(nodes, single / times, zorder=on_top, **style)
        if buckets > 1:
            ax_s.plot(nodes, speedup(n_rows, n_weights, nodes, topology, network, compute_per_value, s),
                      color=style["color"], linestyle=style["linestyle"], linewidth=0.8, alpha=0.4)
        mark = predict_step_time(n_rows, n_weights, n_nodes, topology, network, compute_per_value, s, buckets)
        ax_s.plot([n_nodes], single / mark, marker="D", color=style["color"], markersize=5, zorder=4)
    for topology in ("server", "ring") if calibration is not None else ():
        color = _style(topology, 1)["color"]
        here = [1, 2, 4, 8]
        local = [local_step_time(calibration, n_rows, n_weights, n, topology) for n in here]
        ax_t.plot(here, np.array(local) * 1e3, linestyle=":", marker=".", color=color,
                  label=f"{topology}: laptop model (2 workers)")
        if same_size and measured.get(topology):
            xs = sorted(measured[topology])
            ax_t.plot(xs, [measured[topology][x] * 1e3 for x in xs], linestyle="none", marker="s", color=color,
                      markersize=6, label=f"{topology}: laptop, measured")
    ax_t.axhline(single * 1e3, color="k", linestyle="--", linewidth=1, label="one machine")
    ax_s.axhline(1.0, color="k", linestyle=":", linewidth=1)
    ax_s.axvline(n_nodes, color="0.6", linewidth=0.8)
    for ax in fig.axes:
        log_scale(ax, "x", base=2)
        log_scale(ax, "y")
        ax.set_xlabel("nodes N")
    ax_t.set_ylabel("ms per step")
    ax_s.set_ylabel("speedup over one machine")
    lines = f"lines: {network.name}" + ("; dotted, squares: this laptop" if calibration is not None else "")
    ax_t.set_title(f"{n_rows:,} rows x {n_weights:,} weights\n{lines}", fontsize=8)
    overlap = f"overlap, {buckets} buckets (pale: none)" if buckets > 1 else "no overlap"
    ax_s.set_title(f"speedup on {network.name}\n{overlap}", fontsize=8)
    handles, labels = ax_t.get_legend_handles_labels()
    handles.append(Line2D([], [], color="k", linestyle=":", linewidth=1))
    labels.append("break-even (speedup 1)")
    handles.append(Line2D([], [], color="0.4", marker="D", linestyle="none", markersize=5))
    labels.append(f"N = {n_nodes}")
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.765, 0.5), fontsize=7, frameon=False)
    return fig
