"""What ``import nnx_compat``, ``from nnx_compat import nnx`` and ``install()`` add over
``import flax.nnx``, against the target of at most 50 ms.

Each measurement is a fresh interpreter that times its own imports and checks that no JAX
backend was started (a started backend is most of what an import can cost, and it makes
``jax.config`` and ``jax.distributed.initialize()`` unusable afterwards); the variants alternate
so that drift in the machine's load affects all of them. Usage:
``python benchmarks/import_cost.py [N]`` (exit status 1 if a median misses the target).
"""

from __future__ import annotations

import statistics
import subprocess
import sys

TARGET_MS = 50.0
BASELINE = "import flax.nnx"
VARIANTS = {
    "import nnx_compat": "import nnx_compat",
    "from nnx_compat import nnx": "from nnx_compat import nnx",
    "... and install()": "from nnx_compat import nnx; import nnx_compat; nnx_compat.install()",
}
TEMPLATE = """
import time
t0 = time.perf_counter()
{baseline}
t1 = time.perf_counter()
{extra}
t2 = time.perf_counter()
from jax._src import xla_bridge
print(t1 - t0, t2 - t1, xla_bridge.backends_are_initialized())
"""


def measure(extra: str) -> tuple[float, float]:
    code = TEMPLATE.format(baseline=BASELINE, extra=extra)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    base, added, started = out.stdout.split()
    if started != "False":
        raise SystemExit(f"{extra!r} started a JAX backend")
    return float(base), float(added)


def main() -> int:
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

    print(f"flax {flax.__version__}, {runs} fresh interpreters each, median (min) in ms")
    print(f"  {BASELINE:34} {statistics.median(bases) * 1e3:8.1f} ({min(bases) * 1e3:.1f})")
    status = 0
    for name, values in results.items():
        median = statistics.median(values) * 1e3
        verdict = "ok" if median <= TARGET_MS else f"MISSES the {TARGET_MS:.0f} ms target"
        status |= median > TARGET_MS
        print(f"  + {name:32} {median:8.2f} ({min(values) * 1e3:.2f})  {verdict}")
    print("no variant started a JAX backend")
    return status


if __name__ == "__main__":
    sys.exit(main())
