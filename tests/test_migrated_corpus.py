"""The migrated-corpus check's own logic (``tools/migrated_corpus.py``); the check itself is the
``migrated011``/``migrated012`` tox envs."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
from pathlib import Path

import pytest

from nnx_compat import _patterns
from tools import migrated_corpus as mc


def test_generation_is_the_target_of_the_installed_release() -> None:
    assert mc.generation("0.12.8") == "0.12"
    assert mc.generation("0.11.2") == "0.11"


def test_the_corpora_of_the_sdist() -> None:
    assert mc.corpus_of("examples/nnx_toy_examples/01_functional_api.py") == "toys"
    assert mc.corpus_of("docs_nnx/guides/surgery.ipynb") == "notebooks"
    assert mc.corpus_of("docs_nnx/guides/surgery.md") == "notebooks"  # a MyST pair
    assert mc.corpus_of("docs_nnx/conf.py") is None
    assert mc.corpus_of("tests/nnx/module_test.py") == "tests"
    assert mc.corpus_of("tests/linen/linen_test.py") is None
    assert mc.item_corpus("examples/nnx_toy_examples/01_functional_api.py") == "toys"
    assert mc.item_corpus("docs_nnx/nnx_basics.ipynb:cell 27") == "notebooks"
    assert mc.item_corpus("tests.nnx.module_test.TestModule::test_clone") == "tests"
    with pytest.raises(ValueError, match="no item"):
        mc.item_corpus("tests.linen.x::y")


def test_notebook_pairs(tmp_path: Path) -> None:
    docs = tmp_path / "docs_nnx" / "guides"
    docs.mkdir(parents=True)
    for name in ("a.ipynb", "a.md", "b.ipynb", "philosophy.md"):
        (docs / name).write_text("{}")
    pairs = [(n.name, m.name if m else None) for n, m in mc.notebook_pairs(tmp_path)]
    assert pairs == [("a.ipynb", "a.md"), ("b.ipynb", None)]


def _cell(source: str, outputs: list[dict[str, str]], count: int | None = 1) -> dict[str, object]:
    return {
        "cell_type": "code",
        "source": source,
        "outputs": outputs,
        "execution_count": count,
        "metadata": {},
    }


def test_without_shell_clears_outputs_and_empties_shell_cells() -> None:
    notebook: dict[str, object] = {
        "cells": [
            {"cell_type": "markdown", "source": "# !not code"},
            _cell("x = 1", [{"output_type": "stream"}], 3),
            _cell("  !pip install flax", []),
        ]
    }
    cells = mc.without_shell(notebook)["cells"]
    assert cells == [  # a cell passes only where this run executes it; the shell never runs
        {"cell_type": "markdown", "source": "# !not code"},
        {**_cell("x = 1", [], None)},
        {**_cell("", [], None), "metadata": {"shell_escape": True}},
    ]


def test_cell_outcomes_number_cells_as_jupyter_does() -> None:
    error = {"output_type": "error", "ename": "NameError", "evalue": "name 'x' is not defined"}
    executed = {
        "cells": [
            {"cell_type": "markdown", "source": "# title"},
            _cell("x = 1", []),
            _cell("", [], None),  # an empty cell is no item
            _cell("y = x", [error]),
            {**_cell("", [], None), "metadata": {"shell_escape": True}},
            _cell("z = 2", [], None),  # after a timeout
            {**_cell("# ! pip install flax", [], None), "metadata": {"tags": ["skip-execution"]}},
        ]
    }
    results, errors = mc.cell_outcomes(executed, "nb.ipynb")
    assert results == {
        "nb.ipynb:cell 2": "passed",
        "nb.ipynb:cell 4": "failed",
        "nb.ipynb:cell 5": "skipped",
        "nb.ipynb:cell 6": "not run",
        "nb.ipynb:cell 7": "skipped",  # nbclient does not run it
    }
    assert errors == {"nb.ipynb:cell 4": "NameError: name 'x' is not defined"}


def test_last_exception_is_the_tracebacks_last_line() -> None:
    output = (
        "Traceback (most recent call last):\n  File 'x.py', line 1\n"
        "flax.errors.TraceContextError: Cannot mutate Count from a different trace level\n"
        "--------------------\nFor simplicity, JAX has removed its internal frames.\n"
    )
    assert mc.last_exception(output).startswith("flax.errors.TraceContextError: Cannot mutate")
    assert mc.last_exception("no traceback\nat all\n") == "at all"
    assert mc.last_exception("") == ""


def test_with_filters_come_after_flaxs_own() -> None:
    ini = "[pytest]\nfilterwarnings =\n    error\n    ignore:x:UserWarning\nmarkers =\n    a\n"
    assert mc.with_filters(ini, ["ignore::DeprecationWarning"]).splitlines() == [
        "[pytest]",
        "filterwarnings =",
        "    error",
        "    ignore:x:UserWarning",
        "    ignore::DeprecationWarning",
        "markers =",
        "    a",
    ]
    assert mc.with_filters("[pytest]\n", ["ignore::X"]).splitlines() == [
        "[pytest]",
        "filterwarnings =",
        "    ignore::X",
    ]


def test_compare_accounts_only_for_listed_failures_with_their_reason() -> None:
    expected = {"t.a", "t.b", "t.c", "t.d", "t.e"}
    outcome = mc.Outcome(
        {"t.a": "passed", "t.b": "failed", "t.c": "failed", "t.d": "failed", "t.e": "passed"},
        {"t.b": "TraceContextError: x", "t.c": "ValueError: y", "t.d": "ValueError: z"},
    )
    listed = {
        "t.b": ("state-copies", "TraceContextError"),
        "t.c": ("state-copies", "TraceContextError"),  # fails otherwise: harmed
        "t.[de]": ("mutable-arrays", "ValueError: z"),  # a pattern: t.e passes, t.d fails so
        "t.x": ("mutable-arrays", "anything"),  # no such item: stale
    }
    comparison = mc.compare(expected, outcome, listed)
    assert comparison.kept == ["t.a", "t.e"]
    assert comparison.accounted == {
        "t.b": ("state-copies", "TraceContextError"),
        "t.d": ("mutable-arrays", "ValueError: z"),
    }
    assert list(comparison.harmed) == ["t.c"]
    assert "listed for [state-copies]" in comparison.harmed["t.c"]
    assert comparison.stale == ["t.x"]
    assert not comparison.holds
    assert mc.compare({"t.a"}, outcome, {}).holds
    # a listed item that passes is stale
    assert mc.compare({"t.a"}, outcome, {"t.a": ("state-copies", "x")}).stale == ["t.a"]


def test_a_listed_failure_must_be_reported_by_the_migration() -> None:
    log = (
        "m.py:76:29: nnx-compat[mutable-arrays] manual: use jax's array refs\n"
        "nnx-compat migrate: 1 file, 0 to change; rewrites: none; 1 manual item\n"
    )
    manual = mc.manual_records(log)
    assert manual == {"mutable-arrays"}
    listed = {
        "a": ("mutable-arrays", "x"),
        "b": ("sharding-without-mesh", "y"),
        "c": ("variable-value", "z"),
    }
    listed["d"] = ("variable-value", "w")
    listed["e"] = ("none", "v")  # no record: nothing to report
    assert mc.unreported(listed, manual, {"sharding-without-mesh"}) == {"variable-value": 2}


def test_the_guard_keeps_nnx_compat_out(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(mc.GUARD)
    code = "import json, nnx_compat"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "nnx_compat imported by migrated code" in proc.stderr
    ok = subprocess.run([sys.executable, "-c", "import json"], env={"PYTHONPATH": str(tmp_path)})
    assert ok.returncode == 0


def test_read_explained() -> None:
    text = "# a comment\n\nt.a | state-copies | TraceContextError: x | y\nt.* | none | z\n"
    assert mc.read_explained(text) == {
        "t.a": ("state-copies", "TraceContextError: x | y"),
        "t.*": ("none", "z"),
    }
    with pytest.raises(ValueError, match="listed twice"):
        mc.read_explained("t.a | none | x\nt.a | none | y\n")


@pytest.mark.parametrize("line", sorted(mc.EXPLAINED))
def test_every_listed_failure_names_a_record_and_natively_passing_items(line: str) -> None:
    assert mc.EXPLAINED[line]
    for key, (record, reason) in mc.EXPLAINED[line].items():
        assert record == mc.NO_RECORD or _patterns.get(record), key
        assert reason, key
        corpus = mc.item_corpus(key)
        passes = mc.read_passes(corpus)
        assert any(fnmatch.fnmatchcase(item, key) for item in passes), key


def test_the_lists_of_passes_exist_for_every_corpus() -> None:
    for corpus in mc.CORPORA:
        assert mc.read_passes(corpus), corpus
    assert "examples/nnx_toy_examples/01_functional_api.py" in mc.read_passes("toys")
