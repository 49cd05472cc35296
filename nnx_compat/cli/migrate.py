"""``nnx-compat migrate PATH...``: rewrite legacy flax.nnx calls to the new API.

A dry run by default: it prints a unified diff (``--diff``). ``--write`` rewrites the files,
atomically (a temporary file in the same directory, then a rename; permissions kept); a file
that changed since it was read, does not parse or is not UTF-8 is skipped with a message and
never half-written. Notebooks: code cells are rewritten, outputs and metadata are untouched.
Ends with a summary: files changed, rewrites per pattern id, manual items left.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import difflib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from nnx_compat.checker import TARGETS, _imports
from nnx_compat.cli.check import UsageError, discover, target_argument

__all__ = ["FileResult", "add_parser", "command", "migrate_file", "migrate_text", "write_atomic"]

_MAGIC = "pass  # nnx-compat: magic {}"


@dataclasses.dataclass
class FileResult:
    path: str
    old: str
    new: str
    rewrites: collections.Counter[str]
    manual: list[tuple[int | None, int, int, str, str]]  # cell (notebooks), line, column, id, todo
    skipped: str = ""

    @property
    def changed(self) -> bool:
        return self.new != self.old


def _migrate_python(source: str, target: str) -> Any:
    from nnx_compat.codemod import migrate_source

    return migrate_source(source, target)


def _migrate_notebook(text: str, target: str) -> tuple[str, Any, list[Any]]:
    """The notebook with its code cells rewritten, as one namespace (imports of every cell
    bind names in each), IPython magics kept as they are."""
    notebook = json.loads(text)
    cells = [c for c in notebook.get("cells", []) if c.get("cell_type") == "code"]
    sources = [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells
    ]
    header = sorted({line for source in sources for line in _imports(_unmagic(source)[0])})
    counts: collections.Counter[str] = collections.Counter()
    manual: list[Any] = []
    changed = False
    for number, (cell, source) in enumerate(zip(cells, sources, strict=True), start=1):
        plain, magics = _unmagic(source)
        result = _migrate_python("\n".join([*header, plain]), target)
        lines = result.code.split("\n")
        if lines[: len(header)] != header:  # a rewrite reached the imports: leave the cell
            manual.append((number, 1, 0, "migrate", "cell not rewritten: its imports changed"))
            continue
        new = _remagic("\n".join(lines[len(header) :]), magics)
        counts.update(result.rewrites)
        manual += [
            (number, m.line - len(header), m.column, m.pattern, m.todo) for m in result.manual
        ]
        if new != source:
            changed = True
            cell["source"] = (
                new.splitlines(keepends=True) if isinstance(cell["source"], list) else new
            )
    if not changed:
        return text, counts, manual
    indent = _json_indent(text)
    out = json.dumps(notebook, indent=indent, ensure_ascii=False)
    return out + ("\n" if text.endswith("\n") else ""), counts, manual


def _unmagic(source: str) -> tuple[str, dict[int, str]]:
    magics: dict[int, str] = {}
    lines = source.split("\n")
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            magics[i] = line
            lines[i] = line[: len(line) - len(stripped)] + _MAGIC.format(i)
    return "\n".join(lines), magics


def _remagic(source: str, magics: dict[int, str]) -> str:
    def restore(match: re.Match[str]) -> str:
        return magics[int(match.group(2))]

    return re.sub(r"(?m)^([ \t]*)pass  # nnx-compat: magic (\d+)$", restore, source)


def _json_indent(text: str) -> int:
    match = re.search(r"\n( +)\"", text)
    return len(match.group(1)) if match else 1


def migrate_text(text: str, path: str, target: str) -> tuple[str, Any, list[Any]]:
    """``(new text, rewrites per pattern, manual items)`` for one file's text.

    Raises:
        SyntaxError: for Python that does not parse; ValueError for a broken notebook.
    """
    if path.endswith(".ipynb"):
        return _migrate_notebook(text, target)
    result = _migrate_python(text, target)
    manual = [(None, m.line, m.column, m.pattern, m.todo) for m in result.manual]
    return result.code, collections.Counter(result.rewrites), manual


def migrate_file(path: str, target: str) -> FileResult:
    """The rewrite of one file, or why it is skipped (nothing is written here)."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return FileResult(path, "", "", collections.Counter(), [], f"not UTF-8 ({error.reason})")
    try:
        new, counts, manual = migrate_text(text, path, target)
    except SyntaxError as error:
        return FileResult(
            path, text, text, collections.Counter(), [], f"does not parse (line {error.lineno})"
        )
    except ValueError as error:
        return FileResult(path, text, text, collections.Counter(), [], f"not a notebook: {error}")
    return FileResult(path, text, new, counts, manual)


def write_atomic(path: str, old: str, new: str) -> str | None:
    """Writes ``new`` over ``path`` if it still holds ``old``; an error message otherwise.

    A temporary file in the same directory takes the text and the file's permissions, then
    replaces the file in one rename: a reader sees the old file or the new one, never half.
    """
    target = Path(path)
    try:
        if target.read_bytes() != old.encode("utf-8"):
            return "changed since it was read: not written"
    except OSError as error:
        return f"cannot read it again: {error}"
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(new)
            out.flush()
            os.fsync(out.fileno())
        shutil.copymode(target, temporary)
        os.replace(temporary, target)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        return f"not written: {error}"
    return None


def command(args: argparse.Namespace) -> int:
    """``nnx-compat migrate``."""
    from nnx_compat.codemod import MissingLibcst

    try:
        files = [str(p) for p in discover(args.paths, args.exclude)]
    except UsageError as error:
        print(f"nnx-compat migrate: {error}", file=sys.stderr)
        return 2
    totals: collections.Counter[str] = collections.Counter()
    changed = written = 0
    problems = 0
    manual_lines: list[str] = []
    for path in files:
        try:
            result = migrate_file(path, args.target)
        except MissingLibcst as error:
            print(f"nnx-compat migrate: {error}", file=sys.stderr)
            return 2
        if result.skipped:
            problems += 1
            print(f"nnx-compat migrate: {path}: skipped, {result.skipped}", file=sys.stderr)
            continue
        totals.update(result.rewrites)
        for cell, line, column, pattern, todo in result.manual:
            where = (
                f"{path}:cell {cell}:line {line}:{column}" if cell else f"{path}:{line}:{column}"
            )
            manual_lines.append(f"{where}: nnx-compat[{pattern}] manual: {todo}")
        if not result.changed:
            continue
        changed += 1
        if args.write:
            failure = write_atomic(path, result.old, result.new)
            if failure:
                problems += 1
                print(f"nnx-compat migrate: {path}: {failure}", file=sys.stderr)
            else:
                written += 1
        else:
            sys.stdout.writelines(
                difflib.unified_diff(
                    result.old.splitlines(keepends=True),
                    result.new.splitlines(keepends=True),
                    f"a/{path}",
                    f"b/{path}",
                )
            )
    for text in manual_lines:
        print(text, file=sys.stderr)
    per_id = ", ".join(f"{n} {i}" for i, n in sorted(totals.items())) or "none"
    action = f"{written} written" if args.write else "dry run, nothing written"
    print(
        f"nnx-compat migrate: {len(files)} files, {changed} to change ({action}); rewrites: "
        f"{per_id}; {len(manual_lines)} manual items",
        file=sys.stderr,
    )
    return 1 if problems else 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "migrate",
        help="rewrite legacy flax.nnx calls to the new API (a dry run unless --write)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("paths", nargs="+", metavar="PATH")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--diff", action="store_true", help="print a unified diff (the default)")
    mode.add_argument("--write", action="store_true", help="rewrite the files in place")
    parser.add_argument(
        "--target",
        type=target_argument,
        default=TARGETS[-1],
        metavar="{0.11,0.12,RELEASE}",
        help="the flax API level to reach: a generation (its newest release) or a release, "
        "whose API the rewrites use (0.12.3: fork(split=) and sharding_names stay)",
    )
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB")
    parser.set_defaults(func=command)
