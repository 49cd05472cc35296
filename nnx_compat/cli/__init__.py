"""The ``nnx-compat`` command (also ``python -m nnx_compat``): one module per subcommand."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from nnx_compat.cli import check, doctor, fix_checkpoint, migrate, patterns, report

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnx-compat", description="Run Flax NNX 0.10 code on every flax generation."
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    doctor.add_parser(sub)
    patterns_cmd = sub.add_parser(
        "patterns",
        help="the table of legacy patterns",
        description="The table of legacy flax.nnx patterns that nnx_compat bridges, checks and "
        "migrates: id, legacy form, new form, the flax release that changed it, what check "
        "and migrate do with it. Exit status: 0, or 2 for a usage error.",
    )
    fmt = patterns_cmd.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="as a markdown table")
    fmt.add_argument("--json", action="store_true", help="as JSON")
    patterns_cmd.add_argument(
        "--added",
        action="store_true",
        help="the names flax 0.11 and 0.12 added, and how each is served on older flax",
    )
    patterns_cmd.set_defaults(func=patterns.command)
    fix_checkpoint.add_parser(sub)
    check.add_parser(sub)
    migrate.add_parser(sub)
    report.add_parser(sub)
    return parser


#: The exit status after a closed standard output (``nnx-compat check | head``): what a shell
#: reports for a process that SIGPIPE ended (128 + 13), as for other tools in a pipe.
CLOSED_PIPE = 141


def _version() -> str:
    """This package's version, without importing flax (``--version`` works where flax is not
    installed, as ``check`` does)."""
    from importlib import metadata

    try:
        return metadata.version("nnx_compat")
    except metadata.PackageNotFoundError:
        from nnx_compat import __version__

        return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status.

    A closed standard output (the reader of a pipe stopped) ends the command quietly with
    :data:`CLOSED_PIPE`, without a traceback.
    """
    args = _parser().parse_args(argv)
    try:
        status = int(args.func(args))
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would flush stdout again at exit and fail the same way: point it at devnull
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return CLOSED_PIPE
    return status
