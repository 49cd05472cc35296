"""Hypothesis strategies and helpers shared by the equivalence tests."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import flax.nnx as upstream
import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import strategies as st

from nnx_compat import _versions
from nnx_compat._bits import differences, same_bits
from nnx_compat.cli import doctor as _doctor

# flax 0.11.0 changed update(grads) to update(model, grads); the native form follows it.
NATIVE_UPDATE_TAKES_MODEL = _versions.feature("OPTIMIZER_UPDATE_TAKES_MODEL")


class LoRAParam(upstream.Param):  # type: ignore[misc]
    """A custom parameter type, as LoRA adapters use."""


class CallCount(upstream.Variable):  # type: ignore[misc]
    """A custom non-parameter variable that the forward pass mutates."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    din: int
    widths: tuple[int, ...]
    dout: int
    batchnorm: bool
    dropout: float
    lora_rank: int  # 0: no adapters
    seed: int


class MLP(upstream.Module):  # type: ignore[misc]
    def __init__(self, spec: ModelSpec, rngs: Any) -> None:
        dims = (spec.din, *spec.widths, spec.dout)
        self.depth = len(dims) - 1
        self.spec = spec
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            setattr(self, f"linear{i}", upstream.Linear(a, b, rngs=rngs))
            if i < self.depth - 1:
                if spec.batchnorm:
                    setattr(self, f"bn{i}", upstream.BatchNorm(b, rngs=rngs))
                if spec.dropout:
                    setattr(self, f"dropout{i}", upstream.Dropout(spec.dropout, rngs=rngs))
        if spec.lora_rank:
            key = jax.random.key(spec.seed + 1)
            self.lora_a = LoRAParam(jax.random.normal(key, (dims[0], spec.lora_rank)) * 0.1)
            self.lora_b = LoRAParam(jnp.full((spec.lora_rank, dims[1]), 0.01, jnp.float32))
        self.calls = CallCount(jnp.zeros((), jnp.int32))

    def __call__(self, x: jax.Array) -> jax.Array:
        self.calls[...] = self.calls[...] + 1
        h = x
        for i in range(self.depth):
            out = getattr(self, f"linear{i}")(h)
            if i == 0 and self.spec.lora_rank:
                out = out + h @ self.lora_a[...] @ self.lora_b[...]
            h = out
            if i < self.depth - 1:
                if self.spec.batchnorm:
                    h = getattr(self, f"bn{i}")(h)
                if self.spec.dropout:
                    h = getattr(self, f"dropout{i}")(h)
                h = jax.nn.relu(h)
        return h

    @staticmethod
    def build(spec: ModelSpec) -> MLP:
        return MLP(spec, upstream.Rngs(params=spec.seed, dropout=spec.seed + 7))


@st.composite
def model_specs(draw: st.DrawFn) -> ModelSpec:
    depth = draw(st.integers(1, 3))
    return ModelSpec(
        din=draw(st.integers(1, 6)),
        widths=tuple(draw(st.integers(1, 8)) for _ in range(depth - 1)),
        dout=draw(st.integers(1, 4)),
        batchnorm=draw(st.booleans()),
        dropout=draw(st.sampled_from([0.0, 0.1, 0.5])),
        lora_rank=draw(st.sampled_from([0, 2])),
        seed=draw(st.integers(0, 2**16)),
    )


def _schedule() -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(0.0, 1e-2, warmup_steps=2, decay_steps=10)


#: name -> factory; factories so that every run gets a fresh transformation.
TRANSFORMS: dict[str, Any] = {
    "sgd": lambda: optax.sgd(0.05),
    "momentum": lambda: optax.sgd(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: optax.adam(1e-2),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=1e-3),
    "lion": lambda: optax.lion(1e-3),
    "chain": lambda: optax.chain(optax.clip_by_global_norm(0.5), optax.adam(_schedule())),
    "multisteps": lambda: optax.MultiSteps(optax.adam(1e-2), every_k_schedule=2),
}

#: name -> (filter, whether it needs LoRA adapters)
WRT: dict[str, tuple[Any, bool]] = {
    "Param": (upstream.Param, False),
    "LoRAParam": (LoRAParam, True),
    "Param-not-LoRA": (upstream.All(upstream.Param, upstream.Not(LoRAParam)), True),
}


def flat_arrays(tree: Any) -> dict[str, np.ndarray]:
    """``path -> numpy array`` for every array leaf (PRNG keys as their raw key data)."""
    return _doctor.arrays("", tree)


def assert_bitwise_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """Same paths, and at each the same dtype, shape and bytes (``-0.0`` is not ``0.0``)."""
    problems = differences(a, b)
    assert not problems, "\n".join(problems)


def assert_same_bits(a: Any, b: Any) -> None:
    """Two arrays with the same dtype, shape and bytes."""
    assert same_bits(np.asarray(a), np.asarray(b)), (a, b)


# --- the NNX Basics functional API (flax 0.10) ---------------------------------------------


class Count(upstream.Variable):  # type: ignore[misc]
    pass


class StatefulLinear(upstream.Module):  # type: ignore[misc]
    """The NNX Basics guide's Functional API example (flax 0.10): a counter mutated per call."""

    def __init__(self, din: int, dout: int, *, rngs: Any) -> None:
        self.w = upstream.Param(jax.random.uniform(rngs(), (din, dout)))
        self.b = upstream.Param(jnp.zeros((dout,)))
        self.count = Count(jnp.array(0))

    def __call__(self, x: jax.Array) -> jax.Array:
        self.count[...] = self.count[...] + 1
        return x @ self.w[...] + self.b[...]


def functional_program(
    ns: Any, model: Any, *, form: str, steps: int = 3, lr: float = 0.1, seed: int = 1
) -> dict[str, np.ndarray]:
    """flax 0.10's functional API training loop: ``merge`` inside ``jax.grad`` under ``jax.jit``.

    ``form``: ``"legacy"`` merges the captured non-parameter state (flax 0.10's guides);
    ``"copy"`` is the same with ``copy=True`` (its 0.11 form); ``"nnx-grad"`` merges under
    ``jax.jit`` only and differentiates with ``nnx.value_and_grad``, which every flax runs
    natively.
    """
    graphdef, params, rest = ns.split(model, ns.Param, ...)
    kx, ky = jax.random.split(jax.random.key(seed))
    din, dout = model_dims(model)
    x = jax.random.normal(kx, (4, din))
    y = jax.random.normal(ky, (4, dout))

    def loss(model: Any) -> jax.Array:
        return jnp.mean((model(x) - y) ** 2)

    @jax.jit
    def train_step(params: Any, rest: Any) -> tuple[jax.Array, Any, Any]:
        if form == "nnx-grad":
            model = ns.merge(graphdef, params, rest)
            value, grads = ns.value_and_grad(loss)(model)
            _, _, rest = ns.split(model, ns.Param, ...)
        else:

            def loss_fn(params: Any) -> tuple[jax.Array, Any]:
                if form == "legacy":
                    model = ns.merge(graphdef, params, rest)  # CAPTURED-MERGE
                else:
                    model = ns.merge(graphdef, params, rest, copy=True)
                value = loss(model)
                _, _, new_rest = ns.split(model, ns.Param, ...)
                return value, new_rest

            (value, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
        return value, params, rest

    out: dict[str, np.ndarray] = {}
    for i in range(steps):
        value, params, rest = train_step(params, rest)
        out[f"loss/{i}"] = np.asarray(value)
    ns.update(model, params, rest)
    out.update(flat_arrays(ns.state(model)))
    return out


def model_dims(model: Any) -> tuple[int, int]:
    """Input and output width of a :class:`StatefulLinear` or an :class:`MLP`."""
    if isinstance(model, StatefulLinear):
        return int(model.w.shape[0]), int(model.w.shape[1])
    return model.spec.din, model.spec.dout


def stateful_linear(seed: int = 0) -> StatefulLinear:
    return StatefulLinear(3, 5, rngs=upstream.Rngs(seed))
