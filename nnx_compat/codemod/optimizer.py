"""Rewrites of the optimizer patterns (flax 0.11.0)."""

from __future__ import annotations

import ast
from typing import Any

from nnx_compat.checker.rules import Context
from nnx_compat.codemod import Manual, Plan, rewrite
from nnx_compat.codemod._edit import keyword, nnx_prefix, positional_to_keywords

_HOLDS_MODEL = "use optimizer.update(model, grads) with the model it optimizes, or build it as "
_HOLDS_MODEL += "nnx.ModelAndOptimizer(model, tx, wrt=nnx.Param)"


def _add_wrt(cst: Any, call: Any, *, wrt: str) -> Any:
    args = list(call.args)
    if args and args[-1].comma is cst.MaybeSentinel.DEFAULT:
        args[-1] = args[-1].with_changes(
            comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        )
    return call.with_changes(args=[*args, keyword(cst, "wrt", cst.parse_expression(wrt))])


@rewrite("optimizer-wrt-default")
def _wrt_default(node: ast.AST, ctx: Context, target: str) -> Plan | Manual:
    assert isinstance(node, ast.Call)
    prefix = nnx_prefix(node.func, ctx)
    if prefix is None:
        return Manual.at(
            node,
            "optimizer-wrt-default",
            "add wrt=nnx.Param (import flax.nnx)",
        )
    return Plan("optimizer-wrt-default", _add_wrt, {"wrt": f"{prefix}.Param"})


@rewrite("optimizer-wrt-positional")
def _wrt_positional(node: ast.AST, ctx: Context, target: str) -> Plan:
    def apply(cst: Any, call: Any) -> Any:
        return positional_to_keywords(cst, call, first=2, names=("wrt",))

    return Plan("optimizer-wrt-positional", apply)


def _model_of(receiver: ast.AST, ctx: Context) -> str | None:
    """The model expression an optimizer was built from, where it means the same here."""
    origin = ctx.facts.origin(receiver, ctx.scope)
    if origin is None or not origin.args:
        return None
    model = origin.args[0]
    if isinstance(model, ast.Name) and isinstance(receiver, ast.Name):
        parameters = _parameters(ctx.scope.function)
        if receiver.id in parameters and model.id not in parameters:
            # the optimizer is an argument here: its model is known only when the function
            # takes it too under the name it was built from (train_step(model, optimizer))
            return None
        return model.id  # built in this scope (or the module's) from a name of that scope
    if (
        isinstance(model, ast.Attribute)
        and isinstance(model.value, ast.Name)
        and model.value.id == "self"
        and isinstance(receiver, ast.Attribute)
    ):
        return ast.unparse(model)  # self.model beside self.optimizer, in the same class
    return None


def _parameters(function: ast.AST | None) -> set[str]:
    if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        return set()
    arguments = function.args
    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    every += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
    return {a.arg for a in every}


@rewrite("optimizer-update-grads")
def _update(node: ast.AST, ctx: Context, target: str) -> Plan | Manual:
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    model = _model_of(node.func.value, ctx)
    if model is None:
        return Manual.at(node, "optimizer-update-grads", _HOLDS_MODEL)

    def apply(cst: Any, call: Any, model: str) -> Any:
        grads = [a for a in call.args if a.keyword is None or a.keyword.value == "grads"]
        rest = [a for a in call.args if a not in grads]
        first = cst.Arg(
            value=cst.parse_expression(model),
            comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")),
        )
        moved = [g.with_changes(keyword=None, equal=cst.MaybeSentinel.DEFAULT) for g in grads]
        return call.with_changes(args=[first, *moved, *rest])

    return Plan("optimizer-update-grads", apply, {"model": model})


@rewrite("optimizer-model-attribute")
def _model_attribute(node: ast.AST, ctx: Context, target: str) -> Plan | Manual:
    assert isinstance(node, ast.Attribute)
    model = _model_of(node.value, ctx)
    if model is None or not isinstance(node.ctx, ast.Load):
        return Manual.at(
            node,
            "optimizer-model-attribute",
            "keep a reference to the model the optimizer was built from",
        )

    def apply(cst: Any, attribute: Any, model: str) -> Any:
        return cst.parse_expression(model)

    return Plan("optimizer-model-attribute", apply, {"model": model})
