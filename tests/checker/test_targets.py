"""What a check or a migration targets: a generation means its newest release; a release means
what that release has."""

from __future__ import annotations

import pytest

from nnx_compat import _patterns
from nnx_compat.checker import applies
from nnx_compat.checker.targets import NEWEST, TARGETS, parse_target, target_at_least


def test_a_generation_means_its_newest_release() -> None:
    assert set(NEWEST) == set(TARGETS)
    assert target_at_least("0.12", "0.12.8") and not target_at_least("0.12", "0.12.9")
    assert target_at_least("0.11", "0.11.2") and not target_at_least("0.11", "0.12.0")


@pytest.mark.parametrize("text", ["0.11", "0.12", "0.11.0", "0.12.3", "0.12.8"])
def test_generations_and_their_releases_are_targets(text: str) -> None:
    assert parse_target(text) == text


@pytest.mark.parametrize("text", ["0.10", "0.10.7", "0.13", "0.13.0", "0.12.3rc1x", "latest", ""])
def test_anything_else_is_refused_naming_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"a flax generation \(0\.11, 0\.12\)"):
        parse_target(text)


@pytest.mark.parametrize("text", ["0.12.9", "0.11.3", "0.12.10"])
def test_a_release_newer_than_the_known_ones_is_refused(text: str) -> None:
    generation = text.rsplit(".", 1)[0]
    with pytest.raises(ValueError, match=rf"the newest of {generation} is {NEWEST[generation]}"):
        parse_target(text)


def test_a_release_target_leaves_the_later_changes_alone() -> None:
    """Patterns flax changed after the targeted release are not legacy for it."""
    for pattern in _patterns.PATTERNS:
        assert applies(pattern, "0.12") is target_at_least("0.12.8", pattern.changed_in)
    by_id = {p.id: p for p in _patterns.PATTERNS}
    assert applies(by_id["rngs-fork-splits"], "0.12.3")  # no flax takes splits=
    assert not applies(by_id["rngs-fork-split"], "0.12.5")  # fork(split=) is 0.12.5's own
    assert applies(by_id["rngs-fork-split"], "0.12.6")
