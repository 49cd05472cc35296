"""Layers hold forked RNG streams on every flax: the same keys, masks and parameters."""

from __future__ import annotations

import warnings
from typing import Any

import flax.nnx as upstream
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnx_compat
from nnx_compat import _layers, _versions, nnx
from nnx_compat._bits import same_bits
from nnx_compat._warnings import LayersDeprecationWarning, RngsDeprecationWarning
from tests.markers import line_of
from tests.strategies import assert_bitwise_equal, assert_same_bits, flat_arrays

FORKS = _versions.feature("LAYERS_FORK_RNGS")


def _key_data(key: jax.Array) -> np.ndarray:
    return np.asarray(jax.random.key_data(key))


class Model(nnx.Module):
    """The guide's Linear/BatchNorm/Dropout model, with one more layer after the Dropout."""

    def __init__(self, width: int, rate: float, rngs: Any) -> None:
        self.linear = nnx.Linear(2, width, rngs=rngs)
        self.bn = nnx.BatchNorm(width, rngs=rngs)
        self.dropout = nnx.Dropout(rate, rngs=rngs)
        self.linear_out = nnx.Linear(width, 3, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear_out(nnx.relu(self.dropout(self.bn(self.linear(x)))))


def _run(model: Any, x: jax.Array, calls: int) -> dict[str, np.ndarray]:
    forward = upstream.jit(lambda model, x: model(x))
    out = {f"y/{i}": np.asarray(forward(model, x)) for i in range(calls)}
    out.update(flat_arrays(upstream.state(model)))
    return out


def test_dropout_holds_a_forked_stream_on_every_flax() -> None:
    rngs = nnx.Rngs(params=0, dropout=1)
    dropout = nnx.Dropout(0.5, rngs=rngs)
    stream = vars(dropout)["rngs"]
    assert isinstance(stream, upstream.RngStream)
    assert isinstance(dropout, upstream.Dropout)
    # the fork drew fold_in(dropout key, 0) and consumed one count of the parent
    assert np.array_equal(
        _key_data(stream.key[...]), _key_data(jax.random.fold_in(jax.random.key(1), 0))
    )
    assert int(rngs.dropout.count[...]) == 1 and int(rngs.params.count[...]) == 0
    paths = flat_arrays(nnx.state(dropout))
    assert sorted(paths) == ["rngs/count", "rngs/key"]
    assert list(flat_arrays(nnx.state(dropout, nnx.RngKey))) == ["rngs/key"]
    assert list(flat_arrays(nnx.state(dropout, nnx.RngCount))) == ["rngs/count"]


@given(
    width=st.integers(1, 8),
    rate=st.sampled_from([0.0, 0.2, 0.5, 0.9]),
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 5),
    streams=st.sampled_from(["default", "params+dropout"]),
)
def test_same_parameters_masks_and_rng_state_as_native_0_11(
    width: int, rate: float, seed: int, batch: int, streams: str
) -> None:
    """Through nnx_compat, the model is the native flax 0.11 model, bit for bit.

    On flax 0.10 the reference is computed by hand: the Dropout's key is the parent stream's
    fold_in(key, count), the layers after it draw from the advanced parent stream.
    """

    def make_rngs(ns: Any) -> Any:
        if streams == "default":
            return ns.Rngs(seed)
        return ns.Rngs(params=seed, dropout=seed + 1)

    x = jax.random.normal(jax.random.key(seed ^ 7), (batch, 2))
    ours = _run(Model(width, rate, make_rngs(nnx)), x, calls=2)
    if FORKS:
        native = _native_model(width, rate, make_rngs(upstream))
        assert_bitwise_equal(ours, _run(native, x, calls=2))
        return
    # flax 0.10: flax's own layers, in order, with the Dropout's fork done by hand
    rngs = make_rngs(upstream)
    linear = upstream.Linear(2, width, rngs=rngs)
    bn = upstream.BatchNorm(width, rngs=rngs)
    forked = rngs["dropout"]()
    linear_out = upstream.Linear(width, 3, rngs=rngs)
    assert np.array_equal(ours["dropout/rngs/key"], _key_data(forked))
    assert ours["dropout/rngs/count"].tolist() == (0 if rate == 0.0 else 2)
    for name, layer in (("linear", linear), ("bn", bn), ("linear_out", linear_out)):
        for path, value in flat_arrays(upstream.state(layer, upstream.Param)).items():
            assert same_bits(np.asarray(ours[f"{name}/{path}"]), np.asarray(value)), (name, path)


def _native_model(width: int, rate: float, rngs: Any) -> Any:
    class NativeModel(upstream.Module):
        def __init__(self) -> None:
            self.linear = upstream.Linear(2, width, rngs=rngs)
            self.bn = upstream.BatchNorm(width, rngs=rngs)
            self.dropout = upstream.Dropout(rate, rngs=rngs)
            self.linear_out = upstream.Linear(width, 3, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.linear_out(upstream.relu(self.dropout(self.bn(self.linear(x)))))

    return NativeModel()


def test_dropout_mask_is_drawn_from_the_forked_stream() -> None:
    dropout = nnx.Dropout(0.5, rngs=nnx.Rngs(dropout=3))
    x = jnp.ones((4, 6))
    y = nnx.jit(lambda d, x: d(x))(dropout, x)
    forked = jax.random.fold_in(jax.random.key(3), 0)
    mask = jax.random.bernoulli(jax.random.fold_in(forked, 0), 0.5, x.shape)
    assert np.array_equal(np.asarray(y), np.asarray(jnp.where(mask, x / 0.5, 0.0)))
    assert int(vars(dropout)["rngs"].count[...]) == 1


@pytest.mark.parametrize("kind", ["Rngs", "RngStream", "key"])
def test_dropout_takes_rngs_at_call(kind: str) -> None:
    dropout = nnx.Dropout(0.5)
    rngs = nnx.Rngs(dropout=4)
    given_rngs = {"Rngs": rngs, "RngStream": rngs.dropout, "key": jax.random.key(9)}[kind]
    y = dropout(jnp.ones((8,)), rngs=given_rngs)
    key = jax.random.key(9) if kind == "key" else jax.random.fold_in(jax.random.key(4), 0)
    mask = jax.random.bernoulli(key, 0.5, (8,))
    assert np.array_equal(np.asarray(y), np.asarray(jnp.where(mask, 2.0, 0.0)))


def test_deterministic_and_zero_rate_draw_nothing() -> None:
    dropout = nnx.Dropout(0.5, deterministic=True, rngs=nnx.Rngs(0))
    assert np.array_equal(np.asarray(dropout(jnp.ones(3))), np.ones(3))
    assert int(vars(dropout)["rngs"].count[...]) == 0
    with pytest.raises(ValueError, match="rngs"):
        nnx.Dropout(0.5)(jnp.ones(3))  # neither at construction nor at call


def test_multi_head_attention_holds_a_forked_dropout_stream() -> None:
    def build(ns: Any) -> Any:
        return ns.MultiHeadAttention(
            2, 4, qkv_features=4, dropout_rate=0.5, decode=False, rngs=ns.Rngs(0, dropout=1)
        )

    ours = build(nnx)
    assert isinstance(ours, upstream.MultiHeadAttention)
    stream = vars(ours)["rngs"]
    assert isinstance(stream, upstream.RngStream)
    assert np.array_equal(
        _key_data(stream.key[...]), _key_data(jax.random.fold_in(jax.random.key(1), 0))
    )
    x = jax.random.normal(jax.random.key(2), (1, 3, 4))
    y = nnx.jit(lambda m, x: m(x, deterministic=False))(ours, x)
    assert int(vars(ours)["rngs"].count[...]) == 1
    if FORKS:
        native = build(upstream)
        y_native = upstream.jit(lambda m, x: m(x, deterministic=False))(native, x)
        assert_same_bits(y, y_native)
        assert_bitwise_equal(flat_arrays(nnx.state(ours)), flat_arrays(upstream.state(native)))
    no_dropout = nnx.MultiHeadAttention(2, 4, decode=False, rngs=nnx.Rngs(0))
    assert vars(no_dropout)["rngs"] is None


# --- what changes for code that relied on the shared Rngs ---------------------------------


def test_reading_layer_rngs_from_user_code_warns_where_nnx_compat_changed_it() -> None:
    """flax 0.10: the layer's ``rngs`` is no longer the caller's Rngs, so a read warns; flax
    0.11+: the attribute is the native one, meaning what the installed flax says, silently."""
    rngs = nnx.Rngs(0)
    dropout = nnx.Dropout(0.5, rngs=rngs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stream = dropout.rngs  # READ-RNGS
    assert stream is not rngs and isinstance(stream, upstream.RngStream)
    if FORKS:
        assert caught == []
        assert all("rngs" not in vars(c) for c in (nnx.Dropout, nnx.MultiHeadAttention))
    else:
        (hit,) = caught
        assert issubclass(hit.category, RngsDeprecationWarning)
        assert "layers-share-rngs" in str(hit.message)
        assert hit.lineno == line_of(__file__, "READ-RNGS")
    dropout(jnp.ones(3))  # flax's own reads inside the layer never warn
    nnx.state(dropout)
    assert [h.pattern for h in nnx_compat.report()] == ([] if FORKS else ["layers-share-rngs"])


def test_missing_dropout_stream_names_the_layer_and_the_fix() -> None:
    class Block(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.linear = nnx.Linear(2, 2, rngs=rngs)
            self.dropout = nnx.Dropout(0.1, rngs=rngs)  # MISSING-STREAM

    with pytest.raises(_layers.MissingRngStreamError) as info:
        Block(nnx.Rngs(params=0))
    message = str(info.value)
    assert isinstance(info.value, KeyError)
    assert f"{__file__}:{line_of(__file__, 'MISSING-STREAM')}" in message
    assert "Block.__init__" in message
    assert "nnx.Dropout" in message and "'dropout'" in message and "'params'" in message
    assert "nnx.Rngs(params=0, dropout=1)" in message and "rngs=None" in message
    with pytest.raises(_layers.MissingRngStreamError, match=r"nnx\.MultiHeadAttention"):
        nnx.MultiHeadAttention(2, 4, dropout_rate=0.1, decode=False, rngs=nnx.Rngs(params=0))
    # a default stream serves every name; no dropout at all needs no stream
    nnx.Dropout(0.1, rngs=nnx.Rngs(0))
    nnx.MultiHeadAttention(2, 4, decode=False, rngs=nnx.Rngs(params=0))


def test_dropout_rejects_other_rngs_types() -> None:
    with pytest.raises(TypeError, match="rngs"):
        nnx.Dropout(0.5, rngs=3)  # type: ignore[arg-type]


# --- flax 0.10 positional form -------------------------------------------------------------


def test_dropout_positional_form_maps_each_argument() -> None:
    rngs = nnx.Rngs(0)
    with pytest.warns(LayersDeprecationWarning, match="dropout-positional") as caught:
        dropout = nnx.Dropout(0.5, (0,), True, "noise", rngs)  # POSITIONAL
    assert caught[0].lineno == line_of(__file__, "POSITIONAL")
    assert "broadcast_dims=..., deterministic=..., rng_collection=..., rngs=..." in str(
        caught[0].message
    )
    assert dropout.broadcast_dims == (0,) and dropout.deterministic is True
    assert dropout.rng_collection == "noise"
    assert isinstance(vars(dropout)["rngs"], upstream.RngStream)
    with pytest.raises(TypeError, match="both by position and by keyword"):
        nnx.Dropout(0.5, (0,), broadcast_dims=(1,))
    with pytest.raises(TypeError, match="at most 5 positional"):
        nnx.Dropout(0.5, (0,), True, "dropout", rngs, "extra")


def test_multi_head_attention_fifth_positional_is_in_kv_features() -> None:
    if not _versions.feature("MHA_IN_KV_FEATURES"):  # flax 0.10.0-0.10.6: no such argument
        with pytest.raises(TypeError, match=r"in_kv_features, needs flax 0\.10\.7"):
            nnx.MultiHeadAttention(2, 4, 8, 6, 3, decode=False, rngs=nnx.Rngs(0))
        with pytest.raises(TypeError):
            upstream.MultiHeadAttention(2, 4, 8, 6, 3, decode=False, rngs=upstream.Rngs(0))
        return
    with pytest.warns(LayersDeprecationWarning, match="mha-positional") as caught:
        mha = nnx.MultiHeadAttention(2, 4, 8, 6, 3, decode=False, rngs=nnx.Rngs(0))  # MHA-5
    assert caught[0].lineno == line_of(__file__, "MHA-5")
    assert (mha.qkv_features, mha.out_features, mha.in_kv_features) == (8, 6, 3)
    assert mha.key.kernel.shape[0] == 3 and mha.value.kernel.shape[0] == 3
    q, kv = jnp.ones((1, 2, 4)), jnp.ones((1, 5, 3))
    assert mha(q, kv, kv).shape == (1, 2, 6)
    plain = nnx.MultiHeadAttention(2, 4, 8, 6, decode=False, rngs=nnx.Rngs(0))  # no warning
    assert (plain.qkv_features, plain.out_features) == (8, 6)
    with pytest.raises(TypeError, match="at most 5 positional"):
        nnx.MultiHeadAttention(2, 4, 8, 6, 3, 4, decode=False, rngs=nnx.Rngs(0))


def test_rnn_positional_form_maps_each_argument() -> None:
    cell = nnx.SimpleCell(2, 3, rngs=nnx.Rngs(0))
    if _versions.feature("LAYERS_FORK_RNGS"):  # flax 0.11 made them keyword-only
        with pytest.raises(TypeError):
            upstream.RNN(cell, True)
    with pytest.warns(LayersDeprecationWarning, match="rnn-positional") as caught:
        rnn = nnx.RNN(cell, True, True)  # RNN-POSITIONAL
    assert caught[0].lineno == line_of(__file__, "RNN-POSITIONAL")
    assert "time_major=..., return_carry=..." in str(caught[0].message)
    assert rnn.time_major is True and rnn.return_carry is True
    carry, y = rnn(jnp.ones((4, 1, 2)))  # time major: (time, batch, features)
    assert y.shape == (4, 1, 3) and carry.shape == (1, 3)
    with pytest.raises(TypeError, match="both by position and by keyword"):
        nnx.RNN(cell, True, time_major=False)
