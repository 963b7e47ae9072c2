"""Notebook 08's sliders: a staleness bound for the asynchronous server, and local steps for local SGD.

Both are :class:`~dml_lesson.teaching.widgets.training.Explorer` objects: they rerun training on the cluster when a
control is
released and redraw the figure that the notebook shows statically above them (same functions, same defaults).
The reference run each compares with (no bound; one local step) is computed once per explorer and reused.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
from matplotlib.figure import Figure

from ...cluster.client import get_client
from ...variants.async_server import async_sgd
from .. import plots
from ..experiments import BOUNDS, bound_value, local_run, local_status, staleness_runs, staleness_status
from .explorer import Explorer

LOCAL_STEPS = (1, 2, 4, 8, 16, 32)
IID_LABELS = {"IID (contiguous)": "contiguous", "non-IID (sorted by y)": "noniid"}


def staleness_explorer(X: Any, y: Any, bound: str = "2", n_nodes: int = 4, lr: float = 0.05, batch_size: int = 16,
                       n_gradients: int = 400, seed: int = 0, floor: float | None = None,
                       client: Any = None, initial: dict | None = None) -> Explorer:
    """Notebook 08: a staleness-bound slider; the histogram of staleness and the loss against time.

    ``initial``: the runs of :func:`staleness_runs` at the default bound, already drawn by the notebook's static
    figure; the first view reuses them (the same picture, and no second training).
    """
    client = client or get_client()
    kw = dict(n_nodes=n_nodes, lr=lr, batch_size=batch_size, n_gradients=n_gradients, seed=seed, client=client)
    pending = dict(initial or {})
    reference = {k: r for k, r in pending.items() if r.params["staleness_bound"] is None} or \
        staleness_runs(X, y, None, **kw)
    run_kw = dict(n_nodes=n_nodes, lr=lr, batch_size=batch_size, seed=seed, client=client)
    controls = {"bound": w.SelectionSlider(options=list(BOUNDS), value=bound, description="staleness bound")}

    def step(v: dict[str, Any], into: Figure | None) -> tuple[Figure, str]:
        value = bound_value(v["bound"])
        results = dict(reference)  # the run without a bound, made once
        if pending and value == bound_value(bound):  # the first view: the notebook's runs
            results = dict(pending)
            pending.clear()
        elif value is not None:
            results[f"bound {value}"] = async_sgd(X, y, n_updates=n_gradients // n_nodes, staleness_bound=value,
                                                  **run_kw)
        return plots.staleness_figure(results, value, floor, into=into), staleness_status(results)

    return Explorer(controls, step, redraw_into=True)


def local_steps_explorer(X: Any, y: Any, local_steps: int = 16, layout: str = "noniid", n_nodes: int = 4,
                         lr: float = 0.2, batch_size: int = 16, n_epochs: float = 2.0, seed: int = 0,
                         floor: float | None = None, client: Any = None, initial: dict | None = None) -> Explorer:
    """Notebook 08: a local-steps slider and an IID / non-IID switch; loss against epochs and messages.

    ``initial``: the runs of :func:`~dml_lesson.teaching.experiments.local_runs` at the defaults, already drawn
    by the notebook's static figure; the first view reuses them.
    """
    kw = dict(n_nodes=n_nodes, lr=lr, batch_size=batch_size, n_epochs=n_epochs, seed=seed,
              client=client or get_client())
    reference: dict[str, Any] = {}  # the H = 1 run of each layout, made once
    pending = dict(initial or {})
    if pending:
        reference[layout] = pending["H = 1 (distributed SGD)"]
    controls = {
        "local_steps": w.SelectionSlider(options=list(LOCAL_STEPS), value=local_steps, description="local steps H"),
        "layout": w.Dropdown(options=list(IID_LABELS), value={v: k for k, v in IID_LABELS.items()}[layout],
                             description="shards"),
    }

    def step(v: dict[str, Any], into: Figure | None) -> tuple[Figure, str]:
        kind = IID_LABELS[v["layout"]]
        if kind not in reference:
            reference[kind] = local_run(X, y, 1, kind, **kw)
        results = {"H = 1 (distributed SGD)": reference[kind]}
        if pending and (kind, v["local_steps"]) == (layout, local_steps):  # the first view: the notebook's runs
            results = dict(pending)
            pending.clear()
        elif v["local_steps"] > 1:
            results[f"H = {v['local_steps']}"] = local_run(X, y, v["local_steps"], kind, **kw)
        return plots.local_figure(results, floor, into=into), local_status(results, prefix=f"{v['layout']}: ")

    return Explorer(controls, step, redraw_into=True)
