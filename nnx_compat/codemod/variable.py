"""Rewrites of the Variable patterns."""

from __future__ import annotations

import ast
from typing import Any

from nnx_compat.checker.facts import VARIABLE_TYPES
from nnx_compat.checker.rules import MUTABLE_ARRAY_FLAG, Context
from nnx_compat.codemod import Manual, Plan, rewrite


def _ellipsis_subscript(cst: Any, value: Any) -> Any:
    return cst.Subscript(
        value=value, slice=[cst.SubscriptElement(slice=cst.Index(value=cst.Ellipsis()))]
    )


@rewrite("variable-value")
def _value(node: ast.AST, ctx: Context, target: str) -> Plan | Manual:
    assert isinstance(node, ast.Attribute)
    if isinstance(node.ctx, ast.Del):
        return Manual.at(node, "variable-value", "del variable[...]")

    def apply(cst: Any, attribute: Any) -> Any:
        return _ellipsis_subscript(cst, attribute.value)

    return Plan("variable-value", apply)


@rewrite("variable-inplace-op")
def _inplace(node: ast.AST, ctx: Context, target: str) -> Plan:
    def apply(cst: Any, assign: Any) -> Any:
        return assign.with_changes(target=_ellipsis_subscript(cst, assign.target))

    return Plan("variable-inplace-op", apply)


@rewrite("mutable-arrays")
def _mutable_arrays(node: ast.AST, ctx: Context, target: str) -> Plan | None:
    """``flax.config.flax_mutable_array`` -> ``getattr(flax.config, "flax_mutable_array",
    False)``: the mode is off where flax removed it, as the flag's default was. The API of the
    mode itself has no replacement with the same meaning: None, a manual item naming the
    record's new form."""
    if ctx.facts.jax.resolve(node) != MUTABLE_ARRAY_FLAG:
        return None

    def apply(cst: Any, attribute: Any) -> Any:
        return cst.Call(
            func=cst.Name("getattr"),
            args=[
                cst.Arg(attribute.value),
                cst.Arg(cst.SimpleString(f'"{attribute.attr.value}"')),
                cst.Arg(cst.Name("False")),
            ],
        )

    return Plan("mutable-arrays", apply)


@rewrite("variable-state")
def _variable_state(node: ast.AST, ctx: Context, target: str) -> Plan | Manual:
    parent = ctx.parents[-1] if ctx.parents else None
    call = parent if isinstance(parent, ast.Call) and parent.func is node else None
    if (
        call is not None
        and len(call.args) == 2
        and ctx.resolve(call.args[0]) in VARIABLE_TYPES
        and not isinstance(call.args[1], ast.Starred)
    ):

        def apply(cst: Any, c: Any) -> Any:  # VariableState(nnx.Param, x, **m) -> nnx.Param(x)
            return c.with_changes(func=c.args[0].value, args=c.args[1:])

        return Plan("variable-state", apply, at=call)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "to_variable":  # a copy of the Variable, as on flax 0.11+

            def apply_copy(cst: Any, c: Any) -> Any:
                return c.with_changes(func=c.func.with_changes(attr=cst.Name("copy")))

            return Plan("variable-state", apply_copy)
        # nnx.Param.state(x, **m) -> nnx.Param(x, **m)

        def apply_state(cst: Any, c: Any) -> Any:
            return c.with_changes(func=c.func.value)

        return Plan("variable-state", apply_state)
    return Manual.at(node, "variable-state", "use the Variable type (nnx.Param, ...) itself")
