"""flax 0.12.8's own NNX guides, run on the installed flax through nnx_compat.

This downloads flax 0.12.8's sdist (once, under ``--work``), takes every notebook of its
``docs_nnx`` (the ``.ipynb`` files: the guides, the top-level notebooks and the examples; a MyST
``.md`` pair holds the same cells) and runs each notebook's code cells in order in a Jupyter
kernel of its own (nbclient, as ``tools.migrated_corpus`` runs flax 0.10.7's notebooks: every
cell runs whatever the earlier ones did; cells of shell commands are not run). An item is a cell,
``docs_nnx/guides/view.ipynb:cell 12`` (cells numbered as Jupyter counts all cells).

* ``--regenerate``, with flax 0.12.8 installed: the notebooks as flax ships them; the cells that
  pass are written to ``tools/guides/flax-0.12.8.passes``. Cells that need what is not there (a
  download, a data set's package, a GPU) fail and are not listed.
* otherwise, on flax 0.10.x or 0.11.x (or 0.12.x): every import of ``flax.nnx`` in the
  notebooks is served by ``nnx_compat.nnx`` (:func:`swap_imports`), nothing else changes, and
  every natively passing cell must pass, unless ``tools/guides/listed-<line>.txt`` lists it
  with the text its failure shows (a name or member the installed flax cannot serve: the error of
  ``nnx_compat._added.missing``, say). A cell that fails after an earlier cell failed, on a
  name that cell was to define, is listed with the reason of the cell it follows (its root).
  A listed cell that passes, or fails for another reason, is reported (stale, unexplained).

The last line of a run is its verdict. Usage::

    python -m tools.upstream_guides --work DIR [--notebook PATTERN ...] [--jobs N]
    python -m tools.upstream_guides --work DIR --regenerate          # on flax 0.12.8
    python -m tools.upstream_guides --work DIR --write-listed        # on flax 0.10.x, 0.11.x
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import dataclasses
import fnmatch
import json
import os
import re
import shutil
import sys
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path

from tools import migrated_corpus, upstream_suite

HERE = Path(__file__).resolve().parent
LISTS = HERE / "guides"
#: The release whose guides run.
SOURCE = "0.12.8"
#: Where the notebooks are in the sdist (below its top folder).
PLACE = "docs_nnx/"
#: Seconds one cell may take (the slowest natively passing cell, an L-BFGS loop of the
#: optimization cookbook, takes about 4 minutes on 2 cores).
CELL_TIMEOUT = 600

# --------------------------------------------------------------------------- swapping imports

#: A ``from flax import ...`` or ``import flax.nnx ...`` line with a comment after it.
_IMPORT_WITH_COMMENT = re.compile(
    r"^(?P<code>[ \t]*(?:from flax(?:\.nnx)? import|import flax\.nnx)\b[^#\n]*?)"
    r"(?P<comment>[ \t]*#.*)$",
    re.M,
)
#: The imports of flax.nnx that :func:`swap_imports` does not serve (what is left after it).
_NNX_IMPORT = re.compile(
    r"^[ \t]*(?:from flax import (?:[^#\n(;]*\bnnx\b|\([^)]*\bnnx\b[^)]*\))"
    r"|from flax\.nnx\b|import flax\.nnx\b)",
    re.M,
)


def swap_imports(source: str) -> tuple[str, int]:
    """``source`` with its flax.nnx imports served by nnx_compat, and how many were swapped.

    The forms of :func:`tools.upstream_suite.swap_imports` (``from flax import nnx``,
    ``import flax.nnx as nnx``, ``from flax.nnx import bridge``), also with a comment after the
    import, which stays.
    """
    swapped = 0

    def with_comment(match: re.Match[str]) -> str:
        nonlocal swapped
        code, count = upstream_suite.swap_imports(match["code"])
        swapped += count
        return code + match["comment"]

    source = _IMPORT_WITH_COMMENT.sub(with_comment, source)
    source, count = upstream_suite.swap_imports(source)
    return source, swapped + count


def unswapped(source: str) -> list[str]:
    """The imports of flax.nnx left in ``source`` (after :func:`swap_imports`: none)."""
    return [match[0].strip() for match in _NNX_IMPORT.finditer(source)]


def swap_notebook(notebook: dict[str, object]) -> int:
    """Swaps the flax.nnx imports of a notebook's code cells in place; how many.

    Raises:
        SystemExit: A cell imports flax.nnx in a form :func:`swap_imports` does not serve.
    """
    swapped = 0
    cells = notebook.get("cells", [])
    assert isinstance(cells, list)
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source, count = swap_imports(migrated_corpus._source(cell))
        left = unswapped(source)
        if left:
            raise SystemExit(f"an import of flax.nnx that nnx_compat does not serve: {left[0]}")
        cell["source"], swapped = source, swapped + count
    return swapped


# --------------------------------------------------------------------------- the notebooks


def extract(archive: Path, root: Path) -> None:
    """``docs_nnx`` of flax's sdist under ``root`` (emptied first)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    top = f"flax-{SOURCE}/"
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith(top + PLACE):
                data = tar.extractfile(member)
                assert data is not None
                target = root / member.name[len(top) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data.read())


def notebooks(root: Path) -> list[str]:
    """The notebooks of ``docs_nnx`` (paths relative to ``root``)."""
    return sorted(str(p.relative_to(root)) for p in (root / PLACE).rglob("*.ipynb"))


def notebook_of(item: str) -> str:
    """``docs_nnx/nnx_basics.ipynb:cell 3`` -> ``docs_nnx/nnx_basics.ipynb``."""
    return item.rsplit(":cell ", 1)[0]


def cell_number(item: str) -> int:
    return int(item.rsplit(":cell ", 1)[1])


def cell_sources(notebook: Mapping[str, object], name: str) -> dict[str, str]:
    """Item -> source of each code cell of a notebook (numbered as :func:`cell_outcomes`)."""
    cells = notebook.get("cells", [])
    assert isinstance(cells, list)
    return {
        f"{name}:cell {number}": migrated_corpus._source(cell)
        for number, cell in enumerate(cells, start=1)
        if cell.get("cell_type") == "code"
    }


_UNDEFINED = re.compile(r"^NameError: name '(?P<name>\w+)' is not defined")


def bound_names(source: str) -> set[str]:
    """The names a cell binds (assigns, defines, imports, loops over), anywhere in it; lines of
    IPython magics and shell commands are left out. A cell that does not parse binds every
    name it holds."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return set(re.findall(r"\b[A-Za-z_]\w*\b", source))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def roots(errors: Mapping[str, str], sources: Mapping[str, str]) -> dict[str, str]:
    """For each failed cell of one notebook (``errors``: item -> its error), the cell whose
    failure it follows: a cell whose error is that a name is not defined follows the last
    failed cell before it that binds that name (:func:`bound_names`), and that cell's root;
    any other cell is its own root."""
    found: dict[str, str] = {}
    order = sorted(errors, key=cell_number)
    for index, item in enumerate(order):
        found[item] = item
        undefined = _UNDEFINED.match(errors[item])
        if undefined is None:
            continue
        for earlier in reversed(order[:index]):
            if undefined["name"] in bound_names(sources.get(earlier, "")):
                found[item] = found[earlier]
                break
    return found


@dataclasses.dataclass
class Outcome:
    """A run of some notebooks: item -> passed/failed/..., item -> its error, item -> the item
    whose failure it follows (:func:`roots`), notebook -> seconds it ran."""

    results: dict[str, str] = dataclasses.field(default_factory=dict)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    roots: dict[str, str] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


def run(root: Path, names: list[str], *, swap: bool, jobs: int, timeout: int) -> Outcome:
    """Runs the notebooks ``names`` (under ``root``), their flax.nnx imports swapped or not,
    each in a kernel of its own, ``jobs`` at a time."""
    if swap:
        swapped = 0
        for name in names:
            path = root / name
            notebook = json.loads(path.read_text())
            swapped += swap_notebook(notebook)
            path.write_text(json.dumps(notebook, indent=1))
        if names and swapped == 0:
            raise SystemExit("no flax.nnx import was swapped in the notebooks")
        print(f"{swapped} flax.nnx imports now read nnx_compat.nnx")
    env = migrated_corpus.native_env(root.parent, shim=swap)

    def one(name: str) -> tuple[str, migrated_corpus.Outcome, float]:
        started = time.perf_counter()
        done = migrated_corpus.run_notebooks(root, env, [root / name], 1, timeout=timeout)
        return name, done, time.perf_counter() - started

    outcome = Outcome()
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        for name, done, seconds in pool.map(one, names):
            outcome.results.update(done.results)
            outcome.errors.update(done.reasons)
            failed = {
                item: done.reasons.get(item, "")
                for item, result in done.results.items()
                if result in ("failed", "not run")
            }
            sources = cell_sources(json.loads((root / name).read_text()), name)
            outcome.roots.update(roots(failed, sources))
            outcome.seconds[name] = seconds
    return outcome


# --------------------------------------------------------------------------- comparing


def read_listed(text: str) -> dict[str, str]:
    """``item | reason`` lines (``#`` comments): item (or an ``fnmatch`` pattern of items) ->
    the text its failure, or its root's, shows."""
    listed: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        item, bar, reason = (part.strip() for part in line.partition(" | "))
        if not bar or not reason:
            raise ValueError(f"line {number}: {line!r} is not `item | reason`")
        if item in listed:
            raise ValueError(f"line {number}: {item} is listed twice")
        listed[item] = reason
    return listed


@dataclasses.dataclass
class Comparison:
    """How a run compares with the natively passing cells."""

    expected: list[str]
    kept: list[str]
    #: item -> the listed reason it fails for
    listed: dict[str, str]
    #: item -> what happened: natively passing, failing, not accounted for
    unexplained: dict[str, str]
    #: listed keys that account for no failure (their cells pass, or pass nowhere natively)
    stale: list[str]

    @property
    def holds(self) -> bool:
        return not self.unexplained and not self.stale


def first_line(error: str) -> str:
    return (error.splitlines() or [""])[0]


def compare(expected: set[str], outcome: Outcome, listed: Mapping[str, str]) -> Comparison:
    """Compares a run with the natively passing cells and the listed failures.

    A failing cell is accounted for by a key of ``listed`` naming it whose reason is in its
    error or in the error of its root (:func:`roots`); a listed cell failing otherwise is
    unexplained, and a key that names no failing natively passing cell is stale.
    """
    order = sorted(expected, key=lambda item: (notebook_of(item), cell_number(item)))
    kept, accounted, unexplained = [], {}, {}
    used: set[str] = set()
    for item in order:
        result = outcome.results.get(item, "not run")
        if result == "passed":
            kept.append(item)
            continue
        error = outcome.errors.get(item, "")
        root = outcome.roots.get(item, item)
        texts = [error] if root == item else [error, outcome.errors.get(root, "")]
        keys = [key for key in listed if fnmatch.fnmatchcase(item, key)]
        fitting = [key for key in keys if any(listed[key] in text for text in texts)]
        used.update(keys)  # a listed cell failing otherwise is unexplained, not stale
        if fitting:
            accounted[item] = listed[fitting[0]]
            continue
        why = f"{result}: {first_line(error)}".strip()
        if root != item:
            why += f" (after {root}: {first_line(outcome.errors.get(root, ''))})"
        if keys:
            why += " (listed for " + "; ".join(repr(listed[key]) for key in keys) + ")"
        unexplained[item] = why
    stale = sorted(key for key in listed if key not in used)
    return Comparison(order, kept, accounted, unexplained, stale)


def per_notebook(comparison: Comparison, seconds: Mapping[str, float]) -> list[str]:
    """A line per notebook with natively passing cells: how many pass, are listed, are not
    explained, and how long it ran."""
    lines = []
    for name in sorted({notebook_of(item) for item in comparison.expected}):
        mine = [item for item in comparison.expected if notebook_of(item) == name]
        kept = sum(item in comparison.kept for item in mine)
        listed = sum(item in comparison.listed for item in mine)
        unexplained = sum(item in comparison.unexplained for item in mine)
        took = f" in {seconds[name]:.0f} s" if name in seconds else ""
        lines.append(
            f"{name}: {kept}/{len(mine)} pass, {listed} listed, {unexplained} unexplained{took}"
        )
    return lines


def verdict(release: str, comparison: Comparison) -> str:
    """The last line of a run."""
    return (
        f"guides on flax {release}: {len(comparison.kept)}/{len(comparison.expected)} natively "
        f"passing cells pass through nnx_compat; {len(comparison.listed)} listed; "
        f"{len(comparison.unexplained)} unexplained; {len(comparison.stale)} stale"
    )


def report(release: str, comparison: Comparison, seconds: Mapping[str, float]) -> None:
    for line in per_notebook(comparison, seconds):
        print(f"  {line}")
    for item, reason in comparison.listed.items():
        print(f"  listed: {item}: {reason}")
    for item, why in comparison.unexplained.items():
        print(f"  UNEXPLAINED: {item}: {why[:600]}")
    for key in comparison.stale:
        print(f"  stale: {key} is listed but accounts for no failure: remove it")
    print(verdict(release, comparison))


# --------------------------------------------------------------------------- the lists


def line_of(release: str) -> str:
    """``0.11.2`` -> ``0.11``."""
    return ".".join(release.split(".")[:2])


def passes_file() -> Path:
    return LISTS / f"flax-{SOURCE}.passes"


def listed_file(release: str) -> Path:
    return LISTS / f"listed-{line_of(release)}.txt"


def read_passes() -> set[str]:
    path = passes_file()
    if not path.exists():
        raise SystemExit(
            f"no list of natively passing cells ({path}); make it where flax {SOURCE} is "
            "installed with: python -m tools.upstream_guides --work DIR --regenerate"
        )
    return upstream_suite.read_listing(path)


def write_passes(results: Mapping[str, str]) -> None:
    passed = sorted(
        (item for item, result in results.items() if result == "passed"),
        key=lambda item: (notebook_of(item), cell_number(item)),
    )
    header = (
        f"# the cells of flax {SOURCE}'s docs_nnx notebooks that pass natively on flax {SOURCE} "
        f"(jax {upstream_suite.jax_version()}); written by python -m tools.upstream_guides "
        "--regenerate\n"
    )
    LISTS.mkdir(exist_ok=True)
    passes_file().write_text(header + "\n".join(passed) + "\n")
    print(f"wrote {len(passed)} cells to {passes_file()}")


#: Where the reason of a listed failure ends: the first sentence or clause of the error's first
#: line (``nnx.X needs flax 0.12.6 or newer`` of nnx_compat's errors, without the advice after
#: it), before what changes from one run or machine to another: an object's address, the
#: kernel's file of a cell, an absolute path (of the environment's site-packages, say).
_REASON_END = re.compile(
    r"\. |; | \(| (?:object )?at 0x[0-9a-f]+|\S*ipykernel_\d+|[ (]/[\w.-]+/\S*"
)


def reason_of(error: str) -> str:
    """The text a listed failure must show, from its (root's) error: the first clause of its
    first line (:data:`_REASON_END`), at most 200 characters."""
    line = _REASON_END.split(first_line(error))[0].strip()
    return line[:200].rstrip()


def listing(comparison: Comparison, outcome: Outcome) -> dict[str, str]:
    """The listed failures a run shows: each failing natively passing cell with the reason it
    is listed with, where that accounts for it, else its root's error (:func:`reason_of`)."""
    written = dict(comparison.listed)
    for item in comparison.unexplained:
        written[item] = reason_of(outcome.errors.get(outcome.roots.get(item, item), ""))
    return dict(sorted(written.items(), key=lambda kv: (notebook_of(kv[0]), cell_number(kv[0]))))


def write_listed(release: str, listed: Mapping[str, str]) -> None:
    header = (
        f"# The cells of flax {SOURCE}'s docs_nnx notebooks that pass natively there but fail "
        f"through\n# nnx_compat on flax {line_of(release)}.x (tools/upstream_guides.py): "
        "item | text its failure shows, or that of\n# the cell it follows (the root of a "
        "NameError). Each must fail for that reason; one that\n# passes is stale. Written by "
        f"python -m tools.upstream_guides --write-listed on flax {release}.\n"
    )
    LISTS.mkdir(exist_ok=True)
    lines = [f"{item} | {reason}" for item, reason in listed.items()]
    listed_file(release).write_text(header + "".join(f"{line}\n" for line in lines))
    print(f"wrote {len(lines)} cells to {listed_file(release)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="download and copies")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cell-timeout", type=int, default=CELL_TIMEOUT, metavar="SECONDS")
    parser.add_argument(
        "--notebook",
        action="append",
        metavar="PATTERN",
        help="only the notebooks whose path matches (fnmatch: '*/view.ipynb'); default all",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--regenerate",
        action="store_true",
        help=f"run natively on flax {SOURCE} and rewrite the list of passing cells",
    )
    what.add_argument(
        "--write-listed",
        action="store_true",
        help="rewrite the installed flax line's list of failing cells from this run",
    )
    args = parser.parse_args(argv)
    release = upstream_suite.flax_version()
    if args.regenerate and release != SOURCE:
        raise SystemExit(f"--regenerate runs on flax {SOURCE}; flax {release} is installed")
    if args.notebook and (args.regenerate or args.write_listed):
        raise SystemExit("--regenerate and --write-listed run every notebook")
    args.work.mkdir(parents=True, exist_ok=True)
    archive = upstream_suite.sdist(SOURCE, args.work)
    mode = "native" if args.regenerate else "nnx_compat"
    root = args.work / f"on-flax-{release}" / mode
    extract(archive, root)
    names = [
        name
        for name in notebooks(root)
        if not args.notebook or any(fnmatch.fnmatchcase(name, p) for p in args.notebook)
    ]
    if args.regenerate:
        outcome = run(root, names, swap=False, jobs=args.jobs, timeout=args.cell_timeout)
        for name, seconds in sorted(outcome.seconds.items()):
            passed = sum(
                1 for i, r in outcome.results.items() if notebook_of(i) == name and r == "passed"
            )
            print(f"  {name}: {passed} cells pass in {seconds:.0f} s")
        write_passes(outcome.results)
        return 0
    expected = read_passes()
    path = listed_file(release)
    listed = read_listed(path.read_text()) if path.exists() else {}
    wanted = {notebook_of(item) for item in expected}
    names = [name for name in names if name in wanted]
    if args.notebook:  # the cells of the other notebooks are not measured
        expected = {item for item in expected if notebook_of(item) in names}
        listed = {
            key: reason
            for key, reason in listed.items()
            if any(fnmatch.fnmatchcase(notebook_of(key), name) for name in names)
        }
    started = time.perf_counter()
    outcome = run(root, names, swap=True, jobs=args.jobs, timeout=args.cell_timeout)
    print(f"{len(names)} notebooks in {time.perf_counter() - started:.0f} s")
    comparison = compare(expected, outcome, listed)
    if args.write_listed:
        write_listed(release, listing(comparison, outcome))
    report(release, comparison, outcome.seconds)
    return 0 if comparison.holds or args.write_listed else 1


if __name__ == "__main__":
    sys.exit(main())
