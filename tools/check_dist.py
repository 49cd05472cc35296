"""Builds the sdist and the wheel and checks what they contain (``tox -e package``).

The wheel holds the package (every module under ``nnx_compat/``, ``py.typed``), the license
file the metadata names, and nothing of the repository's tests, tools or benchmarks; the sdist
holds all of those, so that the tests run from it. A file added to the package but left out of a
distribution, or a tool leaking into the wheel, fails here.

Usage: ``python -m tools.check_dist OUTDIR`` (builds into OUTDIR with ``python -m build``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "nnx_compat"
#: What the sdist must hold besides the package (the tests run from it).
SDIST_EXTRA = ("LICENSE", "README.md", "CHANGELOG.md", "tox.ini", "pyproject.toml")
SDIST_TREES = ("tests", "tools", "benchmarks", "docs")


def package_files() -> set[str]:
    """The package's files in the repository, as paths relative to the root."""
    return {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / PACKAGE).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def tracked(tree: str) -> set[str]:
    """The files git tracks under ``tree``."""
    out = subprocess.run(
        ["git", "ls-files", tree], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(out.stdout.split())


def check_wheel(path: Path) -> list[str]:
    problems = []
    with zipfile.ZipFile(path) as wheel:
        names = set(wheel.namelist())
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(wheel.read(metadata_name).decode())
        (entry_points_name,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = wheel.read(entry_points_name).decode()
    missing = sorted(package_files() - names)
    if missing:
        problems.append(f"wheel lacks {missing}")
    leaked = sorted(n for n in names if n.split("/")[0] in SDIST_TREES)
    if leaked:
        problems.append(f"wheel holds repository files {leaked[:5]}")
    if "[pytest11]\nnnx_compat = nnx_compat.pytest_plugin" not in entry_points:
        problems.append("wheel lacks the pytest11 entry point of the plugin")
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        problems.append("wheel lacks the LICENSE file")
    if metadata.get("License-Expression") != "Apache-2.0":
        problems.append(f"License-Expression is {metadata.get('License-Expression')!r}")
    if "LICENSE" not in (metadata.get_all("License-File") or []):
        problems.append("METADATA names no License-File: LICENSE")
    return problems


def check_sdist(path: Path) -> list[str]:
    with tarfile.open(path) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    wanted = package_files() | set(SDIST_EXTRA)
    for tree in SDIST_TREES:
        wanted |= {n for n in tracked(tree) if "__pycache__" not in n}
    missing = sorted(wanted - names)
    return [f"sdist lacks {missing[:10]}{' ...' if len(missing) > 10 else ''}"] if missing else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    args = parser.parse_args(argv)
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(args.outdir), str(ROOT)],
        check=True,
    )
    (wheel,) = args.outdir.glob("*.whl")
    (sdist,) = args.outdir.glob("*.tar.gz")
    problems = check_wheel(wheel) + check_sdist(sdist)
    for problem in problems:
        print(f"check_dist: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_dist: {wheel.name} and {sdist.name} hold what they should")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
