"""Small libcst edits the rule modules share."""

from __future__ import annotations

import ast
from typing import Any

from nnx_compat.checker.rules import Context

__all__ = ["keyword", "nnx_prefix", "positional_to_keywords", "rename_keyword", "without_keyword"]


def nnx_prefix(call_func: ast.AST, ctx: Context) -> str | None:
    """How this module spells ``nnx`` where ``call_func`` is ``<nnx>.X`` (``nn``,
    ``flax.nnx``), or any name it binds to ``flax.nnx``; None when it binds none."""
    if isinstance(call_func, ast.Attribute):
        return ast.unparse(call_func.value)
    if ctx.names.modules:
        return sorted(ctx.names.modules)[0]
    if ctx.names.parents:
        return f"{sorted(ctx.names.parents)[0]}.nnx"
    return None


def keyword(cst: Any, name: str, value: Any) -> Any:
    return cst.Arg(
        value=value,
        keyword=cst.Name(name),
        equal=cst.AssignEqual(
            whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
        ),
    )


def _with_args(cst: Any, call: Any, args: list[Any]) -> Any:
    # the last argument takes no trailing comma unless it had one
    fixed = [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in args]
    if args and call.args and call.args[-1].comma is not cst.MaybeSentinel.DEFAULT:
        fixed[-1] = fixed[-1].with_changes(comma=call.args[-1].comma)
    return call.with_changes(args=fixed)


def positional_to_keywords(cst: Any, call: Any, *, first: int, names: tuple[str, ...]) -> Any:
    """``f(a, b, c)`` -> ``f(a, b=..., c=...)`` from positional index ``first`` on."""
    args = list(call.args)
    out, index = [], 0
    for arg in args:
        if arg.keyword is None and arg.star == "":
            if index >= first:
                arg = keyword(cst, names[index - first], arg.value).with_changes(comma=arg.comma)
            index += 1
        out.append(arg)
    # keywords must follow positionals: they already do (only trailing positionals move)
    return _with_args(cst, call, out)


def rename_keyword(cst: Any, call: Any, *, old: str, new: str) -> Any:
    args = [
        a.with_changes(keyword=cst.Name(new))
        if a.keyword is not None and a.keyword.value == old
        else a
        for a in call.args
    ]
    return call.with_changes(args=args)


def without_keyword(cst: Any, call: Any, *, name: str) -> Any:
    args = [a for a in call.args if not (a.keyword is not None and a.keyword.value == name)]
    return _with_args(cst, call, args)
