"""The files ``nnx-compat check`` and ``nnx-compat migrate`` read, found as ruff and black find
theirs.

A file named on the command line is always read. Directories are walked in name order, and
left out of the walk are:

- what :data:`DEFAULT_EXCLUDES` and ``--exclude`` name;
- Python environments, whatever their name: a directory holding ``pyvenv.cfg`` (a virtualenv)
  or ``conda-meta/`` (a conda environment);
- what the ``.gitignore`` files ignore (each from the repository root, the nearest parent
  holding ``.git``, down to the directory met; patterns relative to the directory of their
  file, the deeper file first, negations included) and ``.git/info/exclude``; a repository
  inside another follows its own files only; not with ``--no-respect-gitignore``. A directory
  named on the command line is walked even when it is ignored; the ignore files above it then
  do not apply inside it;
- links to directories (not followed), and links to files outside the directory walked;
- a file already found under another name (links, hard links);
- ``.md`` files but MyST notebooks (a ``{code-cell}`` block anywhere in them).

Each skip can be reported through a callback (``--verbose`` prints them); what cannot be read (a
directory, a broken link) is reported through another, for the command to show and fail on.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

import pathspec

from nnx_compat.checker.notebooks import is_myst_notebook

__all__ = [
    "DEFAULT_EXCLUDES",
    "SUFFIXES",
    "ReadError",
    "Report",
    "UsageError",
    "add_arguments",
    "discover",
    "discover_for",
]

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
#: The files looked at in a directory (``.md``: MyST notebooks only).
SUFFIXES: Final = (".py", ".ipynb", ".md")

#: ``(path, reason)``: a path left out, or one that could not be read.
Report = Callable[[Path, str], None]

#: A directory that holds one of these is a Python environment: its name, what it is.
_ENVIRONMENT_MARKERS: Final = (
    ("pyvenv.cfg", "virtualenv (pyvenv.cfg)"),
    ("conda-meta", "conda environment (conda-meta)"),
)
_MYST_MARK: Final = b"{code-cell}"


class UsageError(Exception):
    """A command line that names nothing to read (the command exits with status 2)."""


class ReadError(OSError):
    """What :func:`discover` raises for an unreadable path when it is given no ``on_error``."""


class _Patterns:
    """``--exclude``-style patterns, compiled: a pattern with a ``/`` matches the path from the
    walked root, one without matches the name; a trailing ``/`` only directories."""

    def __init__(self, patterns: Sequence[str]) -> None:
        def regex(globs: list[str]) -> re.Pattern[str] | None:
            return re.compile("|".join(fnmatch.translate(g) for g in globs)) if globs else None

        names: dict[bool, list[str]] = {False: [], True: []}
        paths: dict[bool, list[str]] = {False: [], True: []}
        for pattern in patterns:
            directory_only = pattern.endswith("/")
            glob = pattern.rstrip("/")
            table = paths if "/" in glob else names
            table[True].append(glob.lstrip("/"))
            if not directory_only:
                table[False].append(glob.lstrip("/"))
        # indexed by is_dir
        self._names = (regex(names[False]), regex(names[True]))
        self._paths = (regex(paths[False]), regex(paths[True]))

    def match(self, name: str, relative: str, is_dir: bool) -> bool:
        by_name, by_path = self._names[is_dir], self._paths[is_dir]
        return bool(
            (by_name is not None and by_name.match(name))
            or (by_path is not None and by_path.match(relative))
        )


# An ignore file in force: its spec, what it is called in a skip report, and how to turn a
# path relative to the walked root into one relative to the file's directory: prefix + the path
# without its first ``strip`` characters.
_Ignore = tuple[pathspec.GitIgnoreSpec, str, str, int]


def _git_directory(top: Path) -> Path:
    """The git directory of the repository at ``top`` (``.git``, or where the ``.git`` file of
    a submodule or worktree points)."""
    dot_git = top / ".git"
    if dot_git.is_file():
        text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
        if text.startswith("gitdir:"):
            return top / text.removeprefix("gitdir:").strip()
    return dot_git


def _ignored(ignores: Sequence[_Ignore], relative: str, is_dir: bool) -> str | None:
    """Which ignore file ignores ``relative`` (the deepest file that matches decides)."""
    for spec, source, prefix, strip in reversed(ignores):
        result = spec.check_file(prefix + relative[strip:] + ("/" if is_dir else ""))
        if result.include is not None:
            return source if result.include else None
    return None


class _Walk:
    """One discovery: the state shared by the paths of a command line."""

    def __init__(
        self, excludes: Sequence[str], respect_gitignore: bool, on_skip: Report, on_error: Report
    ) -> None:
        self.defaults = _Patterns(DEFAULT_EXCLUDES)
        self.excludes = _Patterns(excludes)
        self.respect_gitignore = respect_gitignore
        self.on_skip = on_skip
        self.on_error = on_error
        self.seen: dict[tuple[int, int], Path] = {}

    def named(self, name: str) -> Iterator[Path]:
        path = Path(name)
        try:
            is_dir = stat.S_ISDIR(path.stat().st_mode)
        except FileNotFoundError:
            if not path.is_symlink():
                raise UsageError(f"no such file or directory: {name}") from None
            self.on_error(path, f"broken symbolic link to {os.readlink(path)}")
            return
        except OSError as error:
            self.on_error(path, f"cannot read: {error.strerror or error}")
            return
        if is_dir:
            yield from self.walk(path)
        elif path.suffix != ".md" or self.is_notebook(path):
            yield from self.once(path)

    def once(self, path: Path) -> Iterator[Path]:
        """``path`` unless the same file was found already (by another link or name)."""
        try:
            status = path.stat()
        except OSError as error:
            self.on_error(path, f"cannot read: {error.strerror or error}")
            return
        first = self.seen.setdefault((status.st_dev, status.st_ino), path)
        if first is path:
            yield path
        else:
            self.on_skip(path, f"same file as {first}")

    def is_notebook(self, path: Path) -> bool:
        """Whether a ``.md`` file is a MyST notebook (a plain one is reported as skipped)."""
        try:
            data = path.read_bytes()
        except OSError as error:
            self.on_error(path, f"cannot read: {error.strerror or error}")
            return False
        if _MYST_MARK in data and is_myst_notebook(data.decode("utf-8", errors="replace")):
            return True
        self.on_skip(path, "markdown, not a MyST notebook")
        return False

    def read_ignore_file(self, path: Path) -> pathspec.GitIgnoreSpec | None:
        """The patterns of an ignore file (None: there is none, or it has no pattern)."""
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            self.on_error(path, f"cannot read: {error.strerror or error}")
            return None
        spec = pathspec.GitIgnoreSpec.from_lines(lines)
        return spec if len(spec) else None

    def info_exclude(self, top: Path, prefix: str, strip: int) -> list[_Ignore]:
        """The ``.git/info/exclude`` of the repository at ``top``, if it has patterns."""
        try:
            spec = self.read_ignore_file(_git_directory(top) / "info" / "exclude")
        except OSError as error:  # a .git file that cannot be read
            self.on_error(top / ".git", f"cannot read: {error.strerror or error}")
            return []
        return [] if spec is None else [(spec, ".git/info/exclude", prefix, strip)]

    def ignores_above(self, root: Path) -> list[_Ignore]:
        """The ignore files of the repository that apply in ``root``, from its top down to the
        parent of ``root`` (none when ``root`` itself is ignored: it was named)."""
        resolved = root.resolve()
        top = next((d for d in (resolved, *resolved.parents) if os.path.lexists(d / ".git")), None)
        if top is None:
            return []
        to_root = resolved.relative_to(top).as_posix()
        prefix = "" if to_root == "." else to_root + "/"
        chain = self.info_exclude(top, prefix, 0)
        for directory in reversed(resolved.parents):
            if directory.is_relative_to(top):
                spec = self.read_ignore_file(directory / ".gitignore")
                if spec is not None:
                    inner = resolved.relative_to(directory).as_posix() + "/"
                    chain.append((spec, ".gitignore", inner, 0))
        # the root itself, as a directory: its path from the top with a trailing "/"
        if prefix and _ignored(chain, "", is_dir=False) is not None:
            return []
        return chain

    def walk(self, root: Path) -> Iterator[Path]:
        """The files under the directory ``root``, top-down, each directory's files first."""
        resolved_root = os.path.realpath(root)
        ignores = self.ignores_above(root) if self.respect_gitignore else []
        # (directory, its path relative to root with a trailing "/" or "", the ignore files)
        stack: list[tuple[Path, str, list[_Ignore]]] = [(root, "", ignores)]
        while stack:
            directory, relative, ignores = stack.pop()
            try:
                with os.scandir(directory) as listing:
                    entries = sorted(listing, key=lambda e: e.name)
            except OSError as error:
                self.on_error(directory, f"cannot read directory: {error.strerror or error}")
                continue
            if self.respect_gitignore:
                names = {e.name for e in entries}
                if relative and ".git" in names:  # a repository inside: its own rules only
                    ignores = self.info_exclude(directory, "", len(relative))
                if ".gitignore" in names:
                    spec = self.read_ignore_file(directory / ".gitignore")
                    if spec is not None:
                        ignores = [*ignores, (spec, ".gitignore", "", len(relative))]
            subdirectories: list[tuple[Path, str, list[_Ignore]]] = []
            for entry in entries:
                path = directory / entry.name
                try:
                    is_dir = entry.is_dir()
                    is_link = entry.is_symlink()
                except OSError as error:
                    self.on_error(path, f"cannot read: {error.strerror or error}")
                    continue
                if not is_dir and not entry.name.endswith(SUFFIXES):
                    continue
                reason = self.skipped(entry.name, relative + entry.name, is_dir, ignores)
                if reason is None and is_dir:
                    reason = "symlinked directory (not followed)" if is_link else _environment(path)
                if reason is not None:
                    self.on_skip(path, reason)
                elif is_dir:
                    subdirectories.append((path, f"{relative}{entry.name}/", ignores))
                elif is_link and not self.link_inside(path, resolved_root):
                    continue
                elif not entry.name.endswith(".md") or self.is_notebook(path):
                    yield from self.once(path)
            stack.extend(reversed(subdirectories))

    def skipped(
        self, name: str, relative: str, is_dir: bool, ignores: Sequence[_Ignore]
    ) -> str | None:
        """Why an entry of a walked directory is left out (None: it is not)."""
        if self.defaults.match(name, relative, is_dir):
            return "default exclude"
        if self.excludes.match(name, relative, is_dir):
            return "--exclude"
        return _ignored(ignores, relative, is_dir) if ignores else None

    def link_inside(self, path: Path, resolved_root: str) -> bool:
        """Whether a link met in the walk leads to a file inside the walked root (else it is
        reported: out of the tree, or broken)."""
        target = os.path.realpath(path)
        if not os.path.exists(target):
            if path.suffix == ".md":  # a broken link cannot be a notebook's
                self.on_skip(path, "broken symbolic link")
            else:
                self.on_error(path, f"broken symbolic link to {os.readlink(path)}")
            return False
        if os.path.commonpath([target, resolved_root]) != resolved_root:
            self.on_skip(path, "symlink outside the tree")
            return False
        return True


def _environment(directory: Path) -> str | None:
    for marker, what in _ENVIRONMENT_MARKERS:
        if os.path.lexists(directory / marker):
            return what
    return None


def _raise(path: Path, message: str) -> None:
    raise ReadError(f"{path}: {message}")


def _ignore(path: Path, reason: str) -> None:
    pass


def discover(
    paths: Sequence[str],
    excludes: Sequence[str] = (),
    *,
    respect_gitignore: bool = True,
    on_skip: Report | None = None,
    on_error: Report | None = None,
) -> Iterator[Path]:
    """The ``.py`` and ``.ipynb`` files and MyST notebooks under ``paths`` (see the module's
    docstring), each file once.

    Args:
        paths: Files (always read) and directories (walked).
        excludes: ``.gitignore``-style patterns of paths to leave out, besides
            :data:`DEFAULT_EXCLUDES`: with a ``/``, matched from the walked directory; without,
            against the name; a trailing ``/`` matches directories only.
        respect_gitignore: Leave out what the repository's ignore files ignore.
        on_skip: Called with each path left out and why.
        on_error: Called with each path that cannot be read and why (a directory whose
            listing fails, a broken link); None raises :class:`ReadError` instead.

    Raises:
        UsageError: For a path that does not exist.
    """
    walk = _Walk(excludes, respect_gitignore, on_skip or _ignore, on_error or _raise)
    for name in paths:
        yield from walk.named(name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The discovery flags of ``check`` and ``migrate``: ``--exclude``,
    ``--no-respect-gitignore`` and ``--verbose``."""
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help=".gitignore-style pattern of paths to skip (repeatable)",
    )
    parser.add_argument(
        "--no-respect-gitignore",
        dest="respect_gitignore",
        action="store_false",
        help="also read what .gitignore files and .git/info/exclude ignore",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="say which directories and files are skipped, and why (on stderr)",
    )


def discover_for(args: argparse.Namespace, command: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The files the command line ``args`` names (:func:`add_arguments`'s flags), and the
    paths that could not be read with why; with ``--verbose``, a line on stderr per skip.

    Raises:
        UsageError: For a path that does not exist.
    """
    errors: list[tuple[str, str]] = []

    def skipped(path: Path, reason: str) -> None:
        print(f"nnx-compat {command}: skipped {path}: {reason}", file=sys.stderr)

    files = discover(
        args.paths,
        args.exclude,
        respect_gitignore=args.respect_gitignore,
        on_skip=skipped if args.verbose else None,
        on_error=lambda path, message: errors.append((str(path), message)),
    )
    return [str(path) for path in files], errors
