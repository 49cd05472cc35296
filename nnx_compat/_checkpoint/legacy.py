"""From the installed layout back to flax 0.10's: :func:`legacy_checkpoint`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nnx_compat import _paths, _versions
from nnx_compat._checkpoint.fix import (
    _build_target,
    _check_model,
    _fresh_rng_state,
    _Target,
)
from nnx_compat._checkpoint.layout import (
    LEGACY_CELLS,
    LEGACY_OWN_RNGS,
    LEGACY_SHARED_RNGS,
    CheckpointError,
    _listing,
    _value_of,
    read,
)

__all__ = ["legacy_checkpoint"]


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
    out.update((p, None) for p in target.nones)  # as flax 0.10.0-0.10.4 write them
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
