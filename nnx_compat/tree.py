"""``jax.tree``'s functions with NNX objects as leaves, the same on every flax.

flax 0.11.0 made Modules (and Rngs, Optimizers, ...) jax pytrees, so ``jax.tree.map(f,
[modules])`` now descends into them. These functions treat every NNX object as one leaf, as
``jax.tree`` did on flax 0.10, on every flax; Variables, ``nnx.State`` and plain containers
are traversed as ``jax.tree`` always traversed them. Each takes jax's ``is_leaf`` as well::

    from nnx_compat import tree
    type_names = tree.map(lambda x: type(x).__name__, [linear, batchnorm])

Equivalently, pass ``is_leaf=nnx_compat.is_nnx_object`` to ``jax.tree``'s own functions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import jax

from nnx_compat._pytree import is_nnx_object

__all__ = [
    "all",
    "flatten",
    "flatten_with_path",
    "leaves",
    "leaves_with_path",
    "map",
    "map_with_path",
    "reduce",
    "structure",
    "unflatten",
]

IsLeaf = Callable[[Any], bool] | None
_tu = jax.tree_util


def _is_leaf(is_leaf: IsLeaf) -> Callable[[Any], bool]:
    if is_leaf is None:
        return is_nnx_object
    return lambda x: is_nnx_object(x) or bool(is_leaf(x))


def map(f: Callable[..., Any], tree: Any, *rest: Any, is_leaf: IsLeaf = None) -> Any:
    """``jax.tree.map`` with NNX objects as leaves."""
    return _tu.tree_map(f, tree, *rest, is_leaf=_is_leaf(is_leaf))


def map_with_path(f: Callable[..., Any], tree: Any, *rest: Any, is_leaf: IsLeaf = None) -> Any:
    """``jax.tree.map_with_path`` with NNX objects as leaves."""
    return _tu.tree_map_with_path(f, tree, *rest, is_leaf=_is_leaf(is_leaf))


def leaves(tree: Any, is_leaf: IsLeaf = None) -> list[Any]:
    """``jax.tree.leaves`` with NNX objects as leaves."""
    return _tu.tree_leaves(tree, is_leaf=_is_leaf(is_leaf))


def leaves_with_path(tree: Any, is_leaf: IsLeaf = None) -> list[tuple[Any, Any]]:
    """``jax.tree.leaves_with_path`` with NNX objects as leaves."""
    return _tu.tree_leaves_with_path(tree, is_leaf=_is_leaf(is_leaf))


def flatten(tree: Any, is_leaf: IsLeaf = None) -> tuple[list[Any], Any]:
    """``jax.tree.flatten`` with NNX objects as leaves."""
    return _tu.tree_flatten(tree, is_leaf=_is_leaf(is_leaf))


def flatten_with_path(tree: Any, is_leaf: IsLeaf = None) -> tuple[list[tuple[Any, Any]], Any]:
    """``jax.tree.flatten_with_path`` with NNX objects as leaves."""
    return _tu.tree_flatten_with_path(tree, is_leaf=_is_leaf(is_leaf))


def structure(tree: Any, is_leaf: IsLeaf = None) -> Any:
    """``jax.tree.structure`` with NNX objects as leaves."""
    return _tu.tree_structure(tree, is_leaf=_is_leaf(is_leaf))


def unflatten(treedef: Any, leaves: Iterable[Any]) -> Any:
    """``jax.tree.unflatten`` (the structure already says what its leaves are)."""
    return _tu.tree_unflatten(treedef, leaves)


_NO_INITIALIZER: Any = object()


def reduce(
    function: Callable[[Any, Any], Any],
    tree: Any,
    initializer: Any = _NO_INITIALIZER,
    is_leaf: IsLeaf = None,
) -> Any:
    """``jax.tree.reduce`` with NNX objects as leaves."""
    items = leaves(tree, is_leaf=is_leaf)
    if initializer is _NO_INITIALIZER:
        return functools.reduce(function, items)
    return functools.reduce(function, items, initializer)


def all(tree: Any, *, is_leaf: IsLeaf = None) -> bool:
    """``jax.tree.all`` with NNX objects as leaves."""
    return _tu.tree_all(tree, is_leaf=_is_leaf(is_leaf))
