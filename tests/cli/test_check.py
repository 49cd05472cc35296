"""``nnx-compat check``: files, notebooks, directories, formats, exit status, parallel runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nnx_compat.cli import check, main

LEGACY = "from flax import nnx\nd = nnx.Dropout(0.5, (0,))\nopt = nnx.Optimizer(m, tx)\n"
NEW = "from flax import nnx\nd = nnx.Dropout(0.5, broadcast_dims=(0,))\n"


def _notebook(*cells: tuple[str, str]) -> str:
    return json.dumps(
        {
            "cells": [
                {"cell_type": kind, "source": source.splitlines(keepends=True), "metadata": {}}
                for kind, source in cells
            ],
            "metadata": {},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "legacy.py").write_text(LEGACY)
    (tmp_path / "pkg" / "new.py").write_text(NEW)
    (tmp_path / "pkg" / "broken.py").write_text("from flax import nnx\ndef f(:\n")
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "dep.py").write_text(LEGACY)
    (tmp_path / "vendored").mkdir()
    (tmp_path / "vendored" / "old.py").write_text(LEGACY)
    (tmp_path / "train.ipynb").write_text(
        _notebook(
            ("markdown", "# nnx.Dropout(0.5, (0,)) in prose"),
            ("code", "%matplotlib inline\nfrom flax import nnx"),
            ("code", "x = 1\nd = nnx.Dropout(0.5, (0,))"),
        )
    )
    return tmp_path


def test_text_output_and_exit_status(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree)
    assert main(["check", "pkg", "train.ipynb", "--exclude", "vendored/"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "pkg/broken.py:2:7: nnx-compat[syntax-error] invalid syntax",
        "pkg/legacy.py:2:5: nnx-compat[dropout-positional] nnx.Dropout(rate, broadcast_dims, ...)"
        " -> nnx.Dropout(rate, broadcast_dims=..., ...) (flax 0.11.0)",
        "pkg/legacy.py:3:7: nnx-compat[optimizer-wrt-default] nnx.Optimizer(model, tx) -> "
        "nnx.Optimizer(model, tx, wrt=nnx.Param) (flax 0.11.0)",
        "train.ipynb:cell 3:line 2:5: nnx-compat[dropout-positional] nnx.Dropout(rate, "
        "broadcast_dims, ...) -> nnx.Dropout(rate, broadcast_dims=..., ...) (flax 0.11.0)",
    ]


def test_directories_skip_environments_and_excludes(tree: Path) -> None:
    found = sorted(
        p.relative_to(tree).as_posix() for p in check.discover([str(tree)], ["vendored"])
    )
    assert found == ["pkg/broken.py", "pkg/legacy.py", "pkg/new.py", "train.ipynb"]
    anchored = check.discover([str(tree)], ["/pkg/new.py"])
    assert "pkg/new.py" not in [p.relative_to(tree).as_posix() for p in anchored]


def test_clean_code_exits_0(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tree / "pkg" / "new.py")]) == 0
    assert capsys.readouterr().out == ""


def test_usage_errors_exit_2(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tree / "nothing-here")]) == 2
    assert main(["check", str(tree), "--select", "no-such-id"]) == 2
    err = capsys.readouterr().err
    assert "no such file or directory" in err and "unknown pattern ids ['no-such-id']" in err
    with pytest.raises(SystemExit) as exited:
        main(["check", str(tree), "--target", "0.9"])
    assert exited.value.code == 2


def test_json_and_github_formats(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    legacy = str(tree / "pkg" / "legacy.py")
    main(["check", legacy, "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert [d["pattern"] for d in data] == ["dropout-positional", "optimizer-wrt-default"]
    assert data[0] | {"path": "x"} == {
        "path": "x",
        "line": 2,
        "column": 5,
        "pattern": "dropout-positional",
        "legacy": "nnx.Dropout(rate, broadcast_dims, ...)",
        "new": "nnx.Dropout(rate, broadcast_dims=..., ...)",
        "changed_in": "0.11.0",
    }
    main(["check", legacy, "--format", "github"])
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"::warning file={legacy},line=2,col=5,title=nnx-compat[dropout-")


def test_notebook_cells_keep_their_numbers() -> None:
    from nnx_compat.checker import notebook_cells

    cells = notebook_cells(_notebook(("markdown", "x"), ("code", "!pip install flax\ny = 1")))
    assert cells == [(2, "pass\ny = 1")]


def test_parallel_run_gives_the_same_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(80):  # above the parallel threshold
        (tmp_path / f"m{i:02}.py").write_text(LEGACY if i % 2 else NEW)
    assert main(["check", str(tmp_path), "--jobs", "1"]) == 1
    serial = capsys.readouterr().out
    assert main(["check", str(tmp_path), "--jobs", "2"]) == 1
    assert capsys.readouterr().out == serial
    assert serial.count("\n") == 80


def test_the_command_line_entry(tree: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nnx_compat", "check", str(tree / "pkg" / "legacy.py")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "nnx-compat[dropout-positional]" in proc.stdout
    assert "1 files, 2 findings" in proc.stderr
