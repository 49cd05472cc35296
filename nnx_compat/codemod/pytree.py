"""Rewrites of the pytree patterns (flax 0.12.0's object model)."""

from __future__ import annotations

import ast
from typing import Any

from nnx_compat.checker.rules import Context, _self_assignment
from nnx_compat.codemod import Manual, Plan, rewrite
from nnx_compat.codemod._edit import nnx_prefix


@rewrite("isinstance-object")
def _isinstance_object(node: ast.AST, ctx: Context, target: str) -> Plan:
    def apply(cst: Any, call: Any) -> Any:
        def fix(expr: Any) -> Any:
            if isinstance(expr, cst.Attribute) and expr.attr.value == "Object":
                return expr.with_changes(attr=cst.Name("Pytree"))
            if isinstance(expr, cst.Name) and expr.value == "Object":
                return expr.with_changes(value="Pytree")
            return expr

        classes = call.args[1].value
        if isinstance(classes, cst.Tuple):
            fixed = classes.with_changes(
                elements=[e.with_changes(value=fix(e.value)) for e in classes.elements]
            )
        else:
            fixed = fix(classes)
        return call.with_changes(args=[call.args[0], call.args[1].with_changes(value=fixed)])

    return Plan("isinstance-object", apply)


def _wrap(container: str) -> Any:
    def plan(node: ast.AST, ctx: Context, target: str) -> Plan | Manual:
        pattern = "list-attribute" if container == "List" else "dict-attribute"
        assigned = _self_assignment(node)
        assert assigned is not None
        prefix = nnx_prefix(ast.Name("nnx"), ctx)
        if prefix is None:
            return Manual.at(node, pattern, f"wrap it in nnx.{container}")

        def apply(cst: Any, assign: Any, wrapper: str) -> Any:
            value = assign.value
            if isinstance(value, cst.Tuple):
                value = cst.List(elements=value.elements)
            call = cst.Call(func=cst.parse_expression(wrapper), args=[cst.Arg(value=value)])
            return assign.with_changes(value=call)

        return Plan(pattern, apply, {"wrapper": f"{prefix}.{container}"})

    return plan


rewrite("list-attribute")(_wrap("List"))
rewrite("dict-attribute")(_wrap("Dict"))


def _first_assignment(node: ast.AST, ctx: Context, attribute: str) -> ast.AST | None:
    if ctx.scope.cls is None:
        return None
    return ctx.facts.first_static_at.get((id(ctx.scope.cls), attribute))


def _replace_value(wrapper: str) -> Any:
    """``self.x = v`` -> ``self.x = <wrapper>(v)`` (``wrapper`` ends in ``(``: ``nnx.data(``)."""

    def apply(cst: Any, assign: Any, prefix: str) -> Any:
        value = assign.value
        if wrapper == "data":
            new = cst.Call(func=cst.parse_expression(f"{prefix}.data"), args=[cst.Arg(value=value)])
        else:  # an empty [] / {} / list() / dict() becomes the container, empty
            new = cst.Call(func=cst.parse_expression(f"{prefix}.{wrapper}"), args=[])
        return assign.with_changes(value=new)

    return apply


@rewrite("static-attribute-data")
def _static_then_data(node: ast.AST, ctx: Context, target: str) -> Plan | Manual:
    assigned = _self_assignment(node)
    assert assigned is not None
    name = assigned[0].attr
    first = _first_assignment(node, ctx, name)
    prefix = nnx_prefix(ast.Name("nnx"), ctx)
    if first is None or prefix is None:
        return Manual.at(
            node,
            "static-attribute-data",
            f"write self.{name} = nnx.data(None) where it is first set to None",
        )
    return Plan("static-attribute-data", _replace_value("data"), {"prefix": prefix}, at=first)


@rewrite("container-filled-after-init")
def _filled_later(node: ast.AST, ctx: Context, target: str) -> Plan | Manual:
    from nnx_compat.checker.rules import _filled_container

    container = _filled_container(node, ctx)
    first = _first_assignment(node, ctx, container.attr) if container is not None else None
    prefix = nnx_prefix(ast.Name("nnx"), ctx)
    if container is None or first is None or prefix is None:
        return Manual.at(
            node,
            "container-filled-after-init",
            "create the container as nnx.List() / nnx.Dict() where it is first assigned",
        )
    plain = ctx.facts.first_static[(id(ctx.scope.cls), container.attr)]  # type: ignore[arg-type]
    kind = "List" if plain == "[]" else "Dict"
    return Plan("container-filled-after-init", _replace_value(kind), {"prefix": prefix}, at=first)
