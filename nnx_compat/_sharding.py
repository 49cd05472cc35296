"""Legacy sharding annotations on Variables: the metadata key, and annotations made with no mesh.

flax renamed a Variable's sharding annotation from ``sharding`` (0.10) to ``sharding_names``
(0.11.0) to ``out_sharding`` (0.12.4), and from 0.12.0 shards a Variable when it is created,
which raises ``An auto mesh context or metadata is required ...`` when no mesh is active. flax
0.10 code annotates Variables with no mesh and shards them later
(``nnx.get_partition_spec`` + ``jax.lax.with_sharding_constraint`` + ``nnx.update``).

:func:`adapt` renames a Variable's constructor arguments before the native constructor runs,
and :func:`unsharded` answers where it failed:

* any of the three keys becomes the installed flax's key (``out_sharding=`` works on 0.10);
  the keys that flax itself deprecates warn, as ``sharding-metadata-key``;
* where flax shards eagerly and the native constructor fails for want of a mesh,
  :func:`unsharded` gives the arguments that create the Variable with ``eager_sharding=False``,
  as 0.10 created it, and ``sharding-without-mesh`` warns instead of the error. Whether a mesh
  is known is flax's own decision (a mesh context, ``mesh=`` metadata, a ``NamedSharding``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from nnx_compat import _versions, _warnings

__all__ = ["adapt"]

_nnx: Any = _versions.import_nnx()
_VariableMetadata: Final[type] = _nnx.variablelib.VariableMetadata
_NATIVE_KEY: Final = _versions.sharding_metadata_key()
_OTHER_KEYS: Final = tuple(k for k in _versions.SHARDING_KEYS if k != _NATIVE_KEY)
# flax warns about the older keys only once the newest one is native (0.12.4); where flax
# accepts an older key silently (0.11 maps ``sharding``), so does nnx_compat.
_WARN_OLDER: Final = _versions.SHARDING_KEYS[-1] == _NATIVE_KEY
# flax 0.12.0: Variables are sharded at creation.
_EAGER: Final = _versions.feature("EAGER_SHARDING")


def _rename(metadata: dict[str, Any]) -> None:
    for key in _OTHER_KEYS:
        if key not in metadata:
            continue
        if _NATIVE_KEY in metadata:
            raise TypeError(
                f"a Variable got both {key}= and {_NATIVE_KEY}= as its sharding annotation; "
                f"pass only {_NATIVE_KEY}= (the key of the installed flax)."
            )
        older = _versions.SHARDING_KEYS.index(key) < _versions.SHARDING_KEYS.index(_NATIVE_KEY)
        if older and _WARN_OLDER:
            _warnings.warn_legacy("sharding-metadata-key", detail=f"got {key}=")
        metadata[_NATIVE_KEY] = metadata.pop(key)


def adapt(value: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The Variable constructor's ``(value, kwargs)`` with legacy sharding keys renamed.

    Args:
        value: The first constructor argument (an array, or a ``VariableMetadata``).
        kwargs: The keyword arguments (metadata and flags).

    Returns:
        The arguments to pass to the native constructor.

    Raises:
        TypeError: for an annotation given under two keys.
    """
    if isinstance(value, _VariableMetadata):
        carried = dict(value.metadata)  # type: ignore[attr-defined]
        if any(key in carried for key in _OTHER_KEYS):
            _rename(carried)
            value = dataclasses.replace(value, metadata=carried)  # type: ignore[type-var]
    if any(key in kwargs for key in _OTHER_KEYS):
        kwargs = dict(kwargs)
        _rename(kwargs)
    return value, kwargs


#: What flax 0.12 raises for a sharding annotation made with no mesh (flax/core/spmd.py).
_NO_MESH: Final = "An auto mesh context or metadata is required"


def unsharded(error: ValueError, value: Any, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The keyword arguments that create the Variable unsharded, as flax 0.10 did, where the
    native constructor failed only for want of a mesh; else None (the error stands).

    flax 0.12 shards a Variable with a sharding annotation when it is created, and raises when
    no mesh is known. flax 0.10 code annotates Variables with no mesh and shards them later. An
    explicit ``eager_sharding=True`` asks for the native error, and gets it.
    """
    if not _EAGER or _NO_MESH not in str(error):
        return None
    carried = dict(value.metadata) if isinstance(value, _VariableMetadata) else {}  # type: ignore[attr-defined]
    if "eager_sharding" in kwargs or "eager_sharding" in carried:
        return None
    annotation = kwargs.get(_NATIVE_KEY, carried.get(_NATIVE_KEY))
    _warnings.warn_legacy(
        "sharding-without-mesh",
        detail=f"{_NATIVE_KEY}={annotation!r}; it is created unsharded, as flax 0.10 did",
    )
    return {**kwargs, "eager_sharding": False}
