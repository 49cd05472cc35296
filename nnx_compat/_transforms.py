"""Transforms: ``nnx.vmap`` splits an unsplit ``Rngs`` it is asked to map, as flax before 0.9
did; ``nnx.jit`` and ``nnx.shard_map`` take the options flax later removed or renamed.

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

__all__ = ["jit", "pmap", "shard_map", "vmap"]

_nnx: Any = _versions.import_nnx()
_native_vmap: Any = _nnx.vmap
_native_split_rngs: Any = _nnx.split_rngs


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
        with _native_split_rngs(unsplit, splits=axis_size):
            return vmapped(*args, **kw)

    return vmap_wrapper


# --------------------------------------------------------------------------- jit, shard_map

_native_jit: Any = _nnx.jit
_native_shard_map: Any = _nnx.shard_map if _versions.feature("HAS_SHARD_MAP") else None
_native_pmap: Any = _nnx.pmap
# flax 0.12.6 removed nnx.pmap's global_arg_shapes (jax only ever accepted None for it).
_PMAP_GLOBAL_ARG_SHAPES: Final = _versions.feature("PMAP_GLOBAL_ARG_SHAPES")
# flax 0.12.2 removed nnx.jit's abstracted_axes (jax's experimental dynamic shapes).
_JIT_ABSTRACTED_AXES: Final = _versions.feature("JIT_ABSTRACTED_AXES")
# flax 0.12.1: shard_map's check_rep= and auto= became check_vma= and axis_names=.
_SHARD_MAP_VMA: Final = _versions.feature("SHARD_MAP_CHECK_VMA")


@functools.wraps(_native_jit)
def jit(*args: Any, **kwargs: Any) -> Any:
    """``nnx.jit``; flax 0.10's ``abstracted_axes=`` is dropped where flax removed it.

    ``abstracted_axes`` asked jax's experimental dynamic shapes to trace once for several
    shapes; without it the function is traced once per shape, with the same results.
    """
    if "abstracted_axes" in kwargs and not _JIT_ABSTRACTED_AXES:
        axes = kwargs.pop("abstracted_axes")
        _warnings.warn_legacy("jit-abstracted-axes", detail=f"abstracted_axes={axes!r} dropped")
    return _native_jit(*args, **kwargs)


@functools.wraps(_native_pmap)
def pmap(*args: Any, **kwargs: Any) -> Any:
    """``nnx.pmap``; flax 0.10's ``global_arg_shapes=None`` is dropped where flax removed it.

    jax raised for any other value on every release ("global_arg_shapes only worked with
    sharded_jit"), and so does this.
    """
    if "global_arg_shapes" in kwargs and not _PMAP_GLOBAL_ARG_SHAPES:
        if kwargs.pop("global_arg_shapes") is not None:
            raise ValueError(
                "global_arg_shapes only worked with sharded_jit, which jax removed long ago: "
                "drop global_arg_shapes from nnx.pmap (or move to nnx.jit with shardings) "
                "[nnx-compat: pmap-global-arg-shapes]"
            )
        _warnings.warn_legacy("pmap-global-arg-shapes", detail="global_arg_shapes=None dropped")
    return _native_pmap(*args, **kwargs)


def _mesh_axes(kwargs: dict[str, Any]) -> frozenset[Any]:
    mesh = kwargs.get("mesh")
    if mesh is None:
        raise TypeError("nnx.shard_map(..., auto=...) needs mesh= to name the manual axes")
    return frozenset(mesh.axis_names)


def _respell(kwargs: dict[str, Any], check: tuple[str, str], axes: tuple[str, str]) -> None:
    """Moves shard_map's options from one spelling to the other, in place: the check flag is
    renamed; a non-empty set of axes becomes its complement in the mesh (auto <-> manual)."""
    source, target = check
    if source in kwargs:
        kwargs[target] = kwargs.pop(source)
    source, target = axes
    if source in kwargs:
        chosen = frozenset(kwargs.pop(source))
        if chosen:
            kwargs[target] = _mesh_axes(kwargs) - chosen


def shard_map(*args: Any, **kwargs: Any) -> Any:
    """``nnx.shard_map`` that takes both spellings of its options on every flax.

    flax 0.12.1 renamed ``check_rep=`` to ``check_vma=`` and replaced ``auto=`` (the axes left
    to the compiler) with ``axis_names=`` (the manual axes: the mesh's others). The old spelling
    warns where flax rejects it; the new one is translated back silently on older flax.
    """
    if _native_shard_map is None:
        from nnx_compat import _added

        raise _added.missing("shard_map")
    old = [k for k in ("check_rep", "auto") if k in kwargs]
    new = [k for k in ("check_vma", "axis_names") if k in kwargs]
    if old and new:
        raise TypeError(
            f"nnx.shard_map got {', '.join(old)} and {', '.join(new)}: pass check_vma= and "
            "axis_names= (flax 0.12.1's spelling) only"
        )
    if old and _SHARD_MAP_VMA:
        _warnings.warn_legacy("shard-map-check-rep", detail=", ".join(f"{k}=" for k in old))
        _respell(kwargs, ("check_rep", "check_vma"), ("auto", "axis_names"))
    elif new and not _SHARD_MAP_VMA:
        _respell(kwargs, ("check_vma", "check_rep"), ("axis_names", "auto"))
    return _native_shard_map(*args, **kwargs)


if _native_shard_map is not None:
    shard_map = functools.wraps(_native_shard_map)(shard_map)
