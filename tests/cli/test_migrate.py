"""``nnx-compat migrate``: dry run, atomic writes, files it must not touch, notebooks."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from nnx_compat.cli import main, migrate

LEGACY = "from flax import nnx\nopt = nnx.Optimizer(model, tx)  # keep me\nopt.update(grads)\n"
MIGRATED = (
    "from flax import nnx\nopt = nnx.Optimizer(model, tx, wrt=nnx.Param)  # keep me\n"
    "opt.update(model, grads)\n"
)


def test_a_dry_run_prints_a_diff_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "train.py"
    script.write_text(LEGACY)
    assert main(["migrate", str(script)]) == 0
    out, err = capsys.readouterr()
    assert script.read_text() == LEGACY
    assert f"--- a/{script}" in out and "+opt.update(model, grads)" in out
    assert "1 to change (dry run, nothing written)" in err
    assert "1 optimizer-update-grads, 1 optimizer-wrt-default" in err


def test_write_rewrites_atomically_keeping_permissions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "train.py"
    script.write_text(LEGACY)
    os.chmod(script, 0o640)
    assert main(["migrate", "--write", str(tmp_path)]) == 0
    assert script.read_text() == MIGRATED
    assert stat.S_IMODE(script.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["train.py"]  # no temporary file left
    assert main(["migrate", "--write", str(tmp_path)]) == 0  # idempotent
    assert script.read_text() == MIGRATED
    assert "0 to change" in capsys.readouterr().err


def test_a_file_changed_since_it_was_read_is_not_written(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(LEGACY)
    result = migrate.migrate_file(str(script), "0.12")
    script.write_text(LEGACY + "# edited meanwhile\n")
    assert migrate.write_atomic(str(script), result.old, result.new) == (
        "changed since it was read: not written"
    )
    assert script.read_text() == LEGACY + "# edited meanwhile\n"


def test_files_that_are_not_utf8_or_do_not_parse_are_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "latin.py").write_bytes(b"# caf\xe9\nfrom flax import nnx\nnnx.Optimizer(m, t)\n")
    (tmp_path / "broken.py").write_text("from flax import nnx\ndef f(:\n")
    (tmp_path / "good.py").write_text(LEGACY)
    assert main(["migrate", "--write", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "latin.py: skipped, not UTF-8" in err and "broken.py: skipped, does not parse" in err
    assert (tmp_path / "latin.py").read_bytes().startswith(b"# caf\xe9")
    assert (tmp_path / "good.py").read_text() == MIGRATED


def test_notebook_code_cells_are_rewritten_and_the_rest_untouched(tmp_path: Path) -> None:
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": 1,
                "metadata": {"tags": ["setup"]},
                "outputs": [{"output_type": "stream", "name": "stdout", "text": ["ok\n"]}],
                "source": ["%matplotlib inline\n", "from flax import nnx"],
            },
            {"cell_type": "markdown", "metadata": {}, "source": ["nnx.Optimizer(model, tx)"]},
            {
                "cell_type": "code",
                "execution_count": 2,
                "metadata": {},
                "outputs": [],
                "source": ["opt = nnx.Optimizer(model, tx)\n", "if True:\n", "    !ls\n"],
            },
        ],
        "metadata": {"kernelspec": {"name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "train.ipynb"
    path.write_text(json.dumps(notebook, indent=1) + "\n")
    assert main(["migrate", "--write", str(path)]) == 0
    after = json.loads(path.read_text())
    assert after["cells"][2]["source"] == [
        "opt = nnx.Optimizer(model, tx, wrt=nnx.Param)\n",
        "if True:\n",
        "    !ls\n",
    ]
    notebook["cells"][2]["source"] = after["cells"][2]["source"]
    assert after == notebook  # outputs, metadata, markdown and magics untouched
    assert path.read_text() == json.dumps(notebook, indent=1) + "\n"


def test_without_libcst_the_command_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "train.py").write_text(LEGACY)
    monkeypatch.setitem(sys.modules, "libcst", None)
    monkeypatch.setitem(sys.modules, "libcst.metadata", None)
    assert main(["migrate", str(tmp_path)]) == 2
    assert "pip install 'nnx_compat[tools]'" in capsys.readouterr().err
