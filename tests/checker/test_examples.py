"""The checker on every pattern's example (``Pattern.example``): the legacy form is found,
the new form is not. Runs without flax (the ``checker`` tox env)."""

from __future__ import annotations

import pytest

from nnx_compat import _examples
from nnx_compat._patterns import PATTERNS, Pattern
from nnx_compat.checker import check_source

SEEN = [p for p in PATTERNS if not p.run_time_only]


def _ids(snippet: str, *, native: bool = True) -> set[str]:
    # the checker reads both imports of nnx: flax's, and nnx_compat's drop-in
    source = _examples.program(snippet, native=native)
    return {f.pattern for f in check_source(source, "example.py", native=True)}


@pytest.mark.parametrize("pattern", SEEN, ids=lambda p: p.id)
def test_the_legacy_form_is_found(pattern: Pattern) -> None:
    assert pattern.id in _ids(pattern.example.legacy)
    assert pattern.id in _ids(pattern.example.legacy, native=False)


@pytest.mark.parametrize("pattern", SEEN, ids=lambda p: p.id)
def test_the_new_form_is_not(pattern: Pattern) -> None:
    if pattern.same_call:  # the same call: it is the new form too, reported only on request
        assert pattern.example.legacy == pattern.example.new or pattern.id not in _ids(
            pattern.example.new
        )
        return
    assert pattern.id not in _ids(pattern.example.new)


def test_the_header_alone_is_clean() -> None:
    assert _ids("") == set()
