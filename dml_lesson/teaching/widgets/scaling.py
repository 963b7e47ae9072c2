"""Sliders of notebook 12: the two topologies frame by frame, and the scaling model.

Both explorers are :class:`~dml_lesson.teaching.widgets.training.Explorer` objects: each slider release redraws the
figure the
notebook drew statically above it (:mod:`dml_lesson.teaching.plots.scaling`) and writes a status line. Nothing here runs
on the cluster: the scaling explorer redraws the model in a few tens of milliseconds.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import numpy as np
from matplotlib.figure import Figure

from ...analysis.costmodel import (
    DATACENTER_10G,
    DATACENTER_100G,
    Calibration,
    Network,
    break_even_rows,
    compared,
    label,
    speedup,
)
from ..plots.scaling import scaling_figure, topology_figure, topology_frames
from ..status import Status
from .explorer import Explorer

MAX_FRAME = 14
"""Frames of the largest animation (a ring of 8 nodes: 1 + 2 * 7)."""


def topology_explorer(topology: str = "ring", n_nodes: int = 4) -> Explorer:
    """Step through one all-reduce (notebook 12): topology, node count, and a frame slider with a play button."""
    controls = {
        "topology": w.Dropdown(options=["server", "ring"], value=topology, description="topology"),
        "n_nodes": w.IntSlider(value=n_nodes, min=2, max=8, description="nodes"),
        "frame": w.IntSlider(value=0, min=0, max=MAX_FRAME, description="frame"),
    }

    def step(v: dict[str, Any]) -> tuple[Figure, str]:
        frames = topology_frames(v["topology"], v["n_nodes"])
        k = min(v["frame"], len(frames) - 1)
        fig = topology_figure(v["topology"], v["n_nodes"], k, width=5.5)
        fig.suptitle(f"{v['topology']}, {v['n_nodes']} nodes", fontsize=9)
        status = f"{v['topology']}, {v['n_nodes']} nodes, frame {k} of {len(frames) - 1}: {frames[k]['title']}"
        return fig, status

    explorer = Explorer(controls, step)
    play = w.Play(value=0, min=0, max=MAX_FRAME, interval=900, description="play")
    w.jslink((play, "value"), (controls["frame"], "value"))
    box = explorer.widget.children[0]
    box.children = (*box.children, play)
    return explorer


def presets(calibration: Calibration) -> dict[str, Network]:
    """The networks the scaling explorer offers: this laptop (measured), 10 Gb/s and 100 Gb/s datacenters."""
    laptop = calibration.laptop
    return {laptop.name: laptop, DATACENTER_10G.name: DATACENTER_10G, DATACENTER_100G.name: DATACENTER_100G}


BUCKETS = {"no overlap": 1, "overlap, 2 buckets": 2, "overlap, 8 buckets": 8, "overlap, 32 buckets": 32}
"""The overlap control's choices: the gradient sent in that many buckets while the backward pass runs (1: none)."""
SHARDS = (2, 4, 8, 16, 32, 64, 128)
"""The dedicated-shards control's choices (the one server and every node a shard are always drawn)."""


def scaling_explorer(calibration: Calibration, measured: dict[str, Any] | None = None, n_rows: int = 200_000,
                     n_weights: int = 100, n_nodes: int = 64, network: str = DATACENTER_10G.name,
                     buckets: int = 1, shards: int = 8) -> Explorer:
    """Data size, model size, node count, bandwidth, latency, overlap and the dedicated server shards against the
    predicted step time and speedup of every compared topology (notebook 12).

    The log sliders move a quarter of a decade per key press (a decade in 4 presses; the two datacenter presets
    are 4 presses apart on either link slider).

    ``measured``: this machine's step times (see :func:`~dml_lesson.teaching.plots.scaling.scaling_figure`), drawn when
    the data and model sizes are those of the measured runs. Choosing a network preset sets bandwidth and
    latency; moving either slider makes the network "custom".
    """
    nets = presets(calibration)
    net = nets[network]
    controls = {
        "rows": w.FloatLogSlider(value=n_rows, base=10, min=3, max=9, step=0.25, description="rows",
                                 readout_format=".2g"),
        "weights": w.FloatLogSlider(value=n_weights, base=10, min=1, max=8, step=0.25, description="weights d",
                                    readout_format=".2g"),
        "nodes": w.SelectionSlider(options=[2**k for k in range(11)], value=n_nodes, description="nodes N"),
        "shards": w.SelectionSlider(options=SHARDS, value=shards, description="shards S"),
        "overlap": w.Dropdown(options=BUCKETS, value=buckets, description="overlap"),
        "network": w.Dropdown(options=[*nets, "custom"], value=network, description="network"),
        "gbps": w.FloatLogSlider(value=net.bandwidth * 8 / 1e9, base=10, min=-1, max=3, step=0.25,
                                 description="bandwidth (Gb/s)", readout_format=".3g"),
        "latency_us": w.FloatLogSlider(value=net.latency * 1e6, base=10, min=0, max=5, step=0.25,
                                       description="latency (µs)", readout_format=".3g"),
    }

    def step(v: dict[str, Any], into: Figure | None) -> tuple[Figure, str]:
        rows, d, n = int(round(v["rows"])), int(round(v["weights"])), v["nodes"]
        chosen = Network(v["network"], latency=v["latency_us"] * 1e-6, bandwidth=v["gbps"] * 1e9 / 8)
        k, shards = v["overlap"], v["shards"]
        fig = scaling_figure(rows, d, chosen, calibration.compute_per_value, n, calibration, measured, k, shards,
                             into=into)
        # the sizes and the links as the sliders show them, then the rule at this point
        shown = (f"{v['rows']:.2g} rows, d = {v['weights']:.2g}, {v['gbps']:.3g} Gb/s, "
                 f"{v['latency_us']:.3g} µs; ")
        status = scaling_status(rows, d, n, chosen, calibration.compute_per_value, k, shards)
        return fig, Status(shown + status, status.severity)

    explorer = Explorer(controls, step, redraw_into=True)
    network_controls = [controls["network"], controls["gbps"], controls["latency_us"]]
    quiet = {"on": False}

    def network_changed(change: dict[str, Any]) -> None:
        """A preset sets the two sliders; a slider moved by hand makes the network custom; then one redraw."""
        if quiet["on"]:
            return
        quiet["on"] = True
        try:
            if change["owner"] is controls["network"] and change["new"] != "custom":
                controls["gbps"].value = nets[change["new"]].bandwidth * 8 / 1e9
                controls["latency_us"].value = nets[change["new"]].latency * 1e6
            elif change["owner"] is not controls["network"]:
                controls["network"].value = "custom"
        finally:
            quiet["on"] = False
        explorer.update()

    for control in network_controls:
        control.unobserve(explorer.on_change, names="value")
        control.observe(network_changed, names="value")
    explorer.widget.children = (w.HBox(list(controls.values())[:4]), w.HBox(list(controls.values())[4:]),
                                *explorer.widget.children[1:])
    return explorer


def scaling_status(n_rows: int, n_weights: int, n_nodes: int, network: Network, compute_per_value: float,
                   buckets: int = 1, shards: int = 8) -> Status:
    """The rule at the chosen point (notebook 12): each compared topology's speedup at N, which pay, and the rows
    from which the best of them pays (without overlap). ``shards``: the dedicated server shards compared.

    Severity: ``"ok"`` when every topology pays at N, ``"warn"`` when only some do (the choice of topology
    decides), ``"bad"`` when none does (stay on one machine).
    """
    pairs = compared(shards)
    speeds = {label(t, s): float(speedup(n_rows, n_weights, n_nodes, t, network, compute_per_value, s, buckets)[0])
              for t, s in pairs}
    best = max(speeds, key=speeds.get)
    shown = "; ".join(f"{name}: {value:.3g}" for name, value in speeds.items())
    paying = [name for name, value in speeds.items() if value > 1]
    topology, best_shards = pairs[list(speeds).index(best)]
    rows = _rows_text(break_even_rows(n_weights, n_nodes, topology, network, compute_per_value, best_shards))
    if len(paying) == len(speeds):
        verdict, severity = f"distribute: every topology pays; best {best} (pays from {rows} rows)", "ok"
    elif paying:
        verdict = f"{len(paying)} of {len(speeds)} topologies pay; best {best} (pays from {rows} rows)"
        severity = "warn"
    else:
        verdict, severity = f"stay on one machine: no topology pays (the best, {best}, from {rows} rows)", "bad"
    return Status(f"speedup at N = {n_nodes}: {shown}. {verdict}", severity)


def _rows_text(rows: float) -> str:
    if not np.isfinite(rows):
        return "never"
    return f"{rows:,.0f}" if rows < 1e6 else f"{rows:.2g}"
