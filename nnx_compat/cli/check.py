"""``nnx-compat check PATH...``: the legacy flax.nnx patterns in a source tree, statically.

Reads ``.py`` files and Jupyter notebooks (code cells), directories recursively; imports no
user code and needs no flax. A ``.py`` file is decoded as Python decodes it (its encoding
declaration, a byte order mark). Besides the patterns, two ids report a file that could not be
checked: ``read-error`` (unreadable, a broken link, not in its encoding, not a notebook) and
``syntax-error``. Exit status: 0 clean, 1 findings (those two included), 2 usage error.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import sys
from typing import Any, Final

from nnx_compat import _patterns
from nnx_compat.checker import (
    ERROR_IDS,
    TARGETS,
    Finding,
    _suppressed,
    check_notebook,
    check_source,
    parse_target,
)
from nnx_compat.cli import _discover
from nnx_compat.cli._discover import DEFAULT_EXCLUDES as DEFAULT_EXCLUDES
from nnx_compat.cli._discover import UsageError as UsageError
from nnx_compat.cli._discover import discover as discover
from nnx_compat.cli._discover import discover_for
from nnx_compat.cli._source import SourceError, decode, read_text
from nnx_compat.cli._style import EXIT_STATUS, add_color_argument, paint, use_color

__all__ = [
    "add_parser",
    "check_file",
    "command",
    "discover",
    "plural",
    "reads_stdin",
    "stdin_argument",
    "target_argument",
]

#: Files per worker process below which checking stays in this process.
_PARALLEL_FROM: Final = 64


def check_file(
    path: str,
    target: str,
    select: list[str] | None,
    ignore: list[str],
    native: bool = False,
    raw: bytes | None = None,
) -> list[Finding]:
    """The findings of one file (a notebook: of each code cell), read as Python reads it (its
    encoding declaration, a byte order mark); a file that cannot be read or is not a notebook is
    a ``read-error`` finding, code that does not parse a ``syntax-error`` one (reported unless
    ``ignore`` names them, whatever ``select`` says). ``raw``: the file's bytes, when they come
    from elsewhere (standard input) and ``path`` only names them."""
    try:
        text = (read_text(path) if raw is None else decode(raw, path)).text
    except SourceError as error:
        if "read-error" in ignore or _suppressed(error.lines, error.line, "read-error"):
            return []
        return [Finding(path, error.line, error.column, "read-error", None, error.message)]
    options: dict[str, Any] = {
        "target": target,
        "select": select,
        "ignore": ignore,
        "native": native,
    }
    if not path.endswith((".ipynb", ".md")):  # .md: a MyST notebook
        return check_source(text, path, **options)
    try:
        found = check_notebook(text, path, **options)
    except (ValueError, AttributeError) as error:
        found = [Finding(path, 1, 1, "read-error", None, f"not a notebook: {error}")]
    return [f for f in found if f.pattern not in ignore]


def _check_all(
    files: list[str],
    target: str,
    select: list[str] | None,
    ignore: list[str],
    native: bool,
    jobs: int,
) -> list[Finding]:
    if jobs <= 1 or len(files) < _PARALLEL_FROM:
        return [f for path in files for f in check_file(path, target, select, ignore, native)]
    n = len(files)
    # a fresh interpreter per worker, never a fork: the caller may have started threads
    # (JAX does), and a forked copy of them can deadlock
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        chunks = pool.map(
            check_file,
            files,
            [target] * n,
            [select] * n,
            [ignore] * n,
            [native] * n,
            chunksize=max(1, n // (jobs * 8)),
        )
        return [f for chunk in chunks for f in chunk]


def _ids(text: str | None) -> list[str] | None:
    if text is None:
        return None
    ids = [i.strip() for i in text.split(",") if i.strip()]
    known = {p.id for p in _patterns.PATTERNS} | {i for i, _ in ERROR_IDS}
    unknown = sorted(set(ids) - known)
    if unknown:
        errors = ", ".join(i for i, _ in ERROR_IDS)
        raise UsageError(f"unknown pattern ids {unknown}; see nnx-compat patterns (and {errors})")
    return ids


def plural(count: int, noun: str) -> str:
    """``1 file``, ``2 files``: a count and its noun (a regular plural)."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _text(finding: Finding, color: bool) -> str:
    """:meth:`Finding.text`, its place in bold and its id in colour on a terminal."""
    text = finding.text()
    if not color:
        return text
    where, rest = text.split(": ", 1)
    tag, rest = rest.split(" ", 1)
    style = "bold red" if finding.pattern in {i for i, _ in ERROR_IDS} else "bold yellow"
    return f"{paint(where, 'bold', True)}: {paint(tag, style, True)} {rest}"


def _github(finding: Finding) -> str:
    text = finding.text().split(": ", 1)[1]
    return (
        f"::warning file={finding.path},line={finding.text_line},col={finding.column},"
        f"title=nnx-compat[{finding.pattern}]::{text}"
    )


def command(args: argparse.Namespace) -> int:
    """``nnx-compat check``."""
    try:
        select, ignore = _ids(args.select), _ids(args.ignore) or []
        stdin = reads_stdin(args)
        files, unreadable = ([args.stdin_filename], []) if stdin else discover_for(args, "check")
    except UsageError as error:
        print(f"nnx-compat check: {error}", file=sys.stderr)
        return 2
    if stdin:
        raw = sys.stdin.buffer.read()
        checked = check_file(files[0], args.target, select, ignore, args.native, raw)
    else:
        checked = _check_all(files, args.target, select, ignore, args.native, args.jobs)
    findings = sorted(
        [
            *checked,
            *(
                Finding(path, 1, 1, "read-error", None, why)
                for path, why in dict.fromkeys(unreadable)  # a path named and walked: once
                if "read-error" not in ignore
            ),
        ]
    )
    if args.format == "json":
        print(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        color = use_color(args, sys.stdout)
        render = _github if args.format == "github" else lambda f: _text(f, color)
        for finding in findings:
            print(render(finding))
        if args.format == "text":
            counts: dict[str, int] = {}
            for finding in findings:
                counts[finding.pattern] = counts.get(finding.pattern, 0) + 1
            summary = ", ".join(f"{n} {i}" for i, n in sorted(counts.items()))
            sys.stdout.flush()  # the summary stays the last line where both streams meet
            print(
                f"nnx-compat check: {plural(len(files), 'file')}, "
                f"{plural(len(findings), 'finding')}" + (f" ({summary})" if summary else ""),
                file=sys.stderr,
            )
    return 1 if findings else 0


def reads_stdin(args: argparse.Namespace) -> bool:
    """Whether the command reads standard input (``PATH`` is ``-``, as for ruff and black).

    Raises:
        UsageError: for ``-`` beside other paths, or ``--stdin-filename`` without ``-``.
    """
    if "-" not in args.paths:
        if args.stdin_filename is not None:
            raise UsageError("--stdin-filename names standard input: give - as the PATH")
        return False
    if len(args.paths) > 1:
        raise UsageError("- (standard input) must be the only PATH")
    if args.stdin_filename is None:
        args.stdin_filename = "-"
    return True


def stdin_argument(parser: argparse.ArgumentParser) -> None:
    """``--stdin-filename`` (ruff's name), for ``check`` and ``migrate``."""
    parser.add_argument(
        "--stdin-filename",
        metavar="NAME",
        help="the name of the file standard input holds (with - as the PATH): findings name "
        "it, and a .ipynb or .md name reads it as a notebook",
    )


def target_argument(text: str) -> str:
    """``--target``'s type: a generation or a release (:func:`parse_target`), else the usage
    error naming the forms."""
    try:
        return parse_target(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _jobs_argument(text: str) -> int:
    """``--jobs``'s type: a whole number of 1 or more, else the usage error naming the range."""
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of worker processes (1 or more)"
        )
    return jobs


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "check",
        help="find legacy flax.nnx patterns in source files and notebooks (static)",
        description="Find the legacy flax.nnx patterns in .py files, Jupyter notebooks and MyST "
        "markdown notebooks, without running or importing them (flax need not be installed). "
        "Directories are read recursively, skipping virtualenvs and what .gitignore ignores. "
        "Suppress a finding with '# nnx-compat: ignore[<id>]' on its line.",
        epilog=EXIT_STATUS["check"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="files and directories to check; - reads standard input",
    )
    parser.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="text (path:line:col: nnx-compat[id] ..., a summary on stderr), json (a list of "
        "objects) or github (workflow annotations)",
    )
    parser.add_argument(
        "--select",
        metavar="IDS",
        help="only these pattern ids (comma-separated; read-error and syntax-error are always "
        "reported unless ignored)",
    )
    parser.add_argument(
        "--ignore",
        metavar="IDS",
        help="not these pattern ids, or read-error, syntax-error (comma-separated)",
    )
    parser.add_argument(
        "--target",
        type=target_argument,
        default=TARGETS[-1],
        metavar="{0.11,0.12,RELEASE}",
        help="the flax API level to reach: a generation (its newest release) or a release "
        "(0.11: patterns flax 0.12 changed are not reported; 0.12.3: nor those of 0.12.4+)",
    )
    parser.add_argument(
        "--native",
        action="store_true",
        help="also report calls that still run on the newer flax with another meaning "
        "(status native; their text is new-API code too)",
    )
    _discover.add_arguments(parser)
    stdin_argument(parser)
    add_color_argument(parser)
    parser.add_argument(
        "--jobs",
        type=_jobs_argument,
        default=os.cpu_count() or 1,
        help="worker processes, 1 or more (default: CPUs)",
    )
    parser.set_defaults(func=command)
