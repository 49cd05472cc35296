"""Per-step cost of a legacy-container Module against native flax, and the Variable patch.

Times a jitted SGD step (``nnx.jit``) on a dispatch-bound MLP whose layers are held three ways:

* ``legacy-shim``: ``self.layers = [...]`` in a subclass of ``nnx_compat.nnx.Module``;
* ``list-shim``: ``self.layers = nnx.List([...])`` in the same subclass;
* ``native``: ``nnx.List`` (flax 0.12) or a plain list (0.10/0.11) in a ``flax.nnx.Module``.

and, per call outside ``jit``, ``variable.get_value()`` against ``variable[...]`` and
``nnx.Param(x)`` construction (which runs the wrapped ``__init__``).

Rounds interleave the variants in a shuffled order; each variant's median time is reported with
the median over rounds of its ratio to ``native`` in the same round.

Usage: ``python -m benchmarks.pytree_overhead`` (``--rounds``, ``--steps``).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import flax
import flax.nnx as upstream
import jax
import jax.numpy as jnp

import nnx_compat
from benchmarks._timing import compare
from nnx_compat import _versions, nnx

HAS_LIST = _versions.feature("HAS_LIST")  # flax 0.12.0


def _layers(rngs: Any, width: int, depth: int) -> list[Any]:
    return [upstream.Linear(width, width, rngs=rngs) for _ in range(depth)]


class Legacy(nnx.Module):
    def __init__(self, width: int, depth: int) -> None:
        self.layers = _layers(upstream.Rngs(0), width, depth)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = jax.nn.relu(layer(x))
        return x


class ListShim(nnx.Module):
    def __init__(self, width: int, depth: int) -> None:
        self.layers = nnx.List(_layers(upstream.Rngs(0), width, depth))

    __call__ = Legacy.__call__


class Native(upstream.Module):  # type: ignore[misc]
    def __init__(self, width: int, depth: int) -> None:
        layers = _layers(upstream.Rngs(0), width, depth)
        self.layers = upstream.List(layers) if HAS_LIST else layers

    __call__ = Legacy.__call__


VARIANTS: dict[str, type] = {"legacy-shim": Legacy, "list-shim": ListShim, "native": Native}


def make_step(cls: type, width: int, depth: int) -> Callable[[jax.Array], jax.Array]:
    with nnx_compat.warnings_policy("ignore"):
        model = cls(width, depth)

    @upstream.jit
    def step(model: Any, x: jax.Array) -> jax.Array:
        loss, grads = upstream.value_and_grad(lambda m: (m(x) ** 2).mean())(model)
        params = upstream.state(model, upstream.Param)
        upstream.update(model, jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads))
        return loss

    return lambda x: step(model, x)


def time_calls(fn: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    print(f"flax {flax.__version__}, jax {jax.__version__}, {jax.devices()[0].platform}")

    x = jnp.ones((8, 32))
    steps = {name: make_step(cls, 32, 3) for name, cls in VARIANTS.items()}
    compare(
        "jitted step, 3x Linear(32) + SGD, batch 8",
        {name: functools.partial(fn, x) for name, fn in steps.items()},
        "native",
        args.steps,
        args.rounds,
    )

    param = upstream.Param(jnp.ones((4, 4)))
    n = 20000
    calls = {
        "param[...]": lambda: param[...],
        "param.get_value()": lambda: param.get_value(),
        "nnx.Param(x)": lambda: upstream.Param(x),
        "nnx.Param(x, tag=1)": lambda: upstream.Param(x, tag=1),
    }
    print("per call, outside jit:")
    for name, fn in calls.items():
        t = statistics.median(time_calls(fn, n) for _ in range(5))
        print(f"  {name:22s} {t * 1e6:7.2f} us")


if __name__ == "__main__":
    main()
