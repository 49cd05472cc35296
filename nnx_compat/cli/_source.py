"""Reading and writing the user's files for ``nnx-compat check`` and ``nnx-compat migrate``.

Reading (:func:`read_text`): a ``.py`` file is decoded as Python decodes it (PEP 263: a UTF-8
byte order mark, else an encoding declaration in its first two lines, else UTF-8); a notebook
(``.ipynb``, a MyST ``.md``) as UTF-8, with or without a byte order mark. The text keeps its
newlines. What cannot be read or decoded raises :class:`SourceError`, which says why and where.

Writing back (:func:`write_text`) keeps what ruff and black keep:

- the encoding, the byte order mark and the newlines (in a file whose lines all end with
  CRLF, the lines a rewrite adds end with CRLF too);
- the file, not a link to it: a symbolic link is written through to the file it names;
- owner, group, permission bits and extended attributes. The new text goes to a temporary file
  in the file's directory, which takes them and then replaces the file in one rename: a reader
  sees the old file or the new one, never half. Where that cannot keep the file as it was, the
  file is overwritten in place instead (as ruff and black always do; not atomic, but the same
  file, and a failure while writing puts the old bytes back): it has several hard links, the
  caller cannot give the temporary file the file's owner and group (only root can give a file
  away) or its attributes, or the caller cannot create a file in the directory (or replace
  another user's file in a sticky one);
- a read-only file is never written: one without a write permission bit for the caller's class
  (owner, group or others; :func:`read_only`). Root may write any file, so for root a file
  with no write bit at all is the read-only one: ``chmod a-w`` is the deliberate marker of a
  file not to be changed, which a rename would otherwise replace without a word;
- a file that changed since it was read is not written.

A file that cannot be written is an error message for that file, never an exception: the
commands report it and go on with the next file.
"""

from __future__ import annotations

import codecs
import dataclasses
import io
import os
import re
import stat
import sys
import tempfile
import tokenize
from typing import Final

__all__ = ["Source", "SourceError", "decode", "read_only", "read_text", "write_text"]

#: Files read as UTF-8 whatever they say: notebooks (JSON; MyST markdown).
_UTF8_ONLY: Final = (".ipynb", ".md")
_LONE_LF: Final = re.compile(r"(?<!\r)\n")


@dataclasses.dataclass(frozen=True)
class Source:
    """A file as read: its text and how to write it back."""

    text: str  #: without the byte order mark; newlines as in the file
    encoding: str  #: the codec, named as the file declares it (latin-1: ``iso-8859-1``)
    bom: bool  #: whether the file starts with a UTF-8 byte order mark
    raw: bytes  #: the file's bytes, to see whether it changed before writing

    @property
    def crlf(self) -> bool:
        """Whether every line of the file ends with CRLF (and there is one at least)."""
        return "\r\n" in self.text and _LONE_LF.search(self.text) is None

    def encode(self, text: str) -> bytes:
        """``text`` as this file's bytes: its encoding, its byte order mark, its newlines.

        Raises:
            UnicodeEncodeError: for text the encoding cannot hold.
        """
        if self.crlf:
            text = _LONE_LF.sub("\r\n", text)
        return (codecs.BOM_UTF8 if self.bom else b"") + text.encode(self.encoding)


class SourceError(Exception):
    """A file that cannot be read as text: why, and where (1-based line and column).

    Attributes:
        message: Why, for a ``read-error`` finding.
        line: The line of the fault (1 where there is none).
        column: Its column.
        lines: The file's lines as far as they can be read (decoded with replacement
            characters), for an ``# nnx-compat: ignore[read-error]`` comment.
    """

    def __init__(
        self, message: str, line: int = 1, column: int = 1, lines: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.lines = lines


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        if os.path.islink(path):
            raise SourceError(f"broken symbolic link to {os.readlink(path)}") from None
        raise SourceError("cannot read: No such file or directory") from None
    except OSError as error:
        raise SourceError(f"cannot read: {error.strerror or error}") from None


def read_text(path: str) -> Source:
    """The text of the file at ``path`` (through a link), decoded as the module's docstring
    says.

    Raises:
        SourceError: for a file that cannot be read, or not decoded.
    """
    return decode(_read_bytes(path), path)


def decode(raw: bytes, path: str) -> Source:
    """``raw`` decoded as the text of a file named ``path`` (its suffix decides, as in
    :func:`read_text`): for standard input, which has no file.

    Raises:
        SourceError: for bytes that are not text in their encoding.
    """
    bom = raw.startswith(codecs.BOM_UTF8)
    declared = False
    if path.endswith(_UTF8_ONLY):
        encoding = "utf-8"
    else:
        try:
            found, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
        except SyntaxError as error:  # an unknown codec, a BOM with another declaration
            if not str(error).startswith("invalid or missing encoding declaration"):
                raise SourceError(str(error)) from None
            found = "utf-8"  # a first line that is not UTF-8: decoding says where
        encoding = "utf-8" if found == "utf-8-sig" else found
        declared = encoding != "utf-8" or _declares(raw)
    body = raw[len(codecs.BOM_UTF8) :] if bom else raw
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as error:
        raise _undecodable(body, encoding, error, declared or bom) from None
    return Source(text, encoding, bom, raw)


def _declares(raw: bytes) -> bool:
    """Whether the first two lines hold an encoding declaration (for UTF-8, which
    :func:`tokenize.detect_encoding` also answers without one)."""
    head = b"\n".join(raw.split(b"\n", 2)[:2])
    return re.search(rb"^[ \t\f]*#.*?coding[:=]", head, re.MULTILINE) is not None


def _undecodable(
    body: bytes, encoding: str, error: UnicodeDecodeError, declared: bool
) -> SourceError:
    start = body.rfind(b"\n", 0, error.start) + 1
    line = body.count(b"\n", 0, error.start) + 1
    column = len(body[start : error.start].decode(encoding, errors="replace")) + 1
    message = f"cannot decode byte 0x{body[error.start]:02x} as {encoding} ({error.reason})"
    if not declared:
        message += ", and no encoding is declared (PEP 263)"
    lines = tuple(body.decode(encoding, errors="replace").split("\n"))
    return SourceError(message, line, column, lines)


def read_only(status: os.stat_result) -> bool:
    """Whether a file with ``status`` is read-only for this process: no write permission bit
    for the caller's class (owner, group, others); for root, who may write anything, none at
    all (the deliberate marker of a file not to be changed)."""
    mode = status.st_mode
    if sys.platform == "win32":
        return not mode & stat.S_IWRITE
    uid = os.geteuid()
    if uid == 0:
        return not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    if status.st_uid == uid:
        return not mode & stat.S_IWUSR
    if status.st_gid == os.getegid() or status.st_gid in os.getgroups():
        return not mode & stat.S_IWGRP
    return not mode & stat.S_IWOTH


def write_text(path: str, source: Source, new_text: str) -> str | None:
    """Writes ``new_text`` over the file ``path`` was read from as ``source``, as the module's
    docstring says.

    Returns:
        None once written, else why it was not (the file is then as it was).
    """
    try:
        data = source.encode(new_text)
    except UnicodeEncodeError as error:  # its object: the text with the file's newlines
        text, start = error.object, error.start
        bad = text[start]
        line = text.count("\n", 0, start) + 1
        column = start - text.rfind("\n", 0, start)
        return (
            f"the rewrite cannot be encoded in {source.encoding} ({bad!r} at line {line}, "
            f"column {column}): not written"
        )
    real = os.path.realpath(path)
    try:
        status = os.stat(real)
        if read_only(status):
            return "read-only file (no write permission): not written"
        with open(real, "rb") as handle:
            current = handle.read()
    except OSError as error:
        return f"cannot read it again: {error.strerror or error}"
    if current != source.raw:
        return "changed since it was read: not written"
    try:
        if status.st_nlink > 1 or not _replace(real, status, data):
            _overwrite(real, data, current)
    except OSError as error:
        return f"not written: {error.strerror or error}"
    return None


def _replace(path: str, status: os.stat_result, data: bytes) -> bool:
    """Replaces the file by a temporary one with ``data`` and the file's owner, group, mode and
    extended attributes; False (nothing changed) where the temporary file cannot have them or
    cannot be made.

    Raises:
        OSError: for a failure to write (a full disk).
    """
    directory, name = os.path.split(path)
    try:
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    except PermissionError:  # a directory the caller cannot write to
        return False
    try:
        with os.fdopen(handle, "wb") as out:
            made = os.fstat(out.fileno())
            if (made.st_uid, made.st_gid) != (status.st_uid, status.st_gid):
                os.fchown(out.fileno(), status.st_uid, status.st_gid)
            os.fchmod(out.fileno(), stat.S_IMODE(status.st_mode))  # after chown, which may
            _copy_attributes(path, out.fileno())  # clear set-id bits
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except PermissionError:  # an owner, group or attribute the caller cannot give; a sticky
        # directory, where only the owner of a file may replace it
        os.unlink(temporary)
        return False
    except BaseException:
        os.unlink(temporary)
        raise
    return True


def _copy_attributes(path: str, handle: int) -> None:
    """The extended attributes (ACLs, labels) of ``path`` onto the open file ``handle``.

    Raises:
        PermissionError: for an attribute the caller cannot set.
    """
    if not hasattr(os, "listxattr"):
        return
    try:
        names = os.listxattr(path)
    except OSError:  # a file system without them
        return
    for attribute in names:
        try:
            value = os.getxattr(path, attribute)
        except OSError:
            continue
        try:
            os.setxattr(handle, attribute, value)
        except OSError as error:
            raise PermissionError(error.errno, error.strerror) from None


def _overwrite(path: str, data: bytes, original: bytes) -> None:
    """Writes ``data`` into the file itself (same inode: owner, links, attributes kept); where
    that fails midway (a full disk), puts ``original`` back, in the space it had.

    Raises:
        OSError: for the failure.
    """
    with open(path, "r+b") as out:
        try:
            out.write(data)
            out.truncate()
            out.flush()
            os.fsync(out.fileno())
        except OSError:
            out.seek(0)
            out.write(original)
            out.truncate()
            out.flush()
            raise
