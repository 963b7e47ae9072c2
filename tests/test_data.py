"""Datasets: deterministic from the seed, the same rows under every block size, layout and node count."""

import numpy as np
import pytest

import dml_lesson as dml
from dml_lesson.core.layout import LAYOUTS, Layout, assign_rows, node_of_rows


def test_same_seed_same_rows_other_seed_other_rows():
    a = dml.make_regression(300, 4, seed=3).to_numpy()
    b = dml.make_regression(300, 4, seed=3).to_numpy()
    c = dml.make_regression(300, 4, seed=4).to_numpy()
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)


@pytest.mark.parametrize("block_size", [100, 333, 1024, 1500, 3000])
def test_rows_do_not_depend_on_the_block_size(block_size):
    ref = dml.make_regression(3000, 2, seed=1, block_size=3000).to_numpy()
    other = dml.make_regression(3000, 2, seed=1, block_size=block_size)
    assert other.X.numblocks[0] == -(-3000 // block_size)
    X, y = dml.to_numpy(other.X, other.y)
    assert np.array_equal(ref.X, X) and np.array_equal(ref.y, y)


def test_regression_shape_intercept_and_truth():
    X, y, w_true = dml.make_regression(5000, 3, noise=0.1, seed=0).to_numpy()
    assert X.shape == (5000, 4) and y.shape == (5000,) and w_true.shape == (4,)
    assert np.all(X[:, 0] == 1.0)
    assert np.std(y - X @ w_true) == pytest.approx(0.1, rel=0.05)
    fixed = dml.make_regression(10, 1, seed=0, w_true=[1.0, -2.0])
    assert np.array_equal(fixed.w_true, [1.0, -2.0])


@pytest.mark.parametrize("p", [0.5, 0.2, 0.05])
def test_classification_imbalance_knob(p):
    X, y, w_true = dml.make_classification(
        20000, 3, seed=2, positive_fraction=p, class_sep=3.0
    ).to_numpy()
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert y.mean() == pytest.approx(p, abs=0.01)
    accuracy = np.mean((X @ w_true > 0) == (y > 0))
    assert accuracy > max(p, 1 - p)  # the Bayes weights beat always guessing the majority class


@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("n_nodes", [1, 2, 3, 5, 16])
def test_every_layout_holds_every_row_once(kind, n_nodes):
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 40, size=16)
    key = rng.normal(size=sizes.sum())
    layout = Layout(kind, weights=tuple(range(1, n_nodes + 1))) if kind == "weighted" else kind
    shards = assign_rows(layout, n_nodes, sizes, key=key)
    assert len(shards) == n_nodes and all(len(s) > 0 for s in shards)
    assert np.array_equal(np.sort(np.concatenate(shards)), np.arange(sizes.sum()))
    owner = node_of_rows(shards, sizes.sum())
    assert all(np.all(owner[rows] == node) for node, rows in enumerate(shards))  # so no row is left at -1


def test_skewed_and_noniid_layouts_do_what_they_say():
    sizes = [100] * 40
    skewed = [len(s) for s in assign_rows(Layout("skewed", skew=4.0), 4, sizes)]
    assert skewed == sorted(skewed, reverse=True) and 3 <= skewed[0] / skewed[-1] <= 5
    key = np.random.default_rng(1).normal(size=4000)
    shards = assign_rows("noniid", 4, sizes, key=key)
    assert all(key[a].max() <= key[b].min() for a, b in zip(shards[:-1], shards[1:]))


def test_shuffled_layout_depends_on_its_seed():
    a = assign_rows(Layout("shuffled", seed=0), 4, [10] * 16)
    b = assign_rows(Layout("shuffled", seed=1), 4, [10] * 16)
    assert any(not np.array_equal(x, y) for x, y in zip(a, b))


def test_arrays_from_the_cluster_are_aligned(client):
    # Dask can hand back arrays whose buffer is not 8-byte aligned; numpy then skips BLAS (8x slower).
    X, y = dml.to_numpy(*dml.make_regression(50_000, 20, seed=0)[:2])
    assert X.flags.aligned and y.flags.aligned
    from dml_lesson.core.optim import check_xy

    unaligned = np.frombuffer(memoryview(bytearray(8 * 82 + 3))[3:], dtype=float).reshape(41, 2)
    assert not unaligned.flags.aligned
    X_checked, _ = check_xy(unaligned, np.zeros(41))
    assert X_checked.flags.aligned and np.array_equal(X_checked, unaligned)


def test_weighted_layout_follows_the_weights():
    sizes = [len(s) for s in assign_rows(Layout("weighted", weights=(4, 1, 4, 1)), 4, [100] * 40)]
    assert sizes == [1600, 400, 1600, 400]
    with pytest.raises(ValueError, match="one weight per node"):
        assign_rows(Layout("weighted", weights=(1, 2)), 3, [10] * 9)
    with pytest.raises(ValueError, match="positive finite weights"):
        Layout("weighted", weights=(1, 0))
