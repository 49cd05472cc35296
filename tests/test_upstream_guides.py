"""The guides check's own logic (``tools/upstream_guides.py``); the check itself is the
``guides010``/``guides011`` tox envs."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

from tools import upstream_guides as ug
from tools import upstream_suite

BASICS = "docs_nnx/nnx_basics.ipynb"


def _item(number: int, notebook: str = BASICS) -> str:
    return f"{notebook}:cell {number}"


@pytest.mark.parametrize(
    ("source", "swapped", "count"),
    [
        ("from flax import nnx", "from nnx_compat import nnx", 1),
        # a comment after the import stays
        (
            "from flax import nnx  # The Flax NNX API.",
            "from nnx_compat import nnx  # The Flax NNX API.",
            1,
        ),
        ("import flax.nnx as nnx", "from nnx_compat import nnx as nnx", 1),
        ("from flax.nnx import bridge", "from nnx_compat.nnx import bridge", 1),
        ("from flax import nnx as fnnx", "from nnx_compat import nnx as fnnx", 1),
        (
            "from flax import linen as nn, nnx",
            "from flax import linen as nn; from nnx_compat import nnx",
            1,
        ),
        ("def f():\n    from flax import nnx\n", "def f():\n    from nnx_compat import nnx\n", 1),
        # imports of the rest of flax stay
        ("from flax import linen as nn", "from flax import linen as nn", 0),
        ("import flax\nimport flax.traverse_util", "import flax\nimport flax.traverse_util", 0),
        ("x = 1  # from flax import nnx", "x = 1  # from flax import nnx", 0),
    ],
)
def test_swap_imports_serves_each_form_the_guides_use(
    source: str, swapped: str, count: int
) -> None:
    assert ug.swap_imports(source) == (swapped, count)
    assert ug.unswapped(swapped) == []
    compile(swapped, "<cell>", "exec")


def test_swap_imports_counts_every_import_of_a_cell() -> None:
    source = "import jax\nfrom flax import nnx  # NNX\nfrom flax.nnx import bridge\n"
    swapped, count = ug.swap_imports(source)
    assert count == 2
    assert swapped == (
        "import jax\nfrom nnx_compat import nnx  # NNX\nfrom nnx_compat.nnx import bridge\n"
    )


@pytest.mark.parametrize(
    "source",
    [
        "import flax.nnx",
        "from flax import (\n    linen,\n    nnx,\n)",
    ],
)
def test_imports_that_are_not_served_are_found(source: str) -> None:
    assert ug.unswapped(ug.swap_imports(source)[0])


def test_swap_notebook_swaps_code_cells_only() -> None:
    notebook: dict[str, object] = {
        "cells": [
            {"cell_type": "markdown", "source": "from flax import nnx"},
            {"cell_type": "code", "source": ["import jax\n", "from flax import nnx\n"]},
            {"cell_type": "code", "source": "import flax.nnx as nnx"},
        ]
    }
    assert ug.swap_notebook(notebook) == 2
    cells = notebook["cells"]
    assert isinstance(cells, list)
    assert cells[0]["source"] == "from flax import nnx"
    assert cells[1]["source"] == "import jax\nfrom nnx_compat import nnx\n"
    assert cells[2]["source"] == "from nnx_compat import nnx as nnx"


def test_swap_notebook_refuses_an_import_it_cannot_serve() -> None:
    notebook: dict[str, object] = {"cells": [{"cell_type": "code", "source": "import flax.nnx"}]}
    with pytest.raises(SystemExit, match=r"import flax\.nnx"):
        ug.swap_notebook(notebook)


def test_items_name_their_notebook_and_cell() -> None:
    item = "docs_nnx/guides/view.ipynb:cell 12"
    assert ug.notebook_of(item) == "docs_nnx/guides/view.ipynb"
    assert ug.cell_number(item) == 12


def test_cell_sources_number_every_cell() -> None:
    notebook = {
        "cells": [
            {"cell_type": "markdown", "source": "# title"},
            {"cell_type": "code", "source": ["a = 1\n", "b = 2"]},
        ]
    }
    assert ug.cell_sources(notebook, BASICS) == {_item(2): "a = 1\nb = 2"}


def test_a_cell_failing_on_a_name_an_earlier_failure_defines_follows_it() -> None:
    errors = {
        _item(3): "AttributeError: nnx.view needs flax 0.12.0 or newer",
        _item(5): "NameError: name 'model' is not defined",
        _item(7): "NameError: name 'loss' is not defined",
        _item(9): "ValueError: shapes differ",
        _item(11): "NameError: name 'undefined_anywhere' is not defined",
        _item(12): "NameError: name 'modelx' is not defined",
    }
    sources = {
        _item(3): "model = nnx.view(m)\nmodelx = 1",
        _item(5): "loss = model(x)",
        _item(7): "print(loss)",
        _item(9): "y = model2(x)",
        _item(11): "print(undefined_anywhere)",
        _item(12): "print(modelx)",
    }
    assert ug.roots(errors, sources) == {
        _item(3): _item(3),
        _item(5): _item(3),
        _item(7): _item(3),  # through cell 5, whose root is cell 3
        _item(9): _item(9),  # another error: a failure of its own
        _item(11): _item(11),  # no earlier failure names it
        _item(12): _item(3),
    }


def test_bound_names() -> None:
    source = (
        "%%time\n"
        "!ls\n"
        "import numpy as np, jax.numpy\n"
        "from flax import nnx as fnnx\n"
        "a, (b, c) = 1, (2, 3)\n"
        "d: int = 4\n"
        "e += 1\n"
        "for f in range(2):\n"
        "    g = f\n"
        "with open('x') as h:\n"
        "    pass\n"
        "def i(j): return k\n"
        "class L: pass\n"
        "print(m)\n"
    )
    assert ug.bound_names(source) == {*"abcdefghiL", "np", "jax", "fnnx"}
    # a cell that does not parse binds whatever it names
    assert ug.bound_names("x = (\nprint(y)") == {"x", "print", "y"}


def test_a_failure_that_only_uses_the_name_is_no_root() -> None:
    errors = {
        _item(2): "AttributeError: no set_mesh",
        _item(4): "ModuleNotFoundError: No module named 'grain'",
        _item(6): "NameError: name 'model' is not defined",
    }
    sources = {_item(2): "model = build()", _item(4): "import grain\nmodel(x)", _item(6): "model"}
    assert ug.roots(errors, sources)[_item(6)] == _item(2)


def test_roots_take_the_last_earlier_failure_that_binds_it() -> None:
    errors = {
        _item(10): "KeyError: 'a'",
        _item(2): "TypeError: b",
        _item(20): "NameError: name 'x' is not defined",
    }
    sources = {_item(2): "x = f()", _item(10): "x = g()", _item(20): "x"}
    assert ug.roots(errors, sources)[_item(20)] == _item(10)


def test_read_listed() -> None:
    text = (
        "# comment\n\n"
        f"{_item(3)} | needs flax 0.12.0 or newer\n"
        "docs_nnx/guides/view.ipynb:cell * | has no attribute 'view'\n"
    )
    assert ug.read_listed(text) == {
        _item(3): "needs flax 0.12.0 or newer",
        "docs_nnx/guides/view.ipynb:cell *": "has no attribute 'view'",
    }
    with pytest.raises(ValueError, match="listed twice"):
        ug.read_listed(f"{_item(3)} | a\n{_item(3)} | b\n")
    with pytest.raises(ValueError, match=r"line 1: .* is not `item \| reason`"):
        ug.read_listed(f"{_item(3)}\n")
    with pytest.raises(ValueError, match=r"is not `item \| reason`"):
        ug.read_listed(f"{_item(3)} | \n")


def _outcome(
    results: dict[str, str], errors: dict[str, str], roots: dict[str, str] | None = None
) -> ug.Outcome:
    return ug.Outcome(results, errors, roots or {item: item for item in errors})


def test_compare_accounts_for_listed_failures_by_their_reason_or_their_roots() -> None:
    expected = {_item(n) for n in (1, 3, 5, 7, 9, 11)}
    outcome = _outcome(
        {
            _item(1): "passed",
            _item(3): "failed",
            _item(5): "failed",
            _item(7): "failed",
            _item(9): "failed",
            _item(11): "passed",
        },
        {
            _item(3): "AttributeError: nnx.view needs flax 0.12.0 or newer",
            _item(5): "NameError: name 'view' is not defined",
            _item(7): "TypeError: an unexpected keyword",
            _item(9): "KeyError: 'sharding'",
        },
        {_item(3): _item(3), _item(5): _item(3), _item(7): _item(7), _item(9): _item(9)},
    )
    listed = {
        _item(3): "nnx.view needs flax",
        _item(5): "nnx.view needs flax",  # the reason of the cell it follows
        _item(7): "nnx.view needs flax",  # its root is itself: another failure
        _item(11): "anything",  # passes: stale
        "docs_nnx/guides/other.ipynb:cell 4": "anything",  # no such failure: stale
    }
    comparison = ug.compare(expected, outcome, listed)
    assert comparison.kept == [_item(1), _item(11)]
    assert comparison.listed == {_item(3): "nnx.view needs flax", _item(5): "nnx.view needs flax"}
    assert comparison.unexplained == {
        _item(7): "failed: TypeError: an unexpected keyword (listed for 'nnx.view needs flax')",
        _item(9): "failed: KeyError: 'sharding'",
    }
    assert comparison.stale == ["docs_nnx/guides/other.ipynb:cell 4", _item(11)]
    assert not comparison.holds


def test_compare_names_the_root_of_an_unexplained_cascade() -> None:
    outcome = _outcome(
        {_item(2): "failed", _item(4): "failed"},
        {_item(2): "KeyError: 'x'", _item(4): "NameError: name 'y' is not defined"},
        {_item(2): _item(2), _item(4): _item(2)},
    )
    comparison = ug.compare({_item(4)}, outcome, {})
    assert comparison.unexplained == {
        _item(4): f"failed: NameError: name 'y' is not defined (after {_item(2)}: KeyError: 'x')"
    }


def test_compare_counts_a_cell_that_did_not_run_as_failing() -> None:
    comparison = ug.compare({_item(2)}, _outcome({}, {}), {_item(2): "x"})
    assert comparison.unexplained == {_item(2): "not run: (listed for 'x')"}


def test_compare_matches_listed_patterns() -> None:
    view = "docs_nnx/guides/view.ipynb"
    outcome = _outcome(
        {_item(2, view): "failed", _item(3, view): "failed"},
        {_item(2, view): "AttributeError: no view", _item(3, view): "AttributeError: no view"},
    )
    comparison = ug.compare(
        {_item(2, view), _item(3, view)}, outcome, {f"{view}:cell *": "no view"}
    )
    assert comparison.holds
    assert sorted(comparison.listed) == [_item(2, view), _item(3, view)]


def test_a_comparison_that_holds() -> None:
    outcome = _outcome({_item(1): "passed", _item(2): "failed"}, {_item(2): "E: needs flax 0.12"})
    comparison = ug.compare({_item(1), _item(2)}, outcome, {_item(2): "needs flax 0.12"})
    assert comparison.holds
    assert ug.verdict("0.11.2", comparison) == (
        "guides on flax 0.11.2: 1/2 natively passing cells pass through nnx_compat; "
        "1 listed; 0 unexplained; 0 stale"
    )


def test_verdict_and_figures_per_notebook() -> None:
    view = "docs_nnx/guides/view.ipynb"
    comparison = ug.Comparison(
        expected=[_item(1), _item(2), _item(3), _item(1, view), _item(2, view)],
        kept=[_item(1), _item(1, view), _item(2, view)],
        listed={_item(2): "r"},
        unexplained={_item(3): "failed: E"},
        stale=["x"],
    )
    assert ug.per_notebook(comparison, {view: 12.4}) == [
        f"{view}: 2/2 pass, 0 listed, 0 unexplained in 12 s",
        f"{BASICS}: 1/3 pass, 1 listed, 1 unexplained",
    ]
    assert ug.verdict("0.10.7", comparison) == (
        "guides on flax 0.10.7: 3/5 natively passing cells pass through nnx_compat; "
        "1 listed; 1 unexplained; 1 stale"
    )
    assert not comparison.holds


def test_reason_of_keeps_the_first_clause_without_what_changes() -> None:
    missing = (
        "AttributeError: nnx.prefix needs flax 0.12.7 or newer (flax 0.11.2 is installed); on "
        "flax 0.11.2 use nnx.StateAxes. Upgrade flax (pip install 'flax>=0.12.7') for it.\nmore"
    )
    assert ug.reason_of(missing) == "AttributeError: nnx.prefix needs flax 0.12.7 or newer"
    assert ug.reason_of("ValueError: sharding needs flax 0.12.0; on 0.10.7 use x") == (
        "ValueError: sharding needs flax 0.12.0"
    )
    assert ug.reason_of("E: no nnx.view. Upgrade") == "E: no nnx.view"
    error = "AttributeError: 'Foo' object at 0x7f3a2b has no attribute 'bar'"
    assert ug.reason_of(error) == "AttributeError: 'Foo'"
    assert ug.reason_of("E: " + "x" * 300) == "E: " + "x" * 197
    located = "ValueError: bad spec. This error occurs at source:  /tmp/ipykernel_1121/15.py:13:8"
    assert ug.reason_of(located) == "ValueError: bad spec"
    located = "TypeError: function init_state at /tmp/ipykernel_2205/33.py:12 traced for jit"
    assert ug.reason_of(located) == "TypeError: function init_state at"
    path = "ImportError: cannot import name 'reshard' from 'jax.sharding' (/venv/lib/jax/x.py)"
    assert ug.reason_of(path) == "ImportError: cannot import name 'reshard' from 'jax.sharding'"
    assert ug.reason_of("Error: at/x/y") == "Error: at/x/y"  # no absolute path
    assert ug.reason_of("") == ""


def test_listing_keeps_reasons_that_fit_and_adds_the_roots_of_the_others() -> None:
    outcome = _outcome(
        {_item(2): "failed", _item(4): "failed", _item(6): "failed"},
        {
            _item(2): "AttributeError: nnx.view needs flax 0.12.0 or newer (flax 0.11.2)",
            _item(4): "NameError: name 'v' is not defined",
            _item(6): "KeyError: 'sharding'",
        },
        {_item(2): _item(2), _item(4): _item(2), _item(6): _item(6)},
    )
    listed = {_item(6): "sharding", _item(8): "stale entry"}
    outcome.results[_item(8)] = "passed"
    comparison = ug.compare({_item(n) for n in (2, 4, 6, 8)}, outcome, listed)
    assert ug.listing(comparison, outcome) == {
        _item(2): "AttributeError: nnx.view needs flax 0.12.0 or newer",
        _item(4): "AttributeError: nnx.view needs flax 0.12.0 or newer",
        _item(6): "sharding",
    }
    # what is written is read back as the same listing, and accounts for every failure
    relisted = ug.listing(comparison, outcome)
    assert ug.compare({_item(n) for n in (2, 4, 6, 8)}, outcome, relisted).holds


def test_write_listed_is_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ug, "LISTS", tmp_path)
    listed = {_item(2): "needs flax 0.12.0", _item(4): "has no attribute 'view'"}
    ug.write_listed("0.11.2", listed)
    path = tmp_path / "listed-0.11.txt"
    assert path == ug.listed_file("0.11.2")
    assert ug.read_listed(path.read_text()) == listed


_ITEM = re.compile(r"^docs_nnx/[\w/]+\.ipynb:cell [1-9]\d*$")


def test_the_checked_in_lists_are_well_formed() -> None:
    passes = upstream_suite.read_listing(ug.passes_file())
    assert passes, "no natively passing cells"
    assert all(_ITEM.match(item) for item in passes), "an item is not `notebook:cell N`"
    for path in sorted(ug.LISTS.glob("listed-*.txt")):
        listed = ug.read_listed(path.read_text())
        for key in listed:
            # each key names natively passing cells: any other would always be stale
            assert fnmatch.filter(passes, key), f"{path.name}: {key} names no natively passing cell"


def test_regenerate_needs_the_guides_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upstream_suite, "flax_version", lambda: "0.11.2")
    with pytest.raises(SystemExit, match=r"--regenerate runs on flax 0\.12\.8; flax 0\.11\.2"):
        ug.main(["--work", str(tmp_path), "--regenerate"])
    with pytest.raises(SystemExit, match="run every notebook"):
        ug.main(["--work", str(tmp_path), "--write-listed", "--notebook", "*/view.ipynb"])
    assert not list(tmp_path.iterdir())  # refused before any download
