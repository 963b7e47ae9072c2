"""DP-SGD (clipping, noise, the budget) and secure aggregation (masks cancel exactly), notebook 10."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dml_lesson as dml
from dml_lesson.core.codecs import codec_rng
from dml_lesson.core.models import LINEAR, LOGISTIC, Model, least_squares_floor
from dml_lesson.core.optim import minibatch_indices
from dml_lesson.teaching import experiments, plots
from dml_lesson.teaching.plots import privacy as plots_privacy
from dml_lesson.teaching.widgets import privacy as wp
from dml_lesson.variants import secagg
from dml_lesson.variants.dp import (
    ACCOUNTANTS,
    NEIGHBOURS,
    SAMPLINGS,
    GaussianNoise,
    budget_table,
    clipped_gradient_sum,
    clipped_model,
    clipped_share,
    dp_sgd,
    no_accountant,
    participations,
    privacy_budget,
)


@pytest.fixture(scope="module")
def data():
    X, y, _ = dml.make_regression(800, 3, noise=0.1, seed=5, block_size=100)
    return X, y, *dml.to_numpy(X, y)


# --- clipping -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", [LINEAR, LOGISTIC])
def test_vectorized_clipping_equals_clipping_row_by_row(model):
    rng = np.random.default_rng(1)
    X = np.column_stack([np.ones(50), rng.normal(size=(50, 3))])
    y = (rng.random(50) < 0.5).astype(float) if model is LOGISTIC else rng.normal(size=50)
    w = rng.normal(size=4)
    def sums(w, X, y):  # an unknown function: the row-by-row path
        return model.sums(w, X, y)

    generic = Model(model.name, sums, model.loss_sum, model.predict)
    for c in [0.1, 1.0, 100.0]:
        fast = clipped_gradient_sum(model, w, X, y, c)
        slow = clipped_gradient_sum(generic, w, X, y, c)
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)


def test_each_row_moves_the_clipped_sum_by_at_most_c():
    rng = np.random.default_rng(2)
    X = np.column_stack([np.ones(30), rng.normal(0, 5, size=(30, 2))])
    y, w = rng.normal(0, 10, 30), np.zeros(3)
    full = clipped_gradient_sum(LINEAR, w, X, y, 0.7)
    for j in range(30):
        without = clipped_gradient_sum(LINEAR, w, np.delete(X, j, 0), np.delete(y, j), 0.7)
        assert np.linalg.norm(full - without) <= 0.7 + 1e-12
    assert clipped_share(LINEAR, w, X, y, 0.7) > 0.9  # here nearly every row is clipped
    assert clipped_share(LINEAR, w, X, y, 1e9) == 0.0


def test_a_large_clip_norm_changes_nothing():
    rng = np.random.default_rng(3)
    X, y, w = rng.normal(size=(20, 3)), rng.normal(size=20), rng.normal(size=3)
    model = clipped_model("linear", 1e12)
    assert np.array_equal(model.sums(w, X, y)[1], LINEAR.sums(w, X, y)[1])
    assert model.sums(w, X, y)[0] == LINEAR.loss_sum(w, X, y)


# --- noise ----------------------------------------------------------------------------------------------------

def test_noise_shares_add_up_to_sigma_c():
    noise = GaussianNoise(2.0, 0.5, n_nodes=4)
    totals = np.array([sum(noise.encode(np.zeros(50), codec_rng(0, node, step)) for node in range(4))
                       for step in range(200)])
    assert noise.node_std == pytest.approx(0.5)
    assert np.std(totals) == pytest.approx(1.0, rel=0.03)  # 10,000 draws: the std is within 3 %
    assert abs(np.mean(totals)) < 0.03


# --- DP-SGD on the cluster -------------------------------------------------------------------------------------

@pytest.mark.cluster
def test_without_noise_and_clipping_dp_sgd_is_distributed_sgd(client, data):
    X, y, _, _ = data
    kw = dict(n_nodes=4, lr=0.05, batch_size=10, n_steps=20, seed=3, client=client)
    plain = dml.distributed_sgd(X, y, **kw)
    dp = dp_sgd(X, y, noise_multiplier=0.0, clip_norm=1e12, **kw)
    assert np.array_equal(plain.weights, dp.weights)
    clipped = dml.distributed_sgd(X, y, model=clipped_model("linear", 0.5), **kw)
    assert np.array_equal(dp_sgd(X, y, noise_multiplier=0.0, clip_norm=0.5, **kw).weights, clipped.weights)


@pytest.mark.cluster
def test_dp_sgd_is_the_same_through_actors_and_tasks(client, data):
    X, y, _, _ = data
    kw = dict(n_nodes=3, lr=0.05, batch_size=10, n_steps=15, seed=1, noise_multiplier=2.0, clip_norm=0.5,
              client=client)
    assert np.array_equal(dp_sgd(X, y, transport="actors", **kw).weights, dp_sgd(X, y, transport="tasks", **kw).weights)


@pytest.mark.cluster
def test_the_noise_is_the_seeded_gaussian_on_the_sum(client, data):
    X, y, _, _ = data
    kw = dict(n_nodes=2, lr=0.1, batch_size=8, n_steps=1, seed=9, clip_norm=0.5, client=client)
    quiet, noisy = dp_sgd(X, y, noise_multiplier=0.0, **kw), dp_sgd(X, y, noise_multiplier=3.0, **kw)
    again = dp_sgd(X, y, noise_multiplier=3.0, **kw)
    assert np.array_equal(noisy.weights, again.weights)  # same seed, same run
    expected = sum(GaussianNoise(3.0, 0.5, 2).encode(np.zeros(4), codec_rng(9, node, 0)) for node in range(2))
    step_noise = (quiet.w - noisy.w) * (2 * 8) / 0.1  # w1 = w0 - lr * (clipped sum + noise) / global batch
    np.testing.assert_allclose(step_noise, expected, rtol=1e-9, atol=1e-9)
    other = dp_sgd(X, y, noise_multiplier=3.0, **{**kw, "seed": 10})
    assert not np.array_equal(other.weights, noisy.weights)
    assert noisy.params["noise_std"] == 1.5


@pytest.mark.cluster
def test_more_noise_costs_accuracy(client, data):
    X, y, _, _ = data
    kw = dict(n_nodes=2, lr=0.1, batch_size=10, n_steps=80, seed=0, clip_norm=1.0, client=client)
    finals = [dp_sgd(X, y, noise_multiplier=s, **kw).losses[-10:].mean() for s in [0.0, 16.0]]
    assert finals[1] > 1.5 * finals[0]


# --- the privacy budget ----------------------------------------------------------------------------------------

@given(n=st.integers(5, 60), b=st.integers(1, 70), steps=st.integers(1, 40))
@settings(max_examples=40, deadline=None)
def test_participations_is_the_most_any_row_is_used(n, b, steps):
    counts = np.zeros(n, dtype=int)
    for step in range(steps):
        counts[np.arange(n)[minibatch_indices(n, b, 0, 0, step)]] += 1
    assert participations(steps, b, [n]) >= counts.max()  # a valid bound...
    if n % b == 0:  # ...and exact when every row is in every epoch's batches
        assert participations(steps, b, [n]) == counts.max()


def test_budget_behaves_like_a_budget():
    kw = dict(batch_size=20, shard_sizes=[2000, 2000])
    eps = [privacy_budget(s, 100, **kw) for s in [0.5, 1.0, 2.0, 4.0]]
    assert eps == sorted(eps, reverse=True)  # more noise, less epsilon
    assert privacy_budget(1.0, 1000, **kw) > privacy_budget(1.0, 100, **kw)  # more steps, more epsilon
    assert privacy_budget(0.0, 100, **kw) == math.inf
    for s in [0.5, 1.0, 4.0]:  # sampling amplification is what makes the usual number small
        assert privacy_budget(s, 100, sampling="no-amplification", **kw) > privacy_budget(s, 100, **kw)


@pytest.mark.parametrize("sigma, neighbours", [(1.0, "zero-out"), (2.0, "replace-one")])
def test_no_amplification_bound_matches_the_gaussian_mechanism(sigma, neighbours):
    # One use of each row: zero-out moves the sum by C, replace-one by 2C, so sigma = 1 (zero-out) and sigma = 2
    # (replace-one) are both the plain Gaussian mechanism of noise multiplier 1, whose RDP of order a is a / 2;
    # epsilon = min over a of a/2 + log(1/delta)/(a-1) (Mironov 2017, before the refinements dp-accounting applies,
    # so the library's epsilon may only be smaller).
    eps = privacy_budget(sigma, 1, batch_size=10, shard_sizes=[10], delta=1e-5, sampling="no-amplification",
                         neighbours=neighbours)
    orders = np.linspace(1.01, 200, 20000)
    classic = np.min(orders / 2 + math.log(1e5) / (orders - 1))
    assert 0.6 * classic < eps <= classic + 1e-9


def test_zero_out_under_poisson_sampling_is_the_add_remove_number():
    # A zero row adds nothing and leaves the other rows' draws alone: the usual (add/remove) number, as
    # dp-accounting computes it under its default relation.
    import dp_accounting
    import dp_accounting.rdp

    for sigma, q, steps in [(0.8, 0.01, 100), (1.0, 0.05, 300), (3.0, 0.2, 10)]:
        accountant = dp_accounting.rdp.RdpAccountant(
            neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
        accountant.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
        batch, shard = round(q * 1000), 1000
        assert privacy_budget(sigma, steps, batch, [shard]) == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-12)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 4.0])
def test_the_gap_splits_into_neighbours_and_sampling(sigma):
    kw = dict(n_steps=100, batch_size=20, shard_sizes=[2000, 2000], delta=1e-5)
    table = budget_table(sigma, **kw)
    assert set(table) == {(s, n) for s in SAMPLINGS for n in NEIGHBOURS}
    assert table["poisson", "replace-one"] is None  # no accountant: left empty, never guessed
    assert table["fixed-size", "zero-out"] is None
    for key, eps in table.items():
        if eps is not None:
            assert eps == privacy_budget(sigma, sampling=key[0], neighbours=key[1], **kw)
    usual, middle, proven = (table["poisson", "zero-out"], table["no-amplification", "zero-out"],
                             table["no-amplification", "replace-one"])
    assert usual < middle < proven  # sampling, then the neighbour definition, each explain part of the gap
    # replace-one is zero-out at half the noise multiplier (sensitivity 2C)
    assert proven == pytest.approx(privacy_budget(sigma / 2, sampling="no-amplification", **kw), rel=1e-12)


def test_budget_checks_its_inputs(monkeypatch):
    with pytest.raises(ValueError, match="sampling"):
        privacy_budget(1.0, 10, 5, [100], sampling="shuffle")
    with pytest.raises(ValueError, match="delta"):
        privacy_budget(1.0, 10, 5, [100], delta=0.0)
    with pytest.raises(ValueError, match="shard_sizes"):
        privacy_budget(1.0, 10, 5, [])
    with pytest.raises(ValueError, match="neighbours"):
        privacy_budget(1.0, 10, 5, [100], sampling="no-amplification", neighbours="add-remove")
    with pytest.raises(ValueError, match="no Poisson analysis for replace-one"):
        privacy_budget(1.0, 10, 5, [100], neighbours="replace-one")
    with pytest.raises(ValueError, match="only for replace-one"):
        privacy_budget(1.0, 10, 5, [100], sampling="fixed-size")
    with pytest.raises(ValueError, match="accountant"):
        privacy_budget(1.0, 10, 5, [100], accountant="moments")
    with pytest.raises(ValueError, match="noise_multiplier"):
        dp_sgd(np.ones((10, 2)), np.ones(10), noise_multiplier=-1.0)
    with pytest.raises(ValueError, match="clip_norm"):
        clipped_model("linear", 0.0)
    monkeypatch.setitem(sys.modules, "dp_accounting", None)
    with pytest.raises(ImportError, match=r"dml-lesson\[privacy\]"):
        privacy_budget(1.0, 10, 5, [100])


# --- secure aggregation ----------------------------------------------------------------------------------------

vectors = st.integers(1, 8).flatmap(lambda k: st.lists(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=6, max_size=6), min_size=k, max_size=k))


@given(parts=vectors, seed=st.integers(0, 2**32), step=st.integers(0, 1000))
@settings(max_examples=60, deadline=None)
def test_masked_sum_is_bit_exact_and_within_the_fixed_point_bound(parts, seed, step):
    k = len(parts)
    parts = [np.array(p) for p in parts]
    masked = [secagg.masked_vector(g, i, k, seed, step) for i, g in enumerate(parts)]
    fixed = [secagg.to_fixed(g, n_nodes=k) for g in parts]
    assert np.array_equal(secagg.modular_sum(masked), secagg.modular_sum(fixed))
    exact = np.sum(parts, axis=0)
    err = np.abs(secagg.secure_sum(masked) - exact)
    assert np.all(err <= secagg.fixed_point_error_bound(k) + 4 * np.finfo(float).eps * np.abs(exact))
    if k > 1:  # with a partner, no masked vector is the node's fixed-point vector
        assert not any(np.array_equal(m, f) for m, f in zip(masked, fixed))


def test_masks_cancel_and_look_uniform():
    k, d = 5, 4000
    masks = [secagg.mask(np.zeros(d, dtype=np.uint64), i, k, 1, 2) for i in range(k)]
    assert not np.any(secagg.modular_sum(masks))
    assert np.array_equal(secagg.pair_mask(1, 2, 0, 3, d), secagg.pair_mask(1, 2, 3, 0, d))
    for m in masks:
        assert secagg.looks_uniform(m) == pytest.approx(0.5, abs=0.02)


def test_secure_aggregation_refuses_what_it_cannot_do():
    m = [secagg.masked_vector(np.ones(3), i, 3) for i in range(3)]
    with pytest.raises(ValueError, match="every node"):
        secagg.secure_sum([m[0], None, m[2]])
    with pytest.raises(ValueError, match="overflows"):
        secagg.to_fixed([1e10], n_nodes=4)
    with pytest.raises(ValueError, match="node"):
        secagg.mask(np.zeros(3, dtype=np.uint64), 3, 3, 0, 0)


@pytest.mark.cluster
def test_secure_round_on_the_cluster(client, data):
    X, y, _, _ = data
    placement = dml.place_shards(client, X, y, 4)
    w = np.array([0.1, -0.2, 0.3, 0.0])
    result = secagg.secure_round(client, placement, w, step=3, seed=4)
    config = dml.NodeConfig(dml.LINEAR, None, 4)
    parts = [client.submit(dml.node_step, s, config, i, w, 3, pure=False, workers=[placement.workers[i]]).result(
        timeout=60).grad_sum for i, s in enumerate(placement.futures)]
    fixed = secagg.modular_sum([secagg.to_fixed(g, n_nodes=4) for g in parts])
    assert np.array_equal(secagg.modular_sum(result.masked), fixed)
    assert np.max(np.abs(result.total - np.sum(parts, axis=0))) <= secagg.fixed_point_error_bound(4) * 1.001
    assert result.count == 800
    np.testing.assert_allclose(result.total / result.count, dml.mse_gradient(w, *dml.to_numpy(X, y)), atol=1e-9)


# --- the widget ------------------------------------------------------------------------------------------------

@pytest.mark.cluster
def test_dp_widget_redraws_and_matches_the_static_figure(client, data):
    X, y, _, _ = data
    kw = dict(n_nodes=2, lr=0.1, batch_size=10, n_steps=30, client=client)
    explorer = wp.dp_explorer(X, y, noise_multiplier=1.0, **kw)
    runs = experiments.dp_runs(X, y, 1.0, 1.0, **kw)
    dp = list(runs.values())[1]
    floor = least_squares_floor(*dml.to_numpy(X, y))
    static = plots_privacy.dp_figure(runs, experiments.epsilon_curve(30, 10, dp.params["shard_sizes"]), 1.0,
                                     floor=floor)
    assert plots.to_png(static) == explorer.png
    assert "ε = " in explorer.status.value
    explorer.controls["noise_multiplier"].value = 0.0
    assert explorer.redraws == 2 and "no privacy" in explorer.status.value


def test_dp_figure_names_what_it_plots_and_keeps_its_legend_off_the_curves():
    X, y, _ = dml.make_regression(400, 3, noise=0.1, seed=1)
    X, y = dml.to_numpy(X, y)
    runs = {"non-private SGD": dml.sgd(X, y, lr=0.1, batch_size=20, n_steps=40, seed=0),
            "DP-SGD": dml.sgd(X, y, lr=0.02, batch_size=20, n_steps=40, seed=0)}
    for steps, batch, sizes in [(100, 20, [2000, 2000]), (30, 10, [500, 500]), (400, 50, [1000])]:
        fig = plots_privacy.dp_figure(runs, experiments.epsilon_curve(steps, batch, sizes), 1.0,
                                      floor=least_squares_floor(X, y))
        ax, ax_eps = fig.axes
        assert "accuracy" not in ax.get_title() and "MSE" in ax.get_ylabel()  # it plots a loss, and says so
        assert any("least squares" in t.get_text() for t in ax.get_legend().get_texts())
        labels = " ".join(t.get_text() for t in ax_eps.get_legend().get_texts())
        assert "zero-out" in labels and "replace-one" in labels  # each curve names its neighbours
        fig.canvas.draw()
        box = ax_eps.get_legend().get_window_extent()
        for line in ax_eps.get_lines()[:3]:
            points = ax_eps.transData.transform(line.get_xydata())
            assert not any(box.contains(px, py) for px, py in points), line.get_label()


def test_fixed_size_sampling_halves_the_noise_multiplier_for_replace_one():
    # dp-accounting's RDP formula for sampling without replacement reads sigma as noise std over the sensitivity,
    # which is 2C under replace-one (google/differential-privacy issue 378): passing sigma itself understates epsilon.
    import dp_accounting
    import dp_accounting.rdp

    def library(sigma):
        acc = dp_accounting.rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
        acc.compose(dp_accounting.SampledWithoutReplacementDpEvent(
            2000, 20, dp_accounting.GaussianDpEvent(sigma)), 100)
        return acc.get_epsilon(1e-5)

    for sigma in [1.0, 2.0, 4.0]:
        eps = privacy_budget(sigma, 100, 20, [2000, 3000], sampling="fixed-size", neighbours="replace-one")
        assert eps == pytest.approx(library(sigma / 2), rel=1e-12)
        assert eps > library(sigma)
    # a batch as large as the shard: no sampling, the Gaussian mechanism of sensitivity 2C at every step
    whole = privacy_budget(2.0, 5, 20, [20], sampling="fixed-size", neighbours="replace-one")
    assert whole == pytest.approx(privacy_budget(1.0, 5, 20, [20], sampling="no-amplification"), rel=1e-12)


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_the_pld_accountant_is_tighter_and_agrees_on_the_neighbours(sigma):
    kw = dict(n_steps=100, batch_size=20, shard_sizes=[2000, 2000], delta=1e-5)
    rdp, pld = budget_table(sigma, **kw), budget_table(sigma, accountant="pld", **kw)
    assert set(ACCOUNTANTS) == {"rdp", "pld"}
    for key, eps in rdp.items():
        if eps is not None and pld[key] is not None:
            assert pld[key] < eps  # both upper bounds; the PLD one is tight up to its grid
    assert pld["poisson", "zero-out"] < pld["poisson", "replace-one"] < pld["no-amplification", "zero-out"]
    assert pld["no-amplification", "replace-one"] == pytest.approx(
        privacy_budget(sigma / 2, sampling="no-amplification", accountant="pld", **kw), rel=1e-9)
    assert [k for k in pld if pld[k] is None] == [
        k for k in pld if no_accountant(*k, accountant="pld") is not None] == [
        ("fixed-size", "zero-out"), ("fixed-size", "replace-one")]
