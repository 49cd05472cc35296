"""flax 0.12's members of classes an older flax already has, on flax's own classes.

:func:`patch` (run when ``nnx_compat.nnx`` is built) adds each member below to the installed
flax's class where that class lacks it, with flax 0.12.8's behaviour, built on the old flax's
own pieces; a member the installed flax has is never changed (a wrapper that adds parameters
hands every call the installed flax accepts to the installed method). :func:`restore` undoes
it. ``nnx_compat._added.MEMBERS`` lists every member flax 0.12.8 added to a class flax 0.10.7
or 0.11.2 has, with ``"served"`` or the reason it is not.

* ``Variable``: the metadata API (``get_metadata(name, default)``,
  ``get_metadata(exclude_required=True)``, ``set_metadata``, ``has_metadata``,
  ``del_metadata``), ``get_raw_value``/``set_raw_value``, ``copy(value, **metadata)`` and the
  properties ``hijax``, ``ref``, ``sharding_names``, ``type`` and ``var_type``. The sharding
  annotation, ``out_sharding`` in flax 0.12, lives under the installed flax's key
  (``sharding`` on 0.10, ``sharding_names`` on 0.11): ``set_metadata`` stores any of the three
  names there, and the other methods read ``out_sharding`` there.
* The layers' ``*_metadata`` arguments (``Linear(kernel_metadata=...)``, ...): the entries
  annotate the Variables they name once the layer is built; as in flax 0.12, where the
  initializer already gives a key (``nnx.with_partitioning``) it keeps its value.
* ``BatchNorm``/``Dropout``/``MultiHeadAttention.set_view`` (what ``nnx.view`` calls);
  ``Dict``'s mutable-mapping methods (flax 0.10's ``Dict`` is a read-only mapping);
  ``StateAxes.get/keys/values``; ``DiffState.map_prefix``; ``PathContains(key, exact=False)``.
"""

from __future__ import annotations

import collections.abc
import contextlib
import functools
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from nnx_compat import _sharding, _versions

__all__ = ["patch", "patched", "restore"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


_MISSING: Final[Any] = _Missing()
Shape = collections.abc.Sequence[int]  # flax.typing.Shape, as nnx.view_info names it
_ABSENT: Final[Any] = object()

#: The metadata flax 0.12 gives every Variable (``get_metadata(exclude_required=True)`` drops it).
_REQUIRED: Final = ("hijax", "ref", "eager_sharding")
#: The names of the sharding annotation, oldest first (flax 0.10, 0.11, 0.12.4).
_SHARDING_NAMES: Final = ("sharding", "sharding_names", "out_sharding")

#: What :func:`patch` set: ``(class, attribute, what the class held before or _ABSENT)``.
_patched: list[tuple[type, str, Any]] = []


# --------------------------------------------------------------------------- Variable


def _native_key() -> str:
    return _versions.sharding_metadata_key()


def _key(name: str) -> str:
    """The installed flax's metadata key for flax 0.12's ``name`` (its sharding annotation)."""
    return _native_key() if name == "out_sharding" else name


def _renamed(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` with any name of the sharding annotation under the installed flax's key,
    as flax 0.12's ``set_metadata`` renames ``sharding``/``sharding_names``."""
    native = _native_key()
    out = dict(metadata)
    for name in _SHARDING_NAMES:
        if name != native and name in out:
            out[native] = out.pop(name)
    return out


def _check_can_update(variable: Any) -> None:
    """flax 0.12's refusal to change a Variable from another trace than its own."""
    if not variable._trace_state.is_valid():
        from flax import errors

        error: Any = errors.TraceContextError  # (untyped)
        raise error(f"Cannot mutate {type(variable).__name__} from a different trace level")


def _metadata(variable: Any) -> dict[str, Any]:
    return object.__getattribute__(variable, "_var_metadata")  # type: ignore[no-any-return]


def _replace_metadata(variable: Any, metadata: dict[str, Any]) -> None:
    # through flax's own __setattr__: its trace check, and nnx_compat's mutation watchers
    variable._var_metadata = metadata


def _check_flag(variable: Any, name: str, value: Any) -> None:
    if name in ("hijax", "ref") and value != getattr(variable, name):
        raise ValueError(
            f"Cannot change `{name}` metadata, expected {getattr(variable, name)}, got {value}"
        )


def _get_metadata(native: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(native)
    def get_metadata(
        self: Any, name: str | None = None, default: Any = _MISSING, *, exclude_required: Any = None
    ) -> Any:
        if name is not None and exclude_required is not None:
            raise TypeError("Cannot specify both 'name' and 'exclude_required' arguments.")
        if name is None:
            if default is not _MISSING:
                raise TypeError(
                    "Cannot provide a default value when 'name' is not provided. "
                    f"Got default={default}"
                )
            if exclude_required:
                return {k: v for k, v in native(self).items() if k not in _REQUIRED}
            return native(self)
        metadata = _metadata(self)
        key = _key(name)
        if key not in metadata:
            if default is not _MISSING:
                return default
            raise KeyError(name)
        return metadata[key]

    return get_metadata


def _set_metadata(self: Any, *args: Any, **kwargs: Any) -> None:
    """flax 0.12's ``set_metadata``: ``(mapping)`` replaces the metadata, ``(name, value)`` sets
    one entry, ``(**entries)`` updates it."""
    _check_can_update(self)
    if args and kwargs:
        raise TypeError("Cannot mix positional and keyword arguments in set_metadata")
    if len(args) == 1:
        metadata = _renamed(args[0])
        for name in ("hijax", "ref"):
            if name in metadata:
                _check_flag(self, name, metadata[name])
        current = _metadata(self)
        if "eager_sharding" in current and "eager_sharding" not in metadata:
            metadata["eager_sharding"] = current["eager_sharding"]
        elif "eager_sharding" in metadata and metadata["eager_sharding"] != current.get(
            "eager_sharding", metadata["eager_sharding"]
        ):
            raise ValueError(
                "Cannot change `eager_sharding` metadata, expected "
                f"{current['eager_sharding']}, got {metadata['eager_sharding']}"
            )
    elif len(args) == 2:
        name, value = args
        _check_flag(self, name, value)
        metadata = {**_metadata(self), **_renamed({name: value})}
    elif kwargs:
        entries = _renamed(kwargs)
        for name in ("hijax", "ref"):
            if name in entries:
                _check_flag(self, name, entries[name])
        metadata = {**_metadata(self), **entries}
    else:
        raise TypeError(
            "set_metadata takes either 1 or 2 arguments, or at least 1 keyword argument, "
            f"got args={args}, kwargs={kwargs}"
        )
    _replace_metadata(self, metadata)


def _has_metadata(self: Any, name: str) -> bool:
    """Whether the Variable has a metadata entry ``name`` (flax 0.12)."""
    return _key(name) in _metadata(self)


def _del_metadata(self: Any, name: str) -> None:
    """Deletes the metadata entry ``name`` (flax 0.12)."""
    _check_can_update(self)
    if name in ("hijax", "ref"):
        raise ValueError(f"Cannot delete `{name}` metadata")
    metadata = dict(_metadata(self))
    key = _key(name)
    if key not in metadata:
        raise KeyError(name)
    del metadata[key]
    _replace_metadata(self, metadata)


def _get_raw_value(self: Any) -> Any:
    """The stored value, without the ``on_get_value`` hooks (flax 0.12)."""
    return object.__getattribute__(self, "raw_value")


def _set_raw_value(self: Any, value: Any, *, _unsafe_bypass_check: bool = False) -> None:
    """Stores ``value`` without the ``on_set_value`` hooks (flax 0.12). The assignment goes
    through flax's own ``__setattr__``, whose trace check stands even with
    ``_unsafe_bypass_check`` (as in flax 0.12.8)."""
    if not _unsafe_bypass_check:
        _check_can_update(self)
    self.raw_value = value


def _is_ref(value: Any) -> bool:
    variablelib = _versions.import_nnx().variablelib
    probe = getattr(variablelib, "is_array_ref", None) or getattr(
        variablelib, "is_mutable_array", None
    )
    return bool(probe(value)) if probe is not None else False


def _copy(native: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(native)
    def copy(self: Any, value: Any = _MISSING, *, _copy_ref: bool = True, **updates: Any) -> Any:
        if value is _MISSING and not updates:
            return native(self)
        if "raw_value" in updates:
            raise AssertionError("copy() takes the value as its argument, not raw_value=")
        import jax

        metadata = {**_metadata(self), **updates}
        if value is _MISSING:
            value = _get_raw_value(self)
        value = jax.tree.map(lambda x: x, value)  # a copy of the containers, as flax 0.12
        return type(self).from_metadata(value, metadata)

    return copy


_OUT_DOC: Final = "The sharding annotation, read as flax 0.12.4 reads its metadata attribute."


def _out_sharding(self: Any) -> Any:
    """``variable.out_sharding``: flax 0.12 keeps the annotation as metadata of that name, so
    the attribute is the annotation where there is one, and the value's attribute otherwise
    (an array has none: the AttributeError flax 0.12 raises). Written as an attribute, the
    old flax keeps it as metadata of that name, read here first."""
    metadata = _metadata(self)
    for name in ("out_sharding", _native_key()):
        if name in metadata:
            return metadata[name]
    return self.get_raw_value().out_sharding  # flax 0.12.0-0.12.3 have their own


def _variable_members() -> dict[str, Any]:
    """flax 0.12's members of ``Variable`` that are new (added where the class lacks them)."""
    return {
        "set_metadata": _set_metadata,
        "has_metadata": _has_metadata,
        "del_metadata": _del_metadata,
        "get_raw_value": _get_raw_value,
        "set_raw_value": _set_raw_value,
        "hijax": property(
            lambda self: bool(_metadata(self).get("hijax", False)),
            doc="Whether this is a hijax Variable (never, before flax 0.12).",
        ),
        "ref": property(
            lambda self: _is_ref(_get_raw_value(self)),
            doc="Whether the value is an array reference (flax 0.12's ``ref``).",
        ),
        "sharding_names": property(
            lambda self: _metadata(self).get(_native_key()),
            doc="The sharding annotation (flax 0.12; None without one).",
        ),
        "type": property(lambda self: type(self), doc="The Variable's type (flax 0.12)."),
        "var_type": property(lambda self: type(self), doc="The Variable's type (flax 0.12)."),
    }


def _variable_wrappers(variable: type) -> dict[str, Any]:
    """flax 0.12's parameters of ``Variable`` methods the class has without them."""
    wrappers: dict[str, Any] = {}
    native_get_metadata = vars(variable)["get_metadata"]
    if "name" not in _parameters(native_get_metadata):
        wrappers["get_metadata"] = _get_metadata(native_get_metadata)
    native_copy = vars(variable)["copy"]
    if "value" not in _parameters(native_copy):
        wrappers["copy"] = _copy(native_copy)
    return wrappers


# --------------------------------------------------------------------------- layers

_LINEAR: Final = {"kernel_metadata": ("kernel",), "bias_metadata": ("bias",)}
_NORM: Final = {"scale_metadata": ("scale",), "bias_metadata": ("bias",)}
_GATES: Final = ("i", "f", "g", "o")

#: flax 0.12's metadata arguments of the layers: layer -> argument -> the Variables it
#: annotates (attribute paths from the layer).
LAYER_METADATA: Final[Mapping[str, Mapping[str, tuple[str, ...]]]] = {
    "Linear": _LINEAR,
    "LinearGeneral": _LINEAR,
    "Einsum": _LINEAR,
    "Conv": _LINEAR,
    "ConvTranspose": _LINEAR,
    "Embed": {"embedding_metadata": ("embedding",)},
    "LayerNorm": _NORM,
    "GroupNorm": _NORM,
    "BatchNorm": _NORM,
    "RMSNorm": {"scale_metadata": ("scale",)},
    "LoRA": {"a_metadata": ("lora_a",), "b_metadata": ("lora_b",)},
    "LoRALinear": {"a_metadata": ("lora.lora_a",), "b_metadata": ("lora.lora_b",)},
    "LSTMCell": {
        "kernel_metadata": tuple(f"{'if_' if g == 'f' else 'i' + g}.kernel" for g in _GATES),
        "recurrent_kernel_metadata": tuple(f"h{g}.kernel" for g in _GATES),
        "bias_metadata": tuple(f"h{g}.bias" for g in _GATES),
    },
    "OptimizedLSTMCell": {
        "kernel_metadata": ("dense_i.kernel",),
        "recurrent_kernel_metadata": ("dense_h.kernel",),
        "bias_metadata": ("dense_h.bias",),
    },
    "SimpleCell": {
        "kernel_metadata": ("dense_i.kernel",),
        "recurrent_kernel_metadata": ("dense_h.kernel",),
        "bias_metadata": ("dense_i.bias",),
    },
    "GRUCell": {
        "kernel_metadata": ("dense_i.kernel",),
        "recurrent_kernel_metadata": ("dense_h.kernel",),
        "bias_metadata": ("dense_i.bias",),
    },
    "MultiHeadAttention": {
        "kernel_metadata": ("query.kernel", "key.kernel", "value.kernel"),
        "bias_metadata": ("query.bias", "key.bias", "value.bias"),
        "out_kernel_metadata": ("out.kernel",),
        "out_bias_metadata": ("out.bias",),
        "query_ln_scale_metadata": ("query_ln.scale",),
        "key_ln_scale_metadata": ("key_ln.scale",),
    },
}

#: Arguments that default to another one when empty (flax 0.12's MultiHeadAttention gives its
#: output projection ``out_kernel_metadata or kernel_metadata``).
_FALLBACK: Final = {"out_kernel_metadata": "kernel_metadata", "out_bias_metadata": "bias_metadata"}


def _annotate(layer: Any, path: str, entries: Mapping[str, Any]) -> None:
    variable: Any = layer
    for part in path.split("."):
        variable = getattr(variable, part, None)
    if not isinstance(variable, _versions.import_nnx().Variable):
        return  # an optional Variable this layer has not (use_bias=False, normalize_qk=False)
    _, renamed = _sharding.adapt(None, dict(entries))
    current = _metadata(variable)
    # as flax 0.12's Variable(VariableMetadata(...), **entries): the initializer's keys win
    added = {k: v for k, v in renamed.items() if k not in current}
    if added:
        _replace_metadata(variable, {**current, **added})


def _with_metadata(
    native: Callable[..., None], arguments: Mapping[str, tuple[str, ...]]
) -> Callable[..., None]:
    @functools.wraps(native)  # inspect.signature (and the feature probes) see flax's own
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        given = {name: kwargs.pop(name) for name in arguments if name in kwargs}
        native(self, *args, **kwargs)
        for name, paths in arguments.items():
            entries = given.get(name) or given.get(_FALLBACK.get(name, ""))
            if entries:
                for path in paths:
                    _annotate(self, path, entries)

    return __init__


# --------------------------------------------------------------------------- layer calls

#: The layers whose flax 0.12 computation hands ``out_sharding`` (a call argument) and
#: ``preferred_element_type`` (a constructor argument) to the operation the layer holds as an
#: attribute, which the old flax's ``__call__`` calls as well: layer -> that attribute.
LAYER_OPS: Final[Mapping[str, str]] = {
    "Linear": "dot_general",
    "LinearGeneral": "dot_general",
    "Einsum": "einsum_op",
    "Conv": "conv_general_dilated",
}


@contextlib.contextmanager
def _op_taking(layer: Any, attribute: str, **arguments: Any) -> Iterator[None]:
    """While the block runs, the layer's operation is called with ``arguments`` (those not
    None) as well: the old layer's own ``__call__`` computes, as flax 0.12's passes them on.
    The attribute is written past flax's ``__setattr__`` (no trace check: nothing of the
    layer's state changes) and put back after."""
    given = {name: value for name, value in arguments.items() if value is not None}
    if not given:
        yield
        return
    state = vars(layer)
    factory_name = f"{attribute}_cls"  # LinearGeneral's dot_general_cls comes first
    saved = {name: state[name] for name in (attribute, factory_name) if name in state}
    factory = state.get(factory_name)
    if factory is not None:
        state[factory_name] = lambda: _filled(factory(), given)
    else:
        op = state.get(attribute)
        if op is None:  # LinearGeneral(dot_general=None): jax's own, as its __call__ does
            import jax

            op = jax.lax.dot_general
        state[attribute] = _filled(op, given)
    try:
        yield
    finally:
        state.update(saved)


def _filled(op: Callable[..., Any], given: Mapping[str, Any]) -> Callable[..., Any]:
    """``op`` with ``given`` for the arguments its caller leaves out or passes as None (a
    layer of flax 0.12.0-0.12.3 passes ``out_sharding=None`` itself)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        for name, value in given.items():
            if kwargs.get(name) is None:
                kwargs[name] = value
        return op(*args, **kwargs)

    return call


def _element_type(layer: Any) -> Any:
    return vars(layer).get("preferred_element_type")


def _layer_call(native: Callable[..., Any], attribute: str) -> Callable[..., Any]:
    """flax 0.12's ``__call__(..., out_sharding=None)`` around the old one."""

    @functools.wraps(native)  # inspect.signature (and the feature probes) see flax's own
    def __call__(self: Any, *args: Any, out_sharding: Any = None, **kwargs: Any) -> Any:
        element_type = _element_type(self)
        if out_sharding is None and element_type is None:
            return native(self, *args, **kwargs)  # the old flax's call, as it was
        with _op_taking(
            self, attribute, out_sharding=out_sharding, preferred_element_type=element_type
        ):
            return native(self, *args, **kwargs)

    return __call__


def _with_element_type(native: Callable[..., None]) -> Callable[..., None]:
    """flax 0.12's ``__init__(..., preferred_element_type=None)`` around the old one: a value
    is kept on the layer (the class answers None, so a layer built without one is unchanged)."""

    @functools.wraps(native)
    def __init__(self: Any, *args: Any, preferred_element_type: Any = None, **kwargs: Any) -> None:
        native(self, *args, **kwargs)
        if preferred_element_type is not None:
            self.preferred_element_type = preferred_element_type

    return __init__


def _attention_call(native: Callable[..., Any]) -> Callable[..., Any]:
    """flax 0.12's ``MultiHeadAttention.__call__(..., out_sharding=None, qkv_sharding=None)``:
    the query, key and value projections' results sharded as ``qkv_sharding``, the output
    projection's as ``out_sharding``."""

    @functools.wraps(native)
    def __call__(
        self: Any, *args: Any, out_sharding: Any = None, qkv_sharding: Any = None, **kwargs: Any
    ) -> Any:
        if out_sharding is None and qkv_sharding is None:
            return native(self, *args, **kwargs)
        with contextlib.ExitStack() as stack:
            for name, sharding in (
                ("query", qkv_sharding),
                ("key", qkv_sharding),
                ("value", qkv_sharding),
                ("out", out_sharding),
            ):
                projection = getattr(self, name)
                stack.enter_context(
                    _op_taking(
                        projection,
                        "dot_general",
                        out_sharding=sharding,
                        preferred_element_type=_element_type(projection),
                    )
                )
            return native(self, *args, **kwargs)

    return __call__


def _patch_layer_calls(nnx: Any) -> None:
    for layer, attribute in LAYER_OPS.items():
        cls = getattr(nnx, layer)
        if "out_sharding" not in _parameters(vars(cls)["__call__"]):
            _set(cls, "__call__", _layer_call(vars(cls)["__call__"], attribute))
        if "preferred_element_type" not in _parameters(vars(cls)["__init__"]):
            _set(cls, "__init__", _with_element_type(vars(cls)["__init__"]))
            _set(cls, "preferred_element_type", None)
    lora = nnx.LoRALinear  # its own __call__ adds the LoRA branch to Linear's
    if "out_sharding" not in _parameters(vars(lora)["__call__"]):
        _set(lora, "__call__", _layer_call(vars(lora)["__call__"], "dot_general"))
    attention = nnx.MultiHeadAttention
    if "out_sharding" not in _parameters(vars(attention)["__call__"]):
        _set(attention, "__call__", _attention_call(vars(attention)["__call__"]))


# The set_view docstrings keep flax's layout and words: nnx.view_info prints their Args.
def _batch_norm_set_view(self: Any, use_running_average: bool | None = None) -> None:
    """flax 0.12's ``BatchNorm.set_view`` (what ``nnx.view`` calls).

    Args:
      use_running_average: if True, the stored batch statistics will be
        used instead of computing the batch statistics on the input.
    """
    if use_running_average is not None:
        self.use_running_average = use_running_average


def _dropout_set_view(self: Any, deterministic: bool | None = None) -> None:
    """flax 0.12's ``Dropout.set_view`` (what ``nnx.view`` calls).

    Args:
      deterministic: if True, disables dropout masking.
    """
    if deterministic is not None:
        self.deterministic = deterministic


def _attention_set_view(
    self: Any,
    deterministic: bool | None = None,
    decode: bool | None = None,
    batch_size: int | Shape | None = None,
    max_length: int | None = None,
) -> None:
    """flax 0.12's ``MultiHeadAttention.set_view`` (what ``nnx.view`` calls): the modes, and a
    decoding cache where the layer has none.

    Args:
      deterministic: if True, the module is set to deterministic mode.
      decode: if True, the module is set to decode mode.
      batch_size: the batch size to use for the cache.
      max_length: the max length to use for the cache.
    """
    if deterministic is not None:
        self.deterministic = deterministic
    if decode is None:
        return
    self.decode = decode
    if all(hasattr(self, name) for name in ("cached_key", "cached_value", "cache_index")):
        return
    if batch_size is None:
        raise TypeError("'batch_size' must be provided when initializing cache.")
    if max_length is None:
        raise TypeError("'max_length' must be provided when initializing cache.")
    import jax.numpy as jnp

    nnx = _versions.import_nnx()
    batch = (batch_size,) if isinstance(batch_size, int) else tuple(batch_size)
    heads = getattr(self, "num_kv_heads", self.num_heads)
    shape = (*batch, max_length, heads, self.head_dim)
    self.cached_key = nnx.Cache(jnp.zeros(shape, self.dtype))
    self.cached_value = nnx.Cache(jnp.zeros(shape, self.dtype))
    self.cache_index = nnx.Cache(jnp.array(0, dtype=jnp.int32))


# --------------------------------------------------------------------------- mappings, filters


def _dict_members() -> dict[str, Any]:
    """flax 0.12's mutable-mapping methods of ``nnx.Dict`` (flax 0.10's is a ``Mapping`` whose
    missing keys raise AttributeError, and has no ``__delitem__``)."""

    def _keys(self: Any) -> list[str]:
        return list(iter(self))

    def pop(self: Any, key: str, default: Any = _MISSING) -> Any:
        if key not in _keys(self):
            if default is _MISSING:
                raise KeyError(key)
            return default
        value = getattr(self, key)
        delattr(self, key)
        return value

    def popitem(self: Any) -> tuple[str, Any]:
        keys = _keys(self)
        if not keys:
            raise KeyError
        return keys[0], pop(self, keys[0])

    def clear(self: Any) -> None:
        for key in _keys(self):
            delattr(self, key)

    def setdefault(self: Any, key: str, default: Any = None) -> Any:
        if key in _keys(self):
            return getattr(self, key)
        self[key] = default
        return default

    def update(self: Any, other: Any = (), /, **entries: Any) -> None:
        collections.abc.MutableMapping.update(self, other, **entries)

    return {
        "pop": pop,
        "popitem": popitem,
        "clear": clear,
        "setdefault": setdefault,
        "update": update,
    }


class _AxesMapping(Mapping[Any, Any]):
    """A ``StateAxes`` read as flax 0.12 reads it: a mapping of its filters to their axes."""

    def __init__(self, axes: Any) -> None:
        self._axes = axes

    def __getitem__(self, key: Any) -> Any:
        return self._axes.axes[self._axes.filters.index(key)]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._axes.filters)

    def __len__(self) -> int:
        return len(self._axes.filters)


def _state_axes_members() -> dict[str, Any]:
    def get(self: Any, key: Any, default: Any = None) -> Any:
        return _AxesMapping(self).get(key, default)

    def keys(self: Any) -> collections.abc.KeysView[Any]:
        return _AxesMapping(self).keys()

    def values(self: Any) -> collections.abc.ValuesView[Any]:
        return _AxesMapping(self).values()

    return {"get": get, "keys": keys, "values": values}


def _map_prefix(self: Any, path: Any, variable: Any) -> bool:
    """flax 0.12's ``DiffState.map_prefix``: whether the filter selects the Variable."""
    return bool(_versions.import_nnx().filterlib.to_predicate(self.filter)(path, variable))


def _path_contains_members(cls: type) -> dict[str, Any]:
    """``PathContains(key, exact=False)`` (flax 0.12): ``key`` matches any part of the path that
    contains it as a string. Equality and hashing count ``exact`` as flax 0.12's do."""
    native_init, native_call = vars(cls)["__init__"], vars(cls)["__call__"]
    native_eq, native_hash = vars(cls)["__eq__"], vars(cls)["__hash__"]

    @functools.wraps(native_init)
    def __init__(self: Any, key: Any, exact: bool = True) -> None:
        native_init(self, key)
        if exact is not True:
            object.__setattr__(self, "exact", exact)

    @functools.wraps(native_call)
    def __call__(self: Any, path: Any, x: Any) -> bool:
        if self.exact:
            return bool(native_call(self, path, x))
        return any(str(self.key) in str(part) for part in path)

    def __eq__(self: Any, other: Any) -> Any:
        result = native_eq(self, other)
        return result and self.exact == other.exact if result is True else result

    def __hash__(self: Any) -> int:
        return native_hash(self) if self.exact is True else hash((self.key, self.exact))

    return {
        "exact": True,
        "__init__": __init__,
        "__call__": __call__,
        "__eq__": __eq__,
        "__hash__": __hash__,
    }


# --------------------------------------------------------------------------- Module.sow, perturb


def _variable_type(variable_type: Any) -> Any:
    if isinstance(variable_type, str):
        return _versions.import_nnx().variablelib.variable_type_from_name(
            variable_type, allow_register=True
        )
    return variable_type


def _capturing_members(module: type) -> dict[str, Any]:
    """flax 0.12.6's ``sow``/``perturb``: inside ``nnx.capture`` (which sets ``__captures__``,
    a tuple of Variables holding dicts, one per captured type) they store there, by name;
    otherwise they are the installed flax's own."""
    import jax

    from nnx_compat._backports.graph import raw_value

    native_sow, native_perturb = module.sow, module.perturb  # type: ignore[attr-defined]
    defaults = {
        name: p.default for name, p in _parameters(native_sow).items() if name.endswith("_fn")
    }

    @functools.wraps(native_sow)
    def sow(
        self: Any,
        variable_type: Any,
        name: str,
        value: Any,
        reduce_fn: Any = defaults["reduce_fn"],
        init_fn: Any = defaults["init_fn"],
    ) -> bool:
        captures = vars(self).get("__captures__")
        if captures is None:
            return native_sow(self, variable_type, name, value, reduce_fn, init_fn)  # type: ignore[no-any-return]
        variable_type = _variable_type(variable_type)
        for variable in captures:
            if type(variable) is variable_type:
                stored = raw_value(variable)
                stored[name] = reduce_fn(stored[name] if name in stored else init_fn(), value)
                return True
        return False

    @functools.wraps(native_perturb)
    def perturb(self: Any, name: str, value: Any, variable_type: Any = None) -> Any:
        captures = vars(self).get("__captures__")
        if captures is None:
            if variable_type is None:
                return native_perturb(self, name, value)
            return native_perturb(self, name, value, variable_type)
        variable_type = _variable_type(variable_type or _versions.import_nnx().Perturbation)
        for variable in captures:
            if type(variable) is variable_type:
                stored = raw_value(variable)
                if name not in stored:
                    stored[name] = jax.tree.map(jax.numpy.zeros_like, value)
                return stored[name] + value
        return value

    return {"sow": sow, "perturb": perturb}


# --------------------------------------------------------------------------- patch


def _parameters(function: Any) -> Mapping[str, Any]:
    import inspect

    return inspect.signature(function).parameters


def _set(cls: type, name: str, value: Any) -> None:
    if isinstance(value, types.FunctionType) and not hasattr(value, "__wrapped__"):
        # named as the class's own method, so that its errors read as flax 0.12's
        value.__name__, value.__qualname__ = name, f"{cls.__name__}.{name}"
    _patched.append((cls, name, vars(cls).get(name, _ABSENT)))
    setattr(cls, name, value)


def _add_missing(cls: type | None, members: Mapping[str, Any]) -> None:
    if cls is None:
        return
    for name, member in members.items():
        if not hasattr(cls, name):
            _set(cls, name, member)


def patch() -> None:
    """Adds flax 0.12's members to the installed flax's classes where they lack them."""
    if _patched:
        return
    nnx = _versions.import_nnx()
    _add_missing(nnx.Variable, _variable_members())
    if _native_key() != "out_sharding":  # flax 0.12.4's Variable reads it from its metadata
        _add_missing(nnx.Variable, {"out_sharding": property(_out_sharding, doc=_OUT_DOC)})
    for name, wrapper in _variable_wrappers(nnx.Variable).items():
        _set(nnx.Variable, name, wrapper)
    for layer, arguments in LAYER_METADATA.items():
        cls = getattr(nnx, layer)
        native = vars(cls)["__init__"]
        missing = {a: p for a, p in arguments.items() if a not in _parameters(native)}
        if missing:
            _set(cls, "__init__", _with_metadata(native, missing))
    _patch_layer_calls(nnx)
    for cls, set_view in (
        (nnx.BatchNorm, _batch_norm_set_view),
        (nnx.Dropout, _dropout_set_view),
        (nnx.MultiHeadAttention, _attention_set_view),
    ):
        _add_missing(cls, {"set_view": set_view})
    _add_missing(getattr(nnx, "Dict", None), _dict_members())  # flax 0.11 has none: the shim's
    _add_missing(nnx.StateAxes, _state_axes_members())
    _add_missing(nnx.DiffState, {"map_prefix": _map_prefix})
    if not _versions.feature("SOW_CAPTURES"):
        for name, member in _capturing_members(nnx.Module).items():
            _set(nnx.Module, name, member)
    if "exact" not in _parameters(nnx.PathContains):
        for name, member in _path_contains_members(nnx.PathContains).items():
            _set(nnx.PathContains, name, member)


def restore() -> None:
    """Puts back what :func:`patch` changed."""
    while _patched:
        cls, name, previous = _patched.pop()
        if previous is _ABSENT:
            delattr(cls, name)
        else:
            setattr(cls, name, previous)


def patched() -> bool:
    """Whether :func:`patch` is in effect."""
    return bool(_patched)
