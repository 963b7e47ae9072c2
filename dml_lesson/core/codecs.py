"""Gradient codecs: send fewer bytes per step (notebook 06).

A codec turns a node's gradient into a smaller payload (``encode``) and the server turns it back into a vector
(``decode``). ``nbytes(d)`` is the payload's size by the formula, which a test checks against what Dask
really serializes. Randomized codecs draw from a generator seeded by ``(seed, node, step)``, so runs repeat.

- :class:`TopK`: the k entries of largest magnitude, biased; it sends their indices too (4 bytes each, 8 when
  ``d`` needs more than 31 bits), so each kept entry costs 12 bytes, not 8;
- :class:`RandomK`: k entries at random, scaled by d/k (unbiased); the indices follow from the seed, so only
  the values travel;
- :class:`Quantize`: stochastic rounding of |g|/‖g‖ to ``2**bits - 1`` levels plus a sign bit (unbiased,
  QSGD-style, Alistarh et al. 2017); ``q + 1`` bits per entry (``q = bits``) and one float for the norm;
- :class:`Sign`: one bit per entry and their mean magnitude, the scaled sign of Karimireddy et al. 2019 (biased;
  use it with error feedback).

``nbytes(d)`` counts every byte of the payload's arrays and scalars (indices included), not Dask's header.

:class:`ErrorFeedback` wraps any codec: the node adds what compression dropped last time (its residual) to
the next gradient, so nothing is lost for good, only delayed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .checks import check_choice, check_float, check_int


@dataclass(frozen=True)
class _Sparsifier:
    """A codec that keeps ``k = ratio * d`` of the ``d`` entries (at least one)."""

    ratio: float = 0.1

    def __post_init__(self) -> None:
        check_float("ratio", self.ratio, low=0.0, high=1.0, low_open=True)

    def k(self, d: int) -> int:
        return max(1, round(self.ratio * d))


@dataclass(frozen=True)
class TopK(_Sparsifier):
    """Keep the ``ratio`` share of entries with the largest magnitude (at least one)."""

    name = "top-k"

    @staticmethod
    def index_dtype(d: int) -> type:
        """int32 indices while they fit (``d <= 2**31``), else int64: 4 or 8 bytes per kept entry."""
        return np.int32 if d <= 2**31 else np.int64

    def encode(self, g: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        k = self.k(len(g))
        idx = np.sort(np.argpartition(np.abs(g), len(g) - k)[len(g) - k :]).astype(self.index_dtype(len(g)))
        return idx, g[idx]

    def decode(self, payload: Any, d: int, rng: np.random.Generator) -> np.ndarray:
        idx, values = payload
        out = np.zeros(d)
        out[idx] = values
        return out

    def nbytes(self, d: int) -> int:
        """``k`` indices (4 or 8 bytes each) and ``k`` 8-byte values."""
        return self.k(d) * (np.dtype(self.index_dtype(d)).itemsize + 8)


@dataclass(frozen=True)
class RandomK(_Sparsifier):
    """Keep ``ratio`` of the entries, chosen at random from the shared seed, scaled by d/k (unbiased)."""

    name = "random-k"

    def _indices(self, d: int, rng: np.random.Generator) -> np.ndarray:
        return np.sort(rng.choice(d, self.k(d), replace=False))

    def encode(self, g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return g[self._indices(len(g), rng)] * (len(g) / self.k(len(g)))

    def decode(self, payload: Any, d: int, rng: np.random.Generator) -> np.ndarray:
        out = np.zeros(d)
        out[self._indices(d, rng)] = payload
        return out

    def nbytes(self, d: int) -> int:
        return self.k(d) * 8


@dataclass(frozen=True)
class Quantize:
    """Stochastic quantization to ``bits`` bits of magnitude plus a sign bit per entry (unbiased)."""

    bits: int = 4
    name = "quantize"

    def __post_init__(self) -> None:
        check_int("bits", self.bits, low=1, high=16)

    def encode(self, g: np.ndarray, rng: np.random.Generator) -> tuple[float, np.ndarray]:
        levels = 2**self.bits - 1
        norm = float(np.linalg.norm(g))
        scaled = np.abs(g) / norm * levels if norm > 0 else np.zeros_like(g)
        q = np.floor(scaled + rng.random(len(g))).astype(np.int64)  # rounds up with probability frac: unbiased
        return norm, _pack(np.where(g < 0, q | (1 << self.bits), q), self.bits + 1)

    def decode(self, payload: Any, d: int, rng: np.random.Generator) -> np.ndarray:
        norm, packed = payload
        q = _unpack(packed, self.bits + 1, d)
        magnitude = (q & ((1 << self.bits) - 1)) * (norm / (2**self.bits - 1))
        return np.where(q >> self.bits, -magnitude, magnitude)

    def nbytes(self, d: int) -> int:
        return 8 + math.ceil(d * (self.bits + 1) / 8)


@dataclass(frozen=True)
class Sign:
    """One sign bit per entry, scaled by the mean magnitude (biased: pair it with error feedback)."""

    name = "sign"

    def encode(self, g: np.ndarray, rng: np.random.Generator) -> tuple[float, np.ndarray]:
        return float(np.mean(np.abs(g))), np.packbits(g < 0)

    def decode(self, payload: Any, d: int, rng: np.random.Generator) -> np.ndarray:
        scale, packed = payload
        negative = np.unpackbits(packed, count=d).astype(bool)
        return np.where(negative, -scale, scale)

    def nbytes(self, d: int) -> int:
        return 8 + math.ceil(d / 8)


@dataclass(frozen=True)
class ErrorFeedback:
    """Any codec plus a residual kept on the node: compress ``g + residual``, keep what was not sent."""

    codec: Any
    name = "error feedback"

    def decode(self, payload: Any, d: int, rng: np.random.Generator) -> np.ndarray:
        return self.codec.decode(payload, d, rng)

    def nbytes(self, d: int) -> int:
        return self.codec.nbytes(d)


CODECS = {"none": None, "top-k": TopK, "random-k": RandomK, "quantize": Quantize, "sign": Sign}


def make_codec(name: str, *, ratio: float = 0.1, bits: int = 4, error_feedback: bool = False) -> Any:
    """A codec by name (``"none"``, ``"top-k"``, ``"random-k"``, ``"quantize"``, ``"sign"``), optionally
    wrapped in :class:`ErrorFeedback` (notebook 06's sliders call this)."""
    check_choice("codec", name, tuple(CODECS))
    codec = {"none": None, "top-k": TopK(ratio), "random-k": RandomK(ratio), "quantize": Quantize(bits),
             "sign": Sign()}[name]
    return ErrorFeedback(codec) if (error_feedback and codec is not None) else codec


def codec_rng(seed: int, node: int, step: int) -> np.random.Generator:
    """The generator a node and the server share for one step's randomized encoding."""
    return np.random.default_rng([seed, node, step, 0xC0DEC])


def encode(codec: Any, g: np.ndarray, seed: int, node: int, step: int, state: dict) -> Any:
    """What a node sends for gradient ``g``: the codec's payload (``g`` itself without a codec).

    With :class:`ErrorFeedback`, ``state`` (the node's own dict) carries the residual from step to step.
    """
    if codec is None:
        return g
    if not isinstance(codec, ErrorFeedback):
        return codec.encode(g, codec_rng(seed, node, step))
    corrected = g + state.get("residual", 0.0)
    payload = codec.codec.encode(corrected, codec_rng(seed, node, step))
    state["residual"] = corrected - codec.codec.decode(payload, len(g), codec_rng(seed, node, step))
    return payload


def decode(codec: Any, payload: Any, d: int, seed: int, node: int, step: int) -> np.ndarray:
    """What the server makes of a node's payload: the (approximate) gradient vector."""
    return payload if codec is None else codec.decode(payload, d, codec_rng(seed, node, step))


def _pack(values: np.ndarray, width: int) -> np.ndarray:
    """Pack non-negative ints of ``width`` bits each into bytes."""
    bits = (values[:, None] >> np.arange(width - 1, -1, -1)) & 1
    return np.packbits(bits.astype(np.uint8).ravel())


def _unpack(packed: np.ndarray, width: int, d: int) -> np.ndarray:
    bits = np.unpackbits(packed, count=d * width).reshape(d, width).astype(np.int64)
    return bits @ (1 << np.arange(width - 1, -1, -1))


def decoded(codec: Any, replies: list, d: int, seed: int, step: int) -> list:
    """The replies with each node's payload decoded into a gradient vector (unchanged without a codec)."""
    if codec is None:
        return replies
    return [None if r is None else r._replace(grad_sum=decode(codec, r.grad_sum, d, seed, node, step))
            for node, r in enumerate(replies)]
