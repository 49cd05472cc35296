from __future__ import annotations

import threading
import types
from collections.abc import Iterator

import flax.nnx as upstream
import pytest

import nnx_compat
from nnx_compat import _added, _install, _namespace, _patterns


class _LinearShim(upstream.Linear):  # type: ignore[misc]
    """A stand-in shim replacing an existing upstream name."""


def _new_name() -> str:
    return "shim-only name"


_fake = types.ModuleType("nnx_compat._fake_shims")
_fake.Linear = _LinearShim  # type: ignore[attr-defined]
_fake.BrandNew = _new_name  # type: ignore[attr-defined]


@pytest.fixture
def fake_shims(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two shims: one replaces ``Linear``, one adds a name upstream lacks (a backport)."""
    import sys

    monkeypatch.setitem(sys.modules, "nnx_compat._fake_shims", _fake)
    table = dict(_patterns.SHIMS)
    table.update(Linear="nnx_compat._fake_shims:Linear", BrandNew="nnx_compat._fake_shims:BrandNew")
    monkeypatch.setattr(_patterns, "SHIMS", table)
    # nnx_compat.nnx was populated before the table changed; serve the fakes there too.
    from nnx_compat import nnx

    monkeypatch.setattr(nnx, "Linear", _LinearShim, raising=False)
    monkeypatch.setattr(nnx, "BrandNew", _new_name, raising=False)
    yield
    nnx_compat.uninstall()


def test_install_and_uninstall_restore_exactly(fake_shims: None) -> None:
    original_linear = upstream.Linear
    before = dict(vars(upstream))
    assert not nnx_compat.installed()
    nnx_compat.install()
    assert nnx_compat.installed()
    assert upstream.Linear is _LinearShim
    assert upstream.BrandNew is _new_name  # type: ignore[attr-defined]
    from flax import nnx as seen_by_third_party

    assert seen_by_third_party.Linear is _LinearShim
    nnx_compat.uninstall()
    assert not nnx_compat.installed()
    assert upstream.Linear is original_linear
    assert not hasattr(upstream, "BrandNew")
    assert dict(vars(upstream)) == before


def test_install_is_idempotent(fake_shims: None) -> None:
    original = upstream.Linear
    nnx_compat.install()
    nnx_compat.install()
    assert upstream.Linear is _LinearShim
    nnx_compat.uninstall()
    nnx_compat.uninstall()
    assert upstream.Linear is original  # a second install must not save the shim as original


def test_install_is_thread_safe(fake_shims: None) -> None:
    original = upstream.Linear
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(50):
                (nnx_compat.install if i % 2 else nnx_compat.uninstall)()
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert upstream.Linear is (_LinearShim if nnx_compat.installed() else original)
    nnx_compat.uninstall()
    assert upstream.Linear is original
    assert not hasattr(upstream, "BrandNew")
    assert _install._saved == {}


def test_install_serves_the_real_table() -> None:
    before = dict(vars(upstream))
    nnx_compat.install()
    try:
        from nnx_compat import nnx

        for name in _namespace.bound_shims(upstream):
            assert getattr(upstream, name) is getattr(nnx, name)
    finally:
        nnx_compat.uninstall()
    assert dict(vars(upstream)) == before


def test_install_serves_the_removed_names_as_the_namespace_does() -> None:
    """flax 0.10 names the installed flax removed: under install() ``flax.nnx.<name>`` is what
    ``nnx_compat.nnx.<name>`` is (0.10's backport with its warning, or the error naming the
    record), as for code that imports nnx_compat.nnx."""
    from nnx_compat import nnx

    removed = sorted(name for name in _patterns.REMOVED if name not in vars(upstream))
    before = dict(vars(upstream))
    nnx_compat.install()
    try:
        for name in removed:
            record = _patterns.REMOVED[name]
            if name in _added.BACKPORTS:  # flax 0.12's name again, backported
                assert getattr(upstream, name) is getattr(nnx, name)
                continue
            if record.backport is None:
                with pytest.raises(AttributeError, match=rf"\[nnx-compat: {record.pattern}\]"):
                    getattr(upstream, name)
                continue
            nnx_compat.reset_report()
            with nnx_compat.warnings_policy("ignore"):
                served = getattr(upstream, name)
            assert [hit.pattern for hit in nnx_compat.report()] == [record.pattern]
            with nnx_compat.warnings_policy("ignore"):
                assert served is getattr(nnx, name)
        with pytest.raises(AttributeError, match="no_such_name"):
            upstream.no_such_name  # noqa: B018
    finally:
        nnx_compat.uninstall()
    assert dict(vars(upstream)) == before
