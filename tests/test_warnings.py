from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import pytest

import nnx_compat
from nnx_compat import _warnings
from nnx_compat._warnings import NNXCompatDeprecationWarning, warn_legacy
from tests.markers import line_of

PID = "optimizer-update-grads"
PACKAGE_DIR = Path(nnx_compat.__file__).parent


def _internal_helper() -> Any:
    """A function whose code claims to live inside nnx_compat, as a shim's would."""
    source = textwrap.dedent(
        """
        def deep(pid):
            return deeper(pid)

        def deeper(pid):
            warn_legacy(pid)
        """
    )
    namespace: dict[str, Any] = {"warn_legacy": warn_legacy}
    exec(compile(source, str(PACKAGE_DIR / "_simulated_shim.py"), "exec"), namespace)
    return namespace["deep"]


deep = _internal_helper()


def _line_of(marker: str) -> int:
    return line_of(__file__, marker)


def test_warning_points_at_the_user_line_past_nnx_compat() -> None:
    with pytest.warns(NNXCompatDeprecationWarning) as caught:
        deep(PID)  # MARK-direct
    assert len(caught) == 1
    assert caught[0].filename == __file__
    assert caught[0].lineno == _line_of("MARK-direct")
    assert issubclass(caught[0].category, nnx_compat.OptimizerDeprecationWarning)
    message = str(caught[0].message)
    assert "optimizer.update(grads)" in message
    assert "optimizer.update(model, grads)" in message
    assert "flax 0.11.0" in message


def test_warning_points_at_the_user_line_past_jax_internals() -> None:
    with pytest.warns(NNXCompatDeprecationWarning) as caught:
        jax.tree.map(deep, [PID])  # MARK-jax
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, _line_of("MARK-jax"))]


def test_warning_points_at_the_user_line_inside_jit() -> None:
    from nnx_compat import nnx

    @jax.jit
    def step(x: jax.Array) -> jax.Array:
        jax.tree.map(deep, [PID])  # MARK-jit
        return x * 2

    @nnx.jit
    def nnx_step(x: jax.Array) -> jax.Array:
        deep(PID)  # MARK-nnx-jit
        return x + 1

    with pytest.warns(NNXCompatDeprecationWarning) as caught:
        step(jnp.ones(3))
        step(jnp.ones(3))  # cached: traced once, warned once
        nnx_step(jnp.ones(3))
    assert [(w.filename, w.lineno) for w in caught] == [
        (__file__, _line_of("MARK-jit")),
        (__file__, _line_of("MARK-nnx-jit")),
    ]


def test_once_per_call_site() -> None:
    with pytest.warns(NNXCompatDeprecationWarning) as caught:
        for _ in range(3):
            deep(PID)  # MARK-loop
        deep(PID)  # MARK-other
    assert [w.lineno for w in caught] == [_line_of("MARK-loop"), _line_of("MARK-other")]
    counts = {(h.lineno, h.count) for h in nnx_compat.report()}
    assert counts == {(_line_of("MARK-loop"), 3), (_line_of("MARK-other"), 1)}


def test_policy_always() -> None:
    with nnx_compat.warnings_policy("always"), pytest.warns(NNXCompatDeprecationWarning) as caught:
        for _ in range(3):
            deep(PID)
    assert len(caught) == 3


def test_policy_error_raises_with_the_user_line() -> None:
    with (
        nnx_compat.warnings_policy("error"),
        pytest.raises(
            nnx_compat.OptimizerDeprecationWarning, match=rf"{__file__}:\d+: optimizer.update"
        ),
    ):
        deep(PID)


def test_policy_ignore_still_records() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with nnx_compat.warnings_policy("ignore"):
            for _ in range(2):
                deep(PID)
    (hit,) = nnx_compat.report()
    assert (hit.pattern, hit.filename, hit.count) == (PID, __file__, 2)
    # ignoring did not use up the call site's one warning
    with pytest.warns(NNXCompatDeprecationWarning):
        for _ in range(2):
            deep(PID)


def test_policy_nests_and_restores() -> None:
    assert _warnings.current_policy() == "once"
    with nnx_compat.warnings_policy("error"):
        with nnx_compat.warnings_policy("ignore"):
            assert _warnings.current_policy() == "ignore"
        assert _warnings.current_policy() == "error"
    assert _warnings.current_policy() == "once"
    with (
        pytest.raises(ValueError, match="unknown nnx_compat warnings policy"),
        nnx_compat.warnings_policy("loud"),  # type: ignore[arg-type]
    ):
        pass


@pytest.mark.parametrize("policy", ["once", "always", "error", "ignore"])
def test_environment_variable(monkeypatch: pytest.MonkeyPatch, policy: str) -> None:
    monkeypatch.setenv("NNX_COMPAT_WARNINGS", policy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raised = False
        for _ in range(2):
            try:
                deep(PID)  # MARK-env
            except NNXCompatDeprecationWarning:
                raised = True
    ours = [w for w in caught if issubclass(w.category, NNXCompatDeprecationWarning)]
    assert len(ours) == {"once": 1, "always": 2, "error": 0, "ignore": 0}[policy]
    assert raised == (policy == "error")
    # every policy still ran the pattern handling and recorded both calls
    (hit,) = nnx_compat.report()
    assert (hit.pattern, hit.filename, hit.lineno, hit.count) == (
        PID,
        __file__,
        _line_of("MARK-env"),
        2,
    )


def test_context_manager_overrides_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNX_COMPAT_WARNINGS", "error")
    with nnx_compat.warnings_policy("ignore"):
        deep(PID)
    assert nnx_compat.report()[0].count == 1


def test_bad_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNX_COMPAT_WARNINGS", "loud")
    with (
        pytest.warns(UserWarning, match="'loud' is not one of once, always, error, ignore"),
        pytest.warns(NNXCompatDeprecationWarning),
    ):
        deep(PID)


def test_report_is_thread_safe() -> None:
    def worker() -> None:
        with nnx_compat.warnings_policy("ignore"):
            for _ in range(200):
                deep(PID)  # MARK-threads

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (hit,) = nnx_compat.report()
    assert hit.count == 1600
    assert hit.lineno == _line_of("MARK-threads")


def test_print_report() -> None:
    out = io.StringIO()
    nnx_compat.print_report(out)
    assert "no legacy flax.nnx patterns ran" in out.getvalue()
    with nnx_compat.warnings_policy("ignore"):
        deep(PID)  # MARK-print
    out = io.StringIO()
    nnx_compat.print_report(out)
    text = out.getvalue()
    assert f"{__file__}:{_line_of('MARK-print')}:" in text
    assert "optimizer.update(grads) -> optimizer.update(model, grads)" in text
    assert f"x1 [{PID}]" in text


def _run(
    code: str, tmp_path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(code))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NNX_COMPAT_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=tmp_path,
    )


def test_report_at_exit_from_the_environment(tmp_path: Path) -> None:
    proc = _run(
        """
        import jax
        from nnx_compat._warnings import warn_legacy
        jax.tree.map(warn_legacy, ["optimizer-wrt-default"])
        """,
        tmp_path,
        {"NNX_COMPAT_REPORT": "1", "NNX_COMPAT_WARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 call site ran legacy flax.nnx patterns" in proc.stderr
    assert "user_script.py:4: nnx.Optimizer(model, tx) -> " in proc.stderr


def test_visible_by_default_outside_main(tmp_path: Path) -> None:
    (tmp_path / "user_lib.py").write_text(
        "import jax\nfrom nnx_compat._warnings import warn_legacy\n\n"
        "def train():\n    jax.tree.map(warn_legacy, ['optimizer-update-grads'])\n"
    )
    proc = _run("import user_lib\nuser_lib.train()\nuser_lib.train()\n", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("user_lib.py:5: OptimizerDeprecationWarning") == 1


def test_user_filters_set_before_import_take_precedence(tmp_path: Path) -> None:
    proc = _run(
        """
        import warnings
        warnings.simplefilter("ignore")
        import jax
        import nnx_compat
        from nnx_compat._warnings import warn_legacy
        jax.tree.map(warn_legacy, ["optimizer-update-grads"])
        print([(h.pattern, h.lineno, h.count) for h in nnx_compat.report()])
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "DeprecationWarning" not in proc.stderr
    # the pattern ran and was recorded at the user's line; only its warning was filtered
    assert proc.stdout.strip() == "[('optimizer-update-grads', 7, 1)]"


def test_minus_w_error_is_respected(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text(
        "import jax\nfrom nnx_compat._warnings import warn_legacy\n"
        "jax.tree.map(warn_legacy, ['optimizer-update-grads'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", str(script)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "OptimizerDeprecationWarning: optimizer.update(grads)" in proc.stderr


def test_user_filters_take_precedence(tmp_path: Path) -> None:
    proc = _run(
        """
        import warnings, jax
        import nnx_compat
        from nnx_compat import NNXCompatDeprecationWarning
        from nnx_compat._warnings import warn_legacy
        warnings.simplefilter("ignore", NNXCompatDeprecationWarning)
        jax.tree.map(warn_legacy, ["optimizer-update-grads"])
        print([(h.pattern, h.lineno, h.count) for h in nnx_compat.report()])
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "DeprecationWarning" not in proc.stderr
    # the pattern ran and was recorded at the user's line; only its warning was filtered
    assert proc.stdout.strip() == "[('optimizer-update-grads', 7, 1)]"


# --- every way a script runs ----------------------------------------------------------------

#: A legacy pattern that warns on every flax (no release accepts ``fork(splits=)``), on line 3.
LEGACY_SCRIPT = (
    "from nnx_compat import nnx\n"
    "rngs = nnx.Rngs(0)\n"
    "forked = rngs.fork(splits=2)\n"
    "print('ran', forked.default.key.shape)\n"
)


def _subprocess_env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONWARNINGS": "default"}


@pytest.mark.parametrize("how", ["-c", "stdin", "-m", "runpy", "exec", "file"])
def test_warnings_never_crash_however_the_script_runs(how: str, tmp_path: Path) -> None:
    """``python -c`` and ``python - < script`` once raised ImportError from warn_explicit."""
    (tmp_path / "legacy_script.py").write_text(LEGACY_SCRIPT)
    stdin = None
    command = {
        "-c": [sys.executable, "-c", LEGACY_SCRIPT],
        "stdin": [sys.executable, "-"],
        "-m": [sys.executable, "-m", "legacy_script"],
        "runpy": [sys.executable, "-c", "import runpy; runpy.run_path('legacy_script.py')"],
        "exec": [sys.executable, "-c", f"exec(compile({LEGACY_SCRIPT!r}, '<cell>', 'exec'))"],
        "file": [sys.executable, "legacy_script.py"],
    }[how]
    if how == "stdin":
        stdin = LEGACY_SCRIPT
    proc = subprocess.run(
        command, input=stdin, capture_output=True, text=True, cwd=tmp_path, env=_subprocess_env()
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ran (2,)"
    where = {
        "-c": "<string>",
        "stdin": "<stdin>",
        "exec": "<cell>",
    }.get(how, "legacy_script.py")
    assert f"{where}:3: RngsDeprecationWarning: rngs.fork(splits=n)" in proc.stderr, proc.stderr


def test_warnings_in_a_jupyter_kernel() -> None:
    """A real IPython kernel (ipykernel, driven by jupyter_client), as notebooks run code."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(
        kernel_name="python3", env=_subprocess_env(), startup_timeout=120
    )
    streams: dict[str, str] = {"stdout": "", "stderr": ""}
    errors: list[str] = []

    def output(message: dict[str, Any]) -> None:
        content = message["content"]
        if message["msg_type"] == "stream":
            streams[content["name"]] += content["text"]
        elif message["msg_type"] == "error":
            errors.append("\n".join(content["traceback"]))

    try:
        reply = client.execute_interactive(LEGACY_SCRIPT, output_hook=output, timeout=120)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok", errors
    assert streams["stdout"].strip() == "ran (2,)"
    assert ":3: RngsDeprecationWarning: rngs.fork(splits=n)" in streams["stderr"], streams


def test_every_warning_carries_its_record() -> None:
    """``warning.pattern`` is the table's record: tools need not parse the message."""
    from nnx_compat import _patterns

    record = _patterns.get("rngs-fork-splits")
    with pytest.warns(nnx_compat.RngsDeprecationWarning) as caught:
        _warnings.warn_legacy("rngs-fork-splits")
    assert caught[0].message.pattern is record  # type: ignore[union-attr]
    with (
        nnx_compat.warnings_policy("error"),
        pytest.raises(nnx_compat.RngsDeprecationWarning) as raised,
    ):
        _warnings.warn_legacy("rngs-fork-splits")
    assert raised.value.pattern is record
