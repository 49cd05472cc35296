"""``nnx-compat check``: files, notebooks, directories, formats, exit status, parallel runs."""

from __future__ import annotations

import codecs
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nnx_compat.checker import ERROR_IDS, Finding, check_source
from nnx_compat.cli import check, main
from tests.cli.test_source import give, run_cli_unprivileged
from tests.cli.test_source import shared_dir as shared_dir  # a fixture

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
    assert proc.stderr.splitlines()[-1] == (
        "nnx-compat check: 1 file, 2 findings (1 dropout-positional, 1 optimizer-wrt-default)"
    )


def test_the_summary_counts_in_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.py").write_text(NEW)
    assert main(["check", str(tmp_path)]) == 0
    assert capsys.readouterr().err == "nnx-compat check: 1 file, 0 findings\n"
    (tmp_path / "b.py").write_text("from flax import nnx\nd = nnx.Dropout(0.5, (0,))\n")
    assert main(["check", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        "nnx-compat check: 2 files, 1 finding (1 dropout-positional)\n"
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"# -*- coding: latin-1 -*-\n# caf\xe9\n" + LEGACY.encode(),
        codecs.BOM_UTF8 + LEGACY.encode(),
        LEGACY.replace("\n", "\r\n").encode(),
    ],
    ids=["latin-1", "bom", "crlf"],
)
def test_files_are_decoded_as_python_decodes_them(
    raw: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.py"
    path.write_bytes(raw)
    assert main(["check", str(path), "--format", "json"]) == 1
    found = json.loads(capsys.readouterr().out)
    shift = 2 if raw.startswith(b"# -*-") else 0
    assert [(f["pattern"], f["line"], f["column"]) for f in found] == [
        ("dropout-positional", 2 + shift, 5),
        ("optimizer-wrt-default", 3 + shift, 7),
    ]


def test_read_errors_and_syntax_errors_have_their_own_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("latin.py").write_bytes(b"x = 1\ny = 'caf\xe9'\n")
    Path("gone.py").symlink_to("missing.py")
    Path("broken.ipynb").write_text('{"cells": [}')
    Path("broken.py").write_text("from flax import nnx\ndef f(:\n")
    Path("null.py").write_text("x = 1\0\n")
    argv = ["check", "latin.py", "gone.py", "broken.ipynb", "broken.py", "null.py"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    notebook, *others = out.splitlines()
    assert notebook.startswith("broken.ipynb:1:1: nnx-compat[read-error] not a notebook: ")
    assert others == [
        "broken.py:2:7: nnx-compat[syntax-error] invalid syntax",
        "gone.py:1:1: nnx-compat[read-error] broken symbolic link to missing.py",
        "latin.py:2:9: nnx-compat[read-error] cannot decode byte 0xe9 as utf-8 (invalid "
        "continuation byte), and no encoding is declared (PEP 263)",
        # columns are 1-based: an error without a column is at the line's start
        "null.py:1:1: nnx-compat[syntax-error] source code string cannot contain null bytes",
    ]
    assert err.splitlines()[-1] == (
        "nnx-compat check: 4 files, 5 findings (3 read-error, 2 syntax-error)"
    )
    assert main([*argv, "--ignore", "read-error"]) == 1
    assert {line.split("[")[1][:12] for line in capsys.readouterr().out.splitlines()} == {
        "syntax-error"
    }
    assert main([*argv, "--ignore", "syntax-error,read-error"]) == 0
    assert capsys.readouterr().out == ""
    # --select narrows the patterns: a file that cannot be checked is still reported
    assert main([*argv, "--select", "dropout-positional", "--format", "json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert [f["pattern"] for f in found] == [
        "read-error",
        "syntax-error",
        "read-error",
        "read-error",
        "syntax-error",
    ]
    assert found[2] == {
        "path": "gone.py",
        "line": 1,
        "column": 1,
        "pattern": "read-error",
        "message": "broken symbolic link to missing.py",
    }
    assert main([*argv, "--select", "syntax-error", "--format", "github"]) == 1
    assert (
        capsys.readouterr()
        .out.splitlines()[1]
        .startswith("::warning file=broken.py,line=2,col=7,title=nnx-compat[syntax-error]::")
    )


def test_error_ids_are_listed_once_with_what_they_mean() -> None:
    assert [i for i, _ in ERROR_IDS] == ["read-error", "syntax-error"]
    assert all(description and "\n" not in description for _, description in ERROR_IDS)
    assert check._ids("read-error, syntax-error,dropout-positional") == [
        "read-error",
        "syntax-error",
        "dropout-positional",
    ]


def test_an_inline_comment_silences_an_error() -> None:
    broken = "from flax import nnx\ndef f(:  # nnx-compat: ignore[syntax-error]\n"
    assert check_source(broken) == []
    other = "from flax import nnx\ndef f(:  # nnx-compat: ignore[dropout-positional]\n"
    assert [f.pattern for f in check_source(other)] == ["syntax-error"]
    assert check_source(broken.replace("def f(:", "def f("), ignore=["syntax-error"]) == []


def test_an_inline_comment_silences_a_decoding_error(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_bytes(b"x = 1\ny = 'caf\xe9'  # nnx-compat: ignore[read-error]\n")
    assert check.check_file(str(path), "0.12", None, []) == []
    path.write_bytes(b"x = 1\ny = 'caf\xe9'  # nnx-compat: ignore[syntax-error]\n")
    assert [f.pattern for f in check.check_file(str(path), "0.12", None, [])] == ["read-error"]


def test_an_error_finding_reads_like_the_others() -> None:
    finding = Finding("m.py", 1, 1, "read-error", None, "cannot read: Permission denied")
    assert finding.text() == "m.py:1:1: nnx-compat[read-error] cannot read: Permission denied"
    assert finding.as_dict()["message"] == "cannot read: Permission denied"


def test_an_unreadable_file_is_a_read_error(shared_dir: Path) -> None:
    for name in ("locked.py", "open.py"):
        (shared_dir / name).write_text(LEGACY)
        give(shared_dir / name, 0o644)
    (shared_dir / "locked.py").chmod(0)
    status, out, err = run_cli_unprivileged(["check", "--jobs", "1", "."], shared_dir)
    assert "Traceback" not in err and status == 1, err
    assert out.splitlines()[0] == (
        "locked.py:1:1: nnx-compat[read-error] cannot read: Permission denied"
    )
    assert err.splitlines()[-1].startswith("nnx-compat check: 2 files, 3 findings")


def test_check_imports_no_codemod_or_flax(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_bytes(codecs.BOM_UTF8 + LEGACY.encode())
    code = (
        "import sys\n"
        "from nnx_compat.cli import main\n"
        "main(['check', '--jobs', '1', sys.argv[1]])\n"
        "heavy = ('libcst', 'flax', 'jax', 'numpy')\n"
        "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert proc.stderr.splitlines()[-1] == "[]", proc.stderr


def test_a_broken_link_named_and_walked_is_reported_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("gone.py").symlink_to("missing.py")
    assert main(["check", ".", "gone.py"]) == 1
    out, err = capsys.readouterr()
    assert out == "gone.py:1:1: nnx-compat[read-error] broken symbolic link to missing.py\n"
    assert err == "nnx-compat check: 0 files, 1 finding (1 read-error)\n"


def test_an_inline_comment_counts_lines_as_python_does() -> None:
    code = "from flax import nnx\n\x0c\nd = nnx.Dropout(0.5, (0,))  # nnx-compat: ignore\n"
    assert check_source(code) == []
    assert check_source(code + "def f(:  # nnx-compat: ignore[syntax-error]\n") == []


def test_a_finding_names_the_attribute_the_code_assigns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "model.py"
    script.write_text(
        "from flax import nnx\nclass M(nnx.Module):\n    def __init__(self, rngs):\n"
        "        self.blocks = [nnx.Linear(1, 1, rngs=rngs)]\n"
        "        self.heads = {'a': nnx.Linear(1, 1, rngs=rngs)}\n"
    )
    assert main(["check", str(script)]) == 1
    out = capsys.readouterr().out
    assert "nnx-compat[list-attribute] self.blocks = [module, ...]" in out
    assert "-> self.blocks = nnx.List([module, ...])" in out
    assert "nnx-compat[dict-attribute] self.heads = {'a': module}" in out
    assert "self.layers" not in out and "self.blocks = {" not in out
    assert main(["check", "--format", "json", str(script)]) == 1
    (first, second) = json.loads(capsys.readouterr().out)
    assert first["legacy"].startswith("self.blocks = [") and first["new"].startswith("self.blocks")
    assert second["new"].startswith("self.heads = nnx.Dict(")
