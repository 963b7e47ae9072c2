"""Timelines of synchronous steps from Dask's task stream: who computed when, and who waited (notebooks 03, 07).

Run a training with ``transport="tasks"`` inside :class:`Timeline`; each node step is a task named
``node_step-<node>-<step>-<run>``, and the task stream records its worker, start and stop. In a synchronous
step every node waits at the barrier for the last one: a node's waiting time is the step's last stop minus its
own stop. That time has two parts (:meth:`Timeline.waiting_parts`): the last task *started* later (the server's
messages leave one after another, and a worker with one thread runs its nodes' tasks one after another) and it
computed longer. Only tasks that ran to the end are recorded: with backup nodes, a task the server stopped
waiting for is released, and is either never started or finished unrecorded (:meth:`Timeline.missing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import Client, get_task_stream

from ..core.checks import check_int
from .client import get_client


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
        self._stream = get_task_stream(self.client)
        self._stream.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.__exit__(*exc)
        self.rows = node_steps(self._stream.data)

    def per_node(self, attribute: str) -> dict[int, float]:
        """Median of ``"compute"`` or ``"waiting"`` seconds per node."""
        nodes = sorted({r.node for r in self.rows})
        return {n: float(np.median([getattr(r, attribute) for r in self.rows if r.node == n])) for n in nodes}

    def step_seconds(self) -> np.ndarray:
        """Per step, from the first start to the barrier."""
        steps = sorted({r.step for r in self.rows})
        return np.array([max(r.barrier for r in self.rows if r.step == s) -
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
        compute of the tasks on the worker that computed most: its thread runs them one after another) and
        ``"gap"`` (from a step's last stop to the next step's first start: the server's turn and the messages)."""
        steps = sorted({r.step for r in self.rows})
        largest, busiest, gaps = [], [], []
        for i, s in enumerate(steps):
            step = [r for r in self.rows if r.step == s]
            largest.append(max(r.compute for r in step))
            per_worker: dict[str, float] = {}
            for r in step:
                per_worker[r.worker] = per_worker.get(r.worker, 0.0) + r.compute
            busiest.append(max(per_worker.values()))
            if i + 1 < len(steps):
                gaps.append(min(r.start for r in self.rows if r.step == steps[i + 1]) - step[0].barrier)
        return {"step": float(np.median(self.step_seconds())), "largest task": float(np.median(largest)),
                "busiest worker": float(np.median(busiest)), "gap": float(np.median(gaps)) if gaps else 0.0}


def node_step_key(node: int, step: int, run: str = "") -> str:
    """The Dask key of node ``node``'s task at step ``step`` of run ``run`` (``transport="tasks"``), the format
    :func:`node_steps` reads back from the task stream: ``node_step-<node>-<step>-<run>``."""
    return f"node_step-{node}-{step}-{run or 'run'}"


def node_steps(tasks: list[dict[str, Any]]) -> list[NodeStep]:
    """Parse task-stream records of ``node_step-<node>-<step>-<run>`` tasks into :class:`NodeStep` rows."""
    raw = []
    for t in tasks:
        key = t["key"][0] if isinstance(t["key"], tuple) else t["key"]
        parts = str(key).split("-")
        if parts[0] != "node_step" or len(parts) < 4:
            continue
        for s in t.get("startstops", []):
            if s["action"] == "compute":
                raw.append((int(parts[1]), int(parts[2]), t["worker"], s["start"], s["stop"]))
    if not raw:
        return []
    t0 = min(r[3] for r in raw)
    barrier: dict[int, float] = {}
    for _, step, _, _, stop in raw:
        barrier[step] = max(barrier.get(step, 0.0), stop - t0)
    return sorted((NodeStep(n, s, w, a - t0, b - t0, barrier[s]) for n, s, w, a, b in raw),
                  key=lambda r: (r.step, r.node))
