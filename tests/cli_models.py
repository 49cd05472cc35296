"""Models for tests/cli/test_fix_checkpoint.py, importable as ``tests.cli_models:NAME``."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from nnx_compat import nnx


class MLP(nnx.Module):
    """Linear, Dropout, Linear: its RNG state changed structure in flax 0.11."""

    def __init__(self, din: int = 3, hidden: int = 8, *, rngs: nnx.Rngs) -> None:
        self.l1 = nnx.Linear(din, hidden, rngs=rngs)
        self.drop = nnx.Dropout(0.1, rngs=rngs)
        self.l2 = nnx.Linear(hidden, 2, rngs=rngs)


class Plain(nnx.Module):
    """No RNG state: its checkpoint has the same structure on every flax."""

    def __init__(self, *, rngs: nnx.Rngs) -> None:
        self.l1 = nnx.Linear(3, 4, rngs=rngs)


def wide(*, rngs: nnx.Rngs) -> MLP:
    """The MLP with other shapes."""
    return MLP(din=5, rngs=rngs)


class Half(nnx.Module):
    """The MLP's paths and shapes in bfloat16."""

    def __init__(self, *, rngs: nnx.Rngs) -> None:
        self.l1 = nnx.Linear(3, 8, param_dtype=jnp.bfloat16, rngs=rngs)
        self.drop = nnx.Dropout(0.1, rngs=rngs)
        self.l2 = nnx.Linear(8, 2, param_dtype=jnp.bfloat16, rngs=rngs)


ADAM = optax.adam(1e-3)


def make_adam() -> optax.GradientTransformation:
    return ADAM
