"""Migrated, then native: flax 0.10.7's NNX code after ``nnx-compat migrate``, without nnx_compat.

For the installed flax (0.11.x or 0.12.x), this downloads flax 0.10.7's sdist (once, under
``--work``), extracts three corpora, migrates each with ``nnx-compat migrate --write --target``
of the installed generation and runs it natively, in fresh interpreters that cannot import
nnx_compat (an import of it fails, and its pytest plugin is not loaded):

* ``toys``: ``examples/nnx_toy_examples/*.py``, each a script (it must exit 0);
* ``notebooks``: ``docs_nnx/**/*.ipynb``, each code cell in order in a Jupyter kernel (nbclient);
  an item is a cell, ``docs_nnx/nnx_basics.ipynb:cell 27`` (cells numbered as Jupyter counts
  all cells, as ``nnx-compat check`` names them). Cells of shell commands (``!pip install``)
  are not run. ``--notebook-format md`` migrates the MyST ``.md`` of each pair instead and runs
  it converted to a notebook (jupytext): its cells are the pair's, so both give the same items;
* ``tests``: ``tests/nnx`` under pytest, with flax 0.10.7's own pytest configuration (warnings
  are errors) and :data:`FILTERS` after it.

The items that pass natively on flax 0.10.7 (unmigrated, the same way) are kept in
``tools/migrated/<corpus>.passes`` (regenerate with ``--regenerate`` where flax 0.10.7 is
installed); cells that need what is not installed (the Gemma guide's Kaggle weights, the MNIST
tutorial's tensorflow_datasets) fail there and are not listed. A run fails if a listed item
fails after migration, unless :data:`EXPLAINED` lists it with the pattern record that accounts
for it and the text its failure shows; a listed item that fails otherwise is a failure, and an
entry that accounts for no failure is stale. The records of listed failures that the migration
did not report (neither a manual item nor a record only the run time finds) are printed.

``--mode shim`` runs the toy examples and notebooks unmigrated with their flax.nnx imports served
by ``nnx_compat.nnx`` (the runtime bridge's figures, for comparison: it reports and does not
fail; for the tests, ``python -m tools.upstream_suite --source-release 0.10.7``). Usage::

    python -m tools.migrated_corpus --work DIR [--corpus toys ...] [--jobs N]
    python -m tools.migrated_corpus --work DIR --regenerate      # on flax 0.10.7
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Mapping
from pathlib import Path

from tools import upstream_suite

HERE = Path(__file__).resolve().parent
PASSES_DIR = HERE / "migrated"
#: The release whose code is migrated.
SOURCE = "0.10.7"
CORPORA = ("toys", "notebooks", "tests")
MODES = ("migrated", "shim")
#: Where each corpus lives in the sdist (relative to its top folder).
PLACES = {
    "toys": "examples/nnx_toy_examples/",
    "notebooks": "docs_nnx/",
    "tests": "tests/nnx/",
}
#: Seconds one toy example, one notebook, or the whole of tests/nnx may take.
TIMEOUTS = {"toys": 600, "notebooks": 900, "tests": 1800}

#: Natively passing items that fail after migration, per flax generation: item (or an
#: ``fnmatch`` pattern of items) -> (the pattern record that accounts for it, text its failure
#: shows), read from ``tools/migrated/explained-<generation>.txt``. The record is ``none``
#: where no legacy pattern is involved: the installed flax or jax gives another result (a
#: rounding, a table's layout). ``nnx-compat migrate`` reports the others as manual items or,
#: for a record only the run time finds, names them at the end of its summary.
NO_RECORD = "none"


def read_explained(text: str) -> dict[str, tuple[str, str]]:
    """``item | record | reason`` lines (``#`` comments) as :data:`EXPLAINED` entries."""
    listed: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        item, record, reason = (part.strip() for part in line.split(" | ", 2))
        if item in listed:
            raise ValueError(f"{item} is listed twice")
        listed[item] = (record, reason)
    return listed


def explained_file(line: str) -> Path:
    return PASSES_DIR / f"explained-{line}.txt"


EXPLAINED: dict[str, dict[str, tuple[str, str]]] = {
    line: read_explained(explained_file(line).read_text()) for line in ("0.11", "0.12")
}


def explained(release: str) -> dict[str, tuple[str, str]]:
    """The :data:`EXPLAINED` items of a release's generation (``0.12.8`` -> ``0.12``)."""
    return EXPLAINED.get(generation(release), {})


def generation(release: str) -> str:
    """``0.12.8`` -> ``0.12``: the ``--target`` that migrates to the installed flax."""
    return ".".join(release.split(".")[:2])


# --------------------------------------------------------------------------- the corpora


def corpus_of(member: str) -> str | None:
    """The corpus a file of the sdist belongs to (its path below the sdist's top folder);
    None for the rest. Notebooks: the ``.ipynb`` and ``.md`` files of ``docs_nnx`` (a ``.md``
    counts only where it is the pair of an ``.ipynb``, which :func:`notebook_pairs` decides)."""
    for corpus, place in PLACES.items():
        if member.startswith(place):
            if corpus == "notebooks":
                return corpus if member.endswith((".ipynb", ".md")) else None
            return corpus
    return None


def extract(archive: Path, root: Path, corpora: Iterable[str]) -> None:
    """The files of ``corpora`` from flax's sdist under ``root`` (emptied first), with flax's
    pytest configuration as ``root/pytest.ini``."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    wanted = set(corpora)
    with tarfile.open(archive) as tar:
        top = f"flax-{SOURCE}/"
        for member in tar.getmembers():
            if not (member.isfile() and member.name.startswith(top)):
                continue
            name = member.name[len(top) :]
            data = tar.extractfile(member)
            assert data is not None
            if name == "pyproject.toml":
                ini = upstream_suite.pytest_ini(data.read())
                (root / "pytest.ini").write_text(with_filters(ini, FILTERS))
            elif corpus_of(name) in wanted:
                target = root / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data.read())


#: Warning filters added after flax's own (which make every other warning an error): a
#: deprecation warning of the installed flax is code that runs (the scripts and notebooks run
#: under Python's default filters, where it is no error either). The lists of passes are made
#: with the same filters.
FILTERS: tuple[str, ...] = ("ignore::DeprecationWarning",)


def with_filters(ini: str, filters: Iterable[str]) -> str:
    """A ``pytest.ini`` with ``filters`` after its own ``filterwarnings`` (later filters take
    precedence); a ``filterwarnings`` option is added if it has none."""
    lines = ini.splitlines()
    added = [f"    {f}" for f in filters]
    if "filterwarnings =" not in lines:
        return "\n".join([*lines, "filterwarnings =", *added]) + "\n"
    end = lines.index("filterwarnings =") + 1
    while end < len(lines) and lines[end].startswith((" ", "\t")):
        end += 1
    return "\n".join([*lines[:end], *added, *lines[end:]]) + "\n"


def toys(root: Path) -> list[str]:
    """The toy examples: the scripts of ``examples/nnx_toy_examples``."""
    return sorted(str(p.relative_to(root)) for p in (root / PLACES["toys"]).glob("*.py"))


def notebook_pairs(root: Path) -> list[tuple[Path, Path | None]]:
    """Each notebook of ``docs_nnx`` with the MyST markdown file paired with it (same name,
    ``.md``), if there is one."""
    pairs = []
    for notebook in sorted((root / PLACES["notebooks"]).rglob("*.ipynb")):
        markdown = notebook.with_suffix(".md")
        pairs.append((notebook, markdown if markdown.exists() else None))
    return pairs


def item_corpus(item: str) -> str:
    """The corpus of an item: a toy's or a notebook's path, or a test's id."""
    for corpus, place in PLACES.items():
        if item.startswith(place) or item.startswith(place.replace("/", ".")):
            return corpus
    raise ValueError(f"{item} is no item of {', '.join(CORPORA)}")


def _source(cell: Mapping[str, object]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


#: The tag of the cells that Jupyter tools (nbclient, myst-nb) do not run.
SKIP_TAG = "skip-execution"


def without_shell(notebook: dict[str, object]) -> dict[str, object]:
    """The notebook ready to run: the outputs and execution counts of its code cells cleared
    (a cell passes only if this run executed it), and the cells that run shell commands
    (``!pip install ...``) emptied, as they would change the environment or reach the network.
    Those, and the cells tagged ``skip-execution`` (which nbclient does not run), are
    ``skipped``."""
    cells = notebook.get("cells", [])
    assert isinstance(cells, list)
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        cell["outputs"], cell["execution_count"] = [], None
        metadata = cell.setdefault("metadata", {})
        lines = _source(cell).splitlines()
        if any(line.lstrip().startswith("!") for line in lines):
            cell["source"] = ""
            metadata["shell_escape"] = True
    return notebook


def cell_outcomes(
    notebook: Mapping[str, object], name: str
) -> tuple[dict[str, str], dict[str, str]]:
    """``(item -> passed | failed | not run | skipped, item -> error)`` for an executed
    notebook's code cells (``name:cell N``, N counting every cell from 1; empty cells are no
    items, cells of shell commands and those tagged ``skip-execution`` are skipped:
    :func:`without_shell`)."""
    results: dict[str, str] = {}
    errors: dict[str, str] = {}
    cells = notebook.get("cells", [])
    assert isinstance(cells, list)
    for number, cell in enumerate(cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        item = f"{name}:cell {number}"
        metadata = cell.get("metadata", {})
        if metadata.get("shell_escape") or SKIP_TAG in metadata.get("tags", []):
            results[item] = "skipped"
            continue
        if not _source(cell).strip():
            continue  # an empty cell is no item
        outputs = cell.get("outputs", [])
        failure = next((o for o in outputs if o.get("output_type") == "error"), None)
        if failure is not None:
            results[item] = "failed"
            errors[item] = f"{failure.get('ename', '')}: {failure.get('evalue', '')}"
        elif cell.get("execution_count") is None:
            results[item] = "not run"
        else:
            results[item] = "passed"
    return results, errors


_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*)(?:Error|Exception|Exit|Interrupt)\b.*$")


def last_exception(output: str) -> str:
    """The exception line of a traceback printed by a script (``ValueError: ...``), else the
    last non-empty line."""
    lines = [line for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------- running

#: Put first on the path of every native run: an import of nnx_compat fails there.
GUARD = '''"""The migrated code runs without nnx_compat: importing it fails."""

import sys


class _NoNnxCompat:
    def find_spec(self, name, path=None, target=None):
        if name == "nnx_compat" or name.startswith("nnx_compat."):
            raise ImportError(f"{name} imported by migrated code, which must run without it")
        return None


sys.meta_path.insert(0, _NoNnxCompat())
'''

#: Runs one notebook's code cells in order (every cell, whatever the earlier ones did) and
#: writes the executed notebook: ``python -c EXECUTE NOTEBOOK OUT TIMEOUT``.
EXECUTE = """
import sys, nbclient, nbformat
notebook = nbformat.read(sys.argv[1], as_version=4)
client = nbclient.NotebookClient(
    notebook, timeout=int(sys.argv[3]), kernel_name="python3", allow_errors=True,
    resources={"metadata": {"path": sys.argv[4]}},
)
try:
    client.execute()
finally:
    nbformat.write(notebook, sys.argv[2])
"""


def native_env(work: Path, shim: bool) -> dict[str, str]:
    """The environment of a native run: the guard first on the path (not in ``shim`` mode),
    a non-interactive matplotlib, the interpreter's own folder first on PATH (the kernel's
    ``python``), and no XLA_FLAGS (flax's code runs on its own defaults, as the lists of passes
    were made)."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PYTHONPATH")}
    if not shim:
        guard = work / "guard"
        guard.mkdir(parents=True, exist_ok=True)
        (guard / "sitecustomize.py").write_text(GUARD)
        env["PYTHONPATH"] = str(guard)
    env["MPLBACKEND"] = "Agg"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@dataclasses.dataclass
class Outcome:
    """What a corpus run gave: item -> passed/failed/..., and item -> why it failed."""

    results: dict[str, str]
    reasons: dict[str, str]
    #: the records of the migration's manual items
    manual: set[str] = dataclasses.field(default_factory=set)


def run_toys(root: Path, env: dict[str, str], items: list[str], jobs: int) -> Outcome:
    def one(item: str) -> tuple[str, str, str]:
        path = root / item
        try:
            done = subprocess.run(
                [sys.executable, path.name],
                cwd=path.parent,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUTS["toys"],
            )
        except subprocess.TimeoutExpired:
            return item, "failed", f"timed out after {TIMEOUTS['toys']} s"
        if done.returncode == 0:
            return item, "passed", ""
        return item, "failed", last_exception(done.stderr or done.stdout)

    outcome = Outcome({}, {})
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        for item, result, reason in pool.map(one, items):
            outcome.results[item] = result
            if reason:
                outcome.reasons[item] = reason
    return outcome


def run_notebooks(
    root: Path,
    env: dict[str, str],
    notebooks: list[Path],
    jobs: int,
    *,
    timeout: int = TIMEOUTS["notebooks"],
) -> Outcome:
    """Runs each notebook's code cells in order in a kernel of its own (``timeout``: seconds
    one cell may take); its items' outcomes (:func:`cell_outcomes`)."""

    def one(notebook: Path) -> Outcome:
        name = str(notebook.relative_to(root))
        if notebook.suffix == ".md":  # the MyST pair, as a notebook
            name = str(notebook.with_suffix(".ipynb").relative_to(root))
            notebook = to_notebook(notebook)
        runnable = notebook.with_name(notebook.stem + ".run.ipynb")
        runnable.write_text(json.dumps(without_shell(json.loads(notebook.read_text()))))
        executed = notebook.with_name(notebook.stem + ".executed.ipynb")
        command = [
            sys.executable,
            "-c",
            EXECUTE,
            str(runnable),
            str(executed),
            str(timeout),
            str(notebook.parent),
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if not executed.exists():
            reason = last_exception(done.stderr)
            return Outcome({name: "failed"}, {name: f"not executed: {reason}"})
        results, errors = cell_outcomes(json.loads(executed.read_text()), name)
        if done.returncode != 0:  # a cell timed out or the kernel died: the rest did not run
            reason = last_exception(done.stderr)
            for item, result in results.items():
                if result == "not run":
                    errors[item] = reason
        return Outcome(results, errors)

    outcome = Outcome({}, {})
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        for part in pool.map(one, notebooks):
            outcome.results.update(part.results)
            outcome.reasons.update(part.reasons)
    return outcome


def to_notebook(markdown: Path) -> Path:
    """A MyST markdown notebook converted to ``.ipynb`` beside it (jupytext, which a
    ``--notebook-format md`` run needs: ``pip install jupytext``). Its cells are the pair's:
    the items keep the names of the ``.ipynb`` cells."""
    import jupytext  # type: ignore[import-untyped]

    notebook = markdown.with_name(markdown.stem + ".from-md.ipynb")
    jupytext.write(jupytext.read(markdown), notebook)
    return notebook


def run_tests(root: Path, env: dict[str, str], jobs: int) -> Outcome:
    junit = root / "junit.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/nnx",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:nnx_compat",
        f"--junitxml={junit}",
    ]
    if jobs > 1:
        command += ["-n", str(jobs)]
    done = subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUTS["tests"]
    )
    if not junit.exists():
        sys.stdout.write(done.stdout[-5000:] + done.stderr[-5000:])
        raise SystemExit(f"[tests] pytest wrote no report (exit status {done.returncode})")
    results = upstream_suite.outcomes(junit)
    failed = {test for test, result in results.items() if result in ("failed", "error")}
    return Outcome(results, whole_messages(junit, failed))


def whole_messages(junit: Path, wanted: set[str]) -> dict[str, str]:
    """The whole failure message of each test in ``wanted`` (a reason may be on any line)."""
    found: dict[str, str] = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        test = f"{case.get('classname')}::{case.get('name')}"
        for child in case:
            if test in wanted and child.tag in ("failure", "error"):
                found[test] = " ".join((child.get("message") or "").split())
    return found


def manual_records(log: str) -> set[str]:
    """The pattern ids of the manual items that ``nnx-compat migrate`` printed."""
    return set(re.findall(r"nnx-compat\[([\w-]+)\] manual:", log))


def unreported(
    listed: Mapping[str, tuple[str, str]], manual: set[str], runtime: set[str]
) -> dict[str, int]:
    """The records of listed failures that the migration did not report, with how many items
    each accounts for: neither a manual item of the run nor a record that only the run time
    finds (``nnx_compat.codemod.runtime_only``, which ``nnx-compat migrate`` names at the end
    of every run). Gaps of the checker's matchers (a receiver whose type the source does not
    state), for its rules to close."""
    counts: dict[str, int] = {}
    for record, _ in listed.values():
        if record != NO_RECORD and record not in manual and record not in runtime:
            counts[record] = counts.get(record, 0) + 1
    return dict(sorted(counts.items()))


def migrate(root: Path, places: list[Path], target: str) -> str:
    """Runs ``nnx-compat migrate --write --target`` over ``places``; its summary (its whole
    output is kept in ``root/migrate.log``)."""
    command = [sys.executable, "-m", "nnx_compat", "migrate", "--write", "--target", target]
    done = subprocess.run([*command, *map(str, places)], cwd=root, capture_output=True, text=True)
    (root / "migrate.log").write_text(done.stdout + done.stderr)
    lines = done.stderr.strip().splitlines()
    summary = lines[-1] if lines else ""
    # exit status 1 is work left (manual items); a file it could not migrate is an error
    if (
        done.returncode not in (0, 1)
        or not summary.startswith("nnx-compat migrate:")
        or (re.search(r"; \d+ errors?$", summary))
    ):
        sys.stdout.write(done.stderr[-5000:])
        raise SystemExit(f"nnx-compat migrate failed (exit status {done.returncode})")
    return summary


def swap(places: list[Path]) -> None:
    """``shim`` mode: flax.nnx imports served by nnx_compat.nnx, nothing else changed."""
    for place in places:
        files = [place] if place.is_file() else sorted(place.rglob("*"))
        for path in files:
            if path.suffix == ".py":
                path.write_text(upstream_suite.swap_imports(path.read_text())[0])
            elif path.suffix == ".ipynb":
                notebook = json.loads(path.read_text())
                for cell in notebook.get("cells", []):
                    if cell.get("cell_type") == "code":
                        source = "".join(cell["source"])
                        cell["source"] = upstream_suite.swap_imports(source)[0]
                path.write_text(json.dumps(notebook, indent=1))


def run_corpus(
    corpus: str,
    root: Path,
    *,
    mode: str | None,
    target: str,
    jobs: int,
    notebook_format: str,
    only: set[str] | None,
) -> Outcome:
    """Runs one corpus under ``root`` (extracted there): ``mode`` None runs it as it is
    (the lists of passes), ``migrated`` after migration, ``shim`` through nnx_compat."""
    if corpus == "toys":
        items = [t for t in toys(root) if only is None or t in only]
        places = [root / t for t in items]
    elif corpus == "notebooks":
        pairs = notebook_pairs(root)
        if notebook_format == "md":  # a notebook with no MyST pair runs as it is
            unpaired = [str(n.relative_to(root)) for n, m in pairs if m is None]
            if unpaired:
                print(f"[{corpus}] no MyST pair, the .ipynb runs: {', '.join(unpaired)}")
            places = [m or n for n, m in pairs]
        else:
            places = [n for n, _ in pairs]
    else:
        places = [root / PLACES["tests"]]
    manual: set[str] = set()
    if mode == "migrated":
        print(f"[{corpus}] {migrate(root, places, target)}")
        manual = manual_records((root / "migrate.log").read_text())
    elif mode == "shim":
        swap(places)
    env = native_env(root.parent, shim=mode == "shim")
    started = time.perf_counter()
    if corpus == "toys":
        outcome = run_toys(root, env, items, jobs)
    elif corpus == "notebooks":
        outcome = run_notebooks(root, env, places, jobs)
    else:
        outcome = run_tests(root, env, jobs)
    counts: dict[str, int] = {}
    for result in outcome.results.values():
        counts[result] = counts.get(result, 0) + 1
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    print(f"[{corpus}] {mode or 'native'}: {summary} in {time.perf_counter() - started:.0f} s")
    outcome.manual = manual
    return outcome


# --------------------------------------------------------------------------- comparing


@dataclasses.dataclass
class Comparison:
    """How a run compares with the natively passing items."""

    expected: int
    kept: list[str]
    #: item -> (pattern, reason): natively passing, failing for the listed reason
    accounted: dict[str, tuple[str, str]]
    #: item -> what happened: natively passing, failing, not accounted for
    harmed: dict[str, str]
    #: listed keys that account for no failure (their items pass, or pass nowhere natively)
    stale: list[str]

    @property
    def holds(self) -> bool:
        return not self.harmed and not self.stale


def listed_for(item: str, listed: Mapping[str, tuple[str, str]]) -> list[str]:
    """The keys of ``listed`` (an item, or an ``fnmatch`` pattern of items) that name ``item``."""
    return [key for key in listed if fnmatch.fnmatchcase(item, key)]


def compare(
    expected: set[str],
    outcome: Outcome,
    listed: Mapping[str, tuple[str, str]],
) -> Comparison:
    """Compares a run's outcome with the natively passing items and the listed failures.

    ``listed``: item (or ``fnmatch`` pattern of items) -> (pattern record, text the failure
    shows). A listed item that fails for another reason is harmed; a key that names no natively
    passing item, or only items that pass, is stale.
    """
    kept, accounted, harmed = [], {}, {}
    used: set[str] = set()
    for item in sorted(expected):
        result = outcome.results.get(item, "not collected")
        if result == "passed":
            kept.append(item)
            continue
        reason = outcome.reasons.get(item, "")
        keys = listed_for(item, listed)
        fitting = [key for key in keys if listed[key][1] in reason]
        if fitting:
            accounted[item] = listed[fitting[0]]
            used.update(fitting)
        else:
            why = f"{result}: {reason}".strip()
            if keys:
                named = "; ".join(f"[{listed[k][0]}] {listed[k][1]!r}" for k in keys)
                why += f" (listed for {named})"
                used.update(keys)  # reported as harmed, not as stale
            harmed[item] = why
    stale = sorted(key for key in listed if key not in used)
    return Comparison(len(expected), kept, accounted, harmed, stale)


def report(corpus: str, label: str, comparison: Comparison) -> None:
    print(
        f"[{corpus}] {label}: {len(comparison.kept)} of {comparison.expected} natively "
        f"passing items pass"
    )
    by_record: dict[str, int] = {}
    for pattern, _ in comparison.accounted.values():
        by_record[pattern] = by_record.get(pattern, 0) + 1
    for pattern, count in sorted(by_record.items()):
        print(f"  {count} fail as listed for [{pattern}]")
    if comparison.harmed:
        print(f"[{corpus}] {len(comparison.harmed)} natively passing items fail:")
        for item, why in comparison.harmed.items():
            print(f"  {item}: {why[:600]}")
    for key in comparison.stale:
        print(f"  stale: {key} is listed in EXPLAINED but accounts for no failure: remove it")


# --------------------------------------------------------------------------- lists of passes


def passes_file(corpus: str) -> Path:
    return PASSES_DIR / f"{corpus}.passes"


def write_passes(corpus: str, results: Mapping[str, str]) -> None:
    passed = sorted(item for item, result in results.items() if result == "passed")
    header = (
        f"# flax {SOURCE}'s {corpus} that pass natively on flax {SOURCE} "
        f"(jax {upstream_suite.jax_version()}); written by python -m tools.migrated_corpus "
        "--regenerate\n"
    )
    PASSES_DIR.mkdir(exist_ok=True)
    passes_file(corpus).write_text(header + "\n".join(passed) + "\n")
    print(f"wrote {len(passed)} items to {passes_file(corpus)}")


def read_passes(corpus: str) -> set[str]:
    path = passes_file(corpus)
    if not path.exists():
        raise SystemExit(
            f"no list of natively passing {corpus} ({path}); make it where flax {SOURCE} is "
            "installed with: python -m tools.migrated_corpus --work DIR --regenerate"
        )
    return upstream_suite.read_listing(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="downloads and copies")
    parser.add_argument("--corpus", action="append", choices=CORPORA, help="default: all")
    parser.add_argument("--mode", choices=MODES, default="migrated")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--notebook-format",
        choices=("ipynb", "md"),
        default="ipynb",
        help="migrate and run the .ipynb notebooks, or their MyST .md pairs",
    )
    parser.add_argument(
        "--regenerate",
        action="store_true",
        help=f"run unmigrated on flax {SOURCE} and rewrite the lists of passes",
    )
    args = parser.parse_args(argv)
    release = upstream_suite.flax_version()
    corpora = args.corpus or list(CORPORA)
    args.work.mkdir(parents=True, exist_ok=True)
    archive = upstream_suite.sdist(SOURCE, args.work)
    if args.regenerate:
        if release != SOURCE:
            raise SystemExit(f"--regenerate runs on flax {SOURCE}; flax {release} is installed")
        for corpus in corpora:
            root = args.work / f"flax-{release}" / "native" / corpus
            extract(archive, root, [corpus])
            outcome = run_corpus(
                corpus,
                root,
                mode=None,
                target=SOURCE,
                jobs=args.jobs,
                notebook_format="ipynb",
                only=None,
            )
            write_passes(corpus, outcome.results)
        return 0
    if generation(release) not in EXPLAINED:
        raise SystemExit(f"flax {release} is no migration target (0.11.x or 0.12.x)")
    if args.mode == "shim" and "tests" in corpora:
        corpora.remove("tests")
        print(
            f"[tests] flax {SOURCE}'s tests through nnx_compat: python -m tools.upstream_suite "
            f"--source-release {SOURCE}"
        )
    from nnx_compat.codemod import runtime_only  # the tool's process, not the native runs

    runtime = {p.id for p in runtime_only(generation(release))}
    status = 0
    for corpus in corpora:
        expected = read_passes(corpus)
        root = args.work / f"flax-{release}" / args.mode / corpus
        extract(archive, root, [corpus])
        outcome = run_corpus(
            corpus,
            root,
            mode=args.mode,
            target=generation(release),
            jobs=args.jobs,
            notebook_format=args.notebook_format,
            only=expected if corpus == "toys" else None,
        )
        label = (
            f"flax {release}, migrated --target {generation(release)}"
            if args.mode == "migrated"
            else f"flax {release}, unmigrated through nnx_compat"
        )
        listed = {
            key: why
            for key, why in explained(release).items()
            if args.mode == "migrated" and item_corpus(key) == corpus
        }
        comparison = compare(expected, outcome, listed)
        report(corpus, label, comparison)
        # shown, not failed on: gaps of the migration's reports, for its rules to close
        gaps = unreported(listed, outcome.manual, runtime) if args.mode == "migrated" else {}
        for record, count in gaps.items():
            print(f"  not reported by nnx-compat migrate: [{record}] ({count} listed)")
        if args.mode == "migrated" and not comparison.holds:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
