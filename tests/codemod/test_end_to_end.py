"""The goal that matters: flax 0.10 programs migrated by ``nnx-compat migrate`` run on the
installed flax with a plain ``from flax import nnx`` (no nnx_compat) and give, bit for bit, what
the unmigrated program gives through nnx_compat.

The corpus (``tests/fixtures/corpus/``) covers the rewrite rules that a program can exercise end
to end; each program defines ``main()`` returning its arrays. On flax 0.11 and 0.12 the migrated
program (``--target`` of the installed generation) runs natively; flax 0.10 has not got the new
API, so there it runs through nnx_compat (the new API on the old flax).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnx_compat import _versions
from nnx_compat._bits import same_bits
from nnx_compat.checker import check_source
from nnx_compat.codemod import migrate_source

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"
API = _versions.detect().api
# the installed release itself where it is 0.11+ (0.12.3 has no Rngs.split, ...)
_RELEASE = _versions.parse_version(_versions.installed_version("flax") or "0.12.8").base_version
TARGET = _RELEASE if API != "0.10" else "0.11"
NATIVE = API != "0.10"

_RUN = """
import sys, runpy, numpy as np, jax
module = runpy.run_path(sys.argv[1])
out = module["main"]()
arrays = {k: np.asarray(jax.random.key_data(v) if jax.dtypes.issubdtype(getattr(v, "dtype", None),
          jax.dtypes.prng_key) else v) for k, v in out.items()}
np.savez(sys.argv[2], **arrays)
print("nnx_compat imported" if "nnx_compat" in sys.modules else "flax only")
"""


def _run(
    source: str, tmp: Path, name: str, through_compat: bool
) -> tuple[dict[str, np.ndarray], str]:
    if through_compat:
        source = source.replace("from flax import nnx", "from nnx_compat import nnx")
    program = tmp / f"{name}.py"
    program.write_text(source)
    out = tmp / f"{name}.npz"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, str(program), str(out)],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "NNX_COMPAT_WARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as data:
        return {k: data[k] for k in data.files}, proc.stdout.strip()


@pytest.mark.parametrize("program", sorted(p.name for p in CORPUS.glob("*.py")))
def test_the_migrated_program_runs_natively_with_the_same_results(
    program: str, tmp_path: Path
) -> None:
    legacy = (CORPUS / program).read_text()
    result = migrate_source(legacy, TARGET)
    assert not result.manual, result.manual  # (registry.py has nothing flax 0.11 changed)
    assert migrate_source(result.code, TARGET).code == result.code  # idempotent
    # after migration the checker finds nothing: every finding was rewritten
    assert check_source(result.code, target=TARGET) == []
    expected, _ = _run(legacy, tmp_path, "legacy", through_compat=True)
    got, how = _run(result.code, tmp_path, "migrated", through_compat=not NATIVE)
    assert how == ("flax only" if NATIVE else "nnx_compat imported")
    assert sorted(got) == sorted(expected)
    for key in expected:
        assert same_bits(got[key], expected[key]), key


def test_the_corpus_exercises_the_rewrites() -> None:
    """Which rules the corpus runs end to end, for each target (the rest: tests/codemod)."""
    used: dict[str, set[str]] = {"0.11": set(), "0.12": set()}
    for program in CORPUS.glob("*.py"):
        for target in used:
            used[target] |= set(migrate_source(program.read_text(), target).rewrites)
    for_011 = {
        "dropout-positional",
        "optimizer-update-grads",
        "optimizer-wrt-default",
        "recurrent-layers-fork-rngs",
        "rngs-fork-splits",
        "rngstream-positional-tag",
        "rnn-positional",
        "split-rngs-over-scan",
        "variable-state",
    }
    assert used["0.11"] == for_011
    assert used["0.12"] == for_011 | {  # and what flax 0.12 changed
        "container-filled-after-init",
        "dict-attribute",
        "isinstance-object",
        "jit-abstracted-axes",
        "list-attribute",
        "mha-positional",
        "static-attribute-data",
        "variable-inplace-op",
        "variable-value",
    }


_SCAN_OVER_LAYERS = """from flax import nnx
import jax.numpy as jnp


class Stack(nnx.Module):
    @nnx.split_rngs(splits=2)
    @nnx.vmap(in_axes=(0, 0))
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.dropout = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        @nnx.split_rngs(splits=2)
        @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
        def step(layer, x):
            return layer.dropout(x)

        return step(self, x)


Stack(nnx.Rngs(0))(jnp.ones((3,)))
"""

_WARNINGS = r"""
import re, runpy, sys, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    runpy.run_path(sys.argv[1])
for w in caught:
    if w.filename == sys.argv[1]:
        print(w.lineno, *re.findall(r"\[nnx-compat: ([\w-]+)\]", str(w.message)))
"""


def test_the_checker_and_the_run_time_warning_name_one_line(tmp_path: Path) -> None:
    """split-rngs-over-scan: the checker, the codemod and the warning of the program run
    through nnx_compat all name the split_rngs decorator's line (on flax 0.10 too, where
    nnx_compat's split_rngs sees the streams that its vmap split)."""
    (finding,) = check_source(_SCAN_OVER_LAYERS, target="0.11")
    assert finding.pattern == "split-rngs-over-scan"
    decorator = _SCAN_OVER_LAYERS.splitlines()[finding.line - 1]
    assert decorator.strip() == "@nnx.split_rngs(splits=2)"
    program = tmp_path / "scan_over_layers.py"
    program.write_text(
        _SCAN_OVER_LAYERS.replace("from flax import nnx", "from nnx_compat import nnx")
    )
    proc = subprocess.run(
        [sys.executable, "-c", _WARNINGS, str(program)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    warned = [line.split() for line in proc.stdout.splitlines()]
    assert warned == [[str(finding.line), "split-rngs-over-scan"]]
    result = migrate_source(_SCAN_OVER_LAYERS, "0.11")
    assert result.rewrites == {"split-rngs-over-scan": 1}
    assert decorator not in result.code.splitlines()
