"""flax 0.12's ``nnx.Pytree`` for flax 0.10, which has none.

A subclass of it is a jax pytree as flax 0.12.8 makes one (``pytree=False`` opts out): each
attribute is data or static, which its first value decides (an array, a Variable, an NNX object
or an instance of a registered data type is data), ``nnx.data(value)``/``nnx.static(value)``
decide explicitly, and so do ``Data``/``Static`` annotations and dataclass fields marked
``static``. Data attributes are the children, in the order of their names; static ones go
into the tree definition. The same checks as flax 0.12.8 refuse data in a static attribute.

It is built on flax 0.10's own ``Object``: the graph (``nnx.split``, ``nnx.state``, the
transforms) sees every attribute, as for every flax 0.10 object, and the trace-level check on
assignment is flax's. ``isinstance(x, nnx.Pytree)`` stays true for every NNX object (flax
0.10's Modules, Rngs, Optimizers), as it is on flax 0.12; those remain flax 0.10's own kind of
object, which jax treats as a leaf.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Final

import jax

from nnx_compat import _added, _containers, _versions

__all__ = ["Pytree"]

_nnx: Any = _versions.import_nnx()
_Object: Final[Any] = _nnx.Object
#: flax 0.10's record of an object's trace level, recreated on each unflatten (flax 0.12's
#: ``_pytree__state`` is a data attribute without leaves, as this one is).
_STATE: Final = "_object__state"
_NODES: Final = "_pytree__nodes"
#: The markers of flax 0.10's own ``nnx.Static`` (``nnx.dataclasses.StaticTag``).
_STATIC_TAGS: Final = (
    "__static__",
    getattr(getattr(_nnx, "dataclasses", None), "StaticTag", None),
)


def _derives(subclass: Any, base: type) -> bool:
    return base in getattr(subclass, "__mro__", ())


def _annotated(cls: type) -> dict[str, bool]:
    """The attributes a class marks with ``Data[...]``/``Static[...]``: name -> is data."""
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except (NameError, TypeError):
        hints = dict(vars(cls).get("__annotations__", {}))
    marked = {}
    for name, hint in hints.items():
        tags = getattr(hint, "__metadata__", ())
        if "__data__" in tags:
            marked[name] = True
        elif any(tag is not None and tag in tags for tag in _STATIC_TAGS):
            marked[name] = False
    return marked


class _PytreeMeta(type(_Object)):  # type: ignore[misc]
    """flax 0.10's Object metaclass; ``Pytree`` itself matches every NNX object."""

    def __instancecheck__(cls, instance: Any) -> bool:
        if cls is Pytree:
            return _derives(type(instance), _Object)
        return super().__instancecheck__(instance)  # type: ignore[no-any-return]

    def __subclasscheck__(cls, subclass: Any) -> bool:
        if cls is Pytree:
            return _derives(subclass, _Object)
        return super().__subclasscheck__(subclass)  # type: ignore[no-any-return]

    def _object_meta_construct(cls, self: Any, *args: Any, **kwargs: Any) -> None:
        vars(self)[_NODES] = cls._pytree__nodes
        super()._object_meta_construct(self, *args, **kwargs)
        if cls._pytree__is_pytree:
            missing = {
                name: _added.is_data(value)
                for name, value in vars(self).items()
                if name not in vars(self)[_NODES]
            }
            if missing:
                vars(self)[_NODES] = _updated(vars(self)[_NODES], missing)
            check(self)


def _updated(nodes: Mapping[str, bool], changes: Mapping[str, bool]) -> Any:
    return _nnx.graph.HashableMapping({**nodes, **changes}, copy=False)


class Pytree(_Object, metaclass=_PytreeMeta, pytree=False):  # type: ignore[misc,call-arg]
    """flax 0.12's ``nnx.Pytree`` (see the module's documentation)."""

    _pytree__is_pytree: ClassVar[bool] = False
    _pytree__nodes: ClassVar[Mapping[str, bool]] = _updated({}, {_STATE: True})

    def __init_subclass__(cls, *, pytree: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(pytree=False, **kwargs)  # flax 0.10's graph registration
        if slots := getattr(cls, "__slots__", ()):
            raise TypeError(
                "Pytree currently does not support __slots__, "
                f"found __slots__={slots} in '{cls.__name__}'."
            )
        cls._pytree__is_pytree = pytree
        nodes = {**cls._pytree__nodes, **_annotated(cls)}
        for name, value in vars(cls).items():
            if isinstance(value, dataclasses.Field) and "static" in value.metadata:
                static = value.metadata["static"]
                if not isinstance(static, bool):
                    raise ValueError(
                        f"Invalid 'static' metadata for attribute '{cls.__name__}.{name}': "
                        f"expected bool, got {type(static).__name__}."
                    )
                if name in nodes and nodes[name] == static:
                    raise ValueError(
                        f"Conflicting pytree annotation for attribute '{cls.__name__}.{name}': "
                        f"previously registered as {'static' if static is False else 'data'}, "
                        f"but found nnx.{'static' if static else 'data'}(...) annotation."
                    )
                nodes[name] = not static
        cls._pytree__nodes = _updated({}, nodes)
        if pytree:
            jax.tree_util.register_pytree_with_keys(
                cls,
                flatten_with_keys=cls._pytree__flatten_with_paths,
                unflatten_func=cls._pytree__unflatten,
                flatten_func=cls._pytree__flatten,
            )

    def _setattr(self, name: str, value: Any) -> None:
        self._check_valid_context(
            lambda: f"Cannot mutate '{type(self).__name__}' from different trace level"
        )
        marks = _containers.take_marks()
        explicit = None
        if marks and marks[-1][0] is value:
            explicit = marks.pop()[1]
        if type(self)._pytree__is_pytree and not name.startswith(("_object__", "_pytree__")):
            data = _added.is_data(value) if explicit is None else explicit
            _check_value(self, name, value, data, explicit is not None, _inside(marks, value))
            nodes = self.__dict__.get(_NODES, type(self)._pytree__nodes)
            if name not in nodes or (explicit is not None and nodes[name] != data):
                self.__dict__[_NODES] = _updated(nodes, {name: data})
        object.__setattr__(self, name, value)

    def _graph_node_init(self, attributes: Iterable[tuple[str, Any]]) -> None:
        self.__dict__.update(attributes)
        self.__dict__.setdefault(_NODES, type(self)._pytree__nodes)

    # -------------------------------------------------------------------- the jax pytree

    def _pytree__split(self) -> tuple[list[tuple[str, Any]], tuple[Any, ...]]:
        nodes = self.__dict__.get(_NODES, type(self)._pytree__nodes)
        data: list[tuple[str, Any]] = []
        static_keys: list[str] = []
        static_values: list[Any] = []
        for name, value in sorted(self.__dict__.items()):
            if nodes.get(name, False):
                data.append((name, value))
            else:
                static_keys.append(name)
                static_values.append(value)
        keys = tuple(name for name, _ in data)
        return data, (keys, tuple(static_keys), tuple(static_values))

    def _pytree__flatten_with_paths(self) -> tuple[list[tuple[Any, Any]], tuple[Any, ...]]:
        data, aux = self._pytree__split()
        return [(jax.tree_util.GetAttrKey(name), value) for name, value in data], aux

    def _pytree__flatten(self) -> tuple[list[Any], tuple[Any, ...]]:
        data, aux = self._pytree__split()
        return [value for _, value in data], aux

    @classmethod
    def _pytree__unflatten(cls, aux: tuple[Any, ...], children: Iterable[Any]) -> Any:
        keys, static_keys, static_values = aux
        obj = object.__new__(cls)
        obj.__dict__.update(zip(keys, children, strict=True))
        obj.__dict__.update(zip(static_keys, static_values, strict=True))
        return obj


def _inside(marks: list[tuple[Any, bool]], value: Any) -> set[str]:
    """The ``nnx.data(v)``/``nnx.static(v)`` marks whose value is inside ``value``."""
    leaves = jax.tree.leaves(value, is_leaf=_added.is_data)
    return {
        "data" if is_data else "static"
        for marked, is_data in marks
        if any(leaf is marked for leaf in leaves)
    }


def _tags(value: Any) -> set[str]:
    """The ``nnx.data``/``nnx.static`` keyword-form marks inside a value."""
    return {
        "static" if leaf.metadata["static"] else "data"
        for leaf in jax.tree.leaves(value, is_leaf=_added.is_data)
        if isinstance(leaf, dataclasses.Field) and "nnx_value" in leaf.metadata
    }


def _check_value(
    pytree: Any,
    name: str,
    value: Any,
    data: bool | None,
    explicit: bool,
    marked: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    """flax 0.12.8's checks of a value for an attribute (``data`` None: after ``__init__``).

    Raises:
        ValueError: data for a static attribute, data under ``nnx.static``, a mark inside a
            value.
    """
    nodes = vars(pytree).get(_NODES, type(pytree)._pytree__nodes)
    is_data_now = nodes.get(name, False)
    kind = f"Pytree type '{type(pytree)}'"
    if data and not explicit and name in vars(pytree) and not is_data_now:
        raise ValueError(
            f"Cannot assign data value of type '{type(value)}' to static attribute '{name}' of "
            f"{kind}. To override the status explicitly wrap the value with nnx.data on "
            f"assignment:\n\n  _.{name} = nnx.data(...)\n\n"
        )
    if _added.has_data(value):
        if data is None:
            if not is_data_now:
                raise ValueError(
                    f"Found unexpected data on value of type {type(value)} in static attribute "
                    f"'{name}' of {kind}. This is an error starting from Flax version 0.12.0.\n"
                    f"Wrap the value with nnx.data on assignment (_.{name} = nnx.data(...)), use "
                    "nnx.List(...) or nnx.Dict(...) for a list or dict, or declare the class "
                    "with pytree=False."
                )
        elif not data and explicit:
            raise ValueError(
                f"Found data in value of type '{type(value)}' annotated with nnx.static(...) "
                f"when setting attribute '{name}' of {kind}."
            )
        elif not data and not is_data_now:
            raise ValueError(
                f"Found data on value of type '{type(value)}' assigned to static attribute "
                f"'{name}' of {kind}. Static attributes should not contain data values: remove "
                f"them, wrap the value with nnx.data on assignment (_.{name} = nnx.data(...)), "
                "use nnx.List(...) or nnx.Dict(...) for a list or dict, or declare the class "
                "with pytree=False."
            )
    if tags := _tags(value) | marked:
        raise ValueError(
            f"Found unexpected tags {tags} on attribute '{type(pytree).__name__}.{name}'. "
            "Values from nnx.data(...) and\nnnx.static(...) should be assigned to nnx.Pytree "
            "attributes directly, they should not be inside other structures. Got value of "
            f"type '{type(value)}' on Pytree of type '{type(pytree)}'."
        )


def check(pytree: Any) -> None:
    """flax 0.12's ``nnx.check_pytree`` for an instance of :class:`Pytree`'s subclasses."""
    for name, value in vars(pytree).items():
        if not name.startswith(("_object__", "_pytree__")):
            _check_value(pytree, name, value, None, False)
