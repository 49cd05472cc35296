"""``nnx.Pytree`` on flax 0.10 (nnx_compat._backports.pytree) against flax 0.12.8's.

The expected leaves, paths and errors are flax 0.12.8's own (its pytree guide's classes); they
hold on flax 0.10 through the backport and on 0.12.8 natively. flax 0.11.x and 0.12.0-0.12.7
have their own ``Pytree``, whose meaning stands: there the tests check that it is flax's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnx_compat import _pytree, _versions, nnx
from tests.backports import as_in_0128
from tests.strategies import assert_same_bits

upstream = _versions.import_nnx()
#: flax 0.12.8's Pytree: the backport on flax 0.10, flax's own on 0.12.8.
AS_IN_0128 = as_in_0128("Pytree")
only_0128 = pytest.mark.skipif(not AS_IN_0128, reason="flax's own Pytree (0.11, 0.12.0-0.12.7)")


class Linear(nnx.Pytree):
    def __init__(self, din: int, dout: int) -> None:
        self.din = nnx.static(din)
        self.dout = nnx.static(dout)
        self.w = nnx.data(jnp.ones((din, dout)))
        self.b = nnx.data(jnp.zeros((dout,)))


class MLP(nnx.Pytree):
    def __init__(self, num_layers: int, dim: int) -> None:
        self.num_layers = nnx.static(num_layers)
        self.layers = nnx.data([Linear(dim, dim) for _ in range(num_layers)])


class Inferred(nnx.Pytree):
    def __init__(self) -> None:
        self.a = jnp.array(1.0)  # data: an array
        self.b = "Hello, world!"  # static
        self.c = nnx.data(3.14)  # data: explicit
        self.param = nnx.Param(jnp.ones(2))  # data: a Variable


def _paths(tree: Any) -> list[tuple[str, Any]]:
    return [(jax.tree_util.keystr(p), v) for p, v in jax.tree.flatten_with_path(tree)[0]]


def test_the_served_pytree() -> None:
    if _versions.feature("HAS_PYTREE"):
        assert nnx.Pytree is upstream.Pytree
    else:
        assert nnx.Pytree is _pytree._BACKPORT
    model = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    assert isinstance(model, nnx.Pytree) and issubclass(type(model), nnx.Pytree)
    assert isinstance(MLP(1, 1), nnx.Pytree) and issubclass(MLP, nnx.Pytree)
    assert not isinstance(3, nnx.Pytree) and not issubclass(int, nnx.Pytree)
    assert _pytree.is_backported_pytree(MLP(1, 1)) == (not _versions.feature("HAS_PYTREE"))
    assert not _pytree.is_backported_pytree(model)


@only_0128
def test_data_attributes_are_the_leaves_in_name_order() -> None:
    assert [path for path, _ in _paths(MLP(num_layers=2, dim=1))] == [
        ".layers[0].b",
        ".layers[0].w",
        ".layers[1].b",
        ".layers[1].w",
    ]
    inferred = Inferred()
    assert [path for path, _ in _paths(inferred)] == [".a", ".c", ".param.value"]
    assert jax.tree.leaves(inferred)[1] == 3.14


@only_0128
def test_status_stays_and_explicit_marks_override_it() -> None:
    inferred = Inferred()
    inferred.a = "x"  # a data attribute stays data
    inferred.b = nnx.data(42)  # explicit: now data
    inferred.c = nnx.static(0.5)  # explicit: now static
    assert jax.tree.leaves(inferred)[:2] == ["x", 42]
    assert [path for path, _ in _paths(inferred)] == [".a", ".b", ".param.value"]


@only_0128
def test_tree_map_and_unflatten_keep_the_class_and_static_values() -> None:
    mlp = MLP(num_layers=2, dim=2)
    doubled = jax.tree.map(lambda x: x * 2 + 1, mlp)
    assert type(doubled) is MLP and type(doubled.layers[1]) is Linear
    assert (doubled.num_layers, doubled.layers[0].din) == (2, 2)
    assert_same_bits(doubled.layers[1].w, jnp.full((2, 2), 3.0))
    assert_same_bits(mlp.layers[1].w, jnp.ones((2, 2)))  # the original is untouched
    leaves, treedef = jax.tree.flatten(mlp)
    assert jax.tree.structure(jax.tree.unflatten(treedef, leaves)) == treedef


@only_0128
@settings(deadline=None, max_examples=20)
@given(
    st.lists(st.floats(-4, 4, width=32), min_size=6, max_size=6),
    st.integers(1, 3),
)
def test_jit_of_a_pytree_matches_the_plain_arrays(values: list[float], scale: int) -> None:
    mlp = MLP(num_layers=1, dim=2)
    mlp.layers[0].w = jnp.asarray(np.array(values[:4], np.float32).reshape(2, 2))
    mlp.layers[0].b = jnp.asarray(np.array(values[4:], np.float32))
    x = jnp.arange(2.0)

    @jax.jit
    def forward(mlp: MLP, x: jax.Array) -> jax.Array:
        layer = mlp.layers[0]
        return (x @ layer.w + layer.b) * scale * mlp.num_layers

    @jax.jit
    def plain(w: jax.Array, b: jax.Array, x: jax.Array) -> jax.Array:
        return (x @ w + b) * scale

    assert_same_bits(forward(mlp, x), plain(mlp.layers[0].w, mlp.layers[0].b, x))


@only_0128
def test_split_and_merge() -> None:
    mlp = MLP(num_layers=2, dim=1)
    graphdef, state = nnx.split(mlp)
    merged = nnx.merge(graphdef, state)
    assert type(merged) is MLP and merged.num_layers == 2
    assert [path for path, _ in _paths(merged)] == [path for path, _ in _paths(mlp)]
    assert sorted(nnx_paths(state)) == ["layers/0/b", "layers/0/w", "layers/1/b", "layers/1/w"]


def nnx_paths(state: Any) -> list[str]:
    from nnx_compat import _paths

    return list(_paths.flatten(state))


@only_0128
def test_the_errors_of_flax_0_12_8() -> None:
    class Named(nnx.Pytree):
        def __init__(self, name: Any) -> None:
            self.name = nnx.static(name)

    with pytest.raises(ValueError, match=r"Found data in value of type .* annotated with nnx\."):
        Named(jnp.array(123))
    named = Named("mattjj")
    with pytest.raises(ValueError, match=r"Cannot assign data value of type .* to static att"):
        named.name = jnp.array(123)

    class Filled(nnx.Pytree):
        def __init__(self) -> None:
            self.ls: list[Any] = []
            for i in range(3):
                self.ls.append(jnp.array(i))

    with pytest.raises(ValueError, match=r"Found unexpected data on value of type <class 'list'>"):
        Filled()

    class Tagged(nnx.Pytree):
        def __init__(self) -> None:
            self.a = [nnx.data(1), nnx.static(2)]

    tags = r"Found unexpected tags \{'(data|static)', '(static|data)'\}"
    with pytest.raises(ValueError, match=tags):
        Tagged()

    with pytest.raises(TypeError, match=r"Pytree currently does not support __slots__"):

        class Slotted(nnx.Pytree):
            __slots__ = ("x",)


@only_0128
def test_pytree_false_is_no_jax_pytree() -> None:
    class Opaque(nnx.Pytree, pytree=False):
        def __init__(self) -> None:
            self.w = jnp.ones(2)
            self.items = [jnp.ones(1)]  # no check: every attribute is static

    opaque = Opaque()
    assert jax.tree.leaves(opaque) == [opaque]


@only_0128
def test_dataclass_fields_decide_the_status() -> None:
    @nnx.dataclass
    class Foo(nnx.Pytree):
        i: int = nnx.data()
        x: jax.Array
        a: int
        s: str = nnx.static(default="hi", kw_only=True)

    @nnx.dataclass
    class Bar(nnx.Pytree):
        ls: list[Foo] = nnx.data()
        shapes: list[int]

    bar = Bar(ls=[Foo(i, jnp.array(42 * i), i + 7) for i in range(2)], shapes=[8, 16])
    assert [(p, int(v)) for p, v in _paths(bar)] == [
        (".ls[0].i", 0),
        (".ls[0].x", 0),
        (".ls[1].i", 1),
        (".ls[1].x", 42),
    ]
    assert bar.ls[1].s == "hi"

    @dataclasses.dataclass
    class Plain(nnx.Pytree):
        a: int = dataclasses.field(metadata={"static": False})
        b: str = dataclasses.field(metadata={"static": True})

    assert jax.tree.leaves(Plain(a=10, b="hello")) == [10]
