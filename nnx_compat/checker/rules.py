"""The static matchers, one per pattern id of the table (``RULES``).

Each matcher looks at one kind of node and answers whether it is the record's legacy form.
Precision comes first: a matcher fires only on forms that cannot be the new API (a keyword the
new API does not have, an ``nnx`` name that no longer exists) or on a receiver whose type the
module states (``facts``); a pattern whose legacy form needs types the source does not give is
detectable only at run time, and its record says why (``Pattern.static``).
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable
from typing import Final

from nnx_compat.checker.facts import VARIABLE_TYPES, Facts, Scope, is_module_type
from nnx_compat.checker.names import Names
from nnx_compat.checker.targets import target_at_least

__all__ = ["MUTABLE_ARRAY_FLAG", "RULES", "Context", "Rule", "decorated", "merged_states"]


@dataclasses.dataclass(frozen=True)
class Context:
    """What a matcher may read besides its node."""

    names: Names
    facts: Facts
    scope: Scope
    parents: list[ast.AST]
    target: str = "0.12"

    def resolve(self, node: ast.AST) -> str | None:
        return self.names.resolve(node)

    def type_of(self, node: ast.AST) -> str | None:
        return self.facts.type_of(node, self.scope)


Matcher = Callable[[ast.AST, Context], bool]


@dataclasses.dataclass(frozen=True)
class Rule:
    pattern: str
    nodes: tuple[type[ast.AST], ...]
    match: Matcher


RULES: dict[str, Rule] = {}


def rule(pattern: str, *nodes: type[ast.AST]) -> Callable[[Matcher], Matcher]:
    def register(match: Matcher) -> Matcher:
        if pattern in RULES:
            raise ValueError(f"two matchers for {pattern}")
        RULES[pattern] = Rule(pattern, nodes, match)
        return match

    return register


def _call_to(node: ast.AST, ctx: Context, *names: str) -> bool:
    return isinstance(node, ast.Call) and ctx.resolve(node.func) in names


def _keywords(node: ast.Call) -> set[str]:
    return {k.arg for k in node.keywords if k.arg is not None}


def _has_star(node: ast.Call) -> bool:
    return any(isinstance(a, ast.Starred) for a in node.args) or any(
        k.arg is None for k in node.keywords
    )


def _method_call(node: ast.AST, method: str) -> ast.Call | None:
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == method
    ):
        return node
    return None


def _enclosing_function(ctx: Context) -> ast.AST | None:
    for parent in reversed(ctx.parents):
        if isinstance(parent, ast.FunctionDef | ast.AsyncFunctionDef):
            return parent
    return None


# ---------------------------------------------------------------- optimizer

_OPTIMIZER: Final = ("nnx.Optimizer", "nnx.optimizer.Optimizer", "nnx.training.optimizer.Optimizer")


@rule("optimizer-wrt-default", ast.Call)
def _optimizer_wrt_default(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    return (
        _call_to(node, ctx, *_OPTIMIZER)
        and not _has_star(node)
        and len(node.args) < 3
        and "wrt" not in _keywords(node)
    )


@rule("optimizer-wrt-positional", ast.Call)
def _optimizer_wrt_positional(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    return _call_to(node, ctx, *_OPTIMIZER) and len(node.args) >= 3


@rule("optimizer-update-grads", ast.Call)
def _optimizer_update_grads(node: ast.AST, ctx: Context) -> bool:
    call = _method_call(node, "update")
    if call is None or _has_star(call):
        return False
    assert isinstance(call.func, ast.Attribute)
    if ctx.type_of(call.func.value) not in _OPTIMIZER:
        return False
    positional = len(call.args) + len(_keywords(call) & {"grads", "model"})
    return positional == 1 or _keywords(call) == {"grads"}


@rule("optimizer-model-attribute", ast.Attribute)
def _optimizer_model(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Attribute)
    return node.attr == "model" and ctx.type_of(node.value) in _OPTIMIZER


# ---------------------------------------------------------------- rngs


def _decorator_name(decorator: ast.AST, ctx: Context) -> str | None:
    return ctx.resolve(decorator.func if isinstance(decorator, ast.Call) else decorator)


def decorated(node: ast.AST, ctx: Context) -> ast.FunctionDef | None:
    """The function that ``node`` decorates, if it is a decorator."""
    function = ctx.parents[-1] if ctx.parents else None
    if isinstance(function, ast.FunctionDef) and any(d is node for d in function.decorator_list):
        return function
    return None


@rule("split-rngs-over-scan", ast.Call)
def _split_rngs_over_scan(node: ast.AST, ctx: Context) -> bool:
    # found at the split_rngs decorator, the line the run-time warning names
    function = decorated(node, ctx)
    if function is None or _decorator_name(node, ctx) != "nnx.split_rngs":
        return False
    kinds = [_decorator_name(d, ctx) for d in function.decorator_list]
    index = next(i for i, d in enumerate(function.decorator_list) if d is node)
    if kinds[index + 1 : index + 2] != ["nnx.scan"]:
        return False
    outer = next((p for p in reversed(ctx.parents[:-1]) if isinstance(p, ast.FunctionDef)), None)
    # splitting over a scan that builds the layers is the 0.11 form too; over the scan that
    # applies them in __call__ (the layers hold split streams already) it is 0.10's
    return function.name == "__call__" or (outer is not None and outer.name == "__call__")


@rule("rngs-fork-splits", ast.Call)
def _fork_splits(node: ast.AST, ctx: Context) -> bool:
    call = _method_call(node, "fork")
    return call is not None and "splits" in _keywords(call)


@rule("rngs-fork-split", ast.Call)
def _fork_split(node: ast.AST, ctx: Context) -> bool:
    call = _method_call(node, "fork")
    return call is not None and "split" in _keywords(call)


@rule("nnx-fork", ast.Attribute, ast.Name)
def _nnx_fork(node: ast.AST, ctx: Context) -> bool:
    return ctx.resolve(node) in ("nnx.fork", "nnx.ForkStates", "nnx.rnglib.fork")


@rule("reseed-shared-rngs", ast.Call)
def _reseed_rngs(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    return (
        _call_to(node, ctx, "nnx.reseed")
        and bool(node.args)
        and ctx.type_of(node.args[0]) == "nnx.Rngs"
    )


@rule("rngstream-positional-tag", ast.Call)
def _rngstream_tag(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    return (
        _call_to(node, ctx, "nnx.RngStream")
        and len(node.args) >= 2
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


@rule("bridge-to-nnx-rngs", ast.Call)
def _to_nnx_rngs(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    return _call_to(node, ctx, "nnx.bridge.ToNNX") and "rngs" in _keywords(node)


# ---------------------------------------------------------------- checkpoint / state


@rule("merge-shares-variables", ast.Call)
def _merge_of_split(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    return (
        _call_to(node, ctx, "nnx.merge")
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Starred)
        and _call_to(node.args[0].value, ctx, "nnx.split")
        and "copy" not in _keywords(node)
    )


def _traced_function(ctx: Context) -> ast.AST | None:
    """The function around the node if a jax transform traces it (``Facts.traced``)."""
    for parent in reversed(ctx.parents):
        if isinstance(parent, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return parent if id(parent) in ctx.facts.traced else None
    return None


def _root_name(node: ast.AST) -> str | None:
    """``state`` for ``state``, ``state.counts``, ``states[0]`` or ``*state``."""
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Starred):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def merged_states(node: ast.AST, ctx: Context) -> list[ast.AST] | None:
    """The states of ``nnx.merge(graphdef, *states)`` (without ``copy=``) or of
    ``graphdef.apply(*states)`` on a GraphDef that ``nnx.split`` made; None for another call."""
    if not isinstance(node, ast.Call):
        return None
    if _call_to(node, ctx, "nnx.merge", "nnx.graph.merge"):
        if "copy" in _keywords(node) or any(k.arg is None for k in node.keywords):
            return None
        starred: list[ast.AST] = [a for a in node.args if isinstance(a, ast.Starred)]
        return list(node.args[1:]) or starred
    call = _method_call(node, "apply")
    if call is not None and call.args and not _has_star(call):
        assert isinstance(call.func, ast.Attribute)
        if ctx.type_of(call.func.value) == "nnx.GraphDef":
            return list(call.args)
    return None


@rule("state-copies", ast.Call)
def _state_copies(node: ast.AST, ctx: Context) -> bool:
    # flax 0.10's functional API: a state from outside a function that a jax transform traces
    # (a closure, a global), merged inside it; flax 0.11.2+ shares its Variables, created at
    # the outer trace level, and a mutation of the merged node raises TraceContextError
    states = merged_states(node, ctx)
    function = _traced_function(ctx) if states else None
    if function is None or states is None:
        return False
    local = ctx.facts.local_names(function)
    return any((name := _root_name(s)) is not None and name not in local for s in states)


_MUTABLE_ARRAY_NAMES: Final = frozenset(
    {"mutable_array", "MutableArray", "is_mutable_array", "mutable", "freeze"}
)


#: flax 0.10's switch of the mutable-array mode, gone with the mode (flax 0.11.1)
MUTABLE_ARRAY_FLAG: Final = "flax.config.flax_mutable_array"


@rule("mutable-arrays", ast.Attribute, ast.Name)
def _mutable_arrays(node: ast.AST, ctx: Context) -> bool:
    if isinstance(node, ast.Attribute) and ctx.facts.jax.resolve(node) == MUTABLE_ARRAY_FLAG:
        return True
    name = ctx.resolve(node)
    return (
        name is not None
        and name.split(".")[-1] in _MUTABLE_ARRAY_NAMES
        and (name.count(".") == 1 or name.startswith(("nnx.graph.", "nnx.variablelib.")))
    )


@rule("nnx-dataclasses", ast.Attribute, ast.Name)
def _dataclasses(node: ast.AST, ctx: Context) -> bool:
    # nnx.dataclass, nnx.static and nnx.Static exist again in flax 0.12 with another meaning:
    # only a 0.11 target (which has none of them) reports those
    names: tuple[str, ...] = ("nnx.field", "nnx.dataclasses")
    if not target_at_least(ctx.target, "0.12.0"):
        names += ("nnx.dataclass", "nnx.static", "nnx.Static", "nnx.graph.Static")
    return ctx.resolve(node) in names


# ---------------------------------------------------------------- pytree


@rule("isinstance-object", ast.Call)
def _isinstance_object(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    if not (isinstance(node.func, ast.Name) and node.func.id in ("isinstance", "issubclass")):
        return False
    if len(node.args) != 2:
        return False
    classes = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
    return any(ctx.resolve(c) == "nnx.Object" for c in classes)


def _builds_module(node: ast.AST, ctx: Context) -> bool:
    """``nnx.Linear(...)`` or a local Module class's call: a Module (not a Variable)."""
    return is_module_type(ctx.facts.call_type(node))


def _holds_modules(value: ast.AST, ctx: Context) -> bool:
    if isinstance(value, ast.List | ast.Tuple):
        return any(_builds_module(e, ctx) for e in value.elts)
    if isinstance(value, ast.ListComp):
        return _builds_module(value.elt, ctx)
    if isinstance(value, ast.Dict):
        return any(_builds_module(v, ctx) for v in value.values)
    if isinstance(value, ast.DictComp):
        return _builds_module(value.value, ctx)
    return False


def _in_module_class(ctx: Context) -> bool:
    return ctx.scope.cls is not None and ctx.scope.cls.name in ctx.facts.modules


def _self_assignment(node: ast.AST) -> tuple[ast.Attribute, ast.AST] | None:
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        if (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
        ):
            return target, node.value
    return None


@rule("list-attribute", ast.Assign)
def _list_attribute(node: ast.AST, ctx: Context) -> bool:
    assigned = _self_assignment(node)
    return (
        assigned is not None
        and _in_module_class(ctx)
        and isinstance(assigned[1], ast.List | ast.Tuple | ast.ListComp)
        and _holds_modules(assigned[1], ctx)
    )


@rule("dict-attribute", ast.Assign)
def _dict_attribute(node: ast.AST, ctx: Context) -> bool:
    assigned = _self_assignment(node)
    return (
        assigned is not None
        and _in_module_class(ctx)
        and isinstance(assigned[1], ast.Dict | ast.DictComp)
        and _holds_modules(assigned[1], ctx)
    )


def _filled_container(node: ast.AST, ctx: Context) -> ast.Attribute | None:
    """``self.x.append(<module>)`` / ``self.x[k] = <module>`` where ``self.x`` began empty."""
    target: ast.AST | None = None
    value: ast.AST | None = None
    call = _method_call(node, "append") or _method_call(node, "insert")
    if call is not None and call.args:
        assert isinstance(call.func, ast.Attribute)
        target, value = call.func.value, call.args[-1]
    elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript):
        target, value = node.targets[0].value, node.value
    if not (
        isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
        and value is not None
        and _builds_module(value, ctx)
        and ctx.scope.cls is not None
    ):
        return None
    plain = ctx.facts.first_static.get((id(ctx.scope.cls), target.attr))
    return target if plain in ("[]", "{}") else None


@rule("container-filled-after-init", ast.Call, ast.Assign)
def _container_filled(node: ast.AST, ctx: Context) -> bool:
    if not _in_module_class(ctx) or _filled_container(node, ctx) is None:
        return False
    function = _enclosing_function(ctx)
    # filled in __init__, flax 0.12's construct hook sees it (list-/dict-attribute's case)
    return not (isinstance(function, ast.FunctionDef) and function.name == "__init__")


@rule("static-attribute-data", ast.Assign)
def _static_then_data(node: ast.AST, ctx: Context) -> bool:
    assigned = _self_assignment(node)
    if assigned is None or ctx.scope.cls is None or not _in_module_class(ctx):
        return False
    target, value = assigned
    first = ctx.facts.first_static.get((id(ctx.scope.cls), target.attr))
    kind = ctx.facts.call_type(value)
    return (
        first == "None"
        and kind is not None
        and (_builds_module(value, ctx) or kind in VARIABLE_TYPES)
    )


# ---------------------------------------------------------------- variable


def _is_variable(node: ast.AST, ctx: Context) -> bool:
    return ctx.type_of(node) in VARIABLE_TYPES


@rule("variable-value", ast.Attribute)
def _variable_value(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Attribute)
    return node.attr == "value" and _is_variable(node.value, ctx)


@rule("variable-inplace-op", ast.AugAssign)
def _variable_inplace(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.AugAssign)
    return _is_variable(node.target, ctx)


@rule("variable-state", ast.Attribute, ast.Name, ast.Call)
def _variable_state(node: ast.AST, ctx: Context) -> bool:
    if isinstance(node, ast.Call):
        call = _method_call(node, "state")
        if call is not None:
            assert isinstance(call.func, ast.Attribute)
            return ctx.resolve(call.func.value) in VARIABLE_TYPES
        # state.to_variable(): only flax 0.10's VariableState had the method
        return _method_call(node, "to_variable") is not None and not node.args and not node.keywords
    name = ctx.resolve(node)
    return name is not None and name.split(".")[-1] == "VariableState"


@rule("variable-hooks", ast.Call)
def _variable_hooks(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    return _call_to(node, ctx, "nnx.with_metadata", *VARIABLE_TYPES) and any(
        k.endswith("_hooks") for k in _keywords(node)
    )


_INTERNALS: Final = frozenset(
    {
        "nnx.graph.fingerprint",
        "nnx.graph.check_fingerprint",
        "nnx.graph.FingerprintContext",
        "nnx.graph.ARRAY_ATTR",
        "nnx.graph.ArrayAttr",
        "nnx.graph.HashableMapping",
        "nnx.rnglib.get_fry_dtype",
        "nnx.spmd.HasSharding",
        "nnx.statelib.EmptyState",
        "nnx.variablelib.split_flat_state",
    }
)


@rule("flax-internals", ast.Attribute, ast.Name)
def _internals(node: ast.AST, ctx: Context) -> bool:
    return ctx.resolve(node) in _INTERNALS


# ---------------------------------------------------------------- sharding


@rule("with-sharding-constraint", ast.Attribute, ast.Name)
def _with_sharding_constraint(node: ast.AST, ctx: Context) -> bool:
    return ctx.resolve(node) in (
        "nnx.with_sharding_constraint",
        "nnx.spmd.with_sharding_constraint",
    )


@rule("linen-bridge-sharding-metadata", ast.Subscript)
def _bridge_sharding(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Subscript)
    return (
        isinstance(node.value, ast.Attribute)
        and node.value.attr == "metadata"
        and isinstance(node.slice, ast.Constant)
        and node.slice.value == "sharding"
        and ctx.names.any
    )


@rule("sharding-metadata-key", ast.Call)
def _sharding_key(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    # sharding_names is flax 0.11-0.12.3's own key: legacy only for a target that has 0.12.4's
    legacy = (
        {"sharding", "sharding_names"} if target_at_least(ctx.target, "0.12.4") else {"sharding"}
    )
    return _call_to(node, ctx, "nnx.with_metadata", *VARIABLE_TYPES) and bool(
        _keywords(node) & legacy
    )


# ---------------------------------------------------------------- layers


@rule("dropout-positional", ast.Call)
def _dropout_positional(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    return _call_to(node, ctx, "nnx.Dropout") and len(node.args) > 1


@rule("rnn-positional", ast.Call)
def _rnn_positional(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    return _call_to(node, ctx, "nnx.RNN") and len(node.args) > 1


@rule("mha-positional", ast.Call)
def _mha_positional(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    return _call_to(node, ctx, "nnx.MultiHeadAttention") and len(node.args) > 3


_CELLS: Final = ("nnx.LSTMCell", "nnx.OptimizedLSTMCell", "nnx.SimpleCell", "nnx.GRUCell")


@rule("recurrent-layers-fork-rngs", ast.Call)
def _recurrent_rngs(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    if _call_to(node, ctx, "nnx.RNN", "nnx.Bidirectional"):
        return any(
            k.arg == "rngs" and isinstance(k.value, ast.Constant) and k.value.value is None
            for k in node.keywords
        )
    call = _method_call(node, "initialize_carry")
    if call is None or _has_star(call):
        return False
    assert isinstance(call.func, ast.Attribute)
    return (
        ctx.type_of(call.func.value) in _CELLS
        and len(call.args) == 1
        and "rngs" not in _keywords(call)
    )


_INITIALIZERS: Final = frozenset(
    {
        "kernel_init",
        "bias_init",
        "embedding_init",
        "scale_init",
        "out_kernel_init",
        "out_bias_init",
    }
)


@rule("layer-init-attributes", ast.Attribute)
def _layer_init(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Attribute)
    if node.attr not in _INITIALIZERS or not isinstance(node.ctx, ast.Load):
        return False
    kind = ctx.type_of(node.value)
    return kind != "module" and is_module_type(kind)  # a flax layer


@rule("sequential-empty", ast.Call)
def _sequential_empty(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    return _call_to(node, ctx, "nnx.Sequential") and not node.args and not node.keywords


# ---------------------------------------------------------------- transforms


@rule("jit-abstracted-axes", ast.Call)
def _jit_abstracted_axes(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    return _call_to(node, ctx, "nnx.jit") and "abstracted_axes" in _keywords(node)


@rule("pmap-global-arg-shapes", ast.Call)
def _pmap_global_arg_shapes(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    return _call_to(node, ctx, "nnx.pmap") and "global_arg_shapes" in _keywords(node)


@rule("shard-map-check-rep", ast.Call)
def _shard_map_check_rep(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    return _call_to(node, ctx, "nnx.shard_map") and bool(_keywords(node) & {"check_rep", "auto"})


_TRANSFORMS: Final = tuple(
    f"nnx.{name}"
    for name in (
        "jit",
        "grad",
        "value_and_grad",
        "vmap",
        "remat",
        "scan",
        "pmap",
        "shard_map",
        "vjp",
        "jvp",
        "custom_vjp",
    )
)


@rule("transforms-bound-methods", ast.Call)
def _bound_method(node: ast.AST, ctx: Context) -> bool:
    assert isinstance(node, ast.Call)
    if not _call_to(node, ctx, *_TRANSFORMS) or not node.args:
        return False
    target = node.args[0]
    if not isinstance(target, ast.Attribute):
        return False
    owner = ctx.type_of(target.value)
    if is_module_type(owner):
        return True
    # self.method of a Module class of this file
    return (
        isinstance(target.value, ast.Name)
        and target.value.id == "self"
        and _in_module_class(ctx)
        and ctx.scope.cls is not None
        and any(
            isinstance(s, ast.FunctionDef) and s.name == target.attr for s in ctx.scope.cls.body
        )
    )
