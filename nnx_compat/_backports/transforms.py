"""Backports of flax 0.12's transforms and sharding helpers for an older flax.

flax 0.12.5 - 0.12.7 added ``vjp``, ``jvp``, ``make_jaxpr`` and ``jit_partial`` (transforms
without graph updates: Variable updates inside propagate, structural ones do not),
``transform_metadata``, ``with_rngs``, ``capture`` (what ``Module.sow``/``perturb`` stored during
a call), ``as_abstract`` (and its deprecated old name ``abstract_with_sharding``); flax 0.11.2 added
``get_abstract_model`` and exported ``logical_axis_rules``. Each is built here on the installed
flax's own pieces: ``nnx.graph``'s split and merge contexts around ``jax.vjp``/``jax.jvp``/
``jax.make_jaxpr``/``jax.jit``, ``nnx.eval_shape``, ``nnx.get_partition_spec``, ``nnx.pop``,
``flax.core.spmd``.

Graph mode is the only mode before flax 0.12.6: ``graph=False`` raises a ``TypeError`` that names
the release. As on flax 0.12.8, the default of the transforms (graph mode with graph updates)
raises: they run with ``graph_updates=False``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

import jax
from flax.core import spmd as _core_spmd

from nnx_compat import _containers, _versions
from nnx_compat._backports.graph import raw_value as _raw

__all__ = [
    "abstract_with_sharding",
    "as_abstract",
    "capture",
    "get_abstract_model",
    "jit_partial",
    "jvp",
    "logical_axis_rules",
    "make_jaxpr",
    "transform_metadata",
    "vjp",
    "with_rngs",
]

_nnx: Any = _versions.import_nnx()
_graph: Any = _nnx.graph
_Variable: Final[type] = _nnx.Variable
#: flax 0.12's ``nnx.PARTITION_NAME``: the key of ``transform_metadata``'s axis name.
_PARTITION_NAME: Final = "partition_name"


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final[Any] = _Missing()
#: What the tree-mode error of a transform without graph updates suggests instead.
_NO_UPDATES: Final = "pass graph_updates=False (graph mode without graph updates)"


def _graph_only(name: str, graph: bool | None, instead: str = "drop graph=") -> None:
    if graph not in (None, True):
        raise TypeError(
            f"nnx.{name}(..., graph={graph!r}) needs flax 0.12.6 or newer (tree mode); flax "
            f"{_versions.installed_version('flax')} has graph mode only: {instead}"
        )


def _without_updates(name: str, graph: bool | None, graph_updates: bool | None) -> None:
    """flax 0.12's check of a transform that has no graph updates, then graph mode only."""
    _graph_only(name, graph, _NO_UPDATES)
    if graph_updates is None or graph_updates:
        raise NotImplementedError(
            f"graph-mode with graph_updates is not supported for nnx.{name}. "
            "Set graph=False or graph_updates=False."
        )


def _unbound(f: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``f`` itself; a bound method of a Module raises as on flax 0.12 (under partials too)."""
    inner = f
    while isinstance(inner, functools.partial):
        inner = inner.func
    if inspect.ismethod(inner) and isinstance(inner.__self__, _nnx.Module):
        raise ValueError(
            f"nnx.{name} does not support bound methods. Use the decorator form @nnx.{name} "
            f"or call nnx.{name}(MyClass.method)(instance, ...) with the unbound method."
        )
    return f


# --------------------------------------------------------------------------- graph <-> tree


def _is_node(x: Any) -> bool:
    return isinstance(x, _Variable) or _graph.is_graph_node(x)


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class _Split:
    """A graph node (or Variable) of a pytree as its graphdef (static) and state (leaves)."""

    graphdef: Any
    state: Any

    def tree_flatten(self) -> tuple[tuple[Any], Any]:
        return (self.state,), self.graphdef

    @classmethod
    def tree_unflatten(cls, graphdef: Any, children: Sequence[Any]) -> _Split:
        return cls(graphdef, children[0])


def _is_split(x: Any) -> bool:
    return isinstance(x, _Split)


def _to_tree(tree: Any) -> Any:
    """``tree`` with each graph node split, references shared across the whole tree."""
    with _graph.split_context() as ctx:
        return jax.tree.map(
            lambda x: _Split(*ctx.split(x)) if _is_node(x) else x, tree, is_leaf=_is_node
        )


def _from_tree(tree: Any) -> Any:
    """The inverse of :func:`_to_tree`: new graph nodes, their sharing restored."""
    with _graph.merge_context() as ctx:
        return jax.tree.map(
            lambda x: ctx.merge(x.graphdef, x.state) if _is_split(x) else x,
            tree,
            is_leaf=_is_split,
        )


def _key(part: Any) -> str:
    return f"[{part}]" if isinstance(part, int) else f".{part}"


def _variables(tree: Any, label: str = "") -> list[tuple[str, Any]]:
    """``(path, variable)`` of each Variable in ``tree`` once, in a fixed order."""
    seen: set[int] = set()
    found: list[tuple[str, Any]] = []
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_node)[0]
    for keys, leaf in leaves:
        if not _is_node(leaf):
            continue
        where = label + jax.tree_util.keystr(keys)
        pairs = [((), leaf)] if isinstance(leaf, _Variable) else _graph.iter_graph(leaf)
        for path, value in pairs:
            if isinstance(value, _Variable) and id(value) not in seen:
                seen.add(id(value))
                found.append((where + "".join(_key(p) for p in path), value))
    return found


def _captured(variable: Any) -> bool:
    """Whether a Variable comes from outside the transform being traced (it cannot be
    updated here: flax 0.12's ``_can_update``)."""
    can_update = getattr(variable, "_can_update", None)
    if can_update is not None:
        return not can_update
    trace_state = getattr(variable, "_trace_state", None)
    return trace_state is not None and not trace_state.is_valid()


def _check_no_aliases(
    name: str, inputs: list[tuple[str, Any]], out: Any, *, captured: bool = True
) -> None:
    """flax 0.12's errors for an output Variable captured from outside the transform (where
    ``captured``) and for an input Variable returned as an output."""
    given = {id(v): path for path, v in inputs}
    for path, variable in _variables(out, ".out"):
        if captured and _captured(variable):
            raise ValueError(
                f"Cannot return captured Variable of type {type(variable).__name__} from "
                f"nnx.{name}.\nFound at path: {path}"
            )
        if id(variable) in given:
            raise ValueError(
                f"Duplicate {variable}\nfound at paths:\n\n  - {given[id(variable)]}\n"
                f"  - {path}\n\nnnx.{name} with graph_updates=False does not support Variable "
                "aliasing (duplicate inputs, duplicate outputs, or input Variables returned as "
                "outputs). Consider the following options:\n\n1. Remove the duplicate "
                "Variables.\n2. Create new Variables via nnx.clone() and use those instead."
            )


def _set_raw(variable: Any, value: Any) -> None:
    setter = getattr(variable, "set_raw_value", None)
    if setter is not None:
        setter(value)
    else:
        variable.raw_value = value


def _snapshot(variables: list[tuple[str, Any]]) -> list[tuple[Any, dict[str, Any]]]:
    return [(_raw(v), dict(v.get_metadata())) for _, v in variables]


def _changed(variable: Any, before: tuple[Any, dict[str, Any]]) -> bool:
    value, metadata = before
    return _raw(variable) is not value or dict(variable.get_metadata()) != metadata


def _updates(variables: list[tuple[str, Any]], before: list[Any]) -> list[Any]:
    """The new state of each Variable the function changed (None for the others)."""
    return [
        v.to_state() if _changed(v, b) else None
        for (_, v), b in zip(variables, before, strict=True)
    ]


def _apply(variables: list[tuple[str, Any]], updates: list[Any]) -> None:
    for (_, variable), update in zip(variables, updates, strict=True):
        if update is not None:
            variable.update_from_state(update)


def _check_mode_args(
    name: str, graph: bool | None, graph_updates: bool | None, reduce_axes: Sequence[Any] = ()
) -> None:
    _without_updates(name, graph, graph_updates)
    if reduce_axes:
        raise NotImplementedError(f"reduce_axes argument to {name} is deprecated")


# --------------------------------------------------------------------------- vjp, jvp


def vjp(
    f: Any = _MISSING,
    *primals: Any,
    has_aux: bool = False,
    reduce_axes: Sequence[Any] = (),
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """flax 0.12.5's ``nnx.vjp(f, *primals)``: ``jax.vjp`` over graph nodes, returning
    ``(primals_out, vjp_fn)`` (``(primals_out, vjp_fn, aux)`` with ``has_aux``); ``vjp_fn(g)``
    gives a gradient per primal (Modules for Modules). Variables that ``f`` updates are updated.
    ``nnx.vjp(f)`` and ``nnx.vjp(has_aux=...)`` are partial forms. Needs
    ``graph_updates=False``."""
    _check_mode_args("vjp", graph, graph_updates, reduce_axes)
    if f is _MISSING:
        return functools.partial(vjp, has_aux=has_aux, graph=graph, graph_updates=graph_updates)
    f = _unbound(f, "vjp")
    if not primals:
        return functools.partial(vjp, f, has_aux=has_aux, graph=graph, graph_updates=graph_updates)
    outer = _variables(primals, ".primals")

    def pure(*tree: Any) -> tuple[Any, tuple[list[Any], Any]]:
        inner_primals = _from_tree(tree)
        inner = _variables(inner_primals, ".primals")
        before = _snapshot(inner)
        out = f(*inner_primals)
        _check_no_aliases("vjp", inner, out)
        out, aux = out if has_aux else (out, None)
        return _to_tree(out), (_updates(inner, before), _to_tree(aux))

    out, raw_vjp_fn, (updates, aux) = jax.vjp(pure, *_to_tree(primals), has_aux=True)
    _apply(outer, updates)

    def vjp_fn(g: Any) -> Any:
        return _from_tree(raw_vjp_fn(g))

    if has_aux:
        return _from_tree(out), vjp_fn, _from_tree(aux)
    return _from_tree(out), vjp_fn


def jvp(
    f: Any = _MISSING,
    primals: Any = _MISSING,
    tangents: Any = _MISSING,
    *,
    has_aux: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """flax 0.12.5's ``nnx.jvp(f, primals, tangents)``: ``jax.jvp`` over graph nodes, returning
    ``(primals_out, tangent_out)`` (and ``aux`` with ``has_aux``); a Module's tangent is a
    Module of the same structure. Variables that ``f`` updates are updated. ``nnx.jvp(f)`` and
    ``nnx.jvp(has_aux=...)`` are partial forms. Needs ``graph_updates=False``."""
    _check_mode_args("jvp", graph, graph_updates)
    if f is _MISSING:
        return functools.partial(jvp, has_aux=has_aux, graph=graph, graph_updates=graph_updates)
    f = _unbound(f, "jvp")
    if primals is _MISSING or tangents is _MISSING:
        return functools.partial(jvp, f, has_aux=has_aux, graph=graph, graph_updates=graph_updates)
    outer = _variables(primals, ".primals")

    def pure(*tree: Any) -> Any:
        inner_primals = _from_tree(tree)
        inner = _variables(inner_primals, ".primals")
        before = _snapshot(inner)
        out = f(*inner_primals)
        _check_no_aliases("jvp", inner, out)
        out, aux = out if has_aux else (out, None)
        result = (_to_tree(out), _updates(inner, before))
        return (result, _to_tree(aux)) if has_aux else result

    tree, tangent_tree = _to_tree(tuple(primals)), _to_tree(tuple(tangents))
    if has_aux:
        (out, updates), (tangent_out, _), aux = jax.jvp(pure, tree, tangent_tree, has_aux=True)
    else:
        (out, updates), (tangent_out, _) = jax.jvp(pure, tree, tangent_tree)
    _apply(outer, updates)
    if has_aux:
        return _from_tree(out), _from_tree(tangent_out), _from_tree(aux)
    return _from_tree(out), _from_tree(tangent_out)


# --------------------------------------------------------------------------- make_jaxpr


def make_jaxpr(
    f: Any = _MISSING,
    *,
    graph: bool | None = None,
    graph_updates: bool | None = None,
    static_argnums: int | Sequence[int] = (),
) -> Any:
    """flax 0.12.7's ``nnx.make_jaxpr(f)``: ``jax.make_jaxpr`` of ``f`` taking graph nodes, whose
    Variables are the jaxpr's inputs (each once, in the order of their state). Needs
    ``graph_updates=False``."""
    if f is _MISSING:
        return functools.partial(
            make_jaxpr, graph=graph, graph_updates=graph_updates, static_argnums=static_argnums
        )
    _graph_only("make_jaxpr", graph, _NO_UPDATES)
    if graph_updates is None or graph_updates:
        raise ValueError("nnx.make_jaxpr does not support graph_updates=True.")
    f = _unbound(f, "make_jaxpr")

    def pure(*args: Any, **kwargs: Any) -> Any:
        args, kwargs = _from_tree((args, kwargs))
        out = f(*args, **kwargs)
        inputs = _variables((args, kwargs), ".args")
        _check_no_aliases("make_jaxpr", inputs, out, captured=False)
        return _to_tree(out)

    maker = jax.make_jaxpr(pure, static_argnums=static_argnums)

    @functools.wraps(f)
    def jaxpr_wrapper(*args: Any, **kwargs: Any) -> Any:
        args, kwargs = _to_tree((args, kwargs))
        return maker(*args, **kwargs)

    return jaxpr_wrapper


# --------------------------------------------------------------------------- jit_partial


def _no_variables(args: Any) -> None:
    leaves = jax.tree.leaves(args, is_leaf=_is_node)
    if any(_is_node(leaf) for leaf in leaves):
        raise ValueError(
            "Found Variable in non-partial arguments. "
            "jit_partial only supports Variables in partial arguments."
        )


@dataclasses.dataclass(frozen=True)
class _Stage:
    """A stage of ``jax.jit``'s ahead-of-time path for :func:`jit_partial`'s function: jax's
    own object, whose later stages and call bind the partial arguments."""

    inner: Any
    owner: JitPartial

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def lower(self, *args: Any, **kwargs: Any) -> _Stage:
        return _Stage(self.inner.lower(*args, **kwargs), self.owner)

    def compile(self, *args: Any, **kwargs: Any) -> _Stage:
        return _Stage(self.inner.compile(*args, **kwargs), self.owner)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.owner._run(self.inner, args, kwargs)


class JitPartial:
    """What :func:`jit_partial` returns: call it with the remaining arguments."""

    def __init__(
        self,
        fun: Callable[..., Any],
        partial_args: tuple[Any, ...],
        jit_kwargs: dict[str, Any],
        in_shardings: Any,
        out_shardings: Any,
        donate_argnums: Any,
    ) -> None:
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.partial_args = partial_args
        donated = (donate_argnums,) if isinstance(donate_argnums, int) else donate_argnums
        self._donate_partial = 0 in (donated or ())
        if isinstance(in_shardings, tuple | list):
            count = len(partial_args)
            in_shardings = (tuple(in_shardings[:count]), *in_shardings[count:])
        self.jitted_fn = jax.jit(
            self._pure,
            in_shardings=in_shardings,
            out_shardings=(out_shardings, None),
            donate_argnums=donate_argnums,
            **jit_kwargs,
        )

    def _pure(self, tree: Any, *args: Any, **kwargs: Any) -> tuple[Any, list[Any]]:
        partial = _from_tree(tree)
        inner = _variables(partial, ".args")
        before = _snapshot(inner)
        out = self.fun(*partial, *args, **kwargs)
        _check_no_aliases("jit", inner, out)
        updates: list[Any] = []
        for (path, variable), (value, metadata) in zip(inner, before, strict=True):
            if dict(variable.get_metadata()) != metadata:
                raise ValueError(
                    f"Variable metadata changed inside jit at path {path}. "
                    "Changing Variable metadata inside jit is not supported."
                )
            changed = _raw(variable) is not value
            updates.append(_raw(variable) if changed or self._donate_partial else None)
        return _to_tree(out), updates

    def _run(self, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        _no_variables((args, kwargs))
        outer = _variables(self.partial_args)
        out, updates = call(_to_tree(self.partial_args), *args, **kwargs)
        for (_, variable), value in zip(outer, updates, strict=True):
            if value is not None:
                _set_raw(variable, value)
        return _from_tree(out)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._run(self.jitted_fn, args, kwargs)

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else functools.partial(self, obj)

    def eval_shape(self, *args: Any, **kwargs: Any) -> Any:
        _no_variables((args, kwargs))
        tree = _to_tree(self.partial_args)
        out, _ = self.jitted_fn.eval_shape(tree, *args, **kwargs)  # type: ignore[no-untyped-call]
        return _from_tree(out)

    def trace(self, *args: Any, **kwargs: Any) -> _Stage:
        return _Stage(self.jitted_fn.trace(_to_tree(self.partial_args), *args, **kwargs), self)

    def lower(self, *args: Any, **kwargs: Any) -> _Stage:
        return _Stage(self.jitted_fn.lower(_to_tree(self.partial_args), *args, **kwargs), self)


def jit_partial(
    fun: Callable[..., Any],
    *partial_args: Any,
    in_shardings: Any = None,
    out_shardings: Any = None,
    static_argnums: int | Sequence[int] | None = None,
    static_argnames: str | Sequence[str] | None = None,
    donate_argnums: int | Sequence[int] | None = None,
    donate_argnames: str | Sequence[str] | None = None,
    keep_unused: bool = False,
    device: Any = None,
    backend: str | None = None,
    inline: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> JitPartial:
    """flax 0.12.5's ``nnx.jit_partial(fun, *partial_args)``: ``fun`` compiled with its first
    arguments bound; the Variables of those are read at each call (a new value does not
    recompile) and updated from what ``fun`` did to them. Arguments given at the call hold no
    Variables. As for ``jax.jit``, argument 0 of ``static_argnums``/``donate_argnums`` is the
    bound arguments. Needs ``graph_updates=False``."""
    _graph_only("jit_partial", graph, _NO_UPDATES)
    if graph_updates is None or graph_updates:
        raise ValueError("`graph_updates` not supported by `jit_partial`")
    _check_prefix(in_shardings, "in_shardings", "jit_partial")
    for name, shardings in (("in_shardings", in_shardings), ("out_shardings", out_shardings)):
        if any(type(x).__name__ == "StateSharding" for x in jax.tree.leaves(shardings)):
            raise ValueError(f"`{name}` cannot contain `StateSharding` objects in `jit_partial`")
    jit_kwargs = {
        "static_argnums": static_argnums,
        "static_argnames": static_argnames,
        "donate_argnames": donate_argnames,
        "keep_unused": keep_unused,
        "device": device,
        "backend": backend,
        "inline": inline,
    }
    return JitPartial(fun, partial_args, jit_kwargs, in_shardings, out_shardings, donate_argnums)


# --------------------------------------------------------------------------- transform_metadata


def _sharding_key() -> str:
    return _versions.sharding_metadata_key()


def _set_metadata(variable: Any, key: str, value: Any) -> None:
    setter = getattr(variable, "set_metadata", None)
    if setter is not None:
        setter(key, value)
    else:  # before flax 0.12: a Variable's attributes other than its value are metadata
        setattr(variable, key, value)


def _insert(fields: tuple[Any, ...], index: int, value: Any) -> tuple[Any, ...]:
    items = list(fields)
    items.extend([None] * (index - len(items)))
    items.insert(index, value)
    return tuple(items)


def _remove(fields: tuple[Any, ...], index: int, value: Any) -> tuple[Any, ...]:
    items = list(fields)
    removed = items.pop(index)
    if removed != value:
        raise ValueError(
            f"Expected to remove {value!r} at index {index} from {fields!r}, but found {removed!r}."
        )
    return tuple(items)


def _axis_metadata(variable: Any, index: int, metadata: Mapping[str, Any], add: bool) -> None:
    """flax 0.12's ``spmd.add_axis``/``remove_axis`` on one Variable, under the installed
    flax's sharding key: an empty annotation gains no axis (as on flax 0.12.8)."""
    others = dict(metadata)
    name = others.pop(_PARTITION_NAME)
    change = _insert if add else _remove
    names = variable.get_metadata().get(_sharding_key())
    if names if add else names is not None:  # an empty annotation gains no axis (as there)
        _set_metadata(variable, _sharding_key(), change(tuple(names), index, name))
    for key, value in others.items():
        fields = variable.get_metadata().get(key)
        if fields and isinstance(fields, tuple):
            _set_metadata(variable, key, change(fields, index, value))
    if add:
        variable.add_axis(index, name)
    else:
        variable.remove_axis(index, name)


def _each_axis(axes: Any, tree: Any, visit: Callable[[Any, int], None]) -> None:
    """``visit(variable, axis)`` for each Variable of ``tree`` under an int of the prefix
    ``axes``."""

    def apply(axis: Any, subtree: Any) -> None:
        if isinstance(axis, int):
            for _, variable in _variables(subtree):
                visit(variable, axis)

    jax.tree.map(apply, axes, tree, is_leaf=lambda x: x is None)


def _check_prefix(prefix: Any, prefix_name: str, name: str) -> None:
    def check(path: Any, leaf: Any) -> None:
        where = jax.tree_util.keystr(path)
        if isinstance(leaf, _Variable):
            raise ValueError(
                f"Found Variable of type {type(leaf).__name__} at path {where} in "
                f"`{prefix_name}` for nnx.{name}. Variables prefixes are not supported."
            )
        if _graph.is_graph_node(leaf):
            raise ValueError(
                f"Found graph node of type {type(leaf).__name__} at path {where} in "
                f"`{prefix_name}` for nnx.{name}. Graph nodes are not allowed as prefixes "
                "when graph=True."
            )

    jax.tree_util.tree_map_with_path(check, prefix, is_leaf=lambda x: x is None or _is_node(x))


def _positional(f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if isinstance(f, functools.partial):
        return args if not kwargs else _kwargs_error()
    bound = inspect.signature(f).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound.args if not bound.kwargs else _kwargs_error()


def _kwargs_error() -> Any:
    raise TypeError("keyword arguments could not be resolved to positions")


def transform_metadata(
    f: Any = _MISSING,
    *,
    in_axes: Any = 0,
    out_axes: Any = 0,
    partition: str | None,
    graph: bool | None = None,
) -> Any:
    """flax 0.12.6's ``nnx.transform_metadata(f, in_axes=, out_axes=, partition=)``: ``f``
    called on copies of its arguments whose Variables' sharding annotations lack the axis that
    an int of ``in_axes`` names (``partition`` there), and the axis added back on the way out,
    to the arguments and to the Variables of the output under ``out_axes``. Variables that
    ``f`` updates are updated. Graph mode only."""
    if f is _MISSING:
        return functools.partial(
            transform_metadata,
            in_axes=in_axes,
            out_axes=out_axes,
            partition=partition,
            graph=graph,
        )
    _graph_only("transform_metadata", graph)
    metadata = {_PARTITION_NAME: partition}
    _check_prefix(in_axes, "in_axes", "transform_metadata")
    _check_prefix(out_axes, "out_axes", "transform_metadata")

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        args = tuple(_positional(f, args, kwargs))
        outer = _variables(args, ".args")
        inner_args = _from_tree(jax.tree.map(_copy_state, _to_tree(args), is_leaf=_is_split))
        inner = _variables(inner_args, ".args")
        _each_axis(in_axes, inner_args, lambda v, i: _axis_metadata(v, i, metadata, False))
        before = _snapshot(inner)
        out = f(*inner_args)
        _check_no_aliases("transform_metadata", inner, out)
        _each_axis(in_axes, inner_args, lambda v, i: _axis_metadata(v, i, metadata, True))
        out = _from_tree(_to_tree(out))
        _each_axis(out_axes, out, lambda v, i: _axis_metadata(v, i, metadata, True))
        _apply(outer, _updates(inner, before))
        return out

    return wrapper


def _copy_state(x: Any) -> Any:
    return _Split(x.graphdef, jax.tree.map(lambda a: a, x.state)) if _is_split(x) else x


# --------------------------------------------------------------------------- with_rngs


def with_rngs(
    node: Any = _MISSING,
    /,
    *,
    split: Any = None,
    fork: Any = None,
    broadcast: Any = None,
    only: Any = True,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """flax 0.12.7's ``nnx.with_rngs(node, split=, fork=, broadcast=, only=)``: a copy of
    ``node`` (sharing its Variables) whose RNG streams that ``only`` selects are replaced by
    ``stream.split(n)``, ``stream.broadcast(n)`` or ``stream.fork()`` by the first filter of
    each rule that matches; each draws a key from the original stream. As a decorator it does
    so to the function's arguments. Needs ``graph_updates=False``."""
    _graph_only("with_rngs", graph, _NO_UPDATES)
    if graph_updates is None or graph_updates:
        raise NotImplementedError(
            "graph=True and graph_updates=True is not supported for `with_rngs`"
        )
    if node is _MISSING:

        def with_rngs_decorator(f: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(f)
            def with_rngs_wrapper(*args: Any, **kwargs: Any) -> Any:
                args, kwargs = with_rngs(
                    (args, kwargs),
                    split=split,
                    fork=fork,
                    broadcast=broadcast,
                    only=only,
                    graph=graph,
                    graph_updates=False,
                )
                return f(*args, **kwargs)

            return with_rngs_wrapper

        return with_rngs_decorator
    from nnx_compat import _added, _rngs

    splits = _rules(split)
    broadcasts = _rules(broadcast)
    forks = [] if fork is None else [fork] if isinstance(fork, str) else fork
    if not isinstance(forks, Sequence):
        forks = [forks]
    fork_rules = [(f, _filter(f)) for f in forks]
    selected = _filter(only)

    def update(path: tuple[Any, ...], value: Any) -> Any:
        if not isinstance(value, _nnx.RngStream) or not selected(path, value):
            return value
        results: dict[str, tuple[Any, ...]] = {}
        for kind, rules in (("split", splits), ("broadcast", broadcasts)):
            for f, predicate, shape in rules:
                if predicate(path, value):
                    results[kind] = (f, shape)
                    break
        for f, predicate in fork_rules:
            if predicate(path, value):
                results["fork"] = (f,)
                break
        specific = [kind for kind, rule in results.items() if rule[0] not in (..., True)]
        if len(results) > 1 and len(specific) > 1:
            lines = "\n".join(f"  - {k} matches filter {r[0]!r}" for k, r in results.items())
            raise ValueError(f"RngStream at path {path} matches multiple rules:\n{lines}")
        if "split" in results:
            return _added._stream_split(value, results["split"][1])
        if "broadcast" in results:
            return _added._stream_broadcast(value, results["broadcast"][1])
        if "fork" in results:
            return _rngs.new_stream(value(), _rngs.stream_tag(value))
        return value

    from nnx_compat._backports.graph import recursive_map

    return recursive_map(update, node)


def _filter(filter_: Any) -> Callable[[Any, Any], bool]:
    from nnx_compat import _rngs

    predicate: Callable[[Any, Any], bool] = _rngs.stream_predicate(filter_)
    return predicate


def _rules(rule: Any) -> list[tuple[Any, Callable[[Any, Any], bool], Any]]:
    if rule is None:
        return []
    table = {...: rule} if isinstance(rule, int | tuple) else rule
    return [(f, _filter(f), shape) for f, shape in table.items()]


# --------------------------------------------------------------------------- capture


def _modules(node: Any) -> Iterator[tuple[tuple[Any, ...], Any]]:
    for path, value in _graph.iter_graph(node):
        if isinstance(value, _nnx.Module):
            yield path, value


def _by_module(init: Any) -> dict[tuple[Any, ...], dict[str, Any]]:
    """``init``'s Variables by the path of the Module that holds them."""
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    for path, leaf in _nnx.to_flat_state(init):
        found.setdefault(tuple(path[:-1]), {})[path[-1]] = leaf
    return found


def _leaf_type(leaf: Any) -> type:
    """A state leaf's Variable type (flax 0.10's ``VariableState`` names it)."""
    return type(leaf) if isinstance(leaf, _Variable) else leaf.type  # type: ignore[no-any-return]


@contextlib.contextmanager
def _method_outputs(node: Any, table: dict[int, dict[str, Any]]) -> Iterator[None]:
    """flax 0.12's ``capture(method_outputs=)``: while the call runs, each public method (and
    ``__call__``) of the Modules' classes records its results in ``table`` by Module and name
    (a side table: a method's name is an attribute of the Module, where ``sow`` stores)."""
    patched: list[tuple[type, str, Any]] = []
    for _, module in _modules(node):
        cls = type(module)
        for name, method in list(vars(cls).items()):
            public = not name.startswith("_") or name == "__call__"
            if callable(method) and public and not getattr(method, "_records", False):
                patched.append((cls, name, method))
                setattr(cls, name, _recording(method, name, table))
    try:
        yield
    finally:
        for cls, name, method in reversed(patched):
            setattr(cls, name, method)


def _recording(method: Any, name: str, table: dict[int, dict[str, Any]]) -> Any:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = method(self, *args, **kwargs)
        outputs = table.setdefault(id(self), {})
        outputs[name] = (*outputs.get(name, ()), result)  # sow's default: a tuple of results
        return result

    wrapper._records = True  # type: ignore[attr-defined]
    return wrapper


def capture(fn: Any, *var_types: type, init: Any = None, method_outputs: type | None = None) -> Any:
    """flax 0.12.6's ``nnx.capture(fn, *var_types, init=, method_outputs=)``: ``fn`` returning
    ``(result, state)`` (a state per type; ``result`` alone without types) of what
    ``Module.sow``/``Module.perturb`` stored during the call, by Module path, the Modules left
    as they were. ``fn`` is a function of the Module, a Module or its bound method; a Variable
    type first gives the decorator. ``init``: a state of values perturbations start from.
    ``method_outputs``: a Variable type each method's results are captured as, by its name.

    As flax 0.12.6 does, each Module holds ``__captures__`` while the call runs: a tuple of one
    Variable per captured type, holding a dict by name, where ``sow`` and ``perturb`` store
    (``nnx_compat._backports.members`` gives an older flax's Module those two)."""
    if isinstance(fn, type) and issubclass(fn, _Variable):
        types = (fn, *var_types)
        return lambda actual: capture(actual, *types, init=init, method_outputs=method_outputs)
    if inspect.ismethod(fn) and isinstance(fn.__self__, _nnx.Module):
        owner = fn.__self__
    elif isinstance(fn, _nnx.Module):
        owner = fn
    else:
        owner = None
    initial = _by_module(init) if init else {}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        module = args[0] if owner is None else owner
        for path, m in _modules(module):
            values: dict[type, dict[str, Any]] = {t: {} for t in var_types}
            for name, leaf in initial.get(path, {}).items():
                values.setdefault(_leaf_type(leaf), {})[name] = _raw(leaf)
            m.__captures__ = _containers.data(tuple(t(v) for t, v in values.items()))
        outputs: dict[int, dict[str, Any]] = {}
        with _method_outputs(module, outputs) if method_outputs else contextlib.nullcontext():
            result = fn(*args, **kwargs)
        flat: dict[tuple[Any, ...], Any] = {}
        for path, m in _modules(module):
            if method_outputs in var_types:
                for name, results in outputs.get(id(m), {}).items():
                    flat[(*path, name)] = method_outputs(results)  # type: ignore[misc]
            for variable in vars(m).get("__captures__", ()):
                if type(variable) in var_types:
                    for name, value in _raw(variable).items():
                        flat[(*path, name)] = type(variable)(value)
            if "__captures__" in vars(m):
                delattr(m, "__captures__")
        if not var_types:
            return result
        state = _nnx.from_flat_state({p: _as_leaf(v) for p, v in flat.items()})
        groups = _nnx.split_state(state, *var_types)
        return (result, groups) if len(var_types) == 1 else (result, *groups)

    return wrapper


def _as_leaf(variable: Any) -> Any:
    """A new Variable as a state leaf (flax 0.10's states hold ``VariableState``s)."""
    return variable if _versions.feature("STATE_SHARES_VARIABLES") else variable.to_state()


# --------------------------------------------------------------------------- sharding


def _mesh_context(mesh: Any) -> Any:
    """The mesh as the current one (``jax.set_mesh``; ``jax.sharding.use_mesh`` before it)."""
    setter = getattr(jax, "set_mesh", None) or jax.sharding.use_mesh  # type: ignore[attr-defined]
    return setter(mesh)


def get_abstract_model(init_fn: Callable[[], Any], mesh: Any, *, graph: bool | None = None) -> Any:
    """flax 0.11.2's ``nnx.get_abstract_model(init_fn, mesh)``: ``(graphdef, state)`` of the
    model ``init_fn`` builds, its values ``jax.ShapeDtypeStruct`` with the ``NamedSharding``
    of each Variable's annotation on ``mesh``, nothing computed. Graph mode only."""
    _graph_only("get_abstract_model", graph)
    with _mesh_context(mesh):
        graphdef, state = _nnx.split(_nnx.eval_shape(init_fn))
        shardings = _nnx.get_named_sharding(state, mesh)
        state = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),  # type: ignore[no-untyped-call]
            state,
            shardings,
        )
    return graphdef, state


def as_abstract(tree: Any, graph: bool | None = None) -> Any:
    """flax 0.12.7's ``nnx.as_abstract(tree)``: a copy of ``tree`` whose abstract Variables
    (shaped values without a sharding) that carry a sharding annotation hold a
    ``jax.ShapeDtypeStruct`` with the annotation's ``NamedSharding`` on the Variable's ``mesh``
    metadata, else on the current abstract mesh. Graph mode only."""
    _graph_only("as_abstract", graph)
    key = _sharding_key()

    def add_sharding(path: Any, leaf: Any) -> Any:
        value = _raw(leaf)
        metadata = leaf.get_metadata()
        if (
            not hasattr(value, "shape")
            or not hasattr(value, "dtype")
            or getattr(value, "sharding", None) is not None
            or key not in metadata
        ):
            return leaf
        mesh = metadata["mesh"] if "mesh" in metadata else jax.sharding.get_abstract_mesh()
        spec = _raw(_nnx.get_partition_spec(_nnx.State({"v": leaf}))["v"])
        sharding = jax.sharding.NamedSharding(mesh, spec)
        abstract = jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=sharding)  # type: ignore[no-untyped-call]
        return leaf.replace(abstract)

    graphdef, state = _nnx.split(tree)
    flat = {path: add_sharding(path, leaf) for path, leaf in _nnx.to_flat_state(state)}
    return _nnx.merge(graphdef, _nnx.from_flat_state(flat))


def abstract_with_sharding(*args: Any, **kwargs: Any) -> Any:
    """flax 0.12.6's name of :func:`as_abstract` (deprecated in 0.12.7: it warns, as there)."""
    warnings.warn(
        "This function is deprecated. Use as_abstract instead.", DeprecationWarning, stacklevel=2
    )
    return as_abstract(*args, **kwargs)


#: flax 0.11.2 exports ``flax.core.spmd.logical_axis_rules`` as ``nnx.logical_axis_rules``;
#: flax 0.10 has the same function there.
logical_axis_rules: Final = _core_spmd.logical_axis_rules
