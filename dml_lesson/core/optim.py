"""Single-machine optimizers: full-batch gradient descent and mini-batch SGD (notebooks 01 and 02).

Both return a :class:`~dml_lesson.core.result.TrainingResult`. SGD draws its mini-batches with
:func:`minibatch_indices`, the same function every node of the distributed SGD uses on its shard, so
``distributed_sgd`` with one node is exactly ``sgd``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import dask.array as da
import numpy as np

from .checks import check_choice, check_float, check_int, check_seed, check_vector
from .models import Model, get_model
from .result import Recorder, TrainingResult

Schedule = str | Callable[[int], float]
SCHEDULES = ("constant", "inv_sqrt")


def gradient_descent(
    X: Any,
    y: Any,
    lr: float = 0.1,
    n_steps: int = 100,
    *,
    w0: Any = None,
    model: str | Model = "linear",
) -> TrainingResult:
    """Full-batch gradient descent ``w <- w - lr * grad J(w)`` on one machine (notebook 01).

    Parameters
    ----------
    X : array (n, d)
        Features, numpy or dask (computed into memory), intercept column included: real numbers.
    y : array (n,)
        Targets, real numbers; for ``model="logistic"`` the labels 0 and 1 only (others raise a ``ValueError``).
    lr : float
        Learning rate, > 0. For the MSE, steps diverge above ``2 / L`` (see ``lipschitz_constant``).
    n_steps : int
        Number of updates, >= 0.
    w0 : array (d,), optional
        Starting weights; zeros by default.
    model : ``"linear"`` or ``"logistic"``
        Which loss to minimize.
    """
    X, y = check_xy(X, y)
    lr, n_steps, w, model = check_common(lr, n_steps, w0, X.shape[1], model)
    rec = Recorder("gradient_descent", X.shape[1], len(y), len(y), {"lr": lr, "n_steps": n_steps})
    with np.errstate(all="ignore"):
        for step in range(n_steps + 1):
            loss_sum, grad_sum = model.sums(w, X, y)
            if not rec.record(w, loss_sum / len(y)) or step == n_steps:
                break
            w = w - lr * (grad_sum / len(y))
            rec.step_done()
    return rec.result()


def sgd(
    X: Any,
    y: Any,
    lr: float = 0.05,
    batch_size: int = 32,
    n_steps: int = 500,
    seed: int = 0,
    *,
    schedule: Schedule = "constant",
    w0: Any = None,
    model: str | Model = "linear",
) -> TrainingResult:
    """Mini-batch stochastic gradient descent on one machine (notebook 02).

    Each step uses ``batch_size`` rows drawn without replacement within an epoch (a seeded shuffle of all rows
    per epoch, cut into ``len(y) // batch_size`` batches of exactly ``batch_size`` rows; the ``len(y) % batch_size``
    rows left over are skipped that epoch, and the next epoch reshuffles all rows). An epoch is therefore
    ``len(y) // batch_size`` steps, which may use fewer rows than one pass (``TrainingResult.epochs`` counts
    passes: rows used / rows). ``losses`` holds the full-data loss after every step.

    Parameters
    ----------
    X, y, lr, n_steps, w0, model
        As in :func:`gradient_descent`.
    batch_size : int
        Rows per step, between 1 and ``len(y)``; ``len(y)`` gives gradient descent.
    seed : int
        Seed of the shuffles (>= 0): the same seed gives the same run.
    schedule : ``"constant"``, ``"inv_sqrt"`` or a callable
        Learning-rate factor per step: 1, ``1 / sqrt(1 + step)``, or ``schedule(step)``
        (see :func:`step_decay`).
    """
    X, y = check_xy(X, y)
    lr, n_steps, w, model = check_common(lr, n_steps, w0, X.shape[1], model)
    batch_size = check_int("batch_size", batch_size, low=1, high=len(y))
    seed = check_seed("seed", seed)
    factor = make_schedule(schedule)
    params = {"lr": lr, "n_steps": n_steps, "batch_size": batch_size, "seed": seed}
    rec = Recorder("sgd", X.shape[1], batch_size, len(y), params)
    with np.errstate(all="ignore"):
        for step in range(n_steps + 1):
            if not rec.record(w, model.loss(w, X, y)) or step == n_steps:
                break
            idx = minibatch_indices(len(y), batch_size, seed, 0, step)
            w = w - lr * factor(step) * model.gradient(w, X[idx], y[idx])
            rec.step_done()
    return rec.result()


def minibatch_indices(n_rows: int, batch_size: int, seed: int, node: int, step: int) -> Any:
    """Rows of a shard that a node uses at ``step``: a function of ``(seed, node, step)`` only.

    Epoch ``e`` shuffles the shard with ``default_rng([seed, node, e])`` and cuts it into
    ``n_rows // batch_size`` batches of exactly ``batch_size`` rows; the ``n_rows % batch_size`` rows at the end of
    the shuffle are skipped that epoch (the next epoch reshuffles all rows). A batch as large as the shard is the
    whole shard in its own order (``slice(None)``), so it reproduces gradient descent bit for bit.
    """
    if batch_size >= n_rows:
        return slice(None)
    per_epoch = n_rows // batch_size
    epoch, position = divmod(step, per_epoch)
    return _epoch_order(n_rows, seed, node, epoch)[position * batch_size : (position + 1) * batch_size]


@lru_cache(maxsize=16)
def _epoch_order(n_rows: int, seed: int, node: int, epoch: int) -> np.ndarray:
    order = np.random.default_rng([seed, node, epoch]).permutation(n_rows)
    order.flags.writeable = False
    return order


def step_decay(every: int, factor: float = 0.5) -> Callable[[int], float]:
    """A schedule multiplying the learning rate by ``factor`` every ``every`` steps (notebook 02)."""
    every = check_int("every", every, low=1)
    factor = check_float("factor", factor, low=0.0, high=1.0, low_open=True)

    def schedule(step: int) -> float:
        return factor ** (step // every)

    schedule.__name__ = f"step_decay(every={every}, factor={factor})"
    return schedule


def make_schedule(schedule: Schedule) -> Callable[[int], float]:
    """Turn ``"constant"``, ``"inv_sqrt"`` or a callable into a function ``step -> learning-rate factor``."""
    if callable(schedule):
        return schedule
    name = check_choice("schedule", schedule, SCHEDULES)
    if name == "constant":
        return lambda step: 1.0
    return lambda step: 1.0 / math.sqrt(1.0 + step)


def check_xy(X: Any, y: Any, *, allow_dask: bool = False) -> tuple[Any, Any]:
    """Check features and targets at the door: 2-D X, 1-D y of the same length, real finite values (as float64).

    Dask arrays are computed into numpy unless ``allow_dask`` (the distributed optimizers check their values on
    the workers instead). With ``allow_dask``, a dask array must know its chunk sizes (a filter such as
    ``X[y > 0]`` loses them), and a numpy array given with a dask one becomes a dask array cut into the same row
    blocks, so that the mix trains exactly as two dask arrays do. Labels are the model's business (see
    :func:`~dml_lesson.core.models.check_binary_labels`).
    """
    if not allow_dask and (isinstance(X, da.Array) or isinstance(y, da.Array)):
        from .data import to_numpy

        X, y = to_numpy(X, y)
    X, y = _as_floats("X", X), _as_floats("y", y)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (rows x features), got {X.ndim}-D with shape {X.shape}")
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D, got {y.ndim}-D with shape {y.shape}")
    for name, arr in (("X", X), ("y", y)):
        if any(math.isnan(n) for n in arr.shape):
            raise ValueError(
                f"{name} must have known chunk sizes, got shape {arr.shape} (a filter such as {name}[mask] leaves "
                f"them unknown): call {name} = {name}.compute_chunk_sizes() first"
            )
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y must have the same number of rows, got {X.shape[0]} and {y.shape[0]}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must have at least one row and one column, got shape {X.shape}")
    if isinstance(X, np.ndarray) and not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or inf: clean or impute the data first")
    if isinstance(y, np.ndarray) and not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or inf: clean or impute the data first")
    if isinstance(X, da.Array) and not isinstance(y, da.Array):
        y = da.from_array(y, chunks=(X.chunks[0],))
    elif isinstance(y, da.Array) and not isinstance(X, da.Array):
        X = da.from_array(X, chunks=(y.chunks[0], -1))
    return X, y


_KINDS = {"U": "strings", "S": "bytes", "c": "complex numbers", "M": "dates", "m": "time differences", "O": "objects"}


def _as_floats(name: str, value: Any) -> Any:
    """``value`` as a float64 array (numpy: in aligned memory; dask: cast lazily), or an error naming ``name``."""
    if isinstance(value, da.Array):
        _check_kind(name, value.dtype, "biuf")
        return value if value.dtype == np.float64 else value.astype(np.float64)
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # nested lists of different lengths
        raise ValueError(f"{name} must be a rectangular array of real numbers: {exc}") from None
    _check_kind(name, arr.dtype, "biufO")
    try:  # aligned, or BLAS is skipped (see data.to_numpy)
        return np.require(arr, dtype=np.float64, requirements="A")
    except (TypeError, ValueError) as exc:  # an object array holding something else than numbers
        raise TypeError(f"{name} must hold real numbers (floats, integers or booleans): {exc}") from None


def _check_kind(name: str, dtype: np.dtype, kinds: str) -> None:
    if dtype.kind not in kinds:
        what = _KINDS.get(dtype.kind, "values")
        raise TypeError(
            f"{name} must hold real numbers (floats, integers or booleans), got {what} of dtype {dtype}: "
            "map them to numbers first"
        )


def check_common(lr: Any, n_steps: Any, w0: Any, d: int, model: Any) -> tuple:
    """The checks every optimizer shares: ``(lr, n_steps, starting weights, Model)``, or a named error.

    Used by :func:`gradient_descent`, :func:`sgd` (notebooks 01, 02) and by the distributed runs through
    :mod:`dml_lesson.ps.setup` (notebooks 04-08).
    """
    lr = check_float("lr", lr, low=0.0, low_open=True)
    n_steps = check_int("n_steps", n_steps, low=0)
    w = np.zeros(d) if w0 is None else check_vector("w0", w0, d)
    return lr, n_steps, w, get_model(model)
