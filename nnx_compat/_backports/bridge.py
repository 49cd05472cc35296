"""flax 0.12's Linen bridge on an older flax: a ``bridge.ToNNX`` module that sows can be called
again.

Linen's ``sow`` stores a tuple of values. Before flax 0.12.0 ``bridge.ToNNX`` keeps that tuple
as a tuple of Variables (``model.dot_sum`` is ``(Intermediate(...),)``), and its next call
fails converting its attributes back into Linen variables: ``ValueError: Cannot infer collection
name from value``. :func:`patch` wraps flax's ``nnx_attrs_to_linen_vars`` so that such a tuple
goes back as the tuple of values Linen sowed, in the collection of its Variables' type, each
converted by flax's own function; every other attribute is flax's own conversion, and what the
older flax keeps after a call (the tuple of Variables) is unchanged. Where flax keeps a sown
tuple as one Variable (probe ``BRIDGE_SOWN_TUPLE_IS_ONE_VARIABLE``, 0.12.0) nothing is patched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from nnx_compat import _versions

__all__ = ["patch", "patched", "restore"]

_saved: dict[str, Callable[..., Any]] = {}


def _sown(value: Any, variable: type) -> bool:
    """A tuple of Variables of one type: what the older bridge made of a sown tuple."""
    return (
        isinstance(value, tuple)
        and bool(value)
        and all(isinstance(v, variable) for v in value)
        and len({type(v) for v in value}) == 1
    )


def _converting_sown_tuples(native: Callable[..., Any]) -> Callable[..., Any]:
    from flax.nnx import traversals

    variable = _versions.import_nnx().Variable

    @functools.wraps(native)
    def nnx_attrs_to_linen_vars(nnx_attrs: dict[str, Any]) -> dict[str, Any]:
        flat = traversals.flatten_mapping(nnx_attrs)
        sown = {path: value for path, value in flat.items() if _sown(value, variable)}
        if not sown:
            return native(nnx_attrs)  # type: ignore[no-any-return]
        rest = {path: value for path, value in flat.items() if path not in sown}
        linen = traversals.flatten_mapping(native(traversals.unflatten_mapping(rest)))
        for path, values in sown.items():
            converted = [native({"v": v}) for v in values]  # flax's own, one at a time
            (collection,) = converted[0]
            linen[(collection, *path)] = tuple(c[collection]["v"] for c in converted)
        return traversals.unflatten_mapping(linen)  # type: ignore[no-any-return]

    return nnx_attrs_to_linen_vars


def patch() -> None:
    """Wraps the bridge's conversion where the installed flax splits a sown tuple."""
    if _saved or _versions.feature("BRIDGE_SOWN_TUPLE_IS_ONE_VARIABLE"):
        return
    variables = _versions.import_nnx().bridge.variables
    _saved["nnx_attrs_to_linen_vars"] = variables.nnx_attrs_to_linen_vars
    variables.nnx_attrs_to_linen_vars = _converting_sown_tuples(variables.nnx_attrs_to_linen_vars)


def restore() -> None:
    """Puts flax's own conversion back."""
    if _saved:
        variables = _versions.import_nnx().bridge.variables
        variables.nnx_attrs_to_linen_vars = _saved.pop("nnx_attrs_to_linen_vars")


def patched() -> bool:
    """Whether :func:`patch` is in effect."""
    return bool(_saved)
