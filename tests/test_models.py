"""Gradients equal finite differences, for both models, over random shapes and values (hypothesis)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dml_lesson as dml
from dml_lesson.core.models import LINEAR, LOGISTIC, least_squares_floor


def numeric_gradient(f, w, eps=1e-6):
    g = np.zeros_like(w)
    for i in range(len(w)):
        e = np.zeros_like(w)
        e[i] = eps
        g[i] = (f(w + e) - f(w - e)) / (2 * eps)
    return g


@st.composite
def problems(draw):
    n = draw(st.integers(1, 30))
    d = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.floats(0.1, 3.0))
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * scale, rng.normal(size=n), rng.normal(size=d), rng


@pytest.mark.parametrize("model", [LINEAR, LOGISTIC], ids=["linear", "logistic"])
@settings(max_examples=60, deadline=None)
@given(problem=problems())
def test_gradient_matches_finite_differences(model, problem):
    X, y, w, rng = problem
    if model is LOGISTIC:
        y = (rng.random(len(y)) < 0.5).astype(float)
    expected = numeric_gradient(lambda v: model.loss(v, X, y), w)
    assert np.allclose(model.gradient(w, X, y), expected, rtol=1e-5, atol=1e-6)


def test_course_formulas():
    rng = np.random.default_rng(0)
    X, y, w = rng.normal(size=(50, 3)), rng.normal(size=50), rng.normal(size=3)
    r = X @ w - y
    assert dml.mse(w, X, y) == pytest.approx(np.mean(r**2))
    assert np.allclose(dml.mse_gradient(w, X, y), 2 / 50 * X.T @ r)


def test_logistic_is_stable_for_huge_margins():
    X = np.array([[1.0, 800.0], [1.0, -800.0]])
    y = np.array([1.0, 0.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert LOGISTIC.loss(np.array([0.0, 1.0]), X, y) == pytest.approx(0.0, abs=1e-12)
        assert LOGISTIC.loss(np.array([0.0, -1.0]), X, y) == pytest.approx(800.0)
        assert np.all(np.isfinite(LOGISTIC.gradient(np.array([0.0, -1.0]), X, y)))


def test_lipschitz_constant_is_the_largest_hessian_eigenvalue():
    X = np.diag([1.0, 2.0, 3.0]) * np.sqrt(3 / 2)
    assert dml.lipschitz_constant(X) == pytest.approx(9.0)


def test_least_squares_floor_is_the_lowest_loss_and_below_the_noise_variance():
    X, y, w_true = dml.make_regression(2_000, 3, noise=0.1, seed=0)
    X, y = dml.to_numpy(X, y)
    floor = least_squares_floor(X, y)
    assert floor < dml.mse(np.asarray(w_true), X, y)  # the true weights fit these rows worse than least squares
    rng = np.random.default_rng(0)
    w_star = np.linalg.lstsq(X, y, rcond=None)[0]
    assert all(dml.mse(w_star + 1e-3 * rng.standard_normal(X.shape[1]), X, y) > floor for _ in range(5))
    with pytest.raises(ValueError, match="one target per row"):
        least_squares_floor(X, y[:-1])
