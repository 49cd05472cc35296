"""Rewrites of the sharding patterns."""

from __future__ import annotations

import ast
from typing import Any

from nnx_compat.checker.rules import Context
from nnx_compat.checker.targets import target_at_least
from nnx_compat.codemod import Plan, rewrite
from nnx_compat.codemod._edit import rename_keyword


def _key(target: str) -> str:
    """The metadata key of a target: flax 0.11 stores sharding_names, 0.12.4 out_sharding."""
    return "out_sharding" if target_at_least(target, "0.12.4") else "sharding_names"


@rewrite("sharding-metadata-key")
def _sharding_key(node: ast.AST, ctx: Context, target: str) -> Plan:
    def apply(cst: Any, call: Any, key: str) -> Any:
        for old in ("sharding", "sharding_names"):
            call = rename_keyword(cst, call, old=old, new=key)
        return call

    return Plan("sharding-metadata-key", apply, {"key": _key(target)})


@rewrite("linen-bridge-sharding-metadata")
def _bridge_key(node: ast.AST, ctx: Context, target: str) -> Plan:
    def apply(cst: Any, subscript: Any, key: str) -> Any:
        element = subscript.slice[0]
        quote = element.slice.value.value[0]  # keep the file's quotes
        index = element.slice.with_changes(value=cst.SimpleString(f"{quote}{key}{quote}"))
        return subscript.with_changes(slice=[element.with_changes(slice=index)])

    return Plan("linen-bridge-sharding-metadata", apply, {"key": _key(target)})
