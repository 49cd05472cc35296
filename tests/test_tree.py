"""``nnx_compat.tree``: flax 0.10's leaves and structure for nests holding NNX objects, everywhere.

The reference is a small model of ``jax.tree`` on flax 0.10 (lists, tuples, dicts and None are
containers, a Variable is a node whose child is its value, an NNX object is a leaf). On flax
0.10 the reference is itself checked against ``jax.tree``; on every flax ``nnx_compat.tree``
is checked against the reference.
"""

from __future__ import annotations

import operator
from typing import Any

import flax.nnx as upstream
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import nnx_compat
from nnx_compat import _versions, nnx, tree

API = _versions.detect().api
NATIVE_LEAVES_ARE_010 = not _versions.feature("MODULES_ARE_PYTREES")
#: Variables are pytree nodes from flax 0.10.7 on; before it, jax.tree (and so flax 0.10.0-0.10.6
#: code) sees a Variable as a leaf, and nnx_compat.tree keeps that release's leaves.
VARIABLES_ARE_NODES = not isinstance(
    jax.tree.leaves(upstream.Param(jnp.zeros(())))[0], upstream.Variable
)


# --- the reference ----------------------------------------------------------------------


def reference_leaves(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """``(keystr path, leaf)`` as ``jax.tree`` gives them on flax 0.10 (0.10.7; before it, a
    Variable is a leaf)."""
    if node is None:
        return []
    if isinstance(node, list | tuple):
        return [x for i, item in enumerate(node) for x in reference_leaves(item, f"{path}[{i}]")]
    if isinstance(node, dict):
        return [x for k in sorted(node) for x in reference_leaves(node[k], f"{path}[{k!r}]")]
    if isinstance(node, upstream.Variable) and VARIABLES_ARE_NODES:
        value = node.get_value() if hasattr(node, "get_value") else node.value
        return reference_leaves(value, f"{path}.value")
    return [(path, node)]


def as_keystr(leaves: list[tuple[Any, Any]]) -> list[tuple[str, Any]]:
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in leaves]


# --- random nests -----------------------------------------------------------------------


def _linear(seed: int) -> Any:
    return upstream.Linear(2, 3, rngs=upstream.Rngs(seed))


OBJECTS = {
    "linear": _linear,
    "batchnorm": lambda s: upstream.BatchNorm(3, rngs=upstream.Rngs(s)),
    "rngs": lambda s: upstream.Rngs(s),
    "legacy-module": lambda s: _LegacyBlock(s),
    "list-module": lambda s: nnx.List([_linear(s)]),
}
VARIABLES = {
    "param": lambda s: upstream.Param(jnp.full((2,), float(s))),
    "batchstat": lambda s: upstream.BatchStat(jnp.zeros((1,))),
    "param-of-dict": lambda s: upstream.Param({"a": jnp.ones(()), "b": [np.int32(s)]}),
}
ARRAYS = {
    "jax": lambda s: jnp.arange(3) + s,
    "numpy": lambda s: np.full((2, 2), s, np.float32),
    "scalar": lambda s: float(s),
    "string": lambda s: f"s{s}",
}


class _LegacyBlock(nnx.Module):
    def __init__(self, seed: int) -> None:
        with nnx_compat.warnings_policy("ignore"):
            self.layers = [_linear(seed)]


def _atoms() -> st.SearchStrategy[Any]:
    kinds = {**OBJECTS, **VARIABLES, **ARRAYS}
    return st.builds(lambda k, s: kinds[k](s), st.sampled_from(sorted(kinds)), st.integers(0, 3))


nests = st.recursive(
    st.one_of(_atoms(), st.none()),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from("abcd"), children, max_size=3),
    ),
    max_leaves=8,
)


@given(nest=nests)
def test_leaves_paths_and_structure_are_those_of_flax_010(nest: Any) -> None:
    expected = reference_leaves(nest)
    got = as_keystr(tree.leaves_with_path(nest))
    assert [p for p, _ in got] == [p for p, _ in expected]
    assert all(a is b for (_, a), (_, b) in zip(got, expected, strict=True))
    leaves, treedef = tree.flatten(nest)
    assert all(a is b for a, (_, b) in zip(leaves, expected, strict=True))
    assert tree.structure(nest) == treedef
    assert treedef.num_leaves == len(expected)
    rebuilt = tree.unflatten(treedef, leaves)
    assert tree.structure(rebuilt) == treedef
    if NATIVE_LEAVES_ARE_010:  # flax 0.10: the reference is jax.tree itself
        assert as_keystr(jax.tree_util.tree_leaves_with_path(nest)) == got
        assert jax.tree.structure(nest) == treedef


@given(nest=nests)
def test_map_sees_nnx_objects_as_leaves(nest: Any) -> None:
    names = tree.map(lambda x: type(x).__name__, nest)
    assert [leaf for _, leaf in reference_leaves(names)] == [
        type(leaf).__name__ for _, leaf in reference_leaves(nest)
    ]
    paths = tree.map_with_path(lambda p, _: jax.tree_util.keystr(p), nest)
    assert tree.leaves(paths) == [p for p, _ in reference_leaves(nest)]
    count = tree.reduce(lambda n, _: n + 1, nest, 0)
    assert count == len(reference_leaves(nest))


def test_the_migration_guides_example() -> None:
    modules = [
        upstream.Linear(3, 3, rngs=upstream.Rngs(0)),
        upstream.BatchNorm(3, rngs=upstream.Rngs(1)),
    ]
    expected = ["Linear", "BatchNorm"]
    assert tree.map(lambda x: type(x).__name__, modules) == expected
    guide = jax.tree.map(
        lambda x: type(x).__name__, modules, is_leaf=lambda x: isinstance(x, nnx.Pytree)
    )
    assert guide == expected
    compat = jax.tree.map(lambda x: type(x).__name__, modules, is_leaf=nnx_compat.is_nnx_object)
    assert compat == expected


def test_reproduce_jax_tree_descending_into_modules() -> None:
    modules = [upstream.Linear(3, 3, rngs=upstream.Rngs(0))]
    native = jax.tree.map(lambda x: type(x).__name__, modules)
    if API == "0.10":
        assert native == ["Linear"]
    else:  # flax 0.11.0: Modules are pytrees
        assert native != ["Linear"]
        assert isinstance(native[0], upstream.Linear)


def test_user_is_leaf_is_honoured_too() -> None:
    nest = {"a": (1, 2), "m": _linear(0), "v": upstream.Param(jnp.ones(2))}
    leaves = tree.leaves(nest, is_leaf=lambda x: isinstance(x, tuple | upstream.Variable))
    assert leaves[0] == (1, 2)
    assert isinstance(leaves[1], upstream.Linear)
    assert isinstance(leaves[2], upstream.Param)
    assert tree.all({"a": [True, _linear(1)]})
    assert not tree.all({"a": [True, False]})
    assert tree.reduce(operator.add, [1, 2, 3]) == 6


def test_state_and_variables_are_not_nnx_objects() -> None:
    model = _linear(0)
    assert nnx_compat.is_nnx_object(model)
    assert nnx_compat.is_nnx_object(upstream.Rngs(0))
    assert not nnx_compat.is_nnx_object(upstream.Param(jnp.ones(1)))
    assert not nnx_compat.is_nnx_object(upstream.state(model))
    assert not nnx_compat.is_nnx_object([model])
    assert len(tree.leaves(upstream.state(model))) == 2
