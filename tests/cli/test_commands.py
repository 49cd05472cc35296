from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnx_compat import _patterns, _versions
from nnx_compat.cli import main
from nnx_compat.cli.patterns import markdown_table


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
        "jax-range",
        "optimizer-seed-0.10-form",
        "optimizer-seed-0.11-form",
        "scan-over-layers-seed-0.10-form",
        "scan-over-layers-seed-fork-form",
    }
    for check in checks.values():
        assert set(check) == {"name", "ok", "detail"}
        assert isinstance(check["ok"], bool) and check["detail"]
    for form in ("0.10", "0.11"):
        assert checks[f"optimizer-seed-{form}-form"]["ok"], checks
        assert "through nnx_compat" in checks[f"optimizer-seed-{form}-form"]["detail"]
    for form in ("0.10", "fork"):
        assert checks[f"scan-over-layers-seed-{form}-form"]["ok"], checks
    assert checks["jax-range"]["ok"], checks  # every env pairs flax with a jax it works with
    assert code == 0
    assert data["ok"] is True


def test_doctor_text(capsys: pytest.CaptureFixture[str]) -> None:
    """The doctor passes every check on every supported flax."""
    code = main(["doctor"])
    out = capsys.readouterr().out
    env = _versions.detect()
    assert f"flax {env.flax} (API generation {env.api}" in out
    for name in (
        "jax-range",
        "optimizer-seed-0.10-form",
        "optimizer-seed-0.11-form",
        "scan-over-layers-seed-0.10-form",
        "scan-over-layers-seed-fork-form",
    ):
        assert f"[PASS] {name}:" in out
    assert "[FAIL]" not in out
    assert "features:" not in out  # the probes are behind --verbose
    assert out.splitlines()[-1] == "nnx-compat doctor: 5/5 self-checks passed"
    assert code == 0


def _fake_checks(monkeypatch: pytest.MonkeyPatch, *results: bool) -> None:
    from nnx_compat.cli import doctor

    checks = tuple(
        (f"check-{i}", lambda i=i, ok=ok: doctor.Check(f"check-{i}", ok, "observed"))
        for i, ok in enumerate(results)
    )
    monkeypatch.setattr(doctor, "CHECKS", checks)


def test_doctor_verbose_lists_probes_and_shims_and_ends_with_the_verdict(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_checks(monkeypatch, True, False)
    assert main(["doctor", "--verbose"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "features:" in out and "checks:" in out
    assert out.index("features:") < out.index("checks:")
    assert out[-3:] == [
        "  [PASS] check-0: observed",
        "  [FAIL] check-1: observed",
        "nnx-compat doctor: 1 of 2 self-checks failed (check-1): see each FAIL above; report "
        "it with the output of nnx-compat doctor --json",
    ]


def test_doctor_shows_progress_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from nnx_compat.cli import doctor

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("TERM", raising=False)
    _fake_checks(monkeypatch, True)
    stream = Terminal()
    progress = doctor._Progress(stream)
    seen = []

    def start(name: str) -> None:
        progress.start(name)
        seen.append(stream.getvalue())  # what the terminal shows while the check runs

    doctor.run_checks(start, progress.done)
    assert seen == ["  [1/1] running check-0 ..."]
    assert stream.getvalue() == "  [1/1] running check-0 ...\r\x1b[K  [PASS] check-0: observed\n"
    piped = io.StringIO()  # not a terminal: results only, one line each
    doctor.run_checks(doctor._Progress(piped).start, doctor._Progress(piped).done)
    assert piped.getvalue() == "  [PASS] check-0: observed\n"


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
    assert ep.value == "nnx_compat.cli:main"


def test_doctor_fails_for_a_jax_outside_the_flax_releases_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nnx_compat.cli import doctor

    env = _versions.detect()
    spec, why = _versions.jax_requirement(env.flax) or ("", "")
    outside = dataclasses.replace(env, jax="0.4.1")  # older than every flax 0.10+'s floor
    monkeypatch.setattr(_versions, "detect", lambda: outside)
    check = doctor._check_jax_range()
    assert not check.ok
    assert check.detail == (
        f"flax {env.flax} works with {spec}, not jax 0.4.1 ({why}): pip install '{spec}'"
    )


def test_patterns_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["patterns", "--markdown"]) == 0
    assert capsys.readouterr().out.strip() == markdown_table()
    assert main(["patterns", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in records] == [p.id for p in _patterns.PATTERNS]
    assert main(["patterns"]) == 0
    assert "optimizer-update-grads" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    from nnx_compat import __version__

    assert capsys.readouterr().out == f"nnx-compat {__version__}\n"


@pytest.mark.parametrize(
    "command",
    [["patterns", "--added"], ["patterns", "--json"], ["check", "--format", "json", "legacy.py"]],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_closed_pipe_ends_quietly(command: list[str], tmp_path: Path) -> None:
    (tmp_path / "legacy.py").write_text("from flax import nnx\nopt = nnx.Optimizer(m, tx)\n" * 50)
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the command writes: every write fails
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "nnx_compat", *command],
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
    finally:
        os.close(writer)
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr, proc.stderr
    assert proc.returncode == 141
