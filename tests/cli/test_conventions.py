"""What check and migrate share with ruff and black: ``-`` for standard input, colour on a
terminal only, exit codes in ``--help``, one prefix per message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nnx_compat.cli import _style, main

LEGACY = "from flax import nnx\nopt = nnx.Optimizer(m, tx)\nopt.update(grads)\n"
MIGRATED = "from flax import nnx\nopt = nnx.Optimizer(m, tx, wrt=nnx.Param)\nopt.update(m, grads)\n"


def _run(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "nnx_compat", *args],
        input=stdin,
        capture_output=True,
        env=env,
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_check_reads_standard_input() -> None:
    code, out, err = _run("check", "-", stdin=LEGACY.encode())
    assert code == 1
    assert out.splitlines()[0].startswith("-:2:7: nnx-compat[optimizer-wrt-default]")
    assert err.strip() == (
        "nnx-compat check: 1 file, 2 findings (1 optimizer-update-grads, 1 optimizer-wrt-default)"
    )
    code, out, _ = _run("check", "--stdin-filename", "src/train.py", "-", stdin=LEGACY.encode())
    assert out.splitlines()[1].startswith("src/train.py:3:1: nnx-compat[optimizer-update-grads]")
    assert _run("check", "-", stdin=b"from flax import nnx\n")[0] == 0


def test_standard_input_in_its_declared_encoding_and_as_a_notebook() -> None:
    latin = b"# -*- coding: latin-1 -*-\n# caf\xe9\n" + LEGACY.encode()
    code, out, _ = _run("check", "-", stdin=latin)
    assert code == 1 and "-:4:7: nnx-compat[optimizer-wrt-default]" in out
    notebook = {
        "cells": [
            {"cell_type": "code", "source": LEGACY, "metadata": {}, "outputs": []},
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    raw = json.dumps(notebook).encode()
    code, out, _ = _run("check", "--stdin-filename", "nb.ipynb", "-", stdin=raw)
    assert code == 1 and out.startswith("nb.ipynb:cell 1:line 2:7: nnx-compat[")


def test_migrate_reads_standard_input() -> None:
    code, out, err = _run("migrate", "-", stdin=LEGACY.encode())
    assert code == 1  # a dry run with changes pending
    assert out.startswith("--- a/-\n+++ b/-\n") and "+opt.update(m, grads)\n" in out
    assert err.splitlines()[-1].startswith("nnx-compat migrate: 1 file, 1 to change (dry run")
    code, out, err = _run("migrate", "--write", "-", stdin=LEGACY.encode())
    assert (code, out) == (0, MIGRATED)  # black's convention: the result on standard output
    code, out, _ = _run("migrate", "--write", "-", stdin=MIGRATED.encode())
    assert (code, out) == (0, MIGRATED)  # nothing to change: the input as it was
    latin = b"# -*- coding: latin-1 -*-\n# caf\xe9\n" + LEGACY.encode()
    out_bytes = subprocess.run(
        [sys.executable, "-m", "nnx_compat", "migrate", "--write", "-"],
        input=latin,
        capture_output=True,
    ).stdout
    assert out_bytes == b"# -*- coding: latin-1 -*-\n# caf\xe9\n" + MIGRATED.encode()


@pytest.mark.parametrize("command", ["check", "migrate"])
def test_standard_input_usage_errors(command: str, tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(LEGACY)
    code, _, err = _run(command, "-", str(tmp_path / "a.py"))
    assert code == 2 and "- (standard input) must be the only PATH" in err
    code, _, err = _run(command, "--stdin-filename", "x.py", str(tmp_path / "a.py"))
    assert code == 2 and "--stdin-filename names standard input: give - as the PATH" in err


def test_colour_only_where_asked_or_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "train.py"
    script.write_text(LEGACY)
    assert main(["check", "--color", "always", str(script)]) == 1
    out = capsys.readouterr().out
    assert f"\033[1m{script}:2:7\033[0m: \033[1;33mnnx-compat[optimizer-wrt-default]\033[0m" in out
    assert main(["check", str(script)]) == 1  # captured: not a terminal
    assert "\033[" not in capsys.readouterr().out
    assert main(["migrate", "--color", "always", str(script)]) == 1
    out = capsys.readouterr().out
    assert "\033[32m+opt.update(m, grads)\033[0m\n" in out and "\033[31m-opt.update(grads)" in out
    assert main(["migrate", "--color", "never", str(script)]) == 1
    assert "\033[" not in capsys.readouterr().out

    class Terminal:
        def isatty(self) -> bool:
            return True

    class Args:
        color = "auto"

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert _style.use_color(Args(), Terminal())  # type: ignore[arg-type]
    monkeypatch.setenv("NO_COLOR", "1")
    assert not _style.use_color(Args(), Terminal())  # type: ignore[arg-type]
    monkeypatch.setenv("NO_COLOR", "")  # empty: as if unset (no-color.org)
    assert _style.use_color(Args(), Terminal())  # type: ignore[arg-type]
    monkeypatch.setenv("TERM", "dumb")
    assert not _style.use_color(Args(), Terminal())  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ["check", "migrate", "doctor", "patterns", "fix-checkpoint"])
def test_every_help_states_the_exit_status_in_plain_text(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "exit status" in text.lower()
    assert "``" not in text and ":func:" not in text  # no reStructuredText markup
    if command in ("check", "migrate"):
        assert "PATH" in text and "- reads standard input" in text


def test_migrate_without_libcst_says_so_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import nnx_compat.codemod as codemod

    def missing() -> None:
        raise codemod.MissingLibcst(
            "nnx-compat migrate needs libcst: pip install 'nnx_compat[tools]'"
        )

    monkeypatch.setattr(codemod, "_libcst", missing)
    script = tmp_path / "train.py"
    script.write_text(LEGACY)
    assert main(["migrate", str(script)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nnx-compat migrate needs libcst: pip install")
    assert err.count("nnx-compat migrate") == 1
