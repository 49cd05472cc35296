"""``nnx-compat check PATH...``: the legacy flax.nnx patterns in a source tree, statically.

Reads ``.py`` files and Jupyter notebooks (code cells), directories recursively; imports no
user code and needs no flax. Exit status: 0 clean, 1 findings (or a file that does not parse),
2 usage error.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fnmatch
import json
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from nnx_compat import _patterns
from nnx_compat.checker import TARGETS, Finding, check_notebook, check_source, parse_target

__all__ = ["add_parser", "check_file", "command", "discover", "target_argument"]

#: Never descended into (besides what ``--exclude`` names).
DEFAULT_EXCLUDES: Final = (
    ".git",
    ".hg",
    ".tox",
    ".nox",
    ".venv",
    "venv",
    "__pycache__",
    "node_modules",
    ".ipynb_checkpoints",
    "build",
    "dist",
)
#: Files per worker process below which checking stays in this process.
_PARALLEL_FROM: Final = 64


class UsageError(Exception):
    pass


def _excluded(path: Path, root: Path, patterns: Sequence[str]) -> bool:
    """``.gitignore``-style: a pattern with a ``/`` matches the path from the root, one without
    matches any component; a trailing ``/`` only directories."""
    relative = path.relative_to(root).as_posix() if path != root else path.name
    for pattern in patterns:
        directory_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        if directory_only and not path.is_dir():
            continue
        if "/" in pattern:
            if fnmatch.fnmatchcase(relative, pattern.lstrip("/")):
                return True
        elif fnmatch.fnmatchcase(path.name, pattern):
            return True
    return False


def discover(paths: Sequence[str], excludes: Sequence[str] = ()) -> Iterator[Path]:
    """The ``.py`` and ``.ipynb`` files under ``paths`` (a file named directly is always read).

    Raises:
        UsageError: for a path that does not exist.
    """
    patterns = [*DEFAULT_EXCLUDES, *excludes]
    for name in paths:
        root = Path(name)
        if not root.exists():
            raise UsageError(f"no such file or directory: {name}")
        if root.is_file():
            yield root
            continue
        for directory, subdirectories, files in os.walk(root):
            here = Path(directory)
            subdirectories[:] = sorted(
                d for d in subdirectories if not _excluded(here / d, root, patterns)
            )
            for file in sorted(files):
                path = here / file
                if path.suffix in (".py", ".ipynb") and not _excluded(path, root, patterns):
                    yield path


def check_file(
    path: str, target: str, select: list[str] | None, ignore: list[str], native: bool = False
) -> list[Finding]:
    """The findings of one file (a notebook: of each code cell)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return [Finding(path, 1, 0, "syntax-error", None, f"cannot read: {error}")]
    options: dict[str, Any] = {
        "target": target,
        "select": select,
        "ignore": ignore,
        "native": native,
    }
    if not path.endswith(".ipynb"):
        return check_source(text, path, **options)
    try:
        return check_notebook(text, path, **options)
    except (ValueError, AttributeError) as error:
        return [Finding(path, 1, 0, "syntax-error", None, f"not a notebook: {error}")]


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
    known = {p.id for p in _patterns.PATTERNS}
    unknown = sorted(set(ids) - known)
    if unknown:
        raise UsageError(f"unknown pattern ids {unknown}; see nnx-compat patterns")
    return ids


def _github(finding: Finding) -> str:
    text = finding.text().split(": ", 1)[1]
    return (
        f"::warning file={finding.path},line={finding.line},col={finding.column},"
        f"title=nnx-compat[{finding.pattern}]::{text}"
    )


def command(args: argparse.Namespace) -> int:
    """``nnx-compat check``."""
    try:
        select, ignore = _ids(args.select), _ids(args.ignore) or []
        files = [str(p) for p in discover(args.paths, args.exclude)]
    except UsageError as error:
        print(f"nnx-compat check: {error}", file=sys.stderr)
        return 2
    findings = sorted(_check_all(files, args.target, select, ignore, args.native, args.jobs))
    if args.format == "json":
        print(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        render = _github if args.format == "github" else Finding.text
        for finding in findings:
            print(render(finding))
        if args.format == "text":
            counts: dict[str, int] = {}
            for finding in findings:
                counts[finding.pattern] = counts.get(finding.pattern, 0) + 1
            summary = ", ".join(f"{n} {i}" for i, n in sorted(counts.items()))
            print(
                f"nnx-compat check: {len(files)} files, {len(findings)} findings"
                + (f" ({summary})" if summary else ""),
                file=sys.stderr,
            )
    return 1 if findings else 0


def target_argument(text: str) -> str:
    """``--target``'s type: a generation or a release (:func:`parse_target`), else the usage
    error naming the forms."""
    try:
        return parse_target(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "check",
        help="find legacy flax.nnx patterns in source files and notebooks (static)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument("--format", choices=("text", "json", "github"), default="text")
    parser.add_argument("--select", metavar="IDS", help="only these pattern ids (comma-separated)")
    parser.add_argument("--ignore", metavar="IDS", help="not these pattern ids (comma-separated)")
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
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help=".gitignore-style pattern of paths to skip (repeatable)",
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPUs)"
    )
    parser.set_defaults(func=command)
