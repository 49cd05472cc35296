"""Notebooks in ``nnx-compat check``: a broken .ipynb, MyST .md notebooks, cells checked as one
module, findings in cell order at the file's own lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnx_compat.checker import Finding, check_notebook, check_source, notebook_cells
from nnx_compat.checker import notebooks as nb
from nnx_compat.cli import main

# the same code as a script and as the cells of a notebook: the second cell's Variable subclass
# and the third cell's optimizer are known in the cells after them
CELLS = [
    "%matplotlib inline\nfrom flax import nnx\nimport optax\n",
    "class Count(nnx.Variable):\n"
    "  pass\n"
    "\n"
    "class Counter(nnx.Module):\n"
    "  def __init__(self, rngs):\n"
    "    self.count = Count(0)\n"
    "    self.linear = nnx.Linear(2, 3, rngs=rngs)\n"
    "\n"
    "  def __call__(self, x):\n"
    "    self.count.value += 1\n"
    "    return self.linear(x)\n",
    "model = Counter(nnx.Rngs(0))\n"
    "print(model.count.value)\n"
    "kernel = model.linear.kernel.value\n"
    "optimizer = nnx.Optimizer(model, optax.adam(1e-3))\n",
    "optimizer.update(grads)",
]


def _ipynb(cells: list[tuple[str, str]], **dumps: object) -> str:
    notebook = {
        "cells": [
            {"cell_type": kind, "metadata": {}, "source": source.splitlines(keepends=True)}
            | ({"execution_count": None, "outputs": []} if kind == "code" else {})
            for kind, source in cells
        ],
        "metadata": {"jupytext": {"formats": "ipynb,md:myst"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(notebook, **dumps) + "\n"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "a notebook is a JSON object, this is a list"),
        ('{"cells": "nope"}', '"cells" is a string, not a list'),
        ("{}", 'no "cells" list'),
        ('{"worksheets": [], "nbformat": 3}', "an nbformat 3 notebook"),
        ('{"cells": [1]}', "cell 1 is a number, not an object"),
        ('{"cells": [{"source": "x"}]}', "cell 1 has no cell_type"),
        (
            '{"cells": [{"cell_type": "code", "source": 5}]}',
            "cell 1's source is a number, not a string or a list of strings",
        ),
        (
            '{"cells": [{"cell_type": "markdown", "source": []}, '
            '{"cell_type": "code", "source": ["x = 1\\n", null]}]}',
            "cell 2's source is a list, not a string or a list of strings",
        ),
        ("{not json", "not JSON"),
    ],
)
def test_a_broken_notebook_is_a_value_error_naming_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        nb.load_ipynb(text)
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        check_notebook(text, "x.ipynb")
    with pytest.raises(ValueError):
        notebook_cells(text)


def test_check_reports_a_broken_notebook_as_one_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x.ipynb").write_text("[]")
    assert main(["check", str(tmp_path / "x.ipynb")]) == 1
    out = capsys.readouterr().out
    assert "a notebook is a JSON object, this is a list" in out
    assert "Traceback" not in out


def test_types_cross_cells_as_in_the_script() -> None:
    script = check_source("\n".join(CELLS).replace("%matplotlib inline", ""), "train.py")
    found = check_notebook(_ipynb([("code", c) for c in CELLS]), "train.ipynb")
    assert len(script) == len(found) == 5
    assert [f.pattern for f in found] == [f.pattern for f in script]
    assert [(f.cell, f.line) for f in found] == [(2, 10), (3, 2), (3, 3), (3, 4), (4, 1)]


def test_findings_sort_by_cell_before_line() -> None:
    text = _ipynb(
        [
            ("code", "from flax import nnx\n\n\n\nd = nnx.Dropout(0.5, (0,))"),
            ("code", "e = nnx.Dropout(0.5, (0,))"),
        ]
    )
    found = check_notebook(text, "x.ipynb")
    assert [(f.cell, f.line) for f in found] == [(1, 5), (2, 1)]
    assert sorted(reversed(found)) == found
    # a script's findings still sort by line
    a, b = Finding("a.py", 2, 1, "x"), Finding("a.py", 10, 1, "x")
    assert sorted([b, a]) == [a, b] and a < b and b > a and a <= a


def test_a_cell_that_does_not_parse_is_reported_and_left_out() -> None:
    text = _ipynb(
        [
            ("code", "from flax import nnx"),
            ("code", "def f(:\n  pass"),
            ("code", "%%bash\necho nnx.Dropout(0.5, (0,))"),
            ("code", "from __future__ import annotations\nd = nnx.Dropout(0.5, (0,))"),
            ("code", "x = 1\ny = '\0'"),  # a null byte
        ]
    )
    found = check_notebook(text, "x.ipynb")
    assert [(f.cell, f.pattern) for f in found] == [
        (2, "syntax-error"),
        (4, "dropout-positional"),
        (5, "syntax-error"),  # at line 1 (Python 3.11) or 2 (3.12+)
    ]
    assert [f.line for f in found[:2]] == [1, 2]
    found = check_notebook(text, "x.ipynb", ignore=["syntax-error"])
    assert [(f.cell, f.line, f.pattern) for f in found] == [(4, 2, "dropout-positional")]


def test_a_later_cell_may_import_from_future() -> None:
    future = "from __future__ import (\n    annotations,\n)\nd = nnx.Dropout(0.5, (0,))"
    text = _ipynb(
        [("code", "from flax import nnx"), ("code", future), ("code", "e = nnx.Dropout(0.5, (0,))")]
    )
    found = check_notebook(text, "x.ipynb")
    assert [(f.cell, f.line, f.pattern) for f in found] == [
        (2, 4, "dropout-positional"),
        (3, 1, "dropout-positional"),
    ]


def test_ipython_syntax_is_hidden_only_where_a_statement_starts() -> None:
    source = (
        "!pip install flax\n"
        "files = !ls\n"
        "t = %timeit -o f()\n"
        "nnx.Dropout?\n"
        "msg = ('%d items'\n"
        "       % n)\n"
        'doc = """\n'
        "!not a shell line\n"
        '"""\n'
        "if True:\n"
        "    %time f()\n"
        "x = 1  # why? \\\n"
        "!ls\n"
    )
    assert nb.magic_lines(source) == [0, 1, 2, 3, 10, 12]
    assert nb.is_python("%%time\nx = 1") and not nb.is_python("%%bash\nls")
    assert notebook_cells(_ipynb([("code", source)])) == [
        (
            1,
            "pass\npass\npass\npass\nmsg = ('%d items'\n       % n)\n"
            'doc = """\n!not a shell line\n"""\nif True:\n    pass\nx = 1  # why? \\\npass\n',
        )
    ]


MYST = """\
---
jupytext:
  formats: ipynb,md:myst
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  name: python3
---

# Training

Prose that names `nnx.Dropout(0.5, (0,))` is not code.

```python
# a code block in the prose, not a cell
d = nnx.Dropout(0.5, (0,))
```

````{code-cell} ipython3
:tags: [hide-output]

%matplotlib inline
from flax import nnx
fence = '''
```
+++
'''
````

<!--
```{code-cell}
d = nnx.Dropout(0.5, (0,))
```
-->

+++ {"tags": ["note"]}

More prose.

```{code-cell} ipython3
---
tags: [skip-execution]
other:
  nested: true
---
x = 1
d = nnx.Dropout(0.5, (0,))
```
~~~{code-cell} ipython3
e = nnx.Dropout(0.5, (0,))
~~~
"""


def test_myst_code_cells_are_read_as_jupytext_reads_them() -> None:
    cells = nb.code_cells(MYST, "train.md")
    # 1 markdown (title, prose, code block), 2 code, 3 markdown (comment), 4 markdown
    # (after +++), 5 code, 6 code
    assert [c.number for c in cells] == [2, 5, 6]
    assert cells[0].source == "%matplotlib inline\nfrom flax import nnx\nfence = '''\n```\n+++\n'''"
    assert cells[1].source == "x = 1\nd = nnx.Dropout(0.5, (0,))"
    lines = MYST.splitlines()
    assert lines[cells[1].lines[1] - 1] == "d = nnx.Dropout(0.5, (0,))"
    assert lines[cells[2].lines[0] - 1] == "e = nnx.Dropout(0.5, (0,))"
    assert MYST[cells[1].span[0] : cells[1].span[1]] == "x = 1\nd = nnx.Dropout(0.5, (0,))\n"
    assert nb.is_myst_notebook(MYST) and not nb.is_myst_notebook("# notes\n```python\n```\n")


def test_myst_findings_name_the_file_line_and_the_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    found = check_notebook(MYST, "train.md")
    lines = MYST.splitlines()
    assert [(f.cell, f.line, f.pattern) for f in found] == [
        (5, lines.index("x = 1") + 2, "dropout-positional"),
        (6, lines.index("e = nnx.Dropout(0.5, (0,))") + 1, "dropout-positional"),
    ]
    path = tmp_path / "train.md"
    path.write_text(MYST)
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}:{found[0].line}:5: nnx-compat[dropout-positional] ")
    assert out[0].endswith("(flax 0.11.0) (cell 5)")
    assert main(["check", str(path), "--format", "github"]) == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"::warning file={path},line={found[0].line},col=5,")


def test_a_myst_notebook_and_its_ipynb_give_the_same_findings() -> None:
    cells = [("markdown", "# Title"), *(("code", c) for c in CELLS)]
    ipynb = check_notebook(_ipynb(cells), "train.ipynb")
    md = "\n".join(
        f"```{{code-cell}} ipython3\n{source}\n```\n" if kind == "code" else source + "\n"
        for kind, source in cells
    )
    myst = check_notebook(md, "train.md")
    code = {c.number: c for c in nb.code_cells(md, "train.md")}
    assert [(f.cell, f.line, f.column, f.pattern) for f in ipynb] == [
        (f.cell, code[f.cell].lines.index(f.line) + 1, f.column, f.pattern)  # type: ignore[index]
        for f in myst
    ]


@pytest.mark.parametrize(
    "dumps",
    [{"indent": 1, "sort_keys": True, "ensure_ascii": False}, {"indent": 2}, {}],
    ids=["nbformat", "indent-2", "compact"],
)
def test_a_notebook_finding_knows_its_json_line(
    dumps: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _ipynb([("code", c) for c in CELLS], **dumps)
    found = check_notebook(text, "x.ipynb")
    last = found[-1]
    assert (last.cell, last.line, last.pattern) == (4, 1, "optimizer-update-grads")
    expected = next(i for i, line in enumerate(text.split("\n"), 1) if "optimizer.update(" in line)
    assert last.file_line == last.text_line == expected
    assert last.where == "x.ipynb:cell 4:line 1:1"  # as Jupyter shows it
    assert last.as_dict()["file_line"] == expected
    path = tmp_path / "x.ipynb"
    path.write_text(text)
    main(["check", str(path), "--format", "github"])
    annotation = capsys.readouterr().out.splitlines()[-1]
    assert annotation.startswith(f"::warning file={path},line={expected},col=1,")


def test_a_source_given_as_one_string_is_on_one_json_line() -> None:
    notebook = {
        "cells": [
            {"cell_type": "code", "source": "from flax import nnx\nd = nnx.Dropout(0.5, (0,))"}
        ]
    }
    text = json.dumps(notebook, indent=1)
    (finding,) = check_notebook(text, "x.ipynb")
    assert (finding.line, finding.file_line) == (2, 5)


def test_paired_files(tmp_path: Path) -> None:
    ipynb = tmp_path / "train.ipynb"
    ipynb.write_text(_ipynb([("code", "x = 1")]))
    assert nb.paired_files(ipynb) == [ipynb]  # the partner is missing
    md = tmp_path / "train.md"
    md.write_text(MYST)
    assert nb.paired_files(ipynb) == [ipynb, md]
    assert nb.paired_files(md) == [md, ipynb]
    script = tmp_path / "train.pct.py"
    script.write_text(
        "# ---\n# jupyter:\n#   jupytext:\n#     formats: ipynb,.pct.py:percent\n# ---\nx = 1\n"
    )
    assert nb.paired_files(script) == [script, ipynb]
    (tmp_path / "plain.md").write_text("---\njupytext:\n  formats: ipynb,md\n---\n")
    assert nb.paired_files(tmp_path / "plain.md") == [tmp_path / "plain.md"]
    (tmp_path / "broken.ipynb").write_text("[]")
    assert nb.paired_files(tmp_path / "broken.ipynb") == [tmp_path / "broken.ipynb"]


LAYOUTS = {
    "nbformat": {"indent": 1, "sort_keys": True, "ensure_ascii": False},
    "indent-2": {"indent": 2},
    "tabs": {"indent": "\t", "ensure_ascii": False},
    "compact": {},
    "tight": {"separators": (",", ":")},
}


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_replaced_sources_keep_the_file_layout(layout: str, crlf: bool) -> None:
    """Only the changed cells' sources change, written as the file's writer writes them (the
    file, written again whole by the same writer, is what comes out)."""
    old = [("code", "a = 1\nb = 2\n"), ("markdown", "# x"), ("code", "c = 'é'\nd = 4")]
    old += [("code", ""), ("code", "one")]
    new = [("code", "a = 1\nb = 3\n"), ("markdown", "# x"), ("code", "c = 'é'\nd = 5")]
    new += [("code", "e = 1\nf = 2"), ("code", "one\ntwo")]

    def write(cells: list[tuple[str, str]]) -> str:
        text = _ipynb(cells, **LAYOUTS[layout])
        return text.replace("\n", "\r\n") if crlf else text

    sources = {1: new[0][1], 3: new[2][1], 4: new[3][1], 5: new[4][1]}
    assert nb.replace_sources(write(old), "x.ipynb", sources) == write(new)
    assert nb.replace_sources(write(old), "x.ipynb", {}) == write(old)


def test_a_source_kept_as_one_string_stays_one() -> None:
    def write(source: str) -> str:
        cells = [{"cell_type": "code", "metadata": {}, "source": source}]
        return json.dumps({"cells": cells, "metadata": {}}, indent=1)

    assert nb.replace_sources(write("a = 1\nb = 2"), "x.ipynb", {1: "a = 1\nb = 3"}) == write(
        "a = 1\nb = 3"
    )


def test_replaced_myst_code_keeps_everything_else() -> None:
    cells = nb.code_cells(MYST, "x.md")
    new = nb.replace_sources(MYST, "x.md", {5: "x = 2\ny = 3", 6: "e = 1"})
    assert new == MYST.replace("x = 1\nd = nnx.Dropout(0.5, (0,))\n", "x = 2\ny = 3\n").replace(
        "e = nnx.Dropout(0.5, (0,))\n~~~", "e = 1\n~~~"
    )
    crlf = MYST.replace("\n", "\r\n")
    assert nb.replace_sources(crlf, "x.md", {5: "x = 2\ny = 3", 6: "e = 1"}) == new.replace(
        "\n", "\r\n"
    )
    assert [c.source for c in nb.code_cells(crlf, "x.md")] == [c.source for c in cells]
