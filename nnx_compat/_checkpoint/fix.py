"""From a flax 0.10 checkpoint to the installed layout: :func:`fix_checkpoint`."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from nnx_compat import _paths, _versions
from nnx_compat._checkpoint.layout import (
    _OPTIMIZER_KEYS,
    CheckpointError,
    CheckpointMismatchError,
    CheckpointNote,
    OptimizerCheckpoint,
    _describe,
    _listing,
    _value_of,
    is_rng_path,
    read,
)

__all__ = ["fix_checkpoint", "rng_init"]


@dataclasses.dataclass
class _Target:
    """The state of the model ``model_factory`` builds, abstractly.

    Attributes:
        model: The abstract model (``nnx.eval_shape``; its arrays are ShapeDtypeStructs).
        state: Its state.
        leaves: ``path -> abstract leaf`` (a ShapeDtypeStruct).
        rng: The paths that are RNG state (``nnx.RngState``).
        nones: The paths of Variables holding None (a layer's absent bias on flax 0.10.0-0.10.4):
            nothing to restore, whether a checkpoint lists them (``{"value": None}``) or not.
    """

    model: Any
    state: Any
    leaves: dict[str, Any]
    rng: frozenset[str]
    nones: frozenset[str] = frozenset()

    @property
    def rest(self) -> set[str]:
        return set(self.leaves) - self.rng


def _abstract(build: Callable[[], Any]) -> _Target:
    nnx = _versions.import_nnx()
    model = nnx.eval_shape(build)
    state = nnx.state(model)
    rng_state = nnx.state(model, nnx.RngState)
    leaves = {path: _value_of(leaf) for path, leaf in _paths.flatten(state).items()}
    nones = frozenset(path for path, value in leaves.items() if value is None)
    leaves = {path: value for path, value in leaves.items() if value is not None}
    return _Target(model, state, leaves, frozenset(_paths.flatten(rng_state)), nones)


def _build_target(model_factory: Callable[..., Any], rngs: Any) -> _Target:
    nnx = _versions.import_nnx()
    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(
            f"rngs must be an nnx.Rngs, as the model's own (e.g. nnx.Rngs(params=0, "
            f"dropout=1)); got {type(rngs).__name__}"
        )
    # a clone: building the abstract model must not advance the caller's Rngs
    return _abstract(lambda: model_factory(rngs=nnx.clone(rngs)))


def rng_init(model_factory: Callable[..., Any], rngs: Any) -> tuple[Callable[..., Any], Any]:
    """A pure function of ``rngs``' state that builds the model and returns its RNG state.

    Returns ``(init, rng_state)``; ``init(rng_state)`` gives ``(model's RNG state, rngs'
    state after building)``. Only the RNG state leaves it: under ``jax.jit`` everything else
    the factory computes (the parameters' initialisation) is dead code, which XLA removes.
    """
    nnx = _versions.import_nnx()
    graphdef, rng_state = nnx.split(rngs)

    def init(rng_state: Any) -> tuple[Any, Any]:
        local = nnx.merge(graphdef, rng_state)
        model = model_factory(rngs=local)
        return nnx.state(model, nnx.RngState), nnx.state(local)

    return init, rng_state


def _fresh_rng_state(model_factory: Callable[..., Any], rngs: Any) -> dict[str, Any]:
    """``path -> array`` of the RNG state the factory gives with ``rngs``, under ``jit``.

    ``rngs`` advances as building the model advances it.
    """
    import jax

    nnx = _versions.import_nnx()
    init, rng_state = rng_init(model_factory, rngs)
    fresh, advanced = jax.jit(init)(rng_state)
    nnx.update(rngs, advanced)
    return {path: _value_of(leaf) for path, leaf in _paths.flatten(fresh).items()}


def _filled(target: _Target, values: Mapping[str, Any], state: Any | None = None) -> Any:
    """``target.state`` with each leaf's value replaced by ``values[path]``."""
    import jax

    leaf_types = _versions.variable_leaf_types()
    paths = iter(_paths.flatten(target.state if state is None else state))

    def fill(leaf: Any) -> Any:
        path = next(paths)
        if path in target.nones:
            return leaf  # a Variable of None stays one
        value = values[path]
        if isinstance(leaf, leaf_types):
            return leaf.replace(value=value)  # type: ignore[attr-defined]
        return value

    return jax.tree_util.tree_map(
        fill,
        target.state if state is None else state,
        is_leaf=lambda x: isinstance(x, leaf_types),
    )


def _mismatch(
    what: str,
    flat: Mapping[str, Any],
    expected: Mapping[str, Any],
    dropped: set[str],
    hint: str,
) -> None:
    """Raises CheckpointMismatchError unless ``flat`` (less ``dropped``) fits ``expected``."""
    missing = sorted(set(expected) - set(flat))
    extra = sorted(set(flat) - set(expected) - dropped)
    mismatched = {
        path: (_describe(flat[path]), _describe(expected[path]))
        for path in sorted(set(expected) & set(flat))
        if tuple(flat[path].shape) != tuple(expected[path].shape)
        or flat[path].dtype != expected[path].dtype
    }
    if not (missing or extra or mismatched):
        return
    lines = [f"the checkpoint does not fit {what}; nothing was converted."]
    if missing:
        lines.append(f"  missing from the checkpoint ({len(missing)}): {_listing(missing)}")
    if extra:
        lines.append(f"  in the checkpoint only ({len(extra)}): {_listing(extra)}")
    if mismatched:
        shown = (f"{p}: checkpoint {a}, model {b}" for p, (a, b) in mismatched.items())
        lines.append(f"  wrong shape or dtype ({len(mismatched)}): {_listing(shown)}")
    lines.append(hint)
    raise CheckpointMismatchError(
        "\n".join(lines), missing=missing, extra=extra, mismatched=mismatched
    )


def _factory_name(model_factory: Callable[..., Any]) -> str:
    return getattr(model_factory, "__qualname__", None) or repr(model_factory)


# --------------------------------------------------------------------------- fix


def fix_checkpoint(
    checkpoint: Any,
    model_factory: Callable[..., Any],
    *,
    rngs: Any,
    tx: Any = None,
    wrt: Any = None,
) -> Any:
    """Converts a restored flax 0.10 checkpoint to the installed flax's structure.

    Usage, as in the migration guide::

        checkpoint = ocp.StandardCheckpointer().restore(path / "state")
        state = nnx.fix_checkpoint(checkpoint, MLP, rngs=nnx.Rngs(params=0, dropout=1))
        nnx.update(model, state)          # or ocp.StandardCheckpointer().save(new, state)

    Args:
        checkpoint: The restored checkpoint: what ``ocp.StandardCheckpointer().restore(path)``
            returns without a target, a pure dict, or an ``nnx.State``.
        model_factory: Builds the model: called as ``model_factory(rngs=...)`` (a Module
            class, a ``functools.partial`` of one, a function).
        rngs: The ``nnx.Rngs`` that initialises the model's RNG state; the RNG state in the
            checkpoint is dropped. It is consumed as building the model would consume it.
        tx: For a flax 0.10 ``Optimizer`` checkpoint (``model/``, ``opt_state``, ``step``): the
            optax transformation it was trained with.
        wrt: The optimizer's ``wrt`` filter (default ``nnx.Param``).

    Returns:
        An ``nnx.State`` of the model in the installed structure; for an Optimizer checkpoint
        an :class:`OptimizerCheckpoint` ``(model, optimizer)``. A checkpoint that already has
        the installed structure is returned unchanged, with a :class:`CheckpointNote`.

    Raises:
        CheckpointMismatchError: the checkpoint is not one of this model (it lists the missing
            and extra paths, and the wrong shapes and dtypes); nothing is converted.
        CheckpointError: an Optimizer checkpoint without ``tx``.
        TypeError: ``checkpoint`` or ``rngs`` is not what is described above.
    """
    flat = read(checkpoint)
    target = _build_target(model_factory, rngs)
    if _is_legacy_optimizer(flat, target):
        return _fix_optimizer(flat, target, model_factory, rngs, tx, wrt)
    return _fix_model(flat, target, model_factory, rngs, checkpoint)


def _is_legacy_optimizer(flat: Mapping[str, Any], target: _Target) -> bool:
    tops = {path.split("/", 1)[0] for path in flat}
    own = {path.split("/", 1)[0] for path in target.leaves}
    return {"model", "step"} <= tops <= _OPTIMIZER_KEYS and not own & _OPTIMIZER_KEYS


def _fix_model(
    flat: dict[str, Any],
    target: _Target,
    model_factory: Callable[..., Any],
    rngs: Any,
    checkpoint: Any,
    *,
    note: bool = True,
) -> Any:
    rng_in_checkpoint = _check_model(flat, target, model_factory)
    if note and rng_in_checkpoint == target.rng and _fits(flat, target, target.rng):
        warnings.warn(
            f"the checkpoint already has the structure of flax {_versions.detect().flax} for "
            f"{_factory_name(model_factory)}: returned unchanged. Restore it with "
            f"ocp.StandardCheckpointer().restore(path, nnx.state(abstract_model)).",
            CheckpointNote,
            stacklevel=3,
        )
        return checkpoint
    values = {p: flat[p] for p in target.rest}
    if target.rng:
        values.update(_fresh_rng_state(model_factory, rngs))
    return _filled(target, values)


def _check_model(
    flat: Mapping[str, Any], target: _Target, model_factory: Callable[..., Any]
) -> set[str]:
    """The checkpoint's RNG paths; raises unless the rest is exactly the model's."""
    rng_in_checkpoint = {p for p in flat if is_rng_path(p) and p not in target.rest}
    _mismatch(
        f"the model {_factory_name(model_factory)} builds",
        flat,
        {p: target.leaves[p] for p in target.rest},
        rng_in_checkpoint,
        f"  Is {_factory_name(model_factory)} the model this checkpoint was saved from, built "
        "with the same sizes? Checkpoints of other models cannot be converted.",
    )
    return rng_in_checkpoint


def _fits(flat: Mapping[str, Any], target: _Target, paths: Iterable[str]) -> bool:
    return all(
        tuple(flat[p].shape) == tuple(target.leaves[p].shape)
        and flat[p].dtype == target.leaves[p].dtype
        for p in paths
    )


def _fix_optimizer(
    flat: dict[str, Any],
    target: _Target,
    model_factory: Callable[..., Any],
    rngs: Any,
    tx: Any,
    wrt: Any,
) -> OptimizerCheckpoint:
    if tx is None:
        raise CheckpointError(
            "this is a flax 0.10 Optimizer checkpoint (model/, opt_state, step): pass the "
            "optax transformation it was trained with, e.g. nnx.fix_checkpoint(checkpoint, "
            "Model, rngs=nnx.Rngs(0), tx=optax.adam(1e-3)); nothing was converted"
        )
    model_flat = {p[len("model/") :]: v for p, v in flat.items() if p.startswith("model/")}
    model_state = _fix_model(model_flat, target, model_factory, rngs, None, note=False)
    optimizer_target = _optimizer_target(model_factory, rngs, tx, wrt)
    model_values = read(model_state)
    values = {}
    for path in optimizer_target.leaves:
        if path.startswith("model/"):  # flax 0.10: the Optimizer still holds the model
            values[path] = model_values[path[len("model/") :]]
    opt_flat = {p: v for p, v in flat.items() if not p.startswith("model/")}
    expected = {p: a for p, a in optimizer_target.leaves.items() if not p.startswith("model/")}
    _mismatch(
        "the optimizer built with this tx and wrt",
        opt_flat,
        expected,
        set(),
        "  Pass the optax transformation (tx=) and wrt= the checkpoint was trained with.",
    )
    values.update(opt_flat)
    return OptimizerCheckpoint(model_state, _filled(optimizer_target, values))


def _optimizer_target(model_factory: Callable[..., Any], rngs: Any, tx: Any, wrt: Any) -> _Target:
    nnx = _versions.import_nnx()
    from nnx_compat import _optimizer

    def build() -> Any:
        model = model_factory(rngs=nnx.clone(rngs))
        return _optimizer.Optimizer(model, tx, wrt=nnx.Param if wrt is None else wrt)

    with warnings.catch_warnings():
        # the Optimizer of flax 0.10 is built here in its new form; nothing for the user
        warnings.simplefilter("ignore", DeprecationWarning)
        return _abstract(build)


# --------------------------------------------------------------------------- legacy
