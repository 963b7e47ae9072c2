"""scikit-learn estimators whose ``fit`` runs the course's distributed SGD on the Dask cluster (notebook 09).

:class:`DistributedSGDRegressor` (linear regression, MSE) and :class:`DistributedSGDClassifier` (binary
logistic regression) follow scikit-learn's rules: the constructor only stores its keyword arguments, ``fit``
checks the data and sets the learned attributes (ending in ``_``), ``get_params``/``set_params`` come from
``BaseEstimator``. So scikit-learn's own tools take them as they are: ``clone``, ``cross_val_score``,
``GridSearchCV`` over the learning rate, pipelines with a scaler. Each ``fit`` calls
:func:`~dml_lesson.ps.server.distributed_sgd` (or :func:`~dml_lesson.ps.server.distributed_gd` with
``batch_size=None``) on the course's shared client; numpy and dask arrays are accepted, and the intercept
column of ones is added when ``fit_intercept`` (leave it off for the course's datasets, which have one).

scikit-learn is an optional extra (``pip install dml-lesson[sklearn]``): ``import dml_lesson`` never needs it,
and importing this module without it raises an ``ImportError`` saying how to install it. Subclassing
scikit-learn's own base classes (rather than copying their behaviour) keeps the estimators correct as
scikit-learn evolves, which is why the dependency is taken at import time here and nowhere else.
"""

from __future__ import annotations

import warnings
from typing import Any

import dask.array as da
import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("dml_lesson.analysis.estimators needs scikit-learn: pip install 'dml-lesson[sklearn]' "
                      "(or pip install scikit-learn)") from exc

from ..cluster.client import get_client
from ..core.checks import check_float, check_int, check_seed
from ..core.models import LINEAR, LOGISTIC, Model, logistic_predict
from ..core.result import TrainingResult
from ..ps.server import distributed_gd, distributed_sgd
from .imbalance import class_weights, weighted_logistic


class _DistributedSGD(BaseEstimator):
    """What the regressor and the classifier share: the parameters, the data checks and the training call."""

    def _train(self, X: Any, y: Any, model: Model) -> TrainingResult:
        lr = check_float("lr", self.lr, low=0.0, low_open=True)
        n_steps = check_int("n_steps", self.n_steps, low=1)
        n_nodes = check_int("n_nodes", self.n_nodes, low=1)
        seed = check_seed("seed", self.seed)
        if isinstance(X, da.Array) and not isinstance(y, da.Array):
            y = da.from_array(np.asarray(y, dtype=float), chunks=(X.chunks[0],))
        elif isinstance(y, da.Array) and not isinstance(X, da.Array):
            y = y.compute()
        n_blocks = X.numblocks[0] if isinstance(X, da.Array) else len(y)
        n_nodes = min(n_nodes, n_blocks)  # small data: at most one node per row (or per block)
        kw = {"n_nodes": n_nodes, "lr": lr, "n_steps": n_steps, "model": model, "layout": self.layout,
              "client": get_client()}
        if self.batch_size is None:
            res = distributed_gd(X, y, **kw)
        else:
            batch_size = check_int("batch_size", self.batch_size, low=1)
            batch_size = min(batch_size, max(1, len(y) // n_nodes))  # no larger than the smallest shard
            res = distributed_sgd(X, y, batch_size=batch_size, seed=seed, **kw)
        if res.diverged:
            warnings.warn(f"training diverged at step {res.diverged_at} (lr={lr}): the weights are the last "
                          "finite ones; lower lr or scale the features", ConvergenceWarning, stacklevel=3)
        return res

    def _features(self, X: Any, *, reset: bool, y: Any = "no_validation", **check: Any) -> tuple[Any, Any]:
        """Check X (and y when fitting) and add the intercept column: numpy through scikit-learn's checks,
        dask arrays by shape only (their values are checked on the workers)."""
        if isinstance(X, da.Array):
            if X.ndim != 2:
                raise ValueError(f"X must be 2-D, got {X.ndim}-D with shape {X.shape}")
            if reset:
                self.n_features_in_ = X.shape[1]
            elif X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                                 f"{self.n_features_in_} features as input")
            X = X.astype(float).rechunk({1: -1})
            if self.fit_intercept:
                X = da.concatenate([da.ones((X.shape[0], 1), chunks=(X.chunks[0], 1)), X], axis=1)
            return X, y
        if isinstance(y, str) and y == "no_validation":
            X = validate_data(self, X, reset=reset, dtype=np.float64)
        else:
            X, y = validate_data(self, X, y, reset=reset, dtype=np.float64, **check)
        if self.fit_intercept:
            X = np.hstack([np.ones((len(X), 1)), X])
        return np.ascontiguousarray(X), y

    def _split_weights(self, w: np.ndarray) -> tuple[np.ndarray, float]:
        return (w[1:], float(w[0])) if self.fit_intercept else (w, 0.0)


class DistributedSGDRegressor(RegressorMixin, _DistributedSGD):
    """Linear regression trained by distributed SGD on the cluster, as a scikit-learn regressor (notebook 09).

    Parameters
    ----------
    lr : float
        Learning rate (> 0). With standardized features the MSE's steps are stable below about
        ``1 / (1 + n_features)``; scale the features (e.g. ``StandardScaler`` in a pipeline).
    n_steps : int
        SGD steps (>= 1).
    batch_size : int or None
        Rows per node per step; None runs full-batch distributed gradient descent. Capped at the rows of
        the smallest shard.
    n_nodes : int
        Nodes of the parameter server; capped at the rows (numpy) or blocks (dask) of X.
    seed : int
        Seed of the mini-batches.
    fit_intercept : bool
        Add a column of ones to X (False when X has one already).
    layout : str or Layout
        How rows are grouped into shards.

    Attributes
    ----------
    coef_ : array (n_features,), intercept_ : float
        The learned weights.
    result_ : TrainingResult
        The training run (losses per step, timings, bytes), as every optimizer of the course returns it.
    """

    def __init__(self, lr: float = 0.05, n_steps: int = 200, batch_size: int | None = 32, n_nodes: int = 2,
                 seed: int = 0, fit_intercept: bool = True, layout: Any = "contiguous") -> None:
        self.lr, self.n_steps, self.batch_size, self.n_nodes = lr, n_steps, batch_size, n_nodes
        self.seed, self.fit_intercept, self.layout = seed, fit_intercept, layout

    def fit(self, X: Any, y: Any) -> DistributedSGDRegressor:
        """Train on ``(X, y)`` (numpy or dask arrays); returns ``self``."""
        X, y = self._features(X, reset=True, y=y, y_numeric=True)
        self.result_ = self._train(X, y, LINEAR)
        self.coef_, self.intercept_ = self._split_weights(self.result_.w)
        return self

    def predict(self, X: Any) -> Any:
        """Predicted targets ``X @ coef_ + intercept_`` (a dask array for dask input)."""
        check_is_fitted(self)
        X, _ = self._features(X, reset=False)
        return X @ self.result_.w


class DistributedSGDClassifier(ClassifierMixin, _DistributedSGD):
    """Binary logistic regression trained by distributed SGD on the cluster, as a scikit-learn classifier.

    Parameters are those of :class:`DistributedSGDRegressor` (``lr`` defaults to 0.5), plus

    class_weight : None, ``"balanced"`` or dict
        Weight of each class's rows in the loss: equal (None), ``n / (2 n_class)`` (``"balanced"``, see
        :func:`~dml_lesson.analysis.imbalance.class_weights`), or ``{label: weight}`` (missing labels weigh 1).
        Notebook 09 uses it against class imbalance.

    Attributes
    ----------
    classes_ : array of the two labels
        ``classes_[1]`` is the positive class.
    coef_ : array (1, n_features), intercept_ : array (1,)
        The learned weights, shaped as scikit-learn's linear classifiers shape them.
    result_ : TrainingResult
    """

    def __init__(self, lr: float = 0.5, n_steps: int = 200, batch_size: int | None = 32, n_nodes: int = 2,
                 seed: int = 0, fit_intercept: bool = True, layout: Any = "contiguous",
                 class_weight: Any = None) -> None:
        self.lr, self.n_steps, self.batch_size, self.n_nodes = lr, n_steps, batch_size, n_nodes
        self.seed, self.fit_intercept, self.layout, self.class_weight = seed, fit_intercept, layout, class_weight

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def fit(self, X: Any, y: Any) -> DistributedSGDClassifier:
        """Train on ``(X, y)`` with exactly two labels (any two values); returns ``self``."""
        if isinstance(X, da.Array) or isinstance(y, da.Array):
            y = np.asarray(y.compute() if isinstance(y, da.Array) else y)
            X, _ = self._features(X, reset=True, y=y)
        else:
            X, y = self._features(X, reset=True, y=y)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            found = "one class" if len(self.classes_) == 1 else f"{len(self.classes_)} classes"
            raise ValueError(f"Only binary classification is supported. DistributedSGDClassifier needs exactly 2 "
                             f"classes in y, got {found}: {self.classes_.tolist()[:5]}")
        y01 = (y == self.classes_[1]).astype(float)
        self.result_ = self._train(X, y01, self._model(y01))
        coef, intercept = self._split_weights(self.result_.w)
        self.coef_, self.intercept_ = coef[None, :], np.array([intercept])
        return self

    def _model(self, y01: np.ndarray) -> Model:
        cw = self.class_weight
        if cw is None:
            return LOGISTIC
        if isinstance(cw, str) and cw == "balanced":
            return weighted_logistic(*class_weights(y01))
        if isinstance(cw, dict):
            unknown = set(cw) - set(self.classes_.tolist())
            if unknown:
                raise ValueError(f"class_weight names labels not in y: {sorted(unknown, key=str)}; "
                                 f"the labels are {self.classes_.tolist()}")
            return weighted_logistic(cw.get(self.classes_[0], 1.0), cw.get(self.classes_[1], 1.0))
        raise ValueError(f"class_weight must be None, 'balanced' or a dict {{label: weight}}, got {cw!r}")

    def decision_function(self, X: Any) -> Any:
        """The logit ``X @ coef_ + intercept_``: positive means ``classes_[1]``."""
        check_is_fitted(self)
        X, _ = self._features(X, reset=False)
        return X @ self.result_.w

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of ``classes_[0]`` and ``classes_[1]``, one row per row of X."""
        check_is_fitted(self)
        X, _ = self._features(X, reset=False)
        p = np.asarray(logistic_predict(self.result_.w, X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """The label with the larger probability (``classes_[1]`` when the logit is >= 0)."""
        check_is_fitted(self)
        return self.classes_[(np.asarray(self.decision_function(X)) >= 0).astype(int)]
