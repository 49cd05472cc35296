"""PEP 702 under real type checkers: mypy (``--enable-error-code deprecated``) and basedpyright
flag every ``# legacy`` line of sample.py through ``from nnx_compat import nnx``, and nothing
else (the new forms are clean)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SAMPLE = Path(__file__).with_name("sample.py")


def _legacy_lines() -> set[int]:
    lines = SAMPLE.read_text().splitlines()
    return {n for n, line in enumerate(lines, 1) if line.rstrip().endswith("# legacy")}


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    target = tmp_path / "sample.py"
    shutil.copy(SAMPLE, target)
    return target


def test_the_sample_has_legacy_and_new_lines() -> None:
    assert len(_legacy_lines()) >= 10
    assert "wrt=nnx.Param" in SAMPLE.read_text()


def test_mypy(sample: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--enable-error-code",
            "deprecated",
            "--ignore-missing-imports",
            "--follow-imports=silent",
            "--no-error-summary",
            "--show-error-codes",
            "--no-incremental",
            sample.name,
        ],
        cwd=sample.parent,
        capture_output=True,
        text=True,
    )
    errors = [line for line in out.stdout.splitlines() if ": error: " in line]
    deprecated = {
        int(m[1]) for e in errors if (m := re.match(r"sample\.py:(\d+): .*\[deprecated\]$", e))
    }
    assert deprecated == _legacy_lines(), out.stdout
    assert len(errors) == len(deprecated), "only deprecations, and one per legacy line"
    assert "[nnx-compat: optimizer-update-grads]" in out.stdout  # the table's id, as at run time


def test_basedpyright(sample: Path) -> None:
    (sample.parent / "pyrightconfig.json").write_text(
        json.dumps({"typeCheckingMode": "basic", "reportDeprecated": "error"})
    )
    out = subprocess.run(
        [
            shutil.which("basedpyright", path=str(Path(sys.executable).parent)) or "basedpyright",
            "--pythonpath",
            sys.executable,
            "--outputjson",
            sample.name,
        ],
        cwd=sample.parent,
        capture_output=True,
        text=True,
    )
    diagnostics = json.loads(out.stdout)["generalDiagnostics"]
    lines = {d["range"]["start"]["line"] + 1 for d in diagnostics}
    assert {d.get("rule") for d in diagnostics} == {"reportDeprecated"}, diagnostics
    assert lines == _legacy_lines()
    assert len(diagnostics) == len(lines)
