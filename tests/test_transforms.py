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
            from nnx_compat import _doctor

            legacy = _doctor.seed_scan_program(patched, "0.10")
    finally:
        nnx_compat.uninstall()
    assert upstream.split_rngs is not nnx.split_rngs
    assert_bitwise_equal(legacy, _doctor.seed_scan_program(nnx, "0.11"))
