"""``nnx.split``, ``nnx.state`` and ``nnx.merge``: the installed flax's semantics, and the
captured-state merge of flax 0.10's functional API.

flax 0.10's ``split``/``state`` returned copies (``VariableState``) and ``merge`` built new
Variables. Since flax 0.11.0 they share the model's Variables. Two patterns of 0.10 code depend
on the copies:

* the functional API's ``nnx.merge(graphdef, captured_state)`` inside ``jax.grad`` under
  ``jax.jit``, followed by a mutation (a counter, BatchNorm statistics, an RNG count): the
  merged model holds Variables of the outer trace, and flax 0.11+ raises ``TraceContextError``
  at the mutation;
* ``snapshot = nnx.state(model)``, in-place training, ``nnx.update(model, snapshot)``: the
  snapshot moves with the model on 0.11+, so the update restores nothing.

The first *fails* on the installed flax, so it is bridged: a merge from user code whose states
hold Variables of an outer trace gives the node copies of exactly those Variables (the others are
shared, as natively), and the first mutation of such a copy warns ``state-copies`` at the merge's
line. A node that is only read behaves as natively and warns nothing. The second *succeeds with a
different meaning*, so the installed flax's meaning stands for everyone (``state-snapshot`` in the
pattern table; ``nnx.state(model, copy=True)`` or ``nnx.clone`` make a snapshot on every flax).

``copy=True`` copies on every flax; ``copy=False`` shares where the installed flax can (0.11+)
and raises a ``TypeError`` naming the requirement on flax 0.10.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

import jax

from nnx_compat import _paths, _variables, _versions, _warnings

__all__ = ["merge", "patch", "restore", "split", "state"]

_nnx: Any = _versions.import_nnx()
# flax's graph module: install() patches the attributes of flax.nnx, never these
_native_split: Any = _nnx.graph.split
_native_state: Any = _nnx.graph.state
_native_merge: Any = _nnx.graph.merge

#: flax 0.11.0: states hold the model's own Variables.
_SHARES: Final = _versions.feature("STATE_SHARES_VARIABLES")
#: flax 0.11.2: nnx.merge shares the states' Variables by default, and takes copy=.
_MERGE_SHARES: Final = _versions.feature("MERGE_SHARES_VARIABLES")
_MERGE_COPY_ARG: Final = _versions.feature("MERGE_COPY_ARG")


F = TypeVar("F", bound=Callable[..., Any])


def _require_sharing(function: str) -> None:
    if not _SHARES:
        flax = _versions.installed_version("flax")
        raise TypeError(
            f"nnx.{function}(..., copy=False) shares the model's Variables, which needs flax "
            f"0.11 or newer; flax {flax} is installed, whose states always hold copies "
            f"(VariableState). Drop copy=False, or upgrade flax: pip install 'flax>=0.11'"
        )
    if function == "merge" and not _MERGE_SHARES:
        flax = _versions.installed_version("flax")
        raise TypeError(
            f"nnx.merge(..., copy=False) shares the states' Variables, which needs flax 0.11.2 "
            f"or newer; flax {flax}'s merge always copies them. Drop copy=False, or upgrade "
            "flax: pip install 'flax>=0.11.2'"
        )


def _is_variable(x: Any) -> bool:
    return isinstance(x, _nnx.Variable)


def _copy_variables(tree: Any) -> Any:
    """The state with each Variable replaced by its copy (``Variable.copy()``, as flax's
    ``merge(..., copy=True)`` makes); arrays and the structure are kept."""
    return jax.tree.map(lambda x: x.copy() if _is_variable(x) else x, tree, is_leaf=_is_variable)


def _outer_trace_variables(states: tuple[Any, ...]) -> dict[int, str]:
    """The Variables in ``states`` created at another trace level than the current one, which
    flax 0.11+ refuses to mutate: ``id(variable) -> path``. Variables backed by a mutable array
    (``has_ref`` on flax 0.11, ``hijax`` on 0.12) can be updated from any trace and are not
    included."""
    found: dict[int, str] = {}
    for state in states:
        for path, leaf in _paths.flatten(state).items():
            if not _is_variable(leaf) or _array_ref(leaf):
                continue
            trace = getattr(leaf, "_trace_state", None)
            if trace is not None and not trace.is_valid():
                found[id(leaf)] = path or "(the state itself)"
    return found


def _array_ref(variable: Any) -> bool:
    return bool(getattr(variable, "hijax", False) or getattr(variable, "has_ref", False))


def _copy_outer(states: tuple[Any, ...], outer: dict[int, str]) -> tuple[tuple[Any, ...], Any]:
    """``states`` with the Variables in ``outer`` replaced by copies; the copies in a list."""
    copies: list[Any] = []

    def replace(x: Any) -> Any:
        if _is_variable(x) and id(x) in outer:
            copies.append(x.copy())
            return copies[-1]
        return x

    new = tuple(jax.tree.map(replace, s, is_leaf=_is_variable) for s in states)
    return new, copies


def _signature_with_copy(native: Callable[..., Any]) -> inspect.Signature:
    """The native signature, with ``copy=None`` as a keyword-only parameter."""
    signature = inspect.signature(native)
    params = [p for p in signature.parameters.values() if p.name != "copy"]
    copy = inspect.Parameter(
        "copy", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="bool | None"
    )
    keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD)
    at = next((i for i, p in enumerate(params) if p.kind in keyword), len(params))
    return signature.replace(parameters=[*params[:at], copy, *params[at:]])


def _like(native: Callable[..., Any]) -> Callable[[F], F]:
    def decorate(shim: F) -> F:
        cast(Any, shim).__signature__ = _signature_with_copy(native)
        return shim

    return decorate


@_like(_native_split)
def split(node: Any, *filters: Any, copy: bool | None = None, **kwargs: Any) -> Any:
    """``nnx.split``, with ``copy=`` on every flax.

    Args:
        node: The graph node to split.
        *filters: Filters that partition the state, as ``nnx.split``.
        copy: ``None`` (default): the installed flax's semantics (0.10: copies; 0.11+: the
            model's own Variables). ``True``: copies. ``False``: the model's own Variables
            (flax 0.11+ only).
        **kwargs: Passed on (``graph=`` on flax 0.12.6+).

    Raises:
        TypeError: ``copy=False`` on flax 0.10.
    """
    if copy is False:
        _require_sharing("split")
    graphdef, *states = _native_split(node, *filters, **kwargs)
    if copy and _SHARES:
        states = [_copy_variables(s) for s in states]
    return (graphdef, *states)


@_like(_native_state)
def state(node: Any, *filters: Any, copy: bool | None = None, **kwargs: Any) -> Any:
    """``nnx.state``, with ``copy=`` on every flax.

    Args:
        node: The graph node whose state to take.
        *filters: Filters, as ``nnx.state``: one state per filter.
        copy: ``None`` (default): the installed flax's semantics (0.10: copies; 0.11+: the
            model's own Variables). ``True``: copies. ``False``: the model's own Variables
            (flax 0.11+ only).
        **kwargs: Passed on (``graph=`` on flax 0.12.6+).

    Raises:
        TypeError: ``copy=False`` on flax 0.10.
    """
    if copy is False:
        _require_sharing("state")
    states = _native_state(node, *filters, **kwargs)
    if copy and _SHARES:
        return _copy_variables(states)
    return states


@_like(_native_merge)
def merge(graphdef: Any, /, *states: Any, copy: bool | None = None, **kwargs: Any) -> Any:
    """``nnx.merge``, which also runs flax 0.10's functional API on flax 0.11+.

    Args:
        graphdef: The ``GraphDef`` (or, on flax 0.12, a ``GraphState``).
        *states: The states to merge.
        copy: ``None`` (default): the installed flax's semantics, except that Variables
            created at an outer trace level (a captured state merged inside ``jax.grad`` or
            ``jax.jit``) are copied, so that the node can mutate them as on flax 0.10.
            ``True``: new Variables. ``False``: the states' Variables (flax 0.11+ only).
        **kwargs: Passed on (``recreate_variables=`` on flax 0.12).

    Raises:
        TypeError: ``copy=False`` on flax 0.10.
    """
    # flax 0.12.7's nnx.merge(graph_state, ...) of the nnx.unpack backport: its GraphDef, States
    from nnx_compat._backports.graph import merge_arguments

    graphdef, states = merge_arguments(graphdef, states)
    if not _MERGE_COPY_ARG:
        if copy is False:
            _require_sharing("merge")
        return _native_merge(graphdef, *states, **kwargs)
    if copy is not None:
        return _native_merge(graphdef, *states, copy=copy, **kwargs)
    if _MERGE_SHARES and _warnings.called_from_user():
        states = _captured(states)
    return _native_merge(graphdef, *states, **kwargs)


def _captured(states: tuple[Any, ...]) -> tuple[Any, ...]:
    """``states`` with copies of the Variables of an outer trace, watched for mutation."""
    outer = _outer_trace_variables(states)
    if not outer:
        return states
    states, copies = _copy_outer(states, outer)
    _variables.on_first_mutation(copies, _merge_warning(outer, _warnings.user_site()))
    return states


# --------------------------------------------------------------------------- GraphDef.apply

_GraphDef: Final[Any] = _nnx.GraphDef
_native_apply: Final[Any] = vars(_GraphDef).get("apply")


def _apply(self: Any, state: Any, *states: Any, **kwargs: Any) -> Any:
    """``GraphDef.apply``, which also runs flax 0.10's captured-state apply on flax 0.11+."""
    every = (state, *states)
    if _warnings.called_from_user():
        every = _captured(every)
    return _native_apply(self, *every, **kwargs)


def patch() -> None:
    """Makes flax's ``GraphDef.apply`` bridge a captured state, as :func:`merge` does.

    ``graphdef.apply(state)(x)`` merges with flax's own ``merge``; where flax shares Variables
    (0.11+) a captured state of an outer trace would raise ``TraceContextError`` at its first
    mutation. Idempotent; a state from the current trace runs exactly as natively.
    """
    if (
        _MERGE_SHARES
        and _native_apply is not None
        and vars(_GraphDef).get("apply") is _native_apply
    ):
        _GraphDef.apply = functools.wraps(_native_apply)(_apply)


def restore() -> None:
    """Puts flax's own ``GraphDef.apply`` back."""
    if _native_apply is not None:
        _GraphDef.apply = _native_apply


def _merge_warning(outer: dict[int, str], site: _warnings.Site) -> Callable[[], None]:
    paths = list(outer.values())
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")

    def warn() -> None:
        _warnings.warn_legacy(
            "state-copies",
            detail=(
                f"the Variables at {shown} were created at an outer trace level and are "
                f"mutated here: flax {_versions.installed_version('flax')} shares them and "
                "raises TraceContextError; the merged node holds copies"
            ),
            site=site,
        )

    return warn
