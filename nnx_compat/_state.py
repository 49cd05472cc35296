"""``nnx.split``, ``nnx.state`` and ``nnx.merge`` with flax 0.10's copy semantics on every flax.

flax 0.10's ``split``/``state`` returned copies (``VariableState``) and ``merge`` built new
Variables. Since flax 0.11.0 they share the model's Variables (``merge(..., copy=False)`` is the
default), which breaks two patterns of 0.10 code without changing a line of it:

* the functional API's ``nnx.merge(graphdef, captured_state)`` inside ``jax.grad`` under
  ``jax.jit``, followed by a mutation (a counter, BatchNorm statistics, an RNG count): the
  merged model holds Variables of the outer trace, and mutating one raises ``TraceContextError``;
* ``snapshot = nnx.state(model)``, in-place training, ``nnx.update(model, snapshot)``: the
  snapshot moved with the model, so the update restores nothing.

These shims copy by default on every flax, as flax 0.10 did: only the Variable objects are
copied (arrays are immutable), so under ``jit`` the program and its lowered HLO are unchanged.
``copy=False`` gives flax 0.11's sharing where the installed flax has it, and raises a
``TypeError`` naming the requirement on flax 0.10. Calls made by flax's own code (and by
nnx_compat's and its other upstreams', as ``_warnings.called_from_user`` tells) get the installed
flax's semantics, so ``install()`` does not change what flax's
``Optimizer`` or ``WeightNorm`` do with them.

A merge warns (``state-copies``) only where copying changed what the installed flax would have
done in a way that can be told at the call: Variables created at an outer trace level, which
flax 0.11+ would have shared and refused to mutate.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

import jax

from nnx_compat import _paths, _versions, _warnings

__all__ = ["merge", "split", "state"]

_nnx: Any = _versions.import_nnx()
# flax's graph module: install() patches the attributes of flax.nnx, never these
_native_split: Any = _nnx.graph.split
_native_state: Any = _nnx.graph.state
_native_merge: Any = _nnx.graph.merge

#: flax 0.11.0: states hold the model's own Variables, and merge shares them by default.
_SHARES: Final = _versions.feature("STATE_SHARES_VARIABLES")
#: flax 0.11.0: nnx.merge takes copy=.
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


def _is_variable(x: Any) -> bool:
    return isinstance(x, _nnx.Variable)


def _copy_variables(tree: Any) -> Any:
    """The state with each Variable replaced by its copy (``Variable.copy()``, as flax's
    ``merge(..., copy=True)`` makes); arrays and the structure are kept."""
    return jax.tree.map(lambda x: x.copy() if _is_variable(x) else x, tree, is_leaf=_is_variable)


def _outer_trace_paths(states: tuple[Any, ...]) -> list[str]:
    """Paths of the Variables in ``states`` created at another trace level than the current."""
    paths = []
    for state in states:
        for path, leaf in _paths.flatten(state).items():
            trace = getattr(leaf, "_trace_state", None) if _is_variable(leaf) else None
            if trace is not None and not trace.is_valid():
                paths.append(path or "(the state itself)")
    return paths


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
    """``nnx.split``, returning states that hold copies of the model's Variables by default.

    Args:
        node: The graph node to split.
        *filters: Filters that partition the state, as ``nnx.split``.
        copy: ``None`` (default) or ``True``: the states hold copies of the Variables, as on
            flax 0.10. ``False``: they hold the model's own Variables (flax 0.11+ only).
            Calls from flax's own code get the installed flax's semantics.
        **kwargs: Passed on (``graph=`` on flax 0.12.6+).

    Raises:
        TypeError: ``copy=False`` on flax 0.10.
    """
    if copy is False:
        _require_sharing("split")
    graphdef, *states = _native_split(node, *filters, **kwargs)
    if _SHARES and copy is not False and (copy or _warnings.called_from_user()):
        states = [_copy_variables(s) for s in states]
    return (graphdef, *states)


@_like(_native_state)
def state(node: Any, *filters: Any, copy: bool | None = None, **kwargs: Any) -> Any:
    """``nnx.state``, returning copies of the model's Variables by default.

    Args:
        node: The graph node whose state to take.
        *filters: Filters, as ``nnx.state``: one state per filter.
        copy: ``None`` (default) or ``True``: copies, as on flax 0.10. ``False``: the
            model's own Variables (flax 0.11+ only). Calls from flax's own code get the
            installed flax's semantics.
        **kwargs: Passed on (``graph=`` on flax 0.12.6+).

    Raises:
        TypeError: ``copy=False`` on flax 0.10.
    """
    if copy is False:
        _require_sharing("state")
    states = _native_state(node, *filters, **kwargs)
    if _SHARES and copy is not False and (copy or _warnings.called_from_user()):
        return _copy_variables(states)
    return states


@_like(_native_merge)
def merge(graphdef: Any, /, *states: Any, copy: bool | None = None, **kwargs: Any) -> Any:
    """``nnx.merge``, building new Variables by default, as flax 0.10 did.

    Args:
        graphdef: The ``GraphDef`` (or, on flax 0.12, a ``GraphState``).
        *states: The states to merge.
        copy: ``None`` (default) or ``True``: the node gets new Variables. ``False``: it
            shares the states' Variables (flax 0.11+ only). Calls from flax's own code get
            the installed flax's semantics.
        **kwargs: Passed on (``recreate_variables=`` on flax 0.12).

    Raises:
        TypeError: ``copy=False`` on flax 0.10.
    """
    if not _MERGE_COPY_ARG:
        if copy is False:
            _require_sharing("merge")
        return _native_merge(graphdef, *states, **kwargs)
    if copy is None:
        if not _warnings.called_from_user():
            return _native_merge(graphdef, *states, **kwargs)
        outer = _outer_trace_paths(states) if _SHARES else []
        if outer:
            shown = ", ".join(outer[:3]) + (f" and {len(outer) - 3} more" if len(outer) > 3 else "")
            _warnings.warn_legacy(
                "state-copies",
                detail=(
                    f"the Variables at {shown} were created at an outer trace level: flax "
                    f"{_versions.installed_version('flax')} would share them, and mutating one "
                    "raises TraceContextError; the merged node holds copies"
                ),
            )
        copy = True
    return _native_merge(graphdef, *states, copy=copy, **kwargs)
