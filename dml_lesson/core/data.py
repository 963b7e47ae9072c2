"""Datasets made block by block from ``(seed, block index)``, so the same seed gives the same rows anywhere.

Rows are drawn in fixed units of ``UNIT_ROWS`` rows, each from its own random stream
``SeedSequence([seed, kind, unit])``. A block is a slice of consecutive rows, so its contents depend only on the
seed and on which rows it holds: not on the block size, the node count, the layout or the machine that makes
it. Notebooks 01 to 05 build every example from :func:`make_regression` and :func:`make_classification`.
"""

from __future__ import annotations

import math
import operator
from typing import Any, NamedTuple

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from .checks import check_float, check_int, check_seed, check_vector
from .settings import COMPUTE_TIMEOUT, bounded

UNIT_ROWS = 1024
"""Rows per random stream: the unit of generation (independent of the block size)."""

_REGRESSION, _CLASSIFICATION, _WEIGHTS = 1, 2, 3


class Dataset(NamedTuple):
    """``(X, y, w_true)``: features with the intercept column first, targets, and the true weights.

    ``X`` and ``y`` are dask arrays chunked by rows (one chunk per block); ``w_true`` is numpy.
    """

    X: Any
    y: Any
    w_true: np.ndarray

    def to_numpy(self) -> Dataset:
        """The same dataset with ``X`` and ``y`` computed into numpy arrays (for small data)."""
        X, y = to_numpy(self.X, self.y)
        return Dataset(X, y, self.w_true)


def to_numpy(*arrays: Any) -> Any:
    """Compute dask arrays into numpy (numpy passes through); one argument gives one array, more a tuple.

    Used by notebooks 01 and 02, where the data fits in memory.
    """
    if any(isinstance(a, da.Array) for a in arrays):
        out = bounded("computing the arrays", dask.compute, *arrays, timeout=COMPUTE_TIMEOUT)
    else:
        out = arrays
    # Arrays received from Dask workers can be unaligned in memory, which makes numpy skip BLAS (8x slower
    # matrix products, measured): copy those into aligned memory.
    out = tuple(np.require(a, requirements="A") for a in out)
    return out[0] if len(out) == 1 else out


def make_regression(
    n_samples: int,
    n_features: int,
    noise: float = 0.1,
    seed: int = 0,
    *,
    w_true: Any = None,
    x_mean: float = 0.0,
    block_size: int | None = None,
) -> Dataset:
    """A linear-regression dataset ``y = X @ w_true + noise * N(0, 1)``.

    Parameters
    ----------
    n_samples, n_features : int
        Rows, and features before the intercept: ``X`` has ``n_features + 1`` columns, ones first.
    noise : float
        Standard deviation of the Gaussian noise added to ``y`` (>= 0).
    seed : int
        Every random number comes from this seed (>= 0).
    w_true : array of length ``n_features + 1``, optional
        The true weights, intercept first; drawn from N(0, 1) with the seed when not given.
    x_mean : float
        Mean of every feature (features are N(x_mean, 1)); a non-zero mean couples the intercept with the
        features and stretches the loss's contours (notebook 01 uses it).
    block_size : int, optional
        Rows per block (dask chunk); by default the rows are cut into ``min(16, n_samples)`` blocks.

    Returns
    -------
    Dataset
        Named tuple ``(X, y, w_true)``; ``X`` and ``y`` are lazy dask arrays.
    """
    n_samples = check_int("n_samples", n_samples, low=1)
    n_features = check_int("n_features", n_features, low=1)
    noise = check_float("noise", noise, low=0.0)
    seed = check_seed("seed", seed)
    x_mean = check_float("x_mean", x_mean)
    if w_true is None:
        rng = np.random.default_rng([seed, _WEIGHTS])
        w_true = rng.standard_normal(n_features + 1)
    else:
        w_true = check_vector("w_true", w_true, n_features + 1)
    params = {"kind": _REGRESSION, "noise": noise, "x_mean": x_mean, "w": w_true}
    return _build(n_samples, n_features, seed, block_size, params, w_true)


def make_classification(
    n_samples: int,
    n_features: int,
    seed: int = 0,
    *,
    positive_fraction: float = 0.5,
    class_sep: float = 1.0,
    block_size: int | None = None,
) -> Dataset:
    """A binary classification dataset for logistic regression, with a class-imbalance knob.

    Each row's label is 1 with probability ``positive_fraction``; its features are Gaussian around
    ``+mu`` (label 1) or ``-mu`` (label 0), with ``|mu| = class_sep / 2``. For this model logistic regression
    is exactly right, and ``w_true`` is the Bayes-optimal weight vector (intercept first).

    Parameters
    ----------
    n_samples, n_features : int
        Rows, and features before the intercept column.
    seed : int
        Every random number comes from this seed (>= 0).
    positive_fraction : float
        Share of label-1 rows, in (0, 1); 0.5 is balanced, 0.05 strongly imbalanced (notebook 09).
    class_sep : float
        Distance between the two class means (> 0); larger is easier.
    block_size : int, optional
        Rows per block; by default ``min(16, n_samples)`` blocks.
    """
    n_samples = check_int("n_samples", n_samples, low=1)
    n_features = check_int("n_features", n_features, low=1)
    seed = check_seed("seed", seed)
    p = check_float("positive_fraction", positive_fraction, low=0.0, high=1.0, low_open=True)
    if p >= 1.0:
        raise ValueError(f"positive_fraction must be in (0, 1), got {p}")
    class_sep = check_float("class_sep", class_sep, low=0.0, low_open=True)
    rng = np.random.default_rng([seed, _WEIGHTS])
    direction = rng.standard_normal(n_features)
    mu = direction / np.linalg.norm(direction) * class_sep / 2
    w_true = np.concatenate([[math.log(p / (1 - p))], 2 * mu])
    params = {"kind": _CLASSIFICATION, "p": p, "mu": mu}
    return _build(n_samples, n_features, seed, block_size, params, w_true)


def default_block_size(n_samples: int) -> int:
    """Rows per block when none is given: ``min(16, n_samples)`` blocks of (nearly) equal size."""
    return math.ceil(n_samples / min(16, n_samples))


def _build(n_samples, n_features, seed, block_size, params, w_true) -> Dataset:
    """Two dask arrays over one graph: per block, a ``make_rows`` task and two ``getitem`` tasks taking X and y."""
    if block_size is None:
        block_size = default_block_size(n_samples)
    block_size = check_int("block_size", block_size, low=1)
    starts = list(range(0, n_samples, block_size))
    token = tokenize(n_samples, n_features, seed, block_size, params)
    rows, x_name, y_name = f"make_rows-{token}", f"X-{token}", f"y-{token}"
    graph: dict = {}
    for i, start in enumerate(starts):
        stop = min(start + block_size, n_samples)
        graph[(rows, i)] = (make_rows, seed, start, stop, n_features, params)
        graph[(x_name, i, 0)] = (operator.getitem, (rows, i), 0)
        graph[(y_name, i)] = (operator.getitem, (rows, i), 1)
    chunks = (tuple(min(block_size, n_samples - s) for s in starts),)
    X_graph = HighLevelGraph.from_collections(x_name, {k: v for k, v in graph.items() if k[0] != y_name})
    y_graph = HighLevelGraph.from_collections(y_name, {k: v for k, v in graph.items() if k[0] != x_name})
    X = da.Array(X_graph, x_name, chunks + ((n_features + 1,),), dtype=float)
    y = da.Array(y_graph, y_name, chunks, dtype=float)
    return Dataset(X, y, w_true)


def make_rows(seed: int, start: int, stop: int, n_features: int, params: dict) -> tuple:
    """Rows ``start:stop`` of a dataset, as ``(X, y)`` numpy arrays: the task that makes one block."""
    first, last = start // UNIT_ROWS, (stop - 1) // UNIT_ROWS
    parts = [_unit(seed, u, n_features, params) for u in range(first, last + 1)]
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    offset = first * UNIT_ROWS
    return X[start - offset : stop - offset], y[start - offset : stop - offset]


def _unit(seed: int, unit: int, n_features: int, params: dict) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, params["kind"], unit])
    X = np.ones((UNIT_ROWS, n_features + 1))
    if params["kind"] == _REGRESSION:
        X[:, 1:] = rng.standard_normal((UNIT_ROWS, n_features)) + params["x_mean"]
        y = X @ params["w"] + params["noise"] * rng.standard_normal(UNIT_ROWS)
    else:
        y = (rng.random(UNIT_ROWS) < params["p"]).astype(float)
        X[:, 1:] = rng.standard_normal((UNIT_ROWS, n_features)) + np.where(y[:, None] > 0, 1, -1) * params["mu"]
    return X, y


def lineage(block: da.Array) -> list[str]:
    """The tasks that make a dask array, as readable lines, inputs first (notebooks 00 and 07).

    This recipe is what the scheduler reruns when a worker holding the result is lost.
    """
    graph = block.__dask_graph__()
    culled = dict(graph.cull(set(dask.core.flatten(block.__dask_keys__()))))
    lines = []
    for key in dask.core.toposort(culled):
        name = key[0] if isinstance(key, tuple) else key
        prefix = str(name).rsplit("-", 1)[0]
        task = culled[key]
        args = task[1:] if isinstance(task, tuple) and callable(task[0]) else getattr(task, "args", ())
        if prefix == "make_rows" and len(args) >= 3:
            lines.append(f"make_rows(seed={args[0]}, rows {args[1]}:{args[2]})")
        elif prefix == "X" or prefix == "y":
            lines.append(f"take {prefix} from it")
        else:
            lines.append("select that block of the array")
    return lines
