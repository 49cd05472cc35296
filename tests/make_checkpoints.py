"""Writes native orbax checkpoints of the fixture models with the installed flax.

``python -m tests.make_checkpoints OUTDIR`` builds each model of ``tests.checkpoint_models``
with ``flax.nnx`` itself (never nnx_compat), with ``nnx.Rngs(params=0, dropout=1)``, trains 3
jitted steps with Dropout on, and writes, for each model:

* ``OUTDIR/<model>/state``: the checkpoint, ``ocp.StandardCheckpointer().save(path, tree)``
  exactly as a user of the installed flax saves it (see ``Built.checkpoint``);
* ``OUTDIR/<model>/continuation.npz``: 3 more steps continued from that state in the same
  process with every Dropout deterministic (BatchNorm still in training mode), so that they
  do not depend on RNG state: the losses (``loss/<i>``) and the model's Params and BatchStats
  after them (``model/<path>``, without the trailing ``value``), plus, for ``optimizer``,
  its ``opt_state/<path>`` and ``step``;
* ``OUTDIR/<model>/meta.json``: the versions, the model, its form, and the path, shape and
  dtype of every leaf of the saved tree (as orbax stores it, RNG keys as ``key<impl>``).

The shipped fixtures under ``tests/fixtures/checkpoints/flax-<version>/`` are its output in
the flax 0.10.7 and 0.12.8 environments; ``tests/test_make_checkpoints.py`` checks that. The
same flax and jax write the same floats bit for bit only on the same kind of CPU (XLA compiles
for the CPU it runs on); elsewhere they agree within that test's ``MAX_ULPS``, and integers and
RNG key data exactly.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tests import checkpoint_models

STEPS = 3


def _versions() -> dict[str, str]:
    return {d: importlib.metadata.version(d) for d in ("flax", "jax", "orbax-checkpoint", "optax")}


def _leaves(tree: Any) -> list[dict[str, Any]]:
    import jax

    return [
        {
            "path": "/".join(checkpoint_models._key_name(entry) for entry in path),
            "shape": list(leaf.shape),
            "dtype": str(leaf.dtype),
        }
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    ]


def _continuation(nnx: Any, built: checkpoint_models.Built, x: Any, y: Any) -> dict[str, Any]:
    checkpoint_models.set_deterministic(nnx, built)
    step = checkpoint_models.train_step(nnx, built)
    out = {f"loss/{i}": np.asarray(step(x, y)) for i in range(STEPS)}
    model = nnx.state(built.model, nnx.Param, nnx.BatchStat)
    for state in model:
        for path, array in checkpoint_models.flatten(state).items():
            out[f"model/{path.removesuffix('/value')}"] = array
    if built.optimizer is not None:
        own = checkpoint_models.flatten(nnx.state(built.optimizer))
        for path, array in own.items():
            if path.startswith(("opt_state/", "step/")):
                out[path.removesuffix("/value")] = array
    return out


def write(directory: Path, name: str) -> Path:
    """Trains model ``name`` natively and writes its checkpoint, continuation and meta."""
    import flax.nnx as nnx
    import orbax.checkpoint as ocp

    target = directory / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    built = checkpoint_models.build(nnx, name, checkpoint_models.rngs(nnx))
    x, y = checkpoint_models.batch(name)
    step = checkpoint_models.train_step(nnx, built)
    losses = [float(step(x, y)) for _ in range(STEPS)]
    tree = built.checkpoint(nnx)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save((target / "state").absolute(), tree)
    checkpointer.wait_until_finished()
    meta = {
        "model": name,
        "form": built.form,
        "versions": _versions(),
        "rngs": "nnx.Rngs(params=0, dropout=1)",
        "training_losses": losses,
        "leaves": _leaves(tree),
    }
    np.savez(target / "continuation.npz", **_continuation(nnx, built, x, y))
    (target / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.make_checkpoints")
    parser.add_argument("directory", type=Path)
    parser.add_argument("models", nargs="*", default=list(checkpoint_models.MODELS))
    args = parser.parse_args(argv)
    for name in args.models:
        print(f"wrote {write(args.directory, name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
