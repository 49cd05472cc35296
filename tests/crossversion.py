"""One fixed program, run in every flax environment, then compared across them.

``python -m tests.crossversion run DIR`` runs the migration guide's scan-over-layers MLP (its
0.10 and 0.11 forms), its optimizer example (0.10 form, 3 SGD steps with dropout on) and NNX
Basics' functional API training loop (captured state merged inside ``jax.grad``) through
``nnx_compat.nnx`` and writes every output and state array to
``DIR/flax-<version>.json``. ``python -m tests.crossversion compare DIR`` then checks that the
results of the flax versions in ``EXPECTED`` agree:

* the same paths, shapes and dtypes everywhere;
* RNG keys and counts, and every other integer array, identical;
* floats within ``ATOL``: XLA of different jax releases may round the last ulp differently.

tox runs ``run`` in each flax environment and ``compare`` in the ``crossversion`` one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: The flax releases whose results must agree (the tox matrix).
EXPECTED = ("0.10.7", "0.11.2", "0.12.8")
ATOL = 1e-6


def results() -> dict[str, Any]:
    """The program's arrays, by path."""
    import optax

    from nnx_compat import nnx, warnings_policy
    from nnx_compat.cli import doctor as _doctor
    from tests import strategies

    out: dict[str, Any] = {}
    with warnings_policy("ignore"):
        for form in ("0.10", "0.11"):
            scan = _doctor.seed_scan_program(nnx, form, calls=3)
            out.update({f"scan-{form}/{k}": v for k, v in scan.items()})
        # SGD: the linear bias before BatchNorm has a zero gradient up to rounding, and Adam
        # would scale that rounding noise up to its learning rate.
        trained = _doctor.seed_optimizer_program(nnx, "0.10", steps=3, tx=optax.sgd(0.1))
        out.update({f"optimizer-0.10/{k}": v for k, v in trained.items()})
        # NNX Basics' functional API, merging captured state inside jax.grad under jax.jit
        models = {
            "counter": strategies.stateful_linear(),
            "mlp": strategies.MLP.build(strategies.ModelSpec(3, (8,), 2, True, 0.0, 2, 0)),
        }
        for name, model in models.items():
            functional = strategies.functional_program(nnx, model, form="legacy", lr=0.01)
            out.update({f"functional-{name}/{k}": v for k, v in functional.items()})
        out.update({f"recurrent/{k}": v for k, v in recurrent_program(nnx).items()})
    return out


def recurrent_program(nnx: Any) -> dict[str, Any]:
    """Each recurrent layer with a random carry initialiser, built and called as flax 0.11
    code does (``keep_rngs=True``, an ``RNN`` forking an ``Rngs``, a ``Bidirectional`` with its
    default stream), twice: flax 0.10 must draw the same carries as 0.11 and 0.12."""
    import jax
    import jax.numpy as jnp

    init = nnx.initializers.normal(1.0)
    x = jnp.linspace(-1.0, 1.0, 2 * 5 * 3).reshape(2, 5, 3)
    layers: dict[str, Any] = {}
    for cls in (nnx.LSTMCell, nnx.OptimizedLSTMCell, nnx.SimpleCell, nnx.GRUCell):
        rngs = nnx.Rngs(0)
        cell = cls(3, 4, carry_init=init, keep_rngs=True, rngs=rngs)
        layers[cls.__name__] = nnx.RNN(cell, rngs=rngs)
    forward = nnx.RNN(nnx.GRUCell(3, 4, carry_init=init, rngs=nnx.Rngs(1)))
    backward = nnx.RNN(nnx.GRUCell(3, 4, carry_init=init, rngs=nnx.Rngs(2)))
    layers["Bidirectional"] = nnx.Bidirectional(forward, backward)
    out: dict[str, Any] = {}
    for name, layer in layers.items():
        out[f"{name}/call-0"] = layer(x)
        out[f"{name}/call-1"] = layer(x)
        for path, leaf in nnx.to_flat_state(nnx.state(layer)):
            value = leaf.get_value() if hasattr(leaf, "get_value") else leaf.value
            if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
                value = jax.random.key_data(value)
            out[f"{name}/state/{'/'.join(map(str, path))}"] = value
    return out


def run(directory: Path) -> Path:
    """Writes this environment's results to ``directory``; returns the file."""
    from nnx_compat import _versions

    env = _versions.detect()
    target = directory / f"flax-{env.flax}.json"
    target.unlink(missing_ok=True)  # a failed run must not leave an older result behind
    arrays = {
        path: {"dtype": str(a.dtype), "shape": list(a.shape), "data": a.ravel().tolist()}
        for path, a in sorted(results().items())
    }
    directory.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".json.partial")
    partial.write_text(json.dumps({"flax": env.flax, "jax": env.jax, "arrays": arrays}))
    partial.replace(target)
    return target


def _load(path: Path) -> tuple[str, dict[str, np.ndarray]]:
    data = json.loads(path.read_text())
    arrays = {
        k: np.asarray(v["data"], dtype=v["dtype"]).reshape(v["shape"])
        for k, v in data["arrays"].items()
    }
    return f"flax {data['flax']} / jax {data['jax']}", arrays


def compare(directory: Path, expected: tuple[str, ...] = EXPECTED) -> list[str]:
    """The differences between the environments' results (empty: they agree)."""
    missing = [v for v in expected if not (directory / f"flax-{v}.json").exists()]
    if missing:
        return [f"no results for flax {', '.join(missing)} in {directory}: run the flax envs"]
    loaded = [_load(directory / f"flax-{v}.json") for v in expected]
    problems: list[str] = []
    pairs = [(a, b) for i, a in enumerate(loaded) for b in loaded[i + 1 :]]
    for (base_name, base), (name, other) in pairs:
        if base.keys() != other.keys():
            problems.append(
                f"{name} vs {base_name}: paths differ: only in {name}: "
                f"{sorted(other.keys() - base.keys())}; only in {base_name}: "
                f"{sorted(base.keys() - other.keys())}"
            )
            continue
        worst, where = 0.0, ""
        for path in sorted(base):
            a, b = base[path], other[path]
            if (a.dtype, a.shape) != (b.dtype, b.shape):
                problems.append(f"{path}: {a.dtype}{a.shape} vs {b.dtype}{b.shape} ({name})")
            elif not np.issubdtype(a.dtype, np.floating):
                if not np.array_equal(a, b):
                    problems.append(f"{path}: integer/RNG values differ ({name} vs {base_name})")
            else:
                diff = float(np.max(np.abs(a.astype(np.float64) - b), initial=0.0))
                if diff > worst:
                    worst, where = diff, path
        print(f"{name} vs {base_name}: largest float difference {worst:.3g} at {where or '-'}")
        if worst > ATOL:
            problems.append(f"{where}: {worst:.3g} > {ATOL} ({name} vs {base_name})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.crossversion")
    parser.add_argument("command", choices=("run", "compare"))
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    if args.command == "run":
        print(f"wrote {run(args.directory)}")
        return 0
    problems = compare(args.directory)
    for line in problems:
        print(f"MISMATCH {line}", file=sys.stderr)
    if not problems:
        print(f"flax {', '.join(EXPECTED)} agree: RNG state identical, floats within {ATOL}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
