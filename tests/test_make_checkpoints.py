"""The shipped checkpoint fixtures: complete, restorable, and exactly what the script writes.

``tests/fixtures/checkpoints/flax-<version>/`` holds the output of
``python -m tests.make_checkpoints`` in one flax environment. Every environment checks that
each fixture restores (orbax, no target) to the tree its ``meta.json`` lists; the environment
with the flax and jax that wrote a fixture reruns the script and checks that it writes the
same arrays, bit for bit. The fixtures are per release, not per generation: XLA of another
jax may round the last ulp differently, so the gate is the exact versions in ``meta.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nnx_compat import _versions
from tests import checkpoint_models

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"
SHIPPED = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
CHECKPOINTS = [(release, name) for release in SHIPPED for name in checkpoint_models.MODELS]


def _meta(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "meta.json").read_text())


def _restore(directory: Path) -> dict[str, np.ndarray]:
    import orbax.checkpoint as ocp

    restored = ocp.StandardCheckpointer().restore((directory / "state").absolute())
    return checkpoint_models.flatten(restored)


def _assert_same(shipped: dict[str, np.ndarray], fresh: dict[str, np.ndarray], what: str) -> None:
    assert sorted(shipped) == sorted(fresh), what
    for path, array in shipped.items():
        other = fresh[path]
        assert (array.dtype, array.shape) == (other.dtype, other.shape), f"{what}: {path}"
        assert array.tobytes() == other.tobytes(), f"{what}: {path} differs"


def test_fixtures_shipped() -> None:
    assert SHIPPED == ["flax-0.10.7", "flax-0.12.8"]
    for release, name in CHECKPOINTS:
        directory = FIXTURES / release / name
        assert (directory / "state" / "commit_success.txt").is_file(), directory
        assert _meta(directory)["versions"]["flax"] == release.removeprefix("flax-")


@pytest.mark.parametrize(("release", "name"), CHECKPOINTS)
def test_fixture_restores(release: str, name: str) -> None:
    directory = FIXTURES / release / name
    restored = _restore(directory)
    expected = {leaf["path"]: (leaf["shape"], leaf["dtype"]) for leaf in _meta(directory)["leaves"]}
    assert sorted(restored) == sorted(expected)
    for path, array in restored.items():
        shape, dtype = expected[path]
        if dtype.startswith("key<"):  # stored as a typed key; flatten gives its key data
            assert list(array.shape[: len(shape)]) == shape and array.dtype == np.uint32, path
        else:
            assert (list(array.shape), str(array.dtype)) == (shape, dtype), path


def _writer_installed(release: str) -> str | None:
    """Why this environment cannot reproduce ``release``'s fixtures, or None if it can."""
    wrote = _meta(FIXTURES / release / checkpoint_models.MODELS[0])["versions"]
    installed = {d: _versions.installed_version(d) for d in ("flax", "jax")}
    differs = [
        f"{d} {installed[d]} (fixtures: {wrote[d]})" for d in installed if wrote[d] != installed[d]
    ]
    return ", ".join(differs) or None


@pytest.mark.parametrize("release", SHIPPED)
def test_script_reproduces_fixtures(release: str, tmp_path: Path) -> None:
    reason = _writer_installed(release)
    if reason is not None:
        pytest.skip(f"only the versions that wrote {release} reproduce it bit for bit: {reason}")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    # The fixtures were written on jax's default devices; 8 forced host devices (tox.ini)
    # give the same arrays but start slower.
    env.pop("XLA_FLAGS", None)
    subprocess.run(
        [sys.executable, "-m", "tests.make_checkpoints", str(tmp_path)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    for name in checkpoint_models.MODELS:
        shipped, fresh = FIXTURES / release / name, tmp_path / name
        _assert_same(_restore(shipped), _restore(fresh), f"{name} checkpoint")
        with np.load(shipped / "continuation.npz") as a, np.load(fresh / "continuation.npz") as b:
            _assert_same(dict(a), dict(b), f"{name} continuation")
        expected, written = _meta(shipped), _meta(fresh)
        expected.pop("versions")
        written.pop("versions")
        assert expected == written, name
