"""flax 0.11/0.12's Module and pytree helpers, for an older flax.

On flax 0.10 (0.11 where marked) ``nnx_compat.nnx`` serves these with flax 0.12.8's behaviour:

* pytree annotations: ``Data``/``Static`` (``typing.Annotated`` markers), ``static``,
  ``dataclass`` (0.11), ``register_data_type``, ``check_pytree`` and the ``pytreelib`` module;
* Module helpers: ``view``, ``view_info``, ``with_attributes``, ``iter_module_children``;
* settings: ``set_graph_mode``/``set_graph_updates`` (graph mode with graph updates is the only
  mode before flax 0.12.6: ``True`` is honoured, ``False`` raises) and ``var_defaults``;
* the ``compat`` and ``deprecations`` modules.

Each is built on the installed flax's graph (``nnx.graph``'s node registry), its Variables and
its configuration; the layers' ``set_view`` comes from ``nnx_compat._backports.members``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import itertools
import types
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, ClassVar, Final, TypeVar

import jax

from nnx_compat import _added, _containers, _pytree, _versions

__all__ = [
    "Data",
    "Static",
    "VarDefaults",
    "check_pytree",
    "compat",
    "data_registry",
    "dataclass",
    "deprecations",
    "iter_module_children",
    "pytreelib",
    "register_data_type",
    "set_graph_mode",
    "set_graph_updates",
    "static",
    "var_defaults",
    "view",
    "view_info",
    "with_attributes",
]

_nnx: Any = _versions.import_nnx()
A = TypeVar("A")
T = TypeVar("T", bound=type)
F = TypeVar("F", bound=Callable[..., Any])


def _installed() -> str:
    return _versions.installed_version("flax") or "?"


# --------------------------------------------------------------------------- pytree annotations

#: flax 0.11's ``nnx.Data[T]``: marks a class attribute as pytree data. flax 0.10 puts every
#: attribute of a Module in its graph, so there it marks what ``nnx.data(value)`` marks: nothing
#: flax 0.10 does not already do (flax 0.12 deprecates it for ``x: T = nnx.data()``).
Data = Annotated[A, "__data__"]
#: flax 0.12's ``nnx.Static[T]``: marks a class attribute as static (flax 0.11 has no marker:
#: an attribute holding no data is static there, as it is for flax 0.12).
Static = Annotated[A, "__static__"]

_MISSING: Final[Any] = importlib.import_module("flax.typing").MISSING
_own_registry: set[type] = set()


def data_registry() -> set[type]:
    """The types :func:`register_data_type` registered: flax's own set where it has one."""
    native = getattr(getattr(_nnx, "pytreelib", None), "DATA_REGISTRY", None)
    return _own_registry if native is None else native  # type: ignore[no-any-return]


def register_data_type(type_: T, /) -> T:
    """flax 0.11's ``nnx.register_data_type``, returning the type (flax 0.12: a decorator).

    ``nnx.is_data`` and ``nnx.has_data`` then count its instances as data. On flax 0.10 a graph
    holds arrays and Variables only, so such a value in a Module attribute stays out of
    ``nnx.state`` (flax 0.12 puts it there as a leaf).
    """
    data_registry().add(type_)
    return type_


def _data_leaves(value: Any) -> list[Any]:
    """The data in a value (arrays, Variables, graph nodes, instances of registered types)."""
    return _added.has_data(value)


def static(value: Any = _MISSING, /, **kwargs: Any) -> Any:
    """flax 0.12's ``nnx.static``: ``self.x = nnx.static(value)`` or, as a dataclass field,
    ``x: int = nnx.static(default=...)``.

    flax 0.11 holds an attribute static while it holds no data, so the value is returned as it
    is; the keyword form is a ``dataclasses.field`` whose metadata says ``static``.

    Raises:
        TypeError: both a value and keywords.
        ValueError: a value holding data, or a ``static`` key in ``metadata``.
    """
    if value is not _MISSING:
        if kwargs:
            raise TypeError(
                "nnx.static() accepts either a single positional argument or keyword "
                "arguments, but not both."
            )
        if _data_leaves(value):
            raise ValueError(
                f"Found data in value of type '{type(value)}' annotated with nnx.static(...)."
            )
        return _containers.mark(value, False)  # for flax 0.10's backported Pytree
    metadata = dict(kwargs.pop("metadata", None) or {})
    if "static" in metadata:
        raise ValueError("Cannot use 'static' key in metadata argument for nnx.static.")
    return dataclasses.field(**kwargs, metadata={"nnx_value": _MISSING, **metadata, "static": True})


def static_or_field(value: Any = _MISSING, /, **kwargs: Any) -> Any:
    """``nnx.static`` on flax 0.10, whose own takes keywords only: flax 0.10's dataclass field
    for keywords (its meaning stands), flax 0.12's :func:`static` for a value."""
    if value is _MISSING:
        return _nnx.static(**kwargs)
    return static(value, **kwargs)


def dataclass(
    cls: Any = None,
    /,
    *,
    init: bool = True,
    eq: bool = True,
    order: bool = False,
    unsafe_hash: bool = False,
    match_args: bool = True,
    kw_only: bool = False,
    slots: bool = False,
    weakref_slot: bool = False,
) -> Any:
    """flax 0.12's ``nnx.dataclass``: ``dataclasses.dataclass`` keeping the class's own
    ``repr`` (a Pytree's); the fields' values decide what is data, as for any attribute, and
    on flax 0.11 (which records only the data attributes) so does ``nnx.data()`` as a field."""
    options = dict(
        init=init,
        eq=eq,
        order=order,
        unsafe_hash=unsafe_hash,
        match_args=match_args,
        kw_only=kw_only,
        slots=slots,
        weakref_slot=weakref_slot,
    )
    if cls is None:
        return functools.partial(dataclass, **options)
    made = dataclasses.dataclass(cls, repr=False, **options)  # type: ignore[call-overload]
    nodes = getattr(made, "_pytree__nodes", None)
    if isinstance(nodes, frozenset):  # flax 0.11: the names of the data attributes
        marked = {f.name for f in dataclasses.fields(made) if f.metadata.get("static") is False}
        made._pytree__nodes = nodes | marked
    return made


def _is_jax_pytree(node: Any) -> bool:
    """Whether jax flattens ``node`` (a Pytree class made with ``pytree=True``)."""
    children = jax.tree_util.tree_flatten(node, is_leaf=lambda x: x is not node)[0]
    return children != [node]


def _tags(value: Any) -> set[str]:
    """The ``nnx.data``/``nnx.static`` marks inside a value (they belong on attributes)."""
    marker = getattr(getattr(_nnx, "pytreelib", None), "DataAttr", None)  # flax 0.11's data
    tags = set()
    for leaf in jax.tree.leaves(value, is_leaf=_added.is_data):  # not inside a Module
        if isinstance(leaf, dataclasses.Field) and "nnx_value" in leaf.metadata:
            tags.add("static" if leaf.metadata["static"] else "data")
        elif marker is not None and type(leaf) is marker:
            tags.add("data")
    return tags


def check_pytree(pytree: Any) -> None:
    """flax 0.12's ``nnx.check_pytree``: no data in a static attribute, no ``nnx.data`` or
    ``nnx.static`` mark inside an attribute's value.

    flax 0.11 records the data attributes of a Pytree; flax 0.10 puts every attribute of an
    Object in its graph (there is no static attribute to check).

    Raises:
        TypeError: not a Pytree (an NNX object).
        ValueError: as flax 0.12.8 does.
    """
    if not isinstance(pytree, _pytree.Pytree):
        raise TypeError(f"Expected a Pytree, got {type(pytree)}.")
    # the instance's record, else its class's (not getattr: Rngs answers any name with a stream)
    nodes = vars(pytree).get("_pytree__nodes", getattr(type(pytree), "_pytree__nodes", None))
    if nodes is None:  # flax 0.10
        return
    if _pytree.is_backported_pytree(pytree):  # flax 0.10
        importlib.import_module("nnx_compat._backports.pytree").check(pytree)
        return
    is_pytree = _is_jax_pytree(pytree)  # pytree=False: every attribute is static
    for name, value in vars(pytree).items():
        if not (is_pytree and name in nodes) and _data_leaves(value):
            raise ValueError(
                f"Found unexpected data on value of type {type(value)} in static attribute "
                f"'{name}' of Pytree type '{type(pytree)}'. This is an error starting from Flax "
                "version 0.12.0.\nWrap the value with nnx.data on assignment "
                f"(_.{name} = nnx.data(...)), use nnx.List(...) or nnx.Dict(...) for a list or "
                "dict, or declare the class with pytree=False."
            )
        if tags := _tags(value):
            raise ValueError(
                f"Found unexpected tags {tags} on attribute '{type(pytree).__name__}.{name}'. "
                "Values from nnx.data(...) and\nnnx.static(...) should be assigned to "
                "nnx.Pytree attributes directly, they should not be inside other structures. "
                f"Got value of type '{type(value)}' on Pytree of type '{type(pytree)}'."
            )


# --------------------------------------------------------------------------- Module helpers


def _holds_graph(value: Any) -> bool:
    """Whether a container holds a graph node, a Variable or an array (at any depth)."""
    graph = _nnx.graph

    def is_leaf(x: Any) -> bool:
        return bool(graph.is_graph_node(x) or graph.is_node_leaf(x))

    return any(is_leaf(x) for x in jax.tree.leaves(value, is_leaf=is_leaf))


def _copy_graph(node: Any, visit: Callable[[tuple[Any, ...], Any], None]) -> Any:
    """A copy of ``node`` as flax 0.12's ``nnx.clone(node, variables=False)`` makes it: new
    graph nodes (each shared one once) and containers of them, the same Variables, arrays and
    static values. ``visit(path, copy)`` runs on each new graph node, its children first.

    Raises:
        ValueError: the graph has a cycle (as flax 0.12's ``nnx.recursive_map``).
    """
    graph = _nnx.graph
    variable_types = _versions.variable_leaf_types()
    copies: dict[int, Any] = {}
    open_nodes: set[int] = set()

    def copy(path: tuple[Any, ...], x: Any) -> Any:
        impl = None if isinstance(x, variable_types) else graph.get_node_impl(x)
        if impl is None:
            return x
        if type(x) in graph.GRAPH_REGISTRY:
            if id(x) in open_nodes:
                raise ValueError(
                    f"Found cycle in the graph at path '{'/'.join(map(str, path))}'. Node of "
                    f"type {type(x)} has already been visited but has not been returned yet."
                )
            if id(x) in copies:
                return copies[id(x)]
            open_nodes.add(id(x))
            items, aux = impl.flatten(x)
            new = impl.create_empty(aux)
            impl.init(new, [(key, copy((*path, key), value)) for key, value in items])
            open_nodes.discard(id(x))
            copies[id(x)] = new
            visit(path, new)
            return new
        if type(x) in (list, tuple, dict) and not _holds_graph(x):
            return x  # a static container: flax 0.12 keeps it in the graph definition
        items, aux = impl.flatten(x)
        return impl.unflatten([(key, copy((*path, key), value)) for key, value in items], aux)

    return copy((), node)


def _set_view_arguments(set_view: Callable[..., Any], kwargs: Mapping[str, Any]) -> set[str]:
    """The names of ``kwargs`` that a ``set_view`` method takes (all, with ``**kwargs``)."""
    parameters = inspect.signature(set_view).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return set(kwargs)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in parameters if p.kind in named}


def view(
    node: A,
    /,
    *,
    only: Any = ...,
    raise_if_not_found: bool = True,
    graph: bool | None = None,
    **kwargs: Any,
) -> A:
    """flax 0.12.4's ``nnx.view``: a copy of ``node`` (sharing its Variables) whose Modules
    selected by ``only`` have had ``set_view(**kwargs)`` called with the keywords each takes.

    Raises:
        ValueError: a keyword no selected ``set_view`` takes (unless ``raise_if_not_found`` is
            False).
        TypeError: ``graph=False`` (tree mode needs flax 0.12.6).
    """
    _added._graph_mode_only("view", graph)
    predicate = _nnx.filterlib.to_predicate(only)
    remaining = set(kwargs)

    def set_view(path: tuple[Any, ...], module: Any) -> None:
        if hasattr(module, "set_view") and predicate(path, module):
            names = _set_view_arguments(module.set_view, kwargs)
            module.set_view(**{k: v for k, v in kwargs.items() if k in names})
            remaining.difference_update(names)

    out = _copy_graph(node, set_view)
    if raise_if_not_found and remaining:
        raise ValueError(f"Unused keys found in nnx.view: {sorted(remaining)}")
    return out  # type: ignore[no-any-return]


def with_attributes(
    node: A,
    /,
    *,
    only: Any = ...,
    raise_if_not_found: bool = True,
    graph: bool | None = None,
    **attributes: Any,
) -> A:
    """flax 0.12.6's ``nnx.with_attributes``: a copy of ``node`` (sharing its Variables) whose
    Modules selected by ``only`` have the given attributes set where they have them.

    Raises:
        ValueError: an attribute no selected Module has (unless ``raise_if_not_found`` is
            False).
        TypeError: ``graph=False`` (tree mode needs flax 0.12.6).
    """
    _added._graph_mode_only("with_attributes", graph)
    predicate = _nnx.filterlib.to_predicate(only)
    remaining = set(attributes)

    def set_attributes(path: tuple[Any, ...], module: Any) -> None:
        if isinstance(module, _nnx.Module) and predicate(path, module):
            for name, value in attributes.items():
                if hasattr(module, name):
                    setattr(module, name, value)
                    remaining.discard(name)

    out = _copy_graph(node, set_attributes)
    if raise_if_not_found and remaining:
        raise ValueError(
            f"Could not find at least one instance of the following attributes: {sorted(remaining)}"
        )
    return out  # type: ignore[no-any-return]


def _documented_arguments(doc: str) -> dict[str, str]:
    """The ``Args:`` section of a docstring (flax's layout: names indented two spaces, their
    text four): argument -> its text, each line indented four spaces."""
    start, end = doc.find("Args:\n"), doc.find("Returns:\n")
    lines = doc[start + 6 : len(doc) if end == -1 else end].split("\n")
    heads = [i for i, line in enumerate(lines) if line.startswith("  ")]
    heads = [i for i in heads if not lines[i].startswith("    ")] + [len(lines)]
    described = {}
    for head, after in itertools.pairwise(heads):
        name, _, first = lines[head].partition(":")
        described[name.strip()] = "\n".join(["    " + first.strip(), *lines[head + 1 : after]])
    return described


def view_info(node: Any, /, *, only: Any = ..., graph: bool | None = None) -> str:
    """flax 0.12.4's ``nnx.view_info``: the keywords of each ``set_view`` that ``nnx.view``
    would call on ``node``'s Modules (selected by ``only``), one class at a time, with the
    argument's type, default and the text of its docstring.

    Raises:
        TypeError: ``graph=False`` (tree mode needs flax 0.12.6).
    """
    _added._graph_mode_only("view_info", graph)
    predicate = _nnx.filterlib.to_predicate(only)
    classes: set[type] = set()

    def collect(path: tuple[Any, ...], module: Any) -> None:
        if hasattr(module, "set_view") and predicate(path, module):
            classes.add(type(module))

    _copy_graph(node, collect)
    lines = []
    for cls in sorted(classes, key=lambda c: c.__qualname__):
        lines.append(f"{cls.__qualname__}:")
        signature = inspect.signature(cls.set_view)  # type: ignore[attr-defined]
        doc = inspect.getdoc(cls.set_view)  # type: ignore[attr-defined]
        if doc is None:
            lines.append(f"  set_view{signature}")
            continue
        described = _documented_arguments(doc)
        for name, parameter in signature.parameters.items():
            if name in ("self", "args", "kwargs"):
                continue
            default = "" if parameter.default is parameter.empty else f" = {parameter.default}"
            lines += [f"  {name}: {parameter.annotation}{default}", described[name]]
    return "\n".join(lines)


def iter_module_children(node: Any, /, *, graph: bool | None = None) -> Iterator[tuple[Any, Any]]:
    """flax 0.12.7's ``nnx.iter_module_children``: ``(key, child)`` of the node's immediate
    children that are graph nodes (Modules, Rngs, ... but not Variables), by key.

    Raises:
        ValueError: ``node`` is not a graph node (or a container of them).
        TypeError: ``graph=False`` (tree mode needs flax 0.12.6).
    """
    _added._graph_mode_only("iter_module_children", graph)
    impl = _nnx.graph.get_node_impl(node)
    if impl is None:
        raise ValueError(f"Expected a graph node, got {type(node).__name__}.")
    for key, value in impl.node_dict(node).items():
        if type(value) in _nnx.graph.GRAPH_REGISTRY:
            yield key, value


# --------------------------------------------------------------------------- settings


class _GraphModeSetting:
    """A setting of flax 0.12.6 whose ``True`` is what an older flax always does."""

    _means: ClassVar[str]

    def __init__(self, value: bool, /) -> None:
        if not value:
            raise ValueError(
                f"nnx.{type(self).__name__}({value!r}) needs flax 0.12.6 or newer ({self._means});"
                f" flax {_installed()} has graph mode with graph updates only: leave it True"
            )
        self.value = value

    @classmethod
    def current_value(cls) -> bool:
        """The setting in effect: always True before flax 0.12.6."""
        return True

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

    def __call__(self, f: F) -> F:
        return f


class set_graph_mode(_GraphModeSetting):
    """flax 0.12.6's ``nnx.set_graph_mode(value)`` (a setting, a ``with`` block or a decorator).

    Graph mode is the only mode before flax 0.12.6: ``True`` is honoured; ``False`` (tree mode)
    raises ``ValueError``.
    """

    _means = "tree mode"


class set_graph_updates(_GraphModeSetting):
    """flax 0.12.6's ``nnx.set_graph_updates(value)`` (a setting, a ``with`` block or a
    decorator).

    The transforms of an older flax always propagate graph updates: ``True`` is honoured;
    ``False`` raises ``ValueError``.
    """

    _means = "graph mode without graph updates"


@dataclasses.dataclass(frozen=True)
class VarDefaults(Mapping[str, Any]):
    """What ``nnx.var_defaults()`` answers: the defaults of new Variables."""

    hijax: bool
    ref: bool

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(("hijax", "ref"))

    def __len__(self) -> int:
        return 2


#: The release from which each default can be changed: hijax Variables (flax 0.12.1) and
#: Variables holding array references (flax 0.11.1-0.12.0 through ``nnx.use_refs``, 0.12.3+).
_CHANGEABLE_SINCE: Final = {"hijax": "0.12.1", "ref": "0.12.3"}
#: The installed flax's stack of each default (as ``nnx.use_refs`` and ``nnx.use_hijax`` keep).
_STACKS: Final = {"hijax": "variable_hijax_stack", "ref": "mutable_variable_stack"}


def _stack(key: str) -> list[bool] | None:
    context = getattr(_nnx.variablelib, "VARIABLE_CONTEXT", None)
    return getattr(context, _STACKS[key], None)


def _default(key: str) -> bool:
    import flax

    stack = _stack(key)
    if stack:
        return bool(stack[-1])
    if key == "hijax":
        return bool(getattr(flax.config, "flax_hijax_variable", False))
    if hasattr(_nnx.variablelib, "MUTABLE_DEFAULT"):  # flax 0.10: set when flax is imported
        return bool(_nnx.variablelib.MUTABLE_DEFAULT)
    return bool(getattr(flax.config, "flax_array_ref", False))


class _VarDefaultsContext:
    """The setting ``nnx.var_defaults(...)`` made, as a ``with`` block or a decorator."""

    def __init__(self, changes: list[tuple[list[bool], bool | None, bool]]) -> None:
        self._changes = changes  # (stack, previous top or None, new value)

    def __enter__(self) -> None:
        for stack, previous, _ in self._changes:
            if previous is not None:
                stack.insert(-1, previous)

    def __exit__(self, *exc: object) -> None:
        for stack, _, _ in self._changes:
            stack.pop()

    def __call__(self, f: F) -> F:
        for stack, previous, _ in self._changes:  # a decorator sets nothing until called
            stack.pop()
            if previous is not None:
                stack.append(previous)

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for stack, _, value in self._changes:
                stack.append(value)
            try:
                return f(*args, **kwargs)
            finally:
                for stack, _, _ in self._changes:
                    stack.pop()

        return wrapper  # type: ignore[return-value]


def var_defaults(
    *, hijax: bool | None = None, ref: bool | None = None
) -> VarDefaults | _VarDefaultsContext:
    """flax 0.12.3's ``nnx.var_defaults``: without arguments the defaults of new Variables;
    with them, sets those defaults (for good, in a ``with`` block or for a decorated function).

    An older flax has no hijax Variables (before 0.12.1), and flax 0.10 fixes whether Variables
    hold array references when flax is imported (``flax_mutable_array``): the installed flax's
    default is accepted there, another value raises.

    Raises:
        ValueError: a default the installed flax cannot change.
    """
    if hijax is None and ref is None:
        return VarDefaults(hijax=_default("hijax"), ref=_default("ref"))
    wanted = {key: value for key, value in (("hijax", hijax), ("ref", ref)) if value is not None}
    for key, value in wanted.items():
        if _stack(key) is None and bool(value) != _default(key):
            raise ValueError(
                f"nnx.var_defaults({key}={value!r}) needs flax {_CHANGEABLE_SINCE[key]} or "
                f"newer (flax {_installed()} is installed, where {key} is always "
                f"{_default(key)})"
            )
    changes = []
    for key, value in wanted.items():
        stack = _stack(key)
        if stack is None:
            continue
        previous = stack[-1] if stack else None
        if stack:
            stack[-1] = value
        else:
            stack.append(value)
        changes.append((stack, previous, value))
    return _VarDefaultsContext(changes)


# --------------------------------------------------------------------------- modules


class _ServedModule(types.ModuleType):
    """A module of flax 0.12's ``nnx`` whose members are what ``nnx_compat.nnx`` serves."""

    def __init__(
        self,
        name: str,
        doc: str,
        members: Mapping[str, Callable[[], Any]],
        fallback: types.ModuleType | None = None,
    ) -> None:
        super().__init__(f"nnx_compat.nnx.{name}", doc)
        self._nnx_compat_members = members
        self._nnx_compat_fallback = fallback

    def __getattr__(self, name: str) -> Any:
        members = vars(self)["_nnx_compat_members"]
        if name in members:
            return members[name]()
        fallback = vars(self)["_nnx_compat_fallback"]
        if fallback is not None and not name.startswith("__"):
            return getattr(fallback, name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(vars(self)["_nnx_compat_members"]))


def _served(name: str) -> Any:
    """``nnx_compat.nnx.<name>`` (read when used: the namespace is being built now)."""
    return getattr(importlib.import_module("nnx_compat.nnx"), name)


def _in_graph_mode(name: str, updates: bool) -> Callable[[], Any]:
    """``nnx_compat.nnx.<name>`` taking flax 0.12's ``graph=True`` (and ``graph_updates=True``)
    as ``nnx.compat``'s does: what an older flax always does."""

    @functools.cache
    def member() -> Any:
        try:
            function = _served(name)
        except AttributeError:
            if name != "backup_keys":  # not exported by flax.nnx, even on 0.12
                raise
            function = _nnx.rnglib.backup_keys

        @functools.wraps(function)
        def in_graph_mode(*args: Any, graph: bool = True, **kwargs: Any) -> Any:
            _added._graph_mode_only(name, graph)
            if updates and not kwargs.pop("graph_updates", True):
                raise TypeError(
                    f"nnx.compat.{name}(..., graph_updates=False) needs flax 0.12.6 or newer; "
                    f"flax {_installed()}'s transforms always propagate graph updates"
                )
            return function(*args, **kwargs)

        return in_graph_mode

    return member


#: flax 0.12.6's ``nnx.compat``: these names with ``graph=True`` (and ``graph_updates=True``).
_COMPAT_GRAPH: Final = (
    "split", "state", "clone", "graphdef", "flatten", "iter_graph", "recursive_map", "view",
    "view_info", "iter_modules", "iter_children", "reseed", "backup_keys", "get_abstract_model",
)  # fmt: skip
_COMPAT_UPDATES: Final = (
    "cached_partial", "split_rngs", "fork_rngs", "jit", "shard_map", "grad", "value_and_grad",
    "custom_vjp", "vjp", "jvp", "remat", "vmap", "scan", "pmap", "while_loop", "fori_loop",
    "eval_shape", "cond", "switch", "checkify",
)  # fmt: skip

compat = _ServedModule(
    "compat",
    "flax 0.12.6's ``nnx.compat``: the graph-mode API (graph=True, graph_updates=True), which "
    "is the only mode of an older flax.",
    {
        **{name: _in_graph_mode(name, False) for name in _COMPAT_GRAPH},
        **{name: _in_graph_mode(name, True) for name in _COMPAT_UPDATES},
    },
)


def deprecated(new_fn: F) -> F:
    """flax 0.12.7's ``nnx.deprecations.deprecated``: ``new_fn`` under an old name, warning
    ``DeprecationWarning`` at each call."""

    @functools.wraps(new_fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        warnings.warn(
            f"This function is deprecated. Use {new_fn.__qualname__} instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return new_fn(*args, **kwargs)

    notice = f".. deprecated::\n   Use :func:`{new_fn.__qualname__}` instead.\n\n"
    wrapper.__doc__ = notice + (new_fn.__doc__ or "")
    return wrapper  # type: ignore[return-value]


deprecations = _ServedModule(
    "deprecations",
    "flax 0.12.7's ``nnx.deprecations``.",
    {"deprecated": lambda: deprecated},
)

#: flax 0.11's ``nnx.pytreelib`` (``nnx.object`` on flax 0.10): its public API as
#: ``nnx_compat.nnx`` serves it, and flax 0.10's ``nnx.object`` for the rest.
_PYTREELIB: Final = (
    "Data", "Object", "Pytree", "Static", "check_pytree", "data", "dataclass", "has_data",
    "is_data", "register_data_type", "static",
)  # fmt: skip
pytreelib = _ServedModule(
    "pytreelib",
    "flax 0.11's ``nnx.pytreelib``: pytree data and the base classes of NNX objects.",
    {
        **{name: functools.partial(_served, name) for name in _PYTREELIB},
        "DATA_REGISTRY": data_registry,
        "PytreeMeta": lambda: _nnx.object.ObjectMeta,
        "PytreeState": lambda: _nnx.object.ObjectState,
    },
    fallback=getattr(_nnx, "object", None),
)
