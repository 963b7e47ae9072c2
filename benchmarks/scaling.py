"""The scaling model of notebook 12 against measured runs on this machine: predicted vs measured step time.

Calibrates :mod:`dml_lesson.analysis.costmodel` with :mod:`dml_lesson.analysis.calibration` (compute per row and
weight in and beyond the cache, cache size; latency, bandwidth and gap g of the server's direct calls and of the
ring's task hops; the fixed cost of a one-node step of each topology, on an 8,000 x 10 problem that is
not one of the checked sizes), then runs ``dml.distributed_gd`` with N = 1, 2, 4 nodes and both topologies
(``topology="server"`` with actors, ``topology="ring"``) on two problem sizes, and prints the median measured step
time, the prediction of :func:`~dml_lesson.analysis.costmodel.local_step_time` and the relative error. The
calibration and the checked runs are separate measurements. Timings on a shared 2-core machine are noisy: run it on
a quiet machine, and read the error column, not the absolute times.

Run from the repository root::

    .venv/bin/python benchmarks/scaling.py            # about 30 s
    .venv/bin/python benchmarks/scaling.py --steps 5  # quicker
"""

from __future__ import annotations

import argparse
import os

import numpy as np

import dml_lesson as dml
from dml_lesson.analysis.calibration import calibrate, measure_steps, model_errors
from dml_lesson.analysis.costmodel import local_step_time

SIZES = [(20_000, 50), (200_000, 100)]
NODES = [1, 2, 4]
TOLERANCE = 0.5
"""The stated tolerance: the model is meant to be within 50% of a measured step on a quiet machine."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run (default 10)")
    args = parser.parse_args()
    client = dml.get_client()
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    cal = calibrate(client)
    print(f"compute: {cal.compute_per_value * 1e9:.2f} ns per row and weight in the cache "
          f"({cal.cache_bytes / 2**20:.0f} MB), {cal.memory_per_value * 1e9:.2f} ns from memory")
    for link in (cal.direct, cal.hop):
        print(f"{link.name}: latency a {link.latency * 1e3:.2f} ms, gap g {link.overhead * 1e3:.2f} ms per extra "
              f"message, bandwidth {link.bandwidth / 1e6:.0f} MB/s")
    print(f"fixed cost of a one-node step: server {cal.server_fixed * 1e3:.2f} ms, ring {cal.ring_fixed * 1e3:.2f} ms")
    print(f"\n{'rows':>8} {'d':>4} {'N':>2} {'topology':>8} {'measured':>10} {'predicted':>10} {'error':>7}")
    errors = []
    for n_rows, d in SIZES:
        X, y, _ = dml.make_regression(n_rows, d - 1, seed=0, block_size=n_rows // 16)
        measured = measure_steps(client, X, y, NODES, n_steps=args.steps)
        for (topology, n), error in model_errors(cal, measured).items():
            errors.append(error)
            predicted = local_step_time(cal, n_rows, d, n, topology)
            print(f"{n_rows:>8} {d:>4} {n:>2} {topology:>8} {measured[topology][n] * 1e3:>7.1f} ms"
                  f" {predicted * 1e3:>7.1f} ms {error:>+6.0%}")
    worst = max(abs(e) for e in errors)
    print(f"\nmedian |error| {np.median(np.abs(errors)):.0%}, worst {worst:.0%} "
          f"(stated tolerance {TOLERANCE:.0%}: {'within' if worst <= TOLERANCE else 'NOT within'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
