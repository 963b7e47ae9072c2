"""``TrainingResult``: the one record every optimizer returns and every plot and widget draws from.

:class:`Recorder` builds it step by step and decides when a run has diverged (loss not finite, or grown past
``DIVERGENCE_FACTOR`` times its start): training then stops quietly, with ``diverged`` set and the step noted.
:func:`ordered_sum` adds the nodes' numbers in node order, the one order every distributed run uses.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DIVERGENCE_FACTOR = 1e6
"""A loss above ``DIVERGENCE_FACTOR * max(initial loss, 1)`` counts as diverged."""


@dataclass(frozen=True)
class TrainingResult:
    """What a training run did, step by step.

    Attributes
    ----------
    method : str
        ``"gradient_descent"``, ``"sgd"``, ``"distributed_gd"``, ``"distributed_sgd"``, ``"local_sgd"``, ...
    weights : numpy array, shape (k + 1, d)
        ``w`` before the first step and after each step.
    losses : numpy array, shape (k + 1,)
        Full-data loss of each row of ``weights``; ``k = n_steps`` unless the run diverged.
    diverged : bool
        True when the loss became inf/nan or exploded; training stopped there.
    diverged_at : int or None
        The step whose weights gave the diverging loss.
    step_times : numpy array, shape (k,)
        Wall time of each step in seconds (pull, gradient, push, update).
    bytes_sent, bytes_received : numpy arrays, shape (k,)
        Bytes the server sent to and received from the nodes in each step, as serialized by Dask
        (zeros for single-machine runs). With ``topology="ring"`` there is no server: the ring's total
        message payload per step (see :class:`~dml_lesson.ps.ring.RingAllReduce`).
    rows_per_step : int
        Rows whose gradient one step uses (the global batch).
    n_rows : int
        Rows in the dataset.
    params : dict
        The settings of the run (learning rate, nodes, batch size, ...).
    """

    method: str
    weights: np.ndarray
    losses: np.ndarray
    diverged: bool
    diverged_at: int | None
    step_times: np.ndarray
    bytes_sent: np.ndarray
    bytes_received: np.ndarray
    rows_per_step: int
    n_rows: int
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def w(self) -> np.ndarray:
        """The final weights."""
        return self.weights[-1]

    @property
    def n_steps(self) -> int:
        """Steps taken (fewer than asked when the run diverged)."""
        return len(self.losses) - 1

    @property
    def epochs(self) -> np.ndarray:
        """Passes over the data at each entry of ``losses`` (rows used / rows in the dataset)."""
        return np.arange(len(self.losses)) * self.rows_per_step / self.n_rows

    @property
    def elapsed(self) -> np.ndarray:
        """Seconds since the start at each entry of ``losses`` (0 first)."""
        return np.concatenate([[0.0], np.cumsum(self.step_times)])[: len(self.losses)]

    @property
    def status(self) -> str:
        """One line for a status bar: diverged at step k, or the final loss."""
        if self.diverged:
            return f"diverged at step {self.diverged_at}: the loss exploded, try a smaller learning rate"
        return f"{self.n_steps} steps, final loss {self.losses[-1]:.6g}"

    def __repr__(self) -> str:
        return f"TrainingResult({self.method}: {self.status})"


class Recorder:
    """Collects weights, losses, timings and bytes during a run and says when it has diverged."""

    def __init__(
        self, method: str, n_weights: int, rows_per_step: int, n_rows: int, params: dict[str, Any]
    ) -> None:
        self.method, self.n_weights, self.params = method, n_weights, params
        self.rows_per_step, self.n_rows = rows_per_step, n_rows
        self.weights: list[np.ndarray] = []
        self.losses: list[float] = []
        self.step_times: list[float] = []
        self.bytes_sent: list[int] = []
        self.bytes_received: list[int] = []
        self.diverged_at: int | None = None
        self._bound = np.inf
        self._t0 = time.perf_counter()

    def record(self, w: np.ndarray, loss: float) -> bool:
        """Store ``w`` and its loss; return False (stop) when the run has diverged."""
        step = len(self.losses)
        if not self.losses:
            self._bound = DIVERGENCE_FACTOR * max(loss, 1.0) if np.isfinite(loss) else -np.inf
        finite = bool(np.isfinite(loss)) and bool(np.all(np.isfinite(w)))
        if finite:
            self.weights.append(np.array(w, dtype=float))
            self.losses.append(float(loss))
        if not finite or loss > self._bound:
            self.diverged_at = step
            return False
        return True

    def step_done(self, sent: int = 0, received: int = 0) -> None:
        """Close a step: its wall time since the previous call, and the bytes it moved."""
        now = time.perf_counter()
        self.step_times.append(now - self._t0)
        self._t0 = now
        self.bytes_sent.append(sent)
        self.bytes_received.append(received)

    def result(self) -> TrainingResult:
        """The finished record; the per-step arrays are cut to the steps whose result was kept."""
        k = max(len(self.losses) - 1, 0)
        weights = np.array(self.weights) if self.weights else np.empty((0, self.n_weights))
        return TrainingResult(
            method=self.method,
            weights=weights,
            losses=np.array(self.losses, dtype=float),
            diverged=self.diverged_at is not None,
            diverged_at=self.diverged_at,
            step_times=np.array(self.step_times[:k], dtype=float),
            bytes_sent=np.array(self.bytes_sent[:k], dtype=np.int64),
            bytes_received=np.array(self.bytes_received[:k], dtype=np.int64),
            rows_per_step=self.rows_per_step,
            n_rows=self.n_rows,
            params=dict(self.params),
        )


def ordered_sum(values: Iterable[Any]) -> Any:
    """Sum in the given order, starting from the first value (``sum()`` would start from 0).

    The parameter server adds its nodes' replies in node order with it, so that runs repeat bit for bit
    (notebooks 04-08); ``values`` must hold at least one value.
    """
    it = iter(values)
    total = next(it)
    for v in it:
        total = total + v
    return total
