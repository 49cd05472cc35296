"""flax 0.12.8's graph functions through ``nnx_compat.nnx`` on every flax: ``find_duplicates``,
``recursive_map``, ``set_metadata``, ``flatten``/``unflatten``, ``FlatState``,
``restore_int_paths``, ``map``, ``with_vars``/``vars_as``, ``unpack``, ``as_pure`` and
``graphlib``. The expected values are flax 0.12.8's own results: on flax 0.12.8 these tests run
flax's functions (served natively), on 0.10.7 and 0.11.2 the backports
(``nnx_compat._backports.graph``)."""

from __future__ import annotations

import importlib
import inspect
import warnings
from typing import Any

import flax.errors
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnx_compat import _versions, nnx
from tests.backports import as_in_0128

upstream = _versions.import_nnx()
#: flax 0.12.6: graph= chooses graph or tree mode; before, graph mode is the only mode.
TREE_MODE = _versions.installed_at_least("0.12.6")
#: Variables built on jax's hijax types and jax array references (flax 0.12).
NEW_VARIABLES = _versions.installed_at_least("0.12.0")
_is_ref = getattr(upstream.variablelib, "is_array_ref", None) or getattr(
    upstream.variablelib, "is_mutable_array", None
)


class Model(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.linear = nnx.Linear(2, 3, rngs=rngs)
        self.bn = nnx.BatchNorm(3, rngs=rngs)
        self.shared = self.linear.bias  # a shared Variable
        self.again = self.linear  # a shared Module
        self.rngs = rngs

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.bn(self.linear(x))  # type: ignore[no-any-return]


class Tree(nnx.Module):
    """A model without shared Variables."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.linear = nnx.Linear(2, 3, rngs=rngs)
        self.bn = nnx.BatchNorm(3, rngs=rngs)


class Cycle(nnx.Module):
    def __init__(self) -> None:
        self.me = self
        self.p = nnx.Param(jnp.ones(1))


#: The paths of Model's state (each shared Variable at its first path), by flax 0.12.8.
PATHS = [
    ("again", "bias"),
    ("again", "kernel"),
    ("bn", "bias"),
    ("bn", "mean"),
    ("bn", "scale"),
    ("bn", "var"),
    ("rngs", "default", "count"),
    ("rngs", "default", "key"),
]
TYPES = ["Param", "Param", "Param", "BatchStat", "Param", "BatchStat", "RngCount", "RngKey"]


def _raw(variable: Any) -> Any:
    getter = getattr(type(variable), "get_raw_value", None)
    return getter(variable) if getter is not None else variable.raw_value


def _is_reference(variable: Any) -> bool:
    return _is_ref is not None and bool(_is_ref(_raw(variable)))


def _by_path(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key] if isinstance(node, list | dict) else getattr(node, key)
    return node


def _variables(model: Any) -> list[Any]:
    return [_by_path(model, path) for path in PATHS]


def _public(visits: list[tuple[tuple[Any, ...], str]]) -> list[tuple[tuple[Any, ...], str]]:
    """The visits of Modules, Rngs and Variables (not the installed flax's own attributes)."""
    kinds = ("Model", "Linear", "BatchNorm", "Rngs", "RngStream", *TYPES)
    return [
        (path, kind)
        for path, kind in visits
        if kind in kinds and not any(str(key).startswith("_") for key in path)
    ]


# --------------------------------------------------------------------------- find_duplicates


def test_find_duplicates_lists_each_shared_module_and_variable() -> None:
    model = Model(nnx.Rngs(0))
    assert nnx.find_duplicates(model) == [
        [("again",), ("linear",)],
        [("again", "bias"), ("shared",)],
    ]
    assert nnx.find_duplicates(model, only=nnx.Param) == [[("again", "bias"), ("shared",)]]
    assert nnx.find_duplicates(model, only=nnx.Linear) == [[("again",), ("linear",)]]
    assert nnx.find_duplicates(Tree(nnx.Rngs(0))) == []


def test_find_duplicates_in_containers_arrays_and_leaves() -> None:
    model = Model(nnx.Rngs(0))
    kernel = model.linear.kernel
    assert nnx.find_duplicates([kernel, kernel, {"a": model.linear}]) == [
        [(0,), (1,), (2, "a", "kernel")]
    ]
    x = jnp.ones(3)
    assert nnx.find_duplicates({"a": x, "b": x, "c": [x]}) == [[("a",), ("b",), ("c", 0)]]
    # a tuple is traversed at each place, never a duplicate itself
    pair = (x, 1)
    assert nnx.find_duplicates([pair, pair]) == [[(0, 0), (1, 0)]]
    assert nnx.find_duplicates(jnp.ones(2)) == []
    assert nnx.find_duplicates(3) == []
    # the first path is kept whatever the filter; the others only where it accepts them
    only_c = nnx.PathContains("c")
    assert nnx.find_duplicates({"a": x, "b": x, "c": x}, only=only_c) == [[("a",), ("c",)]]


# --------------------------------------------------------------------------- flatten, unflatten


def test_flatten_gives_the_models_own_variables_by_path() -> None:
    if not as_in_0128("flatten"):
        return
    model = Model(nnx.Rngs(0))
    graphdef, flat = nnx.flatten(model)
    assert type(flat) is nnx.FlatState is upstream.statelib.FlatState
    assert list(flat.paths) == PATHS
    assert [type(v).__name__ for v in flat.leaves] == TYPES
    assert all(a is b for a, b in zip(flat.leaves, _variables(model), strict=True))
    assert graphdef == nnx.graphdef(model)
    assert flat[0][0] == ("again", "bias") and flat[0][1] is model.shared
    assert list(flat[1:2].paths) == [("again", "kernel")]
    assert np.asarray(flat.leaves[1][...]).tolist() == np.asarray(model.linear.kernel[...]).tolist()
    _, leaves = nnx.flatten(model, with_paths=False)
    assert [type(x).__name__ for x in leaves] == ["ArrayImpl"] * 7 + ["PRNGKeyArray"]
    assert leaves[1] is _raw(model.linear.kernel)
    assert nnx.flatten(model, graph=True)[0] == graphdef


def test_flatten_a_value_that_is_not_a_graph_node() -> None:
    array = jnp.ones(2)
    for value in (array, np.ones(2), 3, "s"):
        graphdef, flat = nnx.flatten(value)
        assert list(flat) == [((), value)] and graphdef.num_leaves == 1
        assert nnx.unflatten(graphdef, flat) is value
        assert nnx.flatten(value, with_paths=False)[1] == [value]
    graphdef, flat = nnx.flatten(None)
    assert list(flat) == [] and nnx.unflatten(graphdef, flat) is None
    param = nnx.Param(array)
    graphdef, flat = nnx.flatten(param)
    assert list(flat.paths) == [()] and flat.leaves[0] is param
    assert nnx.unflatten(graphdef, flat) is param
    graphdef, flat = nnx.flatten([array, param])
    assert list(flat.paths) == [(0,), (1,)] and flat.leaves[1] is param
    rebuilt = nnx.unflatten(graphdef, flat)
    assert type(rebuilt) is list and rebuilt[0] is array and rebuilt[1] is param


def test_unflatten_rebuilds_the_node_with_the_states_variables() -> None:
    model = Model(nnx.Rngs(0))
    graphdef, flat = nnx.flatten(model)
    for state in (flat, list(flat.leaves), flat.to_nested_state()):
        rebuilt = nnx.unflatten(graphdef, state)
        assert (
            type(rebuilt) is Model and rebuilt is not model and rebuilt.linear is not model.linear
        )
        assert all(a is b for a, b in zip(_variables(rebuilt), _variables(model), strict=True))
        assert rebuilt.again is rebuilt.linear and rebuilt.shared is rebuilt.linear.bias
    merged = nnx.merge(graphdef, flat)  # flax's merge takes the FlatState too
    assert all(a is b for a, b in zip(_variables(merged), _variables(model), strict=True))
    copied = nnx.unflatten(graphdef, flat, copy_variables=True)
    assert not any(a is b for a, b in zip(_variables(copied), _variables(model), strict=True))
    assert [type(v).__name__ for v in _variables(copied)] == TYPES
    assert copied.shared is copied.linear.bias
    kernel = copied.linear.kernel
    assert np.asarray(kernel[...]).tolist() == np.asarray(model.linear.kernel[...]).tolist()


def test_unflatten_makes_variables_of_bare_values_unless_told_not_to() -> None:
    if not as_in_0128("unflatten"):
        return
    model = Model(nnx.Rngs(0))
    graphdef, values = nnx.flatten(model, with_paths=False)
    rebuilt = nnx.unflatten(graphdef, values)
    assert [type(v).__name__ for v in _variables(rebuilt)] == TYPES
    assert rebuilt.shared is rebuilt.linear.bias and _raw(rebuilt.linear.kernel) is values[1]
    assert rebuilt.rngs.default.key.tag == "default"  # the metadata of the graph's Variable
    bare = nnx.unflatten(graphdef, values, recreate_variables=False)
    assert bare.linear.kernel is values[1] and bare.shared is values[0]
    assert bare.rngs.default.key is values[7] and bare.again is bare.linear
    single, _ = nnx.flatten(nnx.Param(jnp.ones(2)))
    assert nnx.unflatten(single, [jnp.zeros(2)], recreate_variables=False).tolist() == [0, 0]


def test_unflatten_errors() -> None:
    model = Model(nnx.Rngs(0))
    graphdef, flat = nnx.flatten(model)
    with pytest.raises(
        ValueError, match=r"Incorrect number of leaves, expected 8 leaves, but got 1"
    ):
        nnx.unflatten(graphdef, [1])
    with pytest.raises(ValueError, match=r"Unsupported state type: <class 'tuple'>"):
        nnx.unflatten(graphdef, tuple(flat.leaves))


def test_flatten_and_unflatten_under_jit() -> None:
    model = Model(nnx.Rngs(0))
    graphdef, values = nnx.flatten(model, with_paths=False)
    x = jnp.arange(4.0).reshape(2, 2)

    @jax.jit
    def forward(values: list[Any], x: jax.Array) -> tuple[jax.Array, list[Any]]:
        inner = nnx.unflatten(graphdef, values)
        y = inner(x)
        return y, nnx.flatten(inner, with_paths=False)[1]

    y, after = forward(values, x)
    reference = Model(nnx.Rngs(0))
    expected = nnx.jit(lambda model, x: model(x))(reference, x)  # the same program
    assert np.asarray(y).tobytes() == np.asarray(expected).tobytes()
    assert np.asarray(after[3]).tobytes() == np.asarray(reference.bn.mean[...]).tobytes()
    assert [a.dtype for a in after] == [b.dtype for b in values]


def test_flatten_graph_false_is_tree_mode_from_flax_0_12_6() -> None:
    tree = Tree(nnx.Rngs(0))
    if TREE_MODE:  # flax's own tree mode
        _, flat = nnx.flatten(tree, graph=False)
        assert [p for p, _ in flat] == [
            ("bn", "bias"), ("bn", "mean"), ("bn", "scale"), ("bn", "var"),
            ("linear", "bias"), ("linear", "kernel"),
        ]  # fmt: skip
        return
    for name, call in (
        ("flatten", lambda: nnx.flatten(tree, graph=False)),
        ("recursive_map", lambda: nnx.recursive_map(lambda p, n: n, tree, graph=False)),
        ("map", lambda: nnx.map(lambda p, v: v, tree, graph=False)),
        ("unpack", lambda: nnx.unpack(tree, graph=False)),
    ):
        # a release's own function without the parameter refuses it as Python does
        message = "needs flax 0\\.12\\.6 or newer" if as_in_0128(name) else "unexpected keyword"
        with pytest.raises(TypeError, match=message):
            call()


# --------------------------------------------------------------------------- recursive_map


def test_recursive_map_visits_children_first_on_a_copy_sharing_variables() -> None:
    model = Model(nnx.Rngs(0))
    visits: list[tuple[tuple[Any, ...], str]] = []

    def record(path: tuple[Any, ...], node: Any) -> Any:
        visits.append((path, type(node).__name__))
        return node

    new = nnx.recursive_map(record, model)
    assert _public(visits) == [
        (("again", "bias"), "Param"), (("again", "kernel"), "Param"), (("again",), "Linear"),
        (("bn", "bias"), "Param"), (("bn", "mean"), "BatchStat"), (("bn", "scale"), "Param"),
        (("bn", "var"), "BatchStat"), (("bn",), "BatchNorm"),
        (("rngs", "default", "count"), "RngCount"), (("rngs", "default", "key"), "RngKey"),
        (("rngs", "default"), "RngStream"), (("rngs",), "Rngs"), ((), "Model"),
    ]  # fmt: skip
    # the other visits: the attributes of the installed flax's own Module classes
    others = {path[-1] for path, kind in visits if (path, kind) not in _public(visits)}
    assert {"in_features", "out_features", "num_features", "tag"} <= others
    assert type(new) is Model and new is not model and new.linear is not model.linear
    assert new.rngs is not model.rngs
    assert all(a is b for a, b in zip(_variables(new), _variables(model), strict=True))
    assert new.again is new.linear and new.shared is new.linear.bias


def test_recursive_map_replaces_what_f_returns() -> None:
    model = Model(nnx.Rngs(0))

    def kernel_for_linear(path: tuple[Any, ...], node: Any) -> Any:
        return node.kernel if isinstance(node, nnx.Linear) else node

    new = nnx.recursive_map(kernel_for_linear, model)
    assert new.linear is model.linear.kernel and new.again is model.linear.kernel
    assert new.shared is model.linear.bias and type(model.linear).__name__ == "Linear"

    def double(path: tuple[Any, ...], node: Any) -> Any:
        return node * 2 if isinstance(node, jax.Array) else node

    out = nnx.recursive_map(double, {"a": jnp.ones(1), "b": [1, 2]})
    assert out["a"].tolist() == [2.0] and out["b"] == [1, 2]
    assert nnx.recursive_map(double, [jnp.ones(1)])[0].tolist() == [2.0]
    assert nnx.recursive_map(lambda p, n: n + 1, 3) == 4
    param = nnx.Param(jnp.ones(1))
    assert nnx.recursive_map(lambda p, n: (p, type(n).__name__), param) == ((), "Param")
    assert nnx.recursive_map(lambda p, n: n, param) is param


def test_recursive_map_errors() -> None:
    def double(path: tuple[Any, ...], node: Any) -> Any:
        return node * 2 if isinstance(node, jax.Array) else node

    message = r"Cannot update key '0' for node of type '<class 'tuple'>' because the node"
    with pytest.raises(ValueError, match=message):
        nnx.recursive_map(double, (jnp.ones(1),))
    with pytest.raises(ValueError, match=message):
        nnx.recursive_map(double, [jnp.ones(1), (jnp.ones(1),)])
    message = r"Found cycle in the graph at path 'me'\. Node of type <class '.*Cycle'> has"
    with pytest.raises(ValueError, match=message):
        nnx.recursive_map(lambda p, n: n, Cycle())


# --------------------------------------------------------------------------- set_metadata


def test_set_metadata_sets_it_on_the_selected_variables_in_place() -> None:
    model = Model(nnx.Rngs(0))
    assert nnx.set_metadata(model, foo=1) is None
    for variable in _variables(model):
        assert variable.get_metadata()["foo"] == 1
    nnx.set_metadata(model, only=nnx.PathContains("kernel"), bar=2)
    assert model.linear.kernel.get_metadata()["bar"] == 2
    assert "bar" not in model.linear.bias.get_metadata()
    nnx.set_metadata(model, only=nnx.BatchStat, baz=3)
    assert [("baz" in v.get_metadata()) for v in _variables(model)] == [
        t == "BatchStat" for t in TYPES
    ]
    nnx.set_metadata([model.linear.kernel], qux=4)
    assert model.linear.kernel.get_metadata()["qux"] == 4
    nnx.set_metadata(model, ref=False, hijax=False)  # what they are: nothing to change


def test_set_metadata_sharding_under_the_installed_flaxs_key() -> None:
    if not as_in_0128("set_metadata"):  # flax 0.12.0-0.12.7's own stores the names it is given
        return
    model = Tree(nnx.Rngs(0))
    key = _versions.sharding_metadata_key()
    nnx.set_metadata(model, only=nnx.PathContains("kernel"), out_sharding=("a", "b"))
    assert model.linear.kernel.get_metadata()[key] == ("a", "b")
    with pytest.warns(DeprecationWarning, match=r"'sharding' is deprecated, use 'out_sharding'"):
        nnx.set_metadata(model, only=nnx.PathContains("kernel"), sharding=(None, "b"))
    assert model.linear.kernel.get_metadata()[key] == (None, "b")


def test_set_metadata_errors() -> None:
    model = Model(nnx.Rngs(0))
    with pytest.raises(
        ValueError, match=r"Cannot change `hijax` metadata, expected False, got True"
    ):
        nnx.set_metadata(model, hijax=True)
    with pytest.raises(ValueError, match=r"Cannot change `ref` metadata, expected False, got True"):
        nnx.set_metadata(model, ref=True)
    with pytest.raises(TypeError, match=r"set_metadata takes either 1 or 2 arguments, or at least"):
        nnx.set_metadata(model)
    with pytest.raises(IndexError):  # flax 0.12.8's own: a Variable is not a graph of Variables
        nnx.set_metadata(model.linear.kernel, foo=1)


def test_set_metadata_inside_and_outside_a_trace() -> None:
    model = Tree(nnx.Rngs(0))

    seen: list[Any] = []

    @nnx.jit
    def inside(model: Tree) -> None:
        nnx.set_metadata(model, inner=1)  # the traced model's Variables: allowed
        seen.append(model.linear.kernel.get_metadata()["inner"])

    inside(model)
    assert seen == [1]

    @jax.jit
    def outside(x: jax.Array) -> jax.Array:
        nnx.set_metadata(model, outer=1)
        return x

    with pytest.raises(flax.errors.TraceContextError, match=r"Cannot mutate Param from a"):
        outside(jnp.ones(1))


# --------------------------------------------------------------------------- map


def test_map_builds_a_new_node_from_f_of_each_variable() -> None:
    model = Model(nnx.Rngs(0))
    paths: list[tuple[Any, ...]] = []

    def same(path: tuple[Any, ...], variable: Any) -> Any:
        paths.append(path)
        return variable

    new = nnx.map(same, model)
    assert paths == PATHS
    assert type(new) is Model and new is not model and new.linear is not model.linear
    assert all(a is b for a, b in zip(_variables(new), _variables(model), strict=True))
    assert new.again is new.linear and new.shared is new.linear.bias

    def zero(path: tuple[Any, ...], variable: Any) -> Any:
        if isinstance(variable, nnx.RngKey):
            return variable
        return variable.replace(jnp.zeros_like(variable[...]))

    zeros = nnx.map(zero, model)
    assert type(zeros.linear.kernel) is nnx.Param and zeros.shared is zeros.linear.bias
    assert np.asarray(zeros.linear.kernel[...]).tolist() == [[0.0] * 3] * 2
    assert np.asarray(model.bn.var[...]).tolist() == [1.0] * 3  # the model is left as it was


def test_map_bare_values_and_leaves() -> None:
    model = Model(nnx.Rngs(0))
    values = nnx.map(lambda p, v: v[...], model)
    assert [type(v).__name__ for v in _variables(values)] == TYPES
    assert values.shared is values.linear.bias
    bare = nnx.map(lambda p, v: v[...], model, recreate_variables=False)
    assert type(bare.linear.kernel).__name__ == "ArrayImpl"
    assert type(bare.rngs.default.key).__name__ == "PRNGKeyArray"
    assert bare.shared is bare.linear.bias
    param = nnx.Param(jnp.ones(2))
    assert nnx.map(lambda p, v: v, param) is param
    remade = nnx.map(lambda p, v: jnp.zeros(2), param)
    assert type(remade) is nnx.Param and remade is not param
    assert nnx.map(lambda p, v: jnp.zeros(2), param, recreate_variables=False).tolist() == [0, 0]
    assert nnx.map(lambda p, v: v + 1, jnp.ones(1)).tolist() == [2.0]
    as_list = nnx.map(lambda p, v: v, [jnp.ones(1), param])
    assert type(as_list) is list and as_list[1] is param


def test_map_inside_jit() -> None:
    model = Tree(nnx.Rngs(0))
    kernel = np.asarray(model.linear.kernel[...])

    @nnx.jit
    def doubled(model: Tree) -> jax.Array:
        new = nnx.map(lambda p, v: v.replace(v[...] * 2), model)
        return new.linear.kernel[...]  # type: ignore[no-any-return]

    assert np.asarray(doubled(model)).tobytes() == (kernel * 2).tobytes()
    assert np.asarray(model.linear.kernel[...]).tobytes() == kernel.tobytes()


# --------------------------------------------------------------------------- with_vars, vars_as


def test_with_vars_shares_the_variables_that_already_are_so() -> None:
    model = Model(nnx.Rngs(0))
    for kwargs in ({}, {"ref": False}, {"hijax": False}, {"ref": True, "only": nnx.Intermediate}):
        new = nnx.with_vars(model, **kwargs)  # nothing differs: a new graph of the same Variables
        assert type(new) is Model and new is not model and new.linear is not model.linear
        assert new.shared is new.linear.bias and new.again is new.linear
        assert all(a is b for a, b in zip(_variables(new), _variables(model), strict=True))
    param = nnx.Param(jnp.ones(2))
    assert nnx.with_vars(param) is param


def test_with_vars_refuses_shared_variables_it_would_copy() -> None:
    model = Model(nnx.Rngs(0))
    message = r"Found duplicate at paths:\n  ---\n  again/bias\n  shared\n  ---"
    for kwargs in ({"ref": True}, {"hijax": True}):
        with pytest.raises(ValueError, match=message):
            nnx.with_vars(model, **kwargs)
    kernel = model.linear.kernel
    with pytest.raises(ValueError, match=r"Found duplicate at paths:\n  ---\n  0\n  1\n  ---"):
        nnx.with_vars([kernel, kernel], ref=True)


def test_with_vars_ref_and_hijax() -> None:
    model = Model(nnx.Rngs(0))
    if not NEW_VARIABLES:  # no counterpart on the old flax: the release that has them
        for kwargs in ({"ref": True}, {"hijax": True}):
            with pytest.raises(TypeError, match=r"=True needs flax 0\.12 or newer"):
                nnx.with_vars(model, allow_duplicates=True, **kwargs)
        return
    new = nnx.with_vars(model, ref=True, allow_duplicates=True)
    assert [_is_reference(v) for v in _variables(new)] == [True] * 8
    assert not any(a is b for a, b in zip(_variables(new), _variables(model), strict=True))
    assert new.shared is new.linear.bias and not _is_reference(model.linear.kernel)
    stats = nnx.with_vars(model, ref=True, only=nnx.BatchStat)
    assert _is_reference(stats.bn.mean) and stats.linear.kernel is model.linear.kernel
    hijax = nnx.with_vars(model, hijax=True, only=nnx.BatchStat)
    assert hijax.bn.mean.hijax and not hijax.linear.kernel.hijax


def test_with_vars_mutable_reads_the_variables_metadata() -> None:
    model = Tree(nnx.Rngs(0))
    if NEW_VARIABLES and hasattr(model.linear.kernel, "mutable"):  # flax 0.12.0-0.12.7
        assert model.linear.kernel.mutable and model.bn.mean.mutable
        new = nnx.with_vars(model, mutable=True)  # what they are: shared
        assert new.linear.kernel is model.linear.kernel and new.bn.mean is model.bn.mean
        return
    with pytest.raises(AttributeError, match=r"object has no attribute 'mutable'"):
        nnx.with_vars(model, mutable=True)


def test_vars_as_is_the_deprecated_name_of_with_vars() -> None:
    if not as_in_0128("vars_as"):  # flax 0.12.1-0.12.7's own name, not deprecated there
        return
    model = Tree(nnx.Rngs(0))
    with pytest.warns(DeprecationWarning, match=r"This function is deprecated\. Use with_vars"):
        new = nnx.vars_as(model)
    assert type(new) is Tree and new.linear.kernel is model.linear.kernel


# --------------------------------------------------------------------------- unpack, GraphState


def test_unpack_bundles_the_graphdef_with_the_state() -> None:
    model = Model(nnx.Rngs(0))
    state = nnx.unpack(model)
    assert type(state).__name__ == "GraphState"
    assert isinstance(state, nnx.graphlib.GraphState)
    assert state._graphdef == nnx.graphdef(model)
    assert list(state.keys()) == ["again", "bn", "rngs"] and len(state) == 3
    assert "bn" in state and "linear" not in state
    assert state["again"]["kernel"] is model.linear.kernel
    assert state.raw_mapping is state._state.raw_mapping  # the State's own attributes
    params, rest = nnx.unpack(model, nnx.Param, ...)
    assert list(params.keys()) == ["again", "bn"] and list(rest.keys()) == ["bn", "rngs"]
    three = nnx.unpack(model, nnx.Param, nnx.BatchStat, ...)
    assert [list(s.keys()) for s in three] == [["again", "bn"], ["bn"], ["rngs"]]


def test_unpack_errors() -> None:
    model = Model(nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"Non-exhaustive filters, got a non-empty remainder"):
        nnx.unpack(model, nnx.Param)
    with pytest.raises(ValueError, match=r"Expected a State object, got Param"):
        nnx.unpack(nnx.Param(jnp.ones(2)))
    with pytest.raises(ValueError, match=r"Expected a State object, got ArrayImpl"):
        nnx.unpack(jnp.ones(2))
    graph_state = nnx.unpack(model)
    with pytest.raises(ValueError, match=r"Expected a State object, got dict"):
        type(graph_state)(graph_state._graphdef, {})


def test_merge_takes_graph_states() -> None:
    model = Model(nnx.Rngs(0))
    merged = nnx.merge(nnx.unpack(model))
    assert type(merged) is Model and merged is not model
    assert all(a is b for a, b in zip(_variables(merged), _variables(model), strict=True))
    params, rest = nnx.unpack(model, nnx.Param, ...)
    assert type(nnx.merge(params, rest)) is Model
    assert type(nnx.merge(nnx.graphdef(model), nnx.unpack(model))) is Model
    with pytest.raises(ValueError, match=r"Expected GraphState object, got <class '.*State'>"):
        nnx.merge(params, rest._state)
    other = nnx.unpack(nnx.Linear(1, 1, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"GraphDef must be the same for all GraphState objects"):
        nnx.merge(params, other)


def test_graph_state_is_a_pytree_through_jit() -> None:
    model = Model(nnx.Rngs(0))
    state = nnx.unpack(model)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
    # the State's own key paths (then the installed flax's path into each Variable)
    assert [p[: p.rindex("]") + 1] for p in paths] == [
        "".join(f"[{k!r}]" for k in path) for path in PATHS
    ]
    again = jax.jit(lambda s: s)(state)
    assert type(again) is type(state) and again._graphdef == state._graphdef
    x = jnp.arange(4.0).reshape(2, 2)

    @nnx.jit
    def forward(state: Any, x: jax.Array) -> jax.Array:
        return nnx.merge(state)(x)  # type: ignore[no-any-return]

    reference = Model(nnx.Rngs(0))
    expected = nnx.jit(lambda model, x: model(x))(reference, x)  # the same program
    assert np.asarray(forward(state, x)).tobytes() == np.asarray(expected).tobytes()
    # the state holds the model's own Variables: the statistics' update reaches the model
    assert not np.array_equal(model.bn.mean[...], np.zeros(3))
    assert np.asarray(model.bn.mean[...]).tobytes() == np.asarray(reference.bn.mean[...]).tobytes()


# --------------------------------------------------------------------------- as_pure


def test_as_pure_replaces_variables_by_their_values() -> None:
    model = Tree(nnx.Rngs(0))
    _, state = nnx.split(model)
    pure = nnx.as_pure(state)
    assert type(pure).__name__ == "State"
    assert nnx.to_pure_dict(jax.tree.map(jnp.shape, pure)) == {
        "bn": {"bias": (3,), "mean": (3,), "scale": (3,), "var": (3,)},
        "linear": {"bias": (3,), "kernel": (2, 3)},
    }
    assert pure["linear"]["kernel"] is _raw(model.linear.kernel)
    mixed = nnx.as_pure([nnx.Param(jnp.ones(1)), 1, {"a": nnx.BatchStat(2)}])
    assert mixed[0].tolist() == [1.0] and mixed[1:] == [1, {"a": 2}]
    assert nnx.as_pure(nnx.Param(nnx.Param(jnp.ones(1)))).tolist() == [1.0]
    assert type(nnx.as_pure(model)) is Tree  # a graph node is not a pytree of Variables
    jitted = jax.jit(nnx.as_pure)(nnx.state(model))
    assert jitted["linear"]["kernel"].tolist() == np.asarray(model.linear.kernel[...]).tolist()


def test_as_pure_reads_array_references() -> None:
    new_ref = getattr(jax, "new_ref", None) or upstream.variablelib.__dict__.get(
        "array_ref", upstream.variablelib.__dict__.get("mutable_array")
    )
    ref = new_ref(jnp.ones(2))
    pure = nnx.as_pure([ref, _reference_param(jnp.zeros(1))])
    assert [type(x).__name__ for x in pure] == ["ArrayImpl", "ArrayImpl"]
    assert pure[0].tolist() == [1.0, 1.0] and pure[1].tolist() == [0.0]


# --------------------------------------------------------------------------- restore_int_paths


def test_restore_int_paths_as_flax_0_12_8() -> None:
    assert nnx.restore_int_paths({"0": {"1": 1, "a": 2}, " 2": 3, "1_0": 4, "x": {}, 2.5: 5}) == {
        0: {1: 1, "a": 2},
        2: 5,  # " 2" and 2.5 both read 2: the later one stands
        10: 4,
    }
    assert nnx.restore_int_paths(nnx.State({"0": 1})) == {0: 1}
    with pytest.raises(TypeError, match=r"int\(\) argument must be a string"):
        nnx.restore_int_paths({None: 1})
    with pytest.raises(AssertionError, match=r"expected Mapping; got list"):
        nnx.restore_int_paths([1])  # type: ignore[arg-type]


def test_restore_int_paths_restores_a_checkpointed_state() -> None:
    model = nnx.Sequential(nnx.Linear(1, 2, rngs=nnx.Rngs(0)), nnx.Linear(2, 1, rngs=nnx.Rngs(1)))
    pure = nnx.to_pure_dict(nnx.state(model))
    restored = nnx.restore_int_paths(_string_keys(pure))
    assert jax.tree.structure(restored) == jax.tree.structure(pure)
    assert sorted(restored["layers"]) == [0, 1]


def _reference_param(value: jax.Array) -> Any:
    """A Param holding a jax array reference: ``ref=True`` (flax 0.12), ``use_ref=True`` (flax
    0.11), ``mutable=True`` (flax 0.10), by flax's own constructor."""
    for keyword in ("ref", "use_ref", "mutable"):
        try:
            param = upstream.Param(value, **{keyword: True})
        except TypeError:
            continue
        if _is_reference(param):
            return param
    raise AssertionError("no array-reference Variable on this flax")


def _string_keys(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {str(k): _string_keys(v) for k, v in tree.items()}
    return tree


_keys = st.one_of(
    st.integers(0, 99).map(str), st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True)
)
_trees = st.recursive(
    st.integers(0, 9), lambda children: st.dictionaries(_keys, children, max_size=4), max_leaves=12
)


def _expected(tree: dict[str, Any]) -> dict[Any, Any]:
    """Integer keys where the text is one, the empty dicts gone (flax 0.12.8 on these keys)."""
    out: dict[Any, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            value = _expected(value)
            if not value:
                continue
        out[int(key) if key.isdigit() else key] = value
    return out


@given(tree=st.dictionaries(_keys, _trees, max_size=5))
def test_restore_int_paths_on_nested_paths(tree: dict[str, Any]) -> None:
    assert nnx.restore_int_paths(tree) == _expected(tree)


# --------------------------------------------------------------------------- graphlib


def test_graphlib_is_the_graph_module_with_the_flax_012_functions() -> None:
    graphlib = nnx.graphlib
    for name in (
        "GraphDef", "is_graph_node", "update_context", "iter_graph", "SplitContext",
        "MergeContext", "state", "split", "merge", "clone", "is_node", "HashableMapping",
        "RefMap", "register_graph_node_type", "get_node_impl", "is_node_leaf", "IndexMap",
    ):  # fmt: skip
        assert getattr(graphlib, name) is getattr(upstream.graph, name), name
    for name in ("flatten", "unflatten", "recursive_map", "find_duplicates", "map", "unpack"):
        assert getattr(graphlib, name) is getattr(nnx, name), name
    assert graphlib.FlatState is nnx.FlatState
    assert isinstance(nnx.unpack(Tree(nnx.Rngs(0))), graphlib.GraphState)
    assert importlib.import_module(f"{nnx.__name__}.graphlib") is graphlib
    if not TREE_MODE:
        with pytest.raises(AttributeError, match="set_graph_mode"):
            graphlib.set_graph_mode  # noqa: B018


def test_served_names_never_warn_when_looked_up() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in (
            "find_duplicates", "recursive_map", "set_metadata", "flatten", "unflatten",
            "FlatState", "restore_int_paths", "map", "vars_as", "with_vars", "unpack",
            "as_pure", "graphlib",
        ):  # fmt: skip
            getattr(nnx, name)


#: The parameters of flax 0.12.8's functions (``/`` positional-only, ``*`` keyword-only).
SIGNATURES = {
    "find_duplicates": "node, /, *, only=Ellipsis",
    "recursive_map": "f, node, /, *, graph=None",
    "set_metadata": "node, /, *, only=Variable, **metadata",
    "flatten": "node, /, *, with_paths=True, ref_index=None, ref_outer_index=None, graph=None",
    "unflatten": "graphdef, state, /, *, index_ref=None, outer_index_outer_ref=None, "
    "copy_variables=False, recreate_variables=True",
    "restore_int_paths": "pure_dict",
    "map": "f, node, /, *, graph=None, recreate_variables=True",
    "vars_as": "node, /, *, hijax=None, ref=None, mutable=None, only=Ellipsis, "
    "allow_duplicates=False",
    "with_vars": "node, /, *, hijax=None, ref=None, mutable=None, only=Ellipsis, "
    "allow_duplicates=False",
    "unpack": "node, *filters, graph=None",
    "as_pure": "tree",
}


def _parameters(function: Any) -> str:
    def default(value: Any) -> str:
        return value.__name__ if isinstance(value, type) else repr(value)

    signature = inspect.signature(function)
    parts = [
        p.name if p.default is p.empty else f"{p.name}={default(p.default)}"
        for p in signature.parameters.values()
    ]
    kinds = [p.kind for p in signature.parameters.values()]
    for at, kind in reversed(list(enumerate(kinds))):
        if kind is inspect.Parameter.VAR_POSITIONAL:
            parts[at] = "*" + parts[at]
        elif kind is inspect.Parameter.VAR_KEYWORD:
            parts[at] = "**" + parts[at]
    if inspect.Parameter.KEYWORD_ONLY in kinds and inspect.Parameter.VAR_POSITIONAL not in kinds:
        parts.insert(kinds.index(inspect.Parameter.KEYWORD_ONLY), "*")
    if inspect.Parameter.POSITIONAL_ONLY in kinds:
        last = max(i for i, kind in enumerate(kinds) if kind is inspect.Parameter.POSITIONAL_ONLY)
        parts.insert(last + 1, "/")
    return ", ".join(parts)


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_the_parameters_are_flax_0_12_8s(name: str) -> None:
    if not as_in_0128(name):
        return
    assert _parameters(getattr(nnx, name)) == SIGNATURES[name]
