"""Memory and time of ``fix_checkpoint`` on a checkpoint of about 1 GiB of parameters.

Writes a flax 0.10-layout checkpoint (16 Linear(4096, 4096) layers and a Dropout, whose shared
``Rngs`` the checkpoint carries) once, then alternates fresh interpreters that either restore
it with orbax (the baseline) or restore it and run ``nnx.fix_checkpoint``. Each child samples
its resident set size every millisecond from a thread; the baseline is its RSS after imports,
just before restoring. Reported: peak RSS above that baseline as a multiple of the checkpoint's
bytes, and the times, as ratios to the plain restore of the same round.

Usage: ``python -m benchmarks.checkpoint_memory [--rounds N] [--layers L] [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, sys, threading, time, warnings
warnings.simplefilter("ignore")
import jax, orbax.checkpoint as ocp
from nnx_compat import nnx
from benchmarks.checkpoint_memory import Big

page = os.sysconf("SC_PAGE_SIZE")

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page

class Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak = rss()
        self.running = True
    def run(self):
        while self.running:
            self.peak = max(self.peak, rss())
            time.sleep(0.001)
    def stop(self):
        self.running = False
        self.join()
        self.peak = max(self.peak, rss())
        return self.peak

mode, src, layers = sys.argv[1], sys.argv[2], int(sys.argv[3])
checkpointer = ocp.StandardCheckpointer()
jax.block_until_ready(jax.numpy.zeros(1) + 1)  # backend up before the baseline
baseline = rss()
sampler = Sampler()
sampler.start()
t0 = time.perf_counter()
restored = checkpointer.restore(src)
jax.block_until_ready(restored)
t1 = time.perf_counter()
out = {"restore_s": t1 - t0, "restored": rss() - baseline}
if mode == "fix":
    restore_peak, sampler.peak = sampler.peak, rss()
    fixed = nnx.fix_checkpoint(
        restored, lambda rngs: Big(layers, rngs=rngs), rngs=nnx.Rngs(params=0, dropout=1)
    )
    jax.block_until_ready(jax.tree.leaves(fixed))
    out["fix_s"] = time.perf_counter() - t1
    out["fix_peak"] = sampler.stop() - baseline
    sampler.peak = max(sampler.peak, restore_peak)
peak = sampler.stop()
out["peak"] = peak - baseline
print(json.dumps(out))
"""


def _big_class() -> type:
    from nnx_compat import nnx

    class Big(nnx.Module):
        """``layers`` Linear(4096, 4096) and a Dropout: 64 MiB of float32 per layer."""

        def __init__(self, layers: int, *, rngs: nnx.Rngs) -> None:
            for i in range(layers):
                setattr(self, f"linear{i}", nnx.Linear(4096, 4096, rngs=rngs))
            self.dropout = nnx.Dropout(0.1, rngs=rngs)

    return Big


def __getattr__(name: str) -> type:
    if name == "Big":
        return _big_class()
    raise AttributeError(name)


def write(path: str, layers: int) -> int:
    """Writes the flax 0.10-layout checkpoint; returns its parameter bytes."""
    import jax
    import orbax.checkpoint as ocp

    import nnx_compat
    from nnx_compat import nnx

    big = _big_class()
    model = big(layers, rngs=nnx.Rngs(params=0, dropout=1))
    legacy = nnx_compat.legacy_checkpoint(
        nnx.state(model), lambda rngs: big(layers, rngs=rngs), rngs=nnx.Rngs(params=0, dropout=1)
    )
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, legacy)
    checkpointer.wait_until_finished()
    return sum(x.nbytes for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def child(mode: str, path: str, layers: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, path, str(layers)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    import warnings

    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, default=16, help="64 MiB each (default: 1 GiB)")
    parser.add_argument("--dir", default=None, help="where to write the checkpoint")
    args = parser.parse_args()
    import flax
    import jax
    import orbax.checkpoint as ocp

    print(f"flax {flax.__version__}, jax {jax.__version__}, orbax-checkpoint {ocp.__version__}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = os.path.join(tmp, "legacy")
        nbytes = write(path, args.layers)
        print(f"checkpoint: {args.layers} x Linear(4096, 4096) + Dropout, {nbytes / 2**30:.3f} GiB")
        restores: list[dict[str, float]] = []
        fixes: list[dict[str, float]] = []
        for _ in range(args.rounds):
            restores.append(child("restore", path, args.layers))
            fixes.append(child("fix", path, args.layers))
    gib = 2**30

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    print(f"\n{args.rounds} rounds, each a fresh interpreter; medians; RSS above the baseline")
    print(
        f"  plain orbax restore:      {med(restores, 'restore_s'):6.2f} s, peak "
        f"{med(restores, 'peak') / gib:5.3f} GiB ({med(restores, 'peak') / nbytes:.3f} x "
        f"checkpoint), after it {med(restores, 'restored') / nbytes:.3f} x"
    )
    print(
        f"  restore + fix_checkpoint: {med(fixes, 'restore_s') + med(fixes, 'fix_s'):6.2f} s, peak "
        f"{med(fixes, 'peak') / gib:5.3f} GiB ({med(fixes, 'peak') / nbytes:.3f} x checkpoint)"
    )
    ratios = [f["fix_s"] / r["restore_s"] for f, r in zip(fixes, restores, strict=True)]
    print(
        f"  during fix_checkpoint:    {med(fixes, 'fix_s'):6.2f} s = "
        f"{statistics.median(ratios):.3f} x the plain restore; peak "
        f"{med(fixes, 'fix_peak') / gib:5.3f} GiB ({med(fixes, 'fix_peak') / nbytes:.3f} x "
        f"checkpoint, which it holds)"
    )


if __name__ == "__main__":
    main()
