"""Checkpoints across flax generations: :func:`fix_checkpoint` and :func:`legacy_checkpoint`.

flax 0.10's layers kept the caller's ``Rngs``: a checkpoint holds the whole shared ``Rngs``
(``<layer>/rngs/<stream>/{key,count}``) once, under the first layer that kept it. Since 0.11
Dropout and MultiHeadAttention keep a forked stream (``<layer>/rngs/{key,count}``), the
recurrent cells keep none and ``RNN`` keeps its own ``carry`` stream; an ``Optimizer`` no
longer holds its model, so its state lost the ``model/...`` subtree.

:func:`fix_checkpoint` takes a restored checkpoint and returns the state of the model that
``model_factory`` builds on the installed flax: every array that is not RNG state is taken
from the checkpoint as it is (no copy), and the RNG state alone is initialised afresh from
``rngs`` under ``jit``, so that the parameters the factory would initialise are dead code and
are never computed. :func:`legacy_checkpoint` goes the other way, to the layout flax 0.10
writes. Nothing here reads or writes files; the ``nnx-compat fix-checkpoint`` command does.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from nnx_compat import _paths, _versions

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointNote",
    "OptimizerCheckpoint",
    "fix_checkpoint",
    "is_rng_path",
    "legacy_checkpoint",
    "read",
]

#: The flax 0.10 layers that kept the caller's ``Rngs`` as ``self.rngs`` when given one
#: (MultiHeadAttention only with dropout).
LEGACY_SHARED_RNGS: tuple[str, ...] = ("Dropout", "MultiHeadAttention")

#: The flax 0.10 recurrent cells, which always kept the caller's ``Rngs``.
LEGACY_CELLS: tuple[str, ...] = (
    "LSTMCell",
    "OptimizedLSTMCell",
    "GRUCell",
    "SimpleCell",
)

#: The flax 0.10 layers that made their own ``Rngs(0)`` (stream ``default``) for the carry.
LEGACY_OWN_RNGS: tuple[str, ...] = ("RNN",)

#: The top-level names of a flax 0.10 ``Optimizer``'s state.
_OPTIMIZER_KEYS = frozenset({"model", "opt_state", "step"})

#: How many paths an error lists before it counts the rest.
_LISTED = 12


class CheckpointError(ValueError):
    """A checkpoint that cannot be converted; the message names what to change."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint is not one of the model that ``model_factory`` builds.

    Attributes:
        missing: Paths the model has and the checkpoint lacks.
        extra: Paths the checkpoint has and the model lacks (RNG state aside).
        mismatched: ``path -> (checkpoint's shape/dtype, model's shape/dtype)``.
    """

    def __init__(
        self,
        message: str,
        *,
        missing: Iterable[str] = (),
        extra: Iterable[str] = (),
        mismatched: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.missing = tuple(missing)
        self.extra = tuple(extra)
        self.mismatched = dict(mismatched or {})


class CheckpointNote(UserWarning):
    """Something worth knowing about a conversion that needed no change."""


class OptimizerCheckpoint(NamedTuple):
    """Both halves of a flax 0.10 ``Optimizer`` checkpoint, in the installed structure.

    ``nnx.update(model, fixed.model)`` and ``nnx.update(optimizer, fixed.optimizer)`` load
    them. On flax 0.10 the optimizer's state still holds its model (``model/...``), as the
    installed ``Optimizer`` does.
    """

    model: Any
    optimizer: Any


# --------------------------------------------------------------------------- reading


def read(checkpoint: Any) -> dict[str, Any]:
    """``"a/b/c" -> array`` for a restored checkpoint.

    Accepts what ``ocp.StandardCheckpointer().restore(path)`` returns (nested dicts whose
    leaves are ``{"value": array}``), the same without the ``value`` level (a pure dict), and an
    ``nnx.State`` (of Variables, or of 0.10's VariableStates). The arrays are not copied.

    Raises:
        TypeError: for anything else, naming what is accepted.
    """
    leaf_types = _versions.variable_leaf_types()
    if _is_state(checkpoint):
        flat = {}
        for path, leaf in _paths.flatten(checkpoint).items():
            flat[path] = _value_of(leaf) if isinstance(leaf, leaf_types) else leaf
        return _checked_leaves(flat)
    if not isinstance(checkpoint, Mapping):
        raise TypeError(
            "fix_checkpoint takes a restored checkpoint: the nested dict that "
            "ocp.StandardCheckpointer().restore(path) returns, or an nnx.State; "
            f"got {type(checkpoint).__name__}"
        )
    nested: dict[tuple[str, ...], Any] = {}
    _walk(checkpoint, (), nested)
    if nested and all(path[-1] == "value" for path in nested):  # orbax's layout of a Variable
        nested = {path[:-1]: leaf for path, leaf in nested.items()}
    return _checked_leaves({"/".join(path): leaf for path, leaf in nested.items()})


def _is_state(tree: Any) -> bool:
    nnx = _versions.import_nnx()
    return isinstance(tree, nnx.State)


def _value_of(variable: Any) -> Any:
    import jax

    (value,) = jax.tree_util.tree_leaves(variable)
    return value


def _walk(node: Any, prefix: tuple[str, ...], out: dict[tuple[str, ...], Any]) -> None:
    if isinstance(node, Mapping):
        for key, child in node.items():
            _walk(child, (*prefix, str(key)), out)
    elif isinstance(node, list | tuple) and not hasattr(node, "_fields"):
        for index, child in enumerate(node):
            _walk(child, (*prefix, str(index)), out)
    elif node is not None:
        out[prefix] = node


def _checked_leaves(flat: dict[str, Any]) -> dict[str, Any]:
    bad = [path for path, leaf in flat.items() if not _is_array(leaf)]
    if bad:
        raise TypeError(
            "a checkpoint's leaves are arrays; these are not: "
            + _listing(f"{p} ({type(flat[p]).__name__})" for p in bad)
        )
    return flat


def _is_array(leaf: Any) -> bool:
    return hasattr(leaf, "shape") and hasattr(leaf, "dtype")


def is_rng_path(path: str) -> bool:
    """Whether a checkpoint path is RNG state in any generation's layout.

    0.10: ``.../rngs/<stream>/{key,count}``; 0.11+: ``.../rngs/{key,count}``; a module's own
    ``Rngs`` attribute: ``rngs/<stream>/{key,count}`` in every generation.
    """
    parts = path.split("/")
    return parts[-1] in ("key", "count") and "rngs" in parts[:-1]


def _describe(leaf: Any) -> str:
    return f"{leaf.dtype}{list(leaf.shape)}"  # a key array's dtype reads key<fry>


def _listing(items: Iterable[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:_LISTED])
    more = len(items) - _LISTED
    return shown + (f" and {more} more" if more > 0 else "")


# --------------------------------------------------------------------------- the model


@dataclasses.dataclass
class _Target:
    """The state of the model ``model_factory`` builds, abstractly.

    Attributes:
        model: The abstract model (``nnx.eval_shape``; its arrays are ShapeDtypeStructs).
        state: Its state.
        leaves: ``path -> abstract leaf`` (a ShapeDtypeStruct).
        rng: The paths that are RNG state (``nnx.RngState``).
    """

    model: Any
    state: Any
    leaves: dict[str, Any]
    rng: frozenset[str]

    @property
    def rest(self) -> set[str]:
        return set(self.leaves) - self.rng


def _abstract(build: Callable[[], Any]) -> _Target:
    nnx = _versions.import_nnx()
    model = nnx.eval_shape(build)
    state = nnx.state(model)
    rng_state = nnx.state(model, nnx.RngState)
    leaves = {path: _value_of(leaf) for path, leaf in _paths.flatten(state).items()}
    return _Target(model, state, leaves, frozenset(_paths.flatten(rng_state)))


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
        value = values[next(paths)]
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
        "  Is model_factory the model this checkpoint was saved from, built with the same "
        "sizes? Checkpoints of other models cannot be converted.",
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


def legacy_checkpoint(
    checkpoint: Any,
    model_factory: Callable[..., Any],
    *,
    rngs: Any,
    optimizer: Any = None,
) -> dict[str, Any]:
    """Converts a checkpoint of the installed structure to the layout flax 0.10 writes.

    For teams that must roll back: the result is the nested dict that flax 0.10's
    ``ocp.StandardCheckpointer().save(path, nnx.state(model))`` writes (each Variable a
    ``{"value": array}``), so that flax 0.10 restores it with its usual
    ``checkpointer.restore(path, nnx.state(abstract_model))``.

    The parameters are taken as they are. The RNG state is initialised afresh from ``rngs``:
    one shared ``Rngs`` (all its streams) under the first layer, in flax 0.10's traversal
    order, that kept the caller's ``Rngs`` (Dropout, MultiHeadAttention, the recurrent
    cells, RNN), once per vmapped shape, which is how flax 0.10 stores a model built with one
    ``Rngs`` (split once for a vmapped stack of layers).

    Args:
        checkpoint: The model's restored checkpoint, as for :func:`fix_checkpoint`.
        model_factory: Builds the model, called as ``model_factory(rngs=...)``.
        rngs: Initialises the RNG state.
        optimizer: The optimizer's restored state (``opt_state``, ``step``), to make a flax
            0.10 ``Optimizer`` checkpoint (``model/``, ``opt_state``, ``step``).

    Raises:
        CheckpointMismatchError: the checkpoint is not one of this model.
    """
    flat = read(checkpoint)
    target = _build_target(model_factory, rngs)
    _check_model(flat, target, model_factory)
    out = {p: flat[p] for p in sorted(target.rest)}
    out.update(_legacy_rng_state(target, model_factory, rngs))
    if optimizer is not None:
        opt_flat = read(optimizer)
        if "step" not in opt_flat:
            raise CheckpointError(
                "optimizer= takes the state of an nnx.Optimizer (opt_state, step); it has no "
                "step: " + _listing(sorted(opt_flat))
            )
        out = {f"model/{p}": v for p, v in out.items()}
        out.update((p, v) for p, v in opt_flat.items() if not p.startswith("model/"))
    tree: dict[str, Any] = {}
    for path, value in out.items():
        node = tree
        for part in path.split("/"):
            node = node.setdefault(part, {})
        node["value"] = value
    return tree


def _legacy_rng_state(
    target: _Target, model_factory: Callable[..., Any], rngs: Any
) -> dict[str, Any]:
    """The RNG state flax 0.10 keeps for the model.

    The caller's ``Rngs`` (all its streams, as building the model left them) once, where flax
    0.10's traversal (depth first, attributes by name) first reaches it: the ``rngs`` of the
    first layer that kept it, or of a module of the model's own that keeps it. A vmapped stack
    of layers kept the same, unsplit ``Rngs``. Each ``RNN`` its own ``Rngs(0)``.
    """
    import jax
    import jax.numpy as jnp

    nnx = _versions.import_nnx()
    shared, own = _legacy_holders(target.model)
    out: dict[str, Any] = {}
    if shared is not None:
        _fresh_rng_state(model_factory, rngs)  # advances rngs as building the model does
        for path, leaf in _paths.flatten(nnx.state(rngs)).items():
            out[f"{shared}/{path}"] = _value_of(leaf)
    for prefix in own:
        out[f"{prefix}/default/key"] = jax.random.key(0)
        out[f"{prefix}/default/count"] = jnp.zeros((), jnp.uint32)
    return out


def _legacy_holders(model: Any) -> tuple[str | None, list[str]]:
    """Where flax 0.10 stored the shared ``Rngs``, and the ``Rngs`` of its own of each RNN."""
    nnx = _versions.import_nnx()

    def of(names: tuple[str, ...]) -> tuple[type, ...]:
        return tuple(c for n in names if isinstance(c := getattr(nnx, n, None), type))

    shared_types, cells, own_types = (
        of(LEGACY_SHARED_RNGS),
        of(LEGACY_CELLS),
        of(LEGACY_OWN_RNGS),
    )
    attention = of(("MultiHeadAttention",))
    shared: str | None = None
    own: list[str] = []
    seen: set[int] = set()

    def visit(node: Any, path: tuple[str, ...]) -> None:
        nonlocal shared
        if id(node) in seen:
            return
        seen.add(id(node))
        children = _children(node)
        keeps = isinstance(node, cells) or (
            isinstance(node, shared_types)
            and children.get("rngs") is not None
            and not (isinstance(node, attention) and not getattr(node, "dropout_rate", 0))
        )
        for name, child in sorted(children.items(), key=lambda kv: str(kv[0])):
            here = (*path, str(name))
            if name == "rngs" and isinstance(node, nnx.Module):
                if isinstance(node, own_types):
                    own.append("/".join(here))
                elif shared is None and (keeps or isinstance(child, nnx.Rngs)):
                    shared = "/".join(here)
            elif isinstance(child, nnx.Module) or _children(child):
                visit(child, here)
        if keeps and shared is None and "rngs" not in children:
            shared = "/".join((*path, "rngs"))  # a layer that keeps no stream since 0.11

    visit(model, ())
    return shared, own


def _children(node: Any) -> dict[Any, Any]:
    nnx = _versions.import_nnx()
    if isinstance(node, nnx.Module):
        return {k: v for k, v in vars(node).items() if not k.startswith("_")}
    if isinstance(node, Mapping):
        return dict(node)
    if isinstance(node, list | tuple):
        return dict(enumerate(node))
    return {}
