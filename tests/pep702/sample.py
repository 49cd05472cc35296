"""Legacy and new calls through ``from nnx_compat import nnx``, for the type checkers: each line
marked ``# legacy`` must get a deprecation diagnostic, no other line any."""

from typing import Any

import jax
import optax

from nnx_compat import nnx

model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
tx = optax.adam(1e-3)
grads: Any = None

optimizer = nnx.Optimizer(model, tx)  # legacy
optimizer = nnx.Optimizer(model, tx, nnx.Param)  # legacy
optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
optimizer.update(grads)  # legacy
optimizer.update(model, grads)

rngs = nnx.Rngs(0)
forked = rngs.fork(splits=4)  # legacy
forked = rngs.fork(split=4)  # legacy
forked = rngs.split(4)
forked = rngs.fork()

stream = nnx.RngStream("params", jax.random.key(0))  # legacy
stream = nnx.RngStream(jax.random.key(0), tag="params")

dropout = nnx.Dropout(0.5, (0,), rngs=rngs)  # legacy
dropout = nnx.Dropout(0.5, broadcast_dims=(0,), rngs=rngs)
cell = nnx.LSTMCell(2, 3, rngs=rngs)
rnn = nnx.RNN(cell, True)  # legacy
rnn = nnx.RNN(cell, time_major=True)

attention = nnx.MultiHeadAttention(2, 4, 8, 4, 4, rngs=rngs)  # legacy
attention = nnx.MultiHeadAttention(2, 4, 8, 4, in_kv_features=4, rngs=rngs)
attention = nnx.MultiHeadAttention(2, 4, qkv_features=8, rngs=rngs)

state = nnx.VariableState(nnx.Param, 1.0)  # legacy
variable = nnx.Param(1.0)
split = nnx.fork(nnx.state(rngs), ..., 4)  # legacy
constrained = nnx.with_sharding_constraint(jax.numpy.ones(2), None)  # legacy
