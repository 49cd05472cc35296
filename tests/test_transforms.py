"""``nnx.vmap`` over an unsplit ``Rngs``, and the guides' scan-over-layers programs."""

from __future__ import annotations

from functools import partial
from typing import Any

import flax.nnx as upstream
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_compat
from nnx_compat import _versions, nnx
from nnx_compat._warnings import RngsDeprecationWarning, TransformsDeprecationWarning
from tests.markers import line_of
from tests.strategies import assert_bitwise_equal, assert_same_bits, flat_arrays

FORKS = _versions.feature("LAYERS_FORK_RNGS")


def basics_stack(ns: Any, *, split: bool) -> tuple[jax.Array, dict[str, np.ndarray]]:
    """NNX Basics: ``create_model`` under ``vmap(axis_size=5)``, ``forward`` under ``scan``."""

    class Linear(ns.Module):  # type: ignore[misc,name-defined]
        def __init__(self, din: int, dout: int, *, rngs: Any) -> None:
            key = rngs.params()
            self.w = ns.Param(jax.random.uniform(key, (din, dout)))
            self.b = ns.Param(jnp.zeros((dout,)))
            self.din, self.dout = din, dout

        def __call__(self, x: jax.Array) -> jax.Array:
            return x @ self.w + self.b

    class MLP(ns.Module):  # type: ignore[misc,name-defined]
        def __init__(self, din: int, dmid: int, dout: int, *, rngs: Any) -> None:
            self.linear1 = Linear(din, dmid, rngs=rngs)
            self.dropout = ns.Dropout(rate=0.1, rngs=rngs)
            self.bn = ns.BatchNorm(dmid, rngs=rngs)
            self.linear2 = Linear(dmid, dout, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            x = ns.gelu(self.dropout(self.bn(self.linear1(x))))
            return self.linear2(x)

    def create_model(rngs: Any) -> Any:
        return MLP(10, 32, 10, rngs=rngs)

    create = partial(ns.vmap, axis_size=5)(create_model)  # BASICS-VMAP
    if split:  # the 0.11 form
        create = ns.split_rngs(splits=5)(create)
    model = create(ns.Rngs(0))

    @ns.scan
    def forward(x: jax.Array, model: Any) -> tuple[jax.Array, None]:
        x = model(x)
        return x, None

    x = jnp.ones((3, 10))
    y, _ = forward(x, model)
    return y, flat_arrays(ns.state(model))


def test_basics_stack_fails_natively() -> None:
    """The guide predates flax 0.9, whose vmap split Rngs by itself; no supported flax does."""
    with pytest.raises((IndexError, ValueError)):
        basics_stack(upstream, split=False)


def test_basics_stack_runs_and_warns_at_the_vmap() -> None:
    with pytest.warns(TransformsDeprecationWarning, match="vmap-splits-rngs") as caught:
        y, state = basics_stack(nnx, split=False)
    (hit,) = [w for w in caught if "vmap-splits-rngs" in str(w.message)]
    assert hit.lineno == line_of(__file__, "BASICS-VMAP")
    assert y.shape == (3, 10)
    assert state["dropout/rngs/key"].shape == (5, 2)
    assert state["linear1/w"].shape == (5, 10, 32)
    # the legacy form is the 0.11 form: split_rngs over vmap
    y_new, state_new = basics_stack(nnx, split=True)
    assert_same_bits(y, y_new)
    assert_bitwise_equal(state, state_new)
    if FORKS:
        y_native, state_native = basics_stack(upstream, split=True)
        assert_same_bits(y, y_native)
        assert_bitwise_equal(state, state_native)


def test_vmap_without_axis_size_is_the_native_vmap() -> None:
    doubled = nnx.vmap(lambda x: 2 * x)(jnp.arange(3.0))
    assert np.array_equal(np.asarray(doubled), [0.0, 2.0, 4.0])


def test_vmap_leaves_split_and_broadcast_rngs_alone() -> None:
    @partial(nnx.vmap, axis_size=3, in_axes=(None,))
    def broadcast(rngs: nnx.Rngs) -> jax.Array:
        return jnp.zeros(())

    broadcast(nnx.Rngs(0))  # in_axes None: nothing to split, no warning

    @partial(nnx.vmap, axis_size=3)
    def mapped(rngs: nnx.Rngs) -> jax.Array:
        return jax.random.key_data(rngs.params())

    rngs = nnx.Rngs(params=0)
    nnx.split_rngs(rngs, splits=3)
    assert mapped(rngs).shape == (3, 2)  # already split: the native call, no warning


class Block(nnx.Module):
    def __init__(self, input_dim: int, features: int, rngs: nnx.Rngs) -> None:
        self.linear = nnx.Linear(input_dim, features, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.dropout(self.linear(x)))


def linen_guide_mlp(ns: Any, block: Any, *, legacy: bool) -> jax.Array:
    """The Linen -> NNX guide's scan over layers (``legacy``: with split_rngs over scan)."""

    class MLP(ns.Module):  # type: ignore[misc,name-defined]
        def __init__(self, features: int, num_layers: int, rngs: Any) -> None:
            @ns.split_rngs(splits=num_layers)
            @ns.vmap(in_axes=(0,), out_axes=0)
            def create_block(rngs: Any) -> Any:
                return block(features, features, rngs=rngs)

            self.blocks = create_block(rngs)
            self.num_layers = num_layers

        def __call__(self, x: jax.Array) -> jax.Array:
            def forward(x: jax.Array, model: Any) -> jax.Array:
                return model(x)

            forward = ns.scan(in_axes=(ns.Carry, 0), out_axes=ns.Carry)(forward)
            if legacy:
                forward = ns.split_rngs(splits=self.num_layers)(forward)
            return forward(x, self.blocks)

    model = MLP(64, num_layers=5, rngs=ns.Rngs(0))
    return model(jnp.ones((2, 64)))


def test_linen_guide_scan_over_layers() -> None:
    y = linen_guide_mlp(nnx, Block, legacy=False)
    with pytest.warns(RngsDeprecationWarning, match="split-rngs-over-scan"):
        y_legacy = linen_guide_mlp(nnx, Block, legacy=True)
    assert_same_bits(y, y_legacy)
    if FORKS:

        class NativeBlock(upstream.Module):
            def __init__(self, input_dim: int, features: int, rngs: upstream.Rngs) -> None:
                self.linear = upstream.Linear(input_dim, features, rngs=rngs)
                self.dropout = upstream.Dropout(0.5, rngs=rngs)

            def __call__(self, x: jax.Array) -> jax.Array:
                return jax.nn.relu(self.dropout(self.linear(x)))

        native = linen_guide_mlp(upstream, NativeBlock, legacy=False)
        assert_same_bits(y, native)


def test_install_serves_the_rngs_shims_to_flax_nnx_code() -> None:
    """A library that does ``from flax import nnx`` gets the 0.11 semantics after install()."""
    nnx_compat.install()
    try:
        from flax import nnx as patched

        assert patched.split_rngs is nnx.split_rngs and patched.Dropout is nnx.Dropout
        with nnx_compat.warnings_policy("ignore"):
            from nnx_compat.cli import doctor as _doctor

            legacy = _doctor.seed_scan_program(patched, "0.10")
    finally:
        nnx_compat.uninstall()
    assert upstream.split_rngs is not nnx.split_rngs
    assert_bitwise_equal(legacy, _doctor.seed_scan_program(nnx, "0.11"))


# --- nnx.jit(abstracted_axes=) and nnx.shard_map's renamed options ----------------------------

ABSTRACTED_AXES = _versions.feature("JIT_ABSTRACTED_AXES")  # removed in flax 0.12.2
CHECK_VMA = _versions.feature("SHARD_MAP_CHECK_VMA")  # flax 0.12.1


def test_jit_is_flaxs_own_for_every_other_call() -> None:
    model = upstream.Linear(2, 3, rngs=upstream.Rngs(0))
    x = jnp.ones((1, 2))
    native = upstream.jit(lambda m, x: m(x))
    ours = nnx.jit(lambda m, x: m(x))
    assert type(ours) is type(native)
    assert_same_bits(ours(model, x), native(model, x))
    assert nnx_compat.report() == ()


def test_jit_abstracted_axes() -> None:
    def f(x: jax.Array) -> jax.Array:
        return x * 2

    if ABSTRACTED_AXES:  # the installed flax takes it: its own behaviour, silently
        jitted = nnx.jit(f, abstracted_axes=None)
        assert nnx_compat.report() == ()
    else:
        with pytest.raises(TypeError, match="abstracted_axes"):
            upstream.jit(f, abstracted_axes=({0: "n"},))
        with pytest.warns(TransformsDeprecationWarning, match="jit-abstracted-axes") as caught:
            jitted = nnx.jit(f, abstracted_axes=({0: "n"},))  # ABSTRACTED
        assert caught[0].lineno == line_of(__file__, "ABSTRACTED")
    for n in (2, 3):
        assert_same_bits(jitted(jnp.arange(float(n))), jnp.arange(float(n)) * 2)


HAS_SHARD_MAP = _versions.feature("HAS_SHARD_MAP")  # flax 0.10.4


def _mesh() -> jax.sharding.Mesh:
    if len(jax.devices()) < 8:
        pytest.fail("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8")
    return jax.sharding.Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))


def _sharded_sum(ns: Any, mesh: jax.sharding.Mesh, **options: Any) -> jax.Array:
    P = jax.sharding.PartitionSpec

    @partial(ns.shard_map, mesh=mesh, in_specs=P("data"), out_specs=P(), **options)
    def total(x: jax.Array) -> jax.Array:
        return jax.lax.psum(jnp.sum(x), "data")

    return jax.jit(total)(jnp.arange(8.0))


@pytest.mark.multidevice
@pytest.mark.parametrize("form", ["0.10", "0.12"])
def test_shard_map_takes_both_spellings(form: str) -> None:
    if not HAS_SHARD_MAP:
        with pytest.raises(AttributeError, match=r"nnx.shard_map needs flax 0\.10\.4"):
            nnx.shard_map  # noqa: B018
        return
    mesh = _mesh()
    options = (
        {"check_rep": False, "auto": frozenset({"model"})}
        if form == "0.10"
        else {"check_vma": False, "axis_names": frozenset({"data"})}
    )
    native_options = (
        {"check_vma": False, "axis_names": frozenset({"data"})}
        if CHECK_VMA
        else {"check_rep": False, "auto": frozenset({"model"})}
    )
    expected = _sharded_sum(upstream, mesh, **native_options)
    legacy_here = form == "0.10" and CHECK_VMA
    if legacy_here:
        with pytest.raises(TypeError):
            _sharded_sum(upstream, mesh, **options)
    with nnx_compat.warnings_policy("ignore"):
        got = _sharded_sum(nnx, mesh, **options)
    assert_same_bits(got, expected)
    assert float(got) == 28.0
    hits = [h.pattern for h in nnx_compat.report()]
    assert hits == (["shard-map-check-rep"] if legacy_here else [])


@pytest.mark.skipif(not HAS_SHARD_MAP, reason="nnx.shard_map needs flax 0.10.4")
def test_shard_map_rejects_both_spellings_at_once() -> None:
    with pytest.raises(TypeError, match="check_vma= and axis_names="):
        nnx.shard_map(
            lambda x: x, mesh=None, in_specs=None, out_specs=None, check_rep=True, check_vma=True
        )


# --- nnx.pmap(global_arg_shapes=) -------------------------------------------------------------

GLOBAL_ARG_SHAPES = _versions.feature("PMAP_GLOBAL_ARG_SHAPES")  # removed in flax 0.12.6


def test_pmap_global_arg_shapes_none() -> None:
    def f(x: jax.Array) -> jax.Array:
        return x + 1

    x = jnp.arange(2.0).reshape(1, 2)
    if GLOBAL_ARG_SHAPES:  # the installed flax takes it: its own behaviour, silently
        mapped = nnx.pmap(f, global_arg_shapes=None)
        assert nnx_compat.report() == ()
    else:
        with pytest.raises(TypeError, match="global_arg_shapes"):
            upstream.pmap(f, global_arg_shapes=None)
        with pytest.warns(TransformsDeprecationWarning, match="pmap-global-arg-shapes") as caught:
            mapped = nnx.pmap(f, global_arg_shapes=None)  # GLOBAL-ARG-SHAPES
        assert caught[0].lineno == line_of(__file__, "GLOBAL-ARG-SHAPES")
    assert_same_bits(mapped(x), upstream.pmap(f)(x))


def test_pmap_global_arg_shapes_other_values_raise_as_jax_did() -> None:
    with pytest.raises(ValueError, match="global_arg_shapes only worked with sharded_jit"):
        nnx.pmap(lambda x: x, global_arg_shapes=((2,),))(jnp.ones((1, 2)))
