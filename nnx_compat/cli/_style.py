"""Colour on a terminal, as ruff, black and pytest colour: ``--color=auto|always|never``; under
``auto`` only where the stream is a terminal and ``NO_COLOR`` is unset or empty
(https://no-color.org), and never for ``TERM=dumb``."""

from __future__ import annotations

import argparse
import os
from typing import Any, Final, TextIO

__all__ = ["EXIT_STATUS", "add_color_argument", "paint", "use_color"]

_CODES: Final = {"bold": "1", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}

#: The ``--help`` epilog of the commands that find or rewrite legacy code.
EXIT_STATUS: Final = {
    "check": "exit status:\n  0  no finding\n  1  findings (read-error and syntax-error included)\n"
    "  2  usage error",
    "migrate": "exit status:\n  0  nothing left to do: nothing to change, or --write wrote every "
    "change, and no manual item\n  1  work left: changes pending (a dry run), manual items, or "
    "an error\n  2  usage error (a path that does not exist, libcst missing)",
    "report": "exit status:\n  0  the page was written (whatever it reports)\n  2  usage error "
    "(nothing to report on, a path that does not exist, a run-time report or\n     baseline "
    "that cannot be read, no git history for --baseline-history), or the page cannot\n     be "
    "written",
}


def add_color_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the output: auto (the default) on a terminal unless NO_COLOR is set",
    )


def use_color(args: Any, stream: TextIO) -> bool:
    """Whether to colour what goes to ``stream``, by ``--color`` and the environment."""
    choice = getattr(args, "color", "auto")
    if choice != "auto":
        return bool(choice == "always")
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def paint(text: str, style: str, on: bool) -> str:
    """``text`` in ``style`` (``"bold"``, ``"red"``, ``"bold red"``...), or as it is."""
    if not on or not text:
        return text
    codes = ";".join(_CODES[name] for name in style.split())
    return f"\033[{codes}m{text}\033[0m"
