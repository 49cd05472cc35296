"""Bit-for-bit comparison of arrays: the one helper every equivalence claim uses.

``np.array_equal`` is not bit for bit: it calls ``-0.0`` equal to ``0.0``, and with
``equal_nan=True`` any two NaNs equal. These compare dtype, shape and the raw bytes; RNG keys
by their implementation and key data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["differences", "is_key", "same_bits"]


def is_key(array: Any) -> bool:
    import jax

    return bool(jax.numpy.issubdtype(array.dtype, jax.dtypes.prng_key))


def same_bits(a: Any, b: Any) -> bool:
    """Same dtype, shape and bytes; RNG keys: same implementation and key data."""
    import jax
    import numpy as np

    if is_key(a) or is_key(b):
        if not (is_key(a) and is_key(b)) or a.dtype != b.dtype:
            return False
        a, b = jax.random.key_data(a), jax.random.key_data(b)
    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False
    x, y = np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1)
    return bool(np.array_equal(x.view(np.uint8), y.view(np.uint8)))


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """What differs between two ``path -> array`` results, one line each (empty: the same)."""
    lines = [f"{path}: only in the first" for path in a if path not in b]
    lines += [f"{path}: only in the second" for path in b if path not in a]
    for path in a:
        if path in b and not same_bits(a[path], b[path]):
            x, y = a[path], b[path]
            lines.append(
                f"{path}: {getattr(x, 'dtype', type(x))}{tuple(getattr(x, 'shape', ()))} vs "
                f"{getattr(y, 'dtype', type(y))}{tuple(getattr(y, 'shape', ()))}, not the same bits"
            )
    return lines
