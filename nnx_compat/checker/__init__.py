"""``nnx-compat check``'s engine: the legacy flax.nnx patterns in source, without running it.

Static: files are parsed with :mod:`ast`; no user code is imported and flax need not be
installed. Each pattern of the table has a matcher (:mod:`nnx_compat.checker.rules`) or a
reason why only the run time can see it (``Pattern.static``). Suppress a finding with
``# nnx-compat: ignore`` or ``# nnx-compat: ignore[<id>, ...]`` on its line.
"""

from __future__ import annotations

import ast
import bisect
import dataclasses
import functools
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

from nnx_compat import _patterns
from nnx_compat.checker import notebooks
from nnx_compat.checker.facts import Facts, walk
from nnx_compat.checker.names import Names
from nnx_compat.checker.rules import RULES, Context
from nnx_compat.checker.targets import TARGETS, parse_target, target_at_least

__all__ = [
    "ERROR_IDS",
    "TARGETS",
    "Finding",
    "applies",
    "check_notebook",
    "check_source",
    "notebook_cells",
    "parse_target",
    "syntax_error",
    "target_at_least",
]


_IGNORE: Final = re.compile(r"#\s*nnx-compat:\s*ignore(?:\[([^\]]*)\])?")

#: The finding ids that are no legacy pattern but a file (or notebook cell) that could not be
#: checked, and what each means. Accepted wherever a pattern id is: ``--select`` (where they
#: are always reported, as a file that was not checked must not pass for clean), ``--ignore``,
#: ``# nnx-compat: ignore[...]`` on the line of the fault.
ERROR_IDS: Final = (
    (
        "read-error",
        "the file cannot be read: unreadable, a broken link, not in its encoding, not a notebook",
    ),
    ("syntax-error", "the code does not parse"),
)
_ERRORS: Final = frozenset(i for i, _ in ERROR_IDS)
#: A record's form written for an example attribute: ``self.layers = ...``.
_SUBJECT: Final = re.compile(r"^(self\.\w+)(?= = )")


@functools.total_ordering
@dataclasses.dataclass(frozen=True)
class Finding:
    """One legacy use: where, which pattern, and (for a file that does not parse) why not.

    Findings sort by file, then cell, then line: a notebook's in the order of its cells.
    """

    path: str
    line: int  # the file's line; in a .ipynb, the line in the cell (as Jupyter shows it)
    column: int
    pattern: str
    cell: int | None = None  # the notebook cell (1-based, all cells counted)
    message: str = ""
    #: in a .ipynb, the line of the JSON file that holds ``line`` of the cell; None where
    #: ``line`` is the file's own (a .py file, a MyST .md notebook)
    file_line: int | None = None
    #: the attribute the code assigns (``self.blocks``), for a record whose forms are written
    #: for an example attribute (``self.layers = [module, ...]``); empty elsewhere
    subject: str = ""

    def forms(self) -> tuple[str, str]:
        """The record's legacy and new forms, with the example attribute replaced by
        :attr:`subject` (``self.blocks = [module, ...] -> self.blocks = nnx.List(...)``)."""
        record = _patterns.get(self.pattern)
        legacy, new = record.legacy, record.new
        example = _SUBJECT.match(legacy)
        if self.subject and example is not None:
            legacy = self.subject + legacy[example.end(1) :]
            if new.startswith(example.group(1)):
                new = self.subject + new[example.end(1) :]
        return legacy, new

    def _order(self) -> tuple[str, int, int, int, str, str]:
        return (self.path, self.cell or 0, self.line, self.column, self.pattern, self.message)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Finding):
            return NotImplemented
        return self._order() < other._order()

    @property
    def where(self) -> str:
        if self.cell is not None and self.file_line is not None:  # nb.ipynb:cell 3:line 2:5
            return f"{self.path}:cell {self.cell}:line {self.line}:{self.column}"
        return f"{self.path}:{self.line}:{self.column}"

    @property
    def text_line(self) -> int:
        """The line of the file's text (what an editor or a CI annotation points at)."""
        return self.file_line if self.file_line is not None else self.line

    def text(self) -> str:
        """``path:line:col: nnx-compat[<id>] <legacy> -> <new> (flax <release>)``; a .ipynb's
        place reads ``path:cell 3:line 2:col``, a MyST notebook's ends with ``(cell 3)``."""
        in_cell = f" (cell {self.cell})" if self.cell is not None and self.file_line is None else ""
        if self.pattern in _ERRORS:
            return f"{self.where}: nnx-compat[{self.pattern}] {self.message}{in_cell}"
        record = _patterns.get(self.pattern)
        legacy, new = self.forms()
        return (
            f"{self.where}: nnx-compat[{record.id}] {legacy} -> {new} "
            f"(flax {record.changed_in}){in_cell}"
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
        if self.file_line is not None:
            out["file_line"] = self.file_line
        if self.pattern in _ERRORS:
            out["message"] = self.message
        else:
            record = _patterns.get(self.pattern)
            legacy, new = self.forms()
            out.update(legacy=legacy, new=new, changed_in=record.changed_in)
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


def _lines(source: str) -> list[str]:
    """The lines of ``source`` as Python numbers them (a form feed is no line break)."""
    return re.split(r"\r\n|\r|\n", source)


def syntax_error(error: SyntaxError | ValueError, path: str, cell: int | None = None) -> Finding:
    """The ``syntax-error`` finding of code that does not parse, at the 1-based line and column
    Python gives (its line's start where it gives none)."""
    if isinstance(error, SyntaxError):
        line, column, message = error.lineno, error.offset, error.msg
    else:
        line, column, message = None, None, str(error)
    return Finding(path, max(line or 1, 1), max(column or 1, 1), "syntax-error", cell, message)


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
    ignored = set(ignore)
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError) as error:  # ValueError: a null byte, on older Pythons
        fault = syntax_error(error, path, cell)
        if fault.pattern in ignored or _suppressed(_lines(source), fault.line, fault.pattern):
            return []
        return [fault]
    names = Names(tree)
    if not names.any:
        return []
    chosen = set(select) if select is not None else set(RULES)
    chosen -= ignored
    rules = [
        RULES[i]
        for i in sorted(chosen)
        if i in RULES
        and applies(_patterns.get(i), target)
        and (native or not _patterns.get(i).same_call)
    ]
    facts = Facts(tree, names)
    lines = _lines(source)
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
                    subject = _subject(node)
                    found.add(Finding(path, line, column, rule.pattern, cell, subject=subject))
    return sorted(found)


def _subject(node: ast.AST) -> str:
    """The attribute an assignment assigns (``self.blocks``), else ``""``."""
    targets = (
        node.targets
        if isinstance(node, ast.Assign)
        else [node.target]
        if isinstance(node, ast.AnnAssign | ast.AugAssign)
        else []
    )
    if len(targets) == 1 and isinstance(targets[0], ast.Attribute):
        return ast.unparse(targets[0])
    return ""


def _python(source: str) -> str:
    """A cell's code with IPython's magics and shell escapes as ``pass`` at their indentation
    (an ``if`` may hold only a magic), so that the rest parses; lines keep their numbers."""
    lines = source.split("\n")
    for index in notebooks.magic_lines(source):
        line = lines[index]
        lines[index] = line[: len(line) - len(line.lstrip())] + "pass"
    return "\n".join(lines)


def notebook_cells(text: str, path: str = "notebook.ipynb") -> list[tuple[int, str]]:
    """A notebook's Python code cells, numbered from 1 as Jupyter counts all cells, with
    IPython's magics and shell escapes replaced by ``pass`` so the rest parses; lines keep
    their numbers. A ``.md`` path reads a MyST notebook; a cell in another language
    (``%%bash``) is left out.

    Raises:
        ValueError: for a file that is not a notebook.
    """
    return [
        (cell.number, _python(cell.source))
        for cell in notebooks.code_cells(text, path)
        if notebooks.is_python(cell.source)
    ]


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
    """The findings of a notebook's code cells, checked as one module (the cells in order, so
    that names and types bound in one cell are known in the next), each reported at its cell
    and line: in a ``.ipynb`` the line in the cell (and :attr:`Finding.file_line`), in a MyST
    ``.md`` (its path ends with ``.md``) the file's line. A cell that does not parse on its own
    is a ``syntax-error`` finding and is left out of the module.

    Args:
        text: The notebook file's text.
        path: How findings name the file.
        **options: As for :func:`check_source`.

    Raises:
        ValueError: for a file that is not a notebook.
    """
    myst = path.endswith(".md")

    def place(finding: Finding, cell: notebooks.Cell, line: int) -> Finding:
        at = cell.lines[min(line, len(cell.lines)) - 1]
        if myst:
            return dataclasses.replace(finding, line=at, cell=cell.number, file_line=None)
        return dataclasses.replace(finding, line=line, cell=cell.number, file_line=at)

    found: list[Finding] = []
    parsed: list[tuple[notebooks.Cell, str]] = []
    for cell in notebooks.code_cells(text, path):
        if not notebooks.is_python(cell.source):
            continue
        code = _python(cell.source)
        try:
            ast.parse(code)
        except (SyntaxError, ValueError):  # its syntax-error (unless ignored), at its line
            found += [place(f, cell, f.line) for f in check_source(code, path, **options)]
            continue
        parsed.append((cell, code))
    starts, line = [], 1  # the module's line where each cell starts
    for _, code in parsed:
        starts.append(line)
        line += code.count("\n") + 1
    # cells that parse on their own make a module that parses
    for finding in check_source("\n".join(code for _, code in parsed), path, **options):
        index = bisect.bisect_right(starts, finding.line) - 1
        found.append(place(finding, parsed[index][0], finding.line - starts[index] + 1))
    return sorted(found)
