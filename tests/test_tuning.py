"""Learning-rate searches: trials as tasks on the cluster, seeded, with the structure each method promises."""

import math
import sys

import numpy as np
import pytest

import dml_lesson as dml
from dml_lesson.analysis import tuning as tu
from dml_lesson.core.models import LINEAR

# The tests using the ``client`` fixture (directly or through ``data``) are marked ``cluster`` by tests/conftest.py;
# test_a_trial_is_sgd_then_the_validation_loss runs a trial in this process, without a cluster.


@pytest.fixture(scope="module")
def arrays():
    X, y, _ = dml.make_regression(3000, 4, noise=0.5, seed=3, x_mean=1.0)
    X, y = dml.to_numpy(X, y)
    return (X[:2400], y[:2400]), (X[2400:], y[2400:])


@pytest.fixture(scope="module")
def data(client, arrays):
    return tu.share_data(client, *arrays, batch_size=32)


def reference_score(arrays, lr, budget, seed=0):
    (X, y), (Xv, yv) = arrays
    res = dml.sgd(X, y, lr=lr, batch_size=32, n_steps=budget, seed=seed)
    return math.inf if res.diverged else LINEAR.loss(res.w, Xv, yv)


def test_a_trial_is_sgd_then_the_validation_loss(arrays):
    import time

    (X, y), (Xv, yv) = arrays
    started = time.perf_counter()
    score, worker, seconds = tu.run_trial((X, y, Xv, yv), LINEAR, 0.05, 40, 32, 1)
    wall = time.perf_counter() - started
    assert score == reference_score(arrays, 0.05, 40, seed=1)
    assert worker == "" and 0 < seconds <= wall  # the trial's own time, inside the call's
    assert tu.run_trial((X, y, Xv, yv), LINEAR, 5.0, 40, 32, 1)[0] == math.inf  # diverged


def test_grid_search_runs_each_rate_on_the_workers(client, data, arrays):
    lrs = np.geomspace(1e-3, 1.0, 7)
    res = tu.grid_search(data, lrs, budget=50, client=client)
    assert [t.lr for t in res.trials] == pytest.approx(lrs.tolist())
    assert [t.score for t in res.trials] == [reference_score(arrays, lr, 50) for lr in lrs]
    assert {t.worker for t in res.trials} <= set(dml.worker_addresses(client))
    assert res.trials[-1].diverged and not res.best.diverged
    assert res.best.score == min(t.score for t in res.trials)
    assert res.total_steps == 7 * 50


def test_random_search_is_seeded_and_stays_in_range(client, data):
    a = tu.random_search(data, n_trials=6, lr_range=(1e-3, 0.1), budget=20, seed=5, client=client)
    b = tu.random_search(data, n_trials=6, lr_range=(1e-3, 0.1), budget=20, seed=5, client=client)
    assert [(t.lr, t.budget, t.score) for t in a.trials] == [(t.lr, t.budget, t.score) for t in b.trials]
    assert all(1e-3 <= t.lr <= 0.1 for t in a.trials)
    assert [t.lr for t in a.trials] != [t.lr for t in tu.random_search(data, 6, (1e-3, 0.1), 20, 6, client).trials]


def test_successive_halving_keeps_the_best_third_and_triples_the_budget(client, data):
    res = tu.successive_halving(data, n_trials=27, lr_range=(1e-3, 1.0), min_budget=5, factor=3, seed=2, client=client)
    rounds = [[t for t in res.trials if t.round == r] for r in range(4)]
    assert [len(r) for r in rounds] == [27, 9, 3, 1]
    assert [r[0].budget for r in rounds] == [5, 15, 45, 135]
    assert [t.lr for t in rounds[0]] == pytest.approx(tu.random_lrs(27, (1e-3, 1.0), seed=2).tolist())
    for before, after in zip(rounds, rounds[1:]):
        ranked = sorted(before, key=lambda t: (t.score, t.lr))
        assert [t.lr for t in after] == [t.lr for t in ranked[: len(after)]]
    assert res.best == rounds[3][0]
    assert res.total_steps == 4 * 27 * 5  # every round costs the same; random search would spend 27 * 135


def test_fewer_random_rates_are_the_first_of_more_with_the_same_seed():
    """Notebook 09 compares 4 full trials with successive halving over 27 rates: the 4 are among the 27."""
    for seed in range(3):
        assert tu.random_lrs(4, (1e-3, 1.0), seed).tolist() == tu.random_lrs(27, (1e-3, 1.0), seed)[:4].tolist()
    assert tu.random_lrs(4, (1e-3, 1.0), 0).tolist() != tu.random_lrs(4, (1e-3, 1.0), 1).tolist()


def test_bayesian_search_with_optuna_repeats_with_its_seed(client, data):
    pytest.importorskip("optuna")
    a = tu.bayesian_search(data, n_trials=8, budget=20, seed=4, n_startup=4, client=client)
    b = tu.bayesian_search(data, n_trials=8, budget=20, seed=4, n_startup=4, client=client)
    assert [t.lr for t in a.trials] == [t.lr for t in b.trials]
    assert [t.score for t in a.trials] == [t.score for t in b.trials]
    assert len(a.trials) == 8 and all(1e-3 <= t.lr <= 1.0 for t in a.trials)
    assert [t.round for t in a.trials] == [0, 0, 1, 1, 2, 2, 3, 3]  # one trial per worker at a time
    c = tu.bayesian_search(data, n_trials=8, budget=20, seed=5, n_startup=4, client=client)
    assert [t.lr for t in a.trials] != [t.lr for t in c.trials]


def test_bayesian_search_without_optuna_says_how_to_install_it(client, data, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"dml-lesson\[tuning\]"):
        tu.bayesian_search(data, n_trials=2, client=client)


def test_a_round_that_takes_too_long_times_out(client, data):
    with pytest.raises(TimeoutError, match="did not finish within"):
        tu.run_trials(data, [1e-4], budget=20_000, client=client, timeout=0.05)


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda d, c: tu.grid_search(d, [], client=c), ValueError, "lrs must be a non-empty"),
    (lambda d, c: tu.grid_search(d, [0.1, -1], client=c), ValueError, "lr must be a finite number > 0"),
    (lambda d, c: tu.random_search(d, 0, client=c), ValueError, "n_trials must be >= 1"),
    (lambda d, c: tu.random_search(d, 2, (0.1, 0.01), client=c), ValueError, "lr_range high must be"),
    (lambda d, c: tu.random_search(d, 2, 0.1, client=c), ValueError, "lr_range must be a pair"),
    (lambda d, c: tu.successive_halving(d, 9, factor=1, client=c), ValueError, "factor must be >= 2"),
    (lambda d, c: tu.grid_search(d, [0.1], budget=0, client=c), ValueError, "budget must be >= 1"),
    (lambda d, c: tu.share_data(c, (np.ones((5, 2)), np.ones(5)), (np.ones((2, 3)), np.ones(2))), ValueError,
     "validation X must have 2 columns"),
    (lambda d, c: tu.share_data(c, (np.ones((5, 2)), np.ones(5)), (np.ones((2, 2)), np.ones(2)), batch_size=6),
     ValueError, "batch_size must be between 1 and 5"),
])
def test_bad_input_is_named(client, data, call, error, match):
    with pytest.raises(error, match=match):
        call(data, client)
