"""What ``import nnx_compat`` and ``from nnx_compat import nnx`` add over ``import flax.nnx``.

Each measurement is a fresh interpreter that times its own imports; the two variants alternate
so that drift in the machine's load affects both. Usage: ``python benchmarks/import_cost.py [N]``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

BASELINE = "import flax.nnx"
VARIANTS = {
    "import nnx_compat": "import nnx_compat",
    "from nnx_compat import nnx": "from nnx_compat import nnx",
}
TEMPLATE = """
import time
t0 = time.perf_counter()
{baseline}
t1 = time.perf_counter()
{extra}
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def measure(extra: str) -> tuple[float, float]:
    code = TEMPLATE.format(baseline=BASELINE, extra=extra)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    base, added = (float(x) for x in out.stdout.split())
    return base, added


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    measure("pass")  # warm the file cache
    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    bases: list[float] = []
    for _ in range(runs):
        for name, extra in VARIANTS.items():
            base, added = measure(extra)
            bases.append(base)
            results[name].append(added)
    import flax

    print(f"flax {flax.__version__}, {runs} runs each, median (min) in ms")
    print(f"  {BASELINE:32} {statistics.median(bases) * 1e3:8.1f} ({min(bases) * 1e3:.1f})")
    for name, values in results.items():
        print(f"  + {name:30} {statistics.median(values) * 1e3:8.2f} ({min(values) * 1e3:.2f})")


if __name__ == "__main__":
    main()
