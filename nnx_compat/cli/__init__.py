"""The ``nnx-compat`` command (also ``python -m nnx_compat``): one module per subcommand."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from nnx_compat.cli import check, doctor, fix_checkpoint, migrate, patterns

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnx-compat", description="Run Flax NNX 0.10 code on every flax generation."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    doctor_cmd = sub.add_parser("doctor", help="versions, active shims and self-checks")
    doctor_cmd.add_argument("--json", action="store_true", help="print one JSON object")
    doctor_cmd.set_defaults(func=doctor.command)
    patterns_cmd = sub.add_parser("patterns", help="the table of legacy patterns")
    fmt = patterns_cmd.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="as the README's table")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    return int(args.func(args))
