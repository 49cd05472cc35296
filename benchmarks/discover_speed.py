"""Wall time of the file discovery of ``nnx-compat check`` and ``migrate``, and of the command.

Discovery walks the tree, reads the ``.gitignore`` files, and reads each ``.md`` file to tell a
MyST notebook from prose; it must stay a small part of ``nnx-compat check`` (which must check
100,000 lines in under 10 s on 2 cores). Timed over PATH (by default the installed flax's
source): discovery with and without ``.gitignore`` files, in this process, and the whole command
in a fresh interpreter. ``--synthetic N`` also times a generated tree of N directories, each
with its own ``.gitignore`` of 20 patterns, where matching cost would show if it grew with the
depth or the number of ignore files.

Usage: ``python -m benchmarks.discover_speed [PATH] [--rounds N] [--synthetic N]``.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from nnx_compat.cli._discover import discover


def _installed_flax() -> Path:
    spec = importlib.util.find_spec("flax")
    if spec is None or spec.origin is None:
        raise SystemExit("no flax installed: pass the tree to walk as PATH")
    return Path(spec.origin).parent


def _median(run: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _discovery(root: Path, rounds: int) -> None:
    skips: collections.Counter[str] = collections.Counter()
    files = list(discover([str(root)], on_skip=lambda _, reason: skips.update([reason])))
    lines = sum(len(Path(p).read_bytes().splitlines()) for p in files)
    print(f"{root}: {len(files)} files, {lines} lines; skipped: {dict(skips) or 'nothing'}")
    for respect in (True, False):
        median = _median(
            lambda respect=respect: list(discover([str(root)], respect_gitignore=respect)), rounds
        )
        label = "discovery" if respect else "discovery, --no-respect-gitignore"
        print(f"  {label}: {median * 1e3:.1f} ms (median of {rounds})")


def _command(root: Path, rounds: int) -> None:
    argv = [sys.executable, "-m", "nnx_compat", "check", str(root)]
    median = _median(
        lambda: subprocess.run(argv, capture_output=True, check=False), max(1, rounds // 2)
    )
    print(f"  nnx-compat check (whole command): {median:.2f} s")


def _synthetic(directories: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        (root / ".git").mkdir()
        for i in range(directories):
            # ten levels deep at most, so each file sits under up to ten ignore files
            directory = root.joinpath(*(f"d{i % (k + 2)}" for k in range(i % 10)), f"leaf{i}")
            directory.mkdir(parents=True, exist_ok=True)
            patterns = [f"gen_{i}_{k}_*.py" for k in range(19)] + ["!keep_*.py"]
            (directory / ".gitignore").write_text("\n".join(patterns) + "\n")
            for k in range(5):
                (directory / f"m{k}.py").write_text("x = 1\n")
                (directory / f"gen_{i}_{k}_x.py").write_text("x = 1\n")
        found = len(list(discover([str(root)])))
        median = _median(lambda: list(discover([str(root)])), rounds)
        entries = sum(1 for _ in root.rglob("*"))
        print(
            f"synthetic: {directories} .gitignore files, {entries} entries, {found} files found:"
            f" {median * 1e3:.1f} ms ({median / entries * 1e6:.1f} us per entry)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--synthetic", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    root = args.path or _installed_flax()
    _discovery(root, args.rounds)
    _command(root, args.rounds)
    if args.synthetic:
        _synthetic(args.synthetic, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
