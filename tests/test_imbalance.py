"""Imbalanced classes: metrics, the weighted model, resampling and the remedies on the cluster."""

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dml_lesson as dml
from dml_lesson.analysis import imbalance as im
from dml_lesson.core.models import LOGISTIC


@pytest.fixture(scope="module")
def rare():
    """5% positives: 8,000 training rows and 2,000 test rows of the same dataset."""
    X, y, w_true = dml.make_classification(10_000, 4, seed=1, positive_fraction=0.05, class_sep=2.0)
    X, y = dml.to_numpy(X, y)
    return (X[:8000], y[:8000]), (X[8000:], y[8000:]), w_true


def test_class_report_by_hand():
    y_true = np.array([0, 0, 0, 0, 1, 1])
    y_pred = np.array([0, 0, 0, 1, 1, 0])
    r = im.class_report(y_true, y_pred)
    assert r.confusion.tolist() == [[3, 1], [1, 1]]
    assert r.accuracy == pytest.approx(4 / 6)
    assert r.recall == pytest.approx((0.75, 0.5))
    assert r.balanced_accuracy == pytest.approx(0.625)
    assert r.precision == pytest.approx(0.5)


def test_always_negative_is_accurate_but_balanced_accuracy_sees_through_it():
    y = np.array([0] * 95 + [1] * 5)
    r = im.class_report(y, np.zeros(100))
    assert r.accuracy == pytest.approx(0.95)
    assert r.balanced_accuracy == pytest.approx(0.5)
    assert r.recall == (1.0, 0.0)
    assert np.isnan(r.precision)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=60))
def test_report_agrees_with_scikit_learn(pairs):
    metrics = pytest.importorskip("sklearn.metrics")
    y_true, y_pred = (np.array(v, dtype=float) for v in zip(*pairs))
    r = im.class_report(y_true, y_pred)
    assert r.accuracy == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    if len(np.unique(y_true)) == 2:
        assert r.balanced_accuracy == pytest.approx(metrics.balanced_accuracy_score(y_true, y_pred))
        recall = metrics.recall_score(y_true, y_pred, average=None, labels=[0, 1])
        assert r.recall == pytest.approx(tuple(recall))


def test_weighted_logistic_with_unit_weights_is_logistic_and_pickles():
    rng = np.random.default_rng([0, 1])
    X, y, w = rng.standard_normal((50, 3)), (rng.random(50) < 0.3).astype(float), rng.standard_normal(3)
    model = pickle.loads(pickle.dumps(im.weighted_logistic(1.0, 1.0)))
    loss, grad = model.sums(w, X, y)
    ref_loss, ref_grad = LOGISTIC.sums(w, X, y)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12)
    assert model.loss_sum(w, X, y) == pytest.approx(ref_loss, rel=1e-12)


def test_weighted_logistic_equals_repeating_the_rows():
    """Weight 3 on class 1 is the same loss and gradient as writing every class-1 row three times."""
    rng = np.random.default_rng([0, 2])
    X, y, w = rng.standard_normal((40, 3)), (rng.random(40) < 0.3).astype(float), rng.standard_normal(3)
    model = im.weighted_logistic(1.0, 3.0)
    ones = y == 1
    X3, y3 = np.concatenate([X, X[ones], X[ones]]), np.concatenate([y, y[ones], y[ones]])
    loss, grad = model.sums(w, X, y)
    ref_loss, ref_grad = LOGISTIC.sums(w, X3, y3)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10)


def test_balanced_weights_even_the_classes():
    y = np.array([0] * 90 + [1] * 10)
    w0, w1 = im.class_weights(y)
    assert (w0 * 90, w1 * 10) == pytest.approx((50, 50))
    assert (w0 * 90 + w1 * 10) / 100 == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["oversample", "undersample"])
def test_resample_evens_the_classes_from_the_original_rows(method):
    rng = np.random.default_rng([0, 3])
    X = rng.standard_normal((200, 3))
    y = (np.arange(200) < 20).astype(float)
    Xr, yr = im.resample(X, y, method, seed=4)
    n_rare = 20 if method == "undersample" else 180
    assert (int(yr.sum()), int(len(yr) - yr.sum())) == (n_rare, n_rare)
    originals = {tuple(row) for row in X}
    assert all(tuple(row) in originals for row in Xr)
    if method == "oversample":
        assert {tuple(r) for r in X} == {tuple(r) for r in Xr}  # every row kept
    again = im.resample(X, y, method, seed=4)
    np.testing.assert_array_equal(again[0], Xr)
    assert not np.array_equal(im.resample(X, y, method, seed=5)[0], Xr)


def test_shard_class_counts_noniid_puts_the_rare_class_on_one_node():
    X, y, _ = dml.make_classification(4000, 2, seed=1, positive_fraction=0.05)
    y = dml.to_numpy(y)
    counts = im.shard_class_counts(y, "noniid", 4, X.chunks[0])
    assert counts.sum() == 4000 and counts[:, 1].sum() == y.sum()
    assert np.count_nonzero(counts[:, 1]) == 1
    shuffled = im.shard_class_counts(y, "shuffled", 4, X.chunks[0])
    assert np.all(shuffled[:, 1] > 0)


@pytest.mark.parametrize(("call", "match"), [
    (lambda: im.class_report([0, 2], [0, 1]), "y_true must hold only the labels 0 and 1, got 2"),
    (lambda: im.class_report([0, 1], [0]), "same length"),
    (lambda: im.class_weights([1, 1, 1]), "both classes"),
    (lambda: im.resample(np.ones((3, 2)), [0, 1, 1], "smote"), "method must be one of"),
    (lambda: im.weighted_logistic(0.0, 1.0), "weight0 must be a finite number > 0"),
    (lambda: im.train_with_remedy(np.ones((4, 2)), [0, 1, 0, 1], "magic"), "remedy must be one of"),
    (lambda: im.evaluate(np.zeros(2), np.ones((2, 2)), [0, 1], threshold=2), "threshold"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.cluster
def test_remedies_find_the_rare_class_on_the_cluster(client, rare):
    train, test, _ = rare
    reports = im.compare_remedies(train, test, n_nodes=2, lr=0.5, n_steps=200, client=client)
    plain = reports["none"]
    assert plain.accuracy > 0.9 and plain.recall[1] < 0.5  # accurate, yet misses most of the rare class
    for remedy in ["class_weight", "oversample", "undersample"]:
        r = reports[remedy]
        assert r.recall[1] > plain.recall[1] + 0.3, remedy
        assert r.balanced_accuracy > plain.balanced_accuracy + 0.1, remedy


@pytest.mark.cluster
def test_remedies_are_deterministic_and_class_weights_match_on_dask_arrays(client, rare):
    train, _, _ = rare
    a = im.train_with_remedy(*train, "oversample", n_nodes=2, n_steps=30, seed=3, client=client)
    b = im.train_with_remedy(*train, "oversample", n_nodes=2, n_steps=30, seed=3, client=client)
    np.testing.assert_array_equal(a.weights, b.weights)
    X, y, _ = dml.make_classification(2000, 3, seed=4, positive_fraction=0.1)
    Xn, yn = dml.to_numpy(X, y)
    on_dask = im.train_with_remedy(X, y, "class_weight", n_nodes=2, n_steps=20, client=client)
    model = im.weighted_logistic(*im.class_weights(yn))
    one_node = dml.sgd(Xn, yn, lr=0.5, batch_size=32, n_steps=20, model=model)
    one = im.train_with_remedy(X, y, "class_weight", n_nodes=1, n_steps=20, client=client)
    np.testing.assert_allclose(one.weights, one_node.weights, rtol=1e-12, atol=1e-14)
    assert on_dask.params["n_nodes"] == 2 and np.all(np.isfinite(on_dask.weights))
