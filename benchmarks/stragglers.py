"""How much a straggler costs, and what backup workers and the asynchronous server win back, on this machine.

The tests check what the mechanisms guarantee (a synchronous step waits for a held worker and uses its nodes;
backup workers use exactly the nodes that can answer; an asynchronous run finishes without a held node; a slowed
worker sleeps ``factor - 1`` times its compute). How large the effects are depends on the machine and its load, so
the speed ratios the tests used to assert are measured here, in one run, each printed with the claim it supports:

1. a worker slowed 6x (``faults.slow_worker``), actors, 200,000 x 11, 2 nodes: median step / the unslowed one;
2. worker 1 slowed 20x, tasks, 400,000 x 11, 4 nodes, timeline of the slowed run: the slowest node's median compute
   over the fastest's, the slowed step over the unslowed one, and with 2 backup workers the step over the slowed one
   and over the unslowed one;
3. the asynchronous server, 100,000 x 4, 2 nodes, batches of 20,000, 40 updates, node 1's worker slowed 20x:
   gradients pushed per node and the mean staleness of each node's gradients;
4. the asynchronous server of the tests, 2,000 x 4, 4 nodes, batches of 16, 300 updates, no slowdown: the final
   loss against the noise floor (0.01) and the largest staleness;
5. notebook 12's calibration (``hops=16, repeats=3``): the fixed costs of a one-node step of each topology against
   the direct call's latency.

Prints the figures and, for each, the bound a test asserted until it moved here (``holds`` or ``MISSED``). Exits 0
when a bound is missed (it is a report), non-zero on errors. The machine is shared and noisy: compare figures from
one run.

Run from the repository root::

    .venv/bin/python benchmarks/stragglers.py            # about 30 s
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from machine import busy_cores  # benchmarks/machine.py: the scripts run from this folder

import dml_lesson as dml
from dml_lesson.analysis.calibration import calibrate
from dml_lesson.cluster import faults
from dml_lesson.cluster.client import restore_workers
from dml_lesson.cluster.timeline import Timeline
from dml_lesson.variants.async_server import async_sgd

ROWS: list[tuple[str, float, str, bool]] = []
"""What was measured: label, value, the bound the tests used to assert, whether it holds."""


def report(label: str, value: float, bound: str, holds: bool) -> None:
    ROWS.append((label, value, bound, bool(holds)))
    print(f"{label:<58}{value:>10.3g}   {bound:<22}{'holds' if holds else 'MISSED'}", flush=True)


def slowed_steps(client) -> None:
    X, y, _ = dml.make_regression(200_000, 10, seed=1)
    kw = dict(n_nodes=2, lr=0.1, n_steps=6, client=client)
    dml.distributed_gd(X, y, **kw)  # place the shards, warm up
    fast = np.median(dml.distributed_gd(X, y, **kw).step_times)
    try:
        faults.slow_worker(1, 6.0, client)
        slow = np.median(dml.distributed_gd(X, y, **kw).step_times)
    finally:
        faults.reset_slowdowns(client)
    report("1. slowed 6x: step / unslowed step (actors)", slow / fast, "> 2", slow > 2 * fast)


def straggler_and_backups(client) -> None:
    X, y, _ = dml.make_regression(400_000, 10, seed=2)
    kw = dict(n_nodes=4, n_steps=6, transport="tasks", client=client)
    dml.distributed_gd(X, y, **kw)  # place the shards, warm up
    fast = np.median(dml.distributed_gd(X, y, **kw).step_times)
    try:
        faults.slow_worker(1, 20.0, client)  # the slowdown must dominate the ~30 ms of task overhead per step
        with Timeline(client) as timeline:
            slow = np.median(dml.distributed_gd(X, y, **kw).step_times)
        backed = np.median(dml.distributed_gd(X, y, backups=2, **kw).step_times)
    finally:
        faults.reset_slowdowns(client)
    compute = timeline.per_node("compute")
    spread = max(compute.values()) / min(compute.values())
    report("2. slowed 20x: slowest node's compute / fastest's (tasks)", spread, "> 2.5", spread > 2.5)
    report("   slowed 20x: step / unslowed step", slow / fast, "> 1.5", slow > 1.5 * fast)
    report("   2 backups, slowed 20x: step / slowed step", backed / slow, "< 0.75", backed < 0.75 * slow)
    report("   2 backups, slowed 20x: step / unslowed step", backed / fast, "< 1.5", backed < 1.5 * fast)


def async_straggler(client) -> None:
    X, y, _ = dml.make_regression(100_000, 3, noise=0.1, seed=2)  # big batches: computing, not messages, dominates
    slow = dml.place_shards(client, X, y, n_nodes=2).workers[1]
    faults.slow_worker(slow, 20.0, client)
    try:
        res = async_sgd(X, y, n_nodes=2, lr=0.05, batch_size=20_000, n_updates=40, client=client)
    finally:
        faults.reset_slowdowns(client)
    counts = np.bincount(res.nodes, minlength=2)
    report("3. async, node 1 slowed 20x: gradients of node 0 / node 1", counts[0] / max(counts[1], 1),
           "> 1 (node 1 pushed)" if counts[1] else "> 1 (node 1: none)", counts[0] > counts[1])
    stale = [res.staleness[res.nodes == n].mean() if counts[n] else float("nan") for n in (0, 1)]
    report("   mean staleness, node 1 - node 0", stale[1] - stale[0], "> 0", stale[1] > stale[0])


def async_convergence(client) -> None:
    X, y = dml.make_regression(2000, 3, noise=0.1, seed=3, block_size=125)[:2]
    res = async_sgd(X, y, n_nodes=4, lr=0.05, batch_size=16, n_updates=300, seed=1, client=client)
    report("4. async, 4 nodes, 300 updates: final loss", res.losses[-1], "< 0.02", res.losses[-1] < 0.02)
    report("   largest staleness", res.staleness.max(), "(reported)", True)


def calibration_order(client) -> None:
    cal = calibrate(client, hops=16, repeats=3)
    report("5. calibration: ring's fixed cost (ms)", cal.ring_fixed * 1e3, "> server's",
           cal.ring_fixed > cal.server_fixed)
    report("   server's fixed cost (ms)", cal.server_fixed * 1e3, "> direct latency",
           cal.server_fixed > cal.direct.latency)
    report("   direct call's latency (ms)", cal.direct.latency * 1e3, "(reported)", True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    print(f"busy cores before the run (other processes): {busy_cores()}")
    client = dml.get_client()
    restore_workers(client)
    print(f"{len(dml.worker_addresses(client))} workers\n")
    print(f"{'measure':<58}{'value':>10}   {'bound (was a test)':<22}verdict")
    for part in (slowed_steps, straggler_and_backups, async_straggler, async_convergence, calibration_order):
        part(client)
    missed = [label.strip() for label, _, _, holds in ROWS if not holds]
    print(f"\n{len(ROWS) - len(missed)} of {len(ROWS)} bounds hold" + (f"; missed: {missed}" if missed else ""))
    dml.close_client()
    print(f"busy cores after the run (other processes): {busy_cores()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
