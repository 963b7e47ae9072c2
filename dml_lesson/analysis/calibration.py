"""Calibrating the cost model on this machine: small benchmarks of compute, links and fixed costs (notebook 12).

:func:`calibrate` measures what :func:`~dml_lesson.analysis.costmodel.local_step_time` needs (the compute per row and
weight in the cache and from memory, the cache size, latency, bandwidth and gap ``g`` of the server's
direct calls and of the ring's task hops, and the fixed cost of a one-node step of each topology), none of it on a
run the model is checked against; :func:`measure_steps` times such runs and :func:`model_errors` compares them
with the model (``benchmarks/scaling.py``).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import numpy as np
from distributed import Client, Future, wait

from ..cluster.client import worker_addresses
from ..core.checks import check_int
from ..core.data import make_regression
from ..core.models import LINEAR
from ..core.settings import CALIBRATION_TIMEOUT
from ..ps.ring import TOPOLOGIES
from ..ps.server import distributed_gd
from ..ps.transport import call_actors, run_on_loop
from .costmodel import ITEMSIZE, Calibration, Network, local_step_time

FIXED_COST_SIZE = (8_000, 10)
"""Rows and weights of the small problem whose one-node steps give each topology's fixed cost per step: not
one of ``benchmarks/scaling.py``'s sizes; 80,000 values, more than :data:`~dml_lesson.ps.transport.INLINE_CELLS`,
so that the node computes in a thread, as it does in the checked runs."""
SWEEP_MB = (4, 16, 64, 128)
"""Sizes of ``X`` (MB) whose gradient :func:`calibrate` times to find the cache size and the memory bandwidth."""
BIG_RETRIES = 4
"""Extra rounds of a small and a big message that :func:`calibrate` measures for a link whose big message was not
yet measured slower than its small one (other work on the machine disturbed them); past these, the link's
bandwidth is bounded instead (see :func:`_link`)."""
BOUNDED_NOTE = " (bandwidth bounded: the machine was too busy to measure it)"
"""Added to a link's name when its bandwidth is a bound, not a measurement (see :func:`_link`)."""


def calibrate(client: Client, n_rows: int = 40_000, n_weights: int = 50, hops: int = 30, repeats: int = 5,
              concurrent: int = 4, seed: int = 0) -> Calibration:
    """Measure this machine for :func:`local_step_time` with small benchmarks, none of them a checked run
    (notebook 12, ``benchmarks/scaling.py``). Takes a few seconds.

    - compute: a gradient of ``n_rows x n_weights`` timed inside a worker (the fastest of ``repeats``);
      gradients over :data:`SWEEP_MB` MB on one worker: the cache size is the largest computed faster per
      value than the geometric mean of the smallest's and the largest's times; the largest on every worker at
      once gives the rate from memory;
    - direct link: ``1`` and ``concurrent`` calls at once to echo actors spread over the workers, issued from
      the client's event loop and answered from a worker thread, as the server's steps on large shards are.
      ``a``: half the median single round trip; ``g``: the extra time of the ``concurrent`` calls over one,
      per extra message (two per call); ``B``: from a 4 MB call (when other work on the machine hides its extra
      time, up to :data:`BIG_RETRIES` more rounds are measured, then ``B`` is bounded: see :func:`_link`);
    - hop link: ``1`` and ``concurrent`` chains of ``hops`` dependent tasks side by side, each task on the
      other worker from the previous one, run back to back (each run's tasks are released while the next
      runs, as in the ring). ``a``: the median time per hop of one chain; ``g``: the extra time per round
      per extra chain; ``B``: from chains passing 4 MB;
    - fixed costs: one-node runs of ``distributed_gd`` with each topology on a :data:`FIXED_COST_SIZE`
      problem: the median step minus its compute.

    A busy machine makes the numbers noisier, never an error: every value is finite, the costs >= 0.

    Parameters
    ----------
    client : Client
    n_rows, n_weights : int
        The timed gradient's size (100 to 10,000,000 rows; 1 to 10,000 weights).
    hops, repeats, concurrent : int
        Hops per chain (2 to 1,000); runs of each benchmark (1 to 20); calls or chains at once (2 to 16).
    seed : int
        Seed of the fixed-cost problem's data.
    """
    n_rows = check_int("n_rows", n_rows, low=100, high=10_000_000)
    n_weights = check_int("n_weights", n_weights, low=1, high=10_000)
    hops = check_int("hops", hops, low=2, high=1000)
    repeats = check_int("repeats", repeats, low=1, high=20)
    k = check_int("concurrent", concurrent, low=2, high=16)
    workers = worker_addresses(client)
    per_value = client.submit(_time_sums, [(n_rows, n_weights)], repeats, workers=[workers[0]], pure=False)
    compute_per_value = float(per_value.result(timeout=CALIBRATION_TIMEOUT)[0])
    cache_bytes, memory_per_value = _memory(client, workers, repeats)
    big = 512 * 1024
    echoes = [client.submit(_Echo, workers=[workers[i % len(workers)]], actor=True, pure=False) for i in range(k)]
    actors = [(e.result(timeout=CALIBRATION_TIMEOUT), e) for e in echoes]  # each handle with its future
    calls: dict[Any, list[float]] = {1: [], k: [], "big": []}
    chains: dict[Any, list[float]] = {1: [], k: [], "big": []}
    for r in range(4 * repeats):  # 1 and k interleaved, so that a change in the machine's load hits both alike
        for m in (1, k):
            calls[m].append(_calls(client, actors[:m], 1))
        if r < repeats:
            calls["big"].append(_calls(client, actors[:1], big))
    for _ in range(repeats):  # after the calls: the chains' tasks are still being released when they end
        for m in (1, k):
            chains[m].append(_chains(client, workers, m, hops, 1))
        chains["big"].append(_chains(client, workers, 1, hops, big))
    for _ in range(BIG_RETRIES):  # only when another process's work hid the big messages' extra time
        if min(calls["big"]) > min(calls[1]):
            break
        calls[1].append(_calls(client, actors[:1], 1))
        calls["big"].append(_calls(client, actors[:1], big))
    for _ in range(BIG_RETRIES):
        if min(chains["big"]) > min(chains[1]):
            break
        chains[1].append(_chains(client, workers, 1, hops, 1))
        chains["big"].append(_chains(client, workers, 1, hops, big))
    direct = _link("direct call (client to actor)", calls, k, big * ITEMSIZE, messages=2)
    hop = _link("task hop (worker to worker)", chains, k, big * ITEMSIZE, messages=1)
    server_fixed, ring_fixed = _fixed_costs(client, compute_per_value, 2 * repeats, seed)
    return Calibration(compute_per_value, direct, hop, len(workers), server_fixed, ring_fixed, cache_bytes,
                       memory_per_value)


def measure_steps(client: Client, X: Any, y: Any, nodes: tuple[int, ...] = (1, 2, 4), n_steps: int = 6,
                  settle: float = 0.2) -> dict[str, Any]:
    """Median seconds per step of ``distributed_gd`` on this cluster, per topology and node count (notebook 12).

    Each run follows a 1-step warm-up run (which builds the shards and actors). Returns ``{"n_rows",
    "n_weights", "server": {N: seconds}, "ring": {N: seconds}}``, what the scaling figure draws.
    """

    n_steps = check_int("n_steps", n_steps, low=1, high=1000)
    out: dict[str, Any] = {"n_rows": int(X.shape[0]), "n_weights": int(X.shape[1]), "server": {}, "ring": {}}
    for n in nodes:
        for topology in TOPOLOGIES:
            kw = dict(n_nodes=n, lr=0.01, client=client, topology=topology)
            distributed_gd(X, y, n_steps=1, **kw)
            time.sleep(settle)
            out[topology][n] = float(np.median(distributed_gd(X, y, n_steps=n_steps, **kw).step_times))
    return out


def model_errors(cal: Calibration, measured: dict[str, Any]) -> dict[tuple[str, int], float]:
    """Relative error ``(predicted - measured) / measured`` of :func:`local_step_time` for each measured run
    (notebook 12, ``benchmarks/scaling.py``)."""
    return {
        (topology, n): (local_step_time(cal, measured["n_rows"], measured["n_weights"], n, topology) - t) / t
        for topology in TOPOLOGIES for n, t in measured[topology].items()
    }


def _link(name: str, times: dict[Any, list[float]], k: int, nbytes: int, messages: int) -> Network:
    """A link from one message's, ``k`` messages' and a big message's times (``messages`` per timing: 2 for a
    call and its reply, 1 for a hop). Latency and overhead from medians; bandwidth from the fastest of the
    single and big timings (the least disturbed by other work on the machine). A negative overhead (noise:
    ``k`` at once were not slower than one) counts as 0.

    When the fastest big message was not slower than the fastest small one (other work on the machine hid its
    extra time), the bandwidth is bounded instead: ``nbytes`` over the fastest big timing, as if the whole of it
    were transfer (the link is at least that fast), and the name says so (:data:`BOUNDED_NOTE`)."""
    single, many = float(np.median(times[1])), float(np.median(times[k]))
    extra = min(times["big"]) - min(times[1])
    if extra <= 0:
        name, extra = name + BOUNDED_NOTE, min(times["big"])
    overhead = max(many - single, 0.0) / (messages * (k - 1))
    return Network(name, single / messages, nbytes / extra, overhead)


class _Echo:
    """An actor that takes an array and answers with its length: a message there, a small one back. Like
    :class:`~dml_lesson.ps.transport.ShardActor`'s step for a shard over ``INLINE_CELLS`` values, it answers from a
    thread of the worker."""

    async def take(self, x: np.ndarray) -> int:
        return await asyncio.get_running_loop().run_in_executor(None, len, x)


def _calls(client: Client, actors: list[tuple[Any, Future]], n_values: int) -> float:
    """Seconds for one call to each actor, all in flight at once, with ``n_values`` 8-byte values each: issued
    from the client's event loop in one hop, as the server's transport does. ``actors``: (handle, the future it
    was made from) pairs; the futures tell :func:`~dml_lesson.ps.transport.call_actors` a worker was lost."""
    handles, futures = [a for a, _ in actors], [f for _, f in actors]
    x = np.ones(n_values)
    start = time.perf_counter()
    run_on_loop(client.loop, call_actors(handles, futures, "take", x), CALIBRATION_TIMEOUT)
    return time.perf_counter() - start


def _time_sums(shapes: list[tuple[int, int]], repeats: int) -> list[float]:
    """On a worker: the fastest seconds per value of a gradient over ``X`` of each shape (ones: the values do
    not change the time); the first run of each is a warm-up."""
    out = []
    for rows, d in shapes:
        X, y, w = np.ones((rows, d)), np.ones(rows), np.ones(d)
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            LINEAR.sums(w, X, y)
            times.append(time.perf_counter() - start)
        out.append(min(times[1:]) / X.size)
    return out


def _memory(client: Client, workers: list[str], repeats: int) -> tuple[float, float]:
    """Cache size and seconds per value from memory: gradients over :data:`SWEEP_MB` MB (100 columns) on one
    worker, then the largest on every worker at once (the slowest worker's time)."""
    shapes = [(mb * 2**20 // (ITEMSIZE * 100), 100) for mb in SWEEP_MB]
    rates = client.submit(_time_sums, shapes, repeats, workers=[workers[0]], pure=False).result(CALIBRATION_TIMEOUT)
    both = [client.submit(_time_sums, shapes[-1:], repeats, workers=[a], pure=False) for a in workers]
    return _cache_bytes(rates), max(f.result(timeout=CALIBRATION_TIMEOUT)[0] for f in both)


def _cache_bytes(rates: list[float]) -> float:
    """The cache size from the seconds per value of the :data:`SWEEP_MB` gradients: the largest size computed
    at most as slowly as the geometric mean of the smallest's and the largest's times (the faster of those two
    always is, so the size is one of :data:`SWEEP_MB`)."""
    middle = math.sqrt(rates[0] * rates[-1])
    return float(max([mb for mb, t in zip(SWEEP_MB, rates) if t <= middle], default=1) * 2**20)


def _payload(n_values: int) -> np.ndarray:
    return np.ones(n_values)


def _pass_on(x: np.ndarray) -> np.ndarray:
    return x + 0.0


def _chains(client: Client, workers: list[str], k: int, hops: int, n_values: int) -> float:
    """Seconds per round for ``k`` chains side by side: a first task, then ``hops`` dependent tasks, each on
    the other worker from the previous one; chain ``j`` starts on worker ``j mod n_workers``."""
    start = time.perf_counter()
    ends = [client.submit(_payload, n_values, workers=[workers[j % len(workers)]], pure=False) for j in range(k)]
    futures = list(ends)
    for h in range(hops):
        ends = [client.submit(_pass_on, ends[j], workers=[workers[(j + h + 1) % len(workers)]], pure=False)
                for j in range(k)]
        futures += ends
    wait(ends, timeout=CALIBRATION_TIMEOUT)
    return (time.perf_counter() - start) / (hops + 1)


def _fixed_costs(client: Client, compute_per_value: float, n_steps: int, seed: int) -> tuple[float, float]:
    """Seconds of a one-node step apart from its compute, server then ring, on a :data:`FIXED_COST_SIZE`
    problem: the median of ``n_steps`` steps after a 1-step warm-up run, minus ``c * rows * d``."""

    rows, d = FIXED_COST_SIZE
    X, y, _ = make_regression(rows, d - 1, seed=seed)
    fixed = []
    for topology in TOPOLOGIES:
        kw = dict(n_nodes=1, lr=0.01, client=client, topology=topology)
        distributed_gd(X, y, n_steps=1, **kw)
        fixed.append(_fixed_cost(distributed_gd(X, y, n_steps=n_steps, **kw).step_times, compute_per_value, rows, d))
    return fixed[0], fixed[1]


def _fixed_cost(step_times: Any, compute_per_value: float, rows: int, d: int) -> float:
    """The median step minus its compute ``c * rows * d``; 0 when the compute measured is the larger (noise)."""
    return max(float(np.median(step_times)) - compute_per_value * rows * d, 0.0)
