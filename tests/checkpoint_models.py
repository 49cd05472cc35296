"""The models of the checkpoint fixtures, buildable with ``flax.nnx`` or ``nnx_compat.nnx``.

``tests/make_checkpoints.py`` builds them with the installed ``flax.nnx`` to write the native
checkpoints under ``tests/fixtures/checkpoints/``; the restore tests build the same
architecture with ``nnx_compat.nnx`` to load them. Every function takes the namespace to use
as its first argument. The four models:

* ``seed``: the migration guide's ``Model(din, dmid, dout, rngs)`` (Linear, BatchNorm,
  Dropout(0.2), Linear), small sizes;
* ``scan``: the guide's scan-over-layers MLP (5 x Linear(3, 3)/BatchNorm/Dropout(0.5) and a
  ``node`` Param, built under ``split_rngs`` + ``vmap``), in the guide's 0.10 form
  (``split_rngs`` over ``scan`` in ``__call__``) or its 0.11 form;
* ``rnn``: ``RNN(LSTMCell(...))`` and a Linear head, written as it runs on every flax (the
  RNN's own RNG stream is the default one; flax 0.10's cell also holds the caller's Rngs);
* ``optimizer``: ``seed`` with SGD with momentum (SGD, not Adam: Adam scales the rounding
  noise of different XLA releases up to its learning rate), in the 0.10 form (the Optimizer
  holds the model; the checkpoint is ``nnx.state(optimizer)``: ``model/...``, ``opt_state``,
  ``step``) or the 0.11 form (``wrt=nnx.Param``; the checkpoint is
  ``{"model": nnx.state(model), "optimizer": nnx.state(optimizer)}``, the layout flax's own
  newer examples save).

The form defaults to the one the installed flax runs natively (:func:`native_form`, by
probing it); ``nnx_compat.nnx`` runs both forms on every flax.

The other three models train with plain SGD written out (no optimizer state), so that their
checkpoint is the model's state alone.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Final, Literal

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "LEARNING_RATE",
    "MODELS",
    "Built",
    "batch",
    "build",
    "flatten",
    "native_form",
    "rngs",
    "set_deterministic",
    "train_step",
]

Form = Literal["0.10", "0.11"]

MODELS: Final = ("seed", "scan", "rnn", "optimizer")
LEARNING_RATE: Final = 0.1
MOMENTUM: Final = 0.9
SCAN_LAYERS: Final = 5


def rngs(nnx: Any) -> Any:
    """The fixtures' seeds: ``nnx.Rngs(params=0, dropout=1)``."""
    return nnx.Rngs(params=0, dropout=1)


def native_form(name: str) -> Form:
    """The form of model ``name`` that the installed ``flax.nnx`` runs natively.

    Probes the installed flax, not its version: ``scan`` takes the 0.11 form where a Dropout
    holds its own forked stream rather than the caller's ``Rngs`` (flax 0.11.0), and
    ``optimizer`` where ``Optimizer.update`` takes the model (flax 0.11.0). ``seed`` and
    ``rnn`` are written the same way for every flax: ``"0.10"`` and ``"0.11"`` build the same.
    These are nnx_compat's ``LAYERS_FORK_RNGS`` and ``OPTIMIZER_UPDATE_TAKES_MODEL`` probes,
    repeated so that writing the fixtures never imports nnx_compat (``nnx_compat.nnx``
    patches flax's ``Variable`` when it is imported).
    """
    import flax.nnx as upstream

    if name == "scan":
        probe = upstream.Rngs(0)
        forks = getattr(upstream.Dropout(0.5, rngs=probe), "rngs", None) is not probe
        return "0.11" if forks else "0.10"
    if name == "optimizer":
        takes_model = "model" in inspect.signature(upstream.Optimizer.update).parameters
        return "0.11" if takes_model else "0.10"
    return "0.11"


def _seed_class(nnx: Any) -> type:
    class Model(nnx.Module):  # type: ignore[misc,name-defined]
        def __init__(self, din: int, dmid: int, dout: int, rngs: Any) -> None:
            self.linear = nnx.Linear(din, dmid, rngs=rngs)
            self.bn = nnx.BatchNorm(dmid, rngs=rngs)
            self.dropout = nnx.Dropout(0.2, rngs=rngs)
            self.linear_out = nnx.Linear(dmid, dout, rngs=rngs)

        def __call__(self, x: Any) -> Any:
            x = nnx.relu(self.dropout(self.bn(self.linear(x))))
            return self.linear_out(x)

    return Model


def _scan_class(nnx: Any, form: Form) -> type:
    def init(self: Any, rngs: Any) -> None:
        self.linear = nnx.Linear(3, 3, rngs=rngs)
        self.bn = nnx.BatchNorm(3, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.node = nnx.Param(jnp.ones((2,)))

    def call(self: Any, x: Any) -> Any:
        return nnx.gelu(self.dropout(self.bn(self.linear(x))))

    init = nnx.split_rngs(splits=SCAN_LAYERS)(nnx.vmap(in_axes=(0, 0))(init))
    call = nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)(call)
    if form == "0.10":  # the guide's 0.10 form splits the layers' streams again for scan
        call = nnx.split_rngs(splits=SCAN_LAYERS)(call)
    return type("MLP", (nnx.Module,), {"__init__": init, "__call__": call})


def _rnn_class(nnx: Any) -> type:
    class Recurrent(nnx.Module):  # type: ignore[misc,name-defined]
        def __init__(self, din: int, hidden: int, dout: int, rngs: Any) -> None:
            self.rnn = nnx.RNN(nnx.LSTMCell(din, hidden, rngs=rngs))
            self.head = nnx.Linear(hidden, dout, rngs=rngs)

        def __call__(self, x: Any) -> Any:
            return self.head(self.rnn(x))

    return Recurrent


@dataclasses.dataclass
class Built:
    """A fixture model, as built by :func:`build`.

    Attributes:
        name: One of :data:`MODELS`.
        form: ``"0.10"`` or ``"0.11"`` (see the module docstring).
        model: The module.
        optimizer: The ``nnx.Optimizer`` of the ``optimizer`` model, else None.
    """

    name: str
    form: Form
    model: Any
    optimizer: Any = None

    def checkpoint(self, nnx: Any) -> Any:
        """What a user of this form saves: the pytree handed to ``checkpointer.save``."""
        if self.optimizer is None:
            return nnx.state(self.model)
        if self.form == "0.10":
            return nnx.state(self.optimizer)
        return {"model": nnx.state(self.model), "optimizer": nnx.state(self.optimizer)}


def build(nnx: Any, name: str, rngs: Any, *, form: Form | None = None) -> Built:
    """Builds model ``name`` with the namespace ``nnx``.

    Args:
        nnx: ``flax.nnx`` or ``nnx_compat.nnx``.
        name: One of :data:`MODELS`.
        rngs: The ``nnx.Rngs`` to build it with (see :func:`rngs`).
        form: ``"0.10"`` or ``"0.11"``; default: :func:`native_form`.

    Raises:
        KeyError: for an unknown name.
    """
    import optax

    if name not in MODELS:
        raise KeyError(f"no fixture model {name!r}; the models are {', '.join(MODELS)}")
    form = native_form(name) if form is None else form
    if name == "scan":
        return Built(name, form, _scan_class(nnx, form)(rngs))
    if name == "rnn":
        return Built(name, form, _rnn_class(nnx)(2, 8, 3, rngs))
    model = _seed_class(nnx)(2, 16, 3, rngs)
    if name == "seed":
        return Built(name, form, model)
    tx = optax.sgd(LEARNING_RATE, momentum=MOMENTUM)
    if form == "0.10":
        optimizer = nnx.Optimizer(model, tx)
    else:
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    return Built(name, form, model, optimizer)


def batch(name: str) -> tuple[jax.Array, jax.Array]:
    """The fixed ``(x, y)`` batch that model ``name`` trains on."""
    shapes = {
        "seed": ((8, 2), (8, 3)),
        "optimizer": ((8, 2), (8, 3)),
        "scan": ((4, 3), (4, 3)),
        "rnn": ((4, 5, 2), (4, 5, 3)),
    }
    x_shape, y_shape = shapes[name]
    key_x, key_y = jax.random.split(jax.random.key(42))
    return (
        jax.random.normal(key_x, x_shape, jnp.float32),
        jax.random.normal(key_y, y_shape, jnp.float32),
    )


def train_step(nnx: Any, built: Built) -> Any:
    """A jitted training step ``step(x, y) -> loss`` that updates ``built`` in place.

    The ``optimizer`` model steps its Optimizer in its form; the others take one plain SGD
    step on their Params (learning rate :data:`LEARNING_RATE`). The loss is the mean squared
    error.
    """

    def loss_fn(model: Any, x: Any, y: Any) -> Any:
        return ((model(x) - y) ** 2).mean()

    if built.optimizer is None:

        def sgd(model: Any, x: Any, y: Any) -> Any:
            loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
            params = nnx.state(model, nnx.Param)
            nnx.update(model, jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, grads))
            return loss

        step = nnx.jit(sgd)
        return lambda x, y: step(built.model, x, y)

    def with_optimizer(model: Any, optimizer: Any, x: Any, y: Any) -> Any:
        loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
        if built.form == "0.10":
            optimizer.update(grads)
        else:
            optimizer.update(model, grads)
        return loss

    step = nnx.jit(with_optimizer)
    return lambda x, y: step(built.model, built.optimizer, x, y)


def set_deterministic(nnx: Any, built: Built) -> None:
    """Turns every Dropout off; BatchNorm stays in training mode."""
    for _, node in nnx.graph.iter_graph(built.model):
        if isinstance(node, nnx.Dropout):
            node.deterministic = True


def _key_name(entry: Any) -> str:
    for attribute in ("key", "name", "idx"):
        if hasattr(entry, attribute):
            return str(getattr(entry, attribute))
    return str(entry)


def flatten(tree: Any) -> dict[str, np.ndarray]:
    """``path -> numpy array`` for any pytree, paths joined with ``/``.

    A Variable's ``value`` stays in the path (``linear/kernel/value``), as orbax stores it;
    RNG keys become their ``uint32`` key data.
    """
    out: dict[str, np.ndarray] = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out["/".join(_key_name(entry) for entry in path)] = np.asarray(leaf)
    return out
