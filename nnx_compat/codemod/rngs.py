"""Rewrites of the Rngs patterns."""

from __future__ import annotations

import ast
from typing import Any

from nnx_compat.checker.rules import Context, decorated
from nnx_compat.checker.targets import target_at_least
from nnx_compat.codemod import Manual, Plan, rewrite
from nnx_compat.codemod._edit import keyword, rename_keyword


def _split_call(cst: Any, call: Any, *, spelling: str) -> Any:
    """``x.fork(splits=n)`` -> ``x.split(n)`` or ``x.fork(split=n)``."""
    if spelling == "fork":
        return rename_keyword(cst, call, old="splits", new="split")
    (arg,) = [
        a for a in call.args if a.keyword is not None and a.keyword.value in ("split", "splits")
    ]
    plain = arg.with_changes(
        keyword=None, equal=cst.MaybeSentinel.DEFAULT, comma=cst.MaybeSentinel.DEFAULT
    )
    return call.with_changes(func=call.func.with_changes(attr=cst.Name("split")), args=[plain])


def _only_split(node: ast.Call) -> bool:
    return not node.args and len(node.keywords) == 1


@rewrite("rngs-fork-splits")
def _fork_splits(node: ast.AST, ctx: Context, target: str) -> Plan | Manual:
    assert isinstance(node, ast.Call)
    split = target_at_least(target, "0.12.6")  # Rngs.split; before it, fork(split=)
    if split and not _only_split(node):
        return Manual.at(
            node,
            "rngs-fork-splits",
            "rngs.split(n) (fork's other arguments have no split counterpart)",
        )
    return Plan("rngs-fork-splits", _split_call, {"spelling": "split" if split else "fork"})


@rewrite("rngs-fork-split")
def _fork_split(node: ast.AST, ctx: Context, target: str) -> Plan | Manual:
    assert isinstance(node, ast.Call)
    if not _only_split(node):
        return Manual.at(node, "rngs-fork-split", "rngs.split(n)")
    return Plan("rngs-fork-split", _split_call, {"spelling": "split"})


@rewrite("rngstream-positional-tag")
def _rngstream_tag(node: ast.AST, ctx: Context, target: str) -> Plan:
    def apply(cst: Any, call: Any) -> Any:
        tag, key, *rest = call.args
        return call.with_changes(
            args=[
                key.with_changes(comma=tag.comma),
                keyword(cst, "tag", tag.value).with_changes(comma=key.comma),
                *rest,
            ]
        )

    return Plan("rngstream-positional-tag", apply)


@rewrite("split-rngs-over-scan")
def _split_rngs_over_scan(node: ast.AST, ctx: Context, target: str) -> Plan:
    # found at the decorator; the rewrite drops it from the function it decorates
    function = decorated(node, ctx)
    assert function is not None

    def apply(cst: Any, function: Any) -> Any:
        from libcst.helpers import get_full_name_for_node

        decorators = list(function.decorators)
        names = [
            get_full_name_for_node(
                d.decorator.func if isinstance(d.decorator, cst.Call) else d.decorator
            )
            for d in decorators
        ]
        for i, name in enumerate(names[:-1]):
            if name and name.endswith("split_rngs") and (names[i + 1] or "").endswith("scan"):
                del decorators[i]
                break
        return function.with_changes(decorators=decorators)

    return Plan("split-rngs-over-scan", apply, at=function)
