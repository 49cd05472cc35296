"""The ``nnx-compat`` command (also ``python -m nnx_compat``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from nnx_compat import _checkpoint_cli, _patterns

__all__ = ["main"]


def _doctor(args: argparse.Namespace) -> int:
    import nnx_compat
    from nnx_compat import _doctor, _versions

    try:
        env = _versions.detect()
    except ImportError as err:
        if args.json:
            print(json.dumps({"error": str(err), "error_type": type(err).__name__}))
        else:
            print(f"nnx-compat doctor: {err}", file=sys.stderr)
        return 2
    checks = _doctor.run_checks()
    shims = [
        {"name": name, "patterns": [p.id for p in _patterns.PATTERNS if name in p.shims]}
        for name in _patterns.shims()
    ]
    ok = all(check.ok for check in checks)
    if args.json:
        data: dict[str, Any] = {"nnx_compat": nnx_compat.__version__, **env.as_dict()}
        data["shims"] = shims
        data["checks"] = [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks]
        data["ok"] = ok
        print(json.dumps(data, indent=2))
        return 0 if ok else 1
    print(f"nnx_compat {nnx_compat.__version__}")
    newer = ", newer than known" if env.newer_than_known else ""
    print(f"flax {env.flax} (API generation {env.api}{newer})")
    print(
        f"jax {env.jax}, jaxlib {env.jaxlib}, optax {env.optax}, "
        f"orbax-checkpoint {env.orbax_checkpoint or '(not installed)'}"
    )
    print("features:")
    for name, value in env.features.items():
        print(f"  {'yes' if value else 'no ':3} {name}")
    print("shims:" if shims else "shims: none active")
    for shim in shims:
        print(f"  nnx.{shim['name']}: {', '.join(shim['patterns'])}")
    print("checks:")
    for check in checks:
        print(f"  [{'PASS' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
    return 0 if ok else 1


def markdown_table() -> str:
    """The README's table of legacy patterns, generated from the pattern table."""
    rows = [
        "| id | legacy form | new form | changed in flax | bridged by |",
        "|---|---|---|---|---|",
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
        rows.append(f"| `{p.id}` | `{p.legacy}` | `{p.new}` | {p.changed_in} | {shim} |")
    return "\n".join(rows)


def _patterns_cmd(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown_table())
    elif args.json:
        import dataclasses

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnx-compat", description="Run Flax NNX 0.10 code on every flax generation."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    doctor = sub.add_parser("doctor", help="versions, active shims and self-checks")
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    doctor.set_defaults(func=_doctor)
    patterns = sub.add_parser("patterns", help="the table of legacy patterns")
    fmt = patterns.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="as the README's table")
    fmt.add_argument("--json", action="store_true", help="as JSON")
    patterns.set_defaults(func=_patterns_cmd)
    _checkpoint_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    return int(args.func(args))
