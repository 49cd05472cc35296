"""``nnx-compat patterns``: the table of legacy patterns, as text, Markdown or JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json

from nnx_compat import _patterns

__all__ = ["added_table", "command", "markdown_table"]

#: The releases the README's availability columns describe.
_GENERATIONS = ("0.10.0", "0.10.7", "0.11.2")


def markdown_table(anchors: bool = False) -> str:
    """The README's table of legacy patterns, generated from the pattern table.

    Args:
        anchors: Give each row an HTML anchor named by the pattern's id (the docs site's table,
            which ``nnx-compat report`` links to as ``patterns.html#<id>``).
    """
    rows = [
        "| id | legacy form | new form | changed in flax | bridged by | `check` | `migrate` |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in _patterns.PATTERNS:
        if p.status == "bridged":
            shim = ", ".join(f"`nnx.{s}`" for s in p.shims)
        elif p.status == "native":
            shim = "not bridged: the installed flax's meaning stands"
        elif p.status == "non-goal":
            shim = "not bridged: an error names the new form"
        else:
            shim = "planned"
        anchor = f'<span id="{p.id}"></span>' if anchors else ""
        rows.append(
            f"| {anchor}`{p.id}` | `{p.legacy}` | `{p.new}` | {p.changed_in} | {shim} "
            f"| {_check(p)} | {_migrate(p)} |"
        )
    return "\n".join(rows)


def _served(name: str, release: str, pinned: str) -> str:
    from nnx_compat import _added
    from nnx_compat._versions import parse_version

    if parse_version(release) <= parse_version(pinned):
        return "flax's"
    if name in _added.SUBMODULE_SINCE:
        return "flax's submodule"
    if name in _added.ALIASES:
        return f"flax's `nnx.{_added.ALIASES[name]}`"
    if name in _added.BACKPORTS:
        return "backport"
    if name in _patterns.SHIMS:
        return "nnx_compat"
    return f"error: needs {release}"


def added_table() -> str:
    """The README's table of the names flax 0.10.1-0.12.8 added, and what ``nnx_compat.nnx``
    serves for each on older releases (generated from ``nnx_compat._added``)."""
    from nnx_compat import _added
    from nnx_compat._versions import parse_version

    rows = [
        "| name | added in flax | " + " | ".join(f"on flax {r}" for r in _GENERATIONS) + " |",
        "|---|---|" + "---|" * len(_GENERATIONS),
    ]
    for name, release in sorted(
        _added.ADDED.items(), key=lambda kv: (parse_version(kv[1]), kv[0].lower())
    ):
        cells = [_served(name, release, pinned) for pinned in _GENERATIONS]
        rows.append(f"| `nnx.{name}` | {release} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _check(p: _patterns.Pattern) -> str:
    if p.run_time_only:
        return "run time only"
    return "partly (the rest at run time)" if p.static else "found"


def _migrate(p: _patterns.Pattern) -> str:
    if p.same_call:
        return "nothing to rewrite"
    if p.run_time_only:
        return "-"
    return "manual item" if p.manual else "rewritten"


def command(args: argparse.Namespace) -> int:
    """``nnx-compat patterns [--markdown|--json] [--added]``."""
    if args.added:
        print(added_table())
    elif args.markdown:
        print(markdown_table())
    elif args.json:
        print(
            json.dumps(
                [
                    dataclasses.asdict(p) | {"bridged": p.bridged, "status": p.status}
                    for p in _patterns.PATTERNS
                ],
                indent=2,
            )
        )
    else:
        for p in _patterns.PATTERNS:
            print(f"{p.id:28} {p.changed_in:7} {p.status:8} {p.legacy} -> {p.new}")
    return 0
