"""Rewrites of the transform patterns."""

from __future__ import annotations

import ast
from typing import Any

from nnx_compat.checker.rules import Context
from nnx_compat.codemod import Manual, Plan, rewrite
from nnx_compat.codemod._edit import rename_keyword, without_keyword


@rewrite("jit-abstracted-axes")
def _abstracted_axes(node: ast.AST, ctx: Context, target: str) -> Plan:
    def apply(cst: Any, call: Any) -> Any:
        return without_keyword(cst, call, name="abstracted_axes")

    return Plan("jit-abstracted-axes", apply)


@rewrite("pmap-global-arg-shapes")
def _global_arg_shapes(node: ast.AST, ctx: Context, target: str) -> Plan | Manual:
    assert isinstance(node, ast.Call)
    (value,) = [k.value for k in node.keywords if k.arg == "global_arg_shapes"]
    if not (isinstance(value, ast.Constant) and value.value is None):
        return Manual.at(
            node,
            "pmap-global-arg-shapes",
            "drop global_arg_shapes (jax only ever accepted None)",
        )

    def apply(cst: Any, call: Any) -> Any:
        return without_keyword(cst, call, name="global_arg_shapes")

    return Plan("pmap-global-arg-shapes", apply)


@rewrite("shard-map-check-rep")
def _check_rep(node: ast.AST, ctx: Context, target: str) -> Plan | Manual:
    assert isinstance(node, ast.Call)
    if any(k.arg == "auto" for k in node.keywords):
        return Manual.at(
            node,
            "shard-map-check-rep",
            "auto=A becomes axis_names= the mesh axes not in A; check_rep= becomes check_vma=",
        )

    def apply(cst: Any, call: Any) -> Any:
        return rename_keyword(cst, call, old="check_rep", new="check_vma")

    return Plan("shard-map-check-rep", apply)
