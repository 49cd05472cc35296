"""The pytest plugin, run by pytest itself (``pytester``, each session in a subprocess, as a
user's suite runs it: the plugin is loaded from its ``pytest11`` entry point)."""

from __future__ import annotations

import json
import os
import stat
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

#: A user's module with two legacy call sites (lines 5 and 9). warn_legacy is what every shim
#: calls; calling it directly keeps these sessions free of flax (fast).
LEGACY = """\
from nnx_compat._warnings import warn_legacy


def update_grads():
    warn_legacy("optimizer-update-grads")


def fork_splits():
    warn_legacy("rngs-fork-splits")
"""

TESTS = """\
import pytest

from legacy import fork_splits, update_grads


def test_one():
    update_grads()


def test_two():
    update_grads()
    update_grads()


def test_three():
    fork_splits()


def test_clean():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(legacy=LEGACY, test_a=TESTS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_report_lists_each_pattern_its_lines_and_tests(suite: pytest.Pytester) -> None:
    result = _run(suite)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*= nnx_compat: legacy flax.nnx patterns =*",
            "optimizer-update-grads x3: optimizer.update(grads) -> "
            "optimizer.update(model, grads) (flax 0.11.0)",
            "  legacy.py:5 x3 (2 tests: test_a.py::test_one, test_a.py::test_two)",
            "rngs-fork-splits x1: rngs.fork(splits=n) -> *",
            "  legacy.py:9 x1 (1 test: test_a.py::test_three)",
        ]
    )


def test_report_as_json(suite: pytest.Pytester) -> None:
    _run(suite, "--nnx-compat-report=out/report.json").assert_outcomes(passed=4)
    data = json.loads((suite.path / "out" / "report.json").read_text())
    (update, fork) = data["patterns"]
    assert (update["id"], update["count"], update["new"]) == (
        "optimizer-update-grads",
        3,
        "optimizer.update(model, grads)",
    )
    assert update["sites"] == [
        {
            "pattern": "optimizer-update-grads",
            "file": "legacy.py",
            "line": 5,
            "count": 3,
            "tests": ["test_a.py::test_one", "test_a.py::test_two"],
        }
    ]
    assert fork["id"] == "rngs-fork-splits"


def test_off_and_a_clean_suite_print_nothing(suite: pytest.Pytester) -> None:
    result = _run(suite, "--nnx-compat=off")
    result.assert_outcomes(passed=4)
    assert "legacy flax.nnx patterns" not in result.stdout.str()
    assert "legacy flax.nnx patterns" not in _run(suite, "-k", "clean").stdout.str()


def test_the_ini_option_sets_the_mode(suite: pytest.Pytester) -> None:
    suite.makeini("[pytest]\npythonpath = .\nnnx_compat = strict\n")
    _run(suite).assert_outcomes(passed=1, failed=3)
    suite.makeini("[pytest]\npythonpath = .\nnnx_compat = loud\n")
    result = _run(suite)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*nnx_compat = 'loud' is not one of off, report, strict*"])


def test_strict_fails_each_test_with_the_warning_and_the_users_line(
    suite: pytest.Pytester,
) -> None:
    result = _run(suite, "--nnx-compat=strict")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*nnx_compat strict: this test ran 1 legacy flax.nnx pattern at 1 call site (in "
            "call); migrate it, or allow it with @pytest.mark.nnx_compat_legacy*",
            "  legacy.py:5: optimizer.update(grads) is deprecated since flax 0.11.0: use "
            "optimizer.update(model, grads).*[[]nnx-compat: optimizer-update-grads]",
        ]
    )
    assert "optimizer-update-grads] (x2)" in result.stdout.str()  # test_two: twice, one line


def test_strict_catches_hits_in_fixtures_and_under_jit(pytester: pytest.Pytester) -> None:
    source = pytester.makepyfile(
        test_real=textwrap.dedent(
            """
            import jax
            import pytest

            from nnx_compat import nnx


            @pytest.fixture
            def forked():
                return nnx.Rngs(0).fork(splits=2)


            def test_in_a_fixture(forked):
                pass


            def test_while_jit_traces():
                @jax.jit
                def f(x):
                    nnx.Rngs(0).fork(splits=2)
                    return x + 1

                assert f(1.0) == 2.0
            """
        )
    )
    result = _run(pytester, "--nnx-compat=strict")
    result.assert_outcomes(errors=1, failed=1)
    out = result.stdout.str()
    assert "(in setup)" in out and "(in call)" in out
    lines = source.read_text().splitlines()
    fixture, traced = (i + 1 for i, line in enumerate(lines) if "fork(splits=2)" in line)
    assert out.count(f"  test_real.py:{fixture}: rngs.fork(splits=n) is deprecated") == 1
    assert out.count(f"  test_real.py:{traced}: rngs.fork(splits=n) is deprecated") == 1


def test_the_marker_allows_named_patterns(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_marked=textwrap.dedent(
            """
            import pytest

            from legacy import fork_splits, update_grads


            @pytest.mark.nnx_compat_legacy("optimizer-update-grads")
            def test_allowed():
                update_grads()


            @pytest.mark.nnx_compat_legacy("optimizer-update-grads")
            def test_other_pattern():
                fork_splits()


            @pytest.mark.nnx_compat_legacy
            def test_any():
                fork_splits()


            @pytest.mark.nnx_compat_legacy("no-such-pattern")
            def test_typo():
                pass
            """
        )
    )
    result = _run(suite, "--nnx-compat=strict", "test_marked.py")
    result.assert_outcomes(passed=2, failed=1, errors=1)  # the typo: an error at setup
    result.stdout.fnmatch_lines(["FAILED test_marked.py::test_other_pattern*"])
    result.stdout.fnmatch_lines(["*unknown nnx_compat pattern 'no-such-pattern'; known: *"])


def test_user_filters_and_the_policy_still_win(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    ignored = _run(
        suite, "--nnx-compat=strict", "-W", "ignore::nnx_compat.NNXCompatDeprecationWarning"
    )
    ignored.assert_outcomes(passed=4)
    monkeypatch.setenv("NNX_COMPAT_WARNINGS", "ignore")
    _run(suite, "--nnx-compat=strict").assert_outcomes(passed=4)
    monkeypatch.delenv("NNX_COMPAT_WARNINGS")
    errors = _run(suite, "-W", "error::DeprecationWarning")  # report mode: pytest raises it
    errors.assert_outcomes(passed=1, failed=3)


def test_the_fixture_holds_the_tests_hits(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_fixture=textwrap.dedent(
            """
            import pytest

            from legacy import fork_splits, update_grads


            @pytest.fixture
            def prepared():
                fork_splits()


            def test_hits(prepared, nnx_compat_hits):
                update_grads()
                update_grads()
                assert nnx_compat_hits.patterns == [
                    "rngs-fork-splits", "optimizer-update-grads", "optimizer-update-grads"
                ]
                assert [(h.filename.endswith("legacy.py"), h.lineno) for h in nnx_compat_hits] == [
                    (True, 9), (True, 5), (True, 5)
                ]


            def test_fresh(nnx_compat_hits):
                assert list(nnx_compat_hits) == []
            """
        )
    )
    _run(suite, "test_fixture.py").assert_outcomes(passed=2)


def _baseline(path: Path) -> dict[str, dict[str, int]]:
    data = json.loads(path.read_text())
    assert data["format"] == 1
    return data["patterns"]


def test_baseline_update_pass_fail_and_shrink(suite: pytest.Pytester) -> None:
    baseline = suite.path / "nnx-compat-baseline.json"
    missing = _run(suite, f"--nnx-compat-baseline={baseline}")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR  # at start-up, before any test ran
    missing.stderr.fnmatch_lines(["*no baseline at *--nnx-compat-update-baseline*"])
    assert "passed" not in missing.stdout.str()

    assert _run(suite, f"--nnx-compat-baseline={baseline}", "--nnx-compat-update-baseline").ret == 0
    assert _baseline(baseline) == {
        "optimizer-update-grads": {"legacy.py": 1},
        "rngs-fork-splits": {"legacy.py": 1},
    }
    text = baseline.read_text()
    assert text.endswith("}\n") and text.index("optimizer") < text.index("rngs")  # sorted
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(baseline.stat().st_mode) == 0o666 & ~umask  # a file to share, not 0600
    baseline.chmod(0o664)
    assert _run(suite, f"--nnx-compat-baseline={baseline}", "--nnx-compat-update-baseline").ret == 0
    assert stat.S_IMODE(baseline.stat().st_mode) == 0o664  # the mode it had is kept
    assert _run(suite, f"--nnx-compat-baseline={baseline}").ret == pytest.ExitCode.OK

    suite.makepyfile(
        test_b="from legacy import warn_legacy\n\ndef test_new():\n"
        "    warn_legacy('variable-value')\n"
    )
    grown = _run(suite, f"--nnx-compat-baseline={baseline}")
    assert grown.ret == pytest.ExitCode.TESTS_FAILED
    grown.stdout.fnmatch_lines(
        [
            "*legacy call sites beyond the baseline*",
            "  variable-value in test_b.py: 1 call site, baseline 0: test_b.py:4",
        ]
    )
    (suite.path / "test_b.py").unlink()

    suite.makepyfile(test_a=TESTS.replace("    fork_splits()\n", "    pass\n"))
    filtered = _run(
        suite, f"--nnx-compat-baseline={baseline}", "--nnx-compat-update-baseline", "-k", "one"
    )
    assert filtered.ret == pytest.ExitCode.OK
    assert "rngs-fork-splits" in _baseline(baseline)  # a filtered run never shrinks it
    shrink = _run(suite, f"--nnx-compat-baseline={baseline}")
    assert shrink.ret == pytest.ExitCode.OK
    shrink.stdout.fnmatch_lines(
        ["*the baseline * can shrink*", "  rngs-fork-splits in legacy.py: baseline 1, now 0"]
    )
    _run(suite, f"--nnx-compat-baseline={baseline}", "--nnx-compat-update-baseline")
    assert _baseline(baseline) == {"optimizer-update-grads": {"legacy.py": 1}}


def test_a_broken_baseline_is_a_usage_error(suite: pytest.Pytester) -> None:
    (suite.path / "baseline.json").write_text("{not json")
    result = _run(suite, "--nnx-compat-baseline=baseline.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cannot read the baseline baseline.json*"])
    assert "passed" not in result.stdout.str()  # at start-up, before any test ran


def test_xdist_workers_are_merged(suite: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    suite.makepyfile(
        test_b="from legacy import update_grads\n\ndef test_four():\n    update_grads()\n"
    )
    baseline = suite.path / "baseline.json"
    result = _run(
        suite,
        "-n",
        "2",
        f"--nnx-compat-baseline={baseline}",
        "--nnx-compat-update-baseline",
        "--nnx-compat-report=report.json",
    )
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "optimizer-update-grads x4: *",
            "  legacy.py:5 x4 (3 tests: test_a.py::test_one, test_a.py::test_two, "
            "test_b.py::test_four)",
        ]
    )
    assert _baseline(baseline) == {
        "optimizer-update-grads": {"legacy.py": 1},
        "rngs-fork-splits": {"legacy.py": 1},
    }
    strict = _run(suite, "-n", "2", "--nnx-compat=strict", f"--nnx-compat-baseline={baseline}")
    strict.assert_outcomes(passed=1, failed=4)
