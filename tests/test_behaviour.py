"""The behaviour audit (``tools/api/BEHAVIOUR.md``): changes an API diff cannot see.

Each test reproduces one change on the installed flax (flax 0.10.7's behaviour where the change
has not happened) and shows what nnx_compat does: the 0.10 meaning with a warning where flax
fails, flax's own meaning, unchanged, where the call succeeds.
"""

from __future__ import annotations

from typing import Any

import flax.nnx as upstream
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_compat
from nnx_compat import _variables, _versions, nnx
from nnx_compat._warnings import VariableDeprecationWarning
from tests.markers import line_of
from tests.strategies import assert_same_bits

UNHASHABLE = _versions.feature("VARIABLE_UNHASHABLE")  # flax 0.12.1
SHARES = _versions.feature("STATE_SHARES_VARIABLES")  # flax 0.11
_INSTALLED = _versions.parse_version(_versions.installed_version("flax") or "0")


def _at_least(release: str) -> bool:
    return _versions.parse_version(release) <= _INSTALLED


# --- variable-hash, variable-eq ---------------------------------------------------------------


def test_variables_hash_by_identity() -> None:
    a, b = nnx.Param(jnp.ones(2)), nnx.Param(jnp.ones(2))
    if UNHASHABLE:
        with pytest.warns(VariableDeprecationWarning, match="variable-hash") as caught:
            table = {a: "a", b: "b"}  # HASH
        assert {w.lineno for w in caught} == {line_of(__file__, "HASH")}
    else:
        table = {a: "a", b: "b"}
    with nnx_compat.warnings_policy("ignore"):
        assert table[a] == "a" and table[b] == "b"
        assert len({a, b, a}) == 2
        assert hash(a) == object.__hash__(a)


def test_variable_equality_is_the_installed_flaxs() -> None:
    scalar_a, scalar_b = nnx.Param(1.0), nnx.Param(1.0)
    if _at_least("0.12.1"):  # values
        assert bool(scalar_a == scalar_b)
        with pytest.raises(ValueError, match="ambiguous"):
            nnx.Param(jnp.ones(2)) in [nnx.Param(jnp.zeros(2))]  # noqa: B015
    elif not _at_least("0.10.4"):  # flax 0.10.0-0.10.3: attributes, as a dataclass
        assert scalar_a == scalar_b
    else:  # identity
        assert not scalar_a == scalar_b  # noqa: SIM201
    assert nnx_compat.report() == ()


# --- variable-metadata-attribute, variable-metadata-keys ---------------------------------------


def test_setting_metadata_as_an_attribute() -> None:
    variable = nnx.Param(jnp.ones(2))
    if _at_least("0.12.1"):
        native = upstream.Param(jnp.ones(2))
        with pytest.raises(AttributeError, match="set_metadata"):
            _variables._saved["__setattr__"](native, "foo", 2)  # flax's own __setattr__
        with pytest.warns(VariableDeprecationWarning, match="variable-metadata-attribute") as w:
            variable.foo = 2  # SET-META
        assert w[0].lineno == line_of(__file__, "SET-META")
    else:
        variable.foo = 2
    assert variable.get_metadata()["foo"] == 2
    assert variable.foo == 2
    if _at_least("0.12.1"):  # a private name is not metadata: flax's error stands
        with pytest.raises(AttributeError, match="Cannot set attribute _private"):
            variable._private = 1


def test_metadata_keys_are_the_installed_flaxs() -> None:
    metadata = nnx.Param(jnp.ones(2), foo=1).get_metadata()
    assert metadata == upstream.Param(jnp.ones(2), foo=1).get_metadata()
    assert metadata["foo"] == 1
    # the key is metadata from flax 0.12.1 (0.12.0 shards eagerly under a config flag only)
    assert ("eager_sharding" in metadata) == _at_least("0.12.1")


# --- merge-shares-variables -------------------------------------------------------------------


def test_merge_of_a_split_is_the_installed_flaxs() -> None:
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    merged = nnx.merge(*nnx.split(model))
    shares = merged.bias is model.bias
    native = upstream.merge(*upstream.split(model))
    assert shares == (native.bias is model.bias)
    copy = nnx.merge(*nnx.split(model), copy=True) if SHARES else nnx.clone(model)
    assert copy.bias is not model.bias
    assert_same_bits(copy.bias[...], model.bias[...])
    assert nnx_compat.report() == ()


# --- bridge-to-nnx-rngs -----------------------------------------------------------------------


def test_to_nnx_rngs_are_the_installed_flaxs() -> None:
    from flax import linen
    from flax.nnx import bridge

    def build(module: Any) -> Any:
        layer = bridge.ToNNX(linen.Dense(3), rngs=module.Rngs(0))
        return bridge.lazy_init(layer, jnp.ones((1, 2)))

    with nnx_compat.warnings_policy("ignore"):
        ours = build(nnx)
    native = build(upstream)
    assert_same_bits(ours.kernel[...], native.kernel[...])

    def linen_kernel(key: jax.Array) -> np.ndarray:
        return np.asarray(
            linen.Dense(3).init({"params": key}, jnp.ones((1, 2)))["params"]["kernel"]
        )

    kernel = np.asarray(ours.kernel[...])
    drawn = np.array_equal(kernel, linen_kernel(jax.random.fold_in(jax.random.key(0), 0)))
    raw = np.array_equal(kernel, linen_kernel(jax.random.key(0)))
    if _at_least("0.12.0"):  # a key forked from the stream: neither
        assert not drawn and not raw
    elif _at_least("0.10.5"):  # the stream's next key
        assert drawn
    else:  # flax 0.10.0-0.10.4: the stream's key itself
        assert raw


# --- rngs-array-protocol, sequential-empty, fori-loop-error-type --------------------------------


def test_rngs_dunders_are_the_installed_flaxs() -> None:
    rngs = nnx.Rngs(0)
    assert hasattr(rngs, "__array__") == hasattr(upstream.Rngs(0), "__array__")
    assert hasattr(rngs, "__array__") == (not _at_least("0.12.7"))


def test_empty_sequential_is_the_installed_flaxs() -> None:
    out = nnx.Sequential()(jnp.ones(2))
    if _at_least("0.11.1"):
        assert_same_bits(out, jnp.ones(2))
    else:
        assert out is None


@pytest.mark.skipif(not hasattr(upstream, "fori_loop"), reason="nnx.fori_loop: flax 0.10.2")
def test_fori_loop_body_returning_none_raises_flaxs_error() -> None:
    model = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    expected = AttributeError if _at_least("0.12.3") else ValueError
    with pytest.raises(expected):
        nnx.fori_loop(0, 2, lambda i, m: None, model)


# --- non-goals: flax's own errors -------------------------------------------------------------


def test_bound_methods_in_transforms_get_flaxs_error() -> None:
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    x = jnp.ones(2)
    if _at_least("0.12.1"):
        with pytest.raises(ValueError, match="bound methods"):
            nnx.jit(model.__call__)(x)
    else:
        assert_same_bits(nnx.jit(model.__call__)(x), model(x))
    assert_same_bits(nnx.jit(type(model).__call__)(model, x), model(x))  # the unbound form


def test_layer_initializer_attributes() -> None:
    layer = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    if _at_least("0.12.1"):
        with pytest.raises(AttributeError, match="kernel_init"):
            layer.kernel_init  # noqa: B018
    else:
        assert callable(layer.kernel_init)
