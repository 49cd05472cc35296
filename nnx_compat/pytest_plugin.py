"""The pytest plugin: which legacy flax.nnx patterns a test suite runs, and a ratchet on them.

Installed with nnx_compat (a ``pytest11`` entry point). Modes (``--nnx-compat``, or the ini
option ``nnx_compat``):

* ``report`` (the default): a section at the end of the session lists each legacy pattern that
  ran: its id, how often, each user line, the tests that ran it, and the form to use instead
  (``--nnx-compat-report=FILE.json`` writes the same as JSON, ``FILE.html`` as the page of
  ``nnx-compat report``);
* ``strict``: a test (its setup, call or teardown, ``jit`` tracing included) that runs a
  legacy pattern fails, with the warning's text and the user's line, unless the pattern is
  allowed by ``@pytest.mark.nnx_compat_legacy("pattern-id", ...)``, ignored by the warning
  filters in force (``-W``, ``filterwarnings``), or silenced by ``NNX_COMPAT_WARNINGS=ignore``;
* ``off``: nothing.

A baseline (``--nnx-compat-baseline=FILE``) records, per pattern and file, how many call sites
are allowed; a session that runs more fails, naming them; fewer are reported so that the
baseline can shrink, which ``--nnx-compat-update-baseline`` does (a filtered run, ``-k``, ``-m``
or paths, only adds). With pytest-xdist, the workers' hits are merged on the controller.

The plugin imports neither flax nor jax.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import stat
import tempfile
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any, Final

import pytest

from nnx_compat import _patterns, _warnings

__all__ = ["Plugin"]

MODES: Final = ("off", "report", "strict")
BASELINE_FORMAT: Final = 1
_MARKER: Final = "nnx_compat_legacy"
_WORKER_KEY: Final = "nnx_compat_hits"
_TESTS_SHOWN: Final = 3


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nnx_compat", "legacy flax.nnx patterns (nnx_compat)")
    group.addoption(
        "--nnx-compat",
        dest="nnx_compat_mode",
        choices=MODES,
        default=None,
        help="report the legacy flax.nnx patterns the tests run (default), fail the tests that "
        "run one (strict), or neither (off)",
    )
    group.addoption(
        "--nnx-compat-report",
        dest="nnx_compat_report",
        metavar="FILE",
        default=None,
        help="also write the report to FILE: as JSON, or as an HTML page for a name ending "
        "in .html",
    )
    group.addoption(
        "--nnx-compat-baseline",
        dest="nnx_compat_baseline",
        metavar="FILE",
        default=None,
        help="fail the session for legacy call sites beyond those FILE allows",
    )
    group.addoption(
        "--nnx-compat-update-baseline",
        dest="nnx_compat_update_baseline",
        action="store_true",
        default=False,
        help="write the session's legacy call sites to the baseline FILE (a filtered run only "
        "adds to it)",
    )
    parser.addini("nnx_compat", "off, report (the default) or strict", default="report")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(*pattern_ids): the test may run these legacy flax.nnx patterns under "
        "--nnx-compat=strict (none given: any)",
    )
    mode = config.getoption("nnx_compat_mode") or str(config.getini("nnx_compat")).strip()
    if mode not in MODES:
        raise pytest.UsageError(f"nnx_compat = {mode!r} is not one of {', '.join(MODES)}")
    if mode == "off":
        return
    if config.getoption("nnx_compat_update_baseline") and not config.getoption(
        "nnx_compat_baseline"
    ):
        raise pytest.UsageError("--nnx-compat-update-baseline needs --nnx-compat-baseline=FILE")
    baseline = config.getoption("nnx_compat_baseline")
    if baseline and not config.getoption("nnx_compat_update_baseline"):
        # a missing or unreadable baseline stops the session before any test runs
        if not Path(baseline).exists():
            raise pytest.UsageError(
                f"nnx_compat: no baseline at {baseline}: create it with "
                "--nnx-compat-update-baseline"
            )
        _read_baseline(Path(baseline))
    plugin = Plugin(config, mode)
    config.pluginmanager.register(plugin, "nnx_compat_plugin")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistController(plugin), "nnx_compat_xdist")


class _XdistController:
    """pytest-xdist's hook, on the controller (registered only where xdist is installed)."""

    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        data = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
        if data:
            self.plugin.merge_worker(data)


@pytest.fixture
def nnx_compat_hits(request: pytest.FixtureRequest) -> Hits:
    """The legacy flax.nnx pattern hits of this test so far (its setup included), in order;
    empty under ``--nnx-compat=off``."""
    plugin = request.config.pluginmanager.get_plugin("nnx_compat_plugin")
    if not isinstance(plugin, Plugin):
        return Hits()
    return plugin.test_hits.get(request.node.nodeid, Hits())


# --------------------------------------------------------------------------- hits


@dataclasses.dataclass
class Site:
    """A user line that ran a legacy pattern in this session."""

    pattern: str
    filename: str
    lineno: int
    count: int = 0
    tests: set[str] = dataclasses.field(default_factory=set)

    def as_dict(self, root: Path) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "file": _relative(self.filename, root),
            "line": self.lineno,
            "count": self.count,
            "tests": sorted(self.tests),
        }


def _relative(filename: str, root: Path) -> str:
    try:
        return Path(filename).resolve().relative_to(root).as_posix()
    except ValueError:
        return filename


class Hits(list[_warnings.Hit]):
    """The legacy pattern hits of one test, in order (the ``nnx_compat_hits`` fixture)."""

    @property
    def patterns(self) -> list[str]:
        """The ids, in order, repeated as they ran."""
        return [hit.pattern for hit in self]


@dataclasses.dataclass
class _Phase:
    nodeid: str
    allowed: frozenset[str] | None  # None: any pattern
    hits: Hits
    failing: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (id, line)
    bad_marker: str = ""


class Plugin:
    """The plugin's state for one session (on the controller, or on one xdist worker)."""

    def __init__(self, config: pytest.Config, mode: str) -> None:
        self.config = config
        self.strict = mode == "strict"
        self.root = Path(str(config.rootpath)).resolve()
        self.sites: dict[tuple[str, str, int], Site] = {}
        self.phase: _Phase | None = None
        self.test_hits: dict[str, Hits] = {}
        self.filtered = False
        self.messages: list[str] = []
        self.failed_baseline = False
        _warnings.add_listener(self._on_hit)

    # ------------------------------------------------------------------ recording

    def _on_hit(self, hit: _warnings.Occurrence, policy: str) -> None:
        phase = self.phase
        nodeid = phase.nodeid if phase is not None else ""
        key = (hit.pattern, hit.filename, hit.lineno)
        site = self.sites.get(key)
        if site is None:
            site = self.sites[key] = Site(hit.pattern, hit.filename, hit.lineno)
        site.count += 1
        if nodeid:
            site.tests.add(nodeid)
        if phase is None:
            return
        phase.hits.append(_warnings.Hit(hit.pattern, hit.filename, hit.lineno, 1))
        if not self.strict or policy == "ignore":
            return
        if phase.allowed is None or hit.pattern in phase.allowed or not hit.shown():
            return
        pattern = _patterns.get(hit.pattern)
        where = f"{_relative(hit.filename, self.root)}:{hit.lineno}"
        phase.failing.append((hit.pattern, f"{where}: {pattern.message()}"))

    def _allowed(self, item: pytest.Item) -> frozenset[str] | None:
        allowed: set[str] = set()
        for mark in item.iter_markers(_MARKER):
            if not mark.args:
                return None
            for pattern_id in mark.args:
                _patterns.get(pattern_id)  # KeyError naming the known ids
                allowed.add(pattern_id)
        return frozenset(allowed)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: Any
    ) -> Generator[None, Any, Any]:
        bad = ""
        try:
            allowed = self._allowed(item)
        except KeyError as error:
            allowed, bad = frozenset(), str(error.args[0])
        self.test_hits[item.nodeid] = Hits()
        self.phase = _Phase(item.nodeid, allowed, self.test_hits[item.nodeid], bad_marker=bad)
        try:
            with _warnings.fresh_call_sites():  # each test sees its own warnings, as pytest does
                return (yield)
        finally:
            self.phase = None
            self.test_hits.pop(item.nodeid, None)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any) -> Generator[None, Any, Any]:
        report = yield
        phase = self.phase
        if phase is not None and phase.bad_marker and call.when == "setup" and report.passed:
            report.outcome = "failed"
            report.longrepr = f"@pytest.mark.{_MARKER}: {phase.bad_marker}"
        if phase is None or not phase.failing:
            return report
        failing, phase.failing = phase.failing, []
        if report.passed or (report.skipped and call.when != "setup"):
            report.outcome = "failed"
            counted = collections.Counter(line for _, line in failing)
            patterns = len({pattern_id for pattern_id, _ in failing})
            lines = [
                f"nnx_compat strict: this test ran {_plural(patterns, 'legacy flax.nnx pattern')} "
                f"at {_plural(len(counted), 'call site')} (in {call.when}); migrate "
                f"{'them' if len(counted) > 1 else 'it'}, or allow "
                f'{"them" if patterns > 1 else "it"} with @pytest.mark.{_MARKER}("<id>", ...):'
            ]
            lines += [f"  {line}" + (f" (x{n})" if n > 1 else "") for line, n in counted.items()]
            report.longrepr = "\n".join(lines)
        return report

    # ------------------------------------------------------------------ session

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        if items:
            self.filtered = True

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        option = self.config.option
        if getattr(option, "keyword", "") or getattr(option, "markexpr", ""):
            self.filtered = True
        if getattr(option, "lf", False) or getattr(option, "failedfirst", False):
            self.filtered = True
        if self.config.args_source == pytest.Config.ArgsSource.ARGS:
            args = self.config.args
            given = {Path(self.config.invocation_params.dir, a).resolve() for a in args}
            whole = {self.root, Path(self.config.invocation_params.dir).resolve()}
            whole |= {(self.root / p).resolve() for p in self.config.getini("testpaths")}
            if any("::" in a for a in args) or not given <= whole:
                self.filtered = True

    def _worker_output(self) -> dict[str, Any] | None:
        return getattr(self.config, "workeroutput", None)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        output = self._worker_output()
        if output is not None:  # an xdist worker: hand the hits to the controller
            output[_WORKER_KEY] = {
                "sites": [
                    dataclasses.asdict(s) | {"tests": sorted(s.tests)} for s in self.sites.values()
                ],
                "filtered": self.filtered,
            }
            return
        if session.shouldfail or session.shouldstop:
            self.filtered = True  # stopped early: not a full run
        self._write_report()
        path = self.config.getoption("nnx_compat_baseline")
        if path:
            self._baseline(Path(path), session)

    def merge_worker(self, data: Mapping[str, Any]) -> None:
        """Adds an xdist worker's hits."""
        self.filtered = self.filtered or data["filtered"]
        for raw in data["sites"]:
            key = (raw["pattern"], raw["filename"], raw["lineno"])
            site = self.sites.get(key)
            if site is None:
                site = self.sites[key] = Site(raw["pattern"], raw["filename"], raw["lineno"])
            site.count += raw["count"]
            site.tests.update(raw["tests"])

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        _warnings.remove_listener(self._on_hit)

    # ------------------------------------------------------------------ report

    def _by_pattern(self) -> dict[str, list[Site]]:
        grouped: dict[str, list[Site]] = collections.defaultdict(list)
        for site in sorted(self.sites.values(), key=lambda s: (s.pattern, s.filename, s.lineno)):
            grouped[site.pattern].append(site)
        return dict(grouped)

    def _write_report(self) -> None:
        path = self.config.getoption("nnx_compat_report")
        if not path:
            return
        data = {
            "patterns": [
                {
                    "id": pattern_id,
                    "legacy": _patterns.get(pattern_id).legacy,
                    "new": _patterns.get(pattern_id).new,
                    "changed_in": _patterns.get(pattern_id).changed_in,
                    "count": sum(s.count for s in sites),
                    "sites": [s.as_dict(self.root) for s in sites],
                }
                for pattern_id, sites in self._by_pattern().items()
            ]
        }
        if str(path).lower().endswith((".html", ".htm")):  # the page of nnx-compat report
            from nnx_compat.cli.report import runtime_page, write_atomic

            write_atomic(Path(path), runtime_page(data, self.root))
            return
        _write_atomic(Path(path), json.dumps(data, indent=2, sort_keys=True) + "\n")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self._worker_output() is not None:
            return
        grouped = self._by_pattern()
        if not grouped and not self.messages:
            return
        write = terminalreporter.write_line
        terminalreporter.write_sep("=", "nnx_compat: legacy flax.nnx patterns")
        for pattern_id, sites in grouped.items():
            pattern = _patterns.get(pattern_id)
            total = sum(s.count for s in sites)
            since = f"(flax {pattern.changed_in})"
            write(f"{pattern_id} x{total}: {pattern.legacy} -> {pattern.new} {since}")
            for site in sites:
                tests = sorted(site.tests)
                shown = ", ".join(tests[:_TESTS_SHOWN])
                more = (
                    f", and {len(tests) - _TESTS_SHOWN} more" if len(tests) > _TESTS_SHOWN else ""
                )
                where = f" ({_plural(len(tests), 'test')}: {shown}{more})" if tests else ""
                write(f"  {_relative(site.filename, self.root)}:{site.lineno} x{site.count}{where}")
        for message in self.messages:
            write(message, red=self.failed_baseline)

    # ------------------------------------------------------------------ baseline

    def _counts(self) -> dict[str, dict[str, int]]:
        """pattern id -> file -> the number of call sites that ran."""
        counts: dict[str, dict[str, int]] = collections.defaultdict(dict)
        for site in self.sites.values():
            file = _relative(site.filename, self.root)
            counts[site.pattern][file] = counts[site.pattern].get(file, 0) + 1
        return counts

    def _baseline(self, path: Path, session: pytest.Session) -> None:
        counts = self._counts()
        old = _read_baseline(path) if path.exists() else {}
        if self.config.getoption("nnx_compat_update_baseline"):
            new = _merged(old, counts) if self.filtered else counts
            _write_atomic(path, _dump_baseline(new))
            how = "added to (a filtered run does not shrink it)" if self.filtered else "written"
            self.messages.append(f"nnx_compat: baseline {path} {how}")
            return
        if not path.exists():
            self.messages.append(
                f"nnx_compat: no baseline at {path}: create it with --nnx-compat-update-baseline"
            )
            self.failed_baseline = True
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            return
        over, under = [], []
        for pattern_id, files in sorted(counts.items()):
            for file, n in sorted(files.items()):
                allowed = old.get(pattern_id, {}).get(file, 0)
                if n > allowed:
                    lines = sorted(
                        s.lineno
                        for s in self.sites.values()
                        if s.pattern == pattern_id and _relative(s.filename, self.root) == file
                    )
                    where = ", ".join(f"{file}:{line}" for line in lines)
                    over.append(
                        f"  {pattern_id} in {file}: {_plural(n, 'call site')}, baseline "
                        f"{allowed}: {where}"
                    )
        if not self.filtered:
            for pattern_id, files in sorted(old.items()):
                for file, allowed in sorted(files.items()):
                    n = counts.get(pattern_id, {}).get(file, 0)
                    if n < allowed:
                        under.append(f"  {pattern_id} in {file}: baseline {allowed}, now {n}")
        if over:
            self.failed_baseline = True
            self.messages.append(
                f"nnx_compat: legacy call sites beyond the baseline {path} (migrate them, or "
                "accept them with --nnx-compat-update-baseline):"
            )
            self.messages.extend(over)
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if under:
            self.messages.append(
                f"nnx_compat: the baseline {path} can shrink (run the whole suite with "
                "--nnx-compat-update-baseline):"
            )
            self.messages.extend(under)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _read_baseline(path: Path) -> dict[str, dict[str, int]]:
    try:
        data = json.loads(path.read_text())
        if data.get("format") != BASELINE_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {BASELINE_FORMAT}")
        return {p: {f: int(n) for f, n in files.items()} for p, files in data["patterns"].items()}
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as error:
        raise pytest.UsageError(
            f"nnx_compat: cannot read the baseline {path} ({error}); rewrite it with "
            "--nnx-compat-update-baseline"
        ) from None


def _merged(
    old: Mapping[str, Mapping[str, int]], new: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    out = {p: dict(files) for p, files in old.items()}
    for pattern_id, files in new.items():
        for file, n in files.items():
            out.setdefault(pattern_id, {})[file] = max(n, out.get(pattern_id, {}).get(file, 0))
    return out


def _dump_baseline(counts: Mapping[str, Mapping[str, int]]) -> str:
    data = {
        "format": BASELINE_FORMAT,
        "patterns": {
            p: dict(sorted(files.items())) for p, files in sorted(counts.items()) if files
        },
    }
    return json.dumps(data, indent=2) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # the mode a new file gets (mkstemp's is 0600: a baseline is checked in and shared),
        # or the mode of the file it replaces
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
