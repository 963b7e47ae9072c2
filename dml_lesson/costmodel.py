"""When does distributing pay? A cost model of one synchronous step, calibrated on this machine (notebook 11).

One step of data-parallel gradient descent on ``n_rows`` rows and ``d`` weights over ``N`` nodes costs

- **compute**: ``c * n_rows * d / N`` seconds, ``c`` the time per row and weight of one gradient (measured);
- **communication**, in the classic latency-bandwidth model (a message of ``b`` bytes takes ``a + b / B``
  seconds on a link, and a link carries one message at a time):

  - parameter server: its one link carries ``N`` gradients in and ``N`` copies of ``w`` out:
    ``2 N (a + 8 d / B)``;
  - ring all-reduce: every node's link carries ``2 (N - 1)`` pieces of ``d / N`` values, all links at once:
    ``2 (N - 1) (a + 8 d / (N B))``.

On a real cluster each node has its own core and link. On this machine ``N`` nodes share 2 worker processes
(``cores=2``): each process works through its nodes one after the other, and a ring round passes
``ceil(N / cores)`` pieces per process (:func:`local_step_time`). :func:`calibrate` measures ``c``, and ``a``
and ``B`` of two links (the server's direct calls, the ring's task hops), with small benchmarks separate from
the training runs that check the model (``benchmarks/scaling.py``).

The speedup is the single machine's step time (``c * n_rows * d``, no communication) over the distributed
step time. **The rule**: distributing over ``N`` nodes pays when the compute it saves,
``c * n_rows * d * (1 - 1/N)``, exceeds the communication it adds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import Client, wait

from ._checks import check_choice, check_float, check_int
from .allreduce import TOPOLOGIES
from .cluster import worker_addresses
from .models import LINEAR

ITEMSIZE = 8
CALIBRATION_TIMEOUT = 120.0


@dataclass(frozen=True)
class Network:
    """A network for the model: per-message ``latency`` (s) and ``bandwidth`` (bytes/s) of each link."""

    name: str
    latency: float
    bandwidth: float

    def __post_init__(self) -> None:
        check_float("latency", self.latency, low=0.0)
        check_float("bandwidth", self.bandwidth, low=0.0, low_open=True)


DATACENTER_10G = Network("10 Gb/s datacenter", latency=50e-6, bandwidth=10e9 / 8)
"""Ethernet at 10 Gb/s with TCP: tens of microseconds per message."""
DATACENTER_100G = Network("100 Gb/s datacenter", latency=5e-6, bandwidth=100e9 / 8)
"""InfiniBand-class links with RDMA: a few microseconds per message."""


@dataclass(frozen=True)
class Calibration:
    """What one step costs on this machine, measured by :func:`calibrate`.

    ``compute_per_value``: seconds per row and weight of one gradient on a worker. Two kinds of link:
    ``direct``, a call from the client to an actor on a worker (how the parameter server reaches its nodes),
    and ``hop``, a task on one worker waiting for a task's result on the other (how the ring passes a piece:
    the scheduler is told, then the workers transfer). ``cores``: worker processes.
    """

    compute_per_value: float
    direct: Network
    hop: Network
    cores: int

    @property
    def laptop(self) -> Network:
        """This machine as a network for the model: its direct links (the faster of the two)."""
        return Network("this laptop (measured)", self.direct.latency, self.direct.bandwidth)


def compute_time(n_rows: int, n_weights: int, n_nodes: int, compute_per_value: float,
                 cores: int | None = None) -> float:
    """Seconds of gradient compute in one step: the busiest core's share of ``n_rows * n_weights`` values."""
    per_core = math.ceil(n_nodes / min(n_nodes, cores or n_nodes))
    return compute_per_value * n_rows * n_weights / n_nodes * per_core


def comm_time(n_weights: int, n_nodes: int, topology: str, network: Network, cores: int | None = None) -> float:
    """Seconds of communication in one step (see the module docstring); ``n_weights + 2`` values travel."""
    topology = check_choice("topology", topology, TOPOLOGIES)
    n = check_int("n_nodes", n_nodes, low=1)
    nbytes = (n_weights + 2) * ITEMSIZE
    if topology == "server":
        return 2 * n * (network.latency + nbytes / network.bandwidth)
    per_core = math.ceil(n / min(n, cores or n))
    return 2 * (n - 1) * per_core * (network.latency + nbytes / (n * network.bandwidth))


def predict_step_time(n_rows: int, n_weights: int, n_nodes: int | np.ndarray, topology: str, network: Network,
                      compute_per_value: float, cores: int | None = None) -> np.ndarray:
    """Predicted seconds per step for each node count (notebook 11's figure and sliders).

    ``cores=None``: one core per node (a real cluster); ``cores=2``: this machine's two worker processes.
    """
    n_rows = check_int("n_rows", n_rows, low=1)
    n_weights = check_int("n_weights", n_weights, low=1)
    check_float("compute_per_value", compute_per_value, low=0.0, low_open=True)
    nodes = np.atleast_1d(np.asarray(n_nodes))
    if nodes.min() < 1:
        raise ValueError(f"n_nodes must be >= 1, got {nodes.min()}")
    return np.array([
        compute_time(n_rows, n_weights, int(n), compute_per_value, cores)
        + comm_time(n_weights, int(n), topology, network, cores)
        for n in nodes
    ])


def speedup(n_rows: int, n_weights: int, n_nodes: int | np.ndarray, topology: str, network: Network,
            compute_per_value: float) -> np.ndarray:
    """Single-machine step time (no communication) over the predicted distributed step time, one core per node."""
    single = compute_per_value * n_rows * n_weights
    return single / predict_step_time(n_rows, n_weights, n_nodes, topology, network, compute_per_value)


def break_even_rows(n_weights: int, n_nodes: int, topology: str, network: Network, compute_per_value: float) -> float:
    """The rule as a number: rows from which ``n_nodes`` nodes beat one machine (compute saved = communication).

    ``c * n * d * (1 - 1/N) = comm``  gives  ``n = comm / (c * d * (1 - 1/N))``; infinite for one node.
    """
    n = check_int("n_nodes", n_nodes, low=1)
    if n == 1:
        return math.inf
    comm = comm_time(n_weights, n, topology, network)
    return comm / (compute_per_value * n_weights * (1 - 1 / n))


def local_step_time(cal: Calibration, n_rows: int, n_weights: int, n_nodes: int, topology: str) -> float:
    """The model for this machine's own runs: ``N`` nodes on ``cal.cores`` workers.

    Server (actors): compute, then ``2 N`` direct messages through the client's link. Ring (tasks): compute,
    then ``2 (N - 1)`` rounds of ``ceil(N / cores)`` hops per worker, plus 3 task hops every step has (the
    node's gradient, cutting it into pieces, node 0 assembling its copy).
    """
    compute = compute_time(n_rows, n_weights, n_nodes, cal.compute_per_value, cal.cores)
    if topology == "server":
        return compute + comm_time(n_weights, n_nodes, "server", cal.direct)
    fixed = 3 * (cal.hop.latency + (n_weights + 2) * ITEMSIZE / cal.hop.bandwidth)
    return compute + fixed + comm_time(n_weights, n_nodes, "ring", cal.hop, cal.cores)


def calibrate(client: Client, n_rows: int = 100_000, n_weights: int = 50, hops: int = 30, repeats: int = 5,
              seed: int = 0) -> Calibration:
    """Measure this machine: compute per row and weight; latency and bandwidth of direct calls and of hops.

    From ``repeats`` runs each: a gradient of ``n_rows x n_weights`` timed inside a worker (the fastest run);
    calls to an actor with an 8-byte and a 4 MB argument (latency: half the median small round trip); a chain
    of ``hops`` tasks alternating between two workers, passing 8 bytes and 4 MB. Takes a few seconds.
    """
    n_rows = check_int("n_rows", n_rows, low=100, high=10_000_000)
    n_weights = check_int("n_weights", n_weights, low=1, high=10_000)
    hops = check_int("hops", hops, low=2, high=1000)
    repeats = check_int("repeats", repeats, low=1, high=20)
    workers = worker_addresses(client)
    pair = [workers[0], workers[-1]]
    per_value = client.submit(_time_gradient, n_rows, n_weights, repeats, seed, workers=[pair[0]], pure=False)
    compute_per_value = per_value.result(timeout=CALIBRATION_TIMEOUT)
    big_values = 512 * 1024
    echo = client.submit(_Echo, workers=[pair[-1]], actor=True).result(timeout=CALIBRATION_TIMEOUT)
    small_calls = [_call(echo, np.ones(1)) for _ in range(4 * repeats)]
    big_calls = [_call(echo, np.ones(big_values)) for _ in range(repeats)]
    small_hops = [_chain(client, pair, hops, 1) / hops for _ in range(repeats)]
    big_hops = [_chain(client, pair, hops, big_values) / hops for _ in range(repeats)]
    direct = _link("direct call (client to actor)", small_calls, big_calls, big_values * ITEMSIZE, halve=True)
    hop = _link("task hop (worker to worker)", small_hops, big_hops, big_values * ITEMSIZE)
    return Calibration(float(compute_per_value), direct, hop, len(workers))


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
    """Relative error ``(predicted - measured) / measured`` of :func:`local_step_time` for each measured run."""
    return {
        (topology, n): (local_step_time(cal, measured["n_rows"], measured["n_weights"], n, topology) - t) / t
        for topology in TOPOLOGIES for n, t in measured[topology].items()
    }


def _link(name: str, small: list[float], big: list[float], nbytes: int, halve: bool = False) -> Network:
    """Latency: the median small message (half a round trip for calls). Bandwidth: the extra time of the big
    message, from the fastest of each (the least disturbed by other work on the machine)."""
    latency = float(np.median(small)) / (2 if halve else 1)
    extra = min(big) - min(small)
    if extra <= 0:
        raise RuntimeError(f"calibrating the {name}: a {nbytes / 1e6:.0f} MB message was not slower than an "
                           "8-byte one; the machine is too busy to measure, rerun the calibration")
    return Network(name, latency, nbytes / extra)


class _Echo:
    """An actor that takes an array and answers with its length: a message there, a small one back."""

    def take(self, x: np.ndarray) -> int:
        return len(x)


def _call(actor: _Echo, x: np.ndarray) -> float:
    start = time.perf_counter()
    actor.take(x).result(timeout=CALIBRATION_TIMEOUT)
    return time.perf_counter() - start


def _time_gradient(n_rows: int, n_weights: int, repeats: int, seed: int) -> float:
    rng = np.random.default_rng([seed, n_rows, n_weights])
    X, y, w = rng.normal(size=(n_rows, n_weights)), rng.normal(size=n_rows), rng.normal(size=n_weights)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        LINEAR.sums(w, X, y)
        times.append(time.perf_counter() - start)
    return float(min(times[1:])) / (n_rows * n_weights)  # the fastest: least disturbed by other work


def _payload(n_values: int) -> np.ndarray:
    return np.ones(n_values)


def _pass_on(x: np.ndarray) -> np.ndarray:
    return x + 0.0


def _chain(client: Client, pair: list[str], hops: int, n_values: int) -> float:
    """Seconds for ``hops`` dependent tasks, each on the other worker from the previous one."""
    first = client.submit(_payload, n_values, workers=[pair[0]], pure=False)
    wait(first, timeout=CALIBRATION_TIMEOUT)
    start = time.perf_counter()
    f = first
    futures = [first]
    for h in range(hops):
        f = client.submit(_pass_on, f, workers=[pair[(h + 1) % 2]], pure=False)
        futures.append(f)
    wait(f, timeout=CALIBRATION_TIMEOUT)
    return time.perf_counter() - start
