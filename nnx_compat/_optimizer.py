"""``nnx.Optimizer`` and ``nnx.ModelAndOptimizer`` with both call patterns on every flax.

flax 0.11.0 made ``wrt`` required and keyword-only, removed ``Optimizer.model`` and changed
``update(grads)`` to ``update(model, grads)``. The shim accepts both forms on every version:

* the legacy form, ``Optimizer(model, tx)`` or ``Optimizer(model, tx, nnx.Param)``, holds the
  model as ``ModelAndOptimizer`` does (its state has ``model/...``, ``opt_state`` and ``step``,
  as 0.10's Optimizer had), and ``update(grads)`` updates that model;
* the new form, ``Optimizer(model, tx, wrt=...)``, has exactly the state of the installed
  flax's native ``Optimizer``, and takes ``update(model, grads)``.

Both are subclasses of the native class (and of the native ``ModelAndOptimizer`` where it
exists) and call its methods for the arithmetic, so the compiled code is the native code.
"""

from __future__ import annotations

import weakref
from typing import Any, Final, Literal, overload

import jax
from typing_extensions import deprecated

from nnx_compat import _classes, _paths, _versions, _warnings

__all__ = ["ModelAndOptimizer", "Optimizer"]

_nnx: Any = _versions.import_nnx()
_Native: Any = _nnx.Optimizer
# flax 0.11.0 added ModelAndOptimizer; ours also subclasses it where it exists.
_NativeModelAndOptimizer: Any = (
    _nnx.ModelAndOptimizer if _versions.feature("HAS_MODEL_AND_OPTIMIZER") else None
)

# flax 0.11.0: update(model, grads) and keyword-only wrt; 0.10 holds the model itself.
_UPDATE_TAKES_MODEL: Final = _versions.feature("OPTIMIZER_UPDATE_TAKES_MODEL")
# flax 0.10.2: update(grads, **kwargs) reaches tx.update (optax's extra arguments)
_UPDATE_KWARGS: Final = _versions.feature("OPTIMIZER_UPDATE_KWARGS")
# flax 0.12.8: Optimizer(..., graph=) for tree mode.
_GRAPH_ARG: Final = _versions.feature("OPTIMIZER_GRAPH_ARG")

Form = Literal["legacy", "new", "model"]
_FORM: Final = "_nnx_compat_form"  # a static attribute: not part of nnx.state

#: The model each new-form optimizer was built for, on flax 0.11+, where the optimizer does not
#: hold it: flax 0.10 code writes ``Optimizer(model, tx, wrt=...)`` (valid there) and then
#: ``update(grads)`` or ``.model``. Kept beside the optimizer, never in it, so that its state and
#: graph stay exactly the native ones. An optimizer that ``nnx.jit`` (or another transform)
#: rebuilt inside a trace is not here: see ``_unreachable_model``.
_BUILT_FOR: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final[Any] = _Missing()


def _check_model(model: Any, graph: Any) -> None:
    if _nnx.graph.is_graph_node(model) or graph is False:
        return
    hint = ""
    if isinstance(model, _nnx.State):
        hint = " You passed an nnx.State; pass the model itself."
    raise TypeError(
        f"nnx.Optimizer needs the model (an nnx.Module or another NNX object) as its first "
        f"argument, got {type(model).__name__}.{hint} Call nnx.Optimizer(model, tx, wrt=nnx.Param)."
    )


def _check_tx(tx: Any) -> None:
    if not (hasattr(tx, "init") and hasattr(tx, "update")):
        raise TypeError(
            f"nnx.Optimizer needs an optax GradientTransformation as its second argument, got "
            f"{type(tx).__name__}. Call nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)."
        )


def _check_wrt(model: Any, wrt: Any, graph: Any) -> None:
    kwargs = {"graph": graph} if _GRAPH_ARG and graph is not None else {}
    if jax.tree_util.tree_leaves(_nnx.state(model, wrt, **kwargs)):
        return
    kinds = sorted(
        {
            type(node).__name__
            for _, node in _nnx.graph.iter_graph(model)
            if isinstance(node, _nnx.Variable)
        }
    )
    raise ValueError(
        f"wrt={wrt!r} matches no variable of {type(model).__name__}, so the optimizer would "
        f"update nothing. Its variables are of types {', '.join(kinds) or '(none)'}; pass one "
        f"of them, e.g. wrt=nnx.Param."
    )


def _unreachable_model(call: str) -> str:
    return (
        f"{call} needs the optimizer's model, but this one was built with wrt= as a keyword, "
        "whose state (as on flax 0.11+) does not hold the model, and it was rebuilt inside a "
        "transform (nnx.jit, nnx.scan, ...), where nnx_compat cannot reach the model it was "
        "built for. Pass the model: optimizer.update(model, grads), with the model given to "
        "the transform beside the optimizer; or build it as nnx.ModelAndOptimizer(model, tx, "
        "wrt=...) (or the 0.10 form nnx.Optimizer(model, tx)), which holds the model in its "
        "state."
    )


def _outside_this_trace(model: Any) -> bool:
    """Whether ``model``'s Variables belong to another trace (a transform is running)."""
    for _, node in _nnx.graph.iter_graph(model):
        if isinstance(node, _nnx.Variable):
            trace = getattr(node, "_trace_state", None)
            return trace is not None and not trace.is_valid()
    return False


def _graph_mode(optimizer: Any) -> bool:
    graph = vars(optimizer).get("graph")
    if graph is None and _versions.feature("GRAPH_MODE_CONTEXT"):
        graph = _nnx.set_graph_mode.current_value()
    return graph is not False


class Optimizer(_Native, metaclass=_classes.meta_of(_Native)):  # type: ignore[misc,metaclass]
    """``nnx.Optimizer`` that accepts the flax 0.10 and the 0.11+ call patterns.

    .. deprecated::
        ``Optimizer(model, tx)``, a positional ``wrt``, ``update(grads)`` and ``.model`` are the
        flax 0.10 forms; use ``Optimizer(model, tx, wrt=nnx.Param)`` and
        ``update(model, grads)``.
    """

    _nnx_compat_native = _Native

    @overload
    @deprecated(
        "nnx.Optimizer(model, tx) is deprecated since flax 0.11.0: use "
        "nnx.Optimizer(model, tx, wrt=nnx.Param)",
        category=None,
    )
    def __init__(self, model: Any, tx: Any, /) -> None: ...

    @overload
    @deprecated(
        "nnx.Optimizer(model, tx, nnx.Param) is deprecated since flax 0.11.0: use "
        "nnx.Optimizer(model, tx, wrt=nnx.Param)",
        category=None,
    )
    def __init__(self, model: Any, tx: Any, wrt: Any, /) -> None: ...

    @overload
    def __init__(self, model: Any, tx: Any, /, *, wrt: Any, graph: bool | None = None) -> None: ...

    def __init__(self, model: Any, tx: Any, *args: Any, wrt: Any = _MISSING, **kwargs: Any) -> None:
        """Builds the optimizer state for the variables of ``model`` that ``wrt`` selects.

        Args:
            model: The NNX model.
            tx: An optax ``GradientTransformation``.
            *args: The legacy positional ``wrt``.
            wrt: A filter of the variables to optimize, e.g. ``nnx.Param``.
            **kwargs: ``graph=`` (flax 0.12.8+; ``None``/``True`` are accepted everywhere).

        Raises:
            TypeError: for a model that is not an NNX object, a tx that is not an optax
                transformation, or surplus arguments.
            ValueError: for a ``wrt`` that matches no variable of the model.
        """
        if len(args) > 1 or (args and wrt is not _MISSING):
            raise TypeError(
                "nnx.Optimizer takes (model, tx, *, wrt); got surplus positional arguments"
            )
        form: Form = "new"
        if args:
            (wrt,) = args
            _warnings.warn_legacy("optimizer-wrt-positional")
            form = "legacy"
        elif wrt is _MISSING:
            _warnings.warn_legacy("optimizer-wrt-default")
            wrt, form = _nnx.Param, "legacy"
        self._nnx_compat_build(model, tx, wrt, form, kwargs)

    def _nnx_compat_build(
        self, model: Any, tx: Any, wrt: Any, form: Form, kwargs: dict[str, Any]
    ) -> None:
        graph = kwargs.get("graph")
        if "graph" in kwargs and not _GRAPH_ARG:
            if graph not in (None, True):
                raise TypeError(
                    f"nnx.Optimizer(..., graph={graph!r}) needs flax 0.12.8 or newer, the first "
                    f"with tree mode; drop graph= on flax {_versions.installed_version('flax')}."
                )
            kwargs = {k: v for k, v in kwargs.items() if k != "graph"}
        _check_model(model, graph)
        _check_tx(tx)
        _check_wrt(model, wrt, graph)
        _Native.__init__(self, model, tx, wrt=wrt, **kwargs)
        if form != "new" and "model" not in vars(self):
            self.model = model
        elif form == "new" and "model" not in vars(self):
            _BUILT_FOR[self] = model
        setattr(self, _FORM, form)

    @property
    def model(self) -> Any:
        """The model a legacy-form optimizer holds (deprecated since flax 0.11.0)."""
        attributes = vars(self)
        if "model" not in attributes:
            built_for = _BUILT_FOR.get(self, _MISSING)
            if built_for is _MISSING:
                raise AttributeError(_unreachable_model("optimizer.model"))
            if _warnings.called_from_user():
                _warnings.warn_legacy("optimizer-model-attribute")
            return built_for
        if attributes.get(_FORM) != "model" and _warnings.called_from_user():
            _warnings.warn_legacy("optimizer-model-attribute")
        return attributes["model"]

    @model.setter
    def model(self, value: Any) -> None:
        self.__dict__["model"] = value

    if _versions.feature("OPTIMIZER_REFUSES_MODEL_ATTRIBUTE"):  # flax 0.11+, before properties

        def __getattribute__(self, name: str) -> Any:
            if name == "model":
                return Optimizer.model.fget(self)  # type: ignore[attr-defined]
            return super().__getattribute__(name)

    @overload  # type: ignore[override]
    @deprecated(
        "optimizer.update(grads) is deprecated since flax 0.11.0: use "
        "optimizer.update(model, grads)",
        category=None,
    )
    def update(self, grads: Any, /, **kwargs: Any) -> Any: ...

    @overload
    def update(self, model: Any, grads: Any, /, **kwargs: Any) -> Any: ...

    def update(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
        """Applies ``grads`` to the model and advances the optimizer state.

        Args:
            *args: ``(model, grads)``, or the legacy ``(grads)``.
            **kwargs: ``model=``/``grads=`` as keywords; the rest go to ``tx.update``.

        Returns:
            What the native ``update`` returns (the updates from flax 0.12.7, else None).

        Raises:
            TypeError: for missing grads, or the legacy ``update(grads)`` on an optimizer built
                in the new form, which holds no model.
            ValueError: for a model other than the one the optimizer holds, or grads whose
                paths do not match ``wrt`` (the mismatched paths are listed).
        """
        model, grads = self._nnx_compat_parse(args, kwargs)
        attributes = vars(self)
        form = attributes.get(_FORM, "new")
        held = attributes.get("model", _MISSING)
        if grads is model or grads is held:
            raise TypeError(
                f"optimizer.update got the model ({type(grads).__name__}) where the grads belong: "
                "call optimizer.update(model, grads) with grads = nnx.grad(loss_fn)(model)."
            )
        if model is _MISSING:
            if held is _MISSING:
                held = _BUILT_FOR.get(self, _MISSING)
                if held is _MISSING or _outside_this_trace(held):
                    raise TypeError(_unreachable_model("optimizer.update(grads)"))
            if form != "model":
                _warnings.warn_legacy("optimizer-update-grads")
            model = held
        elif held is not _MISSING and model is not held:
            raise ValueError(self._nnx_compat_other_model_message())
        if kwargs and not _UPDATE_KWARGS:
            raise TypeError(
                f"optimizer.update(..., {', '.join(f'{k}=' for k in kwargs)}): extra arguments "
                "for the transformation's update need flax 0.10.2 or newer (flax "
                f"{_versions.installed_version('flax')} is installed)"
            )
        try:
            return self._nnx_compat_native_update(model, grads, kwargs)
        except (ValueError, TypeError, KeyError) as err:
            mismatch = self._nnx_compat_grads_mismatch(model, grads)
            if not mismatch:
                raise
            selected = self._nnx_compat_selected_grads(model, grads)
            if selected is None:
                raise ValueError(mismatch) from err
        # flax 0.12.1+ takes the grads of the variables wrt selects and ignores the rest; an
        # older flax fails on the others (optax's tree mismatch), before it changes anything
        return self._nnx_compat_native_update(model, selected, kwargs)

    def _nnx_compat_native_update(self, model: Any, grads: Any, kwargs: dict[str, Any]) -> Any:
        if _UPDATE_TAKES_MODEL:
            return _Native.update(self, model, grads, **kwargs)
        return _Native.update(self, grads, **kwargs)

    def _nnx_compat_selected_grads(self, model: Any, grads: Any) -> Any:
        """``grads`` restricted to the variables ``wrt`` selects, as flax 0.12.1's update takes
        them; None where some of those variables have no grads (nothing to restrict)."""
        wrt = vars(self)["wrt"]
        if not isinstance(grads, _nnx.State):
            return None
        selected = _nnx.filter_state(grads, wrt)
        wanted = set(_paths.flatten(_nnx.state(model, wrt)))
        return selected if set(_paths.flatten(selected)) == wanted else None

    @staticmethod
    def _nnx_compat_parse(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        positional = list(args)
        grads = kwargs.pop("grads", _MISSING)
        model = kwargs.pop("model", _MISSING)
        if grads is _MISSING and positional:
            grads = positional.pop()
        if model is _MISSING and positional:
            model = positional.pop()
        if positional:
            raise TypeError("optimizer.update takes (model, grads); got surplus arguments")
        if grads is _MISSING:
            raise TypeError("optimizer.update(model, grads) is missing grads")
        return model, grads

    def _nnx_compat_other_model_message(self) -> str:
        text = (
            "optimizer.update(model, grads) got a different model from the one this optimizer "
            "holds (it was built as nnx.Optimizer(model, tx) or nnx.ModelAndOptimizer). Pass "
            "the same model, or call optimizer.update(grads)."
        )
        if not _graph_mode(self):
            text += (
                " In tree mode (graph=False) the optimizer's model and the model you pass are "
                "separate copies: build it as nnx.Optimizer(model, tx, wrt=..., graph=False), "
                "which holds no model."
            )
        return text

    def _nnx_compat_grads_mismatch(self, model: Any, grads: Any) -> str:
        try:
            wanted = set(_paths.flatten(_nnx.state(model, vars(self)["wrt"])))
            given = set(_paths.flatten(grads))
        except Exception:  # the diagnosis must never hide the original error
            return ""
        missing, extra = sorted(wanted - given), sorted(given - wanted)
        if not missing and not extra:
            return ""
        wrt = vars(self)["wrt"]
        lines = [f"the grads do not match the variables this optimizer updates (wrt={wrt!r}):"]
        if missing:
            lines.append(f"  missing from grads: {', '.join(missing)}")
        if extra:
            lines.append(f"  not selected by wrt: {', '.join(extra)}")
        lines.append(
            "Take the gradient with respect to the same filter: "
            "nnx.grad(loss_fn, argnums=nnx.DiffState(0, wrt))(model)."
        )
        return "\n".join(lines)


_MAO_BASES: tuple[type, ...] = (
    (Optimizer, _NativeModelAndOptimizer) if _NativeModelAndOptimizer else (Optimizer,)
)


class ModelAndOptimizer(*_MAO_BASES):  # type: ignore[misc]
    """An optimizer that holds its model: ``update(grads)`` updates ``.model``.

    Available on every flax (flax 0.10 has none; 0.11 added it). Its state is that of the
    native ``ModelAndOptimizer`` (``model/...``, ``opt_state``, ``step``).
    """

    # flax 0.11+: flax's own ModelAndOptimizer; 0.10 has none, so only the shim's own
    _nnx_compat_native = _NativeModelAndOptimizer

    def __init__(self, model: Any, tx: Any, *, wrt: Any = _MISSING, **kwargs: Any) -> None:
        """Builds the optimizer for ``model``; ``wrt`` defaults to ``nnx.Param``."""
        self._nnx_compat_build(
            model, tx, _nnx.Param if wrt is _MISSING else wrt, "model", dict(kwargs)
        )
