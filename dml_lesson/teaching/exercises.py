"""Exercise checks for notebooks 01 to 05: each says what is wrong, not only pass or fail.

A check runs the learner's function on small problems, compares it with the right answer, and recognises
the typical mistakes (several of them are the source article's). It prints one message and returns True
when the answer is right. ``hint(n)`` gives a nudge before the collapsed solution cell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

HINTS = {
    1: "The mean squared error averages over the rows you pass in: divide by len(y), not by a fixed number. "
       "Differentiate (x.w - y)**2 with respect to w: 2 (x.w - y) x.",
    2: "Shuffle the row indices once per epoch (rng.permutation), then cut the shuffled list into consecutive "
       "pieces of exactly batch_size rows: n_rows // batch_size of them. The n_rows % batch_size rows left over are "
       "skipped this epoch; the next epoch reshuffles all rows.",
    3: "Node i of N gets rows from i*n//N up to (i+1)*n//N: every row once, sizes differing by at most one.",
    4: "Add up the nodes' gradient sums and divide once by the total number of rows: a node with more rows "
       "must weigh more.",
    5: "The linear scaling rule multiplies the learning rate by how much larger the global batch is: "
       "lr * (n_nodes * batch_size) / base_batch. It only holds while the result stays below 2/L.",
}


def hint(n: int) -> None:
    """Print the hint of notebook ``n``'s exercise."""
    print(HINTS[n])


class Verdict:
    """A check's answer: true when right; it shows nothing in a notebook (the check already printed)."""

    def __init__(self, ok: bool, message: str) -> None:
        self.ok, self.message = ok, message

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return f"Verdict({self.ok}, {self.message!r})"

    def _ipython_display_(self) -> None:
        pass


def _report(ok: bool, message: str) -> Verdict:
    print(("✓ " if ok else "✗ ") + message)
    return Verdict(ok, message)


def _problems(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for n, d in [(7, 2), (50, 3), (1000, 2)]:
        X = np.column_stack([np.ones(n), rng.normal(size=(n, d - 1))])
        out.append((X, rng.normal(size=n), rng.normal(size=d)))
    return out


def check_gradient(gradient: Callable[[np.ndarray, np.ndarray, np.ndarray], Any]) -> Verdict:
    """Notebook 01: ``gradient(w, X, y)`` must be the MSE gradient ``(2/n) X.T (X w - y)``."""
    for X, y, w in _problems():
        n = len(y)
        right = 2 / n * X.T @ (X @ w - y)
        try:
            got = np.asarray(gradient(w, X, y), dtype=float)
        except Exception as exc:  # a learner's bug: report it, don't crash the check
            return _report(False, f"your function raised {type(exc).__name__}: {exc}")
        if got.shape != right.shape:
            return _report(False, f"the gradient has one entry per weight, shape {right.shape}; yours has "
                                  f"shape {got.shape} (check X.T versus X)")
        if np.allclose(got, right):
            continue
        if np.allclose(got, right * n / 1000):
            return _report(False, "you divide by 1000 whatever the number of rows (the source's mistake): "
                                  "the mean divides by len(y)")
        if np.allclose(got, right / 2):
            return _report(False, "the factor 2 from differentiating the square is missing")
        if np.allclose(got, -right):
            return _report(False, "the sign is flipped: the gradient points uphill, the update subtracts it")
        if np.allclose(got, right * n):
            return _report(False, "this is the sum over rows, not the mean: divide by len(y)")
        return _report(False, f"wrong values on a {n}-row problem: expected {np.round(right, 4)}, "
                              f"got {np.round(got, 4)}")
    return _report(True, "correct: (2/n) X.T (X w - y) on every test problem")


def check_epoch_batches(batches: Callable[[int, int, int], Any]) -> Verdict:
    """Notebook 02: ``batches(n_rows, batch_size, seed)`` returns one epoch's list of index arrays."""
    for n, b in [(100, 10), (103, 10), (64, 64), (50, 7)]:
        try:
            got = [np.asarray(batch) for batch in batches(n, b, 0)]
        except Exception as exc:
            return _report(False, f"your function raised {type(exc).__name__}: {exc}")
        sizes = [len(batch) for batch in got]
        if any(batch.dtype == bool for batch in got):
            return _report(False, "these are boolean masks: a mask keeps a random number of rows (the source's "
                                  "mistake); return arrays of row indices")
        if len(set(sizes)) > 1:
            return _report(False, f"batch sizes vary ({sorted(set(sizes))}): every step should use exactly "
                                  f"batch_size rows")
        if sizes and sizes[0] != b:
            return _report(False, f"asked for batches of {b} rows, got {sizes[0]}")
        if len(got) != n // b:
            return _report(False, f"{n} rows in batches of {b} make {n // b} full batches per epoch, you "
                                  f"returned {len(got)}")
        seen = np.concatenate(got) if got else np.array([], dtype=int)
        if len(np.unique(seen)) != len(seen):
            return _report(False, "a row appears twice in one epoch: draw without replacement "
                                  "(shuffle, then cut)")
        if seen.min() < 0 or seen.max() >= n:
            return _report(False, f"indices must lie in 0..{n - 1}")
    first = np.concatenate([np.asarray(x) for x in batches(100, 10, 0)])
    if np.array_equal(first, np.arange(100)):
        return _report(False, "the rows come in their original order: shuffle them each epoch")
    again = np.concatenate([np.asarray(x) for x in batches(100, 10, 0)])
    if not np.array_equal(first, again):
        return _report(False, "the same seed should give the same batches: seed your random generator")
    return _report(True, "correct: equal batches, without replacement, shuffled, repeatable")


def check_shards(shards: Callable[[int, int], Any]) -> Verdict:
    """Notebook 03: ``shards(n_rows, n_nodes)`` returns each node's row indices (a contiguous layout)."""
    for n, k in [(10, 3), (100, 4), (7, 7), (1000, 6)]:
        try:
            got = [np.asarray(s) for s in shards(n, k)]
        except Exception as exc:
            return _report(False, f"your function raised {type(exc).__name__}: {exc}")
        if len(got) != k:
            return _report(False, f"{k} nodes need {k} shards, got {len(got)}")
        rows = np.concatenate(got)
        if len(rows) < n:
            missing = n - len(rows)
            verb = "is" if missing == 1 else "are"
            return _report(False, f"{missing} of {n} rows {verb} on no node (is the remainder of n / N lost?)")
        if len(np.unique(rows)) != len(rows):
            return _report(False, "some rows are on two nodes: shards must not overlap")
        if not np.array_equal(np.sort(rows), np.arange(n)):
            return _report(False, f"the shards should hold exactly the rows 0..{n - 1}")
        sizes = [len(s) for s in got]
        if max(sizes) - min(sizes) > 1:
            return _report(False, f"shard sizes {sizes} are uneven: the slowest node sets the pace")
    return _report(True, "correct: every row on exactly one node, sizes within one row")


def check_combine(combine: Callable[[list[tuple[np.ndarray, int]]], Any]) -> Verdict:
    """Notebook 04: ``combine(replies)`` turns ``[(gradient sum, row count), ...]`` into the full gradient."""
    rng = np.random.default_rng(4)
    for counts in [(5, 5), (10, 30, 60), (1,), (3, 3, 3, 3)]:
        sums = [rng.normal(size=3) * c for c in counts]
        replies = [(s, c) for s, c in zip(sums, counts)]
        right = sum(sums) / sum(counts)
        try:
            got = np.asarray(combine(replies), dtype=float)
        except Exception as exc:
            return _report(False, f"your function raised {type(exc).__name__}: {exc}")
        if got.shape == right.shape and np.allclose(got, right):
            continue
        if np.allclose(got, sum(s / c for s, c in replies)):
            return _report(False, "this adds the nodes' mean gradients (the source's formula 3.3): the step "
                                  "grows with the node count; divide the summed gradients by the total rows")
        if np.allclose(got, sum(s / c for s, c in replies) / len(replies)):
            return _report(False, "this averages the nodes' means with equal weights: wrong when shards differ "
                                  "in size (a node with 60 rows must count 6 times one with 10)")
        if np.allclose(got, sum(sums)):
            return _report(False, "this is the sum of gradient sums: divide by the total number of rows")
        return _report(False, f"wrong values for counts {counts}: expected {np.round(right, 4)}")
    return _report(True, "correct: the weighted mean, i.e. the full-data gradient")


def check_scaled_lr(scaled_lr: Callable[[float, int, int, int], float]) -> Verdict:
    """Notebook 05: ``scaled_lr(base_lr, base_batch, n_nodes, batch_size)``: the linear scaling rule."""
    for base_lr, base_batch, k, b in [(0.01, 8, 1, 8), (0.01, 8, 4, 8), (0.02, 16, 2, 32), (0.1, 64, 8, 4)]:
        right = base_lr * k * b / base_batch
        try:
            got = float(scaled_lr(base_lr, base_batch, k, b))
        except Exception as exc:
            return _report(False, f"your function raised {type(exc).__name__}: {exc}")
        if np.isclose(got, right):
            continue
        if np.isclose(got, base_lr * k):
            return _report(False, "you scale by the node count only: the global batch is n_nodes * batch_size, "
                                  "compare it with base_batch")
        if np.isclose(got, base_lr):
            return _report(False, "the learning rate did not change: a k times larger batch allows about a k "
                                  "times larger step")
        if np.isclose(got, base_lr * np.sqrt(k * b / base_batch)):
            return _report(False, "that is the square-root rule (also used, mostly for adaptive optimizers); "
                                  "here use the linear rule")
        return _report(False, f"for lr {base_lr}, base batch {base_batch}, {k} nodes × {b}: expected {right:.4g}")
    return _report(True, "correct: lr grows with the global batch n_nodes × batch_size")
