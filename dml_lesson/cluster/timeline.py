"""Timelines of synchronous steps from Dask's task stream: who computed when, and who waited (notebooks 03, 07).

Run a training with ``transport="tasks"`` inside :class:`Timeline`; each node step is a task named
``node_step-<node>-<step>-<run>``, and the task stream records its worker, start and stop. In a synchronous
step every node waits at the barrier for the last one: a node's waiting time is the step's last stop minus its
own stop. That time has two parts (:meth:`Timeline.waiting_parts`): the last task *started* later (the server
submits the tasks one after another and each passes through the scheduler: the dispatch stagger,
:meth:`Timeline.stagger`; a worker with one thread also runs its nodes' tasks one after another) and it computed
longer (negative when it computed less than the others). Only tasks that ran to the end are recorded: with
backup nodes, a task the server stopped waiting for is released, and is either never started or finished
unrecorded (:meth:`Timeline.missing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import Client, get_task_stream

from .._dask import scheduler_delay
from ..core.checks import check_int
from .client import get_client, worker_addresses


@dataclass(frozen=True)
class NodeStep:
    """One node's work in one step: times in seconds from the first task's start."""

    node: int
    step: int
    worker: str
    start: float
    stop: float
    barrier: float

    @property
    def compute(self) -> float:
        return self.stop - self.start

    @property
    def waiting(self) -> float:
        return self.barrier - self.stop


class Timeline:
    """Context manager: record the node steps run inside it; ``rows`` is the list of :class:`NodeStep`."""

    def __init__(self, client: Client | None = None) -> None:
        self.client = client or get_client()
        self.rows: list[NodeStep] = []

    def __enter__(self) -> Timeline:
        self._offsets = clock_offsets(self.client)
        self._stream = get_task_stream(self.client)
        self._stream.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.__exit__(*exc)
        after = clock_offsets(self.client)
        offsets = {w: (self._offsets[w] + a) / 2 for w, a in after.items() if w in self._offsets}
        self.rows = node_steps(self._stream.data, offsets)

    def per_node(self, attribute: str) -> dict[int, float]:
        """Median of ``"compute"`` or ``"waiting"`` seconds per node."""
        nodes = sorted({r.node for r in self.rows})
        return {n: float(np.median([getattr(r, attribute) for r in self.rows if r.node == n])) for n in nodes}

    def step_seconds(self) -> np.ndarray:
        """Per step, from the first start to the barrier."""
        steps = sorted({r.step for r in self.rows})
        return np.array([max(r.barrier for r in self.rows if r.step == s) -
                         min(r.start for r in self.rows if r.step == s) for s in steps])

    def stagger(self) -> np.ndarray:
        """Per step, the last task's start minus the first one's, in seconds: the dispatch stagger (notebook 03)."""
        steps = sorted({r.step for r in self.rows})
        return np.array([max(r.start for r in self.rows if r.step == s) -
                         min(r.start for r in self.rows if r.step == s) for s in steps])

    def nodes_per_step(self) -> dict[int, list[int]]:
        """Per step, the nodes whose task ran to the end (notebook 07: with backup nodes, not all of them)."""
        return {s: sorted(r.node for r in self.rows if r.step == s) for s in sorted({r.step for r in self.rows})}

    def missing(self, n_nodes: int) -> list[tuple[int, int]]:
        """``(step, node)`` pairs of the ``n_nodes`` nodes with no recorded task: the server went on without them
        (backup nodes) and released the task, before it started or while it ran."""
        n_nodes = check_int("n_nodes", n_nodes, low=1)
        return [(s, n) for s, nodes in self.nodes_per_step().items() for n in range(n_nodes) if n not in nodes]

    def waiting_parts(self) -> dict[str, float]:
        """Split the waiting time (summed over every node step) by its cause, in seconds (notebook 03).

        A node's wait is ``barrier - stop = (start_last - start) + (compute_last - compute)``, where ``last`` is
        the node whose task ended the step: ``"later start"`` sums the first part (the last task was dispatched,
        or reached its worker's thread, later), ``"longer compute"`` the second (it computed longer).
        """
        parts = {"later start": 0.0, "longer compute": 0.0}
        for s in {r.step for r in self.rows}:
            step = [r for r in self.rows if r.step == s]
            last = max(step, key=lambda r: r.stop)
            for r in step:
                parts["later start"] += last.start - r.start
                parts["longer compute"] += last.compute - r.compute
        return parts

    def pace(self) -> dict[str, float]:
        """Medians over the steps, in seconds, of what a step's length is made of (notebook 07): ``"step"`` (first
        start to last stop), ``"largest task"`` (the longest single node task), ``"busiest worker"`` (the summed
        compute of the tasks on the worker that computed most: its thread runs them one after another),
        ``"busiest idle"`` (from the step's first start to that worker's last stop, the time its thread did not
        compute: it waited for its tasks to arrive, the dispatch stagger; a step lasts about this plus its
        compute) and ``"gap"`` (from a step's last stop to the
        next step's first start: the server's turn and the messages)."""
        steps = sorted({r.step for r in self.rows})
        largest, busiest, late, gaps = [], [], [], []
        for i, s in enumerate(steps):
            step = [r for r in self.rows if r.step == s]
            largest.append(max(r.compute for r in step))
            per_worker: dict[str, float] = {}
            for r in step:
                per_worker[r.worker] = per_worker.get(r.worker, 0.0) + r.compute
            top = max(per_worker, key=lambda w: per_worker[w])
            busiest.append(per_worker[top])
            late.append(max(r.stop for r in step if r.worker == top) - min(r.start for r in step) - per_worker[top])
            if i + 1 < len(steps):
                gaps.append(min(r.start for r in self.rows if r.step == steps[i + 1]) - step[0].barrier)
        return {"step": float(np.median(self.step_seconds())), "largest task": float(np.median(largest)),
                "busiest worker": float(np.median(busiest)), "busiest idle": float(np.median(late)),
                "gap": float(np.median(gaps)) if gaps else 0.0}


def node_step_key(node: int, step: int, run: str = "") -> str:
    """The Dask key of node ``node``'s task at step ``step`` of run ``run`` (``transport="tasks"``), the format
    :func:`node_steps` reads back from the task stream: ``node_step-<node>-<step>-<run>``."""
    return f"node_step-{node}-{step}-{run or 'run'}"


def clock_offsets(client: Client) -> dict[str, float]:
    """Per worker, the offset (seconds) Dask added to its task times: each worker moves its times onto the
    scheduler's clock by an offset it estimates from a round trip at every heartbeat, which on a busy machine is
    off by milliseconds, sometimes tens of them. Workers on one machine share its clock and need no offset, so
    :class:`Timeline` takes it off again; empty (no correction) when the workers run on several hosts."""
    hosts = {addr.split("://")[-1].rsplit(":", 1)[0] for addr in worker_addresses(client)}
    if len(hosts) != 1:
        return {}
    try:
        return {str(w): float(d) for w, d in client.run(scheduler_delay).items()}
    except Exception:  # a worker leaving meanwhile: keep Dask's times
        return {}


def node_steps(tasks: list[dict[str, Any]], offsets: dict[str, float] | None = None) -> list[NodeStep]:
    """Parse task-stream records of ``node_step-<node>-<step>-<run>`` tasks into :class:`NodeStep` rows;
    ``offsets`` (from :func:`clock_offsets`) is subtracted from each worker's times."""
    offsets = offsets or {}
    raw = []
    for t in tasks:
        key = t["key"][0] if isinstance(t["key"], tuple) else t["key"]
        parts = str(key).split("-")
        if parts[0] != "node_step" or len(parts) < 4:
            continue
        for s in t.get("startstops", []):
            if s["action"] == "compute":
                shift = offsets.get(t["worker"], 0.0)
                raw.append((int(parts[1]), int(parts[2]), t["worker"], s["start"] - shift, s["stop"] - shift))
    if not raw:
        return []
    t0 = min(r[3] for r in raw)
    barrier: dict[int, float] = {}
    for _, step, _, _, stop in raw:
        barrier[step] = max(barrier.get(step, 0.0), stop - t0)
    return sorted((NodeStep(n, s, w, a - t0, b - t0, barrier[s]) for n, s, w, a, b in raw),
                  key=lambda r: (r.step, r.node))
