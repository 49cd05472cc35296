"""Flat ``"a/b/c"`` paths of NNX states and pytrees, the same on every flax generation."""

from __future__ import annotations

from typing import Any

import jax

from nnx_compat import _versions

__all__ = ["flatten", "join"]

_FIELDS = ("key", "idx", "name")


def join(path: tuple[Any, ...]) -> str:
    """A graph path (``('layers', 0, 'rngs')``) as ``"layers/0/rngs"``."""
    return "/".join(str(part) for part in path)


def flatten(tree: Any) -> dict[str, Any]:
    """``path -> leaf`` for a state or pytree; a Variable (0.10: VariableState) is one leaf."""
    leaf_types = _versions.variable_leaf_types()
    leaves = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: isinstance(x, leaf_types)
    )[0]
    out: dict[str, Any] = {}
    for path, leaf in leaves:
        parts = []
        for entry in path:
            for field in _FIELDS:
                if hasattr(entry, field):
                    parts.append(str(getattr(entry, field)))
                    break
        if parts and parts[-1] in ("value", "raw_value"):  # a VariableState's own field
            parts.pop()
        out["/".join(parts)] = leaf
    return out
