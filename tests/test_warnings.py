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
    assert "1 call site(s) ran legacy flax.nnx patterns" in proc.stderr
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
        from nnx_compat._warnings import warn_legacy
        jax.tree.map(warn_legacy, ["optimizer-update-grads"])
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "DeprecationWarning" not in proc.stderr


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
        from nnx_compat import NNXCompatDeprecationWarning
        from nnx_compat._warnings import warn_legacy
        warnings.simplefilter("ignore", NNXCompatDeprecationWarning)
        jax.tree.map(warn_legacy, ["optimizer-update-grads"])
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "DeprecationWarning" not in proc.stderr
