"""Recovery cases that need a cluster of their own, run by tests/test_recovery.py in a fresh process each.

Usage: ``python tests/recovery_cases.py CASE``; the last line printed is a JSON object with the outcome.
Every cluster here (local, or an external scheduler and workers started as subprocesses) listens on 127.0.0.1
only and is closed before the process ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np

import dml_lesson as dml
from dml_lesson.cluster import faults, shards


@contextlib.contextmanager
def external_cluster(n_workers: int) -> Iterator[str]:
    """A scheduler and ``n_workers`` workers (each with its nanny) in processes of their own, on 127.0.0.1."""
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
         "--dashboard-address", "127.0.0.1:0", "--no-show"],
        stderr=subprocess.PIPE, text=True,
    )
    workers = None
    try:
        address = None
        for line in scheduler.stderr:
            match = re.search(r"Scheduler at:\s+(\S+)", line)
            if match:
                address = match.group(1)
                break
        assert address, "the scheduler did not start"
        workers = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host", "127.0.0.1", "--nthreads", "1",
             "--no-dashboard", "--dashboard-address", "127.0.0.1:0", "--nworkers", str(n_workers)],
            stderr=subprocess.DEVNULL,
        )
        yield address
    finally:
        dml.close_client()
        for proc in (workers, scheduler):
            if proc is not None:
                proc.terminate()
        for proc in (workers, scheduler):
            if proc is not None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def kill_mid_run(client, numpy_input: bool) -> dict:
    """Train, then train again with the only (or one) worker killed at step 30: same weights, how long."""
    X, y, _ = dml.make_regression(4000, 5, seed=0, block_size=500)
    if numpy_input:
        X, y = dml.to_numpy(X, y)
    kw = dict(n_nodes=4, lr=0.1, n_steps=60, client=client)
    reference = dml.distributed_gd(X, y, **kw)
    fault = faults.kill_at(30, worker=0, client=client)
    start = time.monotonic()
    result = dml.distributed_gd(X, y, on_step=fault, **kw)
    return {"same": bool(np.array_equal(result.weights, reference.weights)
                         and np.array_equal(result.losses, reference.losses)),
            "recoveries": result.params["recoveries"], "killed": len(fault.killed),
            "seconds": time.monotonic() - start, "workers_after": len(dml.worker_addresses(client))}


def too_large(check: bool) -> dict:
    """Numpy data whose shards are larger than the workers' memory: refused at once (``check``), or, with the
    check switched off, stopped as soon as the workers die building them."""
    if not check:
        shards.MEMORY_SHARE = 100.0
    client = dml.get_client(n_workers=2, memory_limit="400MiB")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2_800_000, 20))
    y = rng.normal(size=len(X))
    start = time.monotonic()
    try:
        dml.distributed_gd(X, y, n_nodes=2, n_steps=2, client=client)
    except Exception as exc:  # the outcome is the error itself
        return {"error": type(exc).__name__, "message": str(exc), "seconds": time.monotonic() - start}
    return {"error": None, "seconds": time.monotonic() - start}


def stop_mid_training(kind: str) -> dict:
    """Press Stop (SIGINT, as Jupyter sends it) while a run waits for a slowed worker; then train again."""
    client = dml.get_client(n_workers=2)
    X, y, _ = dml.make_regression(20_000, 5, seed=1, block_size=2500)
    run = {
        "actors": lambda n=40: dml.distributed_gd(X, y, n_nodes=4, n_steps=n, client=client),
        "tasks": lambda n=40: dml.distributed_gd(X, y, n_nodes=4, n_steps=n, client=client, transport="tasks"),
        "async": lambda n=200: dml.async_sgd(X, y, n_nodes=2, batch_size=64, n_updates=n, client=client),
    }[kind]
    reference = run()
    # a run far longer than the time to the Stop, whatever the load (40 slowed steps can end in about 1 s)
    long_run = lambda: run(1_000_000 if kind == "async" else 100_000)  # noqa: E731
    faults.slow_worker(1, 200.0, client)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    stopped = "no"
    try:
        long_run()
    except KeyboardInterrupt:
        stopped = "KeyboardInterrupt"
    except BaseException as exc:  # anything else is what the test reports
        stopped = f"{type(exc).__name__}: {exc}"
    finally:
        timer.cancel()
    faults.reset_slowdowns(client)
    again = run()
    same = bool(np.array_equal(again.weights, reference.weights)) if kind != "async" else bool(
        np.isfinite(again.losses[-1]))
    return {"stopped": stopped, "same_after": same}


def main(case: str) -> dict:
    if case.startswith("stop-"):
        try:
            return stop_mid_training(case.removeprefix("stop-"))
        finally:
            dml.close_client()
    if case in ("local-one-worker-dask", "local-one-worker-numpy"):
        try:
            return kill_mid_run(dml.get_client(n_workers=1), case.endswith("numpy"))
        finally:
            dml.close_client()
    if case in ("external-one-worker", "external-two-workers"):
        n = 1 if "one" in case else 2
        with external_cluster(n) as address:
            client = dml.get_client(address=address)
            client.wait_for_workers(n, timeout=60)
            return kill_mid_run(client, numpy_input=False)
    if case in ("too-large-refused", "too-large-workers-die"):
        try:
            return too_large(check=case.endswith("refused"))
        finally:
            dml.close_client()
    raise SystemExit(f"unknown case {case!r}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])), flush=True)
