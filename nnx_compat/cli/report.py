"""``nnx-compat report``: where an upgrade stands, as one self-contained HTML page.

The page merges what ``nnx-compat check`` finds in the source (the PATHs) with what the pytest
plugin saw at run time (``--runtime``: the files ``pytest --nnx-compat-report=FILE.json``
writes), per pattern and per file. For each pattern it gives the legacy and the new form, the
flax release that changed it, what ``check`` and ``migrate`` do with it (the columns of
``nnx-compat patterns --markdown``) and a link to its documentation; and it plots the legacy call
sites of earlier baselines (``--baseline``: the plugin's baseline files, or
``--baseline-history``: every committed version of one). Style and chart are inline (CSS and
SVG, no script), so the page opens from a file. A call site found in the source and run by the
tests counts once.

Exit status: 0 the page was written, 2 usage error.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import html
import json
import os
import stat
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from nnx_compat import _patterns
from nnx_compat.checker import ERROR_IDS, TARGETS, Finding
from nnx_compat.cli import _charts, _discover
from nnx_compat.cli._discover import UsageError
from nnx_compat.cli._style import EXIT_STATUS
from nnx_compat.cli.check import _check_all, target_argument
from nnx_compat.cli.patterns import _check, _migrate

__all__ = [
    "DEFAULT_DOCS_URL",
    "DEFAULT_OUTPUT",
    "Point",
    "Report",
    "Site",
    "add_parser",
    "baseline_history",
    "command",
    "read_baseline",
    "render",
    "runtime_page",
    "write_atomic",
]

DEFAULT_OUTPUT: Final = "nnx-compat-report.html"
#: Where a pattern's documentation is: ``{id}`` is replaced by the pattern's id (the anchors of
#: the table in docs/patterns.md).
DEFAULT_DOCS_URL: Final = "docs/patterns.html#{id}"
#: The baseline format this page reads (``nnx_compat.pytest_plugin.BASELINE_FORMAT``).
_BASELINE_FORMAT: Final = 1
_ERRORS: Final = frozenset(i for i, _ in ERROR_IDS)
_TESTS_SHOWN: Final = 3
#: One colour per line of the chart: the total, then each family in ``_patterns.FAMILIES``
#: order, then patterns the table does not know.
_COLORS: Final = (
    "currentColor",
    "#0969da",
    "#cf222e",
    "#1a7f37",
    "#9a6700",
    "#8250df",
    "#bf3989",
    "#0e7c86",
    "#bc4c00",
    "#6e7781",
)


# --------------------------------------------------------------------------- data


@dataclasses.dataclass
class Site:
    """A legacy call site: found in the source, run by the tests, or both."""

    pattern: str
    file: str
    line: int
    cell: int | None = None  #: a .ipynb's cell (``line`` is then the line in the cell)
    static: bool = False  #: ``nnx-compat check`` found it
    ran: bool = False  #: a run-time report lists it
    hits: int = 0  #: how often it ran
    tests: set[str] = dataclasses.field(default_factory=set)

    @property
    def where(self) -> str:
        return f"cell {self.cell}, line {self.line}" if self.cell is not None else str(self.line)


@dataclasses.dataclass(frozen=True)
class Point:
    """One baseline: the legacy call sites it allows, per pattern and file.

    Attributes:
        label: The baseline's file name, or the commit it was read from.
        counts: Pattern id -> file -> call sites.
        date: The commit's date (``--baseline-history``); None for a file.
    """

    label: str
    counts: Mapping[str, Mapping[str, int]]
    date: datetime.datetime | None = None

    def total(self, family: str | None = None) -> int:
        """The call sites of every pattern, or of one family's."""
        return sum(
            n
            for pattern_id, files in self.counts.items()
            if family is None or _family(pattern_id) == family
            for n in files.values()
        )


@dataclasses.dataclass
class Report:
    """What the page shows."""

    sites: dict[tuple[str, str, int | None, int], Site] = dataclasses.field(default_factory=dict)
    #: files ``check`` could not read or parse (read-error, syntax-error findings)
    not_checked: list[Finding] = dataclasses.field(default_factory=list)
    checked_files: int | None = None  #: None: no static check
    paths: list[str] = dataclasses.field(default_factory=list)
    runtime_reports: list[str] = dataclasses.field(default_factory=list)
    history: list[Point] = dataclasses.field(default_factory=list)
    #: legacy form, new form, release of the ids a run-time report names and the table lacks
    forms: dict[str, tuple[str, str, str]] = dataclasses.field(default_factory=dict)

    def site(self, pattern: str, file: str, line: int, cell: int | None = None) -> Site:
        key = (pattern, file, cell, line)
        if key not in self.sites:
            self.sites[key] = Site(pattern, file, line, cell)
        return self.sites[key]

    def add_findings(self, findings: Iterable[Finding], root: Path) -> None:
        """Adds ``nnx-compat check``'s findings (paths relative to the current directory, shown
        relative to ``root``)."""
        for finding in findings:
            if finding.pattern in _ERRORS:
                self.not_checked.append(finding)
                continue
            cell = finding.cell if finding.file_line is not None else None  # .ipynb only
            file = _shown(os.path.abspath(finding.path), root)
            self.site(finding.pattern, file, finding.line, cell).static = True

    def add_runtime(self, data: Any, root: Path) -> None:
        """Adds a run-time report (the JSON of ``pytest --nnx-compat-report=FILE.json``), whose
        file names are relative to ``root`` (pytest's rootdir).

        Raises:
            ValueError: For data that is not such a report.
        """
        try:
            patterns = data["patterns"]
            if not isinstance(patterns, list):
                raise TypeError("'patterns' is not a list")
            for entry in patterns:
                pattern_id = str(entry["id"])
                if pattern_id not in _KNOWN:
                    legacy, new, release = (
                        str(entry.get(key) or "?") for key in ("legacy", "new", "changed_in")
                    )
                    self.forms[pattern_id] = (legacy, new, release)
                for raw in entry["sites"]:
                    site = self.site(pattern_id, _shown(str(raw["file"]), root), int(raw["line"]))
                    site.ran = True
                    site.hits += int(raw.get("count", 1))
                    site.tests.update(str(t) for t in raw.get("tests", ()))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"not a run-time report of the pytest plugin ({error!r})") from None

    def by_pattern(self) -> dict[str, list[Site]]:
        """The sites of each pattern, the pattern with the most first."""
        grouped: dict[str, list[Site]] = collections.defaultdict(list)
        for site in sorted(self.sites.values(), key=_site_order):
            grouped[site.pattern].append(site)
        return dict(sorted(grouped.items(), key=lambda kv: (-len(kv[1]), kv[0])))

    def by_file(self) -> dict[str, list[Site]]:
        """The sites of each file, the file with the most first."""
        grouped: dict[str, list[Site]] = collections.defaultdict(list)
        for site in sorted(self.sites.values(), key=_site_order):
            grouped[site.file].append(site)
        return dict(sorted(grouped.items(), key=lambda kv: (-len(kv[1]), kv[0])))


_KNOWN: Final = frozenset(p.id for p in _patterns.PATTERNS)


def _site_order(site: Site) -> tuple[str, int, int, str]:
    return (site.file, site.cell or 0, site.line, site.pattern)


def _family(pattern_id: str) -> str:
    return _patterns.get(pattern_id).family if pattern_id in _KNOWN else "other"


def _shown(path: str, root: Path) -> str:
    """``path`` as the page shows it: relative to ``root`` where it lies under it (a relative
    path is taken from ``root``), else as given."""
    absolute = Path(root, path)
    try:
        return absolute.resolve().relative_to(root.resolve()).as_posix()
    except (ValueError, OSError):
        return Path(path).as_posix()


def read_baseline(text: str) -> dict[str, dict[str, int]]:
    """The counts of a baseline file of the pytest plugin (``--nnx-compat-baseline``).

    Raises:
        ValueError: For text that is not such a baseline.
    """
    try:
        data = json.loads(text)
        if data.get("format") != _BASELINE_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {_BASELINE_FORMAT}")
        return {
            str(p): {str(f): int(n) for f, n in files.items()}
            for p, files in data["patterns"].items()
        }
    except (ValueError, KeyError, AttributeError, TypeError) as error:
        raise ValueError(f"not a baseline of the pytest plugin ({error})") from None


def _git(args: Sequence[str], cwd: Path) -> str:
    try:
        done = subprocess.run(
            # names as they are (not octal-quoted), for git show <commit>:<name>
            ["git", "-c", "core.quotePath=false", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            encoding="utf-8",
        )
    except OSError as error:
        raise UsageError(f"--baseline-history needs git ({error.strerror})") from None
    if done.returncode:
        raise UsageError(f"git {args[0]}: {done.stderr.strip() or 'failed'}")
    return done.stdout


def baseline_history(path: str) -> list[Point]:
    """Every committed version of the baseline file ``path`` (renames followed), oldest first,
    dated by its commit; a version that is not a baseline is left out with a line on stderr.

    Raises:
        UsageError: Where git cannot tell the history (not a repository, never committed).
    """
    given = Path(path)
    # from its directory, so that a file in another repository (a submodule) is found there
    where, spec = (given.parent, given.name) if given.parent.is_dir() else (Path.cwd(), path)
    top = Path(_git(["rev-parse", "--show-toplevel"], where).strip())
    log = _git(["log", "--follow", "--format=%x1e%H%x1f%cI", "--name-status", "--", spec], where)
    points: list[Point] = []
    for record in log.split("\x1e")[1:]:
        head, _, changes = record.partition("\n")
        commit, _, date = head.partition("\x1f")
        status = [line.split("\t") for line in changes.splitlines() if "\t" in line]
        if not status or status[-1][0].startswith("D"):
            continue  # the commit that deleted it
        name = status[-1][-1]  # its name in that commit (the new name of a rename)
        try:
            counts = read_baseline(_git(["show", f"{commit}:{name}"], top))
        except (UsageError, ValueError) as error:
            print(f"nnx-compat report: skipped {commit[:10]}:{name}: {error}", file=sys.stderr)
            continue
        when = datetime.datetime.fromisoformat(date)
        points.append(Point(commit[:10], counts, when))
    if not points:
        raise UsageError(f"{path}: no committed version of a baseline (git log --follow)")
    points.reverse()
    return points


# --------------------------------------------------------------------------- the page


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _docs_link(url: str, pattern_id: str) -> str:
    quoted = urllib.parse.quote(pattern_id, safe="")
    return url.replace("{id}", quoted) if "{id}" in url else f"{url}#{quoted}"


def _columns(pattern_id: str) -> tuple[str, str]:
    """What ``check`` and ``migrate`` do with a pattern: the columns of the pattern table."""
    if pattern_id not in _KNOWN:
        return "?", "?"
    record = _patterns.get(pattern_id)
    return _check(record), _migrate(record)


def _forms(report: Report, pattern_id: str) -> tuple[str, str, str, str]:
    """Legacy form, new form, release, family."""
    if pattern_id in _KNOWN:
        record = _patterns.get(pattern_id)
        return record.legacy, record.new, record.changed_in, record.family
    legacy, new, release = report.forms.get(pattern_id, ("?", "?", "?"))
    return legacy, new, release, "not in this version's table"


_CSS: Final = """
:root { color-scheme: light dark; --fg: #1f2328; --muted: #59636e; --bg: #ffffff;
  --card: #f6f8fa; --line: #d1d9e0; --link: #0969da; --good: #1a7f37; --warn: #9a6700; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #9198a1; --bg: #0d1117;
  --card: #151b23; --line: #3d444d; --link: #4493f8; --good: #3fb950; --warn: #d29922; } }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1240px; padding: 24px 28px 48px; color: var(--fg);
  background: var(--bg); font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto,
  "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px; }
a { color: var(--link); text-decoration: none; } a:hover { text-decoration: underline; }
code { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.muted { color: var(--muted); } .small { font-size: 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 10px 16px; min-width: 150px; }
.card .n { font-size: 26px; font-weight: 600; } .card .what { color: var(--muted); }
table { border-collapse: collapse; width: 100%; margin: 4px 0 8px; }
th, td { border-bottom: 1px solid var(--line); padding: 6px 8px; text-align: left;
  vertical-align: top; }
th { background: var(--card); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num, td.id { white-space: nowrap; }
td.form { min-width: 160px; } td.form code { white-space: pre-wrap; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
.badge { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px;
  border: 1px solid var(--line); white-space: nowrap; }
.badge.rewritten { color: var(--good); border-color: var(--good); }
.badge.manual { color: var(--warn); border-color: var(--warn); }
details { margin: 4px 0; } summary { cursor: pointer; }
.chart svg { max-width: 100%; height: auto; color: var(--fg); }
.chart .grid { stroke: var(--line); stroke-width: 1; }
.chart .axis { stroke: var(--muted); stroke-width: 1; }
.chart text { fill: var(--muted); font-size: 12px; font-family: inherit; }
.chart text.axis-label { fill: var(--fg); font-size: 13px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 4px 0 0; padding: 0;
  list-style: none; }
.legend .swatch { display: inline-block; width: 14px; height: 4px; border-radius: 2px;
  vertical-align: middle; margin-right: 6px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


def _cards(report: Report) -> str:
    sites = list(report.sites.values())
    rewritten = sum(1 for s in sites if _columns(s.pattern)[1] == "rewritten")
    cards = [
        (len(sites), "legacy call sites"),
        (len({s.pattern for s in sites}), "patterns"),
        (len({s.file for s in sites}), "files"),
    ]
    if report.checked_files is not None:
        cards.append((sum(s.static for s in sites), "found by check"))
    if report.runtime_reports:
        cards.append((sum(s.ran for s in sites), "seen at run time"))
    if report.runtime_reports and report.checked_files is not None:
        cards.append((sum(s.ran and not s.static for s in sites), "at run time only"))
    cards.append((rewritten, "migrate rewrites"))
    if report.not_checked:
        cards.append((len({f.path for f in report.not_checked}), "files not checked"))
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="n">{n:,}</div><div class="what">{_e(what)}</div></div>'
            for n, what in cards
        )
        + "</div>"
    )


def _badge(migrate: str) -> str:
    kind = {"rewritten": "rewritten", "manual item": "manual"}.get(migrate, "")
    return f'<span class="badge {kind}">{_e(migrate)}</span>'


def _counts(report: Report, sites: Sequence[Site]) -> list[tuple[str, str, str]]:
    """``(class, header, cell)``: how many call sites, found by check and seen at run time
    (only the columns of the sources given)."""
    columns = [("sites", "call sites", f"{len(sites):,}")]
    if report.checked_files is not None:
        columns.append(("static", "in source", f"{sum(s.static for s in sites):,}"))
    if report.runtime_reports:
        columns.append(("ran", "at run time", f"{sum(s.ran for s in sites):,}"))
    return columns


def _table(table_id: str, head: list[str], rows: list[str]) -> str:
    return (
        f'<div class="scroll"><table id="{table_id}"><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _patterns_table(report: Report, docs_url: str) -> str:
    by_pattern = report.by_pattern()
    if not by_pattern:
        return '<p class="empty">No legacy call site: nothing left to migrate.</p>'
    rows = []
    for pattern_id, sites in by_pattern.items():
        legacy, new, release, family = _forms(report, pattern_id)
        check, migrate = _columns(pattern_id)
        link = _e(_docs_link(docs_url, pattern_id))
        counts = [(kind, cell) for kind, _, cell in _counts(report, sites)]
        if report.runtime_reports:
            counts.append(("hits", f"{sum(s.hits for s in sites):,}"))
        counts.append(("files", f"{len({s.file for s in sites}):,}"))
        rows.append(
            f'<tr id="pattern-{_e(pattern_id)}" class="pattern">'
            f'<td class="id"><a href="{link}"><code>{_e(pattern_id)}</code>'
            f'</a><div class="muted small">{_e(family)}</div></td>'
            f'<td class="form"><code>{_e(legacy)}</code></td>'
            f'<td class="form"><code>{_e(new)}</code></td>'
            f"<td>{_e(release)}</td><td>{_e(check)}</td><td>{_badge(migrate)}</td>"
            + "".join(f'<td class="num {kind}">{cell}</td>' for kind, cell in counts)
            + "</tr>"
        )
    numbers = [header for _, header, _ in _counts(report, [])]
    numbers += ["run-time hits"] if report.runtime_reports else []
    head = [
        f"<th>{h}</th>"
        for h in ("pattern", "legacy form", "new form", "changed in flax", "check", "migrate")
    ] + [f'<th class="num">{h}</th>' for h in (*numbers, "files")]
    return _table("patterns", head, rows)


def _files_table(report: Report) -> str:
    rows = []
    for file, sites in report.by_file().items():
        counts = collections.Counter(s.pattern for s in sites)
        patterns = ", ".join(
            f'<a href="#pattern-{_e(p)}"><code>{_e(p)}</code></a>'
            + (f" &times;{n}" if n > 1 else "")
            for p, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        )
        rows.append(
            f'<tr class="file"><td><code>{_e(file)}</code></td>'
            + "".join(
                f'<td class="num {kind}">{cell}</td>' for kind, _, cell in _counts(report, sites)
            )
            + f"<td>{patterns}</td></tr>"
        )
    if not rows:
        return ""
    head = ["<th>file</th>"]
    head += [f'<th class="num">{header}</th>' for _, header, _ in _counts(report, [])]
    return _table("files", [*head, "<th>patterns</th>"], rows)


def _seen(report: Report, site: Site) -> str:
    if site.static and site.ran:
        return "check and run time"
    if site.static:
        return "check"
    return "run time only" if report.checked_files is not None else "run time"


def _site_details(report: Report) -> str:
    ran = bool(report.runtime_reports)
    parts = []
    for file, sites in report.by_file().items():
        rows = []
        for site in sites:
            cells = [
                f'<td class="num">{_e(site.where)}</td>',
                f'<td><a href="#pattern-{_e(site.pattern)}"><code>{_e(site.pattern)}</code></a>'
                "</td>",
                f"<td>{_seen(report, site)}</td>",
            ]
            if ran:
                tests = sorted(site.tests)
                shown = ", ".join(_e(t) for t in tests[:_TESTS_SHOWN])
                if len(tests) > _TESTS_SHOWN:
                    shown += f", and {len(tests) - _TESTS_SHOWN} more"
                cells += [f'<td class="num">{site.hits:,}</td>', f'<td class="small">{shown}</td>']
            rows.append(f'<tr class="site">{"".join(cells)}</tr>')
        head = '<th class="num">line</th><th>pattern</th><th>seen by</th>'
        if ran:
            head += '<th class="num">run-time hits</th><th>tests</th>'
        parts.append(
            f"<details><summary><code>{_e(file)}</code> "
            f'<span class="muted">({_plural(len(sites), "call site")})</span></summary>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            "</details>"
        )
    return "".join(parts)


def _not_checked(report: Report) -> str:
    if not report.not_checked:
        return ""
    items = "".join(
        f"<li><code>{_e(f.where)}</code> {_e(f.pattern)}: {_e(f.message)}</li>"
        for f in sorted(report.not_checked)
    )
    return (
        '<h2 id="not-checked">Files not checked</h2><p>These could not be read or parsed: '
        f"their call sites are not counted.</p><ul>{items}</ul>"
    )


def _series(points: Sequence[Point]) -> list[tuple[str, str, list[int]]]:
    """``(name, colour, values)``: the total, then each family that ever had a call site."""
    lines = [("total", _COLORS[0], [p.total() for p in points])]
    for index, family in enumerate((*_patterns.FAMILIES, "other"), start=1):
        values = [p.total(family) for p in points]
        if any(values):
            lines.append((family, _COLORS[index % len(_COLORS)], values))
    return lines


def _chart(points: Sequence[Point], series: list[tuple[str, str, list[int]]]) -> str:
    dated = all(p.date is not None for p in points)
    return _charts.line_chart(
        [(p.label, p.date) for p in points],
        series,
        x_label="commit date" if dated else "baseline",
        y_label="legacy call sites",
        unit="call site",
        element_id="history-chart",
        title="Legacy call sites of each baseline",
    )


def _history(report: Report) -> str:
    points = report.history
    if not points:
        return ""
    series = _series(points)
    head = "".join(f'<th class="num">{_e(name)}</th>' for name, _, _ in series)
    rows = "".join(
        f"<tr><td><code>{_e(p.label)}</code></td>"
        f"<td>{_e(p.date.strftime('%Y-%m-%d %H:%M') if p.date else '')}</td>"
        + "".join(f'<td class="num">{values[i]:,}</td>' for _, _, values in series)
        + "</tr>"
        for i, p in enumerate(points)
    )
    return (
        '<h2 id="history">Call sites over time</h2><p class="muted">The legacy call sites each '
        f"baseline allows ({_plural(len(points), 'baseline')}), in total and per pattern "
        f'family.</p><div class="chart">{_chart(points, series)}</div><details><summary>The numbers'
        f"</summary><table><thead><tr><th>baseline</th><th>date</th>{head}</tr></thead>"
        f"<tbody>{rows}</tbody></table></details>"
    )


def _sources(report: Report) -> str:
    items = []
    if report.checked_files is not None:
        paths = ", ".join(f"<code>{_e(p)}</code>" for p in report.paths)
        items.append(
            f"<li>nnx-compat check: {_plural(report.checked_files, 'file')} ({paths})</li>"
        )
    for name in report.runtime_reports:
        items.append(f"<li>run-time report (pytest plugin): <code>{_e(name)}</code></li>")
    if report.history:
        items.append(f"<li>{_plural(len(report.history), 'baseline')}</li>")
    return f'<ul class="muted small">{"".join(items)}</ul>' if items else ""


def _now() -> datetime.datetime:
    """Now, or ``SOURCE_DATE_EPOCH`` where set (reproducible pages)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch.isdigit():
        return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC)
    return datetime.datetime.now(datetime.UTC)


def render(
    report: Report, docs_url: str = DEFAULT_DOCS_URL, title: str = "Flax NNX upgrade report"
) -> str:
    """The page: a summary, the chart of the baselines, the patterns, the files, each site.

    Args:
        report: What to show.
        docs_url: Where each pattern's documentation is: ``{id}`` is replaced by its id, else
            ``#<id>`` is appended.
        title: The page's title.
    """
    from nnx_compat import __version__

    generated = _now().strftime("%Y-%m-%d %H:%M UTC")
    both = report.checked_files is not None and bool(report.runtime_reports)
    files = _files_table(report)
    body = [
        f"<header><h1>{_e(title)}</h1>"
        f'<div class="muted">Legacy flax.nnx call sites left, generated {generated}</div>'
        f"{_sources(report)}</header>",
        _cards(report),
        _history(report),
        '<h2 id="by-pattern">By pattern</h2><p class="muted">'
        + ("A call site that check found and the tests ran counts once. " if both else "")
        + "<em>check</em>: whether nnx-compat check sees the pattern in source; <em>migrate</em>: "
        "what nnx-compat migrate does with it.</p>" + _patterns_table(report, docs_url),
    ]
    if files:
        body.append(f'<h2 id="by-file">By file</h2>{files}')
        body.append(f'<h2 id="sites">Call sites</h2>{_site_details(report)}')
    body.append(_not_checked(report))
    body.append(
        f"<footer>nnx_compat {_e(__version__)}: <code>nnx-compat report</code>. Migrate with "
        "<code>nnx-compat migrate</code>; keep the count from growing with "
        "<code>pytest --nnx-compat-baseline=FILE</code>.</footer>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body></html>\n"
    )


def runtime_page(data: Mapping[str, Any], root: Path | None = None) -> str:
    """The page of a run-time report alone (what the pytest plugin writes for
    ``--nnx-compat-report=FILE.html``): ``data`` is its JSON report, file names relative to
    ``root``."""
    report = Report(runtime_reports=["this session"])
    report.add_runtime(data, root or Path.cwd())
    return render(report, title="Legacy flax.nnx patterns at run time")


def write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` through a temporary file renamed over it: a reader
    sees the old page or the new one, never a part. A link is written through to its file; an
    existing file keeps its mode, a new one gets the umask's."""
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0o022)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- the command


def _gather(args: argparse.Namespace) -> Report:
    """The report the command line asks for.

    Raises:
        UsageError: For nothing to report on, or an input that cannot be read.
    """
    if not (args.paths or args.runtime or args.baseline or args.baseline_history):
        raise UsageError(
            "nothing to report on: give PATHs to check, --runtime, --baseline or --baseline-history"
        )
    root = Path(args.root)
    if not root.is_dir():
        raise UsageError(f"--root {args.root}: not a directory")
    report = Report(paths=list(args.paths))
    for name in args.runtime:
        try:
            report.add_runtime(json.loads(Path(name).read_text(encoding="utf-8")), root)
        except (OSError, ValueError) as error:
            why = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise UsageError(
                f"cannot read the run-time report {name} ({why}); write it with pytest "
                "--nnx-compat-report=FILE.json"
            ) from None
        report.runtime_reports.append(name)
    if args.baseline_history:
        report.history.extend(baseline_history(args.baseline_history))
    for name in args.baseline:
        try:
            counts = read_baseline(Path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            why = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise UsageError(f"cannot read the baseline {name} ({why})") from None
        report.history.append(Point(Path(name).name, counts))
    if args.paths:
        files, unreadable = _discover.discover_for(args, "report")
        findings = _check_all(files, args.target, None, [], False, os.cpu_count() or 1)
        findings += [Finding(path, 1, 1, "read-error", None, why) for path, why in unreadable]
        report.checked_files = len(files)
        report.add_findings(findings, root)
    return report


def command(args: argparse.Namespace) -> int:
    """``nnx-compat report``."""
    try:
        report = _gather(args)
    except UsageError as error:
        print(f"nnx-compat report: {error}", file=sys.stderr)
        return 2
    try:
        write_atomic(Path(args.output), render(report, args.docs_url))
    except OSError as error:
        print(f"nnx-compat report: cannot write {args.output}: {error.strerror}", file=sys.stderr)
        return 2
    sites = len(report.sites)
    print(
        f"nnx-compat report: {args.output} written ({_plural(sites, 'legacy call site')}, "
        f"{_plural(len({s.pattern for s in report.sites.values()}), 'pattern')})",
        file=sys.stderr,
    )
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "report",
        help="an HTML page of where an upgrade stands: legacy call sites per pattern and file",
        description="Write one self-contained HTML page (no script, no other file) of the "
        "legacy flax.nnx call sites left: what nnx-compat check finds in the PATHs merged with "
        "what the pytest plugin saw at run time (--runtime), per pattern and per file, with each "
        "pattern's new form, the flax release that changed it, what migrate does with it and a "
        "link to its documentation; and a chart of the call sites of earlier baselines "
        "(--baseline, --baseline-history).",
        epilog=EXIT_STATUS["report"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="files and directories to check (as nnx-compat check reads them)",
    )
    parser.add_argument(
        "--runtime",
        action="append",
        default=[],
        metavar="FILE",
        help="a run-time report of the pytest plugin (pytest --nnx-compat-report=FILE.json); "
        "repeatable",
    )
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="FILE",
        help="a baseline file of the pytest plugin (--nnx-compat-baseline), one point of the "
        "chart; repeatable, oldest first",
    )
    parser.add_argument(
        "--baseline-history",
        metavar="PATH",
        help="chart every version of this baseline file that git has (renames followed), "
        "by commit date",
    )
    parser.add_argument(
        "-o",
        "--output",
        default=DEFAULT_OUTPUT,
        metavar="FILE",
        help=f"the page to write (default: {DEFAULT_OUTPUT}); replaced in one step",
    )
    parser.add_argument(
        "--docs-url",
        default=DEFAULT_DOCS_URL,
        metavar="URL",
        help="where each pattern's documentation is: {id} is replaced by the pattern's id, "
        f"else #<id> is appended (default: {DEFAULT_DOCS_URL})",
    )
    parser.add_argument(
        "--root",
        default=".",
        metavar="DIR",
        help="the directory file names are shown relative to, and that the run-time reports' "
        "names are relative to: pytest's rootdir (default: the current directory)",
    )
    parser.add_argument(
        "--target",
        type=target_argument,
        default=TARGETS[-1],
        metavar="{0.11,0.12,RELEASE}",
        help="the flax API level to reach, as for nnx-compat check",
    )
    _discover.add_arguments(parser)
    parser.set_defaults(func=command)
