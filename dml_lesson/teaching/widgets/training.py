"""Sliders of notebooks 01 to 07: each reruns an experiment of :mod:`dml_lesson.teaching.experiments`.

Each is an :class:`~dml_lesson.teaching.widgets.explorer.Explorer`: released controls rerun the experiment and
redraw the figure the notebook drew statically above the widget, with a status line under it.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import numpy as np
from matplotlib.figure import Figure

from ...cluster.client import get_client
from ...cluster.shards import place_shards
from ...core.data import to_numpy
from ...core.models import lipschitz_constant
from ...core.optim import gradient_descent
from ...ps.server import distributed_gd
from .. import plots
from ..experiments import (
    BATCH_SIZES,
    aggregate_runs,
    aggregate_status,
    codec_label,
    codec_runs,
    codec_status,
    dsgd_runs,
    dsgd_status,
    lr_status,
    sgd_runs,
    sgd_status,
)
from .explorer import Explorer


def lr_explorer(X: np.ndarray, y: np.ndarray, lr: float = 0.1, n_steps: int = 40,
                lr_range: tuple[float, float] = (0.01, 1.0)) -> Explorer:
    """Notebook 01: a learning-rate slider over GD on a two-weight problem, the bound 2/L marked.

    A key press multiplies the rate by 10**0.1 (about 1.26), on a grid through the default ``lr``: from 0.1,
    3 presses reach 1/L and 6 just pass 2/L on notebook 01's data.
    """
    bound = 2 / lipschitz_constant(X)
    w_star = np.linalg.lstsq(X, y, rcond=None)[0]
    key_step = 0.1  # in log10 units
    low = np.log10(lr) - np.floor(round((np.log10(lr) - np.log10(lr_range[0])) / key_step, 6)) * key_step
    slider = w.FloatLogSlider(value=lr, base=10, min=low, max=np.log10(lr_range[1]), step=key_step,
                              description="learning rate", readout_format=".3f")

    def step(v: dict[str, Any], into: Figure | None) -> tuple[Figure, str]:
        res = gradient_descent(X, y, lr=v["lr"], n_steps=n_steps)
        return plots.lr_figure(res, X, y, w_star, bound, lr_range, into=into), lr_status(res, bound)

    return Explorer({"lr": slider}, step, redraw_into=True)


def sgd_explorer(X: np.ndarray, y: np.ndarray, batch_size: int = 16, lr: float = 0.05, n_epochs: int = 3,
                 seed: int = 0) -> Explorer:
    """Notebook 02: batch-size and learning-rate sliders; SGD against GD for the same number of epochs.

    The batch sizes double per key press; the learning rate grows by 10**0.15 (about 1.41) per press, on a grid
    through the default ``lr``: from 0.05, 7 presses make batch 16 diverge on notebook 02's data.
    """
    w_star = np.linalg.lstsq(X, y, rcond=None)[0]
    sizes = [b for b in BATCH_SIZES if b < len(y)] + [len(y)]
    key_step = 0.15  # in log10 units
    low = np.log10(lr) - np.floor(round((np.log10(lr) + 3) / key_step, 6)) * key_step  # down to about 0.001
    high = np.log10(lr) + np.ceil(round(-np.log10(lr) / key_step, 6)) * key_step  # up to about 1
    controls = {
        "batch_size": w.SelectionSlider(options=sizes, value=batch_size, description="batch size"),
        "lr": w.FloatLogSlider(value=lr, base=10, min=low, max=high, step=key_step, description="learning rate",
                               readout_format=".3f"),
    }

    def step(v: dict[str, Any], into: Figure | None) -> tuple[Figure, str]:
        results = sgd_runs(X, y, v["batch_size"], v["lr"], n_epochs, seed)
        run = results[f"SGD, batch {v['batch_size']}"]
        return plots.sgd_figure(results, X, y, w_star, into=into), sgd_status(run)

    return Explorer(controls, step, redraw_into=True)


def layout_explorer(X: Any, y: Any, n_nodes: int = 4, layout: str = "contiguous", client: Any = None) -> Explorer:
    """Notebook 03: a node-count slider and a layout menu; the map of which rows live on which worker."""
    client = client or get_client()
    n_blocks = X.numblocks[0]
    y_values = to_numpy(y)
    controls = {
        "n_nodes": w.IntSlider(value=n_nodes, min=1, max=min(8, n_blocks), description="nodes"),
        "layout": w.Dropdown(options=["contiguous", "shuffled", "skewed", "noniid"], value=layout,
                             description="layout"),
    }

    def step(v: dict[str, Any]) -> tuple[Figure, str]:
        p = place_shards(client, X, y, v["n_nodes"], v["layout"])
        workers = sorted(set(p.workers))
        fig = plots.layout_figure(p.rows, p.n_rows, [workers.index(a) for a in p.workers], y_values,
                                  f"{v['n_nodes']} nodes, {v['layout']} layout")
        held = sum(p.sizes)
        status = (f"{v['n_nodes']} nodes, {v['layout']} layout: shard sizes {p.sizes}, {held} rows in all, "
                  "each row on exactly one node")
        return fig, status

    return Explorer(controls, step)


def aggregate_explorer(X: Any, y: Any, lr: float, n_nodes: int = 4, n_steps: int = 40,
                       client: Any = None) -> Explorer:
    """Notebook 04: a node-count slider; the weighted mean against the source's sum of node gradients."""
    client = client or get_client()
    n_max = min(8, X.numblocks[0] if hasattr(X, "numblocks") else len(y))
    controls = {"n_nodes": w.IntSlider(value=n_nodes, min=1, max=n_max, description="nodes")}

    def step(v: dict[str, Any], into: Figure | None) -> tuple[Figure, str]:
        results = aggregate_runs(X, y, v["n_nodes"], lr, n_steps, client)
        return plots.aggregate_figure(results, v["n_nodes"], into=into), aggregate_status(results)

    return Explorer(controls, step, redraw_into=True)


def dsgd_explorer(X: Any, y: Any, lr: float = 0.05, n_nodes: int = 2, batch_size: int = 8, n_steps: int = 60,
                  seed: int = 0, scale_lr: bool = True, client: Any = None, floor: float | None = None) -> Explorer:
    """Notebook 05: node-count and per-node batch sliders, and the linear learning-rate scaling rule.

    ``floor``: the dotted line of :func:`~dml_lesson.teaching.plots.dsgd_figure` (the notebook's static figure
    passes the same). The batch sizes offered fit the shards at the most nodes (a batch is at most a shard).
    """
    client = client or get_client()
    n_max = min(8, X.numblocks[0] if hasattr(X, "numblocks") else len(y))
    sizes = [b for b in BATCH_SIZES if b <= len(y) // n_max] or [1]
    controls = {
        "n_nodes": w.IntSlider(value=n_nodes, min=1, max=n_max, description="nodes"),
        "batch_size": w.SelectionSlider(options=sizes, value=batch_size, description="batch per node"),
        "scale_lr": w.Checkbox(value=scale_lr, description="scale lr with the node count"),
    }

    one_node: dict[int, Any] = {}  # the one-node run of each batch size: the node slider does not change it

    def step(v: dict[str, Any], into: Figure | None) -> tuple[Figure, str]:
        results = dsgd_runs(X, y, lr, v["n_nodes"], v["batch_size"], v["scale_lr"], n_steps, seed, client,
                            one_node)
        return plots.dsgd_figure(results, floor=floor, into=into), dsgd_status(results)

    return Explorer(controls, step, redraw_into=True)


def codec_explorer(X: Any, y: Any, n_nodes: int = 4, lr: float = 0.2, n_steps: int = 60,
                   client: Any = None) -> Explorer:
    """Notebook 06: a codec menu, its compression slider and error feedback; loss against bytes sent."""
    from ...core.codecs import make_codec

    client = client or get_client()
    controls = {
        "codec": w.Dropdown(options=["top-k", "random-k", "quantize", "sign"], value="top-k", description="codec"),
        # the kept share k/d in percent, as the status writes it (15.8%); 5 presses from 10% to 1% or to 100%
        "percent": w.FloatLogSlider(value=10.0, base=10, min=0, max=2, step=0.2, description="kept share k/d (%)",
                                    readout_format=".3g"),
        "bits": w.IntSlider(value=4, min=1, max=8, description="bits (quantize)"),
        "error_feedback": w.Checkbox(value=False, description="error feedback"),
    }

    baseline = codec_runs(X, y, {"no compression": None}, n_nodes, lr, n_steps, client)  # the same every time

    def enable(change: Any = None) -> None:  # each codec's own knob is active, the other greyed out
        codec = controls["codec"].value
        controls["percent"].disabled = codec not in ("top-k", "random-k")
        controls["bits"].disabled = codec != "quantize"

    controls["codec"].observe(enable, names="value")
    enable()

    def step(v: dict[str, Any], into: Figure | None) -> tuple[Figure, str]:
        v = {**v, "ratio": v["percent"] / 100}
        codec = make_codec(v["codec"], ratio=v["ratio"], bits=v["bits"], error_feedback=v["error_feedback"])
        results = {**baseline, **codec_runs(X, y, {codec_label(v): codec}, n_nodes, lr, n_steps, client)}
        return plots.bytes_figure(results, into=into), codec_status(results)

    return Explorer(controls, step, redraw_into=True)


def straggler_explorer(X: Any, y: Any, n_nodes: int = 4, n_steps: int = 4, worker: int = 1,
                       client: Any = None) -> Explorer:
    """Notebook 07: a slowdown slider for one worker and a count r of backup nodes; the synchronous timeline.

    The slowdown moves in steps of 1 (3 presses from the default 4 down to full speed, 6 up to 10); the backup
    count from 0 to N - 1. The timeline marks the node steps the server went on without (``n_nodes``)."""
    from ...cluster.faults import reset_slowdowns, slow_worker
    from ...cluster.timeline import Timeline

    client = client or get_client()
    controls = {
        "factor": w.FloatSlider(value=4.0, min=1.0, max=10.0, step=1.0,
                                description=f"slowdown of worker {worker}"),
        "backups": w.IntSlider(value=0, min=0, max=n_nodes - 1, description="backup nodes r"),
    }

    def step(v: dict[str, Any], into: Figure | None) -> tuple[Figure, str]:
        try:
            slow_worker(worker, v["factor"], client)
            with Timeline(client) as tl:
                res = distributed_gd(X, y, n_nodes=n_nodes, n_steps=n_steps, transport="tasks",
                                     backups=v["backups"], client=client)
        finally:
            reset_slowdowns(client)
        median = 1e3 * float(np.median(res.step_times))
        title = f"worker {worker} {v['factor']:g}x slower, {v['backups']} backup(s): {median:.0f} ms per step"
        return (plots.timeline_figure(tl.rows, title, into=into, n_nodes=n_nodes),
                f"{title}; loss {res.losses[-1]:.4g} after {n_steps} steps")

    return Explorer(controls, step, redraw_into=True)
