"""Single-machine GD and SGD: they reach least squares, repeat with a seed, and stop quietly on divergence."""

import warnings

import numpy as np
import pytest

import dml_lesson as dml
from dml_lesson.core.optim import make_schedule


@pytest.fixture(scope="module")
def data():
    X, y, w_true = dml.make_regression(2000, 5, noise=0.1, seed=11).to_numpy()
    w_star = np.linalg.lstsq(X, y, rcond=None)[0]
    return X, y, w_star


def test_gd_reaches_least_squares(data):
    X, y, w_star = data
    lr = 1.0 / dml.lipschitz_constant(X)
    res = dml.gradient_descent(X, y, lr=lr, n_steps=300)
    assert np.max(np.abs(res.w - w_star)) < 1e-6
    assert not res.diverged and len(res.losses) == 301 and res.weights.shape == (301, 6)
    assert np.all(np.diff(res.losses) <= 1e-15)  # below 2/L the loss never rises


def test_gd_first_step_is_the_update_rule(data):
    X, y, _ = data
    res = dml.gradient_descent(X, y, lr=0.1, n_steps=1)
    assert np.allclose(res.weights[1], -0.1 * dml.mse_gradient(np.zeros(6), X, y), rtol=0, atol=1e-15)


def test_sgd_gets_close_and_repeats(data):
    X, y, w_star = data
    res = dml.sgd(X, y, lr=0.05, batch_size=32, n_steps=3000, seed=0, schedule="inv_sqrt")
    assert np.max(np.abs(res.w - w_star)) < 0.02  # stated tolerance of SGD with a decaying step
    again = dml.sgd(X, y, lr=0.05, batch_size=32, n_steps=3000, seed=0, schedule="inv_sqrt")
    assert np.array_equal(res.weights, again.weights)
    other = dml.sgd(X, y, lr=0.05, batch_size=32, n_steps=30, seed=1)
    assert not np.array_equal(res.weights[:31], other.weights)


def test_sgd_batches_are_without_replacement_within_an_epoch():
    n, b = 103, 10
    seen = np.concatenate([dml.minibatch_indices(n, b, 5, 0, t) for t in range(n // b)])
    assert len(seen) == 100 and len(np.unique(seen)) == 100
    assert all(len(dml.minibatch_indices(n, b, 5, 0, t)) == b for t in range(50))
    assert dml.minibatch_indices(n, n, 5, 0, 3) == slice(None)


def test_leftover_rows_are_skipped_and_the_next_epoch_reshuffles_all_rows():
    n, b = 103, 10  # 10 batches per epoch, 3 rows left over
    epoch = [np.concatenate([dml.minibatch_indices(n, b, 5, 0, t) for t in range(e * 10, (e + 1) * 10)])
             for e in range(20)]
    skipped = [np.setdiff1d(np.arange(n), rows) for rows in epoch]
    assert all(len(rows) == 100 and len(np.unique(rows)) == 100 for rows in epoch)
    assert all(len(s) == 3 for s in skipped)
    # the leftovers do not open the next epoch: it is a fresh shuffle of all 103 rows
    assert not np.array_equal(epoch[1][:3], skipped[0])
    assert len({tuple(s) for s in skipped}) > 1  # a different three rows are skipped from epoch to epoch
    assert len(np.unique(np.concatenate(epoch[:5]))) == n  # every row is used within a few epochs


def test_epochs_count_passes_over_the_data(data):
    X, y, _ = data
    b = 128  # 2000 // 128 = 15 steps per epoch, 80 rows skipped each epoch
    res = dml.sgd(X, y, lr=0.01, batch_size=b, n_steps=3 * (len(y) // b))
    assert res.n_steps == 45
    assert res.epochs[-1] == pytest.approx(45 * 128 / 2000)  # 2.88 passes, not 3


def test_sgd_with_the_full_batch_is_gd(data):
    X, y, _ = data
    gd = dml.gradient_descent(X, y, lr=0.1, n_steps=20)
    full = dml.sgd(X, y, lr=0.1, batch_size=len(y), n_steps=20)
    assert np.array_equal(gd.weights, full.weights)


def test_schedules():
    assert make_schedule("constant")(10) == 1.0
    assert make_schedule("inv_sqrt")(3) == pytest.approx(0.5)
    decay = dml.step_decay(every=10, factor=0.5)
    assert [decay(t) for t in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]


@pytest.mark.parametrize("method", ["gd", "sgd"])
def test_divergence_stops_without_warnings(data, method):
    X, y, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if method == "gd":
            res = dml.gradient_descent(X, y, lr=50.0, n_steps=1000)
        else:
            res = dml.sgd(X, y, lr=50.0, batch_size=8, n_steps=1000)
    assert res.diverged and res.n_steps < 1000
    # the step that diverged ends the record: kept when its loss is finite (past the bound), dropped when not
    assert res.diverged_at in (res.n_steps, res.n_steps + 1)
    assert np.all(np.isfinite(res.losses)) and len(res.weights) == len(res.losses)
    assert "diverged at step" in res.status


def test_dask_input_is_computed(data):
    X, y, w_true = dml.make_regression(300, 2, seed=3)
    a = dml.gradient_descent(X, y, lr=0.2, n_steps=5)
    b = dml.gradient_descent(*dml.to_numpy(X, y), lr=0.2, n_steps=5)
    assert np.array_equal(a.weights, b.weights)
