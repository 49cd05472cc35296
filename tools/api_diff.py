"""The public API of ``flax.nnx`` across releases, and what changed between them.

``snapshot`` records, for the installed flax, every public name of ``flax.nnx`` and of the
submodules users import (``nnx.graph``, ``nnx.bridge``, ``nnx.rnglib``, ``nnx.variablelib``, ...):
its kind, each callable's parameters (name, kind, whether it has a default, the default's repr
for simple values) and each class's public methods and properties, with their parameters.
``report`` compares the snapshots of two or more releases and lists every name, parameter,
default and method that was removed, added, renamed or made keyword-only, and, for the entries
in the 0.10 -> later direction, how nnx_compat resolves each: a record in the pattern table
(bridged, native meaning, non-goal) or nothing yet ("unresolved").

Usage::

    python -m tools.api_diff snapshot tools/api/flax-<release>.json
    python -m tools.api_diff report tools/api/flax-0.10.7.json tools/api/flax-0.12.8.json ...
"""

from __future__ import annotations

import argparse
import enum
import fnmatch
import importlib
import importlib.metadata
import inspect
import itertools
import json
import sys
import types
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SNAPSHOTS = HERE / "api"

#: Submodules of flax.nnx whose public names users import (besides flax.nnx itself).
SUBMODULES = (
    "bridge",
    "filterlib",
    "graph",
    "helpers",
    "nn.attention",
    "nn.linear",
    "nn.normalization",
    "nn.recurrent",
    "nn.stochastic",
    "rnglib",
    "spmd",
    "statelib",
    "training.optimizer",
    "transforms",
    "variablelib",
)

#: Submodules that became re-exports of another module (``flax.nnx.graph`` is
#: ``from flax.nnx.graphlib import *`` since 0.12): names defined there count as their own.
REEXPORTS = {"graph": ("graphlib",)}

_SIMPLE = (bool, int, float, str, type(None))


def _default(value: Any) -> str | None:
    if value is inspect.Parameter.empty:
        return None
    if isinstance(value, _SIMPLE) or (isinstance(value, tuple) and len(value) < 5):
        return repr(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    return f"<{type(value).__name__}>"


def _parameters(obj: Any) -> list[dict[str, Any]] | None:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    return [
        {"name": p.name, "kind": p.kind.name, "default": _default(p.default)}
        for p in signature.parameters.values()
    ]


def _kind(obj: Any) -> str:
    if isinstance(obj, types.ModuleType):
        return "module"
    if isinstance(obj, type):
        return "class"
    if callable(obj):
        return "function"
    return "value"


def _members(cls: type) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for name in sorted(dir(cls)):
        if name.startswith("_") and name != "__init__" and name != "__call__":
            continue
        try:
            value = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        if isinstance(value, property):
            members[name] = {"kind": "property"}
        elif isinstance(value, staticmethod | classmethod):
            members[name] = {"kind": "method", "parameters": _parameters(value.__func__)}
        elif inspect.isfunction(value):
            members[name] = {"kind": "method", "parameters": _parameters(value)}
    return members


def _entry(obj: Any) -> dict[str, Any]:
    kind = _kind(obj)
    entry: dict[str, Any] = {"kind": kind}
    if kind == "class":
        entry["members"] = _members(obj)
    elif kind == "function":
        entry["parameters"] = _parameters(obj)
    return entry


def snapshot() -> dict[str, Any]:
    """The public API of the installed ``flax.nnx``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nnx = importlib.import_module("flax.nnx")
        modules = {"nnx": nnx}
        for name in SUBMODULES:
            try:
                modules[f"nnx.{name}"] = importlib.import_module(f"flax.nnx.{name}")
            except ImportError:
                continue
        api: dict[str, Any] = {}
        for prefix, module in modules.items():
            homes = {module.__name__}
            homes.update(f"flax.nnx.{home}" for home in REEXPORTS.get(prefix[len("nnx.") :], ()))
            names = [n for n in vars(module) if not n.startswith("_")]
            for name in sorted(names):
                value = vars(module)[name]
                if prefix != "nnx" and isinstance(value, types.ModuleType):
                    continue
                if prefix != "nnx" and getattr(value, "__module__", None) not in homes:
                    continue  # re-exports (of flax.nnx's own names, jax, typing, ...)
                api[f"{prefix}.{name}"] = _entry(value)
    return {
        "flax": importlib.metadata.version("flax"),
        "jax": importlib.metadata.version("jax"),
        "api": api,
    }


def dumps(data: dict[str, Any]) -> str:
    """A snapshot as JSON text, one API entry per line (small, and diffs read per name)."""
    head = {k: v for k, v in data.items() if k != "api"}
    lines = [json.dumps(head, sort_keys=True)[:-1] + ', "api": {']
    entries = sorted(data["api"].items())
    for i, (name, entry) in enumerate(entries):
        comma = "," if i < len(entries) - 1 else ""
        lines.append(f"{json.dumps(name)}: {json.dumps(entry, sort_keys=True)}{comma}")
    lines.append("}}")
    return "\n".join(lines) + "\n"


def snapshot_path(release: str) -> Path:
    return SNAPSHOTS / f"flax-{release}.json"


# --------------------------------------------------------------------------- report


def _params_by_name(params: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in params or []}


def _comparable(default: str | None) -> bool:
    """A default recorded by value (not only by its type, ``<...>``)."""
    return default is not None and not default.startswith("<")


def _positional_only_renames(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict:
    """Old positional-only parameter -> the new one at its position (None: taken by ``*args``).

    No caller can name a positional-only parameter, so renaming one changes nothing."""
    olds = [p["name"] for p in old if p["kind"] == "POSITIONAL_ONLY"]
    news = [q["name"] for q in new if q["kind"] == "POSITIONAL_ONLY"]
    star = any(q["kind"] == "VAR_POSITIONAL" for q in new)
    renames: dict[str, str | None] = {}
    for index, name in enumerate(olds):
        if index < len(news):
            renames[name] = news[index]
        elif star:
            renames[name] = None
    return renames


def _compare_params(where: str, old: Any, new: Any) -> list[str]:
    if old is None or new is None:
        return []
    renames = _positional_only_renames(old, new)
    before, after = _params_by_name(old), _params_by_name(new)
    changes = []
    for name, p in before.items():
        if p["kind"] in ("VAR_POSITIONAL", "VAR_KEYWORD") or name in ("self", "cls"):
            continue
        if name in renames:
            if renames[name] is None:
                continue
            name = renames[name]
        if name not in after:
            takes_any = any(q["kind"] == "VAR_KEYWORD" for q in after.values())
            changes.append(
                f"{where}: parameter {name} removed" + (" (**kwargs)" if takes_any else "")
            )
            continue
        q = after[name]
        if p["kind"] != q["kind"]:
            changes.append(f"{where}: parameter {name} {p['kind']} -> {q['kind']}")
        if p["default"] != q["default"]:
            if p["default"] is not None and q["default"] is None:
                changes.append(f"{where}: parameter {name} now required")
            elif _comparable(p["default"]) and _comparable(q["default"]):
                changes.append(f"{where}: default of {name} {p['default']} -> {q['default']}")
    old_positional = [n for n, p in before.items() if "POSITIONAL" in p["kind"]]
    new_positional = [n for n, q in after.items() if "POSITIONAL" in q["kind"]]
    common = [n for n in old_positional if n in new_positional]
    if common != [n for n in new_positional if n in common]:
        changes.append(f"{where}: positional order {old_positional} -> {new_positional}")
    renamed = {n for n in renames.values() if n is not None}
    for name, q in after.items():
        if name in renamed:
            continue
        if name not in before and q["default"] is None and "VAR" not in q["kind"]:
            changes.append(f"{where}: new required parameter {name}")
    return changes


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed from ``old`` to ``new`` that can break code written for ``old``."""
    out = []
    for name, entry in old["api"].items():
        if name not in new["api"]:
            out.append(f"{name}: removed")
            continue
        other = new["api"][name]
        if entry["kind"] != other["kind"]:
            out.append(f"{name}: {entry['kind']} -> {other['kind']}")
            continue
        if entry["kind"] == "function":
            out += _compare_params(name, entry.get("parameters"), other.get("parameters"))
        elif entry["kind"] == "class":
            members, others = entry["members"], other["members"]
            for member, spec in members.items():
                where = f"{name}.{member}"
                if member not in others:
                    out.append(f"{where}: removed")
                elif spec["kind"] != others[member]["kind"]:
                    out.append(f"{where}: {spec['kind']} -> {others[member]['kind']}")
                elif spec["kind"] == "method":
                    out += _compare_params(
                        where, spec.get("parameters"), others[member].get("parameters")
                    )
    return out


def added(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names that ``new`` has and ``old`` lacks (the new API, for backports)."""
    return sorted(name for name in new["api"] if name not in old["api"])


#: Report entries that change nothing a caller can see, with the reason.
NOT_CHANGES: dict[str, str] = {
    "nnx.GraphState: function -> class": (
        "0.10's GraphState is a typing alias (State[Key, Leaf]), recorded as a callable; "
        "0.12's a class: both annotate, and states are State instances on every release"
    ),
    "nnx.*VariableState.raw_value: removed": (
        "0.11's VariableState is Variable, whose raw_value is an instance attribute (not a "
        "property): variable_state.raw_value reads as before"
    ),
}


def resolution(line: str) -> str:
    """How a report entry is accounted for: the pattern records whose ``api`` patterns match
    it (with their status), a recorded non-change, or ``[unresolved]``."""
    from nnx_compat import _patterns

    entry = line.split(" [", 1)[0]
    for pattern, reason in NOT_CHANGES.items():
        if fnmatch.fnmatchcase(entry, pattern):
            return f"[no change: {reason}]"
    records = [p for p in _patterns.PATTERNS if any(fnmatch.fnmatchcase(entry, g) for g in p.api)]
    if not records:
        return "[unresolved]"
    return "[" + ", ".join(f"{p.id}: {p.status}" for p in records) + "]"


def unused_patterns(lines: list[str]) -> list[str]:
    """The ``api`` patterns of the table, and the :data:`NOT_CHANGES`, that match no entry."""
    from nnx_compat import _patterns

    globs = [g for p in _patterns.PATTERNS for g in p.api] + list(NOT_CHANGES)
    return [g for g in globs if not any(fnmatch.fnmatchcase(line, g) for line in lines)]


def legacy_changes(paths: list[Path]) -> list[str]:
    """Every entry from the first snapshot (0.10) to each later one, without repeats."""
    snapshots = [json.loads(path.read_text()) for path in paths]
    seen: dict[str, None] = {}
    for last in snapshots[1:]:
        seen.update(dict.fromkeys(changes(snapshots[0], last)))
    return list(seen)


def report(paths: list[Path]) -> str:
    snapshots = [json.loads(path.read_text()) for path in paths]
    lines = ["# flax.nnx API changes", ""]
    lines.append(
        "Generated by `python -m tools.api_diff report` from the snapshots in `tools/api/`."
    )
    for old, new in itertools.pairwise(snapshots):
        found = changes(old, new)
        lines += ["", f"## {old['flax']} -> {new['flax']}: {len(found)} changes", ""]
        lines += [f"- {line}" for line in found]
        new_names = added(old, new)
        lines += ["", f"Added in {new['flax']}: {len(new_names)} names", ""]
        lines += [f"- {name}" for name in new_names]
    first = snapshots[0]
    for last in snapshots[1:]:
        found = changes(first, last)
        marked = [f"- {line} {resolution(line)}" for line in found]
        counts = {
            status: sum(f": {status}" in line for line in marked)
            for status in ("bridged", "native", "non-goal", "planned")
        }
        same = sum("[no change: " in line for line in marked)
        open_ = sum(line.endswith("[unresolved]") for line in marked)
        lines += ["", f"## From {first['flax']} to {last['flax']}, by pattern record", ""]
        lines += [
            f"{len(found)} changes. Entries per record status (an entry two records share "
            "counts for each): "
            + ", ".join(f"{n} {status}" for status, n in counts.items())
            + f"; {same} that change nothing a caller sees; {open_} unresolved.",
            "",
        ]
        lines += marked
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    snap = sub.add_parser("snapshot", help="record the installed flax's API")
    snap.add_argument("output", type=Path)
    rep = sub.add_parser("report", help="compare snapshots, oldest first")
    rep.add_argument("snapshots", type=Path, nargs="+")
    rep.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    if args.command == "snapshot":
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(dumps(snapshot()))
        return 0
    text = report(args.snapshots)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
