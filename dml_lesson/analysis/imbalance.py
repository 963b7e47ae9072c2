"""Imbalanced classes: metrics that see the rare class, and three remedies (notebook 09).

When 5% of the rows are positive, a model that always answers "negative" is 95% accurate and useless. The
course measures classifiers with per-class **recall** (the share of each class found) and **balanced
accuracy** (their mean), and compares three remedies for logistic regression trained on the cluster:

- **class weights**: each row's loss is multiplied by its class's weight, ``n / (2 n_class)`` for
  ``"balanced"``, so both classes weigh the same in the gradient (a :class:`~dml_lesson.core.models.Model` whose
  functions are picklable objects, so the nodes run it like any other model);
- **oversampling**: the rare class's rows are drawn again (with replacement) until the classes are even;
- **undersampling**: a random subset of the common class, as large as the rare one, is kept.

Which node holds which rows matters too: :func:`shard_class_counts` counts each class per node under a
layout (a ``noniid`` layout sorted by the label puts all the rare rows on one node).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..core.checks import check_choice, check_float, check_int, check_seed
from ..core.data import to_numpy
from ..core.layout import Layout, assign_rows
from ..core.models import LOGISTIC, Model, check_binary_labels, log1pexp, logistic_predict, sigmoid
from ..core.result import TrainingResult
from ..ps.server import distributed_sgd

REMEDIES = ("none", "class_weight", "oversample", "undersample")
_OVERSAMPLE, _UNDERSAMPLE = 1, 2


@dataclass(frozen=True)
class _WeightedLogisticSums:
    """Weighted sums of log-losses and of gradients: row ``i`` counts ``weight[y_i]`` times."""

    weight0: float
    weight1: float

    def __call__(self, w: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        check_binary_labels(y)
        z = X @ w
        c = np.where(y > 0.5, self.weight1, self.weight0)
        return float(np.sum(c * (log1pexp(z) - y * z))), X.T @ (c * (sigmoid(z) - y))


@dataclass(frozen=True)
class _WeightedLogisticLossSum:
    weight0: float
    weight1: float

    def __call__(self, w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
        check_binary_labels(y)
        z = X @ w
        c = np.where(y > 0.5, self.weight1, self.weight0)
        return float(np.sum(c * (log1pexp(z) - y * z)))


def weighted_logistic(weight0: float, weight1: float) -> Model:
    """Logistic regression whose loss counts each label-0 row ``weight0`` times and each label-1 row ``weight1``.

    The model pickles (its functions are dataclass instances), so ``distributed_sgd(..., model=...)`` ships it
    to the nodes. With weights ``(1, 1)`` it computes exactly what ``LOGISTIC`` does. Used by notebook 09 and
    by :class:`~dml_lesson.analysis.estimators.DistributedSGDClassifier`'s ``class_weight``.
    """
    weight0 = check_float("weight0", weight0, low=0.0, low_open=True)
    weight1 = check_float("weight1", weight1, low=0.0, low_open=True)
    return Model(f"logistic (class weights {weight0:.3g}, {weight1:.3g})",
                 _WeightedLogisticSums(weight0, weight1), _WeightedLogisticLossSum(weight0, weight1), logistic_predict)


def check_labels(y: Any, name: str = "y") -> np.ndarray:
    """Return ``y`` as a float vector of 0/1 labels, or raise a ``ValueError`` naming ``name``."""
    y = np.asarray(y, dtype=float)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of 0/1 labels, got shape {y.shape}")
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"{name} must hold only the labels 0 and 1, got {y[bad][0]:g}")
    return y


def class_weights(y: Any) -> tuple[float, float]:
    """The ``"balanced"`` weights ``n / (2 n_0)`` and ``n / (2 n_1)``: both classes then weigh ``n / 2``.

    The weights average 1 over the rows, so the learning rate keeps its meaning (notebook 09).
    """
    y = check_labels(y)
    n1 = float(y.sum())
    n0 = len(y) - n1
    if n0 == 0 or n1 == 0:
        raise ValueError(f"y must contain both classes to balance them, got {int(n0)} zeros and {int(n1)} ones")
    return len(y) / (2 * n0), len(y) / (2 * n1)


def resample(X: Any, y: Any, method: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Even the classes by ``"oversample"`` (draw rare rows again) or ``"undersample"`` (drop common rows).

    Oversampling keeps every row and adds rare rows drawn with replacement until both classes have as many
    rows as the common one; undersampling keeps every rare row and as many common rows, drawn without
    replacement. The rows come back in a seeded random order (so a contiguous layout still mixes the
    classes on every node). Random streams: ``default_rng([seed, 1])`` and ``default_rng([seed, 2])``.
    """
    method = check_choice("method", method, ("oversample", "undersample"))
    seed = check_seed("seed", seed)
    X, y = np.asarray(X, dtype=float), check_labels(y)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be 2-D with one row per label, got shape {X.shape} for {len(y)} labels")
    class_weights(y)  # both classes present
    rows0, rows1 = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    rare, common = (rows1, rows0) if len(rows1) <= len(rows0) else (rows0, rows1)
    if method == "oversample":
        rng = np.random.default_rng([seed, _OVERSAMPLE])
        extra = rng.choice(rare, size=len(common) - len(rare), replace=True)
        rows = np.concatenate([rows0, rows1, extra])
    else:
        rng = np.random.default_rng([seed, _UNDERSAMPLE])
        rows = np.concatenate([rare, rng.choice(common, size=len(rare), replace=False)])
    rows = rng.permutation(rows)
    return X[rows], y[rows]


class ClassReport(NamedTuple):
    """How a binary classifier does on each class (notebook 09).

    ``confusion[i, j]`` counts rows of true class ``i`` predicted as ``j``; ``recall[c]`` is the share of
    class ``c`` predicted right (``recall[1]`` is also called sensitivity, ``recall[0]`` specificity);
    ``precision`` is the share of predicted positives that are positive (nan when none is predicted).
    """

    accuracy: float
    balanced_accuracy: float
    recall: tuple[float, float]
    precision: float
    confusion: np.ndarray

    def __str__(self) -> str:
        return (f"accuracy {self.accuracy:.3f}, balanced accuracy {self.balanced_accuracy:.3f}, "
                f"recall of class 0 {self.recall[0]:.3f}, of class 1 {self.recall[1]:.3f}")


def class_report(y_true: Any, y_pred: Any) -> ClassReport:
    """Accuracy, balanced accuracy, per-class recall, precision and the confusion matrix of 0/1 predictions."""
    y_true, y_pred = check_labels(y_true, "y_true"), check_labels(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred must have the same length, got {len(y_true)} and {len(y_pred)}")
    confusion = np.zeros((2, 2), dtype=np.int64)
    np.add.at(confusion, (y_true.astype(int), y_pred.astype(int)), 1)
    per_class = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.diag(confusion) / per_class
        precision = confusion[1, 1] / confusion[:, 1].sum()
    present = per_class > 0
    return ClassReport(
        accuracy=float(np.trace(confusion) / len(y_true)),
        balanced_accuracy=float(recall[present].mean()),
        recall=(float(recall[0]), float(recall[1])),
        precision=float(precision),
        confusion=confusion,
    )


def evaluate(w: np.ndarray, X: Any, y: Any, threshold: float = 0.5) -> ClassReport:
    """The :class:`ClassReport` of logistic weights ``w`` on ``(X, y)``: predict 1 where ``sigmoid(X @ w)``
    reaches ``threshold``."""
    threshold = check_float("threshold", threshold, low=0.0, high=1.0)
    X = np.asarray(X, dtype=float)
    return class_report(y, (logistic_predict(np.asarray(w, dtype=float), X) >= threshold).astype(float))


def train_with_remedy(
    X: Any,
    y: Any,
    remedy: str = "none",
    *,
    n_nodes: int = 2,
    lr: float = 0.5,
    batch_size: int = 32,
    n_steps: int = 200,
    seed: int = 0,
    layout: str | Layout = "contiguous",
    client: Any = None,
) -> TrainingResult:
    """Distributed SGD for logistic regression on ``(X, y)`` with one remedy for imbalance (notebook 09).

    ``remedy`` is ``"none"``, ``"class_weight"`` (balanced weights, :func:`class_weights`), ``"oversample"`` or
    ``"undersample"`` (:func:`resample` with ``seed``, then training on the new rows). ``X`` and ``y`` are numpy
    arrays, or dask arrays for ``"none"`` and ``"class_weight"`` (resampling computes them into memory). The
    other parameters go to :func:`~dml_lesson.ps.server.distributed_sgd`.
    """
    remedy = check_choice("remedy", remedy, REMEDIES)
    model = LOGISTIC
    if remedy == "class_weight":
        model = weighted_logistic(*class_weights(to_numpy(y)))
    elif remedy != "none":
        X, y = resample(*to_numpy(X, y), method=remedy, seed=seed)
    return distributed_sgd(X, y, n_nodes=n_nodes, lr=lr, batch_size=batch_size, n_steps=n_steps, seed=seed,
                           model=model, layout=layout, client=client)


def compare_remedies(
    train: tuple[Any, Any],
    test: tuple[Any, Any],
    remedies: tuple[str, ...] = REMEDIES,
    **kwargs: Any,
) -> dict[str, ClassReport]:
    """Train with each remedy on ``train`` and report on ``test`` (notebook 09); ``kwargs`` go to
    :func:`train_with_remedy`."""
    for r in remedies:
        check_choice("remedy", r, REMEDIES)
    return {r: evaluate(train_with_remedy(*train, r, **kwargs).w, *test) for r in remedies}


def shard_class_counts(y: Any, layout: str | Layout, n_nodes: int, block_sizes: Any) -> np.ndarray:
    """Rows of each class on each node under a layout: an ``(n_nodes, 2)`` array of (class 0, class 1) counts.

    ``block_sizes`` are the dataset's block sizes (``X.chunks[0]``); a ``noniid`` layout sorts by the label.
    """
    y = check_labels(y)
    n_nodes = check_int("n_nodes", n_nodes, low=1)
    shards = assign_rows(layout, n_nodes, block_sizes, key=y)
    return np.array([[int(np.sum(y[rows] == 0)), int(np.sum(y[rows] == 1))] for rows in shards])
