"""Gradient codecs: what they keep, that the unbiased ones are unbiased, and their sizes in bytes."""

import numpy as np
import pytest

import dml_lesson as dml
from dml_lesson.core import codecs as C

G = np.random.default_rng(0).normal(size=400) * np.linspace(0.1, 3, 400)


def roundtrip(codec, g, step=0, state=None):
    payload = C.encode(codec, g, 7, 1, step, {} if state is None else state)
    return payload, C.decode(codec, payload, len(g), 7, 1, step)


def test_top_k_keeps_the_k_largest():
    payload, back = roundtrip(C.TopK(0.05), G)
    kept = np.flatnonzero(back)
    assert len(kept) == 20
    assert set(kept) == set(np.argsort(np.abs(G))[-20:])
    assert np.array_equal(back[kept], G[kept])


@pytest.mark.parametrize("codec", [C.RandomK(0.2), C.Quantize(2), C.Quantize(6)], ids=lambda c: c.name)
def test_unbiased_codecs_are_unbiased(codec):
    g = G[:60]
    draws = np.array([roundtrip(codec, g, step=t)[1] for t in range(3000)])
    standard_error = draws.std(axis=0) / np.sqrt(len(draws)) + 1e-12
    assert np.all(np.abs(draws.mean(axis=0) - g) < 5 * standard_error + 1e-9)


def test_quantize_is_exact_at_the_levels_and_sign_keeps_signs():
    levels = np.array([-1.0, 0.0, 0.5, 1.0, -0.25])  # multiples of norm / 3 after scaling
    g = levels / np.linalg.norm(levels)
    _, back = roundtrip(C.Quantize(8), g)
    assert np.allclose(back, g, atol=np.linalg.norm(g) / 255)
    _, signs = roundtrip(C.Sign(), G)
    assert np.array_equal(np.sign(signs), np.sign(G)) and np.allclose(np.abs(signs), np.mean(np.abs(G)))


@pytest.mark.parametrize("inner", [C.TopK(0.1), C.Sign(), C.Quantize(2), C.RandomK(0.3)], ids=lambda c: c.name)
def test_error_feedback_residual_plus_sent_is_the_gradient(inner):
    ef, state, residual = C.ErrorFeedback(inner), {}, np.zeros_like(G)
    for step in range(5):
        g = np.roll(G, step)
        _, sent = roundtrip(ef, g, step, state)
        assert np.allclose(state["residual"] + sent, g + residual, rtol=0, atol=1e-12)
        residual = state["residual"]


@pytest.mark.parametrize("codec", [None, C.TopK(0.1), C.RandomK(0.1), C.Quantize(4), C.Quantize(1), C.Sign()],
                         ids=lambda c: getattr(c, "name", "none"))
def test_serialized_size_grows_as_the_formula(codec):
    sizes = {}
    for d in (1000, 5000):
        payload = C.encode(codec, np.random.default_rng(d).normal(size=d), 0, 0, 0, {})
        sizes[d] = dml.serialized_nbytes(payload)
    formula = (lambda d: 8 * d) if codec is None else codec.nbytes
    assert abs((sizes[5000] - sizes[1000]) - (formula(5000) - formula(1000))) <= 8
    assert 0 <= sizes[1000] - formula(1000) <= 600  # Dask's header and framing


def raw_nbytes(payload):
    """Bytes of a payload's content: every array's buffer and 8 per Python float, without Dask's header."""
    if isinstance(payload, np.ndarray):
        return payload.nbytes
    if isinstance(payload, float):
        return 8
    return sum(raw_nbytes(part) for part in payload)


@pytest.mark.parametrize("codec", [C.TopK(0.1), C.TopK(0.013), C.RandomK(0.1), C.Quantize(4), C.Quantize(1),
                                   C.Quantize(7), C.Sign()], ids=lambda c: f"{c.name} {getattr(c, 'ratio', '')}")
@pytest.mark.parametrize("d", [7, 500, 1001])
def test_the_formula_counts_every_byte_of_the_payload_indices_included(codec, d):
    payload = C.encode(codec, np.random.default_rng(d).normal(size=d), 0, 0, 0, {})
    assert codec.nbytes(d) == raw_nbytes(payload)
    if isinstance(codec, C.TopK):  # the indices travel with the values: 4 + 8 bytes per kept entry
        idx, values = payload
        assert idx.dtype.itemsize == 4 and len(idx) == len(values) == codec.k(d)
        assert codec.nbytes(d) == 12 * codec.k(d) > 8 * codec.k(d)


def test_top_k_indices_widen_to_8_bytes_beyond_2_to_the_31():
    assert C.TopK.index_dtype(2**31) is np.int32 and C.TopK.index_dtype(2**31 + 1) is np.int64
    assert C.TopK(1e-6).nbytes(3 * 2**30) == C.TopK(1e-6).k(3 * 2**30) * 16


def test_compressed_training_moves_fewer_bytes(client):
    X, y, _ = dml.make_regression(2000, 999, seed=1, block_size=250)
    plain = dml.distributed_gd(X, y, n_nodes=2, lr=0.01, n_steps=3, client=client)
    for codec in [C.TopK(0.1), C.Quantize(4), C.Sign()]:
        res = dml.distributed_gd(X, y, n_nodes=2, lr=0.01, n_steps=3, client=client, codec=codec)
        assert np.all(res.bytes_received < plain.bytes_received / 4)
        assert np.all(res.bytes_received <= 2 * (codec.nbytes(1000) + 700))


def test_make_codec_by_name():
    assert C.make_codec("none") is None
    assert isinstance(C.make_codec("top-k", ratio=0.2, error_feedback=True), C.ErrorFeedback)
    with pytest.raises(ValueError, match="codec must be one of"):
        C.make_codec("zip")
    with pytest.raises(ValueError, match="ratio must be"):
        C.TopK(0.0)
