"""``nnx-compat check``'s engine: the legacy flax.nnx patterns in source, without running it.

Static: files are parsed with :mod:`ast`; no user code is imported and flax need not be
installed. Each pattern of the table has a matcher (:mod:`nnx_compat.checker.rules`) or a
reason why only the run time can see it (``Pattern.static``). Suppress a finding with
``# nnx-compat: ignore`` or ``# nnx-compat: ignore[<id>, ...]`` on its line.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

from nnx_compat import _patterns
from nnx_compat.checker.facts import Facts, walk
from nnx_compat.checker.names import Names
from nnx_compat.checker.rules import RULES, Context
from nnx_compat.checker.targets import TARGETS, parse_target, target_at_least

__all__ = [
    "TARGETS",
    "Finding",
    "applies",
    "check_notebook",
    "check_source",
    "notebook_cells",
    "parse_target",
    "target_at_least",
]


_IGNORE: Final = re.compile(r"#\s*nnx-compat:\s*ignore(?:\[([^\]]*)\])?")


@dataclasses.dataclass(frozen=True, order=True)
class Finding:
    """One legacy use: where, which pattern, and (for a file that does not parse) why not."""

    path: str
    line: int
    column: int
    pattern: str
    cell: int | None = None  # the notebook cell (1-based), for .ipynb files
    message: str = ""

    @property
    def where(self) -> str:
        if self.cell is not None:  # notebook.ipynb:cell 3:line 2:5
            return f"{self.path}:cell {self.cell}:line {self.line}:{self.column}"
        return f"{self.path}:{self.line}:{self.column}"

    def text(self) -> str:
        """``path:line:col: nnx-compat[<id>] <legacy> -> <new> (flax <release>)``."""
        if self.pattern == "syntax-error":
            return f"{self.where}: nnx-compat[syntax-error] {self.message}"
        record = _patterns.get(self.pattern)
        return (
            f"{self.where}: nnx-compat[{record.id}] {record.legacy} -> {record.new} "
            f"(flax {record.changed_in})"
        )

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "pattern": self.pattern,
        }
        if self.cell is not None:
            out["cell"] = self.cell
        if self.pattern == "syntax-error":
            out["message"] = self.message
        else:
            record = _patterns.get(self.pattern)
            out.update(legacy=record.legacy, new=record.new, changed_in=record.changed_in)
        return out


def applies(pattern: _patterns.Pattern, target: str) -> bool:
    """Whether ``pattern`` is legacy for code that targets flax ``target`` (``"0.11"``: the
    patterns that flax 0.12 changed are not; ``"0.12.3"``: neither are those of 0.12.4+)."""
    return target_at_least(target, pattern.changed_in)


def _suppressed(lines: Sequence[str], finding_line: int, pattern: str) -> bool:
    if not 0 < finding_line <= len(lines):
        return False
    match = _IGNORE.search(lines[finding_line - 1])
    if match is None:
        return False
    ids = match.group(1)
    return ids is None or pattern in {i.strip() for i in ids.split(",")}


def check_source(
    source: str,
    path: str = "<source>",
    *,
    target: str = "0.12",
    select: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    native: bool = False,
    cell: int | None = None,
) -> list[Finding]:
    """The findings in one module's source (a syntax error is one finding).

    Args:
        source: The code.
        path: How findings name the file.
        target: The flax API level the code should reach (``"0.11"`` or ``"0.12"``).
        select: Only these pattern ids (None: all).
        ignore: Not these pattern ids.
        native: Also the patterns whose legacy call still runs on the newer flax with another
            meaning (status "native"): their legacy text is new-API code too, so they are
            reported only on request.
        cell: The notebook cell the source is, if any.
    """
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as error:
        return [
            Finding(path, error.lineno or 1, error.offset or 0, "syntax-error", cell, error.msg)
        ]
    names = Names(tree)
    if not names.any:
        return []
    chosen = set(select) if select is not None else set(RULES)
    chosen -= set(ignore)
    rules = [
        RULES[i]
        for i in sorted(chosen)
        if i in RULES
        and applies(_patterns.get(i), target)
        and (native or not _patterns.get(i).same_call)
    ]
    facts = Facts(tree, names)
    lines = source.splitlines()
    found: set[Finding] = set()
    for node, scope, parents in walk(tree):
        relevant = [r for r in rules if isinstance(node, r.nodes)]
        if not relevant:
            continue
        context = Context(names, facts, scope, parents, target)
        for rule in relevant:
            if rule.match(node, context):
                line = getattr(node, "lineno", 1)
                if not _suppressed(lines, line, rule.pattern):
                    column = getattr(node, "col_offset", 0) + 1
                    found.add(Finding(path, line, column, rule.pattern, cell))
    return sorted(found)


def _blank_magic(line: str) -> str:
    """An IPython magic or shell escape as ``pass`` at its indentation (an ``if`` may hold
    only a magic)."""
    stripped = line.lstrip()
    if stripped.startswith(("%", "!")):
        return line[: len(line) - len(stripped)] + "pass"
    return line


def notebook_cells(text: str) -> list[tuple[int, str]]:
    """A notebook's code cells, numbered from 1 as Jupyter counts all cells, with IPython's
    magics and shell escapes (``%``, ``!``) replaced by ``pass`` so the rest parses; lines
    keep their numbers."""
    notebook = json.loads(text)
    cells = []
    for number, cell in enumerate(notebook.get("cells", []), start=1):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(source)
        lines = [_blank_magic(line) for line in source.split("\n")]
        cells.append((number, "\n".join(lines)))
    return cells


def _imports(source: str) -> list[str]:
    """The import statements of a cell that parses (to bind names for the other cells)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]


def check_notebook(text: str, path: str, **options: Any) -> list[Finding]:
    """The findings of a notebook's code cells, as one namespace (imports in one cell bind
    names in the next), each reported at its cell and line.

    Raises:
        ValueError: for a file that is not a notebook.
    """
    cells = notebook_cells(text)
    header = sorted({line for _, source in cells for line in _imports(source)})
    found: list[Finding] = []
    for number, source in cells:
        shifted = check_source("\n".join([*header, source]), path, cell=number, **options)
        for finding in shifted:
            line = finding.line - len(header)
            if line >= 1:
                found.append(dataclasses.replace(finding, line=line))
    return found
