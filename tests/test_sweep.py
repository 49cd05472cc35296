"""tools/sweep.py: the release sweep's results, and the support matrix rendered from them (the
docs include it at build time: tests/test_docs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools import sweep

ROOT = Path(__file__).resolve().parents[1]


def test_every_release_from_0100_is_in_the_results() -> None:
    releases = json.loads(sweep.RESULTS.read_text())["releases"]
    expected = [f"0.10.{i}" for i in range(8)] + ["0.11.0", "0.11.1", "0.11.2"]
    expected += [f"0.12.{i}" for i in range(9)]
    assert sorted(releases, key=sweep.Version) == expected
    for record in releases.values():
        assert record["oldest"] and record["newest"]


def test_render_counts_failures_and_errors() -> None:
    data = {
        "releases": {
            "0.12.3": {
                "oldest": "0.8.1",
                "newest": "0.10.2",
                "tests": {"passed": 10, "failed": 1, "errors": 2, "skipped": 3},
                "doctor": {"checks": [{"ok": True}, {"ok": False}]},
                "commit": "abc1234",
            }
        }
    }
    assert sweep.render(data).splitlines()[-1] == (
        "| 0.12.3 | 0.8.1 - 0.10.2 | 0.10.2 | 10 | 3 | 3 | 1/2 | abc1234 |"
    )


def test_flax_own_deprecations_are_ignored_only_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sweep (and the intermediate-release envs) set NNX_COMPAT_FLAX_OWN_DEPRECATIONS:
    warnings that flax's own code triggers under a newer jax are not errors there; elsewhere
    the repository's settings stand."""
    from tests import conftest

    class Config:
        def __init__(self) -> None:
            self.lines: list[tuple[str, str]] = []

        def addinivalue_line(self, name: str, line: str) -> None:
            self.lines.append((name, line))

    monkeypatch.delenv("NNX_COMPAT_FLAX_OWN_DEPRECATIONS", raising=False)
    config = Config()
    conftest.pytest_configure(config)  # type: ignore[arg-type]
    assert config.lines == []
    monkeypatch.setenv("NNX_COMPAT_FLAX_OWN_DEPRECATIONS", "ignore")
    conftest.pytest_configure(config)  # type: ignore[arg-type]
    assert config.lines == [("filterwarnings", f) for f in conftest.FLAX_OWN_DEPRECATIONS]
    assert all(
        f.split(":")[-1].startswith(("flax", "orbax")) for f in conftest.FLAX_OWN_DEPRECATIONS
    )
    assert "NNX_COMPAT_FLAX_OWN_DEPRECATIONS" in Path(sweep.__file__).read_text()
