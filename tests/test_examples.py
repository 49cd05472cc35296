"""Every pattern's example, run on the installed flax: the legacy form through nnx_compat, the
new form natively where the installed flax has the change, and the two compared bit for bit.

A native run uses flax's Variable exactly as flax ships it (nnx_compat's patches are undone
for it), so that "natively" means what a program without nnx_compat gets.
"""

from __future__ import annotations

import contextlib
import runpy
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from nnx_compat import _examples, _variables, _versions
from nnx_compat._examples import EXAMPLES
from nnx_compat._patterns import PATTERNS, Pattern


@contextlib.contextmanager
def _flax_as_shipped() -> Iterator[None]:
    _variables.restore()
    try:
        yield
    finally:
        _variables.patch()


class Run:
    """What one program did: its namespace (or the exception it raised) and its warnings."""

    def __init__(self, path: Path, code: str, *, native: bool) -> None:
        path.write_text(code)
        self.error: BaseException | None = None
        self.namespace: dict[str, Any] = {}
        with contextlib.ExitStack() as stack:
            if native:
                stack.enter_context(_flax_as_shipped())
            caught = stack.enter_context(warnings.catch_warnings(record=True))
            warnings.simplefilter("always")
            try:
                self.namespace = runpy.run_path(str(path), run_name="__example__")
            except Exception as error:
                self.error = error
        self.warnings = caught

    def ok(self) -> Run:
        if self.error is not None:
            raise self.error
        return self

    @property
    def hits(self) -> list[str]:
        """The pattern ids of nnx_compat's warnings."""
        return [w.message.pattern.id for w in self.warnings if hasattr(w.message, "pattern")]

    @property
    def result(self) -> Any:
        return self.namespace["result"]


def _run(tmp_path: Path, name: str, snippet: str, *, native: bool) -> Run:
    code = _examples.program(snippet, native=native)
    return Run(tmp_path / f"{name}_{'native' if native else 'nnx_compat'}.py", code, native=native)


def _leaves(tree: Any) -> list[np.ndarray]:
    out = []
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out.append(np.asarray(leaf))
    return out


def assert_same(ours: Any, theirs: Any) -> None:
    """Equal leaves, bit for bit (same shapes, dtypes and bytes)."""
    a, b = _leaves(ours), _leaves(theirs)
    assert len(a) == len(b), (ours, theirs)
    for x, y in zip(a, b, strict=True):
        assert (x.shape, x.dtype) == (y.shape, y.dtype), (x, y)
        assert x.tobytes() == y.tobytes(), (x, y)


def _where(pattern: Pattern, where: str) -> bool:
    if where == "changed":
        return pattern.changed()
    if where in ("everywhere", "nowhere"):
        return where == "everywhere"
    return _versions.feature(where.lstrip("!")) is not where.startswith("!")


def test_every_pattern_has_an_example() -> None:
    assert set(EXAMPLES) == {p.id for p in PATTERNS}
    for p in PATTERNS:
        assert p.example is EXAMPLES[p.id]
        assert p.example.legacy != p.example.new or p.same_call, p.id


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.id)
def test_legacy_form_through_nnx_compat(pattern: Pattern, tmp_path: Path) -> None:
    example = pattern.example
    if not _versions.installed_at_least(example.needs):
        # a form of a later 0.10 release: the installed flax has no such call to bridge
        native = _run(tmp_path, "legacy", example.legacy, native=True)
        assert native.error is not None, f"it runs natively: it does not need {example.needs}"
        return
    legacy = _run(tmp_path, "legacy", example.legacy, native=False)
    if (pattern.non_goal and pattern.changed()) or (
        example.raises and _where(pattern, example.raises_where)
    ):
        assert legacy.error is not None, "the legacy form raises there"
        return
    legacy.ok()
    # the installed flax's meaning stands, or a non-goal that runs: flax's own API there
    warns = "nowhere" if pattern.same_call or pattern.non_goal else example.warns
    assert (pattern.id in legacy.hits) is _where(pattern, warns), legacy.hits
    if pattern.same_call:  # the installed flax's meaning stands: as natively, errors included
        native = _run(tmp_path, "legacy", example.legacy, native=True)
        assert type(native.error) is type(legacy.error)
        if "result" in legacy.namespace:
            assert_same(legacy.result, native.result)


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.id)
def test_new_form_natively_gives_the_legacy_result(pattern: Pattern, tmp_path: Path) -> None:
    """Where the installed flax has the change, the new form runs natively, and through
    nnx_compat without a warning and with the same result; a bridged legacy form gives that
    result too."""
    example = pattern.example
    if not pattern.changed():
        return  # the new form may need the release that introduced it (the legacy test ran)
    shimmed = _run(tmp_path, "new", example.new, native=False).ok()
    assert shimmed.hits == [], "the new form never warns"
    if not _versions.installed_at_least(example.new_needs):
        # a later release's API, which nnx_compat serves here (the backport is tested against
        # that release in tests/test_added.py); natively it fails
        assert _run(tmp_path, "new", example.new, native=True).error is not None
        return
    native = _run(tmp_path, "new", example.new, native=True).ok()
    if "result" in native.namespace:
        assert_same(shimmed.result, native.result)
    if pattern.status == "bridged" and "result" in native.namespace:
        legacy = _run(tmp_path, "legacy", example.legacy, native=False)
        if legacy.error is None and pattern.id not in _DIFFERENT_RESULTS:
            assert_same(legacy.result, native.result)


#: Bridged patterns whose two forms do not compute the same thing, and why.
_DIFFERENT_RESULTS: dict[str, str] = {
    "nnx-fork": "0.10's fork splits the stream's key; split_rngs splits a key drawn from it",
    "reseed-shared-rngs": "reseeding the Rngs does not reach the layers; reseeding the model does",
}
