"""``nnx-compat report``: the page's structure, read back with :mod:`html.parser`."""

from __future__ import annotations

import dataclasses
import html.parser
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nnx_compat import _patterns
from nnx_compat.cli import main, report
from nnx_compat.cli._discover import UsageError
from nnx_compat.cli.patterns import _check, _migrate
from tests.cli.report_sample import (
    baseline,
    notebook,
    runtime_report,
    write_sample,
)

pytest_plugins = ("pytester",)

#: Elements that have no end tag in HTML.
_VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "wbr", "col", "source"})
_BLOCKS = frozenset({"div", "p", "li", "tr", "td", "th"})


@dataclasses.dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = dataclasses.field(default_factory=list)

    def text(self) -> str:
        """The text, a block element's apart from its neighbours'."""
        return "".join(
            c if isinstance(c, str) else f" {c.text()} " if c.tag in _BLOCKS else c.text()
            for c in self.children
        )

    def all(self, tag: str, **attrs: str) -> list[Node]:
        """The descendants with this tag and these attribute values (``class_`` for class)."""
        found = []
        for child in self.children:
            if isinstance(child, str):
                continue
            wanted = {k.rstrip("_"): v for k, v in attrs.items()}
            if child.tag == tag and all(
                v in child.attrs.get(k, "").split() if k == "class" else child.attrs.get(k) == v
                for k, v in wanted.items()
            ):
                found.append(child)
            found += child.all(tag, **attrs)
        return found

    def one(self, tag: str, **attrs: str) -> Node:
        (found,) = self.all(tag, **attrs)
        return found

    def cells(self) -> list[str]:
        return [" ".join(td.text().split()) for td in self.all("td")]


class _Parser(html.parser.HTMLParser):
    """A tree of the page; fails on an end tag that closes another element than the open one."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(text: str) -> Node:
    parser = _Parser()
    parser.feed(text)
    parser.close()
    assert parser.stack == [parser.root], "unclosed elements"
    return parser.root


def _rows(page: Node, table: str) -> dict[str, list[str]]:
    """The rows of a table of the page, by their first cell."""
    rows = page.one("table", id=table).one("tbody").all("tr")
    return {row.cells()[0]: row.cells() for row in rows}


@pytest.fixture
def sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Node:
    data = write_sample(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01 00:00 UTC
    assert main([*data.args, "-o", "out/report.html"]) == 0
    return parse((tmp_path / "out" / "report.html").read_text(encoding="utf-8"))


def test_every_pattern_of_the_run_with_its_forms_release_columns_and_docs_link(
    sample: Node, tmp_path: Path
) -> None:
    expected = write_sample(tmp_path / "again").patterns
    rows = sample.one("table", id="patterns").one("tbody").all("tr")
    assert {row.attrs["id"] for row in rows} == {f"pattern-{p}" for p in expected}
    for row in rows:
        record = _patterns.get(row.attrs["id"].removeprefix("pattern-"))
        cells = row.cells()
        assert cells[0] == f"{record.id} {record.family}"
        columns = [record.legacy, record.new, record.changed_in, _check(record), _migrate(record)]
        assert cells[1:6] == columns
        assert row.all("a")[0].attrs["href"] == f"docs/patterns.html#{record.id}"
    assert "generated 2026-01-01 00:00 UTC" in sample.text()


def test_a_site_found_by_check_and_run_by_the_tests_counts_once(sample: Node) -> None:
    rows = _rows(sample, "patterns")
    # id, legacy, new, release, check, migrate, call sites, in source, at run time, hits, files
    assert rows["optimizer-wrt-default optimizer"][6:] == ["2", "2", "1", "1", "2"]
    assert rows["optimizer-update-grads optimizer"][6:] == ["1", "1", "1", "40", "1"]
    assert rows["variable-value variable"][6:] == ["1", "1", "1", "120", "1"]
    assert rows["checkpoint-shared-rngs checkpoint"][6:] == ["1", "0", "1", "2", "1"]
    assert rows["dropout-positional layers"][6:] == ["1", "1", "0", "0", "1"]
    cards = " ".join(sample.one("div", class_="cards").text().split())
    assert cards == (
        "9 legacy call sites 8 patterns 5 files 8 found by check 4 seen at run time "
        "1 at run time only 8 migrate rewrites"
    )


def test_per_file_counts(sample: Node, tmp_path: Path) -> None:
    expected = write_sample(tmp_path / "again").files
    rows = _rows(sample, "files")
    assert {file: tuple(int(n) for n in cells[1:4]) for file, cells in rows.items()} == expected
    assert rows["src/model/train.py"][4] == (
        "optimizer-update-grads, optimizer-wrt-default, rngs-fork-splits"
    )
    details = {
        d.one("summary").one("code").text(): [r.cells() for r in d.all("tr", class_="site")]
        for d in sample.all("details")
        if d.all("tr", class_="site")
    }
    assert details["src/model/train.py"][1][:4] == [
        "15",
        "optimizer-update-grads",
        "check and run time",
        "40",
    ]
    assert details["src/model/restore.py"][0][2] == "run time only"
    assert details["notebooks/explore.ipynb"][0][:3] == [
        "cell 1, line 3",
        "isinstance-object",
        "check",
    ]


def test_the_chart_has_one_point_per_baseline_and_axis_labels(sample: Node) -> None:
    svg = sample.one("svg", id="history-chart")
    totals = svg.all("circle", **{"data-series": "total"})
    assert len(totals) == 4
    ys = [float(c.attrs["cy"]) for c in totals]
    assert ys == sorted(ys) and ys[0] < ys[-1]  # fewer call sites: lower on the chart
    assert [c.one("title").text() for c in totals] == [
        "baseline-1.json: total, 41 call sites",
        "baseline-2.json: total, 24 call sites",
        "baseline-3.json: total, 12 call sites",
        "baseline-4.json: total, 4 call sites",
    ]
    labels = {t.text() for t in svg.all("text", class_="axis-label")}
    assert labels == {"baseline", "legacy call sites"}
    series = {p.attrs["data-series"] for p in svg.all("polyline")}
    assert series == {"total", "optimizer", "rngs", "checkpoint", "pytree", "variable"}
    for line in svg.all("polyline"):
        assert len(line.attrs["points"].split()) == 4


def test_the_page_is_self_contained(sample: Node) -> None:
    assert not sample.all("script") and not sample.all("link") and not sample.all("img")
    for tag in ("a", "svg", "style"):
        for node in sample.all(tag):
            assert "src" not in node.attrs
    hrefs = [a.attrs["href"] for a in sample.all("a")]
    assert hrefs and all(h.startswith(("#", "docs/patterns.html#")) for h in hrefs)
    assert "@import" not in sample.one("style").text() and "url(" not in sample.one("style").text()


def _git(repo: Path, *args: str, date: str = "") -> None:
    env = os.environ | {
        "GIT_AUTHOR_NAME": "a",
        "GIT_AUTHOR_EMAIL": "a@example.com",
        "GIT_COMMITTER_NAME": "a",
        "GIT_COMMITTER_EMAIL": "a@example.com",
    }
    if date:
        env |= {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def test_baseline_history_reads_every_committed_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    (repo / "ci").mkdir(parents=True)
    _git(repo, "init", "-q")
    path = repo / "ci" / "legacy.json"
    history = [
        ("2026-03-01T10:00:00+00:00", baseline({"variable-value": {"a.py": 5}})),
        (
            "2026-03-05T10:00:00+00:00",
            baseline({"variable-value": {"a.py": 3}, "rngs-fork-splits": {"b": 2}}),
        ),
        ("2026-03-09T10:00:00+00:00", "not a baseline"),
        ("2026-03-20T10:00:00+00:00", baseline({"variable-value": {"a.py": 1}})),
    ]
    for date, text in history:
        path.write_text(text)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", "baseline", date=date)
    # renamed (followed), to a name git would quote
    _git(repo, "mv", "ci/legacy.json", "ci/baseline é.json")
    _git(repo, "commit", "-q", "-m", "renamed", date="2026-03-25T10:00:00+00:00")
    path = repo / "ci" / "baseline é.json"
    path.write_text(baseline({}))
    _git(repo, "commit", "-q", "-am", "all migrated", date="2026-04-01T10:00:00+00:00")
    out = tmp_path / "report.html"
    assert main(["report", "--baseline-history", str(path), "-o", str(out)]) == 0
    assert "skipped " in capsys.readouterr().err  # the version that was not a baseline
    svg = parse(out.read_text()).one("svg", id="history-chart")
    totals = svg.all("circle", **{"data-series": "total"})
    assert [c.one("title").text().split(": ", 1)[1] for c in totals] == [
        "total, 5 call sites",
        "total, 5 call sites",
        "total, 1 call site",
        "total, 1 call site",
        "total, 0 call sites",
    ]
    xs = [float(c.attrs["cx"]) for c in totals]
    # x by commit date: the gaps of 4 and 15 days
    assert xs == sorted(xs)
    assert (xs[2] - xs[1]) / (xs[1] - xs[0]) == pytest.approx(15 / 4, rel=1e-3)
    assert {t.text() for t in svg.all("text", class_="axis-label")} == {
        "commit date",
        "legacy call sites",
    }
    assert "2026-03-01" in svg.text() and "2026-04-01" in svg.text()
    with pytest.raises(UsageError, match="no committed version"):
        report.baseline_history(str(repo / "never-committed.json"))


def test_file_names_are_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    odd = "a<b>&\"c'.py"
    (tmp_path / odd).write_text("from flax import nnx\nopt = nnx.Optimizer(m, tx)\n")
    script = "<script>alert(1)</script>.py"
    (tmp_path / "run.json").write_text(
        runtime_report((("variable-value", script, 3, 1, ('t"<i>',)),))
    )
    (tmp_path / "b&<1>.json").write_text(baseline({"variable-value": {script: 1}}))
    args = ["report", odd, "--runtime", "run.json", "--baseline", "b&<1>.json"]
    assert main([*args, "--docs-url", 'x.html?a=1&b="2"#{id}']) == 0
    text = (tmp_path / "nnx-compat-report.html").read_text()
    assert "<script" not in text and "<i>" not in text and "<b>" not in text
    page = parse(text)
    assert set(_rows(page, "files")) == {odd, script}
    assert page.one("a", href='x.html?a=1&b="2"#variable-value')
    assert 't"<i>' in page.text()
    assert "b&<1>.json: total, 1 call site" in page.one("svg").text()


def test_a_notebook_and_a_pattern_this_version_does_not_know(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nb.ipynb").write_text(notebook("from flax import nnx\nnnx.Optimizer(m, tx)\n"))
    data = {
        "patterns": [
            {
                "id": "from-a-newer-release",
                "legacy": "old()",
                "new": "new()",
                "changed_in": "0.13.0",
                "count": 1,
                "sites": [{"pattern": "x", "file": "nb.py", "line": 1, "count": 1, "tests": []}],
            }
        ]
    }
    (tmp_path / "run.json").write_text(json.dumps(data))
    assert main(["report", "nb.ipynb", "--runtime", "run.json"]) == 0
    rows = _rows(parse((tmp_path / "nnx-compat-report.html").read_text()), "patterns")
    assert rows["from-a-newer-release not in this version's table"][1:6] == [
        "old()",
        "new()",
        "0.13.0",
        "?",
        "?",
    ]
    assert rows["optimizer-wrt-default optimizer"][6:9] == ["1", "1", "0"]


def test_a_clean_tree_and_a_check_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "new.py").write_text(
        "from flax import nnx\nopt = nnx.Optimizer(m, tx, wrt=nnx.Param)\n"
    )
    assert main(["report", "."]) == 0
    page = parse((tmp_path / "nnx-compat-report.html").read_text())
    assert page.one("p", class_="empty").text() == "No legacy call site: nothing left to migrate."
    assert not page.all("table") and not page.all("svg")
    assert "0 legacy call sites" in " ".join(page.one("div", class_="cards").text().split())
    (tmp_path / "old.py").write_text("from flax import nnx\nopt = nnx.Optimizer(m, tx)\n")
    assert main(["report", "."]) == 0
    page = parse((tmp_path / "nnx-compat-report.html").read_text())
    head = [" ".join(th.text().split()) for th in page.one("table", id="patterns").all("th")]
    assert head[6:] == ["call sites", "in source", "files"]  # no run-time report: no such column
    assert _rows(page, "patterns")["optimizer-wrt-default optimizer"][6:] == ["1", "1", "1"]
    assert page.one("tr", class_="site").cells() == ["2", "optimizer-wrt-default", "check"]


def test_the_baseline_format_is_the_plugins() -> None:
    from nnx_compat import pytest_plugin

    assert report._BASELINE_FORMAT == pytest_plugin.BASELINE_FORMAT
    counts = {"variable-value": {"a.py": 2}}
    assert report.read_baseline(pytest_plugin._dump_baseline(counts)) == counts


def test_paths_are_shown_relative_to_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_sample(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "page.html"
    args = ["report", "../src", "--runtime", "../legacy.json", "--root", "..", "-o", str(out)]
    assert main(args) == 0
    rows = _rows(parse(out.read_text()), "files")
    assert rows["src/model/train.py"][1:4] == ["3", "3", "1"]  # check's and pytest's names meet


def test_the_page_is_written_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_sample(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = ["report", "src", "--runtime", "legacy.json"]
    out = tmp_path / "nnx-compat-report.html"
    old_umask = os.umask(0o027)
    try:
        assert main(args) == 0
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # a new page: the umask's mode
    out.write_text("the old page")
    out.chmod(0o604)
    inode = out.stat().st_ino

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    assert main(args) == 2
    assert "cannot write nnx-compat-report.html: No space left on device" in capsys.readouterr().err
    assert out.read_text() == "the old page"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert main(args) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert out.stat().st_ino != inode  # a new file renamed over the old one
    assert stat.S_IMODE(out.stat().st_mode) == 0o604  # its mode kept
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    link = tmp_path / "link.html"
    link.symlink_to(out)
    assert main([*args, "-o", str(link)]) == 0
    assert link.is_symlink()  # written through the link
    nested = tmp_path / "reports" / "today" / "page.html"
    assert main([*args, "-o", str(nested)]) == 0 and nested.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to report on: give PATHs to check, --runtime, --baseline or"),
        (["missing.py"], "missing.py"),
        (
            ["--runtime", "missing.json"],
            "cannot read the run-time report missing.json (No such file",
        ),
        (["--runtime", "bad.json"], "cannot read the run-time report bad.json (Expecting value"),
        (["--runtime", "baseline.json"], "not a run-time report of the pytest plugin"),
        (["--baseline", "report.json"], "cannot read the baseline report.json (not a baseline"),
        (["--baseline", "missing.json"], "cannot read the baseline missing.json (No such file"),
        (["--baseline-history", "baseline.json"], "git rev-parse: fatal: not a git repository"),
        (["--runtime", "report.json", "--root", "nowhere"], "--root nowhere: not a directory"),
        (["--runtime", "report.json", "-o", "baseline.json/page.html"], "cannot write"),
    ],
)
def test_usage_errors(
    args: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    (tmp_path / "bad.json").write_text("not JSON")
    (tmp_path / "baseline.json").write_text(baseline({"variable-value": {"a.py": 1}}))
    (tmp_path / "report.json").write_text(runtime_report((("variable-value", "a.py", 1, 1, ()),)))
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nnx-compat report: ") and message in err, err
    assert not (tmp_path / "nnx-compat-report.html").exists()


def test_help_in_plain_words_with_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "exit status:\n  0  the page was written" in text and "\n  2  usage error" in text
    flat = " ".join(text.split())
    for option in ("--runtime FILE", "--baseline FILE", "--baseline-history PATH", "--docs-url"):
        assert option in flat
    assert "-o FILE, --output FILE" in flat and "default: nnx-compat-report.html" in flat
    assert "``" not in text and ":func:" not in text


def test_each_docs_link_has_its_anchor_in_the_docs_table() -> None:
    from tools import docs

    table = docs.generated("patterns")
    for record in _patterns.PATTERNS:
        link = report._docs_link(report.DEFAULT_DOCS_URL, record.id)
        assert link == f"docs/patterns.html#{record.id}"
        assert table.count(f'<span id="{record.id}"></span>`{record.id}`') == 1, record.id
    assert '<span id="' not in docs.generated("patterns").split("\n")[0]


def test_the_command_imports_neither_flax_nor_jax_nor_libcst(tmp_path: Path) -> None:
    args = write_sample(tmp_path).args
    code = (
        "import sys\n"
        "from nnx_compat.cli import main\n"
        f"assert main({args!r}) == 0\n"
        "print(sorted(m for m in ('flax', 'jax', 'libcst') if m in sys.modules))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "[]"
    assert (tmp_path / "nnx-compat-report.html").exists()


def test_the_pytest_plugin_writes_the_page_and_report_reads_its_json(
    pytester: pytest.Pytester,
) -> None:
    # warn_legacy is what every shim calls: the session needs no flax
    pytester.makepyfile(
        legacy=textwrap.dedent(
            """\
            from nnx_compat._warnings import warn_legacy


            def update():
                warn_legacy("optimizer-update-grads")
            """
        ),
        test_a="from legacy import update\n\ndef test_one():\n    update()\n    update()\n",
    )
    pytester.makeini("[pytest]\npythonpath = .\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--nnx-compat-report=out/page.HTML"
    )
    result.assert_outcomes(passed=1)
    page = parse((pytester.path / "out" / "page.HTML").read_text())
    # call sites, at run time, run-time hits, files: no check, no "in source" column
    assert _rows(page, "patterns")["optimizer-update-grads optimizer"][6:] == ["1", "1", "2", "1"]
    assert "in source" not in page.one("table", id="patterns").one("thead").text()
    cards = " ".join(page.one("div", class_="cards").text().split())
    assert "1 seen at run time" in cards and "run time only" not in cards
    site = page.one("tr", class_="site").cells()
    assert site == ["5", "optimizer-update-grads", "run time", "2", "test_a.py::test_one"]
    assert not page.all("svg")  # no baseline, no chart
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE((pytester.path / "out" / "page.HTML").stat().st_mode)
    assert mode == 0o666 & ~umask  # a page to share: the mode any new file gets
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--nnx-compat-report=run.json")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(pytester.path)
        assert main(["report", "legacy.py", "--runtime", "run.json", "-o", "page.html"]) == 0
    rows = _rows(parse((pytester.path / "page.html").read_text()), "files")
    assert rows["legacy.py"][1:4] == ["1", "0", "1"]
