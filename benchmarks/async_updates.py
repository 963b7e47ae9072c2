"""Updates per second of the asynchronous parameter server on the course's 2-worker cluster (issue 6's target).

Linear regression, ``dml.make_regression(20_000, 20, seed=0)`` in 16 blocks, mini-batches of 16 rows per node.
In one run, interleaved over ``--rounds`` rounds (medians printed):

1. ``async_sgd(n_nodes=2)`` and ``async_sgd(n_nodes=4)`` (no staleness bound): server updates per second,
   i.e. gradients applied per second of the run (``AsyncResult.updates_per_second``);
2. ``async_sgd(n_nodes=4, staleness_bound=2)``: updates (completed clocks of 4 gradients) per second;
3. ``distributed_sgd(n_nodes=2)`` and ``(n_nodes=4)`` on the same data: synchronous steps per second, and the
   gradients per second they use (steps/s x nodes), the fair comparison with the asynchronous server.

Prints the figures and the target (async >= 1,000 updates/s on 2 workers, best of the node counts, median over
rounds). Exits 0 when the target fails (it is a report), non-zero on errors. The machine is shared and noisy:
compare figures from one run.

Run from the repository root::

    .venv/bin/python benchmarks/async_updates.py             # about 30 s
    .venv/bin/python benchmarks/async_updates.py --rounds 1 --updates 1000
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np

import dml_lesson as dml
from dml_lesson.variants.async_server import async_sgd

TARGET = 1000.0
LR, BATCH = 0.01, 16


def measure(X, y, client, n_updates: int, rounds: int) -> dict[str, list[float]]:
    """Updates (or steps) per second and gradients per second of each method, one list entry per round."""
    runs = {
        "async, 2 nodes": lambda: async_sgd(X, y, n_nodes=2, lr=LR, batch_size=BATCH, n_updates=n_updates,
                                            client=client),
        "async, 4 nodes": lambda: async_sgd(X, y, n_nodes=4, lr=LR, batch_size=BATCH, n_updates=n_updates,
                                            client=client),
        "SSP bound 2, 4 nodes": lambda: async_sgd(X, y, n_nodes=4, lr=LR, batch_size=BATCH,
                                                  n_updates=n_updates // 4, staleness_bound=2, client=client),
        "sync, 2 nodes": lambda: dml.distributed_sgd(X, y, n_nodes=2, lr=LR, batch_size=BATCH,
                                                     n_steps=n_updates // 4, client=client),
        "sync, 4 nodes": lambda: dml.distributed_sgd(X, y, n_nodes=4, lr=LR, batch_size=BATCH,
                                                     n_steps=n_updates // 8, client=client),
    }
    for run in runs.values():  # warm up: shards placed and pinned, actors created
        run()
    figures: dict[str, list[float]] = {name: [] for name in runs}
    grads: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            res = run()
            per_second = res.n_steps / float(np.sum(res.step_times))
            per_update = 1 if name.startswith("async") else res.params["n_nodes"]
            figures[name].append(per_second)
            grads[name].append(per_second * per_update)
    return {name: [statistics.median(figures[name]), statistics.median(grads[name])] for name in runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=3000, help="updates per asynchronous run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds")
    args = parser.parse_args(argv)
    client = dml.get_client()
    X, y, _ = dml.make_regression(20_000, 20, seed=0, block_size=1250)
    print(f"{len(dml.worker_addresses(client))} workers; 20,000 rows x 21 columns; batch {BATCH} per node; "
          f"median of {args.rounds} rounds")
    table = measure(X, y, client, args.updates, args.rounds)
    print(f"{'method':<24}{'updates/s':>12}{'gradients/s':>14}")
    for name, (per_second, grads) in table.items():
        print(f"{name:<24}{per_second:>12.0f}{grads:>14.0f}")
    best = max(table["async, 2 nodes"][0], table["async, 4 nodes"][0])
    sync = max(table["sync, 2 nodes"][1], table["sync, 4 nodes"][1])
    print(f"\nasync server: {best:.0f} updates/s on 2 workers (target >= {TARGET:.0f}: "
          f"{'PASS' if best >= TARGET else 'FAIL'}); {best / sync:.1f}x the gradients/s of the synchronous server")
    dml.close_client()
    return 0


if __name__ == "__main__":
    sys.exit(main())
