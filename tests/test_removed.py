"""flax 0.10 names that later releases removed: 0.10's behaviour, or an error naming the fix."""

from __future__ import annotations

import warnings

import flax.nnx as upstream
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import nnx_compat
from nnx_compat import _added, _patterns, _removed, _variables, _versions, nnx
from tests.markers import line_of
from tests.strategies import assert_same_bits


def _native(name: str) -> bool:
    return name in vars(upstream)


@pytest.mark.parametrize("name", sorted(_patterns.REMOVED))
def test_each_removed_name(name: str) -> None:
    removed = _patterns.REMOVED[name]
    pattern = _patterns.get(removed.pattern)
    assert name in pattern.shims
    if _native(name):  # the installed flax has it: its own object (or the shim), silently
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            served = getattr(nnx, name)
        if name in _patterns.SHIMS:
            assert served is _patterns.load_shim(name)
        elif name in _added.EXTENDED and _added.extended(name) is not None:
            assert served is _added.extended(name)  # flax's own, with the forms it lacks
        else:
            assert served is getattr(upstream, name)
        assert nnx_compat.report() == ()
    elif name in _added.BACKPORTS:  # flax 0.12 has the name again: its meaning, backported
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert getattr(nnx, name) is _added.backport(name)
        assert nnx_compat.report() == ()
    elif removed.backport:
        with nnx_compat.warnings_policy("ignore"):
            value = getattr(nnx, name)
        assert value is _patterns.load_removed(name)
        assert [h.pattern for h in nnx_compat.report()] == [pattern.id]
        assert pattern.status == "bridged"
    else:
        with pytest.raises(AttributeError, match=rf"use .*\[nnx-compat: {pattern.id}\]"):
            getattr(nnx, name)
        assert pattern.status == "non-goal" and pattern.non_goal
        assert not hasattr(nnx, name)


def test_the_warning_lands_at_the_users_line() -> None:
    if _native("fork"):
        pytest.skip("flax 0.10 has nnx.fork")
    with pytest.warns(nnx_compat.RngsDeprecationWarning, match="nnx-fork") as caught:
        _ = nnx.fork  # USE-FORK
    assert caught[0].filename == __file__
    assert caught[0].lineno == line_of(__file__, "USE-FORK")


@pytest.mark.parametrize("pattern", [4, (2, 3), (2, None)])
def test_fork_splits_the_selected_keys_as_flax_010(pattern: object) -> None:
    rngs = upstream.Rngs(params=0, dropout=1)
    state = upstream.state(rngs)
    forked = _removed.fork(state, "dropout", pattern)
    shape = pattern if isinstance(pattern, int) else tuple(a or 1 for a in pattern)
    (split_key,) = jax.tree.leaves(forked.split_keys)
    expected = jax.random.split(rngs.dropout.key[...], shape)
    assert_same_bits(jax.random.key_data(split_key), jax.random.key_data(expected))
    assert len(jax.tree.leaves(forked.split_counts)) == 1
    assert len(jax.tree.leaves(forked.broadcast_keys)) == 1  # params
    if _native("fork"):  # flax 0.10's own gives the same bits
        native = upstream.fork(state, "dropout", pattern)
        (native_key,) = jax.tree.leaves(native.split_keys)
        assert_same_bits(jax.random.key_data(split_key), jax.random.key_data(native_key))
    with pytest.raises(ValueError, match="split_pattern"):
        _removed.fork(state, "dropout", None)


def test_with_sharding_constraint_without_a_mesh_is_a_no_op() -> None:
    x = jnp.arange(4.0)
    assert _removed.with_sharding_constraint(x, P("data")) is x
    assert _removed.with_sharding_constraint(x, None) is x


@pytest.mark.multidevice
def test_with_sharding_constraint_under_a_mesh() -> None:
    if len(jax.devices()) < 8:
        pytest.fail("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8")
    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
    x = jnp.ones((4, 8))
    constrain = jax.jit(lambda x: _removed.with_sharding_constraint(x, P("data", "model"), mesh))
    y = constrain(x)
    assert y.sharding.is_equivalent_to(NamedSharding(mesh, P("data", "model")), 2)
    tree = {"a": x, "b": x}
    specs = {"a": P("data", None), "b": P(None, "model")}
    out = jax.jit(lambda t: _removed.with_sharding_constraint(t, specs, mesh))(tree)
    for key, spec in specs.items():
        assert out[key].sharding.is_equivalent_to(NamedSharding(mesh, spec), 2)
    if _native("with_sharding_constraint"):
        native = jax.jit(lambda x: upstream.with_sharding_constraint(x, P("data", "model"), mesh))
        assert native(x).sharding == y.sharding


SHARES = _versions.feature("STATE_SHARES_VARIABLES")  # flax 0.11: states hold Variables


def test_variable_state_answers_as_variable_where_states_hold_variables() -> None:
    if not SHARES:
        assert nnx.VariableState is upstream.VariableState  # flax 0.10's own
        return
    with nnx_compat.warnings_policy("ignore"):
        variable_state = nnx.VariableState
    param = upstream.Param(jnp.ones(1))
    assert isinstance(param, variable_state)
    assert issubclass(upstream.Param, variable_state)
    assert not isinstance(jnp.ones(1), variable_state)
    assert type(variable_state(jnp.ones(1))) is upstream.Variable  # flax 0.11's alias use
    # flax 0.11 has the name (silent); flax 0.12 removed it (the access warns, as flax's does)
    expected = [] if _native("VariableState") else ["variable-state"]
    assert [hit.pattern for hit in nnx_compat.report()] == expected


def test_variable_state_of_a_type_builds_that_variable() -> None:
    """flax 0.10's ``VariableState(type, value, **metadata)``; flax 0.11's alias rejects it."""
    if not SHARES:
        native = upstream.VariableState(upstream.Param, jnp.ones(2), tag="x")
        assert native.type is upstream.Param and native.tag == "x"
        return
    with pytest.raises(TypeError):
        upstream.Variable(upstream.Param, jnp.ones(2))  # what flax 0.11's alias does with it
    with nnx_compat.warnings_policy("ignore"):
        variable_state = nnx.VariableState
    with pytest.warns(nnx_compat.VariableDeprecationWarning, match="variable-state") as caught:
        built = variable_state(upstream.Param, jnp.ones(2), tag="x")  # STATE-OF-TYPE
    assert caught[0].lineno == line_of(__file__, "STATE-OF-TYPE")
    assert type(built) is upstream.Param
    assert built.get_metadata()["tag"] == "x"
    assert_same_bits(built[...], jnp.ones(2))


def test_param_state_and_to_variable() -> None:
    """flax 0.10's ``Param.state(value)`` (a state leaf) and ``state.to_variable()``."""
    if not SHARES:
        state = upstream.Param.state(jnp.ones(2))
        assert type(state.to_variable()) is upstream.Param
        return
    # flax's own Variable lacks both (nnx_compat's patch added them)
    assert _variables._saved["state"] is _variables._ABSENT
    assert _variables._saved["to_variable"] is _variables._ABSENT
    with pytest.warns(nnx_compat.VariableDeprecationWarning, match="variable-state") as caught:
        leaf = upstream.Param.state(jnp.ones(2), tag="x")  # PARAM-STATE
    assert caught[0].lineno == line_of(__file__, "PARAM-STATE")
    assert type(leaf) is upstream.Param and leaf.get_metadata()["tag"] == "x"
    with pytest.warns(nnx_compat.VariableDeprecationWarning, match="variable-state"):
        variable = leaf.to_variable()
    assert type(variable) is upstream.Param and variable is not leaf
    assert variable.get_metadata()["tag"] == "x"
    assert_same_bits(variable[...], leaf[...])


def test_a_metadata_entry_named_state_still_reads_as_metadata() -> None:
    if not SHARES:
        pytest.skip("flax 0.10's Variable.state is its own classmethod")
    param = upstream.Param(jnp.ones(1), state="kept")
    assert param.state == "kept"
    assert nnx_compat.report() == ()


def test_the_mutable_array_flag_reads_off_where_flax_removed_it() -> None:
    import flax

    native = _removed.MUTABLE_ARRAY_FLAG in vars(flax.config)["_values"]
    if native:  # flax 0.10: its own flag, silently
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert flax.config.flax_mutable_array is False
        assert nnx_compat.report() == ()
        return
    with pytest.warns(nnx_compat.VariableDeprecationWarning, match="mutable-arrays") as caught:
        value = flax.config.flax_mutable_array  # READ-FLAG
    assert value is False
    assert caught[0].filename == __file__
    assert caught[0].lineno == line_of(__file__, "READ-FLAG")
    assert "flax.config.flax_mutable_array reads False" in str(caught[0].message)
    # flax's options are its own: the flag is not one of them, and cannot be switched on
    assert _removed.MUTABLE_ARRAY_FLAG not in repr(flax.config)
    with pytest.raises(LookupError, match="flax_mutable_array"):
        flax.config.update(_removed.MUTABLE_ARRAY_FLAG, True)
    _removed.patch_config()  # idempotent
    with nnx_compat.warnings_policy("ignore"):
        assert flax.config.flax_mutable_array is False
