"""Each exercise check accepts the solution and rejects the typical mistakes with a message that says why."""

import numpy as np
import pytest

from dml_lesson.teaching import exercises as ex


def messages(capsys):
    return capsys.readouterr().out


def test_gradient_check(capsys):
    assert ex.check_gradient(lambda w, X, y: 2 / len(y) * X.T @ (X @ w - y))
    mistakes = {
        "divide by 1000": lambda w, X, y: 2 / 1000 * X.T @ (X @ w - y),
        "factor 2": lambda w, X, y: 1 / len(y) * X.T @ (X @ w - y),
        "sign is flipped": lambda w, X, y: 2 / len(y) * X.T @ (y - X @ w),
        "sum over rows": lambda w, X, y: 2 * X.T @ (X @ w - y),
        "X.T versus X": lambda w, X, y: 2 / len(y) * (X @ w - y),
        "raised": lambda w, X, y: undefined_name,  # noqa: F821
    }
    capsys.readouterr()
    for expected, wrong in mistakes.items():
        assert not ex.check_gradient(wrong)
        assert expected in messages(capsys)


def test_epoch_batches_check(capsys):
    def solution(n, b, seed):
        order = np.random.default_rng(seed).permutation(n)
        return [order[i * b:(i + 1) * b] for i in range(n // b)]

    assert ex.check_epoch_batches(solution)
    mistakes = {
        "boolean masks": lambda n, b, seed: [np.random.default_rng(seed).random(n) > 0.3 for _ in range(n // b)],
        "without replacement": lambda n, b, seed: [np.random.default_rng(seed + i).integers(0, n, b)
                                                  for i in range(n // b)],
        "original order": lambda n, b, seed: [np.arange(i * b, (i + 1) * b) for i in range(n // b)],
        "same seed": lambda n, b, seed: [p[i * b:(i + 1) * b] for p in [np.random.permutation(n)]
                                         for i in range(n // b)],
        "batch sizes vary": lambda n, b, seed: np.array_split(np.random.default_rng(seed).permutation(n), n // b),
    }
    capsys.readouterr()
    for expected, wrong in mistakes.items():
        assert not ex.check_epoch_batches(wrong), expected
        assert expected in messages(capsys)


def test_shards_check(capsys):
    assert ex.check_shards(lambda n, k: [np.arange(i * n // k, (i + 1) * n // k) for i in range(k)])
    assert ex.check_shards(lambda n, k: np.array_split(np.arange(n), k))
    mistakes = {
        "on no node": lambda n, k: [np.arange(i * (n // k), (i + 1) * (n // k)) for i in range(k)],
        "on two nodes": lambda n, k: [np.arange(max(0, i * n // k - 1), (i + 1) * n // k) for i in range(k)],
        "uneven": lambda n, k: [np.arange(0, n - k + 1)] + [np.array([n - k + i]) for i in range(1, k)],
        "shards, got": lambda n, k: [np.arange(n)],
    }
    capsys.readouterr()
    for expected, wrong in mistakes.items():
        assert not ex.check_shards(wrong), expected
        assert expected in messages(capsys)


def test_combine_check(capsys):
    assert ex.check_combine(lambda r: sum(s for s, _ in r) / sum(c for _, c in r))
    mistakes = {
        "source's formula": lambda r: sum(s / c for s, c in r),
        "equal weights": lambda r: sum(s / c for s, c in r) / len(r),
        "sum of gradient sums": lambda r: sum(s for s, _ in r),
    }
    capsys.readouterr()
    for expected, wrong in mistakes.items():
        assert not ex.check_combine(wrong), expected
        assert expected in messages(capsys)


def test_scaled_lr_check(capsys):
    assert ex.check_scaled_lr(lambda lr, base, k, b: lr * k * b / base)
    mistakes = {
        "node count only": lambda lr, base, k, b: lr * k,
        "did not change": lambda lr, base, k, b: lr,
        "square-root rule": lambda lr, base, k, b: lr * (k * b / base) ** 0.5,
    }
    capsys.readouterr()
    for expected, wrong in mistakes.items():
        assert not ex.check_scaled_lr(wrong), expected
        assert expected in messages(capsys)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_every_exercise_has_a_hint(capsys, n):
    ex.hint(n)
    assert len(messages(capsys)) > 40
