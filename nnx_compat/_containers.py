"""``nnx.List``, ``nnx.Dict`` and ``nnx.data`` on every flax.

flax 0.12.0 requires them for lists and dicts of Modules or arrays, but ``nnx.List`` exists only
from 0.12.0, ``nnx.Dict`` in 0.10 and 0.12 (not 0.11) and ``nnx.data`` from 0.11.0. Where the
installed flax has one, the namespace serves flax's own; otherwise a backport:

* ``List`` (0.10, 0.11): a Module holding its items as attributes ``"0"``, ``"1"``, ... whose
  graph keys are the integers, as flax 0.12's: ``nnx.state`` paths are ``layers/0/kernel``.
* ``Dict`` (0.11): a Module holding its items as attributes, as flax 0.10's and 0.12's.
* ``data`` (0.10): returns its value (0.10 treats every attribute as part of the graph), or a
  ``dataclasses.field`` for the keyword form.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import threading
from collections.abc import Iterable, Iterator, MutableMapping, MutableSequence
from typing import Any, Final, TypeVar, overload

from nnx_compat import _versions

__all__ = ["Dict", "List", "data", "mark", "take_marks"]

_nnx: Any = _versions.import_nnx()
_NativeModule: Final[type] = _nnx.Module
A = TypeVar("A")


def _key(key: Any) -> Any:
    """A graph key as flax 0.12's List has them: the integer for an item attribute."""
    return int(key) if isinstance(key, str) and key.isdigit() else key


def _sort_key(item: tuple[Any, Any]) -> tuple[bool, Any]:
    key = item[0]
    return (isinstance(key, str), key)


class _List(_NativeModule, MutableSequence[A]):  # type: ignore[misc]
    """A Module that is a mutable sequence (flax 0.12's ``nnx.List``, backported)."""

    def __init__(self, iterable: Iterable[A] | None = None, /) -> None:
        self._length = 0
        for value in iterable if iterable is not None else ():
            self.append(value)

    def __len__(self) -> int:
        return int(vars(self)["_length"])

    def _index(self, index: int) -> int:
        if not isinstance(index, int):
            raise TypeError(f"nnx.List indices must be integers or slices, not {type(index)}")
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError(f"nnx.List index {index} out of range for length {len(self)}")
        return position

    @overload
    def __getitem__(self, index: int) -> A: ...
    @overload
    def __getitem__(self, index: slice) -> list[A]: ...
    def __getitem__(self, index: int | slice) -> A | list[A]:
        if isinstance(index, slice):
            return [getattr(self, str(i)) for i in range(len(self))[index]]
        return getattr(self, str(self._index(index)))  # type: ignore[no-any-return]

    @overload
    def __setitem__(self, index: int, value: A) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Iterable[A]) -> None: ...
    def __setitem__(self, index: int | slice, value: Any) -> None:
        if isinstance(index, slice):
            positions, values = range(len(self))[index], list(value)
            if len(positions) != len(values):
                raise ValueError(
                    f"nnx.List slice assignment needs {len(positions)} values, got {len(values)}"
                )
            for position, item in zip(positions, values, strict=True):
                setattr(self, str(position), item)
        else:
            setattr(self, str(self._index(index)), value)

    def __delitem__(self, index: int | slice) -> None:
        positions = range(len(self))[index] if isinstance(index, slice) else [self._index(index)]
        for position in sorted(positions, reverse=True):
            for i in range(position, len(self) - 1):
                setattr(self, str(i), getattr(self, str(i + 1)))
            delattr(self, str(len(self) - 1))
            self._length = len(self) - 1

    def insert(self, index: int, value: A) -> None:
        position = max(0, min(len(self), index + len(self) if index < 0 else index))
        for i in range(len(self), position, -1):
            setattr(self, str(i), getattr(self, str(i - 1)))
        setattr(self, str(position), value)
        self._length = len(self) + 1

    def __iter__(self) -> Iterator[A]:
        return (getattr(self, str(i)) for i in range(len(self)))

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    # graph keys: the items' integers, sorted after nothing and before the string attributes
    def _graph_node_flatten(self) -> Any:
        nodes, node_type = super()._graph_node_flatten()
        return sorted(((_key(k), v) for k, v in nodes), key=_sort_key), node_type

    def _graph_node_set_key(self, key: Any, value: Any) -> None:
        super()._graph_node_set_key(str(key) if isinstance(key, int) else key, value)

    def _graph_node_pop_key(self, key: Any) -> Any:
        return super()._graph_node_pop_key(str(key) if isinstance(key, int) else key)

    def _graph_node_init(self, attributes: Iterable[tuple[Any, Any]]) -> None:
        super()._graph_node_init((str(k) if isinstance(k, int) else k, v) for k, v in attributes)


class _Dict(_NativeModule, MutableMapping[str, A]):  # type: ignore[misc]
    """A Module that is a mutable mapping (flax 0.10's and 0.12's ``nnx.Dict``, backported)."""

    def __init__(self, *args: Any, **kwargs: A) -> None:
        for name, value in dict(*args, **kwargs).items():
            setattr(self, name, value)

    def __getitem__(self, key: str) -> A:
        try:
            return getattr(self, key)  # type: ignore[no-any-return]
        except AttributeError:
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: A) -> None:
        setattr(self, key, value)

    def __delitem__(self, key: str) -> None:
        try:
            delattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        return (k for k in vars(self) if not k.startswith(("_pytree__", "_object__")))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


class _Marks(threading.local):
    def __init__(self) -> None:
        self.pending: collections.deque[tuple[Any, bool]] = collections.deque(maxlen=16)


_marks = _Marks()


def mark(value: A, is_data: bool) -> A:
    """Records that ``value`` came from ``nnx.data(value)`` (``is_data``) or
    ``nnx.static(value)`` on a flax whose own calls return no wrapper, for the next assignment
    to a backported ``nnx.Pytree``'s attribute (:func:`take_marks`); returns ``value``."""
    _marks.pending.append((value, is_data))
    return value


def take_marks() -> list[tuple[Any, bool]]:
    """The marks recorded since the last call, oldest first (see :func:`mark`).

    ``self.x = nnx.data(v)`` evaluates ``data`` right before the assignment, so the newest
    mark is the assigned value's when it came from there; older ones are marks inside it
    (``[nnx.data(1)]``) or left by code that assigned them elsewhere.
    """
    marks = list(_marks.pending)
    _marks.pending.clear()
    return marks


def _data(value: Any = dataclasses.MISSING, /, **kwargs: Any) -> Any:
    """Marks an attribute as pytree data (flax 0.11's ``nnx.data``, backported to 0.10).

    flax 0.10 Modules are not pytrees and put every attribute in the graph, so the value is
    returned as it is (recorded for a backported ``nnx.Pytree``, see :func:`mark`); the keyword
    form returns a ``dataclasses.field`` marked as data, as flax 0.12's does.
    """
    if value is not dataclasses.MISSING:
        if kwargs:
            raise TypeError(
                "nnx.data() takes either one positional value or dataclass field keywords, "
                "not both."
            )
        return mark(value, True)
    return _data_field(**kwargs)


def _data_field(**kwargs: Any) -> Any:
    """flax 0.12's ``nnx.data(**field_keywords)``: a dataclass field whose metadata says data.

    Raises:
        ValueError: a ``static`` key in ``metadata``.
    """
    metadata = dict(kwargs.pop("metadata", None) or {})
    if "static" in metadata:
        raise ValueError("Cannot use 'static' key in metadata argument for nnx.data.")
    missing = importlib.import_module("flax.typing").MISSING
    return dataclasses.field(**kwargs, metadata={"nnx_value": missing, **metadata, "static": False})


List: Any = _nnx.List if _versions.feature("HAS_LIST") else _List  # flax 0.12.0
Dict: Any = _nnx.Dict if _versions.feature("HAS_DICT") else _Dict  # 0.10 and 0.12, not 0.11


# flax's own, taken before install() can replace the attribute with what this module serves
_native_data: Any = getattr(_nnx, "data", None)


def _data_keywords(value: Any = dataclasses.MISSING, /, **kwargs: Any) -> Any:
    """flax 0.11's ``nnx.data(value)``, and flax 0.12.1's keyword form, which it lacks."""
    if value is not dataclasses.MISSING:
        if kwargs:
            raise TypeError(
                "nnx.data() accepts either a single positional argument or keyword arguments, "
                "but not both."
            )
        return _native_data(value)
    return _data_field(**kwargs)


data: Any = (  # flax 0.11.0; its keyword form 0.12.1
    (_nnx.data if _versions.feature("DATA_FIELD") else _data_keywords)
    if _versions.feature("HAS_DATA")
    else _data
)
