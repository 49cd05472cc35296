"""Which files ``nnx-compat check`` and ``migrate`` read: environments, ignore files, links,
unreadable directories, MyST notebooks; ``--verbose`` and ``--jobs``."""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import pwd
import shutil
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nnx_compat.cli import check, main

LEGACY = "from flax import nnx\nd = nnx.Dropout(0.5, (0,))\n"
MYST = "---\njupytext:\n  text_representation:\n    format_name: myst\n---\n# Title\n\n"
MYST_CELL = "```{code-cell} ipython3\nfrom flax import nnx\nd = nnx.Dropout(0.5, (0,))\n```\n"


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _found(root: Path, *paths: Path, **options: Any) -> list[str]:
    """What discovery finds in ``paths`` (default: ``root``), relative to ``root``."""
    found = check.discover([str(p) for p in paths or (root,)], **options)
    return [p.relative_to(root).as_posix() for p in found]


def _skips(root: Path, **options: Any) -> dict[str, str]:
    """What discovery in ``root`` leaves out, and why."""
    skipped: dict[str, str] = {}

    def note(path: Path, reason: str) -> None:
        skipped[path.relative_to(root).as_posix()] = reason

    list(check.discover([str(root)], on_skip=note, **options))
    return skipped


# 1. environments and ignore files


def test_a_virtualenv_or_conda_env_of_any_name_is_skipped(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/model.py": LEGACY,
            "env/pyvenv.cfg": "home = /usr/bin\n",
            "env/lib/python3.11/site-packages/flax/nnx/x.py": LEGACY,
            "py311/conda-meta/history": "",
            "py311/lib/site.py": LEGACY,
        },
    )
    assert _found(tmp_path) == ["pkg/model.py"]


def test_gitignore_files_from_the_repository_root_down(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            ".git/info/exclude": "scratch.py\n",
            ".gitignore": "generated/\n*_pb2.py\n!keep_pb2.py\n/top_only.py\n",
            "repo_pkg/.gitignore": "local.py\n/anchored.py\n",
            "repo_pkg/a.py": "",
            "repo_pkg/local.py": "",
            "repo_pkg/anchored.py": "",
            "repo_pkg/sub/anchored.py": "",
            "repo_pkg/sub/local.py": "",
            "repo_pkg/x_pb2.py": "",
            "repo_pkg/keep_pb2.py": "",
            "repo_pkg/generated/g.py": "",
            "repo_pkg/scratch.py": "",
            "top_only.py": "",
            "repo_pkg/top_only.py": "",
        },
    )
    expected = [
        "repo_pkg/a.py",
        "repo_pkg/keep_pb2.py",
        "repo_pkg/top_only.py",
        "repo_pkg/sub/anchored.py",
    ]
    assert _found(tmp_path) == expected
    # walking a subdirectory still reads the ignore files above it, up to the .git
    assert _found(tmp_path, tmp_path / "repo_pkg") == expected
    everything = _found(tmp_path, respect_gitignore=False)
    assert "repo_pkg/generated/g.py" in everything and "top_only.py" in everything


def test_a_deeper_gitignore_can_reinclude(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            ".git/HEAD": "",
            ".gitignore": "*.py\n",
            "lib/.gitignore": "!*.py\n",
            "lib/kept.py": "",
            "dropped.py": "",
        },
    )
    assert _found(tmp_path) == ["lib/kept.py"]


def test_a_repository_inside_another_follows_its_own_ignore_files(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            ".git/HEAD": "",
            ".gitignore": "generated.py\n",
            "generated.py": "",
            "inner/.git/HEAD": "",
            "inner/.git/info/exclude": "local.py\n",
            "inner/generated.py": "",
            "inner/local.py": "",
            "inner/pkg/local.py": "",
        },
    )
    assert _found(tmp_path) == ["inner/generated.py"]
    assert _found(tmp_path, tmp_path / "inner") == ["inner/generated.py"]


def test_without_a_repository_the_walked_directory_s_gitignore_applies(tmp_path: Path) -> None:
    _write(tmp_path, {".gitignore": "generated/\n", "a.py": "", "generated/lib/b.py": ""})
    assert _found(tmp_path) == ["a.py"]


def test_a_file_named_on_the_command_line_is_always_read(tmp_path: Path) -> None:
    _write(tmp_path, {".git/HEAD": "", ".gitignore": "ignored.py\n", "ignored.py": LEGACY})
    named = tmp_path / "ignored.py"
    assert _found(tmp_path, named) == ["ignored.py"]
    assert _found(tmp_path, named, excludes=["ignored.py"]) == ["ignored.py"]


def test_a_directory_named_on_the_command_line_is_read_though_ignored(tmp_path: Path) -> None:
    _write(tmp_path, {".git/HEAD": "", ".gitignore": "generated/\n", "generated/lib/b.py": ""})
    assert _found(tmp_path) == []
    assert _found(tmp_path, tmp_path / "generated") == ["generated/lib/b.py"]


def test_migrate_write_leaves_environments_and_ignored_folders_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(
        tmp_path,
        {
            ".gitignore": "third_party/\n",
            "env/pyvenv.cfg": "home = /usr/bin\n",
            "env/lib/dep.py": LEGACY,
            "third_party/vendored.py": LEGACY,
        },
    )
    monkeypatch.chdir(tmp_path)
    assert main(["migrate", "--write", "."]) == 0
    assert "0 files" in capsys.readouterr().err
    assert (tmp_path / "env/lib/dep.py").read_text() == LEGACY
    assert (tmp_path / "third_party/vendored.py").read_text() == LEGACY


def test_no_respect_gitignore_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path, {".gitignore": "old.py\nignored/\n", "old.py": LEGACY, "ignored/x.py": LEGACY})
    monkeypatch.chdir(tmp_path)
    assert main(["check", "."]) == 0
    assert main(["check", ".", "--no-respect-gitignore"]) == 1
    out = capsys.readouterr().out
    assert "old.py:2:5: nnx-compat[dropout-positional]" in out
    assert "ignored/x.py:2:5: nnx-compat[dropout-positional]" in out
    # migrate (its files then left out by --exclude: the rewrites are test_migrate's)
    assert main(["migrate", ".", "-v"]) == 0
    err = capsys.readouterr().err
    assert "skipped ignored: .gitignore\n" in err and "skipped old.py: .gitignore\n" in err
    argv = ["migrate", ".", "-v", "--no-respect-gitignore", "--exclude", "*.py"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "skipped ignored/x.py: --exclude\n" in err and "skipped old.py: --exclude\n" in err


# 2. --verbose


def test_discover_reports_each_skip_and_its_reason(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            ".gitignore": "ignored/\n",
            "ignored/a.py": "",
            "venv/b.py": "",
            "env/pyvenv.cfg": "",
            "conda/conda-meta/history": "",
            "vendored/c.py": "",
            "docs/guide.md": "# prose\n",
            "kept.py": "",
        },
    )
    assert _skips(tmp_path, excludes=["vendored"]) == {
        "conda": "conda environment (conda-meta)",
        "docs/guide.md": "markdown, not a MyST notebook",
        "env": "virtualenv (pyvenv.cfg)",
        "ignored": ".gitignore",
        "vendored": "--exclude",
        "venv": "default exclude",
    }


def test_verbose_prints_the_skips_to_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path, {"env/pyvenv.cfg": "", "env/x.py": LEGACY})
    monkeypatch.chdir(tmp_path)
    for command in ("check", "migrate"):
        assert main([command, "."]) == 0
        assert "env" not in capsys.readouterr().err
        assert main([command, ".", "-v"]) == 0
        out, err = capsys.readouterr()
        assert f"nnx-compat {command}: skipped env: virtualenv (pyvenv.cfg)\n" in err
        assert "env" not in out


# 3. unreadable directories


def test_an_unreadable_directory_is_an_error_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, {"ok/a.py": "", "locked/b.py": ""})
    scandir = os.scandir

    def failing(path: str | os.PathLike[str]) -> object:
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", failing)
    errors: list[tuple[Path, str]] = []
    found = list(check.discover([str(tmp_path)], on_error=lambda p, m: errors.append((p, m))))
    assert found == [tmp_path / "ok" / "a.py"]
    assert errors == [(tmp_path / "locked", "cannot read directory: Permission denied")]


@pytest.fixture
def shared_tree() -> Iterator[Path]:
    """A directory other users can enter (pytest's tmp_path is the owner's only)."""
    root = Path(tempfile.mkdtemp(prefix="nnx-compat-discover-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        for directory, _, _ in os.walk(root):
            os.chmod(directory, 0o755)
        shutil.rmtree(root)


def _unprivileged_child(argv: list[str], cwd: Path, output: Path, ids: tuple[int, int]) -> None:
    status = 99
    with (output / "out").open("w") as out, (output / "err").open("w") as err:
        try:
            # the same command first, as root, so that the run below imports nothing (the
            # interpreter's own files may be out of the other user's reach)
            (output / "empty").mkdir()
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                main([*argv[:-1], str(output / "empty")])
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(ids[1])
                os.setuid(ids[0])
            os.chdir(cwd)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = main(argv)
        except BaseException:
            traceback.print_exc(file=err)
    sys.exit(status)


def _as_unprivileged(argv: list[str], cwd: Path, output: Path) -> tuple[int, str, str]:
    """``main(argv)`` in a fresh interpreter, as the ``nobody`` user when this runs as root
    (root reads any directory): its exit status, stdout and stderr."""
    ids = (os.getuid(), os.getgid())
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("no nobody user to run as")
        ids = (user.pw_uid, user.pw_gid)
    # spawned, not forked: this process may run threads (JAX's)
    child = multiprocessing.get_context("spawn").Process(
        target=_unprivileged_child, args=(argv, cwd, output, ids)
    )
    child.start()
    child.join(timeout=120)
    assert child.exitcode is not None, "the unprivileged run did not end"
    return child.exitcode, (output / "out").read_text(), (output / "err").read_text()


@pytest.mark.parametrize("command", ["check", "migrate"])
def test_an_unreadable_subdirectory_is_reported_with_a_nonzero_exit(
    shared_tree: Path, tmp_path: Path, command: str
) -> None:
    _write(shared_tree, {"locked/hidden.py": LEGACY})
    (shared_tree / "locked").chmod(0)
    status, out, err = _as_unprivileged([command, "."], shared_tree, tmp_path)
    assert "Traceback" not in err
    assert status == 1, err
    if command == "check":
        [line] = out.splitlines()
        assert line.startswith("locked:")
        assert line.endswith(" nnx-compat[read-error] cannot read directory: Permission denied")
        assert "0 files" in err
    else:
        assert "nnx-compat[read-error] skipped: cannot read directory: Permission denied" in err


# 4. links


def test_one_file_reached_by_several_links_is_read_once(tmp_path: Path) -> None:
    _write(tmp_path, {"real.py": "", "sub/other.py": ""})
    (tmp_path / "a_link.py").symlink_to(tmp_path / "real.py")
    (tmp_path / "sub" / "b_link.py").symlink_to(tmp_path / "real.py")
    (tmp_path / "hard.py").hardlink_to(tmp_path / "sub" / "other.py")
    assert _found(tmp_path) == ["a_link.py", "hard.py"]
    assert _found(tmp_path, tmp_path / "real.py", tmp_path) == ["real.py", "hard.py"]
    assert _skips(tmp_path)["real.py"] == f"same file as {tmp_path / 'a_link.py'}"


def test_links_to_directories_and_out_of_the_tree_are_not_followed(tmp_path: Path) -> None:
    outside = _write(tmp_path / "outside", {"far.py": "", "pkg/deep.py": ""})
    tree = _write(tmp_path / "tree", {"a.py": ""})
    (tree / "far.py").symlink_to(outside / "far.py")
    (tree / "linked_pkg").symlink_to(outside / "pkg", target_is_directory=True)
    assert _found(tree) == ["a.py"]
    assert _skips(tree) == {
        "far.py": "symlink outside the tree",
        "linked_pkg": "symlinked directory (not followed)",
    }
    # named on the command line: read
    assert _found(tree, tree / "far.py", tree / "linked_pkg") == [
        "far.py",
        "linked_pkg/deep.py",
    ]


def test_a_dangling_link_is_a_read_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path, {"a.py": ""})
    (tmp_path / "gone.py").symlink_to(tmp_path / "missing.py")
    errors: list[tuple[str, str]] = []
    found = check.discover([str(tmp_path)], on_error=lambda p, m: errors.append((p.name, m)))
    assert [p.name for p in found] == ["a.py"]
    assert errors == [("gone.py", f"broken symbolic link to {tmp_path / 'missing.py'}")]
    monkeypatch.chdir(tmp_path)
    assert main(["check", "gone.py"]) == 1
    out, err = capsys.readouterr()
    [line] = out.splitlines()
    assert line.startswith("gone.py:")
    assert line.endswith(f" nnx-compat[read-error] broken symbolic link to {tmp_path}/missing.py")
    assert "Traceback" not in err


# 5. MyST notebooks


def test_myst_notebooks_are_found_and_plain_markdown_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(
        tmp_path,
        {
            "docs/guide.md": MYST + "Prose only, with ```{code-cell}``` in a sentence.\n",
            "docs/notebook.md": MYST + "text\n\n" * 200 + MYST_CELL,
            "model.py": "x = 1\n",
        },
    )
    assert _found(tmp_path) == ["model.py", "docs/notebook.md"]
    assert _found(tmp_path, tmp_path / "docs" / "guide.md") == []
    monkeypatch.chdir(tmp_path)
    main(["check", "model.py", "docs/guide.md"])
    assert "nnx-compat check: 1 file," in capsys.readouterr().err


# 6. --jobs


@pytest.mark.parametrize("jobs", ["0", "-1", "two"])
def test_jobs_below_one_is_a_usage_error(
    tmp_path: Path, jobs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check", str(tmp_path), "--jobs", jobs])
    assert exited.value.code == 2
    assert f"argument --jobs: {jobs!r} is not a number of worker processes (1 or more)" in (
        capsys.readouterr().err
    )
