"""Shim classes that ``isinstance`` and ``issubclass`` cannot tell from flax's own.

A shim such as ``nnx_compat.nnx.Rngs`` subclasses flax's class to add the legacy forms. Objects
that flax (or a library using ``flax.nnx`` directly) builds are instances of flax's class, not of
the shim, so ``isinstance(rngs, nnx.Rngs)`` would turn False through nnx_compat, and after
``install()`` flax's own checks (``isinstance(x, nnx.Rngs)`` in ``nnx.bridge``) would reject
flax's own objects. A class made with :func:`meta` that names its native class in
``_nnx_compat_native`` answers both checks as that native class does; its subclasses (a user's
``class Block(nnx.Module)``) answer as usual.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["meta", "meta_of"]

NATIVE = "_nnx_compat_native"


@functools.cache
def meta(native_meta: type) -> type:
    """The metaclass for shims of classes whose metaclass is ``native_meta``."""

    class StandsForNative(native_meta):  # type: ignore[misc,valid-type]
        def __instancecheck__(cls, instance: Any) -> bool:
            native = vars(cls).get(NATIVE)
            if native is not None:
                return native in type(instance).__mro__
            return bool(super().__instancecheck__(instance))

        def __subclasscheck__(cls, subclass: type) -> bool:
            native = vars(cls).get(NATIVE)
            if native is not None:
                # the MRO, not issubclass: flax's ABC check would call back into this one
                return native in getattr(subclass, "__mro__", ())
            return bool(super().__subclasscheck__(subclass))

    StandsForNative.__qualname__ = StandsForNative.__name__ = f"{native_meta.__name__}Shim"
    return StandsForNative


def meta_of(native: type) -> Any:
    """The metaclass for a shim of the class ``native``."""
    return meta(type(native))
