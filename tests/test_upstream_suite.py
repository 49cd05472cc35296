"""The no-harm check's own logic (``tools/upstream_suite.py``); the check itself is a tox env."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import upstream_suite


def test_swap_imports_serves_nnx_from_nnx_compat_and_nothing_else() -> None:
    source = (
        "from flax import nnx\n"
        "from flax import errors, nnx\n"
        "    from flax import linen, nnx, struct\n"
        "from flax import linen as nn\n"
        "import flax.nnx as nnx\n"
        "from flax.nnx import bridge\n"
        "from flax.nnx.nn import initializers\n"
        "import flax\n"
    )
    swapped, count = upstream_suite.swap_imports(source)
    assert count == 5
    assert swapped.splitlines() == [
        "from nnx_compat import nnx",
        "from flax import errors; from nnx_compat import nnx",
        "    from flax import linen, struct; from nnx_compat import nnx",
        "from flax import linen as nn",
        "from nnx_compat import nnx as nnx",
        "from nnx_compat.nnx import bridge",
        "from flax.nnx.nn import initializers",
        "import flax",
    ]
    assert upstream_suite.swap_imports(swapped) == (swapped, 0)  # line numbers are kept


def test_pytest_ini_keeps_flaxs_warning_filters() -> None:
    pyproject = b"""
[tool.pytest.ini_options]
filterwarnings = ["error", "ignore:.*x.*:DeprecationWarning"]
doctest_optionflags = ["NUMBER"]
"""
    ini = upstream_suite.pytest_ini(pyproject)
    assert ini.splitlines() == [
        "[pytest]",
        "filterwarnings =",
        "    error",
        "    ignore:.*x.*:DeprecationWarning",
        "doctest_optionflags =",
        "    NUMBER",
    ]


def _junit(tmp_path: Path, cases: dict[str, str]) -> Path:
    rows = []
    for test, body in cases.items():
        classname, name = test.split("::")
        rows.append(f'<testcase classname="{classname}" name="{name}">{body}</testcase>')
    path = tmp_path / "junit.xml"
    path.write_text(f"<testsuites><testsuite>{''.join(rows)}</testsuite></testsuites>")
    return path


REJECTIONS = upstream_suite.bridged_rejections("0.12.8")
BRIDGED = next(iter(REJECTIONS))
PATTERN = REJECTIONS[BRIDGED]


@pytest.mark.parametrize(
    ("bridged_failure", "holds"),
    [
        (f'<failure message="Warning: {"x" * 500} [nnx-compat: {PATTERN}]"/>', True),
        ('<failure message="AssertionError: ValueError not raised"/>', True),
        ('<failure message="TypeError: something else"/>', False),  # not the bridge's doing
        ("", False),  # passes: the list is stale
    ],
)
def test_compare(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    bridged_failure: str,
    holds: bool,
) -> None:
    junit = _junit(tmp_path, {"t.A::ok": "", "t.A::skip": "<skipped/>", BRIDGED: bridged_failure})
    results = upstream_suite.outcomes(junit)
    assert results["t.A::ok"] == "passed" and results["t.A::skip"] == "skipped"
    expected = {"t.A::ok", BRIDGED}
    assert upstream_suite.compare("shim", expected, results, junit, REJECTIONS) is holds


def test_compare_fails_on_a_lost_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junit = _junit(tmp_path, {"t.A::ok": "", "t.A::lost": '<error message="KeyError: x"/>'})
    results = upstream_suite.outcomes(junit)
    expected = {"t.A::ok", "t.A::lost", "t.A::gone"}
    assert not upstream_suite.compare("install", expected, results, junit, REJECTIONS)
    out = capsys.readouterr().out
    assert "t.A::lost: error KeyError: x" in out and "t.A::gone: not collected" in out


@pytest.mark.parametrize("release", ["0.11.2", "0.12.8"])
def test_the_lists_of_passes_are_checked_in(release: str) -> None:
    passes = upstream_suite.read_passes(release)
    assert len(passes) > 700
    assert set(upstream_suite.bridged_rejections(release)) <= passes
    assert upstream_suite.bridged_rejections("0.11.2") == {}
