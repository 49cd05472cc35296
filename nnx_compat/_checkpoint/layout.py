"""Checkpoint layouts: what flax 0.10 and later write, read as ``path -> array``, and the
errors that name a mismatch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from nnx_compat import _paths, _versions

__all__ = [
    "LEGACY_CELLS",
    "LEGACY_OWN_RNGS",
    "LEGACY_SHARED_RNGS",
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointNote",
    "OptimizerCheckpoint",
    "is_rng_path",
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
            value = _value_of(leaf) if isinstance(leaf, leaf_types) else leaf
            if value is not None:  # a Variable of None holds nothing (as in a nested dict)
                flat[path] = value
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
    """A Variable's array, or None for a Variable holding None."""
    import jax

    leaves = jax.tree_util.tree_leaves(variable)
    if not leaves:
        return None
    (value,) = leaves
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
