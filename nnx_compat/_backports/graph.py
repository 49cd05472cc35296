"""Backports of flax 0.11/0.12's graph functions for an older flax (see nnx_compat._backports).

flax 0.11.2 - 0.12.8 added ``find_duplicates``, ``recursive_map``, ``set_metadata``,
``flatten``/``unflatten``, ``restore_int_paths``, ``map``, ``with_vars`` (and its old name
``vars_as``), ``unpack`` (with its ``GraphState``), ``as_pure`` and the module name ``graphlib``
(0.12.5 renamed ``nnx.graph``); ``FlatState`` is flax's own ``statelib.FlatState`` (an alias,
``nnx_compat._added.ALIASES``). Each is built here on the installed flax's own graph functions
(``nnx.graph.flatten``/``unflatten``, ``get_node_impl``, ``FlatState``, ``map_state``, the
filters), with flax 0.12.8's results: states hold the model's own Variables (flax 0.10's
``flatten`` made ``VariableState`` copies unless asked for the Variables), a value that is not a
graph node flattens to itself, and the keyword arguments are 0.12.8's. Graph mode is the only
mode before flax 0.12.6: ``graph=False`` raises a ``TypeError`` that names the release.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import inspect
import sys
import types
import warnings
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, Final, Generic, TypeVar

import jax

from nnx_compat import _versions
from nnx_compat._added import _graph_mode_only

__all__ = [
    "FlatState",
    "GraphState",
    "as_pure",
    "find_duplicates",
    "flatten",
    "graphlib",
    "map",
    "merge_arguments",
    "patch",
    "recursive_map",
    "restore",
    "restore_int_paths",
    "set_metadata",
    "unflatten",
    "unpack",
    "vars_as",
    "with_vars",
]

A = TypeVar("A")

_nnx: Any = _versions.import_nnx()
_graph: Any = _nnx.graph  # flax's graph module (``graphlib`` re-exported, from 0.12.5)
_statelib: Any = _nnx.statelib
_filterlib: Any = _nnx.filterlib
_traversals: Any = _nnx.traversals
_variablelib: Any = _nnx.variablelib
_Variable: Final[Any] = _nnx.Variable
_State: Final[Any] = _nnx.State

#: flax's ``FlatState`` (``nnx.statelib.FlatState`` since flax 0.10.0, exported in 0.12.1).
FlatState: Final[Any] = _statelib.FlatState

#: flax 0.10's ``flatten`` gives ``VariableState`` copies unless ``return_variables=True``.
_FLATTEN_COPIES: Final = "return_variables" in inspect.signature(_graph.flatten).parameters
#: Jax array references: ``is_array_ref``/``array_ref`` (flax 0.11), ``is_mutable_array``/
#: ``mutable_array`` (flax 0.10).
_IS_REF: Final[Any] = getattr(_variablelib, "is_array_ref", None) or getattr(
    _variablelib, "is_mutable_array", None
)
_NEW_REF: Final[Any] = getattr(_variablelib, "array_ref", None) or getattr(
    _variablelib, "mutable_array", None
)


def _is_ref(x: Any) -> bool:
    return _IS_REF is not None and bool(_IS_REF(x))


def _path_str(path: tuple[Any, ...]) -> str:
    return "/".join(builtins.map(str, path))


# --------------------------------------------------------------------------- flatten


def flatten(
    node: Any,
    /,
    *,
    with_paths: bool = True,
    ref_index: Any = None,
    ref_outer_index: Any = None,
    graph: bool | None = None,
) -> tuple[Any, Any]:
    """flax 0.12.0's ``nnx.flatten(node)``: ``(graphdef, FlatState)`` of the node's own
    Variables (the leaves' inner values in a list with ``with_paths=False``); a value that is
    not a graph node is the only leaf, at path ``()``. Graph mode only."""
    _graph_mode_only("flatten", graph)
    if ref_index is None:
        ref_index = _graph.RefMap()
    if _graph.get_node_impl(node) is None and not (isinstance(node, _Variable) or _is_ref(node)):
        graphdef = _graph.GraphDef(nodes=[], attributes=[], num_leaves=1)
        if with_paths:
            return graphdef, FlatState.from_sorted_keys_values(((),), [node])
        return graphdef, [node]
    extra = {"return_variables": True} if _FLATTEN_COPIES and with_paths else {}
    return _graph.flatten(  # type: ignore[no-any-return]
        node,
        with_paths=with_paths,
        ref_index=ref_index,
        ref_outer_index=ref_outer_index,
        **extra,
    )


def _sorted_leaves(mapping: Mapping[Any, Any]) -> list[Any]:
    """The leaves of a nested mapping, by sorted key at each level."""
    leaves: list[Any] = []
    for _, value in sorted(mapping.items()):
        if isinstance(value, Mapping):
            leaves.extend(_sorted_leaves(value))
        else:
            leaves.append(value)
    return leaves


#: Variables of flax 0.12 that the older flax has no counterpart of (flax 0.10's mutable arrays
#: and flax 0.11's ``use_ref=`` are experimental forerunners with semantics of their own).
_NEW_KINDS: Final = {
    "hijax": "hijax Variables, built on jax's hijax types",
    "ref": "array-reference Variables, Variable(..., ref=True)",
}


def raw_value(variable: Any) -> Any:
    """A Variable's (or flax 0.10 ``VariableState``'s) value as it holds it, without the
    deprecation flax 0.12 gives ``.raw_value``."""
    get = getattr(variable, "get_raw_value", None)
    return get() if get is not None else variable.raw_value


def _copy_variable(variable: Any, updates: Mapping[str, Any] | None = None) -> Any:
    """flax 0.12's ``variable.copy(**updates)``: a new Variable of the current trace with the
    same metadata (plus ``updates``) and value (a new array reference where it held one);
    ``hijax=True`` and ``ref=True`` need flax 0.12 (whose Variables copy themselves)."""
    updates = dict(updates or {})
    if {"hijax", "ref"} <= variable.get_metadata().keys():  # flax 0.12.0-0.12.7: its own copy
        return variable.copy(**updates)
    value = raw_value(variable)
    ref = _is_ref(value) and updates.get("ref", True)  # a copy of a reference: a new one
    for name, kind in _NEW_KINDS.items():
        if updates.pop(name, False):
            raise TypeError(
                f"{name}=True needs flax 0.12 or newer ({kind}); flax "
                f"{_versions.installed_version('flax')} has none: upgrade flax for it"
            )
    if _is_ref(value):
        value = value[...]
    if ref:
        value = _NEW_REF(value)
    metadata = {**variable.get_metadata(), **updates}
    return type(variable).from_metadata(value, metadata)  # type: ignore[attr-defined]


def unflatten(
    graphdef: Any,
    state: Any,
    /,
    *,
    index_ref: Any = None,
    outer_index_outer_ref: Any = None,
    copy_variables: bool = False,
    recreate_variables: bool = True,
) -> Any:
    """flax 0.12.0's ``nnx.unflatten(graphdef, state)``: the node, holding the state's own
    Variables (copies with ``copy_variables=True``); an inner value where the graph had a
    Variable becomes a Variable of that type and metadata, or, with
    ``recreate_variables=False``, stays the bare value."""
    if isinstance(state, _State | dict):
        leaves = _sorted_leaves(state)
    elif isinstance(state, FlatState):
        leaves = list(state.leaves)
    elif isinstance(state, list):
        leaves = list(state)
    else:
        raise ValueError(f"Unsupported state type: {type(state)}")
    if len(leaves) != graphdef.num_leaves:
        raise ValueError(
            f"Incorrect number of leaves, expected {graphdef.num_leaves} leaves, "
            f"but got {len(leaves)}."
        )
    if not graphdef.nodes:
        return leaves[0]
    if copy_variables:
        leaves = [_copy_variable(x) if isinstance(x, _Variable) else x for x in leaves]
    node = _graph.unflatten(
        graphdef, leaves, index_ref=index_ref, outer_index_outer_ref=outer_index_outer_ref
    )
    if recreate_variables:
        return node
    # the Variables flax made from bare values: the same leaf index in the rebuilt node's flatten
    leaf_types = _versions.variable_leaf_types()
    _, rebuilt = flatten(node, with_paths=True)
    bare = {
        id(made): value
        for value, made in zip(leaves, rebuilt.leaves, strict=True)
        if isinstance(made, _Variable) and not isinstance(value, leaf_types)
    }
    return _substitute(node, bare, set()) if bare else node


def _set_child(impl: Any, node: Any, key: Any, value: Any) -> bool:
    """Sets ``node[key]`` where the node can be changed in place (graph nodes, lists, dicts,
    States, as flax 0.12 registers them); False where it cannot."""
    set_key = getattr(impl, "set_key", None)
    if set_key is None and type(node) in (list, dict, _State):
        set_key = type(node).__setitem__
    if set_key is None:
        return False
    set_key(node, key, value)
    return True


def _substitute(node: Any, table: Mapping[int, Any], seen: set[int]) -> Any:
    """``node`` with every object whose id is in ``table`` replaced by its value, in place where
    the container allows it, else in a rebuilt container (a tuple); each graph node once."""
    if id(node) in table:
        return table[id(node)]
    impl = _graph.get_node_impl(node)
    if impl is None or id(node) in seen:
        return node
    if isinstance(impl, _graph.GraphNodeImpl):
        seen.add(id(node))
    children, metadata = impl.flatten(node)
    new_children = [(key, _substitute(child, table, seen)) for key, child in children]
    pairs = zip(new_children, children, strict=True)
    changed = [(k, new) for (k, new), (_, old) in pairs if new is not old]
    if not changed:
        return node
    if all(_set_child(impl, node, key, value) for key, value in changed):
        return node
    return impl.unflatten(new_children, metadata)


# --------------------------------------------------------------------------- graph walks


def find_duplicates(node: Any, /, *, only: Any = ...) -> list[list[tuple[Any, ...]]]:
    """flax 0.11.2's ``nnx.find_duplicates(node)``: for each graph node or leaf (Variable,
    array) reached by more than one path, its paths (the first, then each other one that
    ``only`` accepts)."""
    accept = _filterlib.to_predicate(only)
    paths: dict[int, list[tuple[Any, ...]]] = {}

    def visit(value: Any, path: tuple[Any, ...]) -> None:
        shared = _graph.is_graph_node(value) or _graph.is_node_leaf(value)
        if not shared and not _graph.is_pytree_node(value):
            return
        if id(value) in paths:
            if shared and accept(path, value):
                paths[id(value)].append(path)
            return
        if shared:
            paths[id(value)] = [path]
        impl = _graph.get_node_impl(value)
        if impl is not None:
            for key, child in impl.node_dict(value).items():
                visit(child, (*path, key))

    visit(node, ())
    return [found for found in paths.values() if len(found) > 1]


def recursive_map(
    f: Callable[[tuple[Any, ...], Any], Any], node: Any, /, *, graph: bool | None = None
) -> Any:
    """flax 0.12.1's ``nnx.recursive_map(f, node)``: ``f(path, value)`` on every node and leaf,
    children first, each shared one once, on a copy of the graph that shares its Variables;
    what ``f`` returns replaces the value. Graph mode only."""
    _graph_mode_only("recursive_map", graph)
    copy = unflatten(*flatten(node))
    return _map_graph(f, copy, (), set(), {})


def _map_graph(
    f: Callable[[tuple[Any, ...], Any], Any],
    node: Any,
    path: tuple[Any, ...],
    visited: set[int],
    results: dict[int, Any],
) -> Any:
    if id(node) in visited:
        if id(node) in results:
            return results[id(node)]
        raise ValueError(
            f"Found cycle in the graph at path '{_path_str(path)}'. Node of type {type(node)} "
            "has already been visited but has not been returned yet."
        )
    impl = _graph.get_node_impl(node)
    if isinstance(impl, _graph.GraphNodeImpl) or isinstance(node, _Variable) or _is_ref(node):
        visited.add(id(node))
    if impl is not None:
        for key, child in impl.node_dict(node).items():
            new = _map_graph(f, child, (*path, key), visited, results)
            if new is not child and not _set_child(impl, node, key, new):
                raise ValueError(
                    f"Cannot update key '{key}' for node of type '{type(node)}' because the "
                    "node does not support mutation."
                )
    results[id(node)] = f(path, node)
    return results[id(node)]


# --------------------------------------------------------------------------- states


def _split(node: Any, *filters: Any) -> tuple[Any, ...]:
    """flax 0.12's ``split``: the graphdef and a state per filter, holding the node's own
    Variables (a node that is a single leaf: the leaf itself)."""
    graphdef, flat = flatten(node)
    groups = flat.split(*filters) if filters else flat
    groups = groups if isinstance(groups, tuple) else (groups,)

    def nested(group: Any) -> Any:
        if not group:
            return _State({})
        if len(group) == 1 and group[0][0] == ():
            return group[0][1]
        return _statelib.from_flat_state(group)

    return (graphdef, *(nested(g) for g in groups))


def _merge(graphdef: Any, states: tuple[Any, ...], *, recreate_variables: bool = True) -> Any:
    """flax 0.12's ``merge(graphdef, *states)``: the states' own Variables (never copies)."""
    flat: list[tuple[tuple[Any, ...], Any]] = []
    for state in states:
        if isinstance(state, dict | _State | GraphState):
            flat.extend(_traversals.flatten_to_sequence(state))
        elif isinstance(state, FlatState):
            flat.extend(state)
        else:
            flat.append(((), state))
    flat.sort(key=lambda item: item[0])
    leaves = [value for _, value in flat]
    return unflatten(graphdef, leaves, recreate_variables=recreate_variables)


def map(
    f: Callable[[tuple[Any, ...], Any], Any],
    node: A,
    /,
    *,
    graph: bool | None = None,
    recreate_variables: bool = True,
) -> A:
    """flax 0.12.6's ``nnx.map(f, node)``: a new node whose state is ``f(path, variable)`` of
    each of the node's own Variables (a bare value returned becomes a Variable of the type and
    metadata, unless ``recreate_variables=False``). Graph mode only."""
    _graph_mode_only("map", graph)
    graphdef, state = _split(node)
    # a Variable (or another leaf) splits to itself
    state = _statelib.map_state(f, state) if isinstance(state, _State) else f((), state)
    return _merge(graphdef, (state,), recreate_variables=recreate_variables)  # type: ignore[no-any-return]


def _variable_attribute(variable: Any, name: str) -> Any:
    """flax 0.12's ``variable.hijax`` / ``.ref`` / other metadata, on an older Variable."""
    if name == "hijax":
        return False
    if name == "ref":
        return _is_ref(raw_value(variable))
    metadata = variable.get_metadata()
    if name in metadata:
        return metadata[name]
    return getattr(raw_value(variable), name)


def with_vars(
    node: A,
    /,
    *,
    hijax: bool | None = None,
    ref: bool | None = None,
    mutable: bool | None = None,
    only: Any = ...,
    allow_duplicates: bool = False,
) -> A:
    """flax 0.12.8's ``nnx.with_vars(node, ref=...)``: the node with copies of the Variables
    (that ``only`` selects) whose ``hijax``/``ref``/``mutable`` differ from those given, made
    with them; the other Variables shared. A Variable reached by several paths is refused
    unless ``allow_duplicates``. ``hijax=True`` and ``ref=True`` need flax 0.12 (hijax and
    array-reference Variables) where a Variable would change."""
    wanted = {
        name: value
        for name, value in (("hijax", hijax), ("ref", ref), ("mutable", mutable))
        if value is not None
    }

    def differs(path: tuple[Any, ...], x: Any) -> bool:
        return isinstance(x, _Variable) and any(
            _variable_attribute(x, name) != value for name, value in wanted.items()
        )

    selected = _filterlib.All(differs, only)
    accept = _filterlib.to_predicate(selected)
    if not allow_duplicates and (duplicates := find_duplicates(node, only=selected)):
        listing = "\n  ---"
        for paths in duplicates:
            listing += "".join(f"\n  {_path_str(path)}" for path in paths) + "\n  ---"
        raise ValueError(f"Found duplicate at paths:{listing}")

    def convert(path: tuple[Any, ...], x: Any) -> Any:
        return _copy_variable(x, wanted) if accept(path, x) else x

    return map(convert, node, recreate_variables=False)


@functools.wraps(with_vars)
def vars_as(*args: Any, **kwargs: Any) -> Any:
    warnings.warn(
        "This function is deprecated. Use with_vars instead.", DeprecationWarning, stacklevel=2
    )
    return with_vars(*args, **kwargs)


vars_as.__doc__ = (
    ".. deprecated::\n   Use :func:`with_vars` instead.\n\n"
    "flax 0.12.3's name of :func:`with_vars` (deprecated by flax 0.12.8)."
)

_SHARDING_ALIASES: Final = ("sharding", "sharding_names")


def _set_variable_metadata(variable: Any, metadata: Mapping[str, Any]) -> None:
    """flax 0.12's ``variable.set_metadata(**metadata)`` on an older Variable: the sharding
    annotation under the installed flax's key, ``hijax``/``ref`` checked, not stored."""
    if not metadata:
        raise TypeError(
            "set_metadata takes either 1 or 2 arguments, or at least 1 keyword argument, "
            "got args=(), kwargs={}"
        )
    updates = dict(metadata)
    for alias in _SHARDING_ALIASES:
        if alias in updates:
            warnings.warn(
                f"'{alias}' is deprecated, use 'out_sharding' instead.",
                DeprecationWarning,
                stacklevel=4,
            )
            updates["out_sharding"] = updates.pop(alias)
    for name in ("hijax", "ref"):
        if name in updates:
            current, value = _variable_attribute(variable, name), updates.pop(name)
            if value != current:
                raise ValueError(
                    f"Cannot change `{name}` metadata, expected {current}, got {value}"
                )
    key = _versions.sharding_metadata_key()
    if "out_sharding" in updates and key != "out_sharding":
        updates[key] = updates.pop("out_sharding")
    for name, value in updates.items():
        setattr(variable, name, value)  # flax's own check: TraceContextError from another trace


def set_metadata(node: Any, /, *, only: Any = _Variable, **metadata: Any) -> None:
    """flax 0.12.1's ``nnx.set_metadata(node, only=..., **metadata)``: sets the metadata of each
    of the node's Variables that ``only`` selects, in place."""
    _, flat = flatten(node)
    selected = _statelib.filter_state(flat.to_nested_state(), only)

    def apply(path: tuple[Any, ...], variable: Any) -> None:
        if isinstance(variable, _Variable):
            _set_variable_metadata(variable, metadata)

    _statelib.map_state(apply, selected)


def as_pure(tree: A) -> A:
    """flax 0.12.7's ``nnx.as_pure(tree)`` (``nnx.pure`` before): the tree with each Variable
    (and flax 0.10's ``VariableState``) replaced by its inner value, and each array reference
    by its array."""
    leaf_types: Any = _versions.variable_leaf_types()

    def pure(x: Any) -> Any:
        if isinstance(x, leaf_types):
            return as_pure(raw_value(x))
        if _is_ref(x):
            return x[...]
        return x

    return jax.tree.map(pure, tree, is_leaf=lambda x: isinstance(x, leaf_types))  # type: ignore[no-any-return]


def restore_int_paths(pure_dict: Mapping[Any, Any]) -> dict[Any, Any]:
    """flax 0.12.1's ``nnx.restore_int_paths(pure_dict)``: a nested dict whose keys that
    ``int()`` reads (``'0'`` from a checkpoint) are integers again; empty dicts dropped."""

    def key(part: Any) -> Any:
        try:
            return int(part)
        except ValueError:
            return part

    flat = _traversals.flatten_mapping(pure_dict)
    return _traversals.unflatten_mapping(  # type: ignore[no-any-return]
        {tuple(key(part) for part in path): value for path, value in flat.items()}
    )


# --------------------------------------------------------------------------- GraphState


@dataclasses.dataclass(slots=True, repr=False)
class GraphState(MutableMapping[Any, Any], Generic[A]):
    """flax 0.12.7's ``GraphState`` (what ``nnx.unpack`` returns): a ``State`` with the
    ``GraphDef`` of its node, a mapping and a pytree as the state is; ``nnx.merge(graph_state,
    ...)`` rebuilds the node."""

    _graphdef: Any
    _state: Any

    def __post_init__(self) -> None:
        if not isinstance(self._state, _State):
            raise ValueError(f"Expected a State object, got {type(self._state).__name__}")

    def __repr__(self) -> str:
        return f"GraphState(\n  _graphdef={self._graphdef!r},\n  _state={self._state!r}\n)"

    def __getattr__(self, name: str) -> Any:
        if name in ("_graphdef", "_state"):  # not set yet (a copy under construction)
            raise AttributeError(name)
        return getattr(self._state, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("_graphdef", "_state"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._state, name, value)

    def __getitem__(self, key: Any) -> Any:
        return self._state[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._state[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._state[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)

    def __contains__(self, key: object) -> bool:
        return key in self._state


def _children(graph_state: GraphState[Any]) -> tuple[list[tuple[Any, Any]], tuple[Any, Any]]:
    state = graph_state._state
    children, treedef = jax.tree_util.tree_flatten_with_path(
        state, is_leaf=lambda x: x is not state
    )
    return [(path[0], child) for path, child in children], (graph_state._graphdef, treedef)


def _graph_state_flatten(graph_state: GraphState[Any]) -> tuple[list[Any], tuple[Any, Any]]:
    keyed, aux = _children(graph_state)
    return [child for _, child in keyed], aux


def _graph_state_unflatten(aux: tuple[Any, Any], children: Any) -> GraphState[Any]:
    graphdef, treedef = aux
    return GraphState(graphdef, treedef.unflatten(children))


jax.tree_util.register_pytree_with_keys(
    GraphState, _children, _graph_state_unflatten, _graph_state_flatten
)


def unpack(node: A, *filters: Any, graph: bool | None = None) -> Any:
    """flax 0.12.7's ``nnx.unpack(node, *filters)``: ``nnx.split`` with the ``GraphDef`` in each
    state (a ``GraphState``; a tuple of them for two filters or more). Graph mode only."""
    _graph_mode_only("unpack", graph)
    graphdef, *states = _split(node, *filters)
    if len(states) == 1:
        return GraphState(graphdef, states[0])
    return tuple(GraphState(graphdef, state) for state in states)


def merge_arguments(first: Any, states: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """``nnx.merge``'s ``(graphdef, states)`` where it was given :class:`GraphState` objects
    (flax 0.12.7's ``nnx.merge(graph_state, ...)``), with flax 0.12.8's errors; other
    arguments unchanged (a GraphState after a GraphDef counts as its State)."""
    if not isinstance(first, GraphState):
        return first, tuple(s._state if isinstance(s, GraphState) else s for s in states)
    every = (first, *states)
    for graph_state in every:
        if not isinstance(graph_state, GraphState):
            raise ValueError(f"Expected GraphState object, got {type(graph_state)}")
        if graph_state._graphdef != first._graphdef:
            raise ValueError("GraphDef must be the same for all GraphState objects")
    return first._graphdef, tuple(graph_state._state for graph_state in every)


# --------------------------------------------------------------------------- graphlib

_MODULE_NAME: Final = "nnx_compat.nnx.graphlib"


def _graph_attribute(name: str) -> Any:
    if name.startswith("__") and name.endswith("__"):  # the module's own (``__file__``, ...)
        raise AttributeError(f"module {_MODULE_NAME!r} has no attribute {name!r}")
    return getattr(_graph, name)


#: flax 0.12.5's ``nnx.graphlib``: the installed flax's ``nnx.graph`` module, with the flax 0.12
#: graph functions as ``nnx_compat.nnx`` serves them (flax's own where ``flax.nnx`` has the
#: name, else the backport) in place of (or beside) its own.
graphlib = types.ModuleType(
    _MODULE_NAME,
    "flax 0.12.5's ``nnx.graphlib`` (``nnx.graph`` before) on an older flax: flax's own "
    "``nnx.graph`` module, with the flax 0.12 graph functions nnx_compat serves.",
)
vars(graphlib).update(
    {
        "__getattr__": _graph_attribute,
        "__dir__": lambda: sorted(set(dir(_graph)) | set(vars(graphlib))),
        "GraphState": GraphState,
        **{
            name: vars(_nnx).get(name, value)
            for name, value in {
                "FlatState": FlatState,
                "as_pure": as_pure,
                "find_duplicates": find_duplicates,
                "flatten": flatten,
                "map": map,
                "recursive_map": recursive_map,
                "set_metadata": set_metadata,
                "unflatten": unflatten,
                "unpack": unpack,
                "vars_as": vars_as,
                "with_vars": with_vars,
            }.items()
        },
    }
)
_registered: list[str] = []


def patch() -> None:
    """Where the installed flax has no ``nnx.graphlib``, makes ``import
    nnx_compat.nnx.graphlib`` find :data:`graphlib`, as it finds flax's own modules."""
    if not hasattr(_nnx, "graphlib") and _MODULE_NAME not in sys.modules:
        sys.modules[_MODULE_NAME] = graphlib
        _registered.append(_MODULE_NAME)


def restore() -> None:
    """Undoes :func:`patch`."""
    while _registered:
        sys.modules.pop(_registered.pop(), None)
