"""flax 0.12's Linen bridge on an older flax (``nnx_compat._backports.bridge``): a
``bridge.ToNNX`` module whose Linen module sows is called again, split and merged, as flax 0.12.8's
guide (docs_nnx/guides/bridge_guide) does, with the values Linen itself computes."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen

from nnx_compat import _versions, nnx
from nnx_compat._backports import bridge


class Counting(linen.Module):
    """The guide's module: two params, a counter, and a sown sum."""

    out_dim: int

    @linen.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.param("w", linen.initializers.lecun_normal(), (x.shape[-1], self.out_dim))
        b = self.param("b", linen.zeros_init(), (self.out_dim,))
        count = self.variable("counter", "count", lambda: jnp.zeros((), jnp.int32))
        if not self.is_initializing():
            count.value += 1
        y = x @ w + b
        self.sow("intermediates", "dot_sum", jnp.sum(y))
        return y


def _sown(attribute: Any) -> tuple[Any, ...]:
    """The sown values: one Variable holding the tuple (flax 0.12), or a tuple of Variables
    (the older bridge, whose representation stays)."""
    if isinstance(attribute, nnx.Variable):
        return tuple(attribute.get_value())
    assert not _versions.feature("BRIDGE_SOWN_TUPLE_IS_ONE_VARIABLE")
    return tuple(v.get_value() for v in attribute)


def test_a_module_that_sows_is_called_again_with_linens_values() -> None:
    x = jax.random.normal(jax.random.key(42), (2, 4))
    model = nnx.bridge.lazy_init(nnx.bridge.ToNNX(Counting(3), rngs=nnx.Rngs(0)), x)
    # Linen alone, from the same parameters: each call sows one more sum
    variables = {"params": {"w": model.w.get_value(), "b": model.b.get_value()}}
    variables["counter"] = {"count": jnp.zeros((), jnp.int32)}
    expected_ys = []
    for _ in range(3):
        y, updates = Counting(3).apply(variables, x, mutable=True)
        variables = {**variables, **updates}
        expected_ys.append(y)
    expected_sums = list(variables["intermediates"]["dot_sum"])

    ys = [model(x, mutable=True)]
    ys.append(model(x, mutable=True))  # the call the older bridge failed
    graphdef, params, counter, rest = nnx.split(model, nnx.Param, type(model.count), ...)
    model = nnx.merge(graphdef, params, counter, rest)
    ys.append(model(x, mutable=True))
    for y, expected in zip(ys, expected_ys, strict=True):
        np.testing.assert_array_equal(np.asarray(y), np.asarray(expected))
    assert int(model.count.get_value()) == 3
    sums = _sown(model.dot_sum)
    assert len(sums) == 3
    np.testing.assert_array_equal(np.asarray(sums), np.asarray(expected_sums))


def test_patched_only_where_flax_splits_a_sown_tuple() -> None:
    assert bridge.patched() is not _versions.feature("BRIDGE_SOWN_TUPLE_IS_ONE_VARIABLE")
    if not bridge.patched():
        return
    variables = nnx.bridge.variables
    wrapped = variables.nnx_attrs_to_linen_vars
    bridge.restore()
    try:
        assert variables.nnx_attrs_to_linen_vars is wrapped.__wrapped__
    finally:
        bridge.patch()
    assert variables.nnx_attrs_to_linen_vars is not wrapped  # a fresh wrapper of flax's own
    assert variables.nnx_attrs_to_linen_vars.__wrapped__ is wrapped.__wrapped__
