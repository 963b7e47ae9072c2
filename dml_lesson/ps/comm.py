"""Byte accounting: how many bytes a message takes once Dask has serialized it (notebooks 04 and 06).

:func:`serialized_nbytes` serializes the message with Dask's own serializer and counts the bytes.
:func:`message_nbytes` gives the same number without serializing every step: the size depends only on the
message's *signature* (types, array shapes and dtypes, the size class of each integer), so it is measured
once per signature and remembered. The parameter server counts its bytes with it (a test checks that the
two agree on messages of every kind the server sends).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._dask import serialize_bytes

_SIZES: dict[Any, int] = {}
_MAX_SIGNATURES = 4096


def serialized_nbytes(obj: Any) -> int:
    """Size in bytes of ``obj`` serialized by Dask's own serializer (header and frames), not just ``nbytes``."""
    return len(serialize_bytes(obj))


def message_nbytes(obj: Any) -> int:
    """``serialized_nbytes(obj)``, measured once per message signature and then remembered.

    Messages of an unknown kind (anything but None, bools, ints, floats, numpy arrays and scalars, and tuples
    of these) are serialized every time.
    """
    try:
        signature = _signature(obj)
    except _Unknown:
        return serialized_nbytes(obj)
    size = _SIZES.get(signature)
    if size is None:
        if len(_SIZES) >= _MAX_SIGNATURES:
            _SIZES.clear()
        size = _SIZES[signature] = serialized_nbytes(obj)
    return size


class _Unknown(Exception):
    pass


def _signature(obj: Any) -> Any:
    """What the serialized size depends on: types, shapes, dtypes, memory order and integer size classes."""
    if obj is None or isinstance(obj, bool):
        return (type(obj), obj)
    if isinstance(obj, int):  # packed in 1, 2, 3, 5 or 9 bytes by magnitude; negatives: keep the value
        return (type(obj), obj.bit_length()) if obj >= 0 else (type(obj), obj)
    if isinstance(obj, (float, np.generic)):
        return (type(obj), getattr(obj, "dtype", None))
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise _Unknown
        return (np.ndarray, obj.shape, obj.dtype.str, obj.flags.c_contiguous, obj.flags.f_contiguous)
    if type(obj) is tuple or (isinstance(obj, tuple) and hasattr(obj, "_fields")):
        return (type(obj), tuple(_signature(x) for x in obj))
    raise _Unknown


def formula_nbytes(n_nodes: int, n_weights: int, itemsize: int = 8) -> int:
    """The textbook payload of one synchronous step, one way: ``n_nodes * n_weights * itemsize`` bytes.

    The server sends ``w`` to every node and receives one gradient from each; notebook 04 compares the
    measured bytes with this figure (the measured ones add Dask's headers and the small scalars).
    """
    return n_nodes * n_weights * itemsize
