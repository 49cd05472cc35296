"""The new API on the old flax: the names flax 0.10.1 - 0.12.8 added to ``flax.nnx``.

:data:`ADDED` lists every public name of flax 0.12.8's ``nnx`` that flax 0.10.0 lacks, with the
release that added it (read from the flax sources at each release tag; a test checks the list
against the API snapshots in ``tools/api``). On a flax without the name, ``nnx_compat.nnx``
either serves a backport with the 0.12 behaviour (:data:`BACKPORTS`, plus the shims of the
pattern table: ``ModelAndOptimizer``, ``data``, ``List``, ``Dict``, ``Pytree``, ``fork_rngs``),
or raises an ``AttributeError`` that names the release the name needs and, where there is one,
what to use instead (:data:`INSTEAD`). A backport is new behaviour: it never warns.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any, Final

from nnx_compat import _versions

__all__ = ["ADDED", "ALIASES", "BACKPORTS", "INSTEAD", "SUBMODULE_SINCE", "missing"]

#: Every name flax 0.10.1 - 0.12.8 added to ``flax.nnx`` that flax 0.12.8 still has, and the
#: first release with it (the 0.10 point releases' names too: users pin those as well).
ADDED: Final[Mapping[str, str]] = {
    "switch": "0.10.1",
    "while_loop": "0.10.1",
    "checkify": "0.10.2",
    "fori_loop": "0.10.2",
    "Perturbation": "0.10.3",
    "tabulate": "0.10.3",
    "traversals": "0.10.3",
    "variable_name_from_type": "0.10.3",
    "variable_type_from_name": "0.10.3",
    "cached_partial": "0.10.4",
    "filter_state": "0.10.4",
    "from_flat_state": "0.10.4",
    "map_state": "0.10.4",
    "merge_state": "0.10.4",
    "register_variable_name": "0.10.4",
    "replace_by_pure_dict": "0.10.4",
    "shard_map": "0.10.4",
    "split_state": "0.10.4",
    "to_flat_state": "0.10.4",
    "to_pure_dict": "0.10.4",
    "OptState": "0.10.7",
    "Data": "0.11.0",
    "ModelAndOptimizer": "0.11.0",
    "OptArray": "0.11.0",
    "OptVariable": "0.11.0",
    "data": "0.11.0",
    "fork_rngs": "0.11.0",
    "register_data_type": "0.11.0",
    "Pytree": "0.11.1",
    "object": "0.11.1",
    "pytreelib": "0.11.1",
    "find_duplicates": "0.11.2",
    "get_abstract_model": "0.11.2",
    "identity": "0.11.2",
    "logical_axis_rules": "0.11.2",
    "InstanceNorm": "0.12.0",
    "List": "0.12.0",
    "PReLU": "0.12.0",
    "check_pytree": "0.12.0",
    "flatten": "0.12.0",
    "is_data": "0.12.0",
    "unflatten": "0.12.0",
    "FlatState": "0.12.1",
    "SpectralNorm": "0.12.1",
    "WeightNorm": "0.12.1",
    "iter_children": "0.12.1",
    "iter_modules": "0.12.1",
    "recursive_map": "0.12.1",
    "restore_int_paths": "0.12.1",
    "set_metadata": "0.12.1",
    "use_eager_sharding": "0.12.1",
    "using_eager_sharding": "0.12.1",
    "var_defaults": "0.12.3",
    "vars_as": "0.12.3",
    "view": "0.12.4",
    "view_info": "0.12.4",
    "graph": "0.12.5",
    "graphlib": "0.12.5",
    "has_data": "0.12.5",
    "jit_partial": "0.12.5",
    "jvp": "0.12.5",
    "vjp": "0.12.5",
    "abstract_with_sharding": "0.12.6",
    "capture": "0.12.6",
    "compat": "0.12.6",
    "map": "0.12.6",
    "set_graph_mode": "0.12.6",
    "set_graph_updates": "0.12.6",
    "transform_metadata": "0.12.6",
    "with_attributes": "0.12.6",
    "as_abstract": "0.12.7",
    "deprecations": "0.12.7",
    "as_pure": "0.12.7",
    "iter_module_children": "0.12.7",
    "make_jaxpr": "0.12.7",
    "prefix": "0.12.7",
    "unpack": "0.12.7",
    "with_rngs": "0.12.7",
    "EMA": "0.12.8",
    "with_vars": "0.12.8",
}

#: Names an older flax already had elsewhere in ``flax.nnx``, served from there (the same
#: object the later release exports): name -> its dotted path under ``flax.nnx``.
ALIASES: Final[Mapping[str, str]] = {
    "OptState": "training.optimizer.OptState",
    "OptArray": "training.optimizer.OptArray",
    "OptVariable": "training.optimizer.OptVariable",
    "FlatState": "statelib.FlatState",
}

#: Shims of added names that wrap flax's own function: on a flax without it, the name's error.
WRAPS_NATIVE: Final = frozenset({"shard_map"})

#: Names that older flax releases already had as a submodule of ``flax.nnx`` (imported with
#: it), before exporting them: the first release that had the submodule.
SUBMODULE_SINCE: Final[Mapping[str, str]] = {
    "graph": "0.10.0",
    "object": "0.10.0",
    "traversals": "0.10.0",
}

#: What to use on a flax that lacks a name, where something does the same.
INSTEAD: Final[Mapping[str, str]] = {
    "switch": "jax.lax.switch over nnx.split(model)'s state",
    "while_loop": "jax.lax.while_loop over nnx.split(model)'s state",
    "fori_loop": "jax.lax.fori_loop over nnx.split(model)'s state",
    "to_flat_state": "state.flat_state()",
    "from_flat_state": "nnx.State.from_flat_path(flat)",
    "filter_state": "state.filter(*filters)",
    "split_state": "state.split(*filters)",
    "merge_state": "nnx.State.merge(state, *states)",
    "map_state": "state.map(lambda path, value: ...)",
    "to_pure_dict": "state.to_pure_dict()",
    "replace_by_pure_dict": "state.replace_by_pure_dict(pure_dict)",
    "shard_map": "jax.experimental.shard_map.shard_map over nnx.split(model)'s state",
    "graph": "nnx.graph (the submodule)",
    "prefix": "nnx.StateAxes({filter: axis, ...}) as the argument's axes in nnx.vmap/nnx.scan",
}

_GRAPH_MODE = (
    "graph= chooses between graph mode and flax 0.12.6's tree mode; the old flax has graph "
    "mode only (what graph=None does there): leave graph= out"
)
_PROMOTE = (
    "flax 0.12's __call__ promotes the inputs and parameters with the function stored here; "
    "the old layer's __call__ calls flax's promote_dtype itself, so another function needs "
    "the layer's computation rewritten (the default is what the old layer does)"
)
_ELEMENT_TYPE = (
    "flax 0.12's ConvTranspose passes it to jax.lax.conv_transpose, which the old layer's "
    "__call__ calls itself (no operation held by the layer to hand it to), so it needs the "
    "layer's computation rewritten"
)
_OUT_SHARDING = (
    "flax 0.12's Embed computes a sharded result with jax.sharding.auto_axes around jnp.take "
    "(jnp.dot(out_sharding=) in attend), which the old layer calls itself (no operation held "
    "by the layer to hand it to), so it needs the layer's computation rewritten: shard the "
    "result with jax.sharding.reshard instead"
)
_CARRY_INIT = (
    "the old cell's initialize_carry draws the carry with the initializer the cell was built "
    "with: pass carry_init= to the constructor (flax 0.12.8 still takes it there)"
)
_INTERNAL = "flax's internal bookkeeping of its own graph and trace contexts, not user API"
_PRIVATE = "a private parameter (array references: flax 0.12's Variable(..., ref=True))"
_STATE_ALIAS = (
    "VariableState is an alias of Variable since flax 0.11; on flax 0.10.7 it is flax 0.10's "
    "state leaf, whose meaning stands (pattern variable-state): use nnx.Variable, which has it"
)
_HOOKS = (
    "flax 0.12 renamed VariableMetadata's hook tuples (set_value_hooks, ...) to on_* and "
    "deprecates Variable hooks: subclass Variable and override get_value/set_value"
)
_LAYER_METADATA = (
    "BatchNorm.__init__(bias_metadata)", "BatchNorm.__init__(scale_metadata)",
    "Conv.__init__(bias_metadata)", "Conv.__init__(kernel_metadata)",
    "ConvTranspose.__init__(bias_metadata)", "ConvTranspose.__init__(kernel_metadata)",
    "Einsum.__init__(bias_metadata)", "Einsum.__init__(kernel_metadata)",
    "Embed.__init__(embedding_metadata)",
    "GRUCell.__init__(bias_metadata)", "GRUCell.__init__(kernel_metadata)",
    "GRUCell.__init__(recurrent_kernel_metadata)",
    "GroupNorm.__init__(bias_metadata)", "GroupNorm.__init__(scale_metadata)",
    "LSTMCell.__init__(bias_metadata)", "LSTMCell.__init__(kernel_metadata)",
    "LSTMCell.__init__(recurrent_kernel_metadata)",
    "LayerNorm.__init__(bias_metadata)", "LayerNorm.__init__(scale_metadata)",
    "Linear.__init__(bias_metadata)", "Linear.__init__(kernel_metadata)",
    "LinearGeneral.__init__(bias_metadata)", "LinearGeneral.__init__(kernel_metadata)",
    "LoRA.__init__(a_metadata)", "LoRA.__init__(b_metadata)",
    "LoRALinear.__init__(a_metadata)", "LoRALinear.__init__(b_metadata)",
    "MultiHeadAttention.__init__(bias_metadata)", "MultiHeadAttention.__init__(kernel_metadata)",
    "MultiHeadAttention.__init__(key_ln_scale_metadata)",
    "MultiHeadAttention.__init__(out_bias_metadata)",
    "MultiHeadAttention.__init__(out_kernel_metadata)",
    "MultiHeadAttention.__init__(query_ln_scale_metadata)",
    "OptimizedLSTMCell.__init__(bias_metadata)", "OptimizedLSTMCell.__init__(kernel_metadata)",
    "OptimizedLSTMCell.__init__(recurrent_kernel_metadata)",
    "RMSNorm.__init__(scale_metadata)",
    "SimpleCell.__init__(bias_metadata)", "SimpleCell.__init__(kernel_metadata)",
    "SimpleCell.__init__(recurrent_kernel_metadata)",
)  # fmt: skip
_RNG_METHODS = (
    "ball", "bernoulli", "beta", "binomial", "bits", "broadcast", "categorical", "cauchy",
    "chisquare", "choice", "delta_orthogonal", "dirichlet", "double_sided_maxwell",
    "exponential", "f", "gamma", "generalized_normal", "geometric", "glorot_normal",
    "glorot_uniform", "gumbel", "he_normal", "he_uniform", "kaiming_normal", "kaiming_uniform",
    "laplace", "lecun_normal", "lecun_uniform", "loggamma", "logistic", "lognormal", "maxwell",
    "multinomial", "multivariate_normal", "normal", "orthogonal", "pareto", "permutation",
    "poisson", "rademacher", "randint", "rayleigh", "split", "t", "triangular",
    "truncated_normal", "uniform", "variance_scaling", "wald", "weibull_min", "xavier_normal",
    "xavier_uniform",
)  # fmt: skip

_SERVED = (
    "BatchNorm.set_view", "Dropout.set_view", "MultiHeadAttention.set_view", "Dict.clear",
    "Dict.pop", "Dict.popitem", "Dict.setdefault", "Dict.update", "DiffState.map_prefix",
    "PathContains.__init__(exact)", "StateAxes.get", "StateAxes.keys", "StateAxes.values",
    "GRUCell.__init__(keep_rngs)", "LSTMCell.__init__(keep_rngs)",
    "OptimizedLSTMCell.__init__(keep_rngs)", "SimpleCell.__init__(keep_rngs)",
    "Optimizer.update(model)", "Variable.copy(value)", "Variable.del_metadata",
    "Variable.get_metadata(default)", "Variable.get_metadata(exclude_required)",
    "Variable.get_metadata(name)", "Variable.get_raw_value", "Variable.get_value",
    "Variable.has_metadata", "Variable.hijax", "Variable.raw_value", "Variable.ref",
    "Variable.set_metadata", "Variable.set_raw_value", "Variable.set_value", "Variable.shape",
    "Variable.sharding_names", "Variable.type", "Variable.var_type",
)  # fmt: skip
_PROMOTES = (
    "BatchNorm.__init__(promote_dtype)", "GRUCell.__init__(promote_dtype)",
    "GroupNorm.__init__(promote_dtype)", "LSTMCell.__init__(promote_dtype)",
    "LayerNorm.__init__(promote_dtype)", "LoRA.__init__(promote_dtype)",
    "LoRALinear.__init__(lora_promote_dtype)", "MultiHeadAttention.__init__(ln_promote_dtype)",
    "MultiHeadAttention.__init__(out_promote_dtype)",
    "MultiHeadAttention.__init__(qkv_promote_dtype)",
    "OptimizedLSTMCell.__init__(promote_dtype)", "RMSNorm.__init__(promote_dtype)",
    "SimpleCell.__init__(promote_dtype)",
)  # fmt: skip
#: flax 0.12's layers pass them to the operation they hold (nnx_compat._backports.members
#: .LAYER_OPS): served by handing them to it while the old __call__ runs
_LAYER_CALLS = (
    "Conv.__init__(preferred_element_type)", "Einsum.__init__(preferred_element_type)",
    "Linear.__init__(preferred_element_type)", "LinearGeneral.__init__(preferred_element_type)",
    "Conv.__call__(out_sharding)", "Einsum.__call__(out_sharding)",
    "Linear.__call__(out_sharding)", "LinearGeneral.__call__(out_sharding)",
    "LoRALinear.__call__(out_sharding)", "MultiHeadAttention.__call__(out_sharding)",
    "MultiHeadAttention.__call__(qkv_sharding)",
)  # fmt: skip
_ELEMENT_TYPES = ("ConvTranspose.__init__(preferred_element_type)",)
_OUT_SHARDINGS = ("Embed.__call__(out_sharding)", "Embed.attend(out_sharding)")
_CARRY_INITS = (
    "GRUCell.initialize_carry(carry_init)", "LSTMCell.initialize_carry(carry_init)",
    "OptimizedLSTMCell.initialize_carry(carry_init)", "RNNCellBase.initialize_carry(carry_init)",
    "SimpleCell.initialize_carry(carry_init)",
)  # fmt: skip
_INTERNALS = (
    "GraphDef.with_matching_outer_index", "graph.ArrayRefDef.with_matching_outer_index",
    "graph.NodeDef.with_matching_outer_index", "graph.VariableDef.with_matching_outer_index",
    "graph.GraphContext.__init__(graph_mode_stack)",
    "graph.GraphContext.__init__(graph_updates_stack)",
    "graph.PytreeNodeImpl.__init__(pop_key)", "graph.PytreeNodeImpl.__init__(set_key)",
    "graph.VariableDef.__init__(array_refdef)",
    "variablelib.VariableContext.__init__(eager_shard_stack)",
    "variablelib.VariableContext.__init__(variable_hijax_stack)",
    "variablelib.VariableContext.__init__(variable_ref_stack)",
)  # fmt: skip
_PRIVATES = (
    "Variable.copy(_copy_ref)", "Variable.replace(_copy_ref)", "Variable.to_state(_copy_ref)",
)  # fmt: skip
_STATE_ALIASES = tuple(
    f"variablelib.VariableState.{m}"
    for m in ("__call__", "copy_from", "create_value", "from_metadata", "to_state",
              "update_from_state", "value")
)  # fmt: skip
_HOOK_ARGUMENTS = tuple(
    f"VariableMetadata.__init__(on_{h})"
    for h in ("add_axis", "create_value", "get_value", "remove_axis", "set_value")
)

#: Every member (method, property, constructor or method parameter) that flax 0.12.8 added to a
#: public class of ``flax.nnx`` flax 0.10.7 or 0.11.2 already has (``tools/api``'s snapshots;
#: an inherited member is listed once, under the class that defines it): ``"Class.member"``, or
#: ``"Class.method(parameter)"`` -> ``"served"`` (through ``nnx_compat.nnx`` it works with flax
#: 0.12.8's behaviour on both: ``nnx_compat._backports.members``, the Variable, Rngs and
#: Optimizer shims, or natively) or the reason it is not.
MEMBERS: Final[Mapping[str, str]] = {
    **dict.fromkeys(_LAYER_METADATA, "served"),
    **dict.fromkeys((f"Rngs.{m}" for m in _RNG_METHODS), "served"),
    **dict.fromkeys((f"RngStream.{m}" for m in _RNG_METHODS), "served"),
    **dict.fromkeys(_SERVED, "served"),
    **dict.fromkeys(_LAYER_CALLS, "served"),
    # flax 0.12's eager sharding, asked for: nnx_compat._sharding.shard_when_created
    "Variable.__init__(eager_sharding)": "served",
    **dict.fromkeys(_PROMOTES, _PROMOTE),
    **dict.fromkeys(_ELEMENT_TYPES, _ELEMENT_TYPE),
    **dict.fromkeys(_OUT_SHARDINGS, _OUT_SHARDING),
    **dict.fromkeys(_CARRY_INITS, _CARRY_INIT),
    **dict.fromkeys(_INTERNALS, _INTERNAL),
    **dict.fromkeys(_PRIVATES, _PRIVATE),
    **dict.fromkeys(_STATE_ALIASES, _STATE_ALIAS),
    **dict.fromkeys(_HOOK_ARGUMENTS, _HOOKS),
    "GraphDef.apply(graph)": _GRAPH_MODE,
    "Module.set_attributes(graph)": _GRAPH_MODE,
    "Optimizer.__init__(graph)": _GRAPH_MODE + " (nnx.Optimizer takes graph=None/True, and "
    "graph=False raises naming the release that has it)",
    "MultiHeadAttention.__call__(is_causal)": (
        "flax 0.12's __call__ builds the causal mask itself; the old __call__ has no such "
        "argument: pass mask=nnx.make_causal_mask(x) (the same mask for self-attention)"
    ),
    "MultiHeadAttention.__init__(num_kv_heads)": (
        "grouped-query attention (fewer key/value heads than query heads) changes the key and "
        "value projections and the attention computation: it needs the layer rewritten"
    ),
    "Variable.__init__(hijax)": (
        "hijax Variables are jax's hijax types, which flax 0.12 builds on; a Variable of the "
        "old flax is never hijax (hijax=False is what it is, and is kept as metadata)"
    ),
    "Variable.__init__(ref)": (
        "array-reference Variables (jax.new_ref) are flax 0.12's; flax 0.11's use_ref= and "
        "flax 0.10's mutable= are experimental forerunners with their own semantics"
    ),
    "Variable.to_state(value)": (
        "to_state is flax 0.12's deprecated alias of copy (on flax 0.10.7 it builds flax "
        "0.10's VariableState, whose meaning stands): use variable.copy(value), served"
    ),
}


# --------------------------------------------------------------------------- backports


def iter_modules(module: Any, /, *, graph: bool | None = None) -> Iterator[tuple[Any, Any]]:
    """flax 0.12.1's ``nnx.iter_modules(module)``: ``(path, module)`` of every nested Module,
    the argument last (``module.iter_modules()`` before). Graph mode only (``graph=False``
    needs flax 0.12.6)."""
    _graph_mode_only("iter_modules", graph)
    yield from module.iter_modules()


def iter_children(node: Any, /, *, graph: bool | None = None) -> Iterator[tuple[Any, Any]]:
    """flax 0.12.5's ``nnx.iter_children(node)``: ``(key, child)`` of the node's immediate
    children that are graph nodes or Variables, by key (``Module.iter_children()`` before
    yielded Modules only, and so does flax 0.12.1-0.12.4's own ``nnx.iter_children``, which
    stands on those releases)."""
    _graph_mode_only("iter_children", graph)
    nnx = _versions.import_nnx()
    impl = nnx.graph.get_node_impl(node)
    if impl is None:
        raise ValueError(f"Expected a graph node, got {type(node).__name__}.")
    for key, value in impl.node_dict(node).items():
        if isinstance(key, str) and key.startswith("_"):
            continue
        if nnx.graph.is_graph_node(value) or isinstance(value, _versions.variable_leaf_types()):
            yield key, value


def is_data(value: Any, /) -> bool:
    """flax 0.12.0's ``nnx.is_data``: arrays, Variables, graph nodes (Modules, Rngs, ...) and
    registered data types are data; strings, numbers and containers are not."""
    import jax
    import numpy as np

    nnx = _versions.import_nnx()
    from nnx_compat._backports.module import data_registry  # nnx.register_data_type's

    registry = data_registry()
    return bool(
        isinstance(value, jax.Array | np.ndarray)  # flax 0.10.0's is_node_leaf: Variables only
        or nnx.graph.is_node_leaf(value)
        or nnx.graph.is_graph_node(value)
        or type(value) in registry
    )


def has_data(value: Any, /) -> list[Any]:
    """flax 0.12.5's ``nnx.has_data``: the data leaves of a pytree (each shared one once)."""
    import jax

    visited: set[int] = set()

    def is_leaf(x: Any) -> bool:
        if id(x) in visited:
            return True
        visited.add(id(x))
        return is_data(x)

    return [leaf for leaf in jax.tree.leaves(value, is_leaf=is_leaf) if is_data(leaf)]


_eager: contextvars.ContextVar[bool] = contextvars.ContextVar("nnx_compat_eager", default=False)

#: flax 0.12.0's switch for eager sharding (on by default there; 0.12.1 added the API).
_EAGER_FLAG: Final = "flax_always_shard_variable"


def _eager_flag() -> bool | None:
    """flax 0.12.0's eager-sharding config flag, or None on a flax without one."""
    import flax

    value = getattr(flax.config, _EAGER_FLAG, None)
    return None if value is None else bool(value)


class use_eager_sharding:
    """flax 0.12.1's ``nnx.use_eager_sharding(value)`` on an older flax, as a setting or a
    ``with`` block. flax 0.12.0 shards eagerly under its config flag: this sets the flag (and a
    ``with`` block puts it back). Before 0.12.0 the setting is nnx_compat's: with it on, a
    Variable with a sharding annotation is sharded when it is created, as flax 0.12 does
    (``nnx_compat._sharding.shard_when_created``); off, which is what that flax does and stays
    its default, it is not."""

    def __init__(self, value: bool) -> None:
        self._previous = _eager_flag()
        if self._previous is not None:
            import flax

            flax.config.update(_EAGER_FLAG, bool(value))
        self._token = _eager.set(bool(value))

    def __enter__(self) -> use_eager_sharding:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            import flax

            flax.config.update(_EAGER_FLAG, self._previous)
        with contextlib.suppress(ValueError):
            _eager.reset(self._token)


def using_eager_sharding() -> bool:
    """flax 0.12.1's ``nnx.using_eager_sharding()``: flax 0.12.0's config flag, and before 0.12
    the setting of :class:`use_eager_sharding` (off unless set)."""
    flag = _eager_flag()
    return _eager.get() if flag is None else flag


def _graph_mode_only(name: str, graph: bool | None) -> None:
    if graph not in (None, True):
        raise TypeError(
            f"nnx.{name}(..., graph={graph!r}) needs flax 0.12.6 or newer (tree mode); flax "
            f"{_versions.installed_version('flax')} has graph mode only: drop graph="
        )


# --------------------------------------------------------------------------- RNG methods

#: flax 0.12's sampling methods of ``Rngs`` and ``RngStream`` (``rngs.normal(shape)``,
#: ``rngs.params.uniform(shape)``): ``jax.random.<name>(stream(), ...)`` (flax 0.11.0).
RANDOM_METHODS: Final = (
    "bits", "uniform", "randint", "permutation", "choice", "normal", "multivariate_normal",
    "truncated_normal", "bernoulli", "beta", "cauchy", "dirichlet", "exponential", "gamma",
    "loggamma", "poisson", "gumbel", "categorical", "laplace", "logistic", "pareto", "t",
    "chisquare", "f", "rademacher", "maxwell", "double_sided_maxwell", "weibull_min",
    "orthogonal", "generalized_normal", "ball", "rayleigh", "wald", "geometric", "triangular",
    "lognormal", "binomial", "multinomial",
)  # fmt: skip
#: flax 0.12's keyless initializers (``rngs.lecun_normal()(shape)``).
INITIALIZER_METHODS: Final = (
    "delta_orthogonal", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform",
    "kaiming_normal", "kaiming_uniform", "lecun_normal", "lecun_uniform", "variance_scaling",
    "xavier_normal", "xavier_uniform",
)  # fmt: skip


def _random_method(name: str, sample: Any) -> Any:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return sample(self(), *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"``jax.random.{name}`` with the next key of this stream (flax 0.12)."
    return method


def _initializer_method(name: str, constructor: Any) -> Any:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        init = constructor(*args, **kwargs)

        def keyless(*init_args: Any, **init_kwargs: Any) -> Any:
            return init(self(), *init_args, **init_kwargs)

        return keyless

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"``initializers.{name}(...)`` taking its key from this stream (flax 0.12)."
    return method


def _stream_split(self: Any, k: int | tuple[int, ...]) -> Any:
    """flax 0.12.6's ``RngStream.split(k)``: a new stream of ``k`` keys split from the next key."""
    import jax

    from nnx_compat import _rngs

    return _rngs.new_stream(jax.random.split(self(), k), _rngs.stream_tag(self))


def _stream_broadcast(self: Any, k: int | tuple[int, ...]) -> Any:
    """flax 0.12.6's ``RngStream.broadcast(k)``: a new stream of the next key repeated to
    shape ``k``."""
    import jax.numpy as jnp

    from nnx_compat import _rngs

    key = self()
    shape = (k,) if isinstance(k, int) else tuple(k)
    return _rngs.new_stream(jnp.broadcast_to(key, shape + key.shape), _rngs.stream_tag(self))


def _rngs_broadcast(self: Any, k: Any) -> Any:
    """flax 0.12.6's ``Rngs.broadcast(k)``: a new ``Rngs`` whose selected streams hold the next
    key broadcast to ``k`` (an int, a shape, None, or a mapping of filters to those)."""
    nnx = _versions.import_nnx()
    spec = k if isinstance(k, Mapping) else {...: k}
    from nnx_compat import _rngs

    predicates = {_rngs.stream_predicate(f): v for f, v in spec.items()}
    streams: dict[str, Any] = {}
    for name in self:
        stream = getattr(self, name)
        for predicate, shape in predicates.items():
            if predicate((), stream):
                streams[name] = stream if shape is None else stream.broadcast(shape)
                break
        else:
            streams[name] = stream
    # as flax 0.12's Rngs(**streams) does: each stream starts afresh from its key
    return nnx.Rngs(**{name: stream.key[...] for name, stream in streams.items()})


_patched: list[tuple[type, str]] = []


def patch() -> None:
    """Gives flax's ``Rngs`` and ``RngStream`` the methods of flax 0.12 they lack (flax 0.10:
    the sampling and initializer methods; before 0.12.6: ``split`` and ``broadcast`` of a
    stream, ``broadcast`` of an ``Rngs``). A stream whose name is a method's stays the stream:
    an ``Rngs`` keeps its streams in the instance, which comes first."""
    if _patched:
        return
    import jax

    nnx = _versions.import_nnx()
    methods: dict[str, Any] = {}
    for name in RANDOM_METHODS:
        if hasattr(jax.random, name):
            methods[name] = _random_method(name, getattr(jax.random, name))
    for name in INITIALIZER_METHODS:
        if hasattr(nnx.initializers, name):
            methods[name] = _initializer_method(name, getattr(nnx.initializers, name))
    for cls in (nnx.Rngs, nnx.RngStream):
        for name, method in methods.items():
            if not hasattr(cls, name):
                setattr(cls, name, method)
                _patched.append((cls, name))
    for cls, name, method in (
        (nnx.RngStream, "split", _stream_split),
        (nnx.RngStream, "broadcast", _stream_broadcast),
        (nnx.Rngs, "broadcast", _rngs_broadcast),
    ):
        if name not in vars(cls):
            setattr(cls, name, method)
            _patched.append((cls, name))


def restore() -> None:
    """Removes what :func:`patch` added."""
    while _patched:
        cls, name = _patched.pop()
        delattr(cls, name)


_B = "nnx_compat._backports."
#: The backports of each family of ``nnx_compat._backports``: name -> ``module:attribute``.
_LAYERS: Final[Mapping[str, str]] = {
    name: f"{_B}layers:{name}"
    for name in ("EMA", "InstanceNorm", "PReLU", "SpectralNorm", "WeightNorm", "identity")
}
_GRAPH: Final[Mapping[str, str]] = {
    name: f"{_B}graph:{name}"
    for name in (
        "find_duplicates", "recursive_map", "set_metadata", "flatten", "unflatten",
        "restore_int_paths", "map", "vars_as", "with_vars", "unpack", "as_pure", "graphlib",
    )
}  # fmt: skip
_TRANSFORMS: Final[Mapping[str, str]] = {
    "abstract_with_sharding": _B + "transforms:abstract_with_sharding",
    "as_abstract": _B + "transforms:as_abstract",
    "capture": _B + "transforms:capture",
    "get_abstract_model": _B + "transforms:get_abstract_model",
    "jit_partial": _B + "transforms:jit_partial",
    "jvp": _B + "transforms:jvp",
    "logical_axis_rules": _B + "transforms:logical_axis_rules",
    "make_jaxpr": _B + "transforms:make_jaxpr",
    "transform_metadata": _B + "transforms:transform_metadata",
    "vjp": _B + "transforms:vjp",
    "with_rngs": _B + "transforms:with_rngs",
}
_MODULE: Final[Mapping[str, str]] = {
    "Data": _B + "module:Data",
    "Static": _B + "module:Static",
    "check_pytree": _B + "module:check_pytree",
    "compat": _B + "module:compat",
    "dataclass": _B + "module:dataclass",
    "deprecations": _B + "module:deprecations",
    "iter_module_children": _B + "module:iter_module_children",
    "pytreelib": _B + "module:pytreelib",
    "register_data_type": _B + "module:register_data_type",
    "set_graph_mode": _B + "module:set_graph_mode",
    "set_graph_updates": _B + "module:set_graph_updates",
    "static": _B + "module:static",
    "var_defaults": _B + "module:var_defaults",
    "view": _B + "module:view",
    "view_info": _B + "module:view_info",
    "with_attributes": _B + "module:with_attributes",
}

#: Names served where the installed flax lacks them, with flax 0.12's behaviour: name ->
#: ``module:attribute`` of the backport (loaded when ``nnx_compat.nnx`` is built).
BACKPORTS: Final[Mapping[str, str]] = {
    "iter_modules": "nnx_compat._added:iter_modules",
    "iter_children": "nnx_compat._added:iter_children",
    "is_data": "nnx_compat._added:is_data",
    "has_data": "nnx_compat._added:has_data",
    "use_eager_sharding": "nnx_compat._added:use_eager_sharding",
    "using_eager_sharding": "nnx_compat._added:using_eager_sharding",
    **_LAYERS,
    **_GRAPH,
    **_TRANSFORMS,
    **_MODULE,
}


#: Names the installed flax may have in fewer forms than flax 0.12.8: name -> (the probe of
#: the form, ``module:attribute`` of what serves the name where the probe fails, calling flax's
#: own for the forms it has, whose meaning stands).
EXTENDED: Final[Mapping[str, tuple[str, str]]] = {
    # flax 0.10's static is a dataclass field (keywords only); flax 0.12's takes a value
    "static": ("STATIC_TAKES_VALUE", _B + "module:static_or_field"),
}


def extended(name: str) -> Any:
    """What serves ``name`` where the installed flax has it in fewer forms (:data:`EXTENDED`),
    or None where flax's own has every form."""
    import importlib

    probe, target = EXTENDED[name]
    if _versions.feature(probe) or name not in vars(_versions.import_nnx()):
        return None
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def backport(name: str) -> Any:
    """The backport of ``name`` (:data:`BACKPORTS`)."""
    import importlib

    module, _, attribute = BACKPORTS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def alias(name: str) -> Any:
    """The object an older flax has for ``name`` (:data:`ALIASES`)."""
    value: Any = _versions.import_nnx()
    for part in ALIASES[name].split("."):
        value = getattr(value, part)
    return value


def missing(name: str) -> AttributeError:
    """The error for a name of flax 0.11/0.12 that the installed flax lacks and nnx_compat
    does not serve."""
    release = ADDED[name]
    installed = _versions.installed_version("flax")
    instead = f"; on flax {installed} use {INSTEAD[name]}" if name in INSTEAD else ""
    return AttributeError(
        f"nnx.{name} needs flax {release} or newer (flax {installed} is installed){instead}. "
        f"Upgrade flax (pip install 'flax>={release}') for it."
    )
