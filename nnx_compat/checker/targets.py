"""What a check or a migration targets: a flax generation (its newest release) or a release."""

from __future__ import annotations

from typing import Final

from packaging.version import Version

from nnx_compat import _versions

__all__ = ["NEWEST", "TARGETS", "parse_target", "target_at_least", "target_release"]

#: The API levels a check (or a migration) can target: a generation, which means its newest
#: release (:data:`NEWEST`), or any release of them (``"0.12.3"``: what that release has).
TARGETS: Final = ("0.11", "0.12")

#: The newest release of each generation that nnx_compat knows.
NEWEST: Final = {"0.11": "0.11.2", "0.12": "0.12.8"}


def parse_target(text: str) -> str:
    """A target as given (``"0.12"`` or a release such as ``"0.12.3"``), checked.

    Raises:
        ValueError: for anything but a generation of :data:`TARGETS` or a release of one
            that exists (no newer than :data:`NEWEST`).
    """
    if text in TARGETS:
        return text
    try:
        release = _versions.parse_version(text)
    except ValueError:
        release = None
    if release is None or len(release.release) != 3 or text.rsplit(".", 1)[0] not in TARGETS:
        raise ValueError(
            f"target {text!r}: a flax generation ({', '.join(TARGETS)}) or one of their "
            "releases (e.g. 0.12.3)"
        )
    newest = NEWEST[text.rsplit(".", 1)[0]]
    if release > _versions.parse_version(newest):
        raise ValueError(
            f"target {text!r}: no such flax release is known (the newest of "
            f"{text.rsplit('.', 1)[0]} is {newest}); use {newest} or the generation"
        )
    return text


def target_release(target: str) -> Version:
    """The release a target means: a generation's newest, or the release itself."""
    return _versions.parse_version(NEWEST.get(target, target))


def target_at_least(target: str, release: str) -> bool:
    """Whether code for ``target`` may use what flax ``release`` added."""
    return target_release(target) >= _versions.parse_version(release)
