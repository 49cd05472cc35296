"""Rewrites of the state patterns: flax 0.10's merge of a captured state under a transform."""

from __future__ import annotations

import ast
from typing import Any

from nnx_compat.checker.rules import Context, merged_states
from nnx_compat.codemod import Manual, Plan, rewrite
from nnx_compat.codemod._edit import keyword


def _nnx(ctx: Context) -> str | None:
    """How this module spells ``flax.nnx`` (``nnx``, ``flax.nnx``); None when it binds no name
    to it (only ``from flax.nnx import merge``)."""
    if ctx.names.modules:
        return sorted(ctx.names.modules)[0]
    if ctx.names.parents:
        return f"{sorted(ctx.names.parents)[0]}.nnx"
    return None


@rewrite("state-copies")
def _state_copies(node: ast.AST, ctx: Context, target: str) -> Plan | Manual:
    """``nnx.merge(graphdef, *states)`` -> ``nnx.merge(graphdef, *states, copy=True)``: new
    Variables, created at the trace level of the merge, as flax 0.10's merge made them.
    ``graphdef.apply(state, ...)`` -> ``graphdef.apply(nnx.clone(state), ...)``: the same,
    for the merge that ``apply`` runs."""
    assert isinstance(node, ast.Call)
    if isinstance(node.func, ast.Attribute) and node.func.attr == "apply":
        nnx = _nnx(ctx)
        if nnx is None or merged_states(node, ctx) is None:
            return Manual.at(
                node, "state-copies", "graphdef.apply(nnx.clone(state)): merge copies of the state"
            )

        def apply_clones(cst: Any, call: Any) -> Any:
            clone = cst.parse_expression(f"{nnx}.clone")
            args = [
                a.with_changes(value=cst.Call(func=clone, args=[cst.Arg(value=a.value)]))
                if a.keyword is None and a.star == ""
                else a
                for a in call.args
            ]
            return call.with_changes(args=args)

        return Plan("state-copies", apply_clones)

    def copy(cst: Any, call: Any) -> Any:
        args = list(call.args)
        last = args[-1]
        trailing = last.comma
        args[-1] = last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        added = keyword(cst, "copy", cst.Name("True"))
        if trailing is not cst.MaybeSentinel.DEFAULT:
            added = added.with_changes(comma=trailing)
        return call.with_changes(args=[*args, added])

    return Plan("state-copies", copy)
