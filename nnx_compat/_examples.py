"""A runnable example of each legacy pattern and of its new form (``Pattern.example``).

Each snippet is the body of a small program that runs after :data:`HEADER`, which imports
``nnx`` (``from flax import nnx``; ``from nnx_compat import nnx`` for the legacy form run
through nnx_compat, as a user would change it), ``jax``, ``jnp``, ``np`` and ``optax``. A
snippet that sets ``result`` lets the tests compare the legacy form, run through nnx_compat,
with the new form run natively, bit for bit. The tests run every example on every supported
flax (``tests/test_examples.py``); the checker must find the legacy form and not the new one,
and the codemod must turn the legacy form into code that runs natively with the same result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final

__all__ = ["EXAMPLES", "HEADER", "Example", "program"]

#: What every snippet runs after; ``{nnx}`` is the import of ``nnx``.
HEADER: Final = """\
import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
{nnx}


@contextlib.contextmanager
def lazy_sharding():  # flax 0.12 shards annotated Variables when they are created
    if hasattr(nnx, "use_eager_sharding"):  # flax 0.12.1
        with nnx.use_eager_sharding(False):
            yield
        return
    import flax  # flax 0.12.0's switch is a config flag

    previous = getattr(flax.config, "flax_always_shard_variable", None)
    if previous is not None:
        flax.config.update("flax_always_shard_variable", False)
    try:
        yield
    finally:
        if previous is not None:
            flax.config.update("flax_always_shard_variable", previous)

"""

NATIVE: Final = "from flax import nnx"
THROUGH_NNX_COMPAT: Final = "from nnx_compat import nnx"


def program(snippet: str, *, native: bool) -> str:
    """The whole program for a snippet: the header, then the snippet."""
    return HEADER.format(nnx=NATIVE if native else THROUGH_NNX_COMPAT) + snippet


@dataclasses.dataclass(frozen=True)
class Example:
    """A pattern's legacy form and new form, as code that runs.

    Attributes:
        legacy: The legacy form, run through nnx_compat on every flax.
        new: The new form, run natively where the installed flax has the change.
        warns: Where the legacy form warns with the pattern's id: ``"everywhere"`` (a legacy
            call warns on every flax, the old one included), ``"changed"`` (where the
            installed flax has the change: the call is the old flax's own API), ``"nowhere"``,
            or a feature probe's name (``"!NAME"``: where it answers False).
        raises: Why the legacy form still raises through nnx_compat (a non-goal says it in
            its record, and raises where the installed flax has the change).
        raises_where: Where it raises, as for ``warns``.
        needs: The first flax release on which the legacy form runs natively, where it uses
            the API of a 0.10 release later than 0.10.0 (on an older one it fails natively).
        new_needs: The first flax release on which the new form runs natively, where that is
            later than the change (before it, nnx_compat serves the new form).
    """

    legacy: str
    new: str
    warns: str = "everywhere"
    raises: str = ""
    raises_where: str = "changed"
    needs: str = "0.10.0"
    new_needs: str = "0.10.0"


_E = Example


def _both(template: str, legacy: str, new: str) -> tuple[str, str]:
    """A snippet in its two forms: ``template`` with ``{form}`` replaced by each."""
    return template.replace("{form}", legacy), template.replace("{form}", new)


_MLP_010 = """
class MLP(nnx.Module):
    def __init__(self, rngs):
        self.linear = nnx.Linear(2, 3, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return self.dropout(self.linear(x))

"""

_SCAN = """
class MLP(nnx.Module):
    @nnx.split_rngs(splits=5)
    @nnx.vmap(in_axes=(0, 0))
    def __init__(self, rngs: nnx.Rngs):
        self.linear = nnx.Linear(3, 3, rngs=rngs)
        self.bn = nnx.BatchNorm(3, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.node = nnx.Param(jnp.ones((2,)))
{split}
    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
    def __call__(self, x: jax.Array):
        return nnx.gelu(self.dropout(self.bn(self.linear(x))))


model = MLP(nnx.Rngs(0))
result = model(jnp.ones((3, 3))), nnx.state(model)
"""

_CHECKPOINT_010 = """
class Model(nnx.Module):
    def __init__(self, rngs):
        self.linear = nnx.Linear(2, 2, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)


def rng(count):  # flax 0.10 kept the caller's Rngs in the Dropout: rngs/<stream>/{key,count}
    return {"key": {"value": jax.random.key(7)}, "count": {"value": np.uint32(count)}}


model_010 = {
    "linear": {
        "kernel": {"value": np.full((2, 2), 0.5, np.float32)},
        "bias": {"value": np.arange(2, dtype=np.float32)},
    },
    "dropout": {"rngs": {"default": rng(1), "dropout": rng(0)}},
}
"""

_CHECKPOINT_NEW = """
class Model(nnx.Module):
    def __init__(self, rngs):
        self.linear = nnx.Linear(2, 2, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)


model = Model(nnx.Rngs(0, dropout=1))
model.linear.kernel[...] = np.full((2, 2), 0.5, np.float32)
model.linear.bias[...] = np.arange(2, dtype=np.float32)
"""

_PARTITIONED = (
    "nnx.Linear(2, 4, kernel_init=nnx.with_partitioning(nnx.initializers.ones, "
    "(None, 'model')), rngs=nnx.Rngs(0))"
)

EXAMPLES: Final[Mapping[str, Example]] = {
    # ------------------------------------------------------------------ optimizer
    "optimizer-wrt-default": _E(
        *_both(
            "model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"
            "{form}result = nnx.state(optimizer, nnx.optimizer.OptState)\n",
            "optimizer = nnx.Optimizer(model, optax.adam(1e-3))\n",
            "optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)\n",
        ),
    ),
    "optimizer-wrt-positional": _E(
        *_both(
            "model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"
            "{form}result = nnx.state(optimizer, nnx.optimizer.OptState)\n",
            "optimizer = nnx.Optimizer(model, optax.adam(1e-3), nnx.Param)\n",
            "optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)\n",
        ),
    ),
    "optimizer-update-grads": _E(
        *_both(
            "model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"
            "{form}\n"
            "\n"
            "for _ in range(2):\n"
            "    train_step(model, optimizer, jnp.ones((4, 2)))\n"
            "result = nnx.state(model)\n",
            "optimizer = nnx.Optimizer(model, optax.adam(1e-2))\n"
            "\n"
            "\n"
            "@nnx.jit\n"
            "def train_step(model, optimizer, x):\n"
            "    grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)\n"
            "    optimizer.update(grads)\n",
            "optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)\n"
            "\n"
            "\n"
            "@nnx.jit\n"
            "def train_step(model, optimizer, x):\n"
            "    grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)\n"
            "    optimizer.update(model, grads)\n",
        ),
    ),
    "optimizer-model-attribute": _E(
        *_both(
            "model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"
            "optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)\n"
            "{form}",
            "result = optimizer.model(jnp.ones((1, 2)))\n",
            "result = model(jnp.ones((1, 2)))\n",
        ),
    ),
    # ------------------------------------------------------------------ rngs
    "split-rngs-over-scan": _E(
        _SCAN.format(split="    @nnx.split_rngs(splits=5)"),
        _SCAN.format(split=""),
    ),
    "layers-share-rngs": _E(
        "rngs = nnx.Rngs(0, dropout=1)\n"
        "dropout = nnx.Dropout(0.5, rngs=rngs)\n"
        "stream = dropout.rngs  # flax 0.10: the caller's Rngs\n"
        "result = jax.random.key_data(stream())\n",
        "rngs = nnx.Rngs(0, dropout=1)\n"
        "dropout = nnx.Dropout(0.5, rngs=rngs)\n"
        "stream = dropout.rngs  # the layer's own forked stream\n"
        "result = jax.random.key_data(stream())\n",
        warns="!LAYERS_FORK_RNGS",
    ),
    "layer-rng-draws": _E(
        "rngs = nnx.Rngs(0, dropout=1)\n"
        "dropout = nnx.Dropout(0.5, deterministic=False, rngs=rngs)\n"
        "y = dropout(jnp.ones(4))  # flax 0.10: drawn from rngs.dropout, whose count advances\n"
        "result = y.shape\n",
        "rngs = nnx.Rngs(0, dropout=1)\n"
        "dropout = nnx.Dropout(0.5, deterministic=False, rngs=rngs)\n"
        "y = dropout(jnp.ones(4))  # drawn from the layer's own stream\n"
        "result = y.shape\n",
    ),
    "rngs-error-text": _E(
        "rngs = nnx.Rngs(params=0)\n"
        "try:\n"
        "    rngs.dropout()\n"
        "except AttributeError as error:  # flax 0.10: \"No RNG named 'dropout' ...\"\n"
        "    result = 'No RNG named' in str(error)\n",
        "rngs = nnx.Rngs(params=0)\n"
        "try:\n"
        "    rngs.dropout()\n"
        "except AttributeError as error:\n"
        "    result = isinstance(error, AttributeError)\n",
    ),
    "error-text": _E(
        "class Block(nnx.Module):\n"
        "    def __init__(self, rngs):\n"
        "        self.dropout = nnx.Dropout(0.5, rngs=rngs)\n"
        "block = Block(nnx.Rngs(0))\n"
        "try:\n"
        "    block.set_attributes(not_an_attribute=True)\n"
        "except ValueError as error:  # flax 0.10: 'Could not find at least one instance ...'\n"
        "    result = 'Could not find' in str(error)\n",
        "class Block(nnx.Module):\n"
        "    def __init__(self, rngs):\n"
        "        self.dropout = nnx.Dropout(0.5, rngs=rngs)\n"
        "block = Block(nnx.Rngs(0))\n"
        "try:\n"
        "    block.set_attributes(not_an_attribute=True)\n"
        "except ValueError as error:\n"
        "    result = isinstance(error, ValueError)\n",
    ),
    "flax-deprecations": _E(
        "class Block(nnx.Module):\n"
        "    def __init__(self, rngs):\n"
        "        self.linear = nnx.Linear(2, 2, rngs=rngs)\n"
        "block = Block(nnx.Rngs(0))\n"
        "result = [path for path, _ in block.iter_modules()]  # flax 0.12.1 warns\n",
        "class Block(nnx.Module):\n"
        "    def __init__(self, rngs):\n"
        "        self.linear = nnx.Linear(2, 2, rngs=rngs)\n"
        "block = Block(nnx.Rngs(0))\n"
        "result = [path for path, _ in nnx.iter_modules(block)]\n",
        new_needs="0.12.1",
    ),
    "rngs-fork-splits": _E(
        "rngs = nnx.Rngs(params=0, dropout=1)\n"
        "forked = rngs.fork(splits=4)\n"
        "result = jax.random.key_data(forked.params.key[...])\n",
        "rngs = nnx.Rngs(params=0, dropout=1)\n"
        "forked = rngs.split(4) if hasattr(nnx.Rngs, 'split') else rngs.fork(split=4)\n"
        "result = jax.random.key_data(forked.params.key[...])\n",
        warns="everywhere",
    ),
    "rngs-fork-split": _E(
        "rngs = nnx.Rngs(params=0, dropout=1)\n"
        "forked = rngs.fork(split=4)\n"
        "result = jax.random.key_data(forked.params.key[...])\n",
        "rngs = nnx.Rngs(params=0, dropout=1)\n"
        "forked = rngs.split(4)\n"
        "result = jax.random.key_data(forked.params.key[...])\n",
        warns="changed",
    ),
    "nnx-fork": _E(
        "rngs = nnx.Rngs(params=0)\n"
        "forked = nnx.fork(nnx.state(rngs), ..., 4)\n"
        "result = jax.random.key_data(forked.split_keys['params']['key'][...])\n",
        "rngs = nnx.Rngs(params=0)\n"
        "\n"
        "\n"
        "@nnx.split_rngs(splits=4)\n"
        "def keys(rngs):\n"
        "    return jax.random.key_data(rngs.params.key[...])\n"
        "\n"
        "\n"
        "result = keys(rngs)\n",
        warns="changed",
        needs="0.10.7",
    ),
    "bridge-to-nnx-rngs": _E(
        "from flax import linen\n"
        "\n"
        "model = nnx.bridge.ToNNX(linen.Dense(3), rngs=nnx.Rngs(0))\n"
        "nnx.bridge.lazy_init(model, jnp.ones((1, 2)))\n"
        "result = nnx.state(model, nnx.Param)\n",
        "from flax import linen\n"
        "\n"
        "model = nnx.bridge.ToNNX(linen.Dense(3), rngs=nnx.Rngs(0))\n"
        "nnx.bridge.lazy_init(model, jnp.ones((1, 2)))\n"
        "result = nnx.state(model, nnx.Param)\n",
    ),
    "rngs-array-protocol": _E(
        "result = hasattr(nnx.Rngs(0), '__array__')\n",
        "result = isinstance(nnx.Rngs(0), nnx.Rngs)\n",
    ),
    "reseed-shared-rngs": _E(
        "rngs = nnx.Rngs(dropout=0)\n"
        "model = nnx.Dropout(0.5, rngs=rngs)\n"
        "nnx.reseed(rngs, dropout=5)\n"
        "result = model(jnp.ones(8))\n",
        "rngs = nnx.Rngs(dropout=0)\n"
        "model = nnx.Dropout(0.5, rngs=rngs)\n"
        "nnx.reseed(model, dropout=5)\n"
        "result = model(jnp.ones(8))\n",
        warns="everywhere",  # nnx_compat's layers fork on flax 0.10 too
    ),
    "rngstream-positional-tag": _E(
        "stream = nnx.RngStream('params', jax.random.key(0))\n"
        "result = jax.random.key_data(stream())\n",
        "stream = nnx.RngStream(jax.random.key(0), tag='params')\n"
        "result = jax.random.key_data(stream())\n",
        warns="changed",
    ),
    # ------------------------------------------------------------------ checkpoint
    "checkpoint-shared-rngs": _E(
        _CHECKPOINT_010
        + "state = nnx.fix_checkpoint(model_010, Model, rngs=nnx.Rngs(0, dropout=1))\n"
        "model = nnx.eval_shape(lambda: Model(nnx.Rngs(0, dropout=1)))\n"
        "nnx.update(model, state)\n"
        "result = nnx.state(model)\n",
        _CHECKPOINT_NEW + "result = nnx.state(model)\n",
        warns="nowhere",  # nnx.fix_checkpoint is the way to read a 0.10 checkpoint
    ),
    "checkpoint-optimizer-model": _E(
        _CHECKPOINT_010 + "checkpoint = {'model': model_010, 'step': {'value': np.uint32(3)}}\n"
        "model_state, optimizer_state = nnx.fix_checkpoint(\n"
        "    checkpoint, Model, rngs=nnx.Rngs(0, dropout=1), tx=optax.sgd(0.1)\n"
        ")\n"
        "result = model_state, optimizer_state\n",
        _CHECKPOINT_NEW + "optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)\n"
        "optimizer.step[...] = np.uint32(3)\n"
        "result = nnx.state(model), nnx.state(optimizer)\n",
        warns="nowhere",
    ),
    "state-copies": _E(
        *_both(
            "model = nnx.BatchNorm(3, rngs=nnx.Rngs(0))\n"
            "graphdef, params, rest = nnx.split(model, nnx.Param, ...)\n"
            "\n"
            "\n"
            "def loss_fn(params):\n"
            "{form}    loss = jnp.sum(model(jnp.arange(6.0).reshape(2, 3)) ** 2)\n"
            "    return loss, nnx.state(model, nnx.BatchStat)\n"
            "\n"
            "\n"
            "grads, stats = jax.jit(jax.grad(loss_fn, has_aux=True))(params)\n"
            "result = grads, stats\n",
            "    model = nnx.merge(graphdef, params, rest)\n",
            "    model = nnx.merge(graphdef, params, rest, copy=True)\n",
        ),
        warns="changed",
    ),
    "state-snapshot": _E(
        *_both(
            "model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"
            "{form}model.bias[...] = jnp.ones(3)\n"
            "result = snapshot\n",
            "snapshot = nnx.state(model)\n",
            "snapshot = nnx.clone(nnx.state(model))\n",
        ),
        needs="0.10.7",
    ),
    "merge-shares-variables": _E(
        *_both(
            "model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"
            "{form}copy.bias[...] = jnp.ones(3)\n"
            "result = nnx.state(model)\n",
            "copy = nnx.merge(*nnx.split(model))\n",
            "copy = nnx.clone(model)\n",
        ),
        needs="0.10.7",
    ),
    "mutable-arrays": _E(
        "ref = nnx.mutable_array(jnp.zeros(3))\n",
        "new_ref = getattr(jax, 'new_ref', None) or jax.array_ref\nref = new_ref(jnp.zeros(3))\n",
        needs="0.10.7",
    ),
    "nnx-dataclasses": _E(
        "@nnx.dataclass\n"
        "class Head(nnx.Module):\n"
        "    size: int = nnx.field(static=True, default=3)\n"
        "\n"
        "\n"
        "result = Head().size\n",
        "import dataclasses\n"
        "\n"
        "\n"
        "@dataclasses.dataclass\n"
        "class Config:\n"
        "    size: int = 3\n"
        "\n"
        "\n"
        "result = Config().size\n",
        needs="0.10.7",
    ),
    # ------------------------------------------------------------------ pytree
    "tree-map-over-modules": _E(
        "layers = [nnx.Linear(2, 3, rngs=nnx.Rngs(i)) for i in range(2)]\n"
        "result = jax.tree.map(lambda layer: layer.out_features, layers)\n",
        "layers = [nnx.Linear(2, 3, rngs=nnx.Rngs(i)) for i in range(2)]\n"
        "result = jax.tree.map(\n"
        "    lambda layer: layer.out_features,\n"
        "    layers,\n"
        "    is_leaf=lambda x: isinstance(x, nnx.Module),\n"
        ")\n",
        warns="nowhere",
        raises="jax.tree.map cannot be intercepted: nnx_compat.tree.map keeps 0.10's leaves",
    ),
    "isinstance-object": _E(
        "result = isinstance(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.Object)\n",
        "result = isinstance(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.Pytree)\n",
        warns="changed",
    ),
    "list-attribute": _E(
        *_both(
            "class MLP(nnx.Module):\n"
            "    def __init__(self, rngs):\n"
            "{form}\n"
            "    def __call__(self, x):\n"
            "        for layer in self.layers:\n"
            "            x = layer(x)\n"
            "        return x\n"
            "\n"
            "\n"
            "model = MLP(nnx.Rngs(0))\n"
            "result = model(jnp.ones((1, 2))), nnx.state(model)\n",
            "        self.layers = [nnx.Linear(2, 2, rngs=rngs) for _ in range(3)]\n",
            "        self.layers = nnx.List([nnx.Linear(2, 2, rngs=rngs) for _ in range(3)])\n",
        ),
        warns="changed",
    ),
    "dict-attribute": _E(
        *_both(
            "class Heads(nnx.Module):\n"
            "    def __init__(self, rngs):\n"
            "{form}\n"
            "\n"
            "model = Heads(nnx.Rngs(0))\n"
            "result = model.heads['b'](jnp.ones((1, 2))), nnx.state(model)\n",
            "        self.heads = {'a': nnx.Linear(2, 2, rngs=rngs), "
            "'b': nnx.Linear(2, 3, rngs=rngs)}\n",
            "        self.heads = nnx.Dict({'a': nnx.Linear(2, 2, rngs=rngs), "
            "'b': nnx.Linear(2, 3, rngs=rngs)})\n",
        ),
        warns="changed",
    ),
    "container-filled-after-init": _E(
        *_both(
            "class Registry(nnx.Module):\n"
            "    def __init__(self):\n"
            "{form}\n"
            "    def add(self, name, rngs):\n"
            "        self.items[name] = nnx.Linear(2, 2, rngs=rngs)\n"
            "\n"
            "\n"
            "model = Registry()\n"
            "model.add('a', nnx.Rngs(0))\n"
            "result = nnx.state(model)\n",
            "        self.items = {}\n",
            "        self.items = nnx.Dict()\n",
        ),
        warns="changed",
    ),
    "static-attribute-data": _E(
        *_both(
            "class Model(nnx.Module):\n"
            "    def __init__(self):\n"
            "{form}\n"
            "    def build(self, rngs):\n"
            "        self.head = nnx.Linear(2, 2, rngs=rngs)\n"
            "\n"
            "\n"
            "model = Model()\n"
            "model.build(nnx.Rngs(0))\n"
            "result = nnx.state(model)\n",
            "        self.head = None\n",
            "        self.head = nnx.data(None)\n",
        ),
        warns="changed",
    ),
    "pytree-attribute": _E(
        *_both(
            "from flax import struct\n"
            "\n"
            "\n"
            "@struct.dataclass\n"
            "class Pair:\n"
            "    a: jax.Array\n"
            "    b: jax.Array\n"
            "\n"
            "\n"
            "class Model(nnx.Module):\n"
            "    def __init__(self):\n"
            "{form}\n"
            "\n"
            "result = nnx.state(Model())\n",
            "        self.pair = Pair(jnp.ones(2), jnp.zeros(2))\n",
            "        self.pair = nnx.data(Pair(jnp.ones(2), jnp.zeros(2)))\n",
        ),
        warns="changed",
        needs="0.10.5",
    ),
    # ------------------------------------------------------------------ variable
    "variable-value": _E(
        "model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\nresult = model.kernel.value * 2\n",
        "model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\nresult = model.kernel[...] * 2\n",
        warns="changed",
    ),
    "variable-value-variable": _E(
        *_both(
            "model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"
            "other = nnx.Linear(2, 3, rngs=nnx.Rngs(1))\n"
            "{form}result = model(jnp.ones((1, 2)))\n",
            "model.kernel.value = other.kernel\n",
            "model.kernel[...] = other.kernel[...]\n",
        ),
        warns="VARIABLE_VALUE_REJECTS_VARIABLE",
    ),
    "variable-hooks": _E(
        "init = nnx.with_metadata(nnx.initializers.ones, get_value_hooks=(lambda v, x: 0 * x,))\n"
        "model = nnx.Linear(2, 2, kernel_init=init, rngs=nnx.Rngs(0))\n"
        "result = model(jnp.ones((1, 2)))\n",
        "model = nnx.Linear(2, 2, kernel_init=nnx.initializers.ones, rngs=nnx.Rngs(0))\n"
        "result = model(jnp.ones((1, 2)))\n",
    ),
    "flax-internals": _E(
        "empty = nnx.statelib.EmptyState()\n",
        "model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"
        "graphdef, state = nnx.split(model)\n"
        "result = nnx.to_flat_state(state)\n",
        needs="0.10.5",
    ),
    "variable-hash": _E(
        *_both(
            "kernel = nnx.Param(jnp.ones(2))\n{form}",
            "names = {kernel: 'kernel'}\nresult = names[kernel]\n",
            "names = {id(kernel): 'kernel'}\nresult = names[id(kernel)]\n",
        ),
        warns="VARIABLE_UNHASHABLE",
    ),
    "variable-eq": _E(
        "result = bool(nnx.Param(jnp.ones(())) == nnx.Param(jnp.ones(())))\n",
        "a = nnx.Param(jnp.ones(()))\nresult = a is nnx.Param(jnp.ones(()))\n",
    ),
    "variable-metadata-attribute": _E(
        "kernel = nnx.Param(jnp.ones(2))\n"
        "kernel.tag = 'encoder'\n"
        "result = kernel.get_metadata()['tag']\n",
        "kernel = nnx.Param(jnp.ones(2))\n"
        "kernel.set_metadata(tag='encoder')\n"
        "result = kernel.get_metadata()['tag']\n",
        warns="changed",
    ),
    "variable-metadata-keys": _E(
        "kernel = nnx.Param(jnp.ones(2), tag='encoder')\nresult = sorted(kernel.get_metadata())\n",
        "kernel = nnx.Param(jnp.ones(2), tag='encoder')\nresult = kernel.get_metadata()['tag']\n",
    ),
    "variable-inplace-op": _E(
        "count = nnx.BatchStat(jnp.ones(2))\ncount += 1\ncount *= 3\nresult = count[...]\n",
        "count = nnx.BatchStat(jnp.ones(2))\n"
        "count[...] += 1\n"
        "count[...] *= 3\n"
        "result = count[...]\n",
        warns="changed",
    ),
    "variable-state": _E(
        "state = nnx.VariableState(nnx.Param, jnp.ones(2), tag='encoder')\n"
        "variable = state.to_variable()\n"
        "result = variable[...], variable.get_metadata()['tag']\n",
        "variable = nnx.Param(jnp.ones(2), tag='encoder')\n"
        "result = variable[...], variable.get_metadata()['tag']\n",
        warns="changed",
        needs="0.10.3",
    ),
    # ------------------------------------------------------------------ sharding
    "sharding-without-mesh": _E(
        f"layer = {_PARTITIONED}\nresult = nnx.state(layer)\n",
        f"with nnx.use_eager_sharding(False):\n    layer = {_PARTITIONED}\n"
        "result = nnx.state(layer)\n",
        warns="changed",
        new_needs="0.12.1",  # nnx.use_eager_sharding
    ),
    "with-sharding-constraint": _E(
        "P = jax.sharding.PartitionSpec\n"
        "result = nnx.with_sharding_constraint(jnp.ones((4, 2)), P('data', None))\n",
        "P = jax.sharding.PartitionSpec\n"
        "mesh = jax.sharding.Mesh(jax.devices()[:1], ('data',))\n"
        "result = jax.lax.with_sharding_constraint(\n"
        "    jnp.ones((4, 2)), jax.sharding.NamedSharding(mesh, P('data', None))\n"
        ")\n",
        warns="changed",
    ),
    "variable-sharding-attribute": _E(
        "layer = nnx.Linear(2, 4, rngs=nnx.Rngs(0))\nresult = str(layer.kernel.sharding)\n",
        "with lazy_sharding():\n"
        f"    layer = {_PARTITIONED}\n"
        "result = nnx.get_partition_spec(nnx.state(layer))\n",
    ),
    "variable-sharding-traced": _E(
        "with lazy_sharding():\n"
        f"    layer = {_PARTITIONED}\n"
        "names = []\n"
        "\n"
        "\n"
        "@nnx.jit\n"
        "def forward(layer, x):\n"
        "    names.append(tuple(layer.kernel.sharding))\n"
        "    return layer(x)\n"
        "\n"
        "\n"
        "result = forward(layer, jnp.ones((1, 2))), names\n",
        "with lazy_sharding():\n"
        f"    layer = {_PARTITIONED}\n"
        "names = []\n"
        "\n"
        "\n"
        "@nnx.jit\n"
        "def forward(layer, x):\n"
        "    metadata = layer.kernel.get_metadata()\n"
        "    names.append(tuple(metadata.get('out_sharding', metadata.get('sharding_names'))))\n"
        "    return layer(x)\n"
        "\n"
        "\n"
        "result = forward(layer, jnp.ones((1, 2))), names\n",
        warns="changed",
    ),
    "linen-bridge-sharding-metadata": _E(
        "init = nnx.with_partitioning(nnx.initializers.ones, (None, 'model'))\n"
        "model = nnx.bridge.ToLinen(nnx.Linear, args=(2, 4), kwargs={'kernel_init': init})\n"
        "with lazy_sharding():\n"
        "    variables = model.init(jax.random.key(0), jnp.ones((1, 2)))\n"
        "result = tuple(variables['params']['kernel'].metadata['sharding'])\n",
        "init = nnx.with_partitioning(nnx.initializers.ones, (None, 'model'))\n"
        "model = nnx.bridge.ToLinen(nnx.Linear, args=(2, 4), kwargs={'kernel_init': init})\n"
        "with lazy_sharding():\n"
        "    variables = model.init(jax.random.key(0), jnp.ones((1, 2)))\n"
        "metadata = variables['params']['kernel'].metadata\n"
        "result = tuple(metadata.get('out_sharding', metadata.get('sharding_names')))\n",
        warns="changed",
    ),
    "sharding-metadata-key": _E(
        "with lazy_sharding():\n"
        "    kernel = nnx.Param(jnp.ones((2, 4)), sharding=(None, 'model'))\n"
        "result = nnx.get_partition_spec(nnx.State({'kernel': kernel}))\n",
        "with lazy_sharding():\n"
        "    kernel = nnx.Param(jnp.ones((2, 4)), out_sharding=(None, 'model'))\n"
        "result = nnx.get_partition_spec(nnx.State({'kernel': kernel}))\n",
        warns="changed",
    ),
    # ------------------------------------------------------------------ layers
    "dropout-positional": _E(
        "dropout = nnx.Dropout(0.5, (0,), False, 'dropout', nnx.Rngs(dropout=1))\n"
        "result = dropout(jnp.ones((2, 4)))\n",
        "dropout = nnx.Dropout(\n"
        "    0.5, broadcast_dims=(0,), deterministic=False, rng_collection='dropout',\n"
        "    rngs=nnx.Rngs(dropout=1),\n"
        ")\n"
        "result = dropout(jnp.ones((2, 4)))\n",
    ),
    "rnn-positional": _E(
        "cell = nnx.LSTMCell(2, 3, rngs=nnx.Rngs(0))\n"
        "rnn = nnx.RNN(cell, True, True)\n"
        "result = rnn(jnp.ones((5, 1, 2)))\n",
        "cell = nnx.LSTMCell(2, 3, rngs=nnx.Rngs(0))\n"
        "rnn = nnx.RNN(cell, time_major=True, return_carry=True)\n"
        "result = rnn(jnp.ones((5, 1, 2)))\n",
    ),
    "mha-positional": _E(
        "attention = nnx.MultiHeadAttention(2, 4, 8, 4, 4, decode=False, rngs=nnx.Rngs(0))\n"
        "result = attention(jnp.ones((1, 3, 4)))\n",
        "attention = nnx.MultiHeadAttention(\n"
        "    2, 4, qkv_features=8, out_features=4, in_kv_features=4, decode=False,\n"
        "    rngs=nnx.Rngs(0),\n"
        ")\n"
        "result = attention(jnp.ones((1, 3, 4)))\n",
        needs="0.10.7",
    ),
    "recurrent-layers-fork-rngs": _E(
        "cell = nnx.LSTMCell(2, 3, rngs=nnx.Rngs(0))\n"
        "carry = cell.initialize_carry((1, 2))\n"
        "rnn = nnx.RNN(cell, rngs=None)\n"
        "result = carry, rnn(jnp.ones((1, 5, 2)))\n",
        "cell = nnx.LSTMCell(2, 3, rngs=nnx.Rngs(0))\n"
        "carry = cell.initialize_carry((1, 2), nnx.Rngs(0))\n"
        "rnn = nnx.RNN(cell)\n"
        "result = carry, rnn(jnp.ones((1, 5, 2)))\n",
    ),
    "layer-init-attributes": _E(
        "init = nnx.Linear(2, 3, rngs=nnx.Rngs(0)).kernel_init\n",
        "init = nnx.initializers.lecun_normal()\n"
        "layer = nnx.Linear(2, 3, kernel_init=init, rngs=nnx.Rngs(0))\n",
    ),
    "sequential-empty": _E(
        "result = nnx.Sequential()(jnp.ones(2))\n",
        "result = nnx.Sequential()(jnp.ones(2))\n",
    ),
    "dropout-missing-stream": _E(
        "dropout = nnx.Dropout(0.5, rngs=nnx.Rngs(params=0))\n"
        "result = dropout(jnp.ones(4), rngs=nnx.Rngs(dropout=1))\n",
        "dropout = nnx.Dropout(0.5, rngs=None)\n"
        "result = dropout(jnp.ones(4), rngs=nnx.Rngs(dropout=1))\n",
        raises="a layer forks its stream when it is built: the error names the layer and the fix",
        raises_where="everywhere",
    ),
    # ------------------------------------------------------------------ transforms
    "vmap-splits-rngs": _E(
        "@functools.partial(nnx.vmap, axis_size=3)\n"
        "def create(rngs):\n"
        "    return nnx.Linear(2, 2, rngs=rngs)\n"
        "\n"
        "\n"
        "result = nnx.state(create(nnx.Rngs(0)))\n",
        "@nnx.split_rngs(splits=3)\n"
        "@functools.partial(nnx.vmap, axis_size=3)\n"
        "def create(rngs):\n"
        "    return nnx.Linear(2, 2, rngs=rngs)\n"
        "\n"
        "\n"
        "result = nnx.state(create(nnx.Rngs(0)))\n",
    ),
    "transforms-bound-methods": _E(
        "model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"
        "result = nnx.jit(model.__call__)(jnp.ones((1, 2)))\n",
        "model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"
        "result = nnx.jit(type(model).__call__)(model, jnp.ones((1, 2)))\n",
    ),
    "fori-loop-error-type": _E(
        "def body(i, carry):\n"
        "    pass\n"
        "\n"
        "\n"
        "try:\n"
        "    nnx.fori_loop(0, 2, body, jnp.zeros(()))\n"
        "except Exception as error:\n"
        "    result = type(error).__name__\n",
        "def body(i, carry):\n"
        "    return carry + 1\n"
        "\n"
        "\n"
        "result = nnx.fori_loop(0, 2, body, jnp.zeros(()))\n",
    ),
    "jit-abstracted-axes": _E(
        "double = nnx.jit(lambda x: 2 * x, abstracted_axes=None)\nresult = double(jnp.ones(3))\n",
        "double = nnx.jit(lambda x: 2 * x)\nresult = double(jnp.ones(3))\n",
        warns="changed",
    ),
    "pmap-global-arg-shapes": _E(
        "double = nnx.pmap(lambda x: 2 * x, global_arg_shapes=None)\n"
        "result = double(jnp.ones((1, 3)))\n",
        "double = nnx.pmap(lambda x: 2 * x)\nresult = double(jnp.ones((1, 3)))\n",
        warns="changed",
    ),
    "shard-map-check-rep": _E(
        "P = jax.sharding.PartitionSpec\n"
        "mesh = jax.sharding.Mesh(jax.devices()[:1], ('data',))\n"
        "double = nnx.shard_map(\n"
        "    lambda x: 2 * x, mesh=mesh, in_specs=P('data'), out_specs=P('data'), check_rep=False\n"
        ")\n"
        "result = double(jnp.ones(4))\n",
        "P = jax.sharding.PartitionSpec\n"
        "mesh = jax.sharding.Mesh(jax.devices()[:1], ('data',))\n"
        "double = nnx.shard_map(\n"
        "    lambda x: 2 * x, mesh=mesh, in_specs=P('data'), out_specs=P('data'), check_vma=False\n"
        ")\n"
        "result = double(jnp.ones(4))\n",
        warns="changed",
        needs="0.10.4",
    ),
}
