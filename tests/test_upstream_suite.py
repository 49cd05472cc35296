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


# ---------------------------------------------------------------- legacy mode


def test_legacy_pytest_ini_adds_the_filters_after_flaxs_own() -> None:
    pyproject = b"""
[tool.pytest.ini_options]
filterwarnings = ["error", "ignore:.*x.*:DeprecationWarning"]
doctest_optionflags = ["NUMBER"]
"""
    ini = upstream_suite.legacy_pytest_ini(pyproject)
    assert ini.splitlines() == [
        "[pytest]",
        "filterwarnings =",
        "    error",
        "    ignore:.*x.*:DeprecationWarning",
        "    ignore::nnx_compat.NNXCompatDeprecationWarning",
        "doctest_optionflags =",
        "    NUMBER",
    ]


def test_legacy_filters_name_a_category_pytest_can_import() -> None:
    import nnx_compat

    for line in upstream_suite.LEGACY_FILTERS:
        action, _, category = line.split(":")[:3]
        module, _, name = category.rpartition(".")
        assert action == "ignore" and module == "nnx_compat"
        assert issubclass(getattr(nnx_compat, name), DeprecationWarning)


def test_listed_failure_is_explained_by_its_pattern_or_reason() -> None:
    by_pattern = upstream_suite.Listed("mutable-arrays", "non-goal")
    assert by_pattern.explains("AttributeError: nnx.mutable ... [nnx-compat: mutable-arrays]")
    assert not by_pattern.explains("AttributeError: nnx.mutable [nnx-compat: nnx-dataclasses]")
    assert not by_pattern.explains("")
    by_reason = upstream_suite.Listed("flax-internals", "flax-internals", "has no attribute 'X'")
    assert by_reason.explains("AttributeError: module 'flax.nnx.graph' has no attribute 'X'")
    assert not by_reason.explains("AssertionError: 1 != 2")


def test_check_listed_wants_the_category_of_the_record() -> None:
    listed = {
        "t.A::ok_non_goal": upstream_suite.Listed("mutable-arrays", "non-goal"),
        "t.A::ok_internals": upstream_suite.Listed("flax-internals", "flax-internals", "x"),
        "t.A::ok_native": upstream_suite.Listed("merge-shares-variables", "native", "x"),
        "t.A::bridged": upstream_suite.Listed("optimizer-update-grads", "non-goal"),
        "t.A::internals_as_non_goal": upstream_suite.Listed("flax-internals", "non-goal"),
        "t.A::non_goal_as_native": upstream_suite.Listed("mutable-arrays", "native"),
        "t.A::unknown": upstream_suite.Listed("no-such-pattern", "non-goal"),
        "t.A::ok_fails_natively": upstream_suite.Listed("", "fails-natively", "x"),
        "t.A::fails_natively_with_a_record": upstream_suite.Listed(
            "mutable-arrays", "fails-natively", "x"
        ),
    }
    problems = upstream_suite.check_listed(listed)
    assert [problem.split(": ")[0] for problem in problems] == [
        "t.A::bridged",
        "t.A::fails_natively_with_a_record",
        "t.A::internals_as_non_goal",
        "t.A::non_goal_as_native",
        "t.A::unknown",
    ]
    assert "is bridged, not a non-goal record" in problems[0]


@pytest.mark.parametrize("release", ["0.11.2", "0.12.8"])
def test_legacy_failures_are_natively_passing_and_fit_their_records(release: str) -> None:
    listed = upstream_suite.legacy_failures(release)
    assert set(listed) <= upstream_suite.read_passes(upstream_suite.LEGACY_SOURCE)
    assert upstream_suite.check_listed(listed) == []
    for entry in listed.values():  # a reason string where flax's message cannot name it
        assert entry.reason or entry.category == "non-goal", entry


def test_node_id_and_the_native_rerun_check() -> None:
    test = "tests.nnx.nn.normalization_test.TestLinenConsistency::test_x8"
    assert upstream_suite.node_id(test) == (
        "tests/nnx/nn/normalization_test.py::TestLinenConsistency::test_x8"
    )
    assert upstream_suite.node_id("tests.nnx.rngs_test::test_flat") == (
        "tests/nnx/rngs_test.py::test_flat"
    )
    tests = ["t.A::fails", "t.A::passes", "t.A::not_collected"]
    problems = upstream_suite.check_fails_natively(
        tests, {"t.A::fails": "failed", "t.A::passes": "passed"}
    )
    assert problems == [
        "t.A::passes is listed as failing natively, but passes on the installed flax alone"
    ]


def test_the_legacy_list_of_passes_is_checked_in() -> None:
    passes = upstream_suite.read_passes(upstream_suite.LEGACY_SOURCE)
    assert len(passes) > 600
    assert all(test.startswith("tests.nnx.") for test in passes)


def test_test_file_and_per_file() -> None:
    assert upstream_suite.test_file("tests.nnx.nn.lora_test.TestLora::test_x") == (
        "tests/nnx/nn/lora_test.py"
    )
    assert upstream_suite.test_file("tests.nnx.test_traversals::test_y") == (
        "tests/nnx/test_traversals.py"
    )
    expected = {"tests.nnx.a_test.A::x", "tests.nnx.a_test.A::y", "tests.nnx.b_test::z"}
    results = {"tests.nnx.a_test.A::x": "passed", "tests.nnx.a_test.A::y": "failed"}
    assert upstream_suite.per_file(expected, results) == [
        "tests/nnx/a_test.py: 1/2",
        "tests/nnx/b_test.py: 0/1",
    ]


LISTED = {
    "t.A::internal": upstream_suite.Listed("flax-internals", "flax-internals", "no attribute 'X'")
}


@pytest.mark.parametrize(
    ("failure", "holds"),
    [
        ("<failure message=\"AttributeError: module has no attribute 'X'\"/>", True),
        ('<failure message="TypeError: something else"/>', False),  # not its listed reason
        ("", False),  # passes: the list is stale
    ],
)
def test_compare_legacy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], failure: str, holds: bool
) -> None:
    junit = _junit(tmp_path, {"t.A::ok": "", "t.A::internal": failure})
    results = upstream_suite.outcomes(junit)
    expected = {"t.A::ok", "t.A::internal"}
    assert upstream_suite.compare_legacy("shim", expected, results, junit, LISTED) is holds
    out = capsys.readouterr().out
    if holds:
        assert "2 of 2" not in out and "1 listed" in out
        assert "listed: t.A::internal [flax-internals] flax-internals" in out
    elif failure:
        assert "(listed as [flax-internals], another failure)" in out
    else:
        assert "stale: t.A::internal" in out


def test_compare_legacy_fails_on_a_lost_test_and_a_listed_test_not_passing_natively(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit = _junit(tmp_path, {"t.A::ok": "", "t.A::lost": '<error message="KeyError: x"/>'})
    results = upstream_suite.outcomes(junit)
    assert not upstream_suite.compare_legacy("install", {"t.A::ok"}, results, junit, LISTED)
    assert "stale: t.A::internal is listed in LEGACY_FAILURES but does not pass natively" in (
        capsys.readouterr().out
    )
    assert not upstream_suite.compare_legacy(
        "install", {"t.A::ok", "t.A::lost"}, results, junit, {}
    )
    assert "t.A::lost: error KeyError: x" in capsys.readouterr().out


def test_legacy_regenerate_needs_the_source_release_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upstream_suite, "flax_version", lambda: "0.12.8")
    with pytest.raises(SystemExit, match=r"made with flax 0\.10\.7 installed, not 0\.12\.8"):
        upstream_suite.main(["--work", str(tmp_path), "--source-release", "0.10.7", "--regenerate"])


def test_the_native_rerun_runs_each_file_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a file that cannot be collected must not keep another file's listed tests from running
    root = tmp_path / "native"
    (root / "tests/nnx").mkdir(parents=True)
    (root / "tests/nnx/broken_test.py").write_text("import no_such_module_here\n")
    (root / "tests/nnx/a_test.py").write_text(
        "class TestA:\n"
        "    def test_fails(self):\n        assert False\n"
        "    def test_passes(self):\n        pass\n"
    )
    monkeypatch.setattr(upstream_suite, "prepare", lambda *args, **kwargs: root)
    tests = [
        "tests.nnx.broken_test.TestB::test_x",
        "tests.nnx.a_test.TestA::test_fails",
        "tests.nnx.a_test.TestA::test_passes",
    ]
    results = upstream_suite.run_natively("0.10.7", "0.12.8", tmp_path, tests)
    assert results["tests.nnx.a_test.TestA::test_fails"] == "failed"
    assert results["tests.nnx.a_test.TestA::test_passes"] == "passed"
    assert "tests.nnx.broken_test.TestB::test_x" not in results
    assert upstream_suite.check_fails_natively(tests, results) == [
        "tests.nnx.a_test.TestA::test_passes is listed as failing natively, but passes on the "
        "installed flax alone"
    ]
