"""The API audit (``tools/api_diff.py``): its snapshots and report are what the code produces."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools import api_diff

RELEASES = ("0.10.7", "0.11.2", "0.12.8")
INSTALLED = importlib.metadata.version("flax")


@pytest.mark.skipif(INSTALLED not in RELEASES, reason=f"no snapshot of flax {INSTALLED}")
def test_the_snapshot_of_the_installed_flax_is_current(tmp_path: Path) -> None:
    """Regenerated in a fresh interpreter (importing ``nnx_compat.nnx`` patches flax's Variable
    and GraphDef, and the audit is of flax's own API); a mismatch means the audit is stale."""
    shipped = json.loads(api_diff.snapshot_path(INSTALLED).read_text())
    jax = importlib.metadata.version("jax")
    if jax != shipped["jax"]:  # flax re-exports jax's functions: their signatures are jax's
        pytest.skip(
            f"the snapshot of flax {INSTALLED} was taken with jax {shipped['jax']}, not {jax}"
        )
    out = tmp_path / "snapshot.json"
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "tools.api_diff", "snapshot", str(out)], cwd=root, check=True
    )
    fresh = json.loads(out.read_text())
    assert fresh["flax"] == shipped["flax"]
    missing = sorted(set(shipped["api"]) - set(fresh["api"]))
    extra = sorted(set(fresh["api"]) - set(shipped["api"]))
    changed = sorted(
        n for n in shipped["api"] if n in fresh["api"] and shipped["api"][n] != fresh["api"][n]
    )
    assert (missing, extra, changed) == ([], [], [])


def test_the_report_is_generated_from_the_snapshots() -> None:
    paths = [api_diff.snapshot_path(release) for release in RELEASES]
    assert (api_diff.SNAPSHOTS / "REPORT.md").read_text() == api_diff.report(paths), (
        "tools/api/REPORT.md is stale: python -m tools.api_diff report "
        + " ".join(str(p) for p in paths)
        + " --output tools/api/REPORT.md"
    )


def test_changes_are_found() -> None:
    def snap(params: list[dict[str, object]], members: dict[str, object]) -> dict[str, object]:
        return {
            "flax": "x",
            "api": {
                "nnx.f": {"kind": "function", "parameters": params},
                "nnx.C": {"kind": "class", "members": members},
            },
        }

    old = snap(
        [
            {"name": "a", "kind": "POSITIONAL_OR_KEYWORD", "default": None},
            {"name": "b", "kind": "POSITIONAL_OR_KEYWORD", "default": "1"},
        ],
        {"m": {"kind": "method", "parameters": []}, "p": {"kind": "property"}},
    )
    new = snap(
        [
            {"name": "a", "kind": "POSITIONAL_OR_KEYWORD", "default": None},
            {"name": "b", "kind": "KEYWORD_ONLY", "default": "2"},
            {"name": "c", "kind": "KEYWORD_ONLY", "default": None},
        ],
        {"p": {"kind": "property"}},
    )
    assert api_diff.changes(old, new) == [
        "nnx.f: parameter b POSITIONAL_OR_KEYWORD -> KEYWORD_ONLY",
        "nnx.f: default of b 1 -> 2",
        "nnx.f: new required parameter c",
        "nnx.C.m: removed",
    ]
    assert api_diff.resolution("nnx.Optimizer.update: new required parameter model") == (
        "[optimizer-update-grads: bridged]"
    )
    assert api_diff.resolution("nnx.no_such_name: removed") == "[unresolved]"


def test_a_renamed_positional_only_parameter_is_no_change() -> None:
    def params(*names: str, star: bool = False) -> list[dict[str, object]]:
        out: list[dict[str, object]] = [
            {"name": n, "kind": "POSITIONAL_ONLY", "default": None} for n in names
        ]
        if star:
            out.append({"name": "rest", "kind": "VAR_POSITIONAL", "default": None})
        return out

    def snap(parameters: list[dict[str, object]]) -> dict[str, object]:
        return {"flax": "x", "api": {"nnx.f": {"kind": "function", "parameters": parameters}}}

    # flax 0.12's merge(graphdef_or_graphstate, /, *states) for merge(graphdef, state, /, *states)
    old, new = snap(params("graphdef", "state", star=True)), snap(params("either", star=True))
    assert api_diff.changes(old, new) == []
    assert api_diff.changes(snap(params("a", "b")), snap(params("a"))) == [
        "nnx.f: parameter b removed"
    ]


def test_every_legacy_entry_is_accounted_for() -> None:
    """Each 0.10 -> 0.11/0.12 entry is matched by a record's ``api`` patterns (bridged, native
    meaning, non-goal or planned with its reason) or is a recorded non-change; no pattern of
    the table matches nothing (a stale one would hide the next release's entries)."""
    paths = [api_diff.snapshot_path(release) for release in RELEASES]
    entries = api_diff.legacy_changes(paths)
    assert len(entries) > 150
    assert [e for e in entries if api_diff.resolution(e) == "[unresolved]"] == []
    assert api_diff.unused_patterns(entries) == []


def test_the_behaviour_audit_names_records_of_the_table() -> None:
    """Each A/B finding of ``tools/api/BEHAVIOUR.md`` is a record (and has its test)."""
    import re

    from nnx_compat import _patterns

    text = (api_diff.SNAPSHOTS / "BEHAVIOUR.md").read_text()
    headings = re.findall(r"^### \d+\. (.*)$", text, flags=re.M)
    assert len(headings) >= 10
    for heading in headings:
        ids = re.findall(r"`([a-z0-9-]+)` \(", heading)
        assert ids, heading
        for pattern_id in ids:
            _patterns.get(pattern_id)  # raises for an unknown id
