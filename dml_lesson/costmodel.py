"""When does distributing pay? A cost model of one synchronous step, calibrated on this machine (notebook 11).

One step of data-parallel gradient descent on ``n_rows`` rows and ``d`` weights over ``N`` nodes costs

- **compute**: ``c * n_rows * d / N`` seconds, ``c`` the time per row and weight of one gradient (measured);
- **communication**. A link is described by its latency ``a`` (the time one message takes from start to
  end), its bandwidth ``B`` (bytes per second) and its per-message overhead ``g`` (how much later the
  link's *next* message is done when messages are in flight at once; LogP's overhead/gap). A message of
  ``b = 8 (d + 2)`` bytes (the gradient with its row count and loss sum) then costs:

  - parameter server: its one link sends ``w`` to ``N`` nodes and receives ``N`` gradients, all in flight at
    once: one round trip, then ``g`` for each of the other ``2 N - 2`` messages, and every byte passes the
    server's link: ``2 a + (2 N - 2) g + 2 N b / B``;
  - ring all-reduce: every node's link carries ``2 (N - 1)`` pieces of ``b / N`` bytes, one per round, all
    links at once: ``2 (N - 1) (a + b / (N B))``.

  The datacenter presets give only ``a`` and ``B`` and take ``g = a`` (the classic latency-bandwidth model: a
  link handles its messages one after the other), so the server's cost there is ``2 N (a + b / B)``.

On this machine (:func:`local_step_time`) ``N`` nodes share 2 worker processes (``cores=2``), each computing
its nodes one after the other, more slowly when the data is larger than the processor's cache (it then streams
from memory); and a step has a fixed cost besides its messages (the client's loop, the hop to the worker's
compute thread, for the ring three task hops in a row). :func:`calibrate` measures ``c``, the cache size and
the compute per value from memory; ``a``, ``B`` and ``g`` of the two links (the server's direct calls; the ring's task
hops through the scheduler); and the fixed cost of a one-node step of each topology, with small benchmarks
separate from the training runs that check the model (``benchmarks/scaling.py``).

The speedup is the single machine's step time (``c * n_rows * d``, no communication) over the distributed
step time. **The rule**: distributing over ``N`` nodes pays when the compute it saves,
``c * n_rows * d * (1 - 1/N)``, exceeds the communication it adds.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import Client, wait
from distributed.utils import sync

from ._checks import check_choice, check_float, check_int
from .allreduce import TOPOLOGIES
from .cluster import worker_addresses
from .models import LINEAR
from .transport import call_actors

ITEMSIZE = 8
CALIBRATION_TIMEOUT = 120.0
FIXED_COST_SIZE = (8_000, 10)
"""Rows and weights of the small problem whose one-node steps give each topology's fixed cost per step: not
one of ``benchmarks/scaling.py``'s sizes; 80,000 values, more than :data:`~dml_lesson.node.INLINE_CELLS`,
so that the node computes in a thread, as it does in the checked runs."""
SWEEP_MB = (4, 16, 64, 128)
"""Sizes of ``X`` (MB) whose gradient :func:`calibrate` times to find the cache size and the memory bandwidth."""


@dataclass(frozen=True)
class Network:
    """A link for the model: ``latency`` ``a`` (s per message), ``bandwidth`` ``B`` (bytes/s) and
    ``overhead`` ``g`` (s per extra message in flight at once; ``None``: ``g = a``, the classic model)."""

    name: str
    latency: float
    bandwidth: float
    overhead: float | None = None

    def __post_init__(self) -> None:
        check_float("latency", self.latency, low=0.0)
        check_float("bandwidth", self.bandwidth, low=0.0, low_open=True)
        if self.overhead is None:
            object.__setattr__(self, "overhead", self.latency)
        check_float("overhead", self.overhead, low=0.0)


DATACENTER_10G = Network("10 Gb/s datacenter", latency=50e-6, bandwidth=10e9 / 8)
"""Ethernet at 10 Gb/s with TCP: tens of microseconds per message."""
DATACENTER_100G = Network("100 Gb/s datacenter", latency=5e-6, bandwidth=100e9 / 8)
"""InfiniBand-class links with RDMA: a few microseconds per message."""


@dataclass(frozen=True)
class Calibration:
    """What one step costs on this machine, measured by :func:`calibrate` (notebook 11).

    ``compute_per_value``: seconds per row and weight of one gradient on a worker. Two kinds of link:
    ``direct``, a call from the client to an actor on a worker (how the parameter server reaches its nodes),
    and ``hop``, a task on one worker waiting for a task's result on the other (how the ring passes a piece:
    the scheduler is told, then the workers transfer). ``cores``: worker processes. ``server_fixed`` and
    ``ring_fixed``: seconds of a one-node step apart from its compute (``None``: a bare round trip ``2 a``
    of the direct link, and three hops in a row ``3 a`` of the hop link). ``cache_bytes``: the largest ``X``
    whose gradient runs at about the in-cache rate ``compute_per_value``; ``memory_per_value``: seconds per row
    and weight for a larger ``X``, streamed from memory by every worker at once (default: the in-cache rate).
    """

    compute_per_value: float
    direct: Network
    hop: Network
    cores: int
    server_fixed: float | None = None
    ring_fixed: float | None = None
    cache_bytes: float = math.inf
    memory_per_value: float | None = None

    def __post_init__(self) -> None:
        check_float("compute_per_value", self.compute_per_value, low=0.0, low_open=True)
        check_int("cores", self.cores, low=1)
        if self.server_fixed is None:
            object.__setattr__(self, "server_fixed", 2 * self.direct.latency)
        if self.ring_fixed is None:
            object.__setattr__(self, "ring_fixed", 3 * self.hop.latency)
        check_float("server_fixed", self.server_fixed, low=0.0)
        check_float("ring_fixed", self.ring_fixed, low=0.0)
        if self.cache_bytes != math.inf:
            check_float("cache_bytes", self.cache_bytes, low=0.0, low_open=True)
        if self.memory_per_value is None:
            object.__setattr__(self, "memory_per_value", self.compute_per_value)
        check_float("memory_per_value", self.memory_per_value, low=0.0, low_open=True)

    @property
    def laptop(self) -> Network:
        """This machine's direct links as a network for the extrapolation, read the classic way (``g = a``)."""
        return Network("this laptop (measured)", self.direct.latency, self.direct.bandwidth)


def compute_time(n_rows: int, n_weights: int, n_nodes: int, compute_per_value: float,
                 cores: int | None = None) -> float:
    """Seconds of gradient compute in one step: the busiest core's share of ``n_rows * n_weights`` values.

    ``cores=None``: one core per node; otherwise each of the ``cores`` processes computes ``ceil(N / cores)``
    nodes one after the other (notebook 11's model of this machine).
    """
    per_core = math.ceil(n_nodes / min(n_nodes, cores or n_nodes))
    return compute_per_value * n_rows * n_weights / n_nodes * per_core


def comm_time(n_weights: int, n_nodes: int, topology: str, network: Network) -> float:
    """Seconds of communication in one step, one machine per node (notebook 11's extrapolation).

    ``d + 2`` values travel (the gradient, the row count and the loss sum): ``b = 8 (d + 2)`` bytes. Server:
    ``2 a + (2 N - 2) g + 2 N b / B`` (``2 N (a + b / B)`` when ``g = a``); ring: ``2 (N - 1) (a + b / (N B))``.
    ``n_weights`` and ``n_nodes`` must be >= 1.
    """
    topology = check_choice("topology", topology, TOPOLOGIES)
    n = check_int("n_nodes", n_nodes, low=1)
    nbytes = (check_int("n_weights", n_weights, low=1) + 2) * ITEMSIZE
    if topology == "server":
        return 2 * network.latency + (2 * n - 2) * network.overhead + 2 * n * nbytes / network.bandwidth
    return 2 * (n - 1) * (network.latency + nbytes / (n * network.bandwidth))


def predict_step_time(n_rows: int, n_weights: int, n_nodes: int | np.ndarray, topology: str, network: Network,
                      compute_per_value: float) -> np.ndarray:
    """Predicted seconds per step for each node count, one core per node (notebook 11's figure and sliders)."""
    n_rows = check_int("n_rows", n_rows, low=1)
    n_weights = check_int("n_weights", n_weights, low=1)
    check_float("compute_per_value", compute_per_value, low=0.0, low_open=True)
    nodes = np.atleast_1d(np.asarray(n_nodes))
    if nodes.min() < 1:
        raise ValueError(f"n_nodes must be >= 1, got {nodes.min()}")
    return np.array([
        compute_time(n_rows, n_weights, int(n), compute_per_value) + comm_time(n_weights, int(n), topology, network)
        for n in nodes
    ])


def speedup(n_rows: int, n_weights: int, n_nodes: int | np.ndarray, topology: str, network: Network,
            compute_per_value: float) -> np.ndarray:
    """Single-machine step time (no communication) over the predicted distributed step time, one core per node
    (notebook 11)."""
    single = compute_per_value * n_rows * n_weights
    return single / predict_step_time(n_rows, n_weights, n_nodes, topology, network, compute_per_value)


def break_even_rows(n_weights: int, n_nodes: int, topology: str, network: Network, compute_per_value: float) -> float:
    """The rule as a number: rows from which ``n_nodes`` nodes beat one machine (compute saved = communication).

    ``c * n * d * (1 - 1/N) = comm``  gives  ``n = comm / (c * d * (1 - 1/N))``; infinite for one node
    (notebook 11).
    """
    n = check_int("n_nodes", n_nodes, low=1)
    if n == 1:
        return math.inf
    comm = comm_time(n_weights, n, topology, network)
    return comm / (compute_per_value * n_weights * (1 - 1 / n))


def local_compute_time(cal: Calibration, n_rows: int, n_weights: int, n_nodes: int) -> float:
    """Seconds of gradient compute in one step on this machine (notebook 11, :func:`local_step_time`).

    The busiest worker's nodes one after the other (:func:`compute_time` with ``cal.cores``), at the in-cache
    rate if the data, ``8 * n_rows * n_weights`` bytes, fits in ``cal.cache_bytes`` (both workers share the
    cache, and the shards stay in it from one step to the next), else at the rate from memory.
    """
    in_cache = ITEMSIZE * n_rows * n_weights <= cal.cache_bytes
    rate = cal.compute_per_value if in_cache else cal.memory_per_value
    return compute_time(n_rows, n_weights, n_nodes, rate, cal.cores)


def local_step_time(cal: Calibration, n_rows: int, n_weights: int, n_nodes: int, topology: str) -> float:
    """The model for this machine's own runs: ``N`` nodes on ``cal.cores`` workers (notebook 11,
    ``benchmarks/scaling.py``).

    With ``C`` the compute (:func:`local_compute_time`), ``b = 8 (d + 2)`` bytes, and ``F`` the measured fixed
    cost of a one-node step:

    - server (actors): ``F_server + C + (2 N - 2) g + 2 N b / B`` with the direct link's ``g`` and ``B``.
      ``F_server`` holds the one round trip, the hop to the worker's compute thread and the client's loop;
      each of the other ``2 N - 2`` messages, in flight at the same time, adds ``g``;
    - ring (tasks): ``F_ring + C + 2 (N - 1) (a + b / (N B)) + 2 N (N - 1) g`` with the hop link's ``a``,
      ``B`` and ``g``. ``F_ring`` holds the three task hops of a one-node step (its gradient, cutting it into
      pieces, assembling node 0's copy); ``N`` nodes add ``2 (N - 1)`` ring rounds of one hop each, and in
      ``2 N`` rounds (the gradients, the cutting, the ring rounds) ``N`` tasks go through the scheduler at
      once instead of one: ``N - 1`` extra tasks per round, ``g`` each.

    Returns predicted seconds per step; ``n_rows``, ``n_weights`` and ``n_nodes`` must be >= 1.
    """
    topology = check_choice("topology", topology, TOPOLOGIES)
    n_rows = check_int("n_rows", n_rows, low=1)
    n_weights = check_int("n_weights", n_weights, low=1)
    n = check_int("n_nodes", n_nodes, low=1)
    compute = local_compute_time(cal, n_rows, n_weights, n)
    nbytes = (n_weights + 2) * ITEMSIZE
    if topology == "server":
        link = cal.direct
        return cal.server_fixed + compute + (2 * n - 2) * link.overhead + 2 * n * nbytes / link.bandwidth
    link = cal.hop
    rounds = 2 * (n - 1) * (link.latency + nbytes / (n * link.bandwidth))
    return cal.ring_fixed + compute + rounds + 2 * n * (n - 1) * link.overhead


def calibrate(client: Client, n_rows: int = 40_000, n_weights: int = 50, hops: int = 30, repeats: int = 5,
              concurrent: int = 4, seed: int = 0) -> Calibration:
    """Measure this machine for :func:`local_step_time` with small benchmarks, none of them a checked run
    (notebook 11, ``benchmarks/scaling.py``). Takes a few seconds.

    - compute: a gradient of ``n_rows x n_weights`` timed inside a worker (the fastest of ``repeats``);
      gradients over :data:`SWEEP_MB` MB on one worker: the cache size is the largest computed faster per
      value than the geometric mean of the smallest's and the largest's times; the largest on every worker at
      once gives the rate from memory;
    - direct link: ``1`` and ``concurrent`` calls at once to echo actors spread over the workers, issued from
      the client's event loop and answered from a worker thread, as the server's steps on large shards are.
      ``a``: half the median single round trip; ``g``: the extra time of the ``concurrent`` calls over one,
      per extra message (two per call); ``B``: from a 4 MB call;
    - hop link: ``1`` and ``concurrent`` chains of ``hops`` dependent tasks side by side, each task on the
      other worker from the previous one, run back to back (each run's tasks are released while the next
      runs, as in the ring). ``a``: the median time per hop of one chain; ``g``: the extra time per round
      per extra chain; ``B``: from chains passing 4 MB;
    - fixed costs: one-node runs of ``distributed_gd`` with each topology on a :data:`FIXED_COST_SIZE`
      problem: the median step minus its compute.

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
    actors = [e.result(timeout=CALIBRATION_TIMEOUT) for e in echoes]
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
    direct = _link("direct call (client to actor)", calls, k, big * ITEMSIZE, messages=2)
    hop = _link("task hop (worker to worker)", chains, k, big * ITEMSIZE, messages=1)
    server_fixed, ring_fixed = _fixed_costs(client, compute_per_value, 2 * repeats, seed)
    return Calibration(compute_per_value, direct, hop, len(workers), server_fixed, ring_fixed, cache_bytes,
                       memory_per_value)


def measure_steps(client: Client, X: Any, y: Any, nodes: tuple[int, ...] = (1, 2, 4), n_steps: int = 6,
                  settle: float = 0.2) -> dict[str, Any]:
    """Median seconds per step of ``distributed_gd`` on this cluster, per topology and node count (notebook 11).

    Each run follows a 1-step warm-up run (which builds the shards and actors). Returns ``{"n_rows",
    "n_weights", "server": {N: seconds}, "ring": {N: seconds}}``, what the scaling figure draws.
    """
    from .server import distributed_gd  # the server imports this package's allreduce; import it when needed

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
    (notebook 11, ``benchmarks/scaling.py``)."""
    return {
        (topology, n): (local_step_time(cal, measured["n_rows"], measured["n_weights"], n, topology) - t) / t
        for topology in TOPOLOGIES for n, t in measured[topology].items()
    }


def _link(name: str, times: dict[Any, list[float]], k: int, nbytes: int, messages: int) -> Network:
    """A link from one message's, ``k`` messages' and a big message's times (``messages`` per timing: 2 for a
    call and its reply, 1 for a hop). Latency and overhead from medians; bandwidth from the fastest of the
    single and big timings (the least disturbed by other work on the machine). A negative overhead (noise:
    ``k`` at once were not slower than one) counts as 0."""
    single, many = float(np.median(times[1])), float(np.median(times[k]))
    extra = min(times["big"]) - min(times[1])
    if extra <= 0:
        raise RuntimeError(f"calibrating the {name}: a {nbytes / 1e6:.0f} MB message was not slower than an "
                           "8-byte one; the machine is too busy to measure, rerun the calibration")
    overhead = max(many - single, 0.0) / (messages * (k - 1))
    return Network(name, single / messages, nbytes / extra, overhead)


class _Echo:
    """An actor that takes an array and answers with its length: a message there, a small one back. Like
    :class:`~dml_lesson.node.ShardActor`'s step for a shard over ``INLINE_CELLS`` values, it answers from a
    thread of the worker."""

    async def take(self, x: np.ndarray) -> int:
        return await asyncio.get_running_loop().run_in_executor(None, len, x)


async def _call_all(actors: list[Any], x: np.ndarray) -> list[int]:
    """On the client's event loop, as the server's transport does: call every actor, then await every reply."""
    return await call_actors(actors, "take", x)


def _calls(client: Client, actors: list[Any], n_values: int) -> float:
    """Seconds for one call to each actor, all in flight at once, with ``n_values`` 8-byte values each."""
    x = np.ones(n_values)
    start = time.perf_counter()
    sync(client.loop, _call_all, actors, x, callback_timeout=CALIBRATION_TIMEOUT)
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
    middle = math.sqrt(rates[0] * rates[-1])
    cache_mb = max([mb for mb, t in zip(SWEEP_MB, rates) if t <= middle], default=1)
    both = [client.submit(_time_sums, shapes[-1:], repeats, workers=[a], pure=False) for a in workers]
    return float(cache_mb * 2**20), max(f.result(timeout=CALIBRATION_TIMEOUT)[0] for f in both)


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
    from .data import make_regression
    from .server import distributed_gd

    rows, d = FIXED_COST_SIZE
    X, y, _ = make_regression(rows, d - 1, seed=seed)
    fixed = []
    for topology in TOPOLOGIES:
        kw = dict(n_nodes=1, lr=0.01, client=client, topology=topology)
        distributed_gd(X, y, n_steps=1, **kw)
        times = distributed_gd(X, y, n_steps=n_steps, **kw).step_times
        fixed.append(max(float(np.median(times)) - compute_per_value * rows * d, 0.0))
    return fixed[0], fixed[1]
