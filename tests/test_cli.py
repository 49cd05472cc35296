from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nnx_compat import _patterns, _versions
from nnx_compat._cli import main, markdown_table


def _doctor_json() -> tuple[int, dict[str, object]]:
    proc = subprocess.run(
        [sys.executable, "-m", "nnx_compat", "doctor", "--json"], capture_output=True, text=True
    )
    return proc.returncode, json.loads(proc.stdout)


def test_doctor_json() -> None:
    code, data = _doctor_json()
    env = _versions.detect()
    for key in ("flax", "jax", "optax", "api", "shims", "checks", "features"):
        assert key in data
    assert (data["flax"], data["jax"], data["optax"], data["api"]) == (
        env.flax,
        env.jax,
        env.optax,
        env.api,
    )
    assert data["features"] == dict(env.features)
    assert [s["name"] for s in data["shims"]] == list(_patterns.shims())  # type: ignore[index]
    checks = {c["name"]: c for c in data["checks"]}  # type: ignore[attr-defined]
    assert set(checks) == {
        "optimizer-seed-0.10-form",
        "optimizer-seed-0.11-form",
        "scan-over-layers-seed-0.10-form",
        "scan-over-layers-seed-fork-form",
    }
    for check in checks.values():
        assert set(check) == {"name", "ok", "detail"}
        assert isinstance(check["ok"], bool) and check["detail"]
    native = "0.10" if env.features["OPTIMIZER_HOLDS_MODEL"] else "0.11"
    other = "0.11" if native == "0.10" else "0.10"
    assert checks[f"optimizer-seed-{native}-form"]["ok"], checks
    if "Optimizer" in _patterns.SHIMS:
        assert checks[f"optimizer-seed-{other}-form"]["ok"], checks
    else:
        # without the shim the other form really fails, and the check says so
        assert not checks[f"optimizer-seed-{other}-form"]["ok"]
        assert checks[f"optimizer-seed-{other}-form"]["detail"].startswith("not yet supported")
    for form in ("0.10", "fork"):
        assert checks[f"scan-over-layers-seed-{form}-form"]["ok"], checks
    assert code == (0 if all(c["ok"] for c in checks.values()) else 1)
    assert data["ok"] == (code == 0)


def test_doctor_text(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor"])
    out = capsys.readouterr().out
    env = _versions.detect()
    assert f"flax {env.flax} (API generation {env.api}" in out
    assert "optimizer-seed-0.10-form" in out and "optimizer-seed-0.11-form" in out
    assert code in (0, 1)
    assert ("[FAIL]" in out) == (code == 1)


def test_doctor_reports_import_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> None:
        raise _versions.IncompatibleJaxError("flax 0.10.7 cannot be imported with jax 0.10.2")

    monkeypatch.setattr(_versions, "detect", broken)
    assert main(["doctor", "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["error_type"] == "IncompatibleJaxError"


def test_entry_point_is_installed() -> None:
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "nnx-compat"]
    assert ep.value == "nnx_compat._cli:main"


def test_patterns_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["patterns", "--markdown"]) == 0
    assert capsys.readouterr().out.strip() == markdown_table()
    assert main(["patterns", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in records] == [p.id for p in _patterns.PATTERNS]
    assert main(["patterns"]) == 0
    assert "optimizer-update-grads" in capsys.readouterr().out
