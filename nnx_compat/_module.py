"""``nnx.Module`` that accepts flax 0.10's plain list, tuple and dict attributes on every flax.

flax 0.12.0 made Modules strict about attributes: a plain list or dict that holds Modules,
Variables or arrays raises ``Found data on value of type '<class 'list'>' assigned to static
attribute ...``; the fixes are ``nnx.List``, ``nnx.Dict`` or ``nnx.data(...)``.

Where the installed flax raises (0.12+), subclasses of this ``Module`` keep such containers as
they are, marked as pytree data with ``nnx.data``, so the state keeps the paths flax 0.10 gave
(``layers/0/kernel``), and a ``list-attribute``/``dict-attribute`` warning names the fixes. On
flax 0.10 and 0.11, which accept plain containers, the attribute is left to flax, silently.
Containers filled after their assignment (``self.layers = []`` then ``append``) are handled when
construction ends.

``isinstance(x, nnx.Module)`` and ``issubclass(C, nnx.Module)`` stay True for every flax
Module (``nnx.Linear`` included), and the subclass is a flax Module in every other respect.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import jax

from nnx_compat import _classes, _containers, _versions, _warnings

__all__ = ["Module"]

_nnx: Any = _versions.import_nnx()
_NativeModule: Final[type] = _nnx.Module
_is_graph_node: Final[Callable[[Any], bool]] = _nnx.graph.is_graph_node
_is_node_leaf: Final[Callable[[Any], bool]] = _nnx.graph.is_node_leaf

# flax 0.12.0: a plain container attribute holding data raises. Before it, the plain container
# is the installed flax's own form, and this Module leaves it to flax, silently.
_STRICT: Final = _versions.feature("STRICT_PYTREE_ATTRIBUTES")
_CONTAINERS: Final = frozenset({list, tuple, dict})
_PATTERN: Final[dict[type, str]] = {
    list: "list-attribute",
    tuple: "list-attribute",
    dict: "dict-attribute",
}


def _is_data(x: Any) -> bool:
    return bool(_is_node_leaf(x) or _is_graph_node(x))


def _holds_data(value: Any) -> bool:
    """Whether a container holds a Module, a Variable or an array, at any depth."""
    return any(_is_data(leaf) for leaf in jax.tree_util.tree_leaves(value, is_leaf=_is_data))


def _is_static(node: Any, name: str) -> bool:
    """Whether ``node`` has an attribute ``name`` that flax 0.12 holds static (not data)."""
    if name not in vars(node):
        return False
    nodes = vars(node).get("_pytree__nodes", {})
    return name not in nodes or not nodes[name]


class _Construction(threading.local):
    def __init__(self) -> None:
        # (module, its plain-container attributes that held no data when assigned), innermost last
        self.stack: list[tuple[Any, set[str]]] = []


_construction = _Construction()


@contextmanager
def _constructing(node: Any) -> Iterator[set[str]]:
    candidates: set[str] = set()
    _construction.stack.append((node, candidates))
    try:
        yield candidates
    finally:
        _construction.stack.pop()


def _candidates(node: Any) -> set[str] | None:
    for owner, candidates in reversed(_construction.stack):
        if owner is node:
            return candidates  # type: ignore[no-any-return]
    return None


def _report(node: Any, name: str, value: Any, when: str = "") -> None:
    detail = f"{type(node).__name__}.{name} is a plain {type(value).__name__}{when}"
    _warnings.warn_legacy(_PATTERN[type(value)], detail=detail)


def _adopt_filled_containers(node: Any, candidates: set[str]) -> None:
    """After ``__init__``: mark containers that received data after their assignment."""
    attributes = vars(node)
    for name in sorted(candidates):
        value = attributes.get(name)
        if type(value) in _CONTAINERS and _holds_data(value):
            _report(node, name, value, " filled after its assignment")
            _NativeModule.__setattr__(node, name, _containers.data(value))  # type: ignore[call-arg]


class _ModuleMeta(_classes.meta(type(_NativeModule))):  # type: ignore[misc]
    if _STRICT:
        # flax 0.12 runs ``__init__`` through this hook: adopt the containers filled after
        # their assignment once it returns.
        def _pytree_meta_construct(cls, node: Any, /, *args: Any, **kwargs: Any) -> None:
            with _constructing(node) as candidates:
                super()._pytree_meta_construct(node, *args, **kwargs)  # type: ignore[misc]
            _adopt_filled_containers(node, candidates)


class Module(_NativeModule, metaclass=_ModuleMeta):  # type: ignore[misc,valid-type]
    """``nnx.Module`` that also accepts plain list/tuple/dict attributes holding data.

    .. deprecated::
        A plain list, tuple or dict attribute holding Modules, Variables or arrays is the flax
        0.10 form; since flax 0.12.0 use ``nnx.List([...])``, ``nnx.Dict({...})`` or
        ``nnx.data(...)``.
    """

    _nnx_compat_native = _NativeModule

    if not _versions.feature("MODULE_PYTREE_ARG"):

        def __init_subclass__(cls, pytree: bool = False, **kwargs: Any) -> None:
            """flax 0.11's ``pytree=`` class keyword on flax 0.10.0-0.10.6, whose Modules are
            never pytrees: ``pytree=False`` is what they are; ``pytree=True`` needs flax 0.11."""
            if pytree:
                raise TypeError(
                    f"class {cls.__name__}(nnx.Module, pytree=True) needs flax 0.11.0 or newer "
                    f"(flax {_versions.installed_version('flax')} is installed: its Modules are "
                    "never pytrees); drop pytree=True"
                )
            super().__init_subclass__(**kwargs)

    if _STRICT:

        def __setattr__(self, name: str, value: Any) -> None:
            if isinstance(value, dataclasses.Field):  # nnx.data(...) / nnx.static(...)
                pass
            elif type(value) in _CONTAINERS and type(self)._pytree__nodes.get(name):
                pass  # data by the class's declaration (x: nnx.Data[list], x: list = nnx.data())
            elif type(value) in _CONTAINERS:
                if _holds_data(value):
                    _report(self, name, value)
                    value = _containers.data(value)
                elif (candidates := _candidates(self)) is not None:
                    candidates.add(name)  # may be filled later in __init__
            elif _holds_data(value) and (_is_static(self, name) or not _is_data(value)):
                # data for an attribute flax holds static (``self.b = None`` first), or a
                # pytree of the user's holding arrays: state, whenever assigned, as on 0.10
                pattern = "pytree-attribute" if not _is_data(value) else "static-attribute-data"
                what = type(value).__name__
                _warnings.warn_legacy(pattern, detail=f"{type(self).__name__}.{name} = {what}")
                value = _containers.data(value)
            if type(value) not in _CONTAINERS and (candidates := _candidates(self)) is not None:
                candidates.discard(name)
            super().__setattr__(name, value)

        def _nnx_compat_adopt(self) -> None:
            """Before flax reads the node: a plain container that flax holds static (it held
            no data when assigned) and that the Module's own methods filled since becomes
            data, as on 0.10; flax 0.12 would leave its contents out of every state and fail
            in transforms ("Cannot extract graph node from different trace level")."""
            if not self._pytree__is_pytree:
                return  # pytree=False: flax traverses every attribute, data or not
            for name, value in list(vars(self).items()):
                if type(value) in _CONTAINERS and _is_static(self, name) and _holds_data(value):
                    detail = f"{type(self).__name__}.{name} is a plain {type(value).__name__}"
                    _warnings.warn_legacy("container-filled-after-init", detail=detail)
                    _NativeModule.__setattr__(self, name, _containers.data(value))  # type: ignore[call-arg]

        def _graph_node_flatten(self) -> Any:
            self._nnx_compat_adopt()
            return super()._graph_node_flatten()  # type: ignore[misc]

        def _pytree__flatten(self) -> Any:
            self._nnx_compat_adopt()
            return super()._pytree__flatten()  # type: ignore[misc]

        def _pytree__flatten_with_paths(self) -> Any:
            self._nnx_compat_adopt()
            return super()._pytree__flatten_with_paths()  # type: ignore[misc]
