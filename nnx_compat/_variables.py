"""The Variable API both ways, on flax's own ``nnx.Variable`` class.

Native layers (``nnx.Linear``, ...) create native Variables, so a subclass in the namespace
could not give their parameters the other generation's API. Instead, importing
``nnx_compat.nnx`` patches the upstream ``Variable`` class, by one rule: *add what is missing,
and replace an upstream warning or error for a legacy form by nnx_compat's warning; never add a
warning or an error that the installed flax does not give.* On each generation:

* flax 0.10/0.11: ``get_value()``/``set_value()`` are added (``variable[...]`` is native);
  ``out_sharding=`` (and ``sharding_names=`` on 0.10) is stored under the installed flax's key.
* flax 0.11: ``variable.value = other_variable`` (0.10's model surgery) takes the other's value
  with a ``variable-value-variable`` warning, where flax raises.
* flax 0.11+: ``variable.sharding`` where flax raises (a traced value) gives the partition
  names, as 0.10 did, with a ``variable-sharding-traced`` warning (see ``_sharding``).
* flax 0.11+: 0.10's ``Param.state(value)`` and ``state.to_variable()`` (VariableState's API)
  build and copy Variables, with a ``variable-state`` warning.
* flax 0.11+: the mutation check of a Variable first tells :func:`on_first_mutation`'s
  watchers (the copies that ``nnx.merge`` makes of a captured state, see ``_state``).
* flax 0.12.1: ``hash(variable)`` (sets, dict keys) is the identity hash again, with a
  ``variable-hash`` warning (``==`` keeps flax 0.12's value comparison), and ``variable.foo = x``
  for a name that is not an attribute sets metadata, with a ``variable-metadata-attribute``
  warning, where flax raises.
* flax 0.12: ``.value`` warns once per call site, at the user's line, as ``variable-value``
  (flax warns on every access); ``variable += x`` and the other in-place operators work again
  as ``variable[...] += x`` with a ``variable-inplace-op`` warning (flax raises); ``sharding=``/
  ``sharding_names=`` and sharding annotations made with no mesh work as on 0.10 (see
  ``_sharding``).

:func:`restore` puts every attribute back exactly (used by the tests).
"""

from __future__ import annotations

import functools
import operator
import threading
import warnings
from collections.abc import Callable
from typing import Any, Final

import jax
import numpy as np

from nnx_compat import _sharding, _versions, _warnings

__all__ = ["Variable", "on_first_mutation", "patch", "patched", "restore"]

_nnx: Any = _versions.import_nnx()
Variable: Any = _nnx.Variable

_ABSENT: Final[Any] = object()
_MISSING: Final[Any] = object()
_lock = threading.Lock()
_saved: dict[str, Any] = {}  # attribute -> what vars(Variable) held before, or _ABSENT

#: The in-place operators flax 0.12.0 made raise: symbol and the operation each performs.
_INPLACE: Final[dict[str, tuple[str, Callable[[Any, Any], Any]]]] = {
    "__iadd__": ("+=", operator.iadd),
    "__isub__": ("-=", operator.isub),
    "__imul__": ("*=", operator.imul),
    "__imatmul__": ("@=", operator.imatmul),
    "__itruediv__": ("/=", operator.itruediv),
    "__ifloordiv__": ("//=", operator.ifloordiv),
    "__imod__": ("%=", operator.imod),
    "__ipow__": ("**=", operator.ipow),
    "__ilshift__": ("<<=", operator.ilshift),
    "__irshift__": (">>=", operator.irshift),
    "__iand__": ("&=", operator.iand),
    "__ixor__": ("^=", operator.ixor),
    "__ior__": ("|=", operator.ior),
}


# --------------------------------------------------------------------------- flax 0.10/0.11


def _get_value(self: Any, *, index: Any = _MISSING) -> Any:
    """The variable's value (``variable[index]`` with ``index=``); flax 0.12's API."""
    value = self.value
    return value if index is _MISSING else value[index]


def _set_value(self: Any, value: Any, *, index: Any = _MISSING) -> None:
    """Sets the variable's value (``variable[index] = value`` with ``index=``); flax 0.12's API."""
    if index is _MISSING:
        self.value = value
    else:
        self[index] = value


def _value_taking_variables(native: property) -> property:
    """flax 0.11's ``value`` property, whose setter takes a Variable's value for a Variable."""
    setter = native.fset
    assert setter is not None

    def fset(self: Any, value: Any) -> None:
        if isinstance(value, Variable):
            _warnings.warn_legacy("variable-value-variable", detail=f"a {type(value).__name__}")
            value = value.get_value() if hasattr(value, "get_value") else value.value
        setter(self, value)

    return property(native.fget, fset, native.fdel, native.__doc__)


# --------------------------------------------------------------------------- flax 0.11+

#: ``id(variable) -> (variable, its group)``: watched Variables, held so that no id is reused
#: while it is watched; a group is the list of its ids and the callback to run.
_watched: dict[int, tuple[Any, tuple[list[int], Callable[[], None]]]] = {}


def on_first_mutation(variables: list[Any], callback: Callable[[], None]) -> None:
    """Runs ``callback`` once, when the first of ``variables`` is about to be mutated.

    Watches end with their trace: groups whose Variables belong to a finished trace (which
    can no longer be mutated) are dropped here.
    """
    with _lock:
        for key in [k for k, (v, _) in _watched.items() if not v._trace_state.is_valid()]:
            _watched.pop(key, None)
        group = ([id(v) for v in variables], callback)
        for variable in variables:
            _watched[id(variable)] = (variable, group)


def _notify(variable: Any) -> None:
    with _lock:
        entry = _watched.get(id(variable))
        if entry is None or entry[0] is not variable:
            return
        ids, callback = entry[1]
        for key in ids:
            _watched.pop(key, None)
    callback()


def _watching(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _watched:
            _notify(self)
        return original(self, *args, **kwargs)

    return method


# --------------------------------------------------------------------------- flax 0.12


def _value_property(*, take_variables: bool) -> property:
    """``value`` warning at the user's line; with ``take_variables`` (flax 0.12.1-0.12.5, which
    reject a Variable as a value), its setter also takes a Variable's value, as flax 0.10."""

    def fget(self: Any) -> Any:
        if _warnings.called_from_user():
            _warnings.warn_legacy("variable-value")
        return self.get_value()

    def fset(self: Any, value: Any) -> None:
        if _warnings.called_from_user():
            _warnings.warn_legacy("variable-value")
        if take_variables and isinstance(value, Variable):
            _warnings.warn_legacy("variable-value-variable", detail=f"a {type(value).__name__}")
            value = value.get_value()
        self.set_value(value)

    return property(fget, fset, doc="The value (deprecated: use ``variable[...]``).")


def _inplace(name: str, symbol: str, op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:

    def method(self: Any, other: Any) -> Any:
        if _warnings.called_from_user():
            _warnings.warn_legacy("variable-inplace-op", detail=f"variable {symbol} x")
        if isinstance(other, Variable):
            other = other.get_value()
        raw = self.get_raw_value() if hasattr(self, "get_raw_value") else self.raw_value
        if isinstance(raw, jax.Array | np.ndarray):  # (get_raw_value: flax 0.12.1)
            self[...] = op(self[...], other)  # exactly ``variable[...] op= other``
        else:
            self.set_value(op(self.get_value(), other))
        return self

    method.__name__ = method.__qualname__ = name
    return method


def _wrap_init(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def __init__(self: Any, value: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs or isinstance(value, _sharding._VariableMetadata):
            value, kwargs = _sharding.adapt(value, kwargs)
        try:
            original(self, value, *args, **kwargs)
        except ValueError as error:
            retry = _sharding.unsharded(error, value, kwargs)
            if retry is None:
                raise
            original(self, value, *args, **retry)
        # before flax 0.12.0 (which shards itself), nnx_compat shards where asked; an
        # annotation comes with keywords or a VariableMetadata
        if not _sharding._EAGER and (kwargs or isinstance(value, _sharding._VariableMetadata)):
            _sharding.shard_when_created(self)

    return __init__


class _LegacyStateConstructor:
    """flax 0.10's ``Variable.state`` classmethod (``nnx.Param.state(value, **metadata)``, a
    state leaf) where states hold Variables: it builds ``cls(value, **metadata)`` with a
    ``variable-state`` warning. Read on an instance it is absent, so a metadata entry named
    ``state`` reads as before (flax's ``__getattr__``)."""

    def __get__(self, instance: Any, owner: type) -> Callable[..., Any]:
        if instance is not None:
            raise AttributeError("state")

        def state(value: Any, **metadata: Any) -> Any:
            _warnings.warn_legacy("variable-state", detail=f"nnx.{owner.__name__}.state(value)")
            return owner(value, **metadata)

        return state


def _to_variable(self: Any) -> Any:
    """flax 0.10's ``VariableState.to_variable()``: a new Variable with the same value and
    metadata (flax 0.11's ``to_state()``)."""
    _warnings.warn_legacy("variable-state", detail="state.to_variable()")
    return self.to_state()


def _legacy_type(self: Any) -> type:
    """flax 0.10's ``VariableState.type``, the Variable's type, where flax 0.11 warns about it
    on every read: the ``variable-state`` warning at the user's line instead."""
    if _warnings.called_from_user():
        _warnings.warn_legacy("variable-state", detail="state.type (use type(variable))")
    return type(self)


def _type_warns() -> bool:
    """Whether flax's own ``Variable.type`` warns when read (flax 0.11; 0.10 and 0.12 do not)."""
    native = vars(Variable).get("type")
    if not isinstance(native, property) or native.fget is None:
        return False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        native.fget(Variable(0))
    ours = _warnings.NNXCompatDeprecationWarning
    return any(
        issubclass(w.category, DeprecationWarning) and not issubclass(w.category, ours)
        for w in caught
    )


def _identity_hash(self: Any) -> int:
    """flax 0.10's hash of a Variable, its identity: Variables as dict keys and set members."""
    _warnings.warn_legacy("variable-hash", detail=type(self).__name__)
    return object.__hash__(self)


def _metadata_setattr(original: Callable[..., None]) -> Callable[..., None]:
    """Wraps ``Variable.__setattr__`` (flax 0.12): where flax refuses ``variable.foo = x`` for a
    name that is not an attribute (flax 0.12.1), it is set as metadata, as flax 0.10 did."""

    @functools.wraps(original)
    def __setattr__(self: Any, name: str, value: Any) -> None:
        try:
            original(self, name, value)
        except AttributeError as error:
            refused = str(error).startswith("Cannot set attribute") and not name.startswith("_")
            if not refused or not _warnings.called_from_user():
                raise  # flax's own code keeps flax's error
            _warnings.warn_legacy(
                "variable-metadata-attribute", detail=f"variable.set_metadata({name}=...)"
            )
            self.set_metadata(name, value)

    return __setattr__


def _functional_setitem(self: Any, key: Any, value: Any) -> None:
    """``variable[key] = x`` as flax 0.10.7+ does it: a jax array value is replaced by
    ``value.at[key].set(x)`` (flax 0.10.0-0.10.6 assigned into it, which jax refuses)."""
    import jax

    current = self.value
    if isinstance(current, jax.Array):
        self.value = current.at[key].set(value)
    else:
        current[key] = value


# --------------------------------------------------------------------------- patch


def _replacements() -> dict[str, Any]:
    out: dict[str, Any] = {"__init__": _wrap_init(vars(Variable)["__init__"])}
    if _versions.feature("VARIABLE_UPDATE_CHECK"):  # flax 0.12.1
        out["_check_can_update"] = _watching(vars(Variable)["_check_can_update"])
        # flax 0.12.1 refuses metadata set as an attribute; the wrapper acts only on that error
        out["__setattr__"] = _metadata_setattr(vars(Variable)["__setattr__"])
    if _versions.feature("VARIABLE_UNHASHABLE"):  # flax 0.12.1: __eq__ compares values
        out["__hash__"] = _identity_hash
    elif _versions.feature("STATE_SHARES_VARIABLES"):  # flax 0.11
        for name in ("__setattr__", "__setitem__"):
            out[name] = _watching(vars(Variable)[name])
    if _versions.sharding_metadata_key() != "sharding" and "__getattr__" in vars(Variable):
        # flax 0.11: variable.sharding is the array's, and raises on a tracer
        out["__getattr__"] = _sharding.traced_sharding(vars(Variable)["__getattr__"])
    if _versions.feature("STATE_SHARES_VARIABLES"):  # flax 0.11 removed VariableState
        if not hasattr(Variable, "state"):
            out["state"] = _LegacyStateConstructor()
        if not hasattr(Variable, "to_variable"):
            out["to_variable"] = _to_variable
        if _type_warns():  # flax 0.11 only
            out["type"] = property(_legacy_type, doc="The Variable's type (flax 0.10's API).")
    if not _versions.feature("VARIABLE_SETITEM_FUNCTIONAL"):  # flax 0.10.0-0.10.6
        out["__setitem__"] = _functional_setitem
    if not _versions.feature("VARIABLE_GET_VALUE"):  # flax 0.12.1 added them
        out["get_value"] = _get_value
        out["set_value"] = _set_value
    takes_variables = _versions.feature("VARIABLE_VALUE_REJECTS_VARIABLE")  # until 0.12.6
    if _versions.feature("VARIABLE_VALUE_WARNS"):  # flax 0.12.1
        out["value"] = _value_property(take_variables=takes_variables)
    elif takes_variables:  # flax 0.11
        out["value"] = _value_taking_variables(vars(Variable)["value"])
    if _versions.feature("VARIABLE_INPLACE_RAISES"):  # flax 0.12.0
        for name, (symbol, op) in _INPLACE.items():
            if name in vars(Variable):
                out[name] = _inplace(name, symbol, op)
    return out


def patch() -> None:
    """Applies the patches to ``flax.nnx.Variable``. Idempotent and thread-safe."""
    with _lock:
        if _saved:
            return
        # the probes that look at Variable must see upstream's class: evaluate them first
        replacements = _replacements()
        for name, new in replacements.items():
            _saved[name] = vars(Variable).get(name, _ABSENT)
            setattr(Variable, name, new)


def restore() -> None:
    """Puts every attribute of ``flax.nnx.Variable`` that :func:`patch` changed back."""
    with _lock:
        for name, original in _saved.items():
            if original is _ABSENT:
                delattr(Variable, name)
            else:
                setattr(Variable, name, original)
        _saved.clear()


def patched() -> bool:
    """Whether :func:`patch` is in effect."""
    return bool(_saved)
