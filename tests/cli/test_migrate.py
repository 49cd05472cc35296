"""``nnx-compat migrate``: dry run, atomic writes, files it must not touch, notebooks, exit
status, per-file errors, encodings, links."""

from __future__ import annotations

import codecs
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nnx_compat.cli import main, migrate
from tests.cli.test_source import give, run_cli_unprivileged
from tests.cli.test_source import shared_dir as shared_dir  # a fixture

LEGACY = "from flax import nnx\nopt = nnx.Optimizer(model, tx)  # keep me\nopt.update(grads)\n"
MIGRATED = (
    "from flax import nnx\nopt = nnx.Optimizer(model, tx, wrt=nnx.Param)  # keep me\n"
    "opt.update(model, grads)\n"
)
#: A legacy call the codemod cannot rewrite: a manual item.
MANUAL = (
    "from flax import nnx\n"
    "def step(optimizer: nnx.Optimizer, grads):\n"
    "    optimizer.update(grads)\n"
)


def test_a_dry_run_prints_a_diff_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "train.py"
    script.write_text(LEGACY)
    assert main(["migrate", str(script)]) == 1  # changes pending
    out, err = capsys.readouterr()
    assert script.read_text() == LEGACY
    assert f"--- a/{script}" in out and "+opt.update(model, grads)" in out
    assert "1 file, 1 to change (dry run, nothing written)" in err
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


def test_files_that_are_not_utf8_or_do_not_parse_are_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "latin.py").write_bytes(b"# caf\xe9\nfrom flax import nnx\nnnx.Optimizer(m, t)\n")
    (tmp_path / "broken.py").write_text("from flax import nnx\ndef f(:\n")
    (tmp_path / "good.py").write_text(LEGACY)
    assert main(["migrate", "--write", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert (
        f"{tmp_path / 'latin.py'}:1:6: nnx-compat[read-error] skipped: cannot decode byte 0xe9 "
        "as utf-8 (invalid continuation byte), and no encoding is declared (PEP 263)\n"
    ) in err
    broken = tmp_path / "broken.py"
    assert f"{broken}:2:7: nnx-compat[syntax-error] skipped: invalid syntax\n" in err
    assert err.splitlines()[-1].endswith("; 2 errors")
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


def _summary(err: str) -> str:
    """The last line of stderr, which is the summary."""
    last = err.splitlines()[-1]
    assert last.startswith("nnx-compat migrate: "), err
    return last


@pytest.mark.parametrize(
    ("text", "argv", "status"),
    [
        (MIGRATED, [], 0),
        (MIGRATED, ["--write"], 0),
        (LEGACY, [], 1),
        (LEGACY, ["--diff"], 1),
        (LEGACY, ["--write"], 0),
        (MANUAL, [], 1),
        (MANUAL, ["--write"], 1),
        (LEGACY + MANUAL.replace("from flax import nnx\n", ""), ["--write"], 1),
    ],
    ids=[
        "clean",
        "clean-write",
        "legacy",
        "legacy-diff",
        "legacy-write",
        "manual",
        "manual-write",
        "legacy-and-manual-write",
    ],
)
def test_the_exit_status_says_whether_work_is_left(
    text: str, argv: list[str], status: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "train.py"
    script.write_text(text)
    assert main(["migrate", *argv, str(script)]) == status
    assert _summary(capsys.readouterr().err).startswith("nnx-compat migrate: 1 file, ")
    assert main(["migrate", str(tmp_path / "missing.py")]) == 2


def test_the_summary_counts_in_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "train.py").write_text(MANUAL)
    main(["migrate", str(tmp_path)])
    err = capsys.readouterr().err
    assert _summary(err) == (
        "nnx-compat migrate: 1 file, 0 to change (dry run, nothing written); rewrites: none; "
        "1 manual item, the rest only your tests find (above)"
    )
    from nnx_compat.codemod import runtime_only

    # the line above the summary: what only the run time finds, and how to find it
    note = err.splitlines()[-2]
    ids = ", ".join(p.id for p in runtime_only("0.12"))
    assert note == (
        f"nnx-compat migrate: {len(runtime_only('0.12'))} patterns can only be found at run "
        f"time ({ids}): run your tests with pytest --nnx-compat=report"
    )
    assert "state-copies" in ids  # partly static: its other shapes only the run time sees
    (tmp_path / "other.py").write_text(MANUAL + "opt = nnx.Optimizer(model, tx)\n")
    main(["migrate", str(tmp_path)])
    assert _summary(capsys.readouterr().err) == (
        "nnx-compat migrate: 2 files, 1 to change (dry run, nothing written); rewrites: "
        "1 optimizer-wrt-default; 2 manual items, the rest only your tests find (above)"
    )


@pytest.mark.parametrize(
    "text",
    [
        LEGACY.removesuffix("\n"),  # no newline at the end of the file
        LEGACY.replace("# keep me", "# keep\x0c me"),  # a form feed is no line break
        LEGACY.replace("\n", "\r\n"),
        MIGRATED.removesuffix("\n") + "\nopt = nnx.Optimizer(m, tx)",
    ],
    ids=["no-final-newline", "form-feed", "crlf", "last-line-only"],
)
def test_the_diff_applies_with_git_and_patch(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    script = Path("train.py")
    script.write_bytes(text.encode())
    assert main(["migrate", "train.py"]) == 1
    Path("fix.patch").write_bytes(capsys.readouterr().out.encode())
    expected = migrate.migrate_text(text, "train.py", "0.12")[0]
    assert expected != text
    if not text.endswith("\n"):
        assert "\n\\ No newline at end of file\n" in Path("fix.patch").read_text()
    subprocess.run(["git", "apply", "--check", "fix.patch"], check=True)
    if shutil.which("patch"):
        subprocess.run(["patch", "--dry-run", "-p1", "-i", "fix.patch"], check=True)
    subprocess.run(["git", "apply", "fix.patch"], check=True)
    assert script.read_bytes() == expected.encode()


def test_a_read_only_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frozen = tmp_path / "frozen.py"
    frozen.write_text(LEGACY)
    frozen.chmod(0o444)  # refused as root too: no write bit is a deliberate marker
    (tmp_path / "open.py").write_text(LEGACY)
    assert main(["migrate", "--write", str(tmp_path)]) == 1
    assert frozen.read_text() == LEGACY and (tmp_path / "open.py").read_text() == MIGRATED
    assert stat.S_IMODE(frozen.stat().st_mode) == 0o444
    err = capsys.readouterr().err
    assert (
        f"nnx-compat migrate: {frozen}: read-only file (no write permission): not written\n"
    ) in err
    assert _summary(err).startswith("nnx-compat migrate: 2 files, 2 to change (1 written, ")
    assert _summary(err).endswith("; 1 error")


def test_root_keeps_the_owner_of_another_users_file(
    shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can write another user's file")
    script = shared_dir / "train.py"
    script.write_text(LEGACY)
    give(script, 0o640)
    before = script.stat()
    assert main(["migrate", "--write", str(script)]) == 0
    after = script.stat()
    assert script.read_text() == MIGRATED
    assert (after.st_uid, after.st_gid, after.st_mode) == (
        before.st_uid,
        before.st_gid,
        before.st_mode,
    )


def test_links_are_written_through_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    real = tmp_path / "real.py"
    real.write_text(LEGACY)
    (tmp_path / "sub").mkdir()
    links = [tmp_path / "a.py", tmp_path / "sub" / "b.py"]
    links[0].symlink_to(real)
    links[1].symlink_to(Path("..") / "real.py")
    assert main(["migrate", "--write", *map(str, links), str(real)]) == 0
    assert real.read_text() == MIGRATED
    assert all(link.is_symlink() and link.read_text() == MIGRATED for link in links)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.py", "real.py", "sub"]
    assert _summary(capsys.readouterr().err).startswith(
        "nnx-compat migrate: 1 file, 1 to change (1 written)"
    )


def test_errors_are_per_file_and_the_run_completes(shared_dir: Path) -> None:
    """As an unprivileged user: an unreadable file, a directory the user cannot write, a file
    the user may not write; the others are migrated, and the summary is the last line."""
    for name in ("a.py", "frozen/b.py", "locked.py", "theirs.py", "z.py"):
        path = shared_dir / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(LEGACY)
        give(path, 0o644)
    give(shared_dir / "frozen", 0o555)
    (shared_dir / "locked.py").chmod(0)
    if os.geteuid() == 0:
        os.chown(shared_dir / "theirs.py", 0, 0)  # root's, 0o644: not writable by nobody
    else:
        (shared_dir / "theirs.py").chmod(0o444)
    argv = ["a.py", "frozen", "locked.py", "theirs.py", "z.py"]
    status, _, err = run_cli_unprivileged(["migrate", "--write", *argv], shared_dir)
    assert "Traceback" not in err and status == 1, err
    for name in ("a.py", "frozen/b.py", "z.py"):
        assert (shared_dir / name).read_text() == MIGRATED, name
    assert (shared_dir / "theirs.py").read_text() == LEGACY
    lines = err.splitlines()
    assert "locked.py:1:1: nnx-compat[read-error] skipped: cannot read: Permission denied" in lines
    assert (
        "nnx-compat migrate: theirs.py: read-only file (no write permission): not written"
    ) in lines
    assert lines[-1] == (
        "nnx-compat migrate: 5 files, 4 to change (3 written, 1 not written); rewrites: "
        "4 optimizer-update-grads, 4 optimizer-wrt-default; 0 manual items, the rest only your "
        "tests find (above); 2 errors"
    )


def test_encodings_boms_and_newlines_are_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cookie = b"# -*- coding: latin-1 -*-\n# caf\xe9\n"
    files = {
        "latin.py": (cookie + LEGACY.encode(), cookie + MIGRATED.encode()),
        "bom.py": (codecs.BOM_UTF8 + LEGACY.encode(), codecs.BOM_UTF8 + MIGRATED.encode()),
        "crlf.py": (
            LEGACY.replace("\n", "\r\n").encode(),
            MIGRATED.replace("\n", "\r\n").encode(),
        ),
    }
    for name, (before, _) in files.items():
        (tmp_path / name).write_bytes(before)
    assert main(["migrate", "--write", str(tmp_path)]) == 0
    for name, (_, after) in files.items():
        assert (tmp_path / name).read_bytes() == after, name
    assert _summary(capsys.readouterr().err).startswith("nnx-compat migrate: 3 files, 3 to ")


def test_a_rewrite_the_files_encoding_cannot_hold_is_a_per_file_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ascii_file = tmp_path / "a.py"
    ascii_file.write_bytes(b"# coding: ascii\n" + LEGACY.encode())
    (tmp_path / "b.py").write_text(LEGACY)
    real = migrate.migrate_text

    def arrow(text: str, path: str, target: str) -> tuple[str, object, list[object]]:
        new, counts, manual = real(text, path, target)
        return new + "# \u2192\n", counts, manual

    monkeypatch.setattr(migrate, "migrate_text", arrow)
    assert main(["migrate", "--write", str(tmp_path)]) == 1
    assert ascii_file.read_bytes() == b"# coding: ascii\n" + LEGACY.encode()
    assert (tmp_path / "b.py").read_text() == MIGRATED + "# \u2192\n"
    err = capsys.readouterr().err
    assert (
        f"nnx-compat migrate: {ascii_file}: the rewrite cannot be encoded in ascii "
        "('\u2192' at line 5, column 3): not written\n"
    ) in err
    assert _summary(err).endswith("; 1 error")


def test_a_broken_link_named_and_walked_is_reported_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("gone.py").symlink_to("missing.py")
    assert main(["migrate", ".", "gone.py"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "gone.py:1:1: nnx-compat[read-error] skipped: broken symbolic link to missing.py",
        "nnx-compat migrate: 0 files, 0 to change (dry run, nothing written); rewrites: none; "
        "0 manual items; 1 error",
    ]


def test_code_libcst_cannot_parse_is_a_syntax_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import libcst

    def parse(text: str, path: str, target: str) -> object:
        return libcst.parse_module("x = 1\ndef f(:\n")  # raises, as for syntax ast reads

    script = tmp_path / "train.py"
    script.write_text(LEGACY)
    monkeypatch.setattr(migrate, "migrate_text", parse)
    fault = migrate.migrate_file(str(script), "0.12").error
    assert fault is not None
    assert (fault.pattern, fault.line, fault.column) == ("syntax-error", 2, 1)
    assert fault.message.startswith("libcst cannot parse it: parser error")
