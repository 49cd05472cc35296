from __future__ import annotations

import re

import pytest

from nnx_compat import _patterns, _versions, _warnings
from nnx_compat._patterns import PATTERNS, SHIMS, Pattern


def test_ids_are_unique_and_kebab_case() -> None:
    ids = [p.id for p in PATTERNS]
    assert len(ids) == len(set(ids))
    for pattern_id in ids:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", pattern_id), pattern_id


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.id)
def test_record(pattern: Pattern) -> None:
    assert pattern.family in _patterns.FAMILIES
    version = _versions.parse_version(pattern.changed_in)
    # 0.10-era guides still show a few forms that flax 0.9 changed (vmap splitting Rngs)
    assert version.release >= (0, 9, 0), "every pattern changed after the 0.8 NNX guides"
    assert pattern.legacy and pattern.new and pattern.legacy != pattern.new
    message = pattern.message()
    assert pattern.legacy in message
    assert pattern.new in message
    assert f"flax {pattern.changed_in}" in message
    assert message.endswith(f"[nnx-compat: {pattern.id}]")
    assert issubclass(_warnings.category_for(pattern), _warnings.NNXCompatDeprecationWarning)
    assert _patterns.get(pattern.id) is pattern


def test_every_family_has_its_own_category() -> None:
    categories = {
        _warnings.category_for(Pattern("x", f, "a", "b", "0.11.0")) for f in _patterns.FAMILIES
    }
    assert len(categories) == len(_patterns.FAMILIES)


def test_every_shim_bridges_a_pattern() -> None:
    referenced = {name for p in PATTERNS for name in p.shims}
    assert set(SHIMS) <= referenced
    for name in SHIMS:
        module, _, attribute = SHIMS[name].partition(":")
        assert module.startswith("nnx_compat._") and attribute
        assert _patterns.load_shim(name) is not None


def test_bridged_means_every_shim_is_implemented() -> None:
    """A pattern is bridged only when it names shims and SHIMS has each of them."""
    assert "Optimizer" in SHIMS and "Rngs" in SHIMS and "no_such_shim" not in SHIMS

    def record(*shims: str) -> Pattern:
        return Pattern("x", "optimizer", "a", "b", "0.11.0", shims)

    assert record("Optimizer").bridged
    assert record("Optimizer", "Rngs").bridged
    assert not record("no_such_shim").bridged
    assert not record("Optimizer", "no_such_shim").bridged
    assert not record("no_such_shim", "Optimizer").bridged
    assert not record().bridged


def test_unknown_id_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="optimizer-update-grads"):
        _patterns.get("no-such-pattern")


def test_every_record_not_bridged_says_why() -> None:
    for p in PATTERNS:
        if p.status == "planned" and not p.shims:
            assert p.note.startswith("planned:"), p.id
        if p.status == "non-goal":
            assert p.non_goal, p.id
        if p.status == "native":
            assert p.note, p.id
