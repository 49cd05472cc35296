"""``nnx-compat migrate`` on notebooks: a broken .ipynb, MyST .md notebooks, jupytext pairs,
cells rewritten as one module, the file's own JSON layout kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnx_compat.cli import main, migrate
from nnx_compat.codemod import notebooks
from tests.checker.test_notebooks import CELLS, LAYOUTS, MYST, _ipynb

# CELLS migrated for flax 0.12: the rewrites of the third and fourth cells need what the
# second and third bind
MIGRATED = [
    CELLS[0],
    CELLS[1].replace("self.count.value", "self.count[...]"),
    "model = Counter(nnx.Rngs(0))\n"
    "print(model.count[...])\n"
    "kernel = model.linear.kernel[...]\n"
    "optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)\n",
    "optimizer.update(model, grads)",
]
REWRITES = "1 optimizer-update-grads, 1 optimizer-wrt-default, 3 variable-value"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "a notebook is a JSON object, this is a list"),
        ('{"cells": "nope"}', '"cells" is a string, not a list'),
        ('{"cells": [1]}', "cell 1 is a number, not an object"),
        ('{"cells": [{"cell_type": "code", "source": {}}]}', "cell 1's source is an object"),
    ],
)
def test_a_broken_notebook_is_skipped_with_a_message(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.ipynb"
    path.write_text(text)
    assert main(["migrate", "--write", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and message in err and "Traceback" not in err
    assert path.read_text() == text
    with pytest.raises(ValueError, match=message):
        migrate.migrate_text(text, "x.ipynb", "0.12")


def test_a_code_cell_without_source_is_empty() -> None:
    text = '{"cells": [{"cell_type": "code"}, {"cell_type": "code", "source": []}]}'
    assert migrate.migrate_text(text, "x.ipynb", "0.12") == (text, {}, [])


def test_cells_are_rewritten_as_one_module() -> None:
    text = _ipynb([("markdown", "# Title"), *(("code", c) for c in CELLS)], indent=1)
    new, counts, manual = migrate.migrate_text(text, "x.ipynb", "0.12")
    cells = json.loads(new)["cells"]
    assert ["".join(c["source"]) for c in cells[1:]] == MIGRATED
    assert cells[0]["source"] == ["# Title"]
    assert dict(counts) == {
        "variable-value": 3,
        "optimizer-wrt-default": 1,
        "optimizer-update-grads": 1,
    }
    assert manual == []
    assert migrate.migrate_text(new, "x.ipynb", "0.12")[0] == new  # idempotent


def test_without_the_cell_boundaries_each_cell_is_rewritten_on_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = _ipynb([("code", c) for c in CELLS], indent=1)
    monkeypatch.setattr(notebooks, "_BOUNDARY", "# another comment {}")  # not found again
    new, counts, _ = migrate.migrate_text(text, "x.ipynb", "0.12")
    sources = ["".join(c["source"]) for c in json.loads(new)["cells"]]
    # cell by cell, the types bound in other cells are not known
    assert sources[1] == MIGRATED[1]
    assert sources[2] == CELLS[2].replace(
        ", optax.adam(1e-3))", ", optax.adam(1e-3), wrt=nnx.Param)"
    )
    assert sources[3] == CELLS[3]
    assert dict(counts) == {"variable-value": 1, "optimizer-wrt-default": 1}


def test_a_later_cell_may_import_from_future() -> None:
    future = "from __future__ import (\n    annotations,\n)\nd = nnx.Dropout(0.5, (0,))"
    cells = ["from flax import nnx", future, "e = nnx.Dropout(0.5, (0,))"]
    text = _ipynb([("code", c) for c in cells], indent=1)
    new, counts, manual = migrate.migrate_text(text, "x.ipynb", "0.12")
    sources = ["".join(c["source"]) for c in json.loads(new)["cells"]]
    assert sources == [c.replace("(0.5, (0,))", "(0.5, broadcast_dims=(0,))") for c in cells]
    assert (dict(counts), manual) == ({"dropout-positional": 2}, [])


def test_cells_that_are_not_python_or_do_not_parse_are_left_as_they_are() -> None:
    cells = [
        "from flax import nnx",
        "%%bash\necho nnx.Dropout(0.5, (0,))",
        "def f(:\n  nnx.Dropout(0.5, (0,))",
        "from __future__ import annotations\nd = nnx.Dropout(0.5, (0,))\n!ls",
    ]
    text = _ipynb([("code", c) for c in cells], indent=1)
    new, _, manual = migrate.migrate_text(text, "x.ipynb", "0.12")
    sources = ["".join(c["source"]) for c in json.loads(new)["cells"]]
    assert sources[:3] == cells[:3]
    assert sources[3] == cells[3].replace("(0.5, (0,))", "(0.5, broadcast_dims=(0,))")
    assert [m[:4] for m in manual] == [(3, 1, 7, "syntax-error")]


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_file_keeps_its_json_layout(
    layout: str, crlf: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def write(cells: list[str]) -> str:
        text = _ipynb([("code", c) for c in cells], **LAYOUTS[layout])
        return text.replace("\n", "\r\n") if crlf else text

    accented = [
        c.replace("print(model.count.value)", "print(model.count.value, 'é')") for c in CELLS
    ]
    path = tmp_path / "x.ipynb"
    path.write_bytes(write(accented).encode())
    assert main(["migrate", "--write", str(path)]) == 0
    expected = [
        c.replace("print(model.count[...])", "print(model.count[...], 'é')") for c in MIGRATED
    ]
    assert path.read_bytes().decode() == write(expected)
    assert REWRITES in capsys.readouterr().err


def test_a_myst_notebook_changes_in_its_code_cells_only(tmp_path: Path) -> None:
    path = tmp_path / "train.md"
    path.write_text(MYST)
    assert main(["migrate", "--write", str(path)]) == 0
    code = "d = nnx.Dropout(0.5, (0,))\n```\n~~~{code-cell} ipython3\ne = nnx.Dropout(0.5, (0,))\n"
    assert path.read_text() == MYST.replace(
        code, code.replace("(0.5, (0,))", "(0.5, broadcast_dims=(0,))")
    )


def test_myst_manual_items_name_the_file_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        "# Title\n\n```{code-cell}\nfrom flax import nnx\n```\n\n```{code-cell}\n"
        "def step(optimizer: nnx.Optimizer, grads):\n    optimizer.update(grads)\n```\n"
    )
    new, _, manual = migrate.migrate_text(text, "x.md", "0.12")
    assert new == text
    assert [m[:4] for m in manual] == [(None, 9, 5, "optimizer-update-grads")]
    assert migrate.migrate_text("# notes\n```python\nnnx.Optimizer(m, tx)\n```\n", "n.md", "0.12")[
        1:
    ] == ({}, [])


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    cells = [("markdown", "# Title"), *(("code", c) for c in CELLS)]
    ipynb = tmp_path / "train.ipynb"
    ipynb.write_text(_ipynb(cells, indent=1))
    md = tmp_path / "train.md"
    md.write_text(
        "---\njupytext:\n  formats: ipynb,md:myst\n---\n\n"
        + "\n".join(
            f"```{{code-cell}} ipython3\n{source}\n```\n" if kind == "code" else source + "\n"
            for kind, source in cells
        )
    )
    return ipynb, md


@pytest.mark.parametrize("name", ["train.ipynb", "train.md", "."])
def test_both_files_of_a_pair_are_migrated_together(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ipynb, md = _pair(tmp_path)
    assert main(["migrate", "--write", str(tmp_path / name)]) == 0
    err = capsys.readouterr().err
    assert "2 to change (2 written)" in err
    cells = [c for c in json.loads(ipynb.read_text())["cells"] if c["cell_type"] == "code"]
    assert ["".join(c["source"]) for c in cells] == MIGRATED
    from nnx_compat.checker.notebooks import code_cells

    assert [c.source for c in code_cells(md.read_text(), str(md))] == MIGRATED


def test_a_missing_partner_leaves_one_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ipynb, md = _pair(tmp_path)
    md.unlink()
    assert main(["migrate", "--write", str(ipynb)]) == 0
    assert "1 to change" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.ipynb"]
    cells = [c for c in json.loads(ipynb.read_text())["cells"] if c["cell_type"] == "code"]
    assert ["".join(c["source"]) for c in cells] == MIGRATED
