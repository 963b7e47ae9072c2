"""The scikit-learn estimators: scikit-learn's own checks, its tools (clone, cross_val_score, GridSearchCV),
dask input, class weights, and the package importing without scikit-learn."""

import subprocess
import sys

import numpy as np
import pytest

import dml_lesson as dml

pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from dml_lesson.analysis.estimators import DistributedSGDClassifier, DistributedSGDRegressor  # noqa: E402
from dml_lesson.analysis.imbalance import class_report  # noqa: E402

# The tests using the ``client`` fixture are marked ``cluster`` by tests/conftest.py; the import test runs a
# plain subprocess, without a cluster.


@pytest.fixture(scope="module")
def regression():
    X, y, w_true = dml.make_regression(1200, 3, noise=0.1, seed=5)
    X, y = dml.to_numpy(X, y)
    return X[:, 1:], y, w_true  # scikit-learn style: no intercept column, the estimator adds it


@pytest.fixture(scope="module")
def rare():
    X, y, _ = dml.make_classification(5000, 3, seed=1, positive_fraction=0.05, class_sep=2.0)
    X, y = dml.to_numpy(X, y)
    return X[:, 1:], np.where(y > 0, "fraud", "ok")


# scikit-learn's checks fit unscaled data on purpose: the estimators' divergence warning is expected there.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks([DistributedSGDRegressor(n_steps=50), DistributedSGDClassifier(n_steps=50)])
def test_scikit_learn_estimator_checks(estimator, check, client):
    """Every check of scikit-learn's suite passes (the classifier declares itself binary-only, so the
    multiclass checks become a check that it refuses multiclass y with scikit-learn's message)."""
    check(estimator)


def test_regressor_learns_the_true_weights_and_keeps_its_run(client, regression):
    X, y, w_true = regression
    est = DistributedSGDRegressor(lr=0.05, n_steps=300).fit(X, y)
    np.testing.assert_allclose(np.r_[est.intercept_, est.coef_], w_true, atol=0.05)
    assert est.score(X, y) > 0.9
    assert est.result_.method == "distributed_sgd" and est.result_.params["n_nodes"] == 2
    gd = DistributedSGDRegressor(lr=0.1, n_steps=300, batch_size=None).fit(X, y)
    assert gd.result_.method == "distributed_gd"


def test_same_seed_same_weights_whatever_the_node_count_for_gd(client, regression):
    X, y, _ = regression
    one = DistributedSGDRegressor(lr=0.1, n_steps=30, batch_size=None, n_nodes=1).fit(X, y)
    four = DistributedSGDRegressor(lr=0.1, n_steps=30, batch_size=None, n_nodes=4).fit(X, y)
    np.testing.assert_allclose(one.coef_, four.coef_, rtol=1e-12)
    again = DistributedSGDRegressor(lr=0.05, n_steps=30, seed=3).fit(X, y)
    np.testing.assert_array_equal(again.coef_, DistributedSGDRegressor(lr=0.05, n_steps=30, seed=3).fit(X, y).coef_)


def test_clone_and_cross_val_score(client, regression):
    X, y, _ = regression
    est = DistributedSGDRegressor(lr=0.05, n_steps=100, seed=2)
    copy = clone(est)
    assert copy is not est and copy.get_params() == est.get_params() and not hasattr(copy, "coef_")
    scores = cross_val_score(est, X, y, cv=KFold(3))
    assert scores.shape == (3,) and np.all(scores > 0.9), scores


def test_grid_search_over_the_learning_rate_in_a_pipeline(client, regression):
    X, y, _ = regression
    pipe = make_pipeline(StandardScaler(), DistributedSGDRegressor(n_steps=60))
    search = GridSearchCV(pipe, {"distributedsgdregressor__lr": [1e-4, 1e-2, 0.1]}, cv=KFold(2))
    search.fit(X, y)
    assert search.best_params_ == {"distributedsgdregressor__lr": 0.1}  # 1e-4 barely moves in 60 steps
    assert search.cv_results_["mean_test_score"][0] < search.best_score_


def test_classifier_labels_probabilities_and_balanced_class_weight(client, rare):
    X, y = rare
    plain = DistributedSGDClassifier(n_steps=200).fit(X, y)
    assert plain.classes_.tolist() == ["fraud", "ok"]
    proba = plain.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(plain.predict(X)) <= {"fraud", "ok"}
    balanced = DistributedSGDClassifier(n_steps=200, class_weight="balanced").fit(X, y)
    as_dict = DistributedSGDClassifier(n_steps=200, class_weight={"fraud": 1.0, "ok": 1 / 19}).fit(X, y)
    truth = (y == "fraud").astype(float)
    recall = [class_report(truth, (e.predict(X) == "fraud").astype(float)).recall[1]
              for e in (plain, balanced, as_dict)]
    assert recall[1] > recall[0] + 0.3 and recall[2] > recall[0] + 0.3


def test_estimators_take_dask_arrays(client):
    X, y, w_true = dml.make_regression(2000, 3, noise=0.1, seed=6)
    est = DistributedSGDRegressor(lr=0.1, n_steps=200, fit_intercept=False, n_nodes=4).fit(X, y)
    np.testing.assert_allclose(est.coef_, w_true, atol=0.05)
    assert est.n_features_in_ == 4
    pred = est.predict(X)
    np.testing.assert_allclose(np.asarray(pred.compute()), dml.to_numpy(X) @ est.coef_)
    Xc, yc, _ = dml.make_classification(2000, 3, seed=6)
    clf = DistributedSGDClassifier(n_steps=100, fit_intercept=False).fit(Xc, yc)
    assert clf.score(dml.to_numpy(Xc), dml.to_numpy(yc)) > 0.6


@pytest.mark.parametrize(("est", "match"), [
    (DistributedSGDRegressor(lr=0), "lr must be a finite number > 0"),
    (DistributedSGDRegressor(n_steps=0), "n_steps must be >= 1"),
    (DistributedSGDRegressor(batch_size=0), "batch_size must be >= 1"),
    (DistributedSGDClassifier(class_weight="even"), "class_weight must be None, 'balanced' or a dict"),
    (DistributedSGDClassifier(class_weight={"cat": 2.0}), "class_weight names labels not in y"),
])
def test_bad_parameters_are_named(client, est, match):
    X = np.random.default_rng([0, 7]).standard_normal((40, 2))
    y = np.r_[np.zeros(20), np.ones(20)]
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)


def test_the_package_imports_without_scikit_learn_and_the_estimators_say_what_to_install():
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "import dml_lesson\n"
            "try:\n    import dml_lesson.analysis.estimators\nexcept ImportError as e:\n    print('ImportError:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'dml-lesson[sklearn]'" in out.stdout
