"""Byte accounting: how many bytes a message takes once Dask has serialized it (notebooks 04 and 06)."""

from __future__ import annotations

from typing import Any

from distributed.protocol import serialize_bytes


def serialized_nbytes(obj: Any) -> int:
    """Size in bytes of ``obj`` serialized by Dask's own serializer (header and frames), not just ``nbytes``."""
    return len(serialize_bytes(obj))


def formula_nbytes(n_nodes: int, n_weights: int, itemsize: int = 8) -> int:
    """The textbook payload of one synchronous step, one way: ``n_nodes * n_weights * itemsize`` bytes.

    The server sends ``w`` to every node and receives one gradient from each; notebook 04 compares the
    measured bytes with this figure (the measured ones add Dask's headers and the small scalars).
    """
    return n_nodes * n_weights * itemsize
