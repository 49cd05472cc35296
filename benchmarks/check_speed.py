"""Wall time of ``nnx-compat check`` over a large real tree, serial and in parallel.

By default the tree is the installed flax's own source (flax 0.10.7: about 100,000 lines of
Python), checked with ``--native`` (every matcher runs). Each variant runs ``--rounds`` times in
a fresh interpreter, as a user runs the command; the median is reported.

Usage: ``python -m benchmarks.check_speed [PATH] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _installed_flax() -> Path:
    spec = importlib.util.find_spec("flax")
    if spec is None or spec.origin is None:
        raise SystemExit("no flax installed: pass the tree to check as PATH")
    return Path(spec.origin).parent


def _lines(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*.py") if "__pycache__" not in p.parts]
    return len(files), sum(len(p.read_bytes().splitlines()) for p in files)


def _run(root: Path, jobs: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "nnx_compat", "check", str(root), "--native", f"--jobs={jobs}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    root = args.path or _installed_flax()
    files, lines = _lines(root)
    cpus = os.cpu_count() or 1
    print(f"{root}: {files} files, {lines} lines; {cpus} CPUs")
    for jobs in sorted({1, cpus}):
        times = [_run(root, jobs) for _ in range(args.rounds)]
        median = statistics.median(times)
        rate = f"{lines / median:,.0f} lines/s"
        print(f"  --jobs {jobs}: {median:.2f} s (median of {args.rounds}; {rate})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
