"""Widget latency: set each notebook widget's control from Python and time the rerun and redraw.

Each widget is built with the same data and defaults as its notebook; each control is moved through a few
values, and the median time from setting the value to the new figure (PNG) being ready is printed. Goals
(issue 6): 0.2 s for single-machine widgets (01, 02, and 11's, which draw the cost model), 0.5 s for cluster
widgets (DESIGN.md's budgets were 0.3 s and 1 s).

Run: ``.venv/bin/python benchmarks/widget_latency.py``
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import dml_lesson as dml
from dml_lesson.analysis import calibration
from dml_lesson.teaching import widgets
from dml_lesson.teaching.widgets import asynchronous as widgets_async
from dml_lesson.teaching.widgets import privacy as widgets_privacy
from dml_lesson.teaching.widgets import scaling as widgets_scaling

MOVES = {
    "01 learning rate": ("lr", [0.05, 0.3, 0.5, 0.1, 0.2]),
    "02 batch size": ("batch_size", [1, 64, 512, 4, 16]),
    "02 learning rate": ("lr", [0.01, 0.2, 0.05, 0.1, 0.02]),
    "03 nodes": ("n_nodes", [2, 8, 3, 5, 4]),
    "03 layout": ("layout", ["shuffled", "skewed", "noniid", "contiguous", "skewed"]),
    "04 nodes": ("n_nodes", [1, 2, 8, 3, 4]),
    "05 nodes": ("n_nodes", [4, 8, 1, 3, 2]),
    "05 batch per node": ("batch_size", [1, 32, 128, 4, 8]),
    "05 scale lr": ("scale_lr", [True, False, True, False, True]),
    "06 codec": ("codec", ["random-k", "quantize", "sign", "top-k", "quantize"]),
    "06 kept share": ("percent", [1.0, 50.0, 5.0, 20.0, 10.0]),
    "06 bits": ("bits", [1, 8, 2, 6, 4]),
    "06 error feedback": ("error_feedback", [True, False, True, False, True]),
    "07 slowdown": ("factor", [1.0, 8.0, 2.0, 6.0, 4.0]),
    "07 backups": ("backups", [1, 3, 2, 0, 1]),
    "08 staleness bound": ("bound", ["0", "8", "none", "1", "2"]),
    "08 local steps": ("local_steps", [1, 32, 4, 8, 16]),
    "08 IID or not": ("layout", ["IID (contiguous)", "non-IID (sorted by y)"] * 2 + ["IID (contiguous)"]),
    "10 noise": ("noise_multiplier", [0.0, 4.0, 0.5, 2.0, 1.0]),
    "10 clip norm": ("clip_norm", [0.1, 10.0, 0.3, 3.0, 1.0]),
    "12 topology": ("topology", ["server", "ring"] * 2 + ["server"]),
    "12 nodes": ("n_nodes", [2, 8, 3, 6, 4]),
    "12 frame": ("frame", [1, 5, 2, 9, 0]),
    "12 rows": ("rows", [1e3, 1e9, 1e5, 1e7, 2e4]),
    "12 weights d": ("weights", [10.0, 1e8, 1e3, 1e5, 50.0]),
    "12 nodes N": ("nodes", [2, 1024, 8, 256, 64]),
    "12 network": ("network", ["100 Gb/s datacenter", "this laptop (measured)", "10 Gb/s datacenter"] * 2),
    "12 bandwidth": ("gbps", [0.1, 1000.0, 1.0, 100.0, 10.0]),
    "12 latency": ("latency_us", [1.0, 1e5, 10.0, 1e3, 50.0]),
}
STRAGGLER_ROWS = 400_000  # as notebook 07; its redraws include the slowdown they show (4 steps of a slow worker)
BUDGET = {"01": 0.2, "02": 0.2, "03": 0.5, "04": 0.5, "05": 0.5, "06": 0.5, "07": 0.5, "08": 0.5, "10": 0.5,
          "12": 0.2}  # notebook 12's explorers compute nothing on the cluster: a drawing and the cost model


def _owner(label: str, explorers: dict) -> str:
    """The explorer of a control: the notebook's only one, or (08, 12) the one whose controls include it."""
    name = MOVES[label][0]
    found = [k for k, e in explorers.items() if k[:2] == label[:2] and name in e.controls]
    return found[0]


def time_moves(explorers: dict[str, Any], labels: list[str]) -> None:
    """Move each control through its values; print the median and largest time to the new figure."""
    for label in labels:
        name, values = MOVES[label]
        explorer = explorers[_owner(label, explorers)]
        times = []
        for value in values:
            start = time.perf_counter()
            explorer.controls[name].value = value
            times.append(time.perf_counter() - start)
            assert "error:" not in explorer.status.value, explorer.status.value
        median, budget = float(np.median(times)), BUDGET[label[:2]]
        verdict = "within budget" if median <= budget else "OVER budget"
        print(f"{label:<22}{median:>10.3f}{max(times):>8.3f}{budget:>10.1f}  {verdict}")


def main() -> None:
    two = dml.make_regression(1000, 1, noise=0.1, seed=0, w_true=[1.0, -2.0], x_mean=1.0, block_size=125)
    X_np, y_np, _ = two.to_numpy()
    print(f"{'widget control':<22}{'median s':>10}{'max s':>8}{'budget s':>10}  verdict")
    # Notebooks 01 and 02 start no cluster: their explorers are timed before this process has one (a
    # LocalCluster's scheduler runs in the kernel's process and takes its share of the interpreter).
    single = {"01": widgets.lr_explorer(X_np, y_np, lr=0.1, n_steps=40),
              "02": widgets.sgd_explorer(X_np, y_np, batch_size=16, lr=0.05, n_epochs=3)}
    time_moves(single, [label for label in MOVES if label[:2] in single])
    client = dml.get_client()
    X03, y03, _ = dml.make_regression(4000, 3, noise=0.1, seed=1, block_size=250)
    X06, y06, _ = dml.make_regression(4000, 499, noise=0.1, seed=0, block_size=250)
    X07, y07, _ = dml.make_regression(STRAGGLER_ROWS, 10, seed=2)
    X08, y08, _ = dml.make_regression(4000, 3, noise=0.1, seed=1, block_size=250)
    X10, y10, _ = dml.make_regression(4000, 4, noise=0.1, seed=0, block_size=500)
    cal = calibration.calibrate(client, hops=16, repeats=3)
    explorers = {
        "03": widgets.layout_explorer(X03, y03, n_nodes=4, client=client),
        "04": widgets.aggregate_explorer(two.X, two.y, lr=0.15, n_nodes=4, n_steps=40, client=client),
        "05": widgets.dsgd_explorer(two.X, two.y, lr=0.05, n_nodes=2, batch_size=8, n_steps=60, client=client),
        "06": widgets.codec_explorer(X06, y06, n_nodes=4, lr=0.2, n_steps=60, client=client),
        "07": widgets.straggler_explorer(X07, y07, n_nodes=4, n_steps=4, worker=1, client=client),
        "08 staleness": widgets_async.staleness_explorer(X08, y08, bound="2", floor=0.01, client=client),
        "08 local": widgets_async.local_steps_explorer(X08, y08, local_steps=16, layout="noniid", floor=0.01,
                                                       client=client),
        "10": widgets_privacy.dp_explorer(X10, y10, noise_multiplier=1.0, clip_norm=1.0, n_nodes=2, lr=0.1,
                                          batch_size=20, n_steps=100, client=client),
        "12 topology": widgets_scaling.topology_explorer("ring", n_nodes=4),
        "12 scaling": widgets_scaling.scaling_explorer(cal, None, n_rows=20_000, n_weights=50),
    }
    time_moves(explorers, [label for label in MOVES if label[:2] not in single])
    dml.close_client()


if __name__ == "__main__":
    main()
