"""No harm, checked: flax's own NNX test suite, run through nnx_compat.

For the installed flax release, this downloads flax's sdist, extracts its ``tests/nnx`` and runs
it three ways, always with the same interpreter, environment and pytest configuration (flax's
own ``[tool.pytest.ini_options]``, warnings as errors included):

* ``native``: as flax ships it;
* ``shim``: with ``flax.nnx`` imports swapped for ``nnx_compat.nnx`` and nothing else changed
  (``from flax import nnx``, ``import flax.nnx as nnx``, ``from flax.nnx import Name``; imports
  of flax's submodules, ``from flax.nnx.nn import initializers``, stay as they are);
* ``install``: the tests unchanged, ``nnx_compat.install()`` active from a ``conftest.py``.

The natively passing tests of each release are kept in ``tools/upstream/flax-<release>.passes``
(regenerate with ``--regenerate``); a run of ``shim`` or ``install`` fails if any of them does not
pass, and prints each with its error. Usage::

    python -m tools.upstream_suite --work DIR [--mode shim --mode install] [--jobs N]
    python -m tools.upstream_suite --work DIR --regenerate
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
PASSES_DIR = HERE / "upstream"
MODES = ("native", "shim", "install")

#: The import forms of flax.nnx that the shim mode swaps, with their replacements.
SWAPS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(\s*)import flax\.nnx as (\w+)", re.M), r"\1from nnx_compat import nnx as \2"),
    (re.compile(r"^(\s*)from flax\.nnx import ", re.M), r"\1from nnx_compat.nnx import "),
)
#: ``from flax import a, nnx, b``: nnx is taken out and imported from nnx_compat on the same line.
FROM_FLAX = re.compile(r"^(?P<indent>[ \t]*)from flax import (?P<names>[\w ,]+?)[ \t]*$", re.M)


#: flax's tests that assert the installed flax *rejects* a flax 0.10 form which nnx_compat bridges
#: by design (where flax fails on a 0.10 call, nnx_compat makes it work, with a warning), per flax
#: line: test id -> the id of the pattern that bridges it. Each must fail through nnx_compat for
#: that reason alone (its failure names the pattern, or says the expected error was not raised),
#: and a listed test that passes is reported as stale.
BRIDGED_REJECTIONS: dict[str, dict[str, str]] = {
    "0.12": {
        # a plain list attribute filled with an array after its assignment
        "tests.nnx.graph_utils_test.TestGraphUtils::test_data_after_init": "list-attribute",
        # a Variable / a Module in a plain list attribute of a dataclass Module
        "tests.nnx.module_test.TestModuleDataclass::test_variable_in_static_list": "list-attribute",
        "tests.nnx.module_test.TestModuleDataclass::test_module_in_static_list": "list-attribute",
    },
}


def bridged_rejections(release: str) -> dict[str, str]:
    """The :data:`BRIDGED_REJECTIONS` of a release's line (``0.12.8`` -> ``0.12``)."""
    return BRIDGED_REJECTIONS.get(".".join(release.split(".")[:2]), {})


INSTALL_CONFTEST = '''"""nnx_compat.install() is in effect for every test (flax's own tests)."""

import nnx_compat

nnx_compat.install()
'''


def flax_version() -> str:
    return importlib.metadata.version("flax")


def jax_version() -> str:
    return importlib.metadata.version("jax")


def sdist(release: str, work: Path) -> Path:
    """flax's sdist for ``release`` under ``work`` (downloaded once)."""
    archive = work / f"flax-{release}.tar.gz"
    if not archive.exists():
        download = work / "download"
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:"]
        subprocess.run([*pip, "--no-deps", f"flax=={release}", "-d", str(download)], check=True)
        (found,) = download.glob(f"flax-{release}.tar.gz")
        found.replace(archive)
    return archive


def pytest_ini(pyproject: bytes) -> str:
    """flax's ``[tool.pytest.ini_options]`` as a ``pytest.ini``."""
    options = tomllib.loads(pyproject.decode())["tool"]["pytest"]["ini_options"]
    lines = ["[pytest]"]
    for key, value in options.items():
        if isinstance(value, list):
            lines.append(f"{key} =")
            lines.extend(f"    {item}" for item in value)
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def swap_imports(source: str) -> tuple[str, int]:
    """``source`` with its flax.nnx imports served by nnx_compat, and how many were swapped."""
    swapped = 0

    def from_flax(match: re.Match[str]) -> str:
        nonlocal swapped
        names = [name.strip() for name in match["names"].split(",")]
        ours = [name for name in names if name.split(" as ")[0].strip() == "nnx"]
        if not ours:
            return match[0]
        swapped += 1
        rest = [name for name in names if name not in ours]
        head = f"from flax import {', '.join(rest)}; " if rest else ""
        return f"{match['indent']}{head}from nnx_compat import {', '.join(ours)}"

    source = FROM_FLAX.sub(from_flax, source)
    for pattern, replacement in SWAPS:
        source, count = pattern.subn(replacement, source)
        swapped += count
    return source, swapped


def prepare(release: str, mode: str, work: Path) -> Path:
    """A directory holding flax's ``tests/nnx`` for ``mode`` and its pytest configuration."""
    root = work / release / mode
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    prefix = f"flax-{release}/"
    swapped = 0
    with tarfile.open(sdist(release, work)) as archive:
        for member in archive.getmembers():
            name = member.name
            if name == prefix + "pyproject.toml":
                data = archive.extractfile(member).read()  # type: ignore[union-attr]
                (root / "pytest.ini").write_text(pytest_ini(data))
            elif name.startswith(prefix + "tests/nnx/") and member.isfile():
                target = root / name[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                data = archive.extractfile(member).read()  # type: ignore[union-attr]
                if mode == "shim" and name.endswith(".py"):
                    text, count = swap_imports(data.decode())
                    swapped += count
                    data = text.encode()
                target.write_bytes(data)
    if mode == "shim":
        if swapped == 0:
            raise SystemExit(f"no flax.nnx import was swapped in flax {release}'s tests")
        print(f"[{mode}] {swapped} flax.nnx imports now read nnx_compat.nnx")
    if mode == "install":
        (root / "conftest.py").write_text(INSTALL_CONFTEST)
    return root


def outcomes(junit: Path) -> dict[str, str]:
    """Test id -> ``passed``, ``failed``, ``error`` or ``skipped``, from pytest's JUnit XML."""
    results: dict[str, str] = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        if "error" in kinds:
            results[test_id] = "error"
        elif "failure" in kinds:
            results[test_id] = "failed"
        elif "skipped" in kinds:
            results[test_id] = "skipped"
        else:
            results[test_id] = "passed"
    return results


def messages(junit: Path, wanted: Iterable[str]) -> dict[str, str]:
    """The first line of the failure of each test in ``wanted``."""
    wanted = set(wanted)
    found: dict[str, str] = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        if test_id in wanted:
            for child in case:
                if child.tag in ("failure", "error"):
                    found[test_id] = ((child.get("message") or "").splitlines() or [""])[0]
    return found


def run(release: str, mode: str, work: Path, jobs: int) -> tuple[dict[str, str], Path]:
    root = prepare(release, mode, work)
    junit = root / "junit.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/nnx",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
    ]
    if jobs > 1:
        command += ["-n", str(jobs)]
    started = time.perf_counter()
    # flax's tests run on their own defaults (one host device), as the list of passes was made
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    completed = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if not junit.exists():
        sys.stdout.write(completed.stdout[-5000:] + completed.stderr[-5000:])
        raise SystemExit(f"[{mode}] pytest wrote no report (exit status {completed.returncode})")
    results = outcomes(junit)
    counts = {
        kind: sum(1 for v in results.values() if v == kind)
        for kind in sorted(set(results.values()))
    }
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    print(f"[{mode}] flax {release}: {summary} in {elapsed:.0f} s")
    return results, junit


def passes_file(release: str) -> Path:
    return PASSES_DIR / f"flax-{release}.passes"


def write_passes(release: str, results: dict[str, str]) -> None:
    passed = sorted(test for test, outcome in results.items() if outcome == "passed")
    header = (
        f"# flax {release}'s tests/nnx that pass natively (jax {jax_version()}); "
        f"written by python -m tools.upstream_suite --regenerate\n"
    )
    PASSES_DIR.mkdir(exist_ok=True)
    passes_file(release).write_text(header + "\n".join(passed) + "\n")
    print(f"wrote {len(passed)} tests to {passes_file(release)}")


def read_passes(release: str) -> set[str]:
    path = passes_file(release)
    if not path.exists():
        raise SystemExit(
            f"no list of natively passing tests for flax {release} ({path}); "
            "make it with: python -m tools.upstream_suite --work DIR --regenerate"
        )
    lines = path.read_text().splitlines()
    return {line for line in lines if line and not line.startswith("#")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="downloads and test copies")
    parser.add_argument("--mode", action="append", choices=MODES[1:], help="default: both")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--regenerate", action="store_true", help="run natively and rewrite the list of passes"
    )
    args = parser.parse_args(argv)
    release = flax_version()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.regenerate:
        results, _ = run(release, "native", args.work, args.jobs)
        write_passes(release, results)
        return 0
    expected = read_passes(release)
    status = 0
    for mode in args.mode or MODES[1:]:
        results, junit = run(release, mode, args.work, args.jobs)
        if not compare(mode, expected, results, junit, bridged_rejections(release)):
            status = 1
    return status


def compare(
    mode: str,
    expected: set[str],
    results: dict[str, str],
    junit: Path,
    rejections: dict[str, str],
) -> bool:
    """Prints how the run compares with the natively passing tests; whether it holds.

    ``rejections`` are the release's :data:`BRIDGED_REJECTIONS`.
    """

    def bridged(test: str) -> bool:
        pattern = rejections.get(test)
        reason = reasons.get(test, "")
        return pattern is not None and (
            f"nnx-compat: {pattern}" in reason or "not raised" in reason
        )

    lost = sorted(test for test in expected if results.get(test) != "passed")
    reasons = messages(junit, lost)
    harmed = [test for test in lost if not bridged(test)]
    stale = sorted(t for t in rejections if t in expected and results.get(t) == "passed")
    kept = len(expected) - len(lost)
    print(f"[{mode}] {kept} of {len(expected)} natively passing tests pass")
    for test in lost:
        if test not in harmed:
            print(f"  expected: {test} asserts that flax rejects [{rejections[test]}]")
    if harmed:
        print(f"[{mode}] {len(harmed)} natively passing tests do not pass through nnx_compat:")
        for test in harmed:
            outcome = results.get(test, "not collected")
            print(f"  {test}: {outcome} {reasons.get(test, '')[:600]}")
    for test in stale:
        print(f"  stale: {test} is listed in BRIDGED_REJECTIONS but passes; remove it")
    return not harmed and not stale


if __name__ == "__main__":
    sys.exit(main())
