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

flax 0.10 code also *reads* the names as ``variable.sharding`` and, through the Linen bridge, as
``NNXMeta.metadata['sharding']``; where flax 0.11+ fails on those reads (a traced or unsharded
value; a missing key), :func:`traced_sharding` and :class:`LegacyKeys` give the names.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, Final

from nnx_compat import _versions, _warnings

__all__ = [
    "LegacyKeys",
    "adapt",
    "bridge",
    "partition_names",
    "patch_bridge",
    "restore_bridge",
]

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
    if not _EAGER:
        return None
    carried = dict(value.metadata) if isinstance(value, _VariableMetadata) else {}  # type: ignore[attr-defined]
    if "eager_sharding" in kwargs or "eager_sharding" in carried:
        return None
    if _NO_MESH not in str(error) and not _failed_applying_rules(error, kwargs, carried):
        return None
    annotation = kwargs.get(_NATIVE_KEY, carried.get(_NATIVE_KEY))
    _warnings.warn_legacy(
        "sharding-without-mesh",
        detail=f"{_NATIVE_KEY}={annotation!r}; it is created unsharded, as flax 0.10 did",
    )
    return {**kwargs, "eager_sharding": False}


def _failed_applying_rules(
    error: ValueError, kwargs: Mapping[str, Any], carried: Mapping[str, Any]
) -> bool:
    """Whether flax 0.12 failed applying an annotation's logical-axis rules while creating a
    Variable with no mesh known: flax applies the rules before it looks for a mesh, so the
    creation would have failed for want of a mesh after them (flax 0.10 kept the rules as
    metadata, applied only when the Variable is sharded later)."""
    import jax
    from flax.core import meta

    # flax's Linen bridge passes mesh=None where the Linen annotation had none
    mesh = kwargs.get("mesh", carried.get("mesh"))
    if mesh is not None or meta.get_global_mesh() is not None:
        return False
    annotation = kwargs.get(_NATIVE_KEY, carried.get(_NATIVE_KEY))
    if annotation is None or isinstance(annotation, jax.sharding.NamedSharding):
        return False
    traceback = error.__traceback__
    while traceback is not None:
        code = traceback.tb_frame.f_code
        where = code.co_filename.replace("\\", "/")
        if code.co_name == "apply_rules" and where.endswith("flax/core/spmd.py"):
            return True
        traceback = traceback.tb_next
    return False


# --------------------------------------------------------------------------- flax 0.10 reads


def shard_when_created(variable: Any) -> None:
    """flax 0.12's eager sharding on an older flax, where it is asked for.

    flax 0.12 shards the value of a Variable with a sharding annotation when the Variable is
    created, unless ``eager_sharding=False`` (or ``nnx.use_eager_sharding(False)``). An older
    flax never does, and that stays its default: here the value is sharded only for
    ``eager_sharding=True``, or ``nnx.use_eager_sharding(True)`` where the Variable was given
    no ``eager_sharding``. Called by the Variable constructor of ``nnx_compat._variables``
    where flax itself does not shard eagerly.
    """
    metadata = object.__getattribute__(variable, "_var_metadata")
    annotation = metadata.get(_NATIVE_KEY)
    if not annotation:
        return
    explicit = metadata.get("eager_sharding")
    if explicit is False:
        return
    if explicit is None:
        from nnx_compat import _added

        if not _added.using_eager_sharding():
            return
    value = object.__getattribute__(variable, "raw_value")
    try:
        sharded = shard_value(
            value, annotation, metadata.get("sharding_rules"), metadata.get("mesh")
        )
    except ValueError as error:
        # as on flax 0.12 through nnx_compat (unsharded): no mesh, and no eager_sharding=True
        if explicit or _NO_MESH not in str(error):
            raise
        _warnings.warn_legacy(
            "sharding-without-mesh",
            detail=f"{_NATIVE_KEY}={annotation!r}; it is created unsharded, as flax 0.10 did",
        )
        return
    object.__setattr__(variable, "raw_value", sharded)


def _composite_rules(context: Any, own: Any) -> dict[Any, Any]:
    """The context's logical axis rules with a Variable's own, as flax 0.12.8 merges them (flax
    0.10's ``composite_rules`` wants both)."""
    rules = dict(context or ())
    for alias, on_mesh in own or ():
        if context and own and alias in rules and rules[alias] != on_mesh:
            raise ValueError(
                f"Inconsistent logical axis annotations for {alias}: {rules[alias]} vs {on_mesh}"
            )
        rules[alias] = on_mesh
    return rules


def shard_value(value: Any, annotation: Any, rules: Any, mesh: Any) -> Any:
    """flax 0.12.8's sharding of a Variable's value when it is created (``flax.core.spmd.
    shard_value``), on the older flax's pieces: the annotation's logical axes renamed by the
    context's and the Variable's rules, on the annotation's mesh, the Variable's ``mesh=`` or
    the mesh context's; resharded on an explicit mesh, constrained on an auto one."""
    import importlib

    import jax
    from flax.core import spmd
    from jax.sharding import AxisType, NamedSharding

    PartitionSpec: Any = jax.sharding.PartitionSpec
    renames = _composite_rules(spmd.get_logical_axis_rules(), rules)
    named = isinstance(annotation, NamedSharding)
    spec = PartitionSpec(*(renames.get(a, a) for a in (annotation.spec if named else annotation)))
    if named:
        mesh = annotation.mesh
    elif mesh is None:
        current = jax.sharding.get_abstract_mesh()
        mesh = None if current.empty else current
    if mesh is None:
        raise ValueError(
            "An auto mesh context or metadata is required if creating a variable with "
            f"annotation out_sharding={spec!r}. For more guidance, see "
            "https://flax.readthedocs.io/en/latest/flip/4844-var-eager-sharding.html."
        )
    sharding = NamedSharding(mesh, spec)
    axis_types = tuple(mesh.axis_types)
    if all(t == AxisType.Explicit for t in axis_types):
        # jax.sharding.reshard since jax 0.7 (jax.experimental.shard.reshard in 0.6)
        home: Any = jax.sharding if hasattr(jax.sharding, "reshard") else None
        home = home or importlib.import_module("jax.experimental.shard")
        return home.reshard(value, sharding)
    if all(t == AxisType.Auto for t in axis_types):
        constrain: Any = jax.lax.with_sharding_constraint
        return constrain(value, sharding)
    raise ValueError(
        f"Mesh must have all axes as Explicit or all axes as Auto. Got mixed axis types: "
        f"{mesh.axis_types}"
    )


def partition_names(metadata: Mapping[str, Any]) -> Any:
    """The partition names a Variable's metadata holds, under whichever key; None if none."""
    for key in _versions.SHARDING_KEYS:
        if metadata.get(key) is not None:
            return metadata[key]
    return None


def traced_sharding(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps ``Variable.__getattr__`` (flax 0.11+): ``variable.sharding`` where flax raises (the
    value is a tracer, inside ``jit``/``vmap``, or has no sharding) gives the partition names, as
    flax 0.10's metadata attribute did, with a ``variable-sharding-traced`` warning. Everywhere
    flax answers, its answer (the array's sharding) stands."""

    @functools.wraps(original)
    def __getattr__(self: Any, name: str) -> Any:
        try:
            return original(self, name)
        except AttributeError:
            # only the user's read: a library probing getattr(v, "sharding", None) (orbax,
            # flax itself) keeps flax's answer
            if name != "sharding" or not _warnings.called_from_user():
                raise
            names = partition_names(object.__getattribute__(self, "_var_metadata"))
            if names is None:
                raise
            _warnings.warn_legacy("variable-sharding-traced", detail=f"names {names!r}")
            return names

    return __getattr__


class LegacyKeys(dict):  # type: ignore[type-arg]
    """The metadata dict of the Linen bridge's ``NNXMeta``: reading the missing key
    ``'sharding'`` (flax 0.10's) gives the names stored under the installed flax's key, with a
    ``linen-bridge-sharding-metadata`` warning. Nothing else differs from a dict: iteration,
    ``in``, ``get`` and ``**`` see only the real keys."""

    def __missing__(self, key: Any) -> Any:
        if key == "sharding":
            names = partition_names(self)
            if names is not None:
                _warnings.warn_legacy(
                    "linen-bridge-sharding-metadata", detail=f"metadata[{_NATIVE_KEY!r}]"
                )
                return names
        raise KeyError(key)


def legacy_keys_init(original: Callable[..., None]) -> Callable[..., None]:
    """Wraps ``NNXMeta.__init__`` (flax 0.11+) to hold its metadata as :class:`LegacyKeys`."""

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        metadata = vars(self).get("metadata")
        if type(metadata) is dict:
            object.__setattr__(self, "metadata", LegacyKeys(metadata))

    return __init__


#: ``nnx.bridge``, served as flax's own module; importing ``nnx_compat.nnx`` patches its
#: ``NNXMeta`` (:func:`patch_bridge`).
bridge: Any = _nnx.bridge
_saved_bridge: dict[str, Any] = {}


def patch_bridge() -> None:
    """Holds the Linen bridge's ``NNXMeta`` metadata as :class:`LegacyKeys` where flax renamed
    the sharding key (flax 0.11+). Idempotent; :func:`restore_bridge` undoes it."""
    meta = bridge.variables.NNXMeta
    if _NATIVE_KEY == "sharding" or _saved_bridge:
        return
    _saved_bridge["__init__"] = vars(meta)["__init__"]
    meta.__init__ = legacy_keys_init(vars(meta)["__init__"])


def restore_bridge() -> None:
    """Puts ``NNXMeta.__init__`` back."""
    if _saved_bridge:
        bridge.variables.NNXMeta.__init__ = _saved_bridge.pop("__init__")
