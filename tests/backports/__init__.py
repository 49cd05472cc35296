"""Tests of nnx_compat._backports: flax 0.12.8's API through ``nnx_compat.nnx`` on every flax."""

from __future__ import annotations

from nnx_compat import _versions, nnx
from nnx_compat._backports import members


def as_in_0128(name: str) -> bool:
    """Whether ``nnx.<name>`` is expected to behave as flax 0.12.8's: a backport (the installed
    flax lacks the name) or flax 0.12.8's own. A release between (0.11.x or 0.12.0-0.12.7)
    that has its own, with other parameters or texts, keeps it: this asserts that
    ``nnx_compat`` serves exactly flax's own and returns False."""
    own = vars(_versions.import_nnx()).get(name)
    if own is None or _versions.installed_at_least("0.12.8"):
        return True
    assert getattr(nnx, name) is own, name
    return False


def member_as_in_0128(cls: type, name: str) -> bool:
    """As :func:`as_in_0128` for a member of a class: served by ``members.patch`` where the
    installed class lacks it, or flax 0.12.8's own; otherwise the installed class's own."""
    served = any(c is cls and n == name for c, n, _ in members._patched)
    if served or _versions.installed_at_least("0.12.8"):
        return True
    assert hasattr(cls, name), (cls, name)
    return False
