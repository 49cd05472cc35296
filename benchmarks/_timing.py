"""Interleaved timing of variants of one step, reported as ratios to a baseline."""

from __future__ import annotations

import argparse
import random
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import nnx_compat


def setup() -> tuple[int, int]:
    """Parses ``--rounds``/``--quick``, prints the versions; returns (rounds, step divisor)."""
    import flax
    import jax

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="fewer steps, for a smoke run")
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    print(f"flax {flax.__version__}, jax {jax.__version__}, backend {jax.default_backend()}")
    return args.rounds, 5 if args.quick else 1


def compare(
    label: str, runs: dict[str, Callable[[], Any]], baseline: str, steps: int, rounds: int
) -> None:
    """Times each variant's ``run()`` and prints its median and its ratio to ``baseline``.

    Rounds interleave the variants in a shuffled order; the ratio is the median over rounds of
    each round's ratio to the baseline from the same round, so drift in the machine cancels.
    """
    with nnx_compat.warnings_policy("ignore"):
        for run in runs.values():  # compile and warm up
            for _ in range(3):
                run().block_until_ready()
        times: dict[str, list[float]] = {n: [] for n in runs}
        order = list(runs)
        for _ in range(rounds):
            random.shuffle(order)
            for n in order:
                run = runs[n]
                t0 = time.perf_counter()
                for _ in range(steps):
                    out = run()
                out.block_until_ready()
                times[n].append((time.perf_counter() - t0) / steps)
    print(f"\n{label}; {rounds} rounds x {steps} steps; ratios to {baseline}")
    for n in runs:
        med = statistics.median(times[n])
        ratios = [t / b for t, b in zip(times[n], times[baseline], strict=True)]
        print(
            f"  {n:12} {med * 1e6:10.1f} us/step   ratio {statistics.median(ratios):.3f}"
            f" (rounds: {min(ratios):.3f}-{max(ratios):.3f})"
        )
