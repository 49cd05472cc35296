"""Shim classes answer ``isinstance``/``issubclass`` as flax's own classes do."""

from __future__ import annotations

from typing import Any

import flax.nnx as upstream
import optax
import pytest

import nnx_compat
from nnx_compat import _patterns, _versions, nnx

#: The shims that subclass a flax class to add legacy forms.
SUBCLASS_SHIMS = sorted(
    name
    for name in _patterns.SHIMS
    if isinstance(_patterns.load_shim(name), type)
    and isinstance(vars(upstream).get(name), type)
    and _patterns.load_shim(name) is not vars(upstream)[name]
    and vars(upstream)[name] in _patterns.load_shim(name).__mro__
)


def _native_instances() -> dict[str, Any]:
    """One object of each flax class, built by flax itself (no nnx_compat involved)."""
    rngs = upstream.Rngs(0, dropout=1)
    linear = upstream.Linear(2, 2, rngs=rngs)
    wrt: dict[str, Any] = (
        {"wrt": upstream.Param} if _versions.feature("OPTIMIZER_REQUIRES_WRT") else {}
    )
    out = {
        "Rngs": rngs,
        "RngStream": rngs.dropout,
        "Module": linear,
        "Dropout": upstream.Dropout(0.5, rngs=rngs),
        "MultiHeadAttention": upstream.MultiHeadAttention(2, 4, decode=False, rngs=rngs),
        "RNN": upstream.RNN(upstream.SimpleCell(2, 2, rngs=rngs)),
        "LSTMCell": upstream.LSTMCell(2, 2, rngs=rngs),
        "OptimizedLSTMCell": upstream.OptimizedLSTMCell(2, 2, rngs=rngs),
        "SimpleCell": upstream.SimpleCell(2, 2, rngs=rngs),
        "GRUCell": upstream.GRUCell(2, 2, rngs=rngs),
        "Bidirectional": upstream.Bidirectional(
            upstream.RNN(upstream.SimpleCell(2, 2, rngs=rngs)),
            upstream.RNN(upstream.SimpleCell(2, 2, rngs=rngs)),
        ),
        "Optimizer": upstream.Optimizer(linear, optax.sgd(0.1), **wrt),
    }
    if hasattr(upstream, "ModelAndOptimizer"):
        out["ModelAndOptimizer"] = upstream.ModelAndOptimizer(
            linear, optax.sgd(0.1), wrt=upstream.Param
        )
    return out


def test_the_subclass_shims_are_known() -> None:
    assert {"Dropout", "Module", "MultiHeadAttention", "Optimizer", "RNN", "Rngs"} <= set(
        SUBCLASS_SHIMS
    )


@pytest.mark.parametrize("name", SUBCLASS_SHIMS)
def test_flaxs_own_objects_are_instances_of_the_shim(name: str) -> None:
    native_cls, shim = getattr(upstream, name), getattr(nnx, name)
    instance = _native_instances()[name]
    assert type(instance).__module__.startswith("flax.")
    assert isinstance(instance, shim) and isinstance(instance, native_cls)
    assert issubclass(native_cls, shim) and issubclass(shim, native_cls)
    assert not isinstance(object(), shim) and not issubclass(int, shim)


@pytest.mark.parametrize("name", SUBCLASS_SHIMS)
def test_a_subclass_of_the_shim_is_an_ordinary_class(name: str) -> None:
    shim = getattr(nnx, name)
    sub = type(f"My{name}", (shim,), {})
    assert issubclass(sub, shim) and issubclass(sub, getattr(upstream, name))
    assert not isinstance(_native_instances()[name], sub)
    assert not issubclass(getattr(upstream, name), sub)


def test_flax_code_checking_its_own_classes_works_under_install() -> None:
    """flax's bridge checks ``isinstance(rngs, nnx.Rngs)`` on an Rngs it made itself."""
    nnx_compat.install()
    try:
        assert upstream.Rngs is nnx.Rngs
        rngs = upstream.rnglib.Rngs(0)
        assert isinstance(rngs, upstream.Rngs)
        model = upstream.bridge.ToNNX(_linen_dense(), rngs=upstream.rnglib.Rngs(0))
        import jax.numpy as jnp

        model.lazy_init(jnp.ones((1, 3)))
        assert model(jnp.ones((1, 3))).shape == (1, 2)
        # shims that build flax's own objects must reach flax's class, not themselves
        key_first = _versions.feature("RNGSTREAM_KEY_FIRST")
        stream = upstream.RngStream(0, tag="a") if key_first else upstream.RngStream("a", 0)
        assert type(stream) is upstream.rnglib.RngStream
        thing = type("Thing", (upstream.Object,), {})()  # built by flax's Object, no recursion
        assert type(thing).__name__ == "Thing"
    finally:
        nnx_compat.uninstall()


def _linen_dense() -> Any:
    from flax import linen

    return linen.Dense(2)
