"""Timelines of synchronous steps from Dask's task stream: who computed when, and who waited (notebook 07).

Run a training with ``transport="tasks"`` inside :class:`Timeline`; each node step is a task named
``node_step-<node>-<step>-<run>``, and the task stream records its worker, start and stop. In a synchronous
step every node waits at the barrier for the slowest one: a node's waiting time is the step's last stop
minus its own stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import Client, get_task_stream

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
