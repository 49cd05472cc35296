"""Per-step cost of the Optimizer shim against native flax, in one run.

For a dispatch-bound small MLP and a compute-bound larger one, times a jitted training step
(``nnx.jit``, adam) written four ways:

* ``legacy-shim``: ``nnx_compat.nnx.Optimizer(model, tx)`` and ``update(grads)``;
* ``new-shim``: ``nnx_compat.nnx.Optimizer(model, tx, wrt=nnx.Param)`` and ``update(model, grads)``;
* ``native``: ``flax.nnx.Optimizer`` in the installed flax's own form;
* ``native-mao``: ``flax.nnx.ModelAndOptimizer`` (flax 0.11+).

Rounds interleave the variants in a shuffled order; each variant's median per-step time is
reported with the median over rounds of its ratio to ``native`` in the same round.

Usage: ``python -m benchmarks.optimizer_overhead`` (``--rounds``, ``--quick``).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any

import flax.nnx as upstream
import jax
import optax

import nnx_compat
from benchmarks._timing import compare, setup
from nnx_compat import _versions, nnx

# flax 0.11.0: the native form is update(model, grads)
NATIVE_TAKES_MODEL = _versions.feature("OPTIMIZER_UPDATE_TAKES_MODEL")


class MLP(upstream.Module):  # type: ignore[misc]
    def __init__(self, din: int, width: int, depth: int, rngs: Any) -> None:
        dims = [din] + [width] * depth
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            setattr(self, f"l{i}", upstream.Linear(a, b, rngs=rngs))
        self.depth = depth

    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.depth):
            x = jax.nn.relu(getattr(self, f"l{i}")(x))
        return x


def loss_fn(model: Any, x: jax.Array) -> jax.Array:
    return (model(x) ** 2).mean()


def make_variant(name: str, width: int, depth: int) -> Callable[[jax.Array], jax.Array] | None:
    model = MLP(width, width, depth, upstream.Rngs(0))
    tx = optax.adam(1e-4)
    with nnx_compat.warnings_policy("ignore"):
        if name == "legacy-shim":
            optimizer = nnx.Optimizer(model, tx)
        elif name == "new-shim":
            optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        elif name == "native":
            optimizer = upstream.Optimizer(model, tx, wrt=upstream.Param)
        elif name == "native-mao":
            if not _versions.feature("HAS_MODEL_AND_OPTIMIZER"):
                return None
            optimizer = upstream.ModelAndOptimizer(model, tx, wrt=upstream.Param)
        else:
            raise ValueError(name)

    @upstream.jit
    def step(model: Any, optimizer: Any, x: jax.Array) -> jax.Array:
        loss, grads = upstream.value_and_grad(loss_fn)(model, x)
        if name in ("legacy-shim", "native-mao") or (name == "native" and not NATIVE_TAKES_MODEL):
            optimizer.update(grads)
        else:
            optimizer.update(model, grads)
        return loss

    def run(x: jax.Array) -> jax.Array:
        return step(model, optimizer, x)

    return run


def bench(label: str, width: int, depth: int, batch: int, steps: int, rounds: int) -> None:
    x = jax.random.normal(jax.random.key(0), (batch, width))
    names = ["legacy-shim", "new-shim", "native", "native-mao"]
    runs = {n: r for n in names if (r := make_variant(n, width, depth)) is not None}
    compare(
        f"{label}: width {width}, depth {depth}, batch {batch}",
        {n: functools.partial(run, x) for n, run in runs.items()},
        "native",
        steps,
        rounds,
    )


def main() -> None:
    rounds, scale = setup()
    bench("dispatch-bound", width=32, depth=2, batch=8, steps=200 // scale, rounds=rounds)
    bench("compute-bound", width=1024, depth=4, batch=512, steps=20 // scale or 1, rounds=rounds)


if __name__ == "__main__":
    main()
