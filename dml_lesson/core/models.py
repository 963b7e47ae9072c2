"""Models as pure functions of one block ``(w, X, y)``: loss, gradient and prediction.

The course's conventions (COURSE.md): linear regression's loss is the mean squared error
``(1/n) * sum((x_i . w - y_i)**2)`` with gradient ``(2/n) * X.T @ (X @ w - y)``; logistic regression's loss is
the mean log-loss with gradient ``(1/n) * X.T @ (sigmoid(X @ w) - y)``, for labels 0 and 1 only (its functions
raise a ``ValueError`` naming ``y`` for other targets, on one machine or on a node of the cluster). The
``*_sums`` functions return the sums over the block's rows (not means): a node of the parameter server returns
sums and a row count, and the server divides once by the total count. Notebooks 01 (linear) and 09 (logistic)
use them directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .checks import check_choice


def linear_sums(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Sum of squared errors and the sum of per-row gradients ``2 * X.T @ (X @ w - y)``."""
    r = X @ w - y
    return float(r @ r), 2.0 * (X.T @ r)


def linear_loss_sum(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Sum of squared errors of the block."""
    r = X @ w - y
    return float(r @ r)


def linear_predict(w: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Predicted targets ``X @ w``."""
    return X @ w


def log1pexp(z: np.ndarray) -> np.ndarray:
    """``log(1 + exp(z))`` without overflow."""
    return np.logaddexp(0.0, z)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, computed without overflow warnings."""
    return np.exp(-log1pexp(-z))


def check_binary_labels(y: np.ndarray) -> None:
    """Raise a ``ValueError`` naming ``y`` unless every target is 0 or 1, the labels the log-loss is defined for.

    Other labels (-1/1, 0/2, continuous targets) would train without complaint and report negative losses. The
    logistic functions call this on every block they get, so every optimizer that takes ``model="logistic"``
    checks its targets, the distributed ones on the workers, shard by shard: no extra pass over a dask ``y``
    (which would generate the whole dataset once more), and nothing for the server to know about models. The
    cost is one comparison pass over ``y``: 1 to 2% of the logistic functions' time on blocks of 62,500 and
    1,000,000 rows (measured), a few microseconds on small ones.
    """
    bad = (y != 0.0) & (y != 1.0)
    if bad.any():
        raise ValueError(f"y must hold only the labels 0 and 1 for model='logistic', got {y[bad][0]:g}: "
                         "map the two classes to 0 and 1 first, e.g. y = (labels == positive_label); for continuous "
                         "targets use model='linear'")


def logistic_sums(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Sum of log-losses ``log(1 + exp(z)) - y z`` (z = X @ w) and the sum of gradients ``X.T @ (p - y)``."""
    check_binary_labels(y)
    z = X @ w
    return float(np.sum(log1pexp(z) - y * z)), X.T @ (sigmoid(z) - y)


def logistic_loss_sum(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Sum of the block's log-losses."""
    check_binary_labels(y)
    z = X @ w
    return float(np.sum(log1pexp(z) - y * z))


def logistic_predict(w: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Probability of label 1, ``sigmoid(X @ w)``."""
    return sigmoid(X @ w)


@dataclass(frozen=True)
class Model:
    """A model as three pure functions; the cluster code never knows which model it runs."""

    name: str
    sums: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[float, np.ndarray]]
    loss_sum: Callable[[np.ndarray, np.ndarray, np.ndarray], float]
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray]

    def loss(self, w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
        """Mean loss over the block."""
        return self.loss_sum(w, X, y) / len(y)

    def gradient(self, w: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Mean gradient over the block."""
        return self.sums(w, X, y)[1] / len(y)


LINEAR = Model("linear", linear_sums, linear_loss_sum, linear_predict)
LOGISTIC = Model("logistic", logistic_sums, logistic_loss_sum, logistic_predict)
MODELS = {"linear": LINEAR, "logistic": LOGISTIC}


def get_model(model: str | Model) -> Model:
    """Look a model up by name (``"linear"`` or ``"logistic"``), or pass a :class:`Model` through."""
    if isinstance(model, Model):
        return model
    return MODELS[check_choice("model", model, tuple(MODELS))]


def mse(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error ``(1/n) * sum((X @ w - y)**2)`` (notebook 01)."""
    return LINEAR.loss(w, X, y)


def mse_gradient(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of the mean squared error, ``(2/n) * X.T @ (X @ w - y)`` (notebook 01)."""
    return LINEAR.gradient(w, X, y)


def lipschitz_constant(X: np.ndarray) -> float:
    """Largest eigenvalue L of the MSE's Hessian ``(2/n) X.T X``: gradient descent is stable for lr < 2/L.

    Notebook 01 marks ``2 / L`` on the learning-rate slider.
    """
    X = np.asarray(X, dtype=float)
    return float(np.linalg.eigvalsh(2.0 / len(X) * (X.T @ X))[-1])


def least_squares_floor(X: np.ndarray, y: np.ndarray) -> float:
    """The lowest mean squared error any linear model reaches on these rows: the least-squares fit's (notebooks 08, 10).

    It lies below the noise variance (the expected loss on *new* rows): the fit also fits part of the noise of the
    rows it was fitted on, on average ``d / n`` of it (``sigma**2 * (1 - d/n)`` in expectation). Loss curves computed on
    the training rows approach this in-sample floor, not the noise variance. ``X`` and ``y`` are numpy arrays (call
    :func:`~dml_lesson.core.data.to_numpy` on dask arrays first).
    """
    X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    if X.ndim != 2 or y.shape != (len(X),):
        raise ValueError(f"X must be 2-d and y must have one target per row of X; got shapes {X.shape} and {y.shape}")
    w, *_ = np.linalg.lstsq(X, y, rcond=None)
    return LINEAR.loss(w, X, y)
