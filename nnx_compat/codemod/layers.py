"""Rewrites of the layer patterns: positional arguments to keywords, recurrent RNGs."""

from __future__ import annotations

import ast
from typing import Any

from nnx_compat._patterns import POSITIONAL
from nnx_compat.checker.rules import Context
from nnx_compat.codemod import Manual, Plan, rewrite
from nnx_compat.codemod._edit import positional_to_keywords, without_keyword


def _keywords(pattern: str, first: int, names: tuple[str, ...]) -> Any:
    def plan(node: ast.AST, ctx: Context, target: str) -> Plan | Manual:
        assert isinstance(node, ast.Call)
        if any(isinstance(a, ast.Starred) for a in node.args) or len(node.args) - first > len(
            names
        ):
            return Manual.at(node, pattern, "pass them by keyword")

        def apply(cst: Any, call: Any) -> Any:
            return positional_to_keywords(cst, call, first=first, names=names)

        return Plan(pattern, apply)

    return plan


rewrite("dropout-positional")(_keywords("dropout-positional", 1, POSITIONAL["dropout-positional"]))
rewrite("rnn-positional")(_keywords("rnn-positional", 1, POSITIONAL["rnn-positional"]))
rewrite("mha-positional")(_keywords("mha-positional", 2, POSITIONAL["mha-positional"]))


@rewrite("recurrent-layers-fork-rngs")
def _recurrent(node: ast.AST, ctx: Context, target: str) -> Plan | Manual:
    assert isinstance(node, ast.Call)
    if isinstance(node.func, ast.Attribute) and node.func.attr == "initialize_carry":
        return Manual.at(
            node,
            "recurrent-layers-fork-rngs",
            "pass rngs: cell.initialize_carry(shape, rngs), or build the cell with keep_rngs=True",
        )

    def apply(cst: Any, call: Any) -> Any:  # RNN(cell, rngs=None): None meant the default
        return without_keyword(cst, call, name="rngs")

    return Plan("recurrent-layers-fork-rngs", apply)
