"""Notebooks as people keep them: Jupyter ``.ipynb`` files and MyST markdown notebooks
(``.md`` with ``{code-cell}`` blocks, as jupytext pairs them).

Both are read into the same :class:`Cell` records: the code of each code cell, its number
among all the notebook's cells (from 1, as Jupyter counts them, so that the two files of a
jupytext pair number a cell alike), the line of the file each of its lines is on, and where its
code lies in the file's text, so that a rewrite replaces that and nothing else. IPython's
syntax (``%magic``, ``!shell``, ``x = !cmd``, ``name?``) is found line by line so that the rest
parses as Python; a cell whose magic makes it another language (``%%bash``) is not Python.
Nothing here needs libcst or flax.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

__all__ = [
    "Cell",
    "code_cells",
    "is_myst_notebook",
    "is_python",
    "load_ipynb",
    "magic_lines",
    "paired_files",
    "replace_sources",
]

_CODE_CELL: Final = re.compile(r"(?m)^(`{3,}|~{3,})\{code-cell\}")
#: Cell magics whose body is Python (``%%time``); any other ``%%`` makes a cell another language.
_PYTHON_CELL_MAGICS: Final = frozenset(
    {"time", "timeit", "capture", "prun", "debug", "python", "python3", "px", "memit"}
)
# a magic at the start of a statement: %line, %%cell, !shell, ?help, help?, x = !cmd, t = %time f()
_MAGIC: Final = re.compile(
    r"""[ \t]*(?:
        [%!]
      | \?{1,2}[\w.]+[ \t]*\r?$
      | [\w.]+\?{1,2}[ \t]*\r?$
      | [A-Za-z_][\w.]*(?:[ \t]*,[ \t]*[A-Za-z_][\w.]*)*[ \t]*=[ \t]*[%!]
    )""",
    re.VERBOSE,
)


def is_myst_notebook(text: str) -> bool:
    """Whether a ``.md`` file's text is a MyST notebook (has at least one ``{code-cell}``)."""
    return _CODE_CELL.search(text) is not None


@dataclasses.dataclass(frozen=True)
class Cell:
    """One code cell of a notebook.

    Attributes:
        number: Its place among all the notebook's cells, from 1 (markdown cells count).
        source: Its code as the cell holds it (magics included, no trailing newline added).
        lines: The file's line (from 1) of each of its lines: for a ``.ipynb``, the line of
            the JSON string that holds it; for a MyST ``.md``, the line itself.
        span: Where its code lies in the file's text (``.ipynb``: the ``"source"`` value;
            ``.md``: the lines between the options and the closing fence).
    """

    number: int
    source: str
    lines: tuple[int, ...]
    span: tuple[int, int]


# ---------------------------------------------------------------------------- IPython syntax


def magic_lines(source: str) -> list[int]:
    """The indexes of the lines of a cell's code (split at ``\\n``) that are IPython syntax: a
    ``%`` line magic, a ``%%`` cell magic, ``!`` shell, ``x = !cmd``, ``name?`` help.

    Only a line that starts a statement counts: ``% x`` continuing a bracketed expression and
    lines inside a triple-quoted string are Python.
    """
    found = []
    depth = 0
    quote = ""
    continued = False
    for index, line in enumerate(source.split("\n")):
        starts_statement = depth == 0 and not quote and not continued
        if starts_statement and _MAGIC.match(line):
            found.append(index)
            continue
        depth, quote, continued = _scan_line(line, depth, quote)
    return found


def _scan_line(line: str, depth: int, quote: str) -> tuple[int, str, bool]:
    """Bracket depth, open string and backslash continuation after one line of Python."""
    i, n = 0, len(line.rstrip("\r"))
    while i < n:
        char = line[i]
        if quote:
            if char == "\\":
                i += 2
            elif line.startswith(quote, i):
                i += len(quote)
                quote = ""
            else:
                i += 1
            continue
        if char == "#":
            return depth, quote, False
        if char in "\"'":
            quote = line[i : i + 3] if line[i : i + 3] in ('"""', "'''") else char
            i += len(quote)
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(0, depth - 1)
        i += 1
    # a statement, or a one-quote string, continued by a backslash at the end
    continued = i == n + 1 or (not quote and line[:n].endswith("\\"))
    if len(quote) == 1 and not continued:
        quote = ""  # an unterminated one-line string: a syntax error the parser reports
    return depth, quote, continued


def is_python(source: str) -> bool:
    """Whether a cell's code is Python: not one that a cell magic (``%%bash``,
    ``%%writefile``) gives to another language."""
    first = source.lstrip().split("\n", 1)[0]
    if not first.startswith("%%"):
        return True
    name = re.match(r"%%([\w.-]*)", first)
    return name is not None and name.group(1) in _PYTHON_CELL_MAGICS


# -------------------------------------------------------------------------------- .ipynb


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    kinds = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def load_ipynb(text: str) -> dict[str, Any]:
    """A Jupyter notebook's JSON, checked to have the structure the tools read: an object with
    a ``"cells"`` list of objects, each with a ``cell_type`` and a ``source`` that is a string or
    a list of strings.

    Raises:
        ValueError: naming what is wrong (not JSON, a list, a cell that is not an object...).
    """
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error})") from None
    if not isinstance(notebook, dict):
        raise ValueError(f"a notebook is a JSON object, this is {_kind(notebook)}")
    if "cells" not in notebook:
        if "worksheets" in notebook:
            raise ValueError(
                "an nbformat 3 notebook: convert it first (jupyter nbconvert --to notebook "
                "--nbformat 4)"
            )
        raise ValueError('no "cells" list')
    cells = notebook["cells"]
    if not isinstance(cells, list):
        raise ValueError(f'"cells" is {_kind(cells)}, not a list')
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict):
            raise ValueError(f"cell {number} is {_kind(cell)}, not an object")
        if not isinstance(cell.get("cell_type"), str):
            raise ValueError(f"cell {number} has no cell_type")
        source = cell.get("source", "")
        if not isinstance(source, str) and not (
            isinstance(source, list) and all(isinstance(s, str) for s in source)
        ):
            raise ValueError(
                f"cell {number}'s source is {_kind(source)}, not a string or a list of strings"
            )
    return notebook


_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")
_DECODER: Final = json.JSONDecoder()


def _skip_space(text: str, i: int) -> int:
    match = _WHITESPACE.match(text, i)
    assert match is not None
    return match.end()


def _members(text: str, i: int) -> Iterator[tuple[str, int, int]]:
    """``(key, start, end)`` of each member of the JSON object at ``text[i]``."""
    i = _skip_space(text, i)
    if text[i] != "{":
        raise ValueError(f"expected an object at offset {i}")
    i = _skip_space(text, i + 1)
    while text[i] != "}":
        key, i = _DECODER.raw_decode(text, i)
        i = _skip_space(text, _skip_space(text, i) + 1)  # past the colon
        end = _DECODER.raw_decode(text, i)[1]
        yield key, i, end
        i = _skip_space(text, end)
        if text[i] == ",":
            i = _skip_space(text, i + 1)


def _items(text: str, i: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each item of the JSON array at ``text[i]``."""
    i = _skip_space(text, i + 1)
    while text[i] != "]":
        end = _DECODER.raw_decode(text, i)[1]
        yield i, end
        i = _skip_space(text, end)
        if text[i] == ",":
            i = _skip_space(text, i + 1)


def _member(text: str, i: int, name: str) -> tuple[int, int] | None:
    """Where the value of ``name`` lies in the object at ``text[i]`` (the last one, as
    :func:`json.loads` keeps the last of repeated keys)."""
    found = None
    for key, start, end in _members(text, i):
        if key == name:
            found = (start, end)
    return found


def _ipynb_cells(text: str) -> list[Cell]:
    notebook = load_ipynb(text)
    where = _member(text, _skip_space(text, 0), "cells")
    assert where is not None
    spans = list(_items(text, where[0]))
    newlines = _LineIndex(text)
    out = []
    for number, (cell, (start, _)) in enumerate(zip(notebook["cells"], spans, strict=True), 1):
        if cell["cell_type"] != "code":
            continue
        value = _member(text, start, "source")
        if value is None:  # no source: an empty cell
            out.append(Cell(number, "", (newlines.line(start),), (start, start)))
            continue
        source = cell["source"]
        if isinstance(source, str):
            lines = (newlines.line(value[0]),) * (source.count("\n") + 1)
            out.append(Cell(number, source, lines, value))
            continue
        # each line of the joined source is on the line of the string it starts in
        starts = [newlines.line(s) for s, _ in _items(text, value[0])]
        lines = tuple(_cell_lines(source, starts, newlines.line(value[0])))
        out.append(Cell(number, "".join(source), lines, value))
    return out


def _cell_lines(pieces: Sequence[str], lines: Sequence[int], default: int) -> list[int]:
    """The file line of each line of ``"".join(pieces)``, piece ``i`` being on ``lines[i]``."""
    out: list[int] = []
    fresh = True  # the next character starts a line
    for piece, line in zip(pieces, lines, strict=True):
        if not piece:
            continue
        if fresh:
            out.append(line)
        breaks = piece.count("\n")
        fresh = piece.endswith("\n")
        out.extend([line] * (breaks - 1 if fresh else breaks))
    if fresh:  # the empty line after a final newline, or the one line of an empty cell
        out.append(out[-1] if out else default)
    return out


class _LineIndex:
    """Line numbers (from 1) of offsets in a text."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)


# ---------------------------------------------------------------------------------- MyST

_FENCE: Final = re.compile(r"( {0,3})(`{3,}|~{3,})[ \t]*([^\r\n]*)")
_BLOCK_BREAK: Final = re.compile(r" {0,3}\+\+\+")
_FRONT_MATTER: Final = re.compile(r"-{3,}[ \t]*\r?\n?\Z")


def _myst_cells(text: str) -> list[Cell]:
    """The code cells of a MyST notebook, numbered as jupytext numbers the cells of the
    ``.ipynb`` it pairs with: the prose between two code (or raw) cells is one markdown cell
    if it is not blank, or several where ``+++`` lines split it; the front matter is none."""
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    if starts[-1] == len(text):
        starts.pop()  # no line after a final newline
    lines = [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    index = 0
    if lines and _FRONT_MATTER.match(lines[0]):
        for end in range(1, len(lines)):
            if _FRONT_MATTER.match(lines[end]):
                index = end + 1
                break
    cells: list[Cell] = []
    number = 0
    prose = False  # a markdown cell is open: a non-blank line since the last cell or +++
    while index < len(lines):
        line = lines[index]
        if line.lstrip(" ").startswith("<!--"):  # an HTML comment: nothing in it is a cell
            while index < len(lines) and "-->" not in lines[index]:
                index += 1
            prose = True
            index += 1
            continue
        if _BLOCK_BREAK.match(line):
            number += prose
            prose = False
            index += 1
            continue
        fence = _FENCE.match(line)
        if fence is None:
            prose = prose or bool(line.strip())
            index += 1
            continue
        indent, marker, info = fence.groups()
        if marker[0] == "`" and "`" in info:  # not a fence: inline code
            prose = True
            index += 1
            continue
        close = re.compile(rf" {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*\r?\n?\Z")
        end = index + 1
        while end < len(lines) and not close.match(lines[end]):
            end += 1
        if indent or not info.startswith(("{code-cell}", "{raw-cell}")):
            prose = True  # a code block in the prose
        else:
            number += prose + 1
            prose = False
            if info.startswith("{code-cell}"):
                body = _body(lines, index + 1, end)
                offset = starts[body] if body < len(lines) else len(text)
                stop = starts[end] if end < len(lines) else len(text)
                code = [line.rstrip("\r\n") for line in lines[body:end]]
                cells.append(
                    Cell(
                        number,
                        "\n".join(code),
                        tuple(range(body + 1, end + 1)) or (body + 1,),
                        (offset, stop),
                    )
                )
        index = end + 1
    return cells


def _body(lines: Sequence[str], first: int, end: int) -> int:
    """Where a code cell's code starts: after its options (``:key: value`` lines, or a YAML
    block between ``---`` lines) and the blank line that may follow them, as jupytext reads."""
    index = first
    if index < end and lines[index].startswith("---"):
        index += 1
        while index < end and not lines[index].startswith("---"):
            index += 1
        index += 1
    elif index < end and lines[index].lstrip().startswith(":"):
        while index < end and lines[index].lstrip().startswith(":"):
            index += 1
    if index < end and not lines[index].strip():
        index += 1
    return min(index, end)


def code_cells(text: str, path: str) -> list[Cell]:
    """The code cells of a notebook: a MyST one for a ``.md`` path, else a ``.ipynb``.

    Raises:
        ValueError: for an ``.ipynb`` that is not a notebook (see :func:`load_ipynb`).
    """
    if path.endswith(".md"):
        return _myst_cells(text)
    return _ipynb_cells(text)


# ------------------------------------------------------------------------------ rewriting


def replace_sources(text: str, path: str, sources: dict[int, str]) -> str:
    """The notebook's text with the code of some cells replaced (cell number -> new code) and
    every other byte as it was.

    In a ``.ipynb`` only those cells' ``"source"`` values change, written as the file writes
    them: a list of lines or a string, the same indentation and separators, non-ASCII escaped
    or not; lines that did not change keep their JSON text. In a MyST ``.md`` the lines of those
    code cells change, with the file's line endings.

    Raises:
        ValueError: for an ``.ipynb`` that is not a notebook.
    """
    cells = {cell.number: cell for cell in code_cells(text, path)}
    myst = path.endswith(".md")
    ascii_only = not myst and _ascii_only(text)
    pieces, done = [], 0
    for number in sorted(sources, key=lambda n: cells[n].span[0]):
        start, end = cells[number].span
        if start == end and not myst:
            raise ValueError(f"cell {number} has no source to replace")
        if myst:
            new = _myst_body(text[start:end], sources[number])
        else:
            new = _json_source(text, start, end, sources[number], ascii_only)
        pieces += [text[done:start], new]
        done = end
    return "".join([*pieces, text[done:]])


def _myst_body(old: str, code: str) -> str:
    newline = "\r\n" if old.endswith("\r\n") or "\r\n" in old[:200] else "\n"
    lines = code.split("\n")
    body = newline.join(lines)
    return body + newline if old.endswith("\n") or not old else body


def _ascii_only(text: str) -> bool:
    """Whether the file escapes non-ASCII characters (``json.dumps``' default) rather than
    writing them as they are (nbformat's way)."""
    if not text.isascii():
        return False
    return any(int(m.group(1), 16) > 0x7F for m in re.finditer(r"\\u([0-9a-fA-F]{4})", text))


def _json_source(text: str, start: int, end: int, code: str, ascii_only: bool) -> str:
    """A new ``"source"`` value in the layout of the old one at ``text[start:end]``."""
    if text[start] == '"':
        return json.dumps(code, ensure_ascii=ascii_only)
    items = list(_items(text, start))
    reuse = {_DECODER.decode(text[a:b]): text[a:b] for a, b in items}
    pieces = [
        reuse.get(line) or json.dumps(line, ensure_ascii=ascii_only)
        for line in code.splitlines(keepends=True)
    ]
    if items:
        before = text[start + 1 : items[0][0]]
        after = text[items[-1][1] : end - 1]
        if len(items) > 1:
            between = text[items[0][1] : items[1][0]]
        elif "\n" in before:
            between = "," + before
        else:
            between = "," + _compact_space(text, start)
    else:
        before, between, after = _empty_layout(text, start, end)
    if not pieces:
        return "[]"
    return "[" + before + between.join(pieces) + after + "]"


def _compact_space(text: str, value: int) -> str:
    """The space after a comma in a one-line layout: json.dumps' ``", "`` where the key's
    colon is followed by a space, the compact ``","`` where it is not."""
    colon = text.rfind(":", 0, value)
    return " " if text[colon + 1 : value].startswith(" ") else ""


def _empty_layout(text: str, start: int, end: int) -> tuple[str, str, str]:
    """Where an empty ``[]`` becomes a list: the space before the first item, between items
    and after the last, from the indentation of the ``"source"`` key's line."""
    line_start = text.rfind("\n", 0, start) + 1
    indent = re.match(r"[ \t]*", text[line_start:])
    key_indent = indent.group() if indent else ""
    if not text[line_start:start].lstrip(" \t").startswith('"'):  # not one key per line
        return "", "," + _compact_space(text, start), ""
    unit = re.search(r"\n([ \t]+)\S", text)
    step = unit.group(1) if unit else " "
    newline = "\r\n" if text[line_start - 2 : line_start] == "\r\n" else "\n"
    return newline + key_indent + step, "," + newline + key_indent + step, newline + key_indent


# ---------------------------------------------------------------------------------- pairs

_FORMATS_LINE: Final = re.compile(r"(?P<indent>[ \t]*)(?P<key>[\w-]+):[ \t]*(?P<value>.*)")


def _jupytext_formats(text: str, path: str) -> str | None:
    """The ``jupytext.formats`` a notebook declares (``"ipynb,md:myst"``), if any."""
    if path.endswith(".ipynb"):
        try:
            metadata = json.loads(text).get("metadata", {})
            formats = metadata.get("jupytext", {}).get("formats")
        except (ValueError, AttributeError):
            return None
        return formats if isinstance(formats, str) else None
    lines = text.splitlines()
    if path.endswith(".py"):  # the header in comments: # ---\n# jupyter:\n#   jupytext: ...
        lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines]
    if not lines or not re.fullmatch(r"-{3,}\s*", lines[0]):
        return None
    parents: list[tuple[int, str]] = []  # the keys above, by indentation
    for line in lines[1:]:
        if re.fullmatch(r"-{3,}\s*", line):
            break
        match = _FORMATS_LINE.fullmatch(line.rstrip())
        if match is None:
            continue
        depth = len(match["indent"])
        parents = [(d, k) for d, k in parents if d < depth]
        if match["key"] == "formats" and parents and parents[-1][1] == "jupytext":
            return match["value"].strip().strip("'\"") or None
        parents.append((depth, match["key"]))
    return None


def paired_files(path: str | Path) -> list[Path]:
    """The files of a jupytext pair that ``path`` belongs to, ``path`` first: the formats its
    metadata declares (``formats: ipynb,md:myst``) in the same directory, those that exist and
    are ``.ipynb``, MyST ``.md`` or ``.py``. Just ``[path]`` when it declares no pair or cannot
    be read; formats in other directories (``notebooks///ipynb``) are not followed.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return [path]
    formats = _jupytext_formats(text, path.name)
    if not formats:
        return [path]
    name = path.name
    for suffix in sorted(_suffixes(formats), key=len, reverse=True):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            break
    else:
        return [path]
    out = [path]
    for suffix in _suffixes(formats):
        partner = path.with_name(stem + suffix)
        if partner.name == name or not partner.is_file():
            continue
        if partner.suffix in (".ipynb", ".py") or (
            partner.suffix == ".md" and _is_myst_file(partner)
        ):
            out.append(partner)
    return out


def _suffixes(formats: str) -> list[str]:
    """The file-name endings of a jupytext formats string in this directory: ``"ipynb,
    .pct.py:percent"`` -> ``[".ipynb", ".pct.py"]``."""
    out = []
    for entry in formats.split(","):
        extension = entry.strip().split(":", 1)[0]
        if not extension or "/" in extension:
            continue
        out.append(extension if extension.startswith(".") else "." + extension)
    return out


def _is_myst_file(path: Path) -> bool:
    try:
        return is_myst_notebook(path.read_bytes().decode("utf-8", errors="replace"))
    except OSError:
        return False
