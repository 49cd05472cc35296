# What type checkers see of ``from nnx_compat import nnx``: the installed flax.nnx, with the
# legacy call forms that nnx_compat bridges declared as deprecated overloads (PEP 702), so that
# mypy (--enable-error-code deprecated) and pyright flag each legacy line and no new one. The
# messages are the pattern table's (tests/typing checks both checkers over legacy and new code).
from typing import Any as _Any
from typing import NamedTuple, overload

from flax import nnx as _nnx
from typing_extensions import deprecated

class Optimizer(_nnx.Optimizer[_Any]):
    @overload
    @deprecated(
        "nnx.Optimizer(model, tx) is deprecated since flax 0.11.0: use "
        "nnx.Optimizer(model, tx, wrt=nnx.Param) [nnx-compat: optimizer-wrt-default]"
    )
    def __init__(self, model: _Any, tx: _Any, /) -> None: ...
    @overload
    @deprecated(
        "nnx.Optimizer(model, tx, nnx.Param) is deprecated since flax 0.11.0: use "
        "nnx.Optimizer(model, tx, wrt=nnx.Param) [nnx-compat: optimizer-wrt-positional]"
    )
    def __init__(self, model: _Any, tx: _Any, wrt: _Any, /) -> None: ...
    @overload
    def __init__(
        self, model: _Any, tx: _Any, /, *, wrt: _Any, graph: bool | None = None
    ) -> None: ...
    @overload  # type: ignore[override]
    @deprecated(
        "optimizer.update(grads) is deprecated since flax 0.11.0: use "
        "optimizer.update(model, grads) [nnx-compat: optimizer-update-grads]"
    )
    def update(self, grads: _Any, /, **kwargs: _Any) -> _Any: ...
    @overload
    def update(self, model: _Any, grads: _Any, /, **kwargs: _Any) -> _Any: ...

class Rngs(_nnx.Rngs):
    @overload  # type: ignore[override]
    @deprecated(
        "rngs.fork(splits=n) is deprecated since flax 0.11.0: use rngs.split(n) "
        "(rngs.fork(split=n) before flax 0.12.6) [nnx-compat: rngs-fork-splits]"
    )
    def fork(self, *, splits: int | tuple[int, ...]) -> Rngs: ...
    @overload
    @deprecated(
        "rngs.fork(split=n) is deprecated since flax 0.12.6: use rngs.split(n) "
        "[nnx-compat: rngs-fork-split]"
    )
    def fork(self, *, split: int | tuple[int, ...]) -> Rngs: ...
    @overload
    def fork(self) -> Rngs: ...
    def split(self, k: _Any) -> Rngs: ...

class RngStream(_nnx.RngStream):
    @overload
    @deprecated(
        "nnx.RngStream(tag, key) is deprecated since flax 0.11.0: use "
        "nnx.RngStream(key, tag=tag) [nnx-compat: rngstream-positional-tag]"
    )
    def __init__(self, tag: str, key: _Any, /) -> None: ...
    @overload
    def __init__(self, key: _Any, *, tag: str) -> None: ...

class Dropout(_nnx.Dropout):
    @overload
    @deprecated(
        "nnx.Dropout(rate, broadcast_dims, ...) is deprecated since flax 0.11.0: use "
        "nnx.Dropout(rate, broadcast_dims=..., ...) [nnx-compat: dropout-positional]"
    )
    def __init__(
        self, rate: float, broadcast_dims: _Any, /, *args: _Any, **kwargs: _Any
    ) -> None: ...
    @overload
    def __init__(
        self,
        rate: float,
        *,
        broadcast_dims: _Any = ...,
        deterministic: bool = ...,
        rng_collection: str = ...,
        rngs: _Any = ...,
    ) -> None: ...

class RNN(_nnx.RNN):
    @overload
    @deprecated(
        "nnx.RNN(cell, time_major, return_carry, ...) is deprecated since flax 0.11.0: use "
        "nnx.RNN(cell, time_major=..., return_carry=..., ...) [nnx-compat: rnn-positional]"
    )
    def __init__(self, cell: _Any, time_major: bool, /, *args: _Any, **kwargs: _Any) -> None: ...
    @overload
    def __init__(self, cell: _Any, **kwargs: _Any) -> None: ...

class MultiHeadAttention(_nnx.MultiHeadAttention):
    @overload
    @deprecated(
        "nnx.MultiHeadAttention(num_heads, in_features, qkv_features, out_features, "
        "in_kv_features, ...) is deprecated since flax 0.12.6 (num_kv_heads was inserted "
        "before in_kv_features): pass the options by keyword [nnx-compat: mha-positional]"
    )
    def __init__(
        self,
        num_heads: int,
        in_features: int,
        qkv_features: int | None,
        out_features: int | None,
        in_kv_features: int | None,
        /,
        *args: _Any,
        **kwargs: _Any,
    ) -> None: ...
    @overload
    def __init__(
        self,
        num_heads: int,
        in_features: int,
        qkv_features: int | None = None,
        out_features: int | None = None,
        **kwargs: _Any,
    ) -> None: ...

@deprecated(
    "nnx.VariableState(nnx.Param, value) is deprecated since flax 0.11.0: use nnx.Param(value) "
    "[nnx-compat: variable-state]"
)
class VariableState(_nnx.Variable[_Any]):
    def __init__(self, type: _Any, value: _Any, **metadata: _Any) -> None: ...
    def to_variable(self) -> _nnx.Variable[_Any]: ...

@deprecated(
    "nnx.fork(state, split_filter, split_pattern) was removed in flax 0.11.0: use "
    "nnx.split_rngs(splits=n) or nnx.fork_rngs(split=n) around the transform "
    "[nnx-compat: nnx-fork]"
)
def fork(state: _Any, split_filter: _Any, split_pattern: _Any) -> ForkStates: ...

@deprecated("nnx.ForkStates was removed in flax 0.11.0 [nnx-compat: nnx-fork]")
class ForkStates(NamedTuple):
    split_keys: _Any
    split_counts: _Any
    broadcast_keys: _Any
    broadcast_counts: _Any

@deprecated(
    "nnx.with_sharding_constraint(x, spec, mesh) was removed in flax 0.11.0: use "
    "jax.lax.with_sharding_constraint(x, jax.sharding.NamedSharding(mesh, spec)) "
    "[nnx-compat: with-sharding-constraint]"
)
def with_sharding_constraint(x: _Any, axis_resources: _Any, mesh: _Any = None) -> _Any: ...
def fix_checkpoint(
    checkpoint: _Any, model_factory: _Any, *, rngs: _Any, tx: _Any = None, wrt: _Any = None
) -> _Any: ...

# everything else is flax's own (after the definitions above, which it does not replace)
from flax.nnx import *  # type: ignore[assignment]  # noqa: E402, F403
