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

import dataclasses
import threading
from collections.abc import Iterable, Iterator, MutableMapping, MutableSequence
from typing import Any, Final, TypeVar, overload

from nnx_compat import _versions

__all__ = ["Dict", "List", "data", "is_explicit_data"]

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


class _Explicit(threading.local):
    value: Any = None


_explicit = _Explicit()


def _data(value: Any = dataclasses.MISSING, /, **kwargs: Any) -> Any:
    """Marks an attribute as pytree data (flax 0.11's ``nnx.data``, backported to 0.10).

    flax 0.10 Modules are not pytrees and put every attribute in the graph, so the value is
    returned as it is (the keyword form returns a ``dataclasses.field``). The namespace's
    ``Module`` sees that the value it is assigned came from here, and does not warn about it.
    """
    if value is not dataclasses.MISSING:
        if kwargs:
            raise TypeError(
                "nnx.data() takes either one positional value or dataclass field keywords, "
                "not both."
            )
        _explicit.value = value
        return value
    return dataclasses.field(**kwargs)


def is_explicit_data(value: Any) -> bool:
    """Whether ``value`` is what the last backported ``nnx.data(value)`` call returned (0.10).

    ``self.x = nnx.data([...])`` evaluates ``data`` right before the assignment; the mark is
    consumed by that assignment. flax 0.11+'s own ``nnx.data`` returns a wrapper instead.
    """
    if _explicit.value is not value:
        return False
    _explicit.value = None
    return True


List: Any = _nnx.List if _versions.feature("HAS_LIST") else _List  # flax 0.12.0
Dict: Any = _nnx.Dict if _versions.feature("HAS_DICT") else _Dict  # 0.10 and 0.12, not 0.11
data: Any = _nnx.data if _versions.feature("HAS_DATA") else _data  # flax 0.11.0
