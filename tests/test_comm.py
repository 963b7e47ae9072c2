"""Byte accounting: the remembered sizes of message_nbytes are exactly what Dask serializes."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dml_lesson.core.codecs import Quantize, RandomK, Sign, TopK, encode
from dml_lesson.ps.comm import message_nbytes, serialized_nbytes
from dml_lesson.ps.node import NodeReply

INTS = st.one_of(st.integers(-300, 300), st.integers(-2**70, 2**70))
SHAPES = st.lists(st.integers(0, 40), min_size=0, max_size=2).map(tuple)
DTYPES = st.sampled_from([np.float64, np.float32, np.int64, np.uint8, np.int32])


@st.composite
def message(draw, depth=0):
    """A message template: a function of a seed, so that two messages with one shape differ in values."""
    kind = draw(st.sampled_from(["int", "float", "none", "bool", "array", "scalar"] + ["tuple"] * (depth < 2)))
    if kind == "int":
        a, b = draw(INTS), draw(INTS)  # two values: same size class or not, both must be counted right
        return lambda s: a if s == 0 else b
    if kind == "float":
        return lambda s: float(s) * 1.5 - 3.0
    if kind == "none":
        return lambda s: None
    if kind == "bool":
        return lambda s: bool(s % 2)
    if kind == "scalar":
        return lambda s: np.float64(s) / 3
    if kind == "array":
        shape, dtype, order = draw(SHAPES), draw(DTYPES), draw(st.sampled_from("CF"))
        return lambda s: np.asarray(np.random.default_rng(s).integers(0, 100, shape), dtype=dtype, order=order)
    parts = draw(st.lists(message(depth=depth + 1), max_size=4))
    named = draw(st.booleans()) and len(parts) == 3

    def build(s):
        values = [p(s) for p in parts]
        return NodeReply(*values) if named else tuple(values)

    return build


@settings(max_examples=200, deadline=None)
@given(message(), st.integers(1, 10**6))
def test_a_remembered_size_is_the_serialized_size_of_any_message_of_that_shape(make, seed):
    first, second = make(0), make(seed)
    assert message_nbytes(first) == serialized_nbytes(first)
    assert message_nbytes(second) == serialized_nbytes(second)  # from memory when the signature is the same


def test_the_servers_messages_of_every_codec_are_counted_exactly():
    g = np.random.default_rng(1).standard_normal(50)
    w = np.zeros(50)
    for step in [0, 7, 300, 70_000]:
        assert message_nbytes((w, step, True)) == serialized_nbytes((w, step, True))
        for codec in [None, TopK(0.1), RandomK(0.2), Quantize(4), Sign()]:
            payload = encode(codec, g * step, 3, 1, step, {})
            reply = tuple(NodeReply(payload, 1000 + step, float(step)))
            assert message_nbytes(reply) == serialized_nbytes(reply), codec


def test_unknown_messages_are_serialized_every_time():
    msg = ({"a": 1}, [1, 2])
    assert message_nbytes(msg) == serialized_nbytes(msg)
