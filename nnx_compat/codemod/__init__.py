"""``nnx-compat migrate``'s engine: rewrite legacy flax.nnx calls to the new API, in place.

The checker decides *what* is legacy (the same matchers, so a finding and a rewrite carry the
same pattern id); a rule module per pattern family (``optimizer``, ``rngs``, ``checkpoint``,
``pytree``, ``variable``, ``sharding``, ``layers``, ``transforms``) decides *how* to rewrite it,
on a libcst tree, so that
formatting and comments are kept. A finding that cannot be rewritten safely from the source
alone (the model an optimizer was built from is not known, for example) is left as it is and
listed as a manual item with the exact change to make. Rewriting twice changes nothing.

libcst is needed (``pip install 'nnx_compat[tools]'``); the runtime shim does not use it.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any, Final

from nnx_compat import _patterns
from nnx_compat.checker import _suppressed, applies
from nnx_compat.checker.facts import Facts, walk
from nnx_compat.checker.names import Names
from nnx_compat.checker.rules import RULES, Context

__all__ = [
    "FAMILIES",
    "REWRITES",
    "Manual",
    "MissingLibcst",
    "Plan",
    "Result",
    "migrate_source",
    "rewrite",
    "runtime_note",
    "runtime_only",
]

#: The rule modules, one per pattern family of the table (``nnx_compat.codemod.<family>``),
#: each registering its rewrites in :data:`REWRITES`.
FAMILIES: Final = _patterns.FAMILIES


class MissingLibcst(ImportError):
    """``nnx-compat migrate`` needs libcst, an optional dependency."""


def _libcst() -> Any:
    try:
        importlib.import_module("libcst.metadata")
        importlib.import_module("libcst.helpers")
        return importlib.import_module("libcst")
    except ImportError:
        raise MissingLibcst(
            "nnx-compat migrate needs libcst: pip install 'nnx_compat[tools]' (or pip install "
            "libcst)"
        ) from None


@dataclasses.dataclass(frozen=True)
class Manual:
    """A legacy use the codemod leaves alone: where, which pattern, and what to do."""

    line: int
    column: int
    pattern: str
    todo: str

    @classmethod
    def at(cls, node: ast.AST, pattern: str, todo: str) -> Manual:
        """The manual item for a matched node (its line, and its column from 1)."""
        return cls(getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1, pattern, todo)


@dataclasses.dataclass(frozen=True)
class Plan:
    """How to rewrite one matched node: a rule's ``apply`` with what it read from the ast."""

    pattern: str
    apply: Callable[..., Any]
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: the node to rewrite when it is not the matched one (the call around a matched name)
    at: ast.AST | None = None


@dataclasses.dataclass(frozen=True)
class Result:
    """The rewritten code, the number of rewrites per pattern id and the manual items."""

    code: str
    rewrites: Mapping[str, int]
    manual: tuple[Manual, ...]

    @property
    def changed(self) -> bool:
        return bool(self.rewrites)


@dataclasses.dataclass(frozen=True)
class Rewrite:
    """How one pattern is rewritten.

    Attributes:
        pattern: The pattern id.
        plan: ``(ast node, context, target) -> Plan | Manual | None`` (None: nothing to do).
    """

    pattern: str
    plan: Callable[[ast.AST, Context, str], Plan | Manual | None]


#: pattern id -> its rewrite (filled by the rule modules).
REWRITES: dict[str, Rewrite] = {}


def rewrite(pattern: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Registers a rule module's planner for ``pattern``."""

    def register(plan: Callable[..., Any]) -> Callable[..., Any]:
        if pattern in REWRITES:
            raise ValueError(f"two rewrites for {pattern}")
        if pattern not in RULES:
            raise ValueError(f"{pattern} has no matcher to find it")
        REWRITES[pattern] = Rewrite(pattern, plan)
        return plan

    return register


def runtime_only(target: str) -> list[_patterns.Pattern]:
    """The records of code that targets flax ``target`` that only the run time finds: those the
    checker has no matcher for (``Pattern.static`` starts ``run time only``) and those it finds
    in their common shapes only (``partly static``), less the calls that keep the installed
    flax's meaning (``same_call``: nothing warns about them at run time either). Running the
    tests under ``pytest --nnx-compat=report`` finds them."""
    return [p for p in _patterns.PATTERNS if p.static and not p.same_call and applies(p, target)]


def runtime_note(target: str) -> str:
    """The line that ends every ``nnx-compat migrate`` run: what the migration cannot see."""
    found = runtime_only(target)
    if not found:
        return ""
    ids = ", ".join(p.id for p in found)
    count = "1 pattern" if len(found) == 1 else f"{len(found)} patterns"
    return (
        f"{count} can only be found at run time ({ids}): run your tests with "
        "pytest --nnx-compat=report"
    )


def _load_rules() -> None:
    for family in FAMILIES:
        importlib.import_module(f"nnx_compat.codemod.{family}")


Key = tuple[str, int, int, int, int]


def _key(node: ast.AST) -> Key:
    """Where a node starts and ends, as libcst will report it (a def: its name's line only);
    nested nodes that start together (``self.count.value`` and ``self.count``) differ at the
    end."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return ("def", node.lineno, -1, -1, -1)
    return (
        type(node).__name__,
        node.lineno,  # type: ignore[attr-defined]
        node.col_offset,  # type: ignore[attr-defined]
        node.end_lineno or -1,  # type: ignore[attr-defined]
        node.end_col_offset or -1,  # type: ignore[attr-defined]
    )


def _plans(
    tree: ast.Module, source: str, target: str
) -> tuple[dict[Key, list[Plan]], list[Manual]]:
    names = Names(tree)
    plans: dict[Key, list[Plan]] = collections.defaultdict(list)
    manual: list[Manual] = []
    if not names.any:
        return plans, manual
    facts = Facts(tree, names)
    lines = source.splitlines()
    chosen = [
        RULES[i]
        for i in sorted(RULES)
        if applies(_patterns.get(i), target) and not _patterns.get(i).same_call
    ]
    for node, scope, parents in walk(tree):
        relevant = [r for r in chosen if isinstance(node, r.nodes)]
        if not relevant:
            continue
        context = Context(names, facts, scope, parents, target)
        for rule in relevant:
            if not rule.match(node, context):
                continue
            if _suppressed(lines, getattr(node, "lineno", 1), rule.pattern):
                continue
            spec = REWRITES.get(rule.pattern)
            outcome = spec.plan(node, context, target) if spec else None
            if isinstance(outcome, Plan):
                key = _key(outcome.at or node)
                if outcome.at is None or outcome.pattern not in {p.pattern for p in plans[key]}:
                    plans[key].append(outcome)  # one rewrite of a shared first assignment
            else:
                record = _patterns.get(rule.pattern)
                todo = outcome.todo if isinstance(outcome, Manual) else _todo(record)
                manual.append(Manual.at(node, rule.pattern, todo))
    return plans, manual


#: First words of a record's new form that make it an instruction rather than code to use.
_INSTRUCTIONS: Final = ("keep ", "pass ", "read ", "return ")


def _todo(record: _patterns.Pattern) -> str:
    """A manual item's text from the record's new form: ``use <code>``, or the instruction
    the form already is (``keep the initializer you pass to the layer``)."""
    return record.new if record.new.startswith(_INSTRUCTIONS) else f"use {record.new}"


def migrate_source(source: str, target: str = "0.12") -> Result:
    """Rewrites one module's source for flax ``target`` (``"0.11"`` or ``"0.12"``).

    Raises:
        SyntaxError: for source that does not parse.
        MissingLibcst: without libcst.
    """
    cst = _libcst()
    _load_rules()
    tree = ast.parse(source)
    plans, manual = _plans(tree, source, target)
    if not plans:
        return Result(source, {}, tuple(manual))
    module = cst.parse_module(source)
    wrapper = cst.metadata.MetadataWrapper(module)
    transformer = _transformer(cst)(plans)
    new = wrapper.visit(transformer)
    return Result(new.code, dict(transformer.counts), tuple(manual + transformer.unapplied()))


def _transformer(cst: Any) -> type:
    from libcst.metadata import PositionProvider

    class Apply(cst.CSTTransformer):  # type: ignore[misc,name-defined]
        METADATA_DEPENDENCIES = (PositionProvider,)

        def __init__(self, plans: dict[Key, list[Plan]]) -> None:
            super().__init__()
            self.plans = plans
            self.done: set[Key] = set()
            self.counts: collections.Counter[str] = collections.Counter()

        def _apply(self, kind: str, original: Any, updated: Any) -> Any:
            span = self.get_metadata(PositionProvider, original)
            key = (kind, span.start.line, span.start.column, span.end.line, span.end.column)
            for plan in self.plans.get(key, ()):
                updated = plan.apply(cst, updated, **plan.data)
                self.counts[plan.pattern] += 1
                self.done.add(key)
            return updated

        def leave_Call(self, original: Any, updated: Any) -> Any:
            return self._apply("Call", original, updated)

        def leave_Attribute(self, original: Any, updated: Any) -> Any:
            return self._apply("Attribute", original, updated)

        def leave_Assign(self, original: Any, updated: Any) -> Any:
            return self._apply("Assign", original, updated)

        def leave_AugAssign(self, original: Any, updated: Any) -> Any:
            return self._apply("AugAssign", original, updated)

        def leave_Subscript(self, original: Any, updated: Any) -> Any:
            return self._apply("Subscript", original, updated)

        def leave_FunctionDef(self, original: Any, updated: Any) -> Any:
            line = self.get_metadata(PositionProvider, original.name).start.line
            key = ("def", line, -1, -1, -1)
            for plan in self.plans.get(key, ()):
                updated = plan.apply(cst, updated, **plan.data)
                self.counts[plan.pattern] += 1
                self.done.add(key)
            return updated

        def unapplied(self) -> list[Manual]:
            """Plans whose node libcst did not meet (should not happen; never silently)."""
            out = []
            for key, plans in self.plans.items():
                if key not in self.done:
                    for plan in plans:
                        out.append(
                            Manual(key[1], key[2] + 1, plan.pattern, "not rewritten: apply by hand")
                        )
            return out

    return Apply
