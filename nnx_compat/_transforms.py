"""``nnx.vmap`` that splits an unsplit ``Rngs`` it is asked to map, as flax before 0.9 did.

Since flax 0.9.0 NNX transforms leave RNG state alone: ``nnx.vmap(f, axis_size=n)`` over an
``nnx.Rngs`` with scalar keys fails (an ``IndexError`` on 0.10/0.11, a rank error on 0.12),
and the fix is ``@nnx.split_rngs(splits=n)`` over the ``vmap``. Programs of the older form,
such as the NNX Basics ``create_model`` stack, get exactly that split here, with a warning at
the ``vmap`` line. Nothing changes for a call the native ``vmap`` can run.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from nnx_compat import _versions, _warnings

__all__ = ["vmap"]

_nnx: Any = _versions.import_nnx()
_native_vmap: Any = _nnx.vmap


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final[Any] = _Missing()


def _unsplit(value: Any) -> bool:
    """An ``Rngs``/``RngStream`` argument with a scalar key, which no axis can map."""
    if isinstance(value, _nnx.RngStream):
        return tuple(value.key.shape) == ()
    if isinstance(value, _nnx.Rngs):
        return any(tuple(stream.key.shape) == () for _, stream in value.items())
    return False


def _mapped_on_0(in_axes: Any, index: int) -> bool:
    if isinstance(in_axes, tuple):
        return index < len(in_axes) and type(in_axes[index]) is int and in_axes[index] == 0
    return type(in_axes) is int and in_axes == 0


def vmap(
    f: Any = _MISSING, /, *, in_axes: Any = 0, axis_size: int | None = None, **kwargs: Any
) -> Any:
    """``nnx.vmap``; with ``axis_size`` given, unsplit ``Rngs`` arguments on axis 0 are split.

    Only top-level positional ``Rngs``/``RngStream`` arguments with scalar keys that
    ``in_axes`` maps on axis 0 are split, with the native ``split_rngs(splits=axis_size)``
    and restored after the call: the 0.11 form ``@nnx.split_rngs(splits=n)`` over
    ``@nnx.vmap`` does the same.
    """
    if f is _MISSING:
        return functools.partial(vmap, in_axes=in_axes, axis_size=axis_size, **kwargs)
    vmapped = _native_vmap(f, in_axes=in_axes, axis_size=axis_size, **kwargs)
    if axis_size is None:
        return vmapped
    site = _warnings.user_site()

    @functools.wraps(f)
    def vmap_wrapper(*args: Any, **kw: Any) -> Any:
        unsplit = [a for i, a in enumerate(args) if _mapped_on_0(in_axes, i) and _unsplit(a)]
        if not unsplit:
            return vmapped(*args, **kw)
        _warnings.warn_legacy("vmap-splits-rngs", detail=f"axis_size={axis_size}", site=site)
        with _nnx.split_rngs(unsplit, splits=axis_size):
            return vmapped(*args, **kw)

    return vmap_wrapper
