"""``nnx-compat migrate`` on notebooks: the code cells of a ``.ipynb`` or a MyST ``.md``
rewritten as one module, everything else in the file kept byte for byte.

The cells are joined in order with a boundary comment between two, so that a name or a type
bound in one cell is known in the next, rewritten once, and split again at the boundaries; if
a rewrite lost a boundary, each cell is rewritten on its own (with the imports of all) instead.
IPython's magics stay as they are; a cell that does not parse on its own, or that a cell magic
gives to another language, is left as it is. libcst is imported when a rewrite runs, as by the
rest of :mod:`nnx_compat.codemod`.
"""

from __future__ import annotations

import ast
import bisect
import collections
import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Final

from nnx_compat.checker import _imports, syntax_error
from nnx_compat.checker import notebooks as _notebooks

__all__ = ["ManualItem", "migrate_notebook", "remagic", "unmagic"]

#: ``(cell, line, column, pattern id, what to do)``: a .ipynb's line counts in its cell; a
#: MyST notebook's is the file's, with no cell (so that editors jump to it).
ManualItem = tuple[int | None, int, int, str, str]

_MAGIC: Final = "pass  # nnx-compat: magic {}"
_MAGIC_BACK: Final = re.compile(r"(?m)^([ \t]*)pass  # nnx-compat: magic (\d+)$")
_BOUNDARY: Final = "# nnx-compat: cell boundary {}"
_BOUNDARY_LINE: Final = re.compile(r"(?m)^# nnx-compat: cell boundary (\d+)\n")


def unmagic(source: str) -> tuple[str, dict[int, str]]:
    """The cell's code with each IPython magic line as a numbered ``pass`` comment at its
    indentation, and the lines taken out (to put back with :func:`remagic`)."""
    lines = source.split("\n")
    magics: dict[int, str] = {}
    for index in _notebooks.magic_lines(source):
        line = lines[index]
        magics[index] = line
        lines[index] = line[: len(line) - len(line.lstrip())] + _MAGIC.format(index)
    return "\n".join(lines), magics


def remagic(code: str, magics: dict[int, str]) -> str:
    """The magic lines :func:`unmagic` took out, back in their place."""

    def restore(match: re.Match[str]) -> str:
        return magics[int(match.group(2))]

    return _MAGIC_BACK.sub(restore, code)


@dataclasses.dataclass(frozen=True)
class _Cell:
    """A code cell being rewritten: its record, its code without magics and the magics."""

    cell: _notebooks.Cell
    code: str
    magics: dict[int, str]


def _migrate(source: str, target: str) -> Any:
    from nnx_compat.codemod import migrate_source

    return migrate_source(source, target)


def migrate_notebook(
    text: str, path: str, target: str
) -> tuple[str, collections.Counter[str], list[ManualItem]]:
    """``(new text, rewrites per pattern id, manual items)`` for a notebook's text: a MyST one
    for a ``.md`` path (a ``.md`` without code cells is returned as it is), else a ``.ipynb``.

    Raises:
        ValueError: for an ``.ipynb`` that is not a notebook.
        MissingLibcst: without libcst.
    """
    myst = path.endswith(".md")

    def item(cell: _notebooks.Cell, line: int, column: int, pattern: str, todo: str) -> ManualItem:
        if myst:
            return (None, cell.lines[min(max(line, 1), len(cell.lines)) - 1], column, pattern, todo)
        return (cell.number, line, column, pattern, todo)

    manual: list[ManualItem] = []
    cells: list[_Cell] = []
    for cell in _notebooks.code_cells(text, path):
        if not _notebooks.is_python(cell.source):
            continue
        code, magics = unmagic(cell.source)
        try:
            ast.parse(code)
        except (SyntaxError, ValueError) as error:  # ValueError: a null byte, on Python 3.11
            fault = syntax_error(error, path)
            todo = f"the cell does not parse ({fault.message}): not rewritten"
            manual.append(item(cell, fault.line, fault.column, "syntax-error", todo))
            continue
        cells.append(_Cell(cell, code, magics))
    counts: collections.Counter[str] = collections.Counter()
    if not cells:
        return text, counts, manual
    outcome = _as_one_module(cells, target)
    if outcome is None:
        outcome = _cell_by_cell(cells, target)
    new_codes, rewrites, found = outcome
    counts.update(rewrites)
    manual += [item(cells[i].cell, line, column, p, todo) for i, line, column, p, todo in found]
    sources = {}
    for done, rewritten in zip(cells, new_codes, strict=True):
        if rewritten is None:
            continue
        new = remagic(rewritten, done.magics)
        if new != done.cell.source:
            sources[done.cell.number] = new
    if not sources:
        return text, counts, manual
    return _notebooks.replace_sources(text, path, sources), counts, manual


Found = list[tuple[int, int, int, str, str]]  # (cell index, line in cell, column, id, todo)


def _as_one_module(
    cells: Sequence[_Cell], target: str
) -> tuple[list[str | None], dict[str, int], Found] | None:
    """The cells rewritten as one module; None where a boundary did not survive the rewrite."""
    if any("nnx-compat: cell boundary" in c.code for c in cells):
        return None
    parts, starts, line = [], [], 1
    for index, cell in enumerate(cells):
        if index:
            parts.append(_BOUNDARY.format(index) + "\n")
            line += 1
        starts.append(line)
        parts.append(cell.code + "\n")
        line += cell.code.count("\n") + 1
    result = _migrate("".join(parts), target)  # cells that parse make a module that parses
    pieces = _BOUNDARY_LINE.split(result.code)
    numbers = [int(n) for n in pieces[1::2]]
    codes = pieces[0::2]
    if numbers != list(range(1, len(cells))) or not all(c.endswith("\n") for c in codes):
        return None
    found: Found = []
    for m in result.manual:
        index = max(0, _index(starts, m.line))
        found.append((index, m.line - starts[index] + 1, m.column, m.pattern, m.todo))
    return [c[:-1] for c in codes], dict(result.rewrites), found


def _index(starts: Sequence[int], line: int) -> int:
    return bisect.bisect_right(starts, line) - 1


def _cell_by_cell(
    cells: Sequence[_Cell], target: str
) -> tuple[list[str | None], dict[str, int], Found]:
    """Each cell rewritten on its own, with the imports of all the cells above its code; a cell
    whose rewrite reached those imports is left (a manual item)."""
    header = sorted({line for cell in cells for line in _imports(cell.code)})
    codes: list[str | None] = []
    counts: collections.Counter[str] = collections.Counter()
    found: Found = []
    for index, cell in enumerate(cells):
        result = _migrate("\n".join([*header, cell.code]), target)
        lines = result.code.split("\n")
        if lines[: len(header)] != header:
            found.append((index, 1, 0, "migrate", "cell not rewritten: its imports changed"))
            codes.append(None)
            continue
        codes.append("\n".join(lines[len(header) :]))
        counts.update(result.rewrites)
        found += [(index, m.line - len(header), m.column, m.pattern, m.todo) for m in result.manual]
    return codes, dict(counts), found
