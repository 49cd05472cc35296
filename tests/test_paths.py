from __future__ import annotations

import flax.nnx as upstream
import jax.numpy as jnp

from nnx_compat import _paths


def test_flatten_state_paths() -> None:
    model = upstream.Sequential(
        upstream.Linear(2, 3, rngs=upstream.Rngs(0)), upstream.BatchNorm(3, rngs=upstream.Rngs(1))
    )
    flat = _paths.flatten(upstream.state(model))
    assert set(flat) == {
        "layers/0/kernel",
        "layers/0/bias",
        "layers/1/scale",
        "layers/1/bias",
        "layers/1/mean",
        "layers/1/var",
    }


def test_flatten_plain_pytrees() -> None:
    flat = _paths.flatten({"a": [jnp.ones(2), {"b": 3}], "c": (4,)})
    assert set(flat) == {"a/0", "a/1/b", "c/0"}
    assert flat["a/1/b"] == 3
