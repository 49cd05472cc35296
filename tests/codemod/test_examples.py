"""The codemod on every pattern's example: the legacy form, migrated, is no longer found and,
on the flax it targets, runs natively with the new form's result (bit for bit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnx_compat import _examples, _versions
from nnx_compat._patterns import PATTERNS, Pattern
from nnx_compat.checker import TARGETS, applies, check_source
from nnx_compat.codemod import migrate_source
from tests.test_examples import Run, assert_same

REWRITTEN = [p for p in PATTERNS if not (p.run_time_only or p.same_call or p.manual)]

#: Rewritten patterns one of whose forms in the example stays a manual item, and why.
PARTLY_MANUAL = {
    "recurrent-layers-fork-rngs": "cell.initialize_carry(shape) draws from the cell's build "
    "Rngs, which the new form must be given: the item names keep_rngs=True or the rngs",
}
INSTALLED = _versions.generation(_versions.installed_version("flax") or "0.12")
RELEASE = str(_versions.parse_version(_versions.installed_version("flax") or "0.12.8").base_version)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("pattern", REWRITTEN, ids=lambda p: p.id)
def test_the_migrated_legacy_form_runs_natively(
    pattern: Pattern, target: str, tmp_path: Path
) -> None:
    if not applies(pattern, target):
        assert pattern.changed_in >= "0.12", "only 0.12 changes are left as they are for 0.11"
        return
    source = _examples.program(pattern.example.legacy, native=True)
    result = migrate_source(source, target)
    assert result.rewrites.get(pattern.id, 0) >= 1
    manual = [m for m in result.manual if m.pattern == pattern.id]
    assert bool(manual) is (pattern.id in PARTLY_MANUAL), manual
    found = [f for f in check_source(result.code, target=target) if f.pattern == pattern.id]
    assert [(f.line, f.column) for f in found] == [(m.line, m.column) for m in manual]
    assert migrate_source(result.code, target).code == result.code  # idempotent
    if target != INSTALLED or not pattern.changed() or manual:
        return  # it runs on the flax it targets
    # on the installed release: migrated for exactly it (0.12.3 has no Rngs.split, ...)
    code = migrate_source(source, RELEASE).code
    migrated = Run(tmp_path / "migrated.py", code, native=True).ok()
    new = Run(tmp_path / "new.py", _examples.program(pattern.example.new, native=True), native=True)
    if "result" in new.ok().namespace:
        assert_same(migrated.result, new.result)
