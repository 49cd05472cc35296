"""Per-call cost of the Rngs and layer shims against native flax, in one run.

Times a jitted forward pass (``nnx.jit``) of the migration guide's scan-over-layers MLP:

* ``legacy-shim``: its 0.10 form (``split_rngs`` over ``scan``) through ``nnx_compat.nnx``;
* ``new-shim``: its 0.11 form through ``nnx_compat.nnx``;
* ``native``: its 0.11 form on ``flax.nnx`` (flax 0.11+; flax 0.10 cannot run it, and there
  the baseline is ``new-shim``).

Usage: ``python -m benchmarks.rngs_overhead`` (``--rounds``, ``--quick``).
"""

from __future__ import annotations

from typing import Any

import flax.nnx as upstream
import jax
import jax.numpy as jnp

import nnx_compat
from benchmarks._timing import compare, setup
from nnx_compat import _versions, nnx


def make_model(ns: Any, form: str, layers: int, width: int) -> Any:
    def init(self: Any, rngs: Any) -> None:
        self.linear = ns.Linear(width, width, rngs=rngs)
        self.bn = ns.BatchNorm(width, rngs=rngs)
        self.dropout = ns.Dropout(0.5, rngs=rngs)

    def call(self: Any, x: jax.Array) -> jax.Array:
        return ns.gelu(self.dropout(self.bn(self.linear(x))))

    scanned = ns.scan(in_axes=(0, ns.Carry), out_axes=ns.Carry)(call)
    if form == "0.10":
        scanned = ns.split_rngs(splits=layers)(scanned)
    vmapped = ns.split_rngs(splits=layers)(ns.vmap(in_axes=(0, 0))(init))
    cls = type("MLP", (ns.Module,), {"__init__": vmapped, "__call__": scanned})
    with nnx_compat.warnings_policy("ignore"):
        return cls(ns.Rngs(0))


def bench(label: str, layers: int, width: int, batch: int, steps: int, rounds: int) -> None:
    x = jax.random.normal(jax.random.key(0), (batch, width), jnp.float32)
    variants = {"legacy-shim": (nnx, "0.10"), "new-shim": (nnx, "0.11")}
    forks = _versions.feature("LAYERS_FORK_RNGS")
    if forks:
        variants["native"] = (upstream, "0.11")
    runs = {}
    for name, (ns, form) in variants.items():
        model = make_model(ns, form, layers, width)
        forward = ns.jit(lambda model, x: model(x))
        runs[name] = lambda forward=forward, model=model: forward(model, x)
    baseline = "native" if forks else "new-shim"
    compare(
        f"{label}: {layers} layers, width {width}, batch {batch}", runs, baseline, steps, rounds
    )


def main() -> None:
    rounds, scale = setup()
    bench("dispatch-bound", layers=5, width=16, batch=8, steps=200 // scale, rounds=rounds)
    bench("compute-bound", layers=8, width=1024, batch=512, steps=20 // scale, rounds=rounds)


if __name__ == "__main__":
    main()
