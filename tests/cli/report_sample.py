"""A sample upgrade for ``nnx-compat report``: a small source tree with legacy calls, the run-time
report its test suite would give (the pytest plugin's JSON format) and four baselines, the call
sites shrinking from one to the next."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

MLP = """\
from flax import nnx


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.layers = [nnx.Linear(2, 16, rngs=rngs), nnx.Linear(16, 1, rngs=rngs)]
        self.dropout = nnx.Dropout(0.1, (0,), rngs=rngs)
        self.count = nnx.Variable(0)

    def __call__(self, x):
        self.count.value += 1
        x = nnx.relu(self.layers[0](x))
        return self.layers[1](self.dropout(x))
"""

TRAIN = """\
import optax
from flax import nnx


def make_optimizer(model):
    return nnx.Optimizer(model, optax.adam(1e-2))


@nnx.jit
def train_step(model, optimizer: nnx.Optimizer, x, y):
    def loss_fn(model):
        return ((model(x) - y) ** 2).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(grads)
    return loss


def ensemble(rngs: nnx.Rngs, n: int):
    return rngs.fork(splits=n)
"""

RESTORE = """\
import orbax.checkpoint as ocp
from flax import nnx

from model.mlp import MLP


def restore(path):
    abstract = nnx.eval_shape(lambda: MLP(nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    restored = ocp.StandardCheckpointer().restore(path, state)
    return nnx.merge(graphdef, restored)
"""

TESTS = """\
import optax
from flax import nnx

from model.mlp import MLP
from model.train import train_step


def test_step():
    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1))
    train_step(model, optimizer, 1.0, 2.0)
"""

NOTEBOOK_CELL = "from flax import nnx\n\nisinstance(model, nnx.Object)\n"

#: (pattern, file, line, hits, tests) of the run-time report: a site the source shows too, and
#: one only the run time sees (a checkpoint's layout).
RUNTIME_SITES = (
    ("optimizer-update-grads", "src/model/train.py", 15, 40, ("test_step", "test_loop")),
    ("variable-value", "src/model/mlp.py", 11, 120, ("test_step", "test_loop", "test_mlp")),
    ("optimizer-wrt-default", "tests/test_train.py", 10, 1, ("test_step",)),
    ("checkpoint-shared-rngs", "src/model/restore.py", 10, 2, ("test_restore",)),
)

#: pattern -> file -> call sites, the oldest baseline first
BASELINES = (
    {
        "checkpoint-shared-rngs": {"src/model/restore.py": 3},
        "list-attribute": {"src/model/mlp.py": 4, "src/model/blocks.py": 3},
        "optimizer-update-grads": {"src/model/train.py": 5},
        "optimizer-wrt-default": {"src/model/train.py": 3, "tests/test_train.py": 4},
        "rngs-fork-splits": {"src/model/train.py": 4},
        "variable-value": {"src/model/mlp.py": 9, "src/model/blocks.py": 6},
    },
    {
        "checkpoint-shared-rngs": {"src/model/restore.py": 2},
        "list-attribute": {"src/model/mlp.py": 2},
        "optimizer-update-grads": {"src/model/train.py": 4},
        "optimizer-wrt-default": {"src/model/train.py": 2, "tests/test_train.py": 3},
        "rngs-fork-splits": {"src/model/train.py": 2},
        "variable-value": {"src/model/mlp.py": 7, "src/model/blocks.py": 2},
    },
    {
        "checkpoint-shared-rngs": {"src/model/restore.py": 2},
        "list-attribute": {"src/model/mlp.py": 1},
        "optimizer-update-grads": {"src/model/train.py": 2},
        "optimizer-wrt-default": {"tests/test_train.py": 2},
        "rngs-fork-splits": {"src/model/train.py": 1},
        "variable-value": {"src/model/mlp.py": 4},
    },
    {
        "checkpoint-shared-rngs": {"src/model/restore.py": 1},
        "optimizer-update-grads": {"src/model/train.py": 1},
        "optimizer-wrt-default": {"tests/test_train.py": 1},
        "variable-value": {"src/model/mlp.py": 1},
    },
)


@dataclasses.dataclass(frozen=True)
class Sample:
    """What :func:`write_sample` wrote, for a run of ``nnx-compat report`` from ``root``."""

    root: Path
    args: list[str]
    #: every pattern the run has: found in the source or seen at run time
    patterns: frozenset[str]
    #: file -> (call sites, found by check, seen at run time)
    files: dict[str, tuple[int, int, int]]
    baselines: list[Path]


def notebook(source: str) -> str:
    """A Jupyter notebook of one code cell."""
    cell = {"cell_type": "code", "metadata": {}, "outputs": [], "source": source}
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def runtime_report(sites: tuple[tuple[str, str, int, int, tuple[str, ...]], ...]) -> str:
    """The JSON the pytest plugin writes for ``--nnx-compat-report=FILE.json`` (its format:
    ``nnx_compat/pytest_plugin.py``, ``Plugin._write_report``)."""
    from nnx_compat import _patterns

    patterns: dict[str, list[dict[str, object]]] = {}
    for pattern, file, line, hits, tests in sites:
        patterns.setdefault(pattern, []).append(
            {
                "pattern": pattern,
                "file": file,
                "line": line,
                "count": hits,
                "tests": [f"tests/test_train.py::{t}" for t in tests],
            }
        )
    data = {
        "patterns": [
            {
                "id": pattern,
                "legacy": _patterns.get(pattern).legacy,
                "new": _patterns.get(pattern).new,
                "changed_in": _patterns.get(pattern).changed_in,
                "count": sum(int(str(s["count"])) for s in entries),
                "sites": entries,
            }
            for pattern, entries in sorted(patterns.items())
        ]
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def baseline(counts: dict[str, dict[str, int]]) -> str:
    """A baseline file of the pytest plugin (``--nnx-compat-baseline``)."""
    return json.dumps({"format": 1, "patterns": counts}, indent=2) + "\n"


def write_sample(root: Path) -> Sample:
    """Writes the sample under ``root``."""
    for name, text in (
        ("src/model/__init__.py", ""),
        ("src/model/mlp.py", MLP),
        ("src/model/train.py", TRAIN),
        ("src/model/restore.py", RESTORE),
        ("tests/test_train.py", TESTS),
        ("notebooks/explore.ipynb", notebook(NOTEBOOK_CELL)),
        ("legacy.json", runtime_report(RUNTIME_SITES)),
    ):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    baselines = []
    for number, counts in enumerate(BASELINES, 1):
        path = root / "baselines" / f"baseline-{number}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(baseline(counts))
        baselines.append(path)
    args = ["report", "src", "tests", "notebooks", "--runtime", "legacy.json"]
    for path in baselines:
        args += ["--baseline", str(path.relative_to(root))]
    return Sample(
        root=root,
        args=args,
        patterns=frozenset(
            {
                "list-attribute",
                "dropout-positional",
                "variable-value",
                "optimizer-wrt-default",
                "optimizer-update-grads",
                "rngs-fork-splits",
                "isinstance-object",
                "checkpoint-shared-rngs",
            }
        ),
        files={
            "src/model/mlp.py": (3, 3, 1),
            "src/model/train.py": (3, 3, 1),
            "tests/test_train.py": (1, 1, 1),
            "src/model/restore.py": (1, 0, 1),
            "notebooks/explore.ipynb": (1, 1, 0),
        },
        baselines=baselines,
    )
