"""flax 0.10 names that later flax releases removed: 0.10's behaviour where it can be had.

Served by ``nnx_compat.nnx``'s module ``__getattr__`` only where the installed flax lacks the
name (see ``_patterns.REMOVED``), with the record's warning at the user's line. Names without a
backport raise an ``AttributeError`` that names their replacement instead.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, NamedTuple

import jax

from nnx_compat import _versions, _warnings

__all__ = ["ForkStates", "VariableState", "fork", "patch_config", "with_sharding_constraint"]

_nnx: Any = _versions.import_nnx()


class ForkStates(NamedTuple):
    """What flax 0.10's ``nnx.fork`` returned: the RNG state split into the streams whose keys
    were split (keys, counts) and the ones broadcast (keys, counts)."""

    split_keys: Any
    split_counts: Any
    broadcast_keys: Any
    broadcast_counts: Any


def fork(state: Any, split_filter: Any, split_pattern: Any) -> ForkStates:
    """flax 0.10's ``nnx.fork(state, split_filter, split_pattern)``.

    Partitions an RNG state into the keys and counts that ``split_filter`` selects and the rest,
    and splits each selected key ``split_pattern`` ways (an int, or a tuple of axis sizes where
    ``None`` counts as 1), as ``jax.random.split`` does.

    Raises:
        ValueError: for ``split_pattern=None``.
    """
    if split_pattern is None:
        raise ValueError("nnx.fork needs a split_pattern: an int or a tuple of axis sizes")
    num_splits = (
        split_pattern
        if isinstance(split_pattern, int)
        else tuple(1 if axis is None else axis for axis in split_pattern)
    )
    # nnx.split_state arrived in flax 0.10.4; State.split, which it calls, is older
    split_state = getattr(_nnx, "split_state", None) or type(state).split
    split_keys, split_counts, broadcast_keys, broadcast_counts = split_state(
        state,
        _nnx.All(split_filter, _nnx.RngKey),
        _nnx.All(split_filter, _nnx.RngCount),
        _nnx.RngKey,
        _nnx.RngCount,
    )

    def split(key: Any) -> Any:
        if not isinstance(key, jax.Array):
            raise TypeError(f"nnx.fork: an RNG key must be a jax.Array, got {type(key).__name__}")
        return jax.random.split(key, num_splits)

    split_keys = jax.tree.map(split, split_keys)
    return ForkStates(split_keys, split_counts, broadcast_keys, broadcast_counts)


def _mesh_defined() -> bool:
    """Whether a mesh context is active (``with mesh:``, ``jax.set_mesh``, ``use_mesh``)."""
    if not jax.sharding.get_abstract_mesh().empty:
        return True
    # the legacy ``with mesh:`` context, which flax 0.10 looked at (jax keeps it in one of these)
    for module in ("jax._src.mesh", "jax._src.interpreters.pxla"):
        resources = getattr(importlib.import_module(module), "thread_resources", None)
        if resources is not None:
            return bool(resources.env.physical_mesh.devices.shape != ())
    return False


def _constrain(x: Any, spec: Any, mesh: Any) -> Any:
    if mesh is None and not _mesh_defined():
        return x  # no mesh: a no-op, as flax 0.10's
    if mesh is not None and spec is not None:
        sharding = jax.sharding.NamedSharding(mesh, spec)
        return jax.lax.with_sharding_constraint(x, sharding)  # type: ignore[no-untyped-call]
    return jax.lax.with_sharding_constraint(x, spec)  # type: ignore[no-untyped-call]


def _is_spec(x: Any) -> bool:
    return x is None or (isinstance(x, tuple) and all(e is None or isinstance(e, str) for e in x))


def with_sharding_constraint(x: Any, axis_resources: Any, mesh: Any = None) -> Any:
    """flax 0.10's ``nnx.with_sharding_constraint``: ``jax.lax.with_sharding_constraint`` over a
    pytree of partition specs, a no-op when no mesh is given or active."""
    if axis_resources is None:
        return x
    constrain = functools.partial(_constrain, mesh=mesh)
    return jax.tree.map(constrain, x, axis_resources, is_leaf=_is_spec)


class _StandsForVariable(type):
    """``isinstance``/``issubclass`` against the shim answer as against flax's ``Variable``; a
    call is dispatched by its form (see :class:`VariableState`)."""

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, _nnx.Variable)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return _nnx.Variable in getattr(subclass, "__mro__", ())

    def __call__(cls, *args: Any, **metadata: Any) -> Any:
        if len(args) == 2 and isinstance(args[0], type) and issubclass(args[0], _nnx.Variable):
            # flax 0.10: VariableState(type, value, **metadata), a state leaf of that type
            _warnings.warn_legacy("variable-state", detail="nnx.VariableState(type, value)")
            variable_type, value = args
            return variable_type(value, **metadata)
        return _nnx.Variable(*args, **metadata)  # flax 0.11's alias: VariableState(value)


class VariableState(metaclass=_StandsForVariable):
    """flax 0.10's ``nnx.VariableState`` where states hold Variables (flax 0.11+).

    ``VariableState(nnx.Param, value, **metadata)`` (0.10's form, which flax 0.11's alias of
    ``Variable`` rejects) builds ``nnx.Param(value, **metadata)`` with a ``variable-state``
    warning; ``VariableState(value)`` is flax 0.11's alias, a ``Variable``; ``isinstance`` and
    ``issubclass`` answer as for ``nnx.Variable``. On flax 0.10 flax's own class is served.
    """


if not _versions.feature("STATE_SHARES_VARIABLES"):  # flax 0.10: its own VariableState
    VariableState = _nnx.VariableState  # type: ignore[misc]


#: flax 0.10's switch of its experimental mutable arrays, which flax 0.11 removed from its config.
MUTABLE_ARRAY_FLAG = "flax_mutable_array"


def _mutable_array_flag(config: Any) -> bool:
    _warnings.warn_legacy("mutable-arrays", detail=f"flax.config.{MUTABLE_ARRAY_FLAG}")
    return False


def patch_config() -> None:
    """Where flax's config lacks 0.10's ``flax_mutable_array``, reading it answers False (0.10's
    default: the mutable-array mode is off, and nnx_compat serves no mutable arrays) with the
    ``mutable-arrays`` warning. flax's options are untouched: ``config.update`` of the flag
    still raises flax's ``LookupError``. Idempotent."""
    import flax

    config_type = type(flax.config)
    if hasattr(config_type, MUTABLE_ARRAY_FLAG):
        return  # flax 0.10's own flag, or patched already
    flag = property(_mutable_array_flag, doc="flax 0.10's mutable-array switch: off.")
    setattr(config_type, MUTABLE_ARRAY_FLAG, flag)
