"""``nnx-compat migrate PATH...``: rewrite legacy flax.nnx calls to the new API.

A dry run by default: it prints a unified diff (``--diff``) that ``git apply`` and ``patch -p1``
take. ``--write`` rewrites the files. Notebooks: code cells are rewritten, outputs and metadata
are untouched. The last line is a summary: files, files to change, rewrites per pattern id,
manual items left, errors.

Exit status: 0 nothing is left to do (nothing to change, or ``--write`` wrote every change) and
no manual item is left; 1 work is left: changes pending (a dry run that would change files),
manual items, or an error; 2 a usage error (a path that does not exist, libcst missing).

Files are read and written as ruff and black read and write them: a .py file in its declared
encoding, its byte order mark and newlines kept; a link written through to its file, and a file
reached under several names (links) migrated once; owner, group and mode kept; a file with no
write permission for the user (for root: none at all) is not written. Errors are per file: a
file that cannot be read or decoded (read-error), does not parse (syntax-error) or cannot be
written is reported with its path, never half-written, and the run goes on with the other files
(exit status 1). A directory the user cannot write does not protect the files in it: a file the
user may write is rewritten in place there, as ruff and black write every file.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import difflib
import os
import sys
from collections.abc import Iterable
from typing import Any

from nnx_compat.checker import TARGETS, Finding, syntax_error
from nnx_compat.checker.notebooks import paired_files
from nnx_compat.cli import _discover
from nnx_compat.cli._discover import UsageError, discover_for
from nnx_compat.cli._source import Source, SourceError, decode, read_text, write_text
from nnx_compat.cli._style import EXIT_STATUS, add_color_argument, paint, use_color
from nnx_compat.cli.check import plural, reads_stdin, stdin_argument, target_argument

__all__ = ["FileResult", "add_parser", "command", "migrate_file", "migrate_text", "unified_diff"]


@dataclasses.dataclass
class FileResult:
    """One file's rewrite, or the error that skipped it."""

    path: str
    old: str
    new: str
    rewrites: collections.Counter[str]
    manual: list[tuple[int | None, int, int, str, str]]  # cell (notebooks), line, column, id, todo
    error: Finding | None = None  #: a read-error or syntax-error: the file is skipped
    source: Source | None = None  #: the file as read, to write it back alike

    @property
    def changed(self) -> bool:
        return self.new != self.old


def _migrate_python(source: str, target: str) -> Any:
    from nnx_compat.codemod import migrate_source

    return migrate_source(source, target)


def migrate_text(text: str, path: str, target: str) -> tuple[str, Any, list[Any]]:
    """``(new text, rewrites per pattern, manual items)`` for one file's text: a ``.ipynb`` or
    a MyST ``.md`` notebook's code cells (:mod:`nnx_compat.codemod.notebooks`), else Python.

    Raises:
        SyntaxError: for Python that does not parse; ValueError for a broken notebook.
    """
    if path.endswith((".ipynb", ".md")):
        from nnx_compat.codemod.notebooks import migrate_notebook

        return migrate_notebook(text, path, target)
    result = _migrate_python(text, target)
    manual = [(None, m.line, m.column, m.pattern, m.todo) for m in result.manual]
    return result.code, collections.Counter(result.rewrites), manual


def migrate_file(path: str, target: str, raw: bytes | None = None) -> FileResult:
    """The rewrite of one file, or the ``read-error`` or ``syntax-error`` that skips it
    (nothing is written here). ``raw``: the file's bytes, when they come from elsewhere
    (standard input) and ``path`` only names them.

    Raises:
        MissingLibcst: without libcst.
    """
    try:
        source = read_text(path) if raw is None else decode(raw, path)
    except SourceError as error:
        fault = Finding(path, error.line, error.column, "read-error", None, error.message)
        return FileResult(path, "", "", collections.Counter(), [], fault)
    text = source.text
    try:
        new, counts, manual = migrate_text(text, path, target)
    except SyntaxError as error:
        return FileResult(path, text, text, collections.Counter(), [], syntax_error(error, path))
    except ValueError as error:
        fault = Finding(path, 1, 1, "read-error", None, f"not a notebook: {error}")
        return FileResult(path, text, text, collections.Counter(), [], fault)
    except Exception as error:
        if type(error).__name__ != "ParserSyntaxError":  # libcst's, for code ast reads
            raise
        line, column = getattr(error, "editor_line", 1), getattr(error, "editor_column", 1)
        message = f"libcst cannot parse it: {getattr(error, 'message', error)}"
        fault = Finding(path, line, column, "syntax-error", None, message)
        return FileResult(path, text, text, collections.Counter(), [], fault)
    return FileResult(path, text, new, counts, manual, source=source)


def _lines(text: str) -> list[str]:
    """``text``'s lines with their ends, split at ``\\n`` only (as diff and patch count them; a
    form feed or a CR alone does not end a line)."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def unified_diff(old: str, new: str, path: str) -> list[str]:
    """The unified diff from ``old`` to ``new``, as ``git diff`` writes it (``a/`` and ``b/``
    before the path, ``\\ No newline at end of file`` after a last line without one)."""
    out = []
    for line in difflib.unified_diff(_lines(old), _lines(new), f"a/{path}", f"b/{path}"):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return out


def _colored(diff: list[str]) -> list[str]:
    """A diff's lines coloured as ``git diff`` colours them (for a terminal only: a coloured
    diff does not apply)."""
    out = []
    for line in diff:
        if line.startswith(("+++", "---")):
            out.append(paint(line.rstrip("\n"), "bold", True) + "\n")
        elif line.startswith(("+", "-", "@@")):
            style = {"+": "green", "-": "red", "@": "cyan"}[line[0]]
            out.append(paint(line.rstrip("\n"), style, True) + "\n")
        else:
            out.append(line)
    return out


def _once(paths: Iterable[str]) -> list[str]:
    """``paths`` less those that lead to a file met already (links to it, or itself)."""
    seen: set[str] = set()
    out = []
    for path in paths:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            out.append(path)
    return out


def _skipped(fault: Finding) -> str:
    return f"{fault.where}: nnx-compat[{fault.pattern}] skipped: {fault.message}"


def command(args: argparse.Namespace) -> int:
    """``nnx-compat migrate``: its exit status is the module's docstring's."""
    from nnx_compat.codemod import MissingLibcst, runtime_note

    try:
        stdin = reads_stdin(args)
        unreadable: list[tuple[str, str]] = []
        if stdin:
            files = [args.stdin_filename]
        else:
            found, unreadable = discover_for(args, "migrate")
            # a jupytext pair's files change together; a file reached through links, once
            files = _once(str(f) for p in found for f in paired_files(p))
    except UsageError as error:
        print(f"nnx-compat migrate: {error}", file=sys.stderr)
        return 2
    totals: collections.Counter[str] = collections.Counter()
    changed = written = 0
    errors = [
        _skipped(Finding(path, 1, 1, "read-error", None, why))
        for path, why in dict.fromkeys(unreadable)  # a path named and walked: once
    ]
    manual_lines: list[str] = []
    for path in files:
        try:
            result = migrate_file(path, args.target, sys.stdin.buffer.read() if stdin else None)
        except MissingLibcst as error:
            print(error, file=sys.stderr)  # "nnx-compat migrate needs libcst: pip install ..."
            return 2
        if result.error is not None or result.source is None:
            errors.append(_skipped(result.error or Finding(path, 1, 1, "read-error")))
            continue
        totals.update(result.rewrites)
        for cell, line, column, pattern, todo in result.manual:
            where = (
                f"{path}:cell {cell}:line {line}:{column}" if cell else f"{path}:{line}:{column}"
            )
            manual_lines.append(f"{where}: nnx-compat[{pattern}] manual: {todo}")
        if stdin and args.write:  # standard input's rewrite goes to standard output, as black's
            sys.stdout.flush()
            sys.stdout.buffer.write(result.source.encode(result.new))
        if not result.changed:
            continue
        changed += 1
        if stdin and args.write:
            written += 1
        elif args.write:
            failure = write_text(path, result.source, result.new)
            if failure:
                errors.append(f"nnx-compat migrate: {path}: {failure}")
            else:
                written += 1
        else:
            diff = unified_diff(result.old, result.new, path)
            sys.stdout.writelines(_colored(diff) if use_color(args, sys.stdout) else diff)
    sys.stdout.flush()  # the summary stays the last line where both streams meet
    for text in [*errors, *manual_lines]:
        print(text, file=sys.stderr)
    note = runtime_note(args.target)  # what no source rewrite can see: the tests must run
    if note and files:
        print(f"nnx-compat migrate: {note}", file=sys.stderr)
    per_id = ", ".join(f"{n} {i}" for i, n in sorted(totals.items())) or "none"
    if not args.write:
        action = "dry run, nothing written"
    elif written == changed:
        action = f"{written} written"
    else:
        action = f"{written} written, {changed - written} not written"
    print(
        f"nnx-compat migrate: {plural(len(files), 'file')}, {changed} to change ({action}); "
        f"rewrites: {per_id}; {plural(len(manual_lines), 'manual item')}"
        + (", the rest only your tests find (above)" if note and files else "")
        + (f"; {plural(len(errors), 'error')}" if errors else ""),
        file=sys.stderr,
    )
    pending = changed > written
    return 1 if errors or manual_lines or pending else 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "migrate",
        help="rewrite legacy flax.nnx calls to the new API (a dry run unless --write)",
        description="Rewrite legacy flax.nnx calls in .py files, Jupyter notebooks and MyST "
        "markdown notebooks to the new API of the target flax, keeping formatting and "
        "comments. A dry run by default: a unified diff that git apply takes. What needs more "
        "than the source is listed as a manual item; the last line is a summary. Needs libcst "
        "(pip install 'nnx_compat[tools]').",
        epilog=EXIT_STATUS["migrate"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="files and directories to migrate; - reads standard input (--write then prints "
        "the migrated code on standard output)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--diff", action="store_true", help="print a unified diff (the default)")
    mode.add_argument(
        "--write",
        action="store_true",
        help="rewrite the files (owner, mode, encoding and newlines kept; read-only files refused)",
    )
    parser.add_argument(
        "--target",
        type=target_argument,
        default=TARGETS[-1],
        metavar="{0.11,0.12,RELEASE}",
        help="the flax API level to reach: a generation (its newest release) or a release, "
        "whose API the rewrites use (0.12.3: fork(split=) and sharding_names stay)",
    )
    _discover.add_arguments(parser)
    stdin_argument(parser)
    add_color_argument(parser)
    parser.set_defaults(func=command)
