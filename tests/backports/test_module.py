"""flax 0.11/0.12's Module and pytree helpers on the old flax (``nnx_compat._backports.module``).

Every test runs in each environment and asserts flax 0.12.8's results (recorded from flax
0.12.8 natively): on flax 0.12.8 it exercises flax's own objects, which proves the expected
values; on flax 0.10.7 and 0.11.2 the backports. Where the installed flax's own meaning of a
name stands (flax 0.10.7's ``nnx.static``, flax 0.11.2's ``register_data_type``) or a mode is
missing (tree mode before 0.12.6), the test says so and asserts what is served there.
"""

from __future__ import annotations

import dataclasses
import typing
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnx_compat import _added, _versions, nnx
from nnx_compat._backports import module as backport
from tests.backports import as_in_0128
from tests.strategies import assert_same_bits, flat_arrays

upstream = _versions.import_nnx()
#: flax 0.10's own nnx.dataclass / nnx.static / nnx.Static (pattern nnx-dataclasses) stand.
DATACLASSES_010 = "dataclasses" in vars(upstream)
#: tree mode and the graph-mode switches (flax 0.12.6); before it graph mode is the only mode.
TREE_MODE = _versions.feature("GRAPH_MODE_CONTEXT")
#: flax records which attributes of a Pytree are data (0.11): 0.10 puts all in the graph.
RECORDS_DATA = _versions.feature("HAS_PYTREE")


class Block(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.linear = nnx.Linear(2, 3, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.bn = nnx.BatchNorm(3, rngs=rngs)
        self.shared = self.linear
        self.name = "blk"
        self.config = {"width": 3}

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.dropout(self.bn(self.linear(x)))


def _names(pairs: Any) -> list[tuple[Any, str]]:
    return [(key, type(value).__name__) for key, value in pairs]


# --------------------------------------------------------------------------- every name


def test_each_name_is_served() -> None:
    for name in _added._MODULE:
        served = getattr(nnx, name)
        if name in vars(upstream):  # flax's own, or flax's own with the forms it lacks
            extended = _added.extended(name) if name in _added.EXTENDED else None
            assert served is (extended or getattr(upstream, name)), name
        else:
            assert served is _added.backport(name)
    for name in ("OptArray", "OptVariable"):  # flax 0.10 has them under nnx.training.optimizer
        assert getattr(nnx, name) is getattr(upstream.training.optimizer, name)


# --------------------------------------------------------------------------- view


def test_view_copies_the_modules_and_shares_the_variables() -> None:
    block = Block(nnx.Rngs(0))
    new = nnx.view(block, deterministic=True, use_running_average=True)
    assert new is not block and new.linear is not block.linear and new.shared is new.linear
    assert new.linear.kernel is block.linear.kernel  # the same Variables
    assert new.name is block.name and new.config is block.config  # static values as they are
    assert (new.dropout.deterministic, new.bn.use_running_average) == (True, True)
    assert (block.dropout.deterministic, block.bn.use_running_average) == (False, False)
    new.linear.kernel[...] = jnp.zeros((2, 3))
    assert_same_bits(block.linear.kernel[...], jnp.zeros((2, 3)))


def test_view_selects_with_only_and_reports_unused_keys() -> None:
    block = Block(nnx.Rngs(0))
    only = nnx.view(block, only=nnx.Dropout, deterministic=True)
    assert (only.dropout.deterministic, only.bn.use_running_average) == (True, False)
    with pytest.raises(ValueError, match=r"Unused keys found in nnx\.view: \['foo'\]"):
        nnx.view(block, deterministic=True, foo=1)
    with pytest.raises(ValueError, match=r"Unused keys .*\['use_running_average'\]"):
        nnx.view(block, only=nnx.Dropout, deterministic=True, use_running_average=True)
    kept = nnx.view(block, only=nnx.Dropout, use_running_average=True, raise_if_not_found=False)
    assert kept.bn.use_running_average is False


@given(
    deterministic=st.sampled_from([None, True, False]),
    running=st.sampled_from([None, True, False]),
    only=st.sampled_from(["all", "Dropout", "BatchNorm"]),
    extra=st.booleans(),
)
def test_view_sets_what_each_selected_set_view_takes(
    deterministic: bool | None, running: bool | None, only: str, extra: bool
) -> None:
    block = Block(nnx.Rngs(0))
    kwargs: dict[str, Any] = {"deterministic": deterministic, "use_running_average": running}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if extra:
        kwargs["unknown"] = 1
    selected = {"all": ..., "Dropout": nnx.Dropout, "BatchNorm": nnx.BatchNorm}[only]
    taken = {
        "all": {"deterministic", "use_running_average"},
        "Dropout": {"deterministic"},
        "BatchNorm": {"use_running_average"},
    }[only]
    if set(kwargs) - taken:
        with pytest.raises(ValueError, match=r"Unused keys found in nnx\.view"):
            nnx.view(block, only=selected, **kwargs)
        return
    new = nnx.view(block, only=selected, **kwargs)
    assert new.dropout.deterministic is kwargs.get("deterministic", False)
    assert new.bn.use_running_average is kwargs.get("use_running_average", False)


def test_view_under_jit_gives_the_eval_mode_numbers() -> None:
    block = Block(nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (4, 2))

    @nnx.jit
    def in_view(model: Block, x: jax.Array) -> jax.Array:
        return nnx.view(model, deterministic=True, use_running_average=True)(x)

    reference = Block(nnx.Rngs(0))
    reference.eval()
    assert_same_bits(in_view(block, x), nnx.jit(lambda m, x: m(x))(reference, x))
    assert (block.dropout.deterministic, block.bn.use_running_average) == (False, False)


class Decoder(nnx.Module):
    def __init__(self) -> None:
        self.mode = "train"
        self.width = 1

    def set_view(self, **kwargs: Any) -> None:
        self.mode = kwargs.get("mode", self.mode)


class Plain(nnx.Module):
    def __init__(self) -> None:
        self.mode = "train"

    def set_view(self, mode: str = "train", depth: int = 1) -> None:
        self.mode = mode


def test_view_and_view_info_with_a_users_set_view() -> None:
    outer = nnx.List([Decoder(), Plain()])
    new = nnx.view(outer, mode="eval", anything=3)  # **kwargs takes every keyword
    assert [m.mode for m in new] == ["eval", "eval"] and outer[0].mode == "train"
    assert nnx.view_info(outer) == (
        "Decoder:\n  set_view(self, **kwargs: 'Any') -> 'None'\n"
        "Plain:\n  set_view(self, mode: 'str' = 'train', depth: 'int' = 1) -> 'None'"
    )


def test_view_info_prints_the_layers_set_view_arguments() -> None:
    block = Block(nnx.Rngs(0))
    assert nnx.view_info(block) == (
        "BatchNorm:\n"
        "  use_running_average: bool | None = None\n"
        "    if True, the stored batch statistics will be\n"
        "    used instead of computing the batch statistics on the input.\n"
        "Dropout:\n"
        "  deterministic: bool | None = None\n"
        "    if True, disables dropout masking."
    )
    assert nnx.view_info(block, only=nnx.Dropout).splitlines()[0] == "Dropout:"
    attention = nnx.MultiHeadAttention(2, 4, 4, decode=False, rngs=nnx.Rngs(0))
    assert nnx.view_info(attention) == (
        "MultiHeadAttention:\n"
        "  deterministic: bool | None = None\n"
        "    if True, the module is set to deterministic mode.\n"
        "  decode: bool | None = None\n"
        "    if True, the module is set to decode mode.\n"
        "  batch_size: int | Shape | None = None\n"
        "    the batch size to use for the cache.\n"
        "  max_length: int | None = None\n"
        "    the max length to use for the cache."
    )


def test_view_of_a_graph_with_a_cycle_raises() -> None:
    outer = Plain()
    outer.child = Plain()
    outer.child.parent = outer
    with pytest.raises(ValueError, match="Found cycle in the graph at path 'child/parent'"):
        nnx.view(outer, mode="eval")


# --------------------------------------------------------------------------- with_attributes


def test_with_attributes_sets_them_on_a_copy() -> None:
    block = Block(nnx.Rngs(0))
    new = nnx.with_attributes(block, name="x", deterministic=True)
    assert (new.name, new.dropout.deterministic) == ("x", True)
    assert (block.name, block.dropout.deterministic) == ("blk", False)
    assert new.linear.kernel is block.linear.kernel
    only = nnx.with_attributes(block, only=nnx.BatchNorm, use_running_average=True)
    assert (only.bn.use_running_average, only.dropout.deterministic) == (True, False)
    message = r"Could not find at least one instance of the following attributes: \['nope'\]"
    with pytest.raises(ValueError, match=message):
        nnx.with_attributes(block, nope=1)
    assert nnx.with_attributes(block, nope=1, raise_if_not_found=False).name == "blk"

    @nnx.jit
    def in_eval(model: Block, x: jax.Array) -> jax.Array:
        return nnx.with_attributes(model, deterministic=True, use_running_average=True)(x)

    x = jnp.ones((2, 2))
    reference = Block(nnx.Rngs(0))
    reference.eval()
    assert_same_bits(in_eval(block, x), nnx.jit(lambda m, x: m(x))(reference, x))


# --------------------------------------------------------------------------- graph mode


def test_iter_module_children_yields_the_graph_node_children() -> None:
    block = Block(nnx.Rngs(0))
    expected = [("bn", "BatchNorm"), ("dropout", "Dropout"), ("linear", "Linear")]
    assert _names(nnx.iter_module_children(block)) == [*expected, ("shared", "Linear")]
    assert _names(nnx.iter_module_children(block.linear)) == []  # Variables are no modules
    assert _names(nnx.iter_module_children([block])) == [(0, "Block")]
    assert _names(nnx.iter_module_children(nnx.Rngs(0))) == [("default", "RngStream")]
    with pytest.raises(ValueError, match="Expected a graph node, got int"):
        list(nnx.iter_module_children(3))


@pytest.mark.parametrize("name", ["view", "view_info", "with_attributes", "iter_module_children"])
def test_tree_mode_needs_flax_0_12_6(name: str) -> None:
    function = getattr(nnx, name)
    block = Block(nnx.Rngs(0))

    def call(graph: bool) -> Any:
        result = function(block, graph=graph)
        return list(result) if name == "iter_module_children" else result  # a generator

    call(graph=True)
    if TREE_MODE:
        assert function is getattr(upstream, name)
    else:
        with pytest.raises(TypeError, match=r"graph=False\) needs flax 0\.12\.6"):
            call(graph=False)


@pytest.mark.parametrize("setting", ["set_graph_mode", "set_graph_updates"])
def test_graph_mode_settings_honour_true(setting: str) -> None:
    context = getattr(nnx, setting)
    assert context.current_value() is True
    with context(True):
        assert context.current_value() is True
        layer = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
        assert nnx.jit(lambda m: m.kernel[...].sum())(layer).shape == ()

    @context(True)
    def decorated(x: int) -> int:
        return x + 1

    assert decorated(1) == 2 and context.current_value() is True
    if TREE_MODE:  # the other mode is flax 0.12.6's
        with context(False):
            assert context.current_value() is False
        assert context.current_value() is True
    else:
        with pytest.raises(ValueError, match=r"needs flax 0\.12\.6"):
            context(False)


# --------------------------------------------------------------------------- var_defaults

#: Variables holding array references: flax 0.11.1's use_refs and 0.12.3's var_defaults.
REFS = "use_refs" in vars(upstream) or "var_defaults" in vars(upstream)
HIJAX = "use_hijax" in vars(upstream) or "var_defaults" in vars(upstream)


def _raw(variable: Any) -> Any:
    return variable.get_raw_value()  # flax 0.12's (a member served on the old flax)


def test_var_defaults_reads_the_defaults() -> None:
    defaults = nnx.var_defaults()
    assert dict(defaults) == {"hijax": False, "ref": False}
    assert (defaults.hijax, defaults.ref, len(defaults)) == (False, False, 2)
    assert repr(defaults) == "VarDefaults(hijax=False, ref=False)"
    with nnx.var_defaults(hijax=False, ref=False):
        assert dict(nnx.var_defaults()) == {"hijax": False, "ref": False}
        assert "Ref" not in type(jax.typeof(_raw(nnx.Param(jnp.ones(2))))).__name__


def test_var_defaults_ref_where_flax_has_array_refs() -> None:
    if not REFS:  # flax 0.10 fixes it when flax is imported
        with pytest.raises(ValueError, match=r"var_defaults\(ref=True\) needs flax 0\.12\.3"):
            nnx.var_defaults(ref=True)
        assert nnx.var_defaults().ref is False
        return
    with nnx.var_defaults(ref=True):
        assert nnx.var_defaults().ref is True
        variable = nnx.Param(jnp.ones(3))
    assert nnx.var_defaults().ref is False
    assert "Ref" in type(jax.typeof(_raw(variable))).__name__
    assert_same_bits(variable[...], jnp.ones(3))

    @nnx.var_defaults(ref=True)
    def inside() -> bool:
        return bool(nnx.var_defaults().ref)

    assert nnx.var_defaults().ref is False and inside() is True
    assert nnx.var_defaults().ref is False

    @jax.jit
    def step(x: jax.Array) -> jax.Array:
        with nnx.var_defaults(ref=True):
            w = nnx.Param(x)
        w[...] += 1
        return w[...]

    assert_same_bits(step(jnp.ones(2)), jnp.full(2, 2.0))


def test_var_defaults_hijax_where_flax_has_hijax_variables() -> None:
    if HIJAX:
        with nnx.var_defaults(hijax=True):
            assert nnx.var_defaults().hijax is True
        assert nnx.var_defaults().hijax is False
    else:
        with pytest.raises(ValueError, match=r"var_defaults\(hijax=True\) needs flax 0\.12\.1"):
            nnx.var_defaults(hijax=True)
        assert dict(nnx.var_defaults()) == {"hijax": False, "ref": False}  # nothing was set


# --------------------------------------------------------------------------- pytree data


def test_data_annotation_makes_an_attribute_state() -> None:
    assert typing.get_args(nnx.Data[int]) == (int, "__data__")
    with warnings.catch_warnings():
        # flax 0.12 deprecates the annotation (its own warning; the backports never warn)
        warnings.simplefilter("ignore", DeprecationWarning)

        class Holder(nnx.Module):
            items: nnx.Data[list[Any]]

            def __init__(self) -> None:
                self.items = [jnp.ones(2), "x", 3]
                self.other = "s"

    holder = Holder()
    state = flat_arrays(nnx.state(holder))
    assert list(state) == ["items/0"]
    assert_same_bits(state["items/0"], np.ones(2, np.float32))
    assert_same_bits(nnx.jit(lambda h: h.items[0] * 2)(holder), jnp.full(2, 2.0))


@dataclasses.dataclass(frozen=True)
class Point:
    x: int


def test_register_data_type_makes_its_instances_data() -> None:
    result = nnx.register_data_type(Point)
    if as_in_0128("register_data_type"):
        assert result is Point  # usable as a class decorator
    else:
        assert result in (None, Point)  # flax 0.11-0.12.4's own returns nothing
    assert nnx.is_data(Point(1)) and not nnx.is_data((1, 2))
    assert nnx.has_data({"a": Point(2), "b": "s"}) == [Point(2)]
    assert Point in nnx.pytreelib.DATA_REGISTRY


def test_check_pytree() -> None:
    with pytest.raises(TypeError, match=r"Expected a Pytree, got <class 'int'>\."):
        nnx.check_pytree(3)
    optimizer = nnx.Optimizer(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), optax.adam(1e-3), wrt=nnx.Param)
    for value in (nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.Rngs(0), optimizer, Block(nnx.Rngs(0))):
        assert nnx.check_pytree(value) is None

    class Bag(nnx.Module):
        def __init__(self) -> None:
            self.items: list[Any] = []

    filled = Bag()
    filled.items.append(jnp.ones(1))  # a static attribute that now holds data
    marked = Bag()
    marked.items.append(nnx.data(3))  # a mark that belongs on an attribute
    if not RECORDS_DATA:  # flax 0.10: every attribute is part of the graph
        assert nnx.check_pytree(filled) is None and nnx.check_pytree(marked) is None
        return
    if not as_in_0128("check_pytree"):  # an earlier 0.12's own words
        with pytest.raises(ValueError, match=r"unexpected Arrays .* static attribute 'items'"):
            nnx.check_pytree(filled)
        return
    message = r"Found unexpected data on value of type <class 'list'> in static attribute 'items'"
    with pytest.raises(ValueError, match=message):
        nnx.check_pytree(filled)
    with pytest.raises(ValueError, match=r"unexpected tags \{'data'\} on attribute 'Bag\.items'"):
        nnx.check_pytree(marked)


def test_pytreelib_is_the_module_of_the_pytree_api() -> None:
    for name in ("Pytree", "Data", "data", "register_data_type"):
        if name == "data" and _versions.feature("HAS_DATA") and not _versions.feature("DATA_FIELD"):
            continue  # flax 0.11's own module; nnx.data adds 0.12.1's keyword form to its data
        assert getattr(nnx.pytreelib, name) is getattr(nnx, name), name
    assert "Pytree" in dir(nnx.pytreelib)
    assert isinstance(nnx.Linear(1, 1, rngs=nnx.Rngs(0)), nnx.pytreelib.Pytree)
    with pytest.raises(AttributeError):
        nnx.pytreelib.no_such_name  # noqa: B018


# --------------------------------------------------------------------------- static, dataclass


def test_static_and_dataclass() -> None:
    if DATACLASSES_010:  # flax 0.10's own nnx.dataclass/static/Static: their meaning stands
        assert (nnx.dataclass, nnx.Static) == (upstream.dataclass, upstream.Static)
        assert nnx.static is backport.static_or_field  # flax 0.10's for keywords
        return
    if not as_in_0128("dataclass"):
        return
    assert typing.get_args(nnx.Static[int]) == (int, "__static__")
    with warnings.catch_warnings():
        # flax 0.12 deprecates the annotation (its own warning; the backports never warn)
        warnings.simplefilter("ignore", DeprecationWarning)

        @nnx.dataclass
        class Foo(nnx.Pytree):
            node: jax.Array
            meta: nnx.Static[int]
            meta2: int = nnx.static(default=3)
            meta4: int = dataclasses.field(default=5, metadata={"static": True})

    foo = Foo(node=jnp.array(1), meta=1)
    assert type(foo).__repr__ is nnx.Pytree.__repr__  # the Pytree's own repr
    bumped = jax.tree.map(lambda x: x + 1, foo)
    assert (int(bumped.node), bumped.meta, bumped.meta2, bumped.meta4) == (2, 1, 3, 5)
    assert foo == Foo(node=foo.node, meta=1)
    assert int(nnx.jit(lambda f: f.node * f.meta2)(foo)) == 3
    field = nnx.static(default=2, metadata={"x": 1})
    assert field.default == 2
    assert {k: v for k, v in field.metadata.items() if k != "nnx_value"} == {"x": 1, "static": True}


def test_a_data_field_is_data_on_every_flax() -> None:
    """``x: T = nnx.data()`` (flax 0.12.1's keyword form) makes a number a leaf; flax 0.11
    records the field among its data names through the served ``nnx.dataclass``."""

    @nnx.dataclass
    class Counter(nnx.Pytree):
        count: int = nnx.data()
        name: str = "c"

    counter = Counter(3)
    assert jax.tree.leaves(counter) == [3]
    assert jax.tree.map(lambda n: n + 1, counter).count == 4


def test_static_values_and_errors() -> None:
    if DATACLASSES_010:
        # flax 0.10's own static takes field keywords only: that form stays flax 0.10's field
        with pytest.raises(TypeError):
            upstream.static(3)
        assert nnx.static(default=3).metadata == upstream.static(default=3).metadata

    class Holder(nnx.Module):
        def __init__(self) -> None:
            self.a = nnx.static(3)
            self.b = nnx.Param(jnp.ones(1))

    holder = Holder()
    assert holder.a == 3 and list(flat_arrays(nnx.state(holder))) == ["b"]
    assert len(jax.tree.leaves(holder)) == 1
    with pytest.raises(TypeError, match=r"accepts either a single positional argument or keyword"):
        nnx.static(1, default=2)
    if not DATACLASSES_010:
        with pytest.raises(ValueError, match=r"Cannot use 'static' key in metadata argument"):
            nnx.static(default=2, metadata={"static": 1})
    # flax 0.12.0-0.12.7's own words: "Found Arrays in value ... annotated with nnx.static"
    found = "data" if DATACLASSES_010 or as_in_0128("static") else "Arrays"
    with pytest.raises(ValueError, match=rf"Found {found} in value of type .* with nnx\.static"):
        holder.c = nnx.static(jnp.ones(2))


class TimeStep(NamedTuple):
    step: Any
    reward: Any

    @staticmethod
    def zero() -> TimeStep:
        return TimeStep(step=nnx.Variable(jnp.array(0)), reward=nnx.Variable(jnp.array(0.0)))


def test_a_dataclass_object_through_cond() -> None:
    """flax 0.10.7's tests/nnx/transforms_test.py TestCond::test_basic, on every flax."""

    @nnx.dataclass
    class Foo(nnx.Object):
        timestep: TimeStep

        def update(self) -> None:
            def reward(value: float) -> Any:
                def branch(self: Foo) -> None:
                    self.timestep = TimeStep(
                        step=nnx.Variable(self.timestep.step + 1),
                        reward=nnx.Variable(jnp.array(value)),
                    )

                return branch

            nnx.cond(self.timestep.step % 2 == 0, reward(2.0), reward(0.0), self)

    foo = Foo(timestep=TimeStep.zero())
    for expected in ((1, 2.0), (2, 0.0), (3, 2.0), (4, 0.0)):
        foo.update()
        assert (int(foo.timestep.step[...]), float(foo.timestep.reward[...])) == expected


# --------------------------------------------------------------------------- optimizer state


def _var_type(leaf: Any) -> str:
    """The Variable type of a state leaf (flax 0.10's leaves are VariableStates)."""
    return (type(leaf) if isinstance(leaf, nnx.Variable) else leaf.type).__name__  # type: ignore[no-any-return]


def test_opt_array_and_opt_variable_are_the_optimizer_state() -> None:
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model: nnx.Linear, optimizer: nnx.Optimizer) -> None:
        grads = nnx.grad(lambda m: (m(jnp.ones((1, 2))) ** 2).mean())(model)
        optimizer.update(model, grads)

    step(model, optimizer)
    arrays = flat_arrays(nnx.state(optimizer, nnx.OptArray))
    assert list(arrays) == ["opt_state/0/count"] and int(arrays["opt_state/0/count"]) == 1
    variables = nnx.state(optimizer, nnx.OptVariable)
    assert sorted(flat_arrays(variables)) == [
        "opt_state/0/mu/bias", "opt_state/0/mu/kernel",
        "opt_state/0/nu/bias", "opt_state/0/nu/kernel",
    ]  # fmt: skip
    assert {_var_type(leaf) for _, leaf in nnx.to_flat_state(variables)} == {"OptVariable"}
    assert issubclass(nnx.OptArray, nnx.OptState) and issubclass(nnx.OptVariable, nnx.OptState)


# --------------------------------------------------------------------------- compat, deprecations


def test_compat_is_the_graph_mode_api() -> None:
    block = Block(nnx.Rngs(0))
    graphdef, state = nnx.compat.split(block)
    assert graphdef == nnx.split(block)[0]
    assert flat_arrays(state).keys() == flat_arrays(nnx.state(block)).keys()
    assert nnx.compat.split(block, graph=True)[0] == graphdef
    assert _names(nnx.compat.iter_modules(block))[-1] == ((), "Block")
    assert nnx.compat.view(block, deterministic=True).dropout.deterministic is True

    @nnx.compat.jit
    def count(model: Block) -> None:
        model.name = "changed"  # a graph update, propagated out

    count(block)
    assert block.name == "changed"
    names = set(backport._COMPAT_GRAPH) | set(backport._COMPAT_UPDATES)
    assert len(names) == 34 and names <= set(dir(nnx.compat))
    assert callable(nnx.compat.backup_keys)
    if not TREE_MODE:
        with pytest.raises(TypeError, match=r"graph=False\) needs flax 0\.12\.6"):
            nnx.compat.split(block, graph=False)


def test_deprecations_deprecated_warns_and_calls_through() -> None:
    def double(x: int) -> int:
        """Twice x."""
        return 2 * x

    old = nnx.deprecations.deprecated(double)
    with pytest.warns(DeprecationWarning, match=r"This function is deprecated\. Use .*double"):
        assert old(3) == 6
    assert old.__doc__.endswith("Twice x.")
    assert old.__doc__.startswith(".. deprecated::\n   Use :func:`")
    assert old.__name__ == "double"
