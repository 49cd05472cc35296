"""Reading and writing the user's files: encodings, BOM, newlines, read-only files, links,
owners, directories the caller cannot write."""

from __future__ import annotations

import codecs
import contextlib
import errno
import io
import os
import pwd
import shutil
import stat
import tempfile
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nnx_compat.cli import main
from nnx_compat.cli._source import Source, SourceError, read_only, read_text, write_text

# Running as another user -----------------------------------------------------------------


def unprivileged_ids() -> tuple[int, int]:
    """The user and group the permission cases run as: ``nobody`` when this runs as root (root
    may write any file), else this process's own."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no nobody user to run the permission cases as")
    return user.pw_uid, user.pw_gid


def run_unprivileged(function: Callable[[], int | None], cwd: Path) -> tuple[int, str, str]:
    """``function()`` in a forked child in ``cwd``, as :func:`unprivileged_ids`'s user: its
    return value as exit status (an exception: 99 and its traceback), its stdout and stderr.

    A fork rather than a new interpreter: that user may not reach the interpreter's files (a
    Python under /root). The child imports nothing new for the same reason: run the same work
    here first (:func:`run_cli_unprivileged` does).
    """
    uid, gid = unprivileged_ids()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        # fork() where threads run (JAX's, after other tests) warns, from JAX's fork hook too:
        # the child runs loaded pure Python only
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            status = 99
            try:
                if os.geteuid() == 0:
                    os.setgroups([])
                    os.setgid(gid)
                    os.setuid(uid)
                os.chdir(cwd)
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    status = function() or 0
            except BaseException:
                traceback.print_exc(file=err)
            finally:
                out.flush()
                err.flush()
                os._exit(status)
        _, wait_status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return os.waitstatus_to_exitcode(wait_status), out.read(), err.read()


def run_cli_unprivileged(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """``nnx-compat ARGV`` as :func:`run_unprivileged` runs it, after a dry run of the same
    command here on a legacy file (which imports what it needs)."""
    with tempfile.TemporaryDirectory() as warm:
        (Path(warm) / "m.py").write_text("from flax import nnx\nnnx.Optimizer(m, tx)\n")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            main([argv[0], warm])
    return run_unprivileged(lambda: main(argv), cwd)


def give(path: Path, mode: int) -> Path:
    """``path`` owned by :func:`unprivileged_ids`'s user, with ``mode``."""
    if os.geteuid() == 0:
        os.chown(path, *unprivileged_ids())
    path.chmod(mode)
    return path


def give_to_root(path: Path, mode: int) -> Path:
    """``path`` owned by root (another user than the unprivileged one), with ``mode``."""
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")
    os.chown(path, 0, 0)
    path.chmod(mode)
    return path


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory outside pytest's private temporary tree (which only root may enter), owned
    by the unprivileged user."""
    root = Path(tempfile.mkdtemp(prefix="nnx-compat-source-"))
    give(root, 0o755)
    try:
        yield root
    finally:
        for directory, _, _ in os.walk(root):
            os.chmod(directory, 0o755)
        shutil.rmtree(root)


def _write_as_unprivileged(path: Path, new_text: str) -> str:
    """What :func:`write_text` answers for ``path`` as the unprivileged user (read there too)."""

    def write() -> None:
        try:
            source = read_text(str(path))
        except SourceError as error:
            print("read:", error.message)
        else:
            print("write:", write_text(str(path), source, new_text))

    status, out, err = run_unprivileged(write, path.parent)
    assert status == 0 and not err, err
    return out.strip()


# Reading -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text", "encoding", "bom"),
    [
        (b"x = 'caf\xc3\xa9'\n", "x = 'café'\n", "utf-8", False),
        (codecs.BOM_UTF8 + b"x = 1\n", "x = 1\n", "utf-8", True),
        (
            b"# -*- coding: latin-1 -*-\nx = 'caf\xe9'\n",
            "# -*- coding: latin-1 -*-\nx = 'café'\n",
            "iso-8859-1",
            False,
        ),
        (
            b"#!/usr/bin/env python\n# vim: set fileencoding=cp1252 :\nx = '\x80'\n",
            "#!/usr/bin/env python\n# vim: set fileencoding=cp1252 :\nx = '€'\n",
            "cp1252",
            False,
        ),
        (b"x = 1\r\ny = 2\r\n", "x = 1\r\ny = 2\r\n", "utf-8", False),
    ],
)
def test_a_python_file_is_decoded_as_python_decodes_it(
    raw: bytes, text: str, encoding: str, bom: bool, tmp_path: Path
) -> None:
    path = tmp_path / "m.py"
    path.write_bytes(raw)
    assert read_text(str(path)) == Source(text, encoding, bom, raw)


@pytest.mark.parametrize("name", ["n.ipynb", "n.md"])
def test_notebooks_are_utf8_and_keep_their_bom(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    # a coding line in a notebook is text, not a declaration
    path.write_bytes(codecs.BOM_UTF8 + "# coding: latin-1 é\n".encode())
    source = read_text(str(path))
    assert (source.text, source.encoding, source.bom) == ("# coding: latin-1 é\n", "utf-8", True)
    assert write_text(str(path), source, "# é€\n") is None
    assert path.read_bytes() == codecs.BOM_UTF8 + "# é€\n".encode()


@pytest.mark.parametrize(
    ("raw", "line", "column", "message"),
    [
        (
            b"x = 1\ny = 'caf\xe9'\n",
            2,
            9,
            "cannot decode byte 0xe9 as utf-8 (invalid continuation byte), and no encoding "
            "is declared (PEP 263)",
        ),
        (
            b"# coding: ascii\ny = '\xc3\xa9'\n",
            2,
            6,
            "cannot decode byte 0xc3 as ascii (ordinal not in range(128))",
        ),
        (b"# coding: no-such-codec\n", 1, 1, "unknown encoding: no-such-codec"),
        (codecs.BOM_UTF8 + b"# coding: latin-1\n", 1, 1, "encoding problem: utf-8"),
    ],
)
def test_a_file_that_cannot_be_decoded_says_why_and_where(
    raw: bytes, line: int, column: int, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "m.py"
    path.write_bytes(raw)
    with pytest.raises(SourceError) as raised:
        read_text(str(path))
    assert (raised.value.line, raised.value.column, raised.value.message) == (
        line,
        column,
        message,
    )


def test_what_cannot_be_read_says_why(tmp_path: Path) -> None:
    (tmp_path / "gone.py").symlink_to(tmp_path / "missing.py")
    (tmp_path / "dir.py").mkdir()
    for name, message in [
        ("gone.py", f"broken symbolic link to {tmp_path / 'missing.py'}"),
        ("dir.py", "cannot read: Is a directory"),
        ("nothing.py", "cannot read: No such file or directory"),
    ]:
        with pytest.raises(SourceError) as raised:
            read_text(str(tmp_path / name))
        assert (raised.value.line, raised.value.column, raised.value.message) == (1, 1, message)


def test_an_unreadable_file_is_an_error_not_a_traceback(shared_dir: Path) -> None:
    path = shared_dir / "locked.py"
    path.write_text("x = 1\n")
    give(path, 0)
    assert _write_as_unprivileged(path, "x = 2\n") == "read: cannot read: Permission denied"


# Writing: the text -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "new_text", "expected"),
    [
        (
            b"# -*- coding: latin-1 -*-\nx = 'caf\xe9'\n",
            "# -*- coding: latin-1 -*-\nx = 'café!'\n",
            b"# -*- coding: latin-1 -*-\nx = 'caf\xe9!'\n",
        ),
        (codecs.BOM_UTF8 + b"x = 1\n", "x = 'é'\n", codecs.BOM_UTF8 + "x = 'é'\n".encode()),
        # CRLF stays CRLF, on the lines a rewrite adds too
        (b"x = 1\r\ny = 2\r\n", "x = 1\r\nz = 0\ny = 3\r\n", b"x = 1\r\nz = 0\r\ny = 3\r\n"),
        # mixed newlines are left as they are
        (b"x = 1\r\ny = 2\n", "x = 1\r\nz = 0\ny = 3\n", b"x = 1\r\nz = 0\ny = 3\n"),
        (b"x = 1", "x = 2", b"x = 2"),
    ],
)
def test_a_rewrite_keeps_the_encoding_the_bom_and_the_newlines(
    raw: bytes, new_text: str, expected: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "m.py"
    path.write_bytes(raw)
    assert write_text(str(path), read_text(str(path)), new_text) is None
    assert path.read_bytes() == expected


def test_a_rewrite_the_encoding_cannot_hold_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_bytes(b"# coding: latin-1\nx = '\xe9'\n")
    source = read_text(str(path))
    assert write_text(str(path), source, source.text + "y = '€'\n") == (
        "the rewrite cannot be encoded in iso-8859-1 ('€' at line 3, column 6): not written"
    )
    assert path.read_bytes() == b"# coding: latin-1\nx = '\xe9'\n"


def test_a_file_changed_since_it_was_read_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("x = 1\n")
    source = read_text(str(path))
    path.write_text("x = 1\n# edited meanwhile\n")
    assert write_text(str(path), source, "x = 2\n") == "changed since it was read: not written"
    assert path.read_text() == "x = 1\n# edited meanwhile\n"


# Writing: the file -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o444, 0o400, 0o000, 0o555])
def test_a_file_without_a_write_bit_is_refused_even_for_root(mode: int, tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("x = 1\n")
    source = read_text(str(path))
    path.chmod(mode)
    assert read_only(path.stat())
    assert write_text(str(path), source, "x = 2\n") == (
        "read-only file (no write permission): not written"
    )
    path.chmod(0o644)
    assert path.read_text() == "x = 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["m.py"]


def test_mode_is_kept_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("x = 1\n")
    path.chmod(0o751)
    assert write_text(str(path), read_text(str(path)), "x = 2\n") is None
    assert path.read_text() == "x = 2\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o751
    assert [p.name for p in tmp_path.iterdir()] == ["m.py"]


def test_a_link_is_written_through_to_its_file(tmp_path: Path) -> None:
    real = tmp_path / "src" / "m.py"
    real.parent.mkdir()
    real.write_text("x = 1\n")
    link = tmp_path / "link.py"
    link.symlink_to(Path("src") / "m.py")
    assert write_text(str(link), read_text(str(link)), "x = 2\n") is None
    assert link.is_symlink() and os.readlink(link) == str(Path("src") / "m.py")
    assert real.read_text() == "x = 2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.py", "src"]


def test_hard_links_stay_one_file(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("x = 1\n")
    other = tmp_path / "other.py"
    other.hardlink_to(path)
    assert write_text(str(path), read_text(str(path)), "x = 2\n") is None
    assert other.read_text() == "x = 2\n"
    assert path.stat().st_ino == other.stat().st_ino and path.stat().st_nlink == 2


def test_root_keeps_another_users_owner_group_and_mode(shared_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can write another user's file")
    path = shared_dir / "m.py"
    path.write_text("x = 1\n")
    give(path, 0o664)
    before = path.stat()
    assert write_text(str(path), read_text(str(path)), "x = 2\n") is None
    after = path.stat()
    assert path.read_text() == "x = 2\n"
    assert (after.st_uid, after.st_gid, after.st_mode) == (
        before.st_uid,
        before.st_gid,
        before.st_mode,
    )
    assert after.st_ino != before.st_ino  # replaced in one rename


def test_a_directory_the_user_cannot_write_gets_its_file_written_in_place(
    shared_dir: Path,
) -> None:
    directory = shared_dir / "frozen"
    directory.mkdir()
    path = directory / "m.py"
    path.write_text("x = 1\n")
    give(path, 0o644)
    give(directory, 0o555)
    inode = path.stat().st_ino
    assert _write_as_unprivileged(path, "x = 2\n") == "write: None"
    assert path.read_text() == "x = 2\n" and path.stat().st_ino == inode
    assert [p.name for p in directory.iterdir()] == ["m.py"]


@pytest.mark.parametrize("mode", [0o666, 0o664])
def test_a_writable_file_of_another_user_keeps_its_owner(mode: int, shared_dir: Path) -> None:
    # 0o664: writable through the group the unprivileged user is in
    path = shared_dir / "m.py"
    path.write_text("x = 1\n")
    give_to_root(path, mode)
    os.chown(path, 0, unprivileged_ids()[1])
    assert _write_as_unprivileged(path, "x = 2\n") == "write: None"
    status = path.stat()
    assert path.read_text() == "x = 2\n"
    assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (
        0,
        unprivileged_ids()[1],
        mode,
    )


def test_a_file_of_another_user_without_a_write_bit_for_the_caller_is_refused(
    shared_dir: Path,
) -> None:
    path = shared_dir / "m.py"
    path.write_text("x = 1\n")
    give_to_root(path, 0o644)  # in a directory the unprivileged user may write
    assert _write_as_unprivileged(path, "x = 2\n") == (
        "write: read-only file (no write permission): not written"
    )
    assert path.read_text() == "x = 1\n" and path.stat().st_uid == 0


def test_a_failure_while_writing_in_place_puts_the_old_bytes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.py"
    path.write_text("x = 1\n" * 3)
    (tmp_path / "other.py").hardlink_to(path)  # written in place
    source = read_text(str(path))

    def full(handle: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    assert write_text(str(path), source, "x = 2\n" * 10) == "not written: No space left on device"
    assert path.read_text() == "x = 1\n" * 3
