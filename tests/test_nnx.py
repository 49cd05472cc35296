"""The drop-in namespace ``nnx_compat.nnx`` (built by ``_namespace``)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import types

import flax.nnx as upstream
import pytest

from nnx_compat import _added, _namespace, _patterns, nnx

UPSTREAM_NAMES = _namespace.public_names(upstream)


def test_namespace_has_every_public_upstream_name() -> None:
    missing = [name for name in UPSTREAM_NAMES if not hasattr(nnx, name)]
    assert not missing
    assert len(UPSTREAM_NAMES) > 150  # the whole API, not a handful of names


@pytest.mark.parametrize("name", UPSTREAM_NAMES)
def test_unshimmed_names_are_the_upstream_objects(name: str) -> None:
    if name in _patterns.SHIMS:
        assert getattr(nnx, name) is _patterns.load_shim(name)
    elif name in _added.EXTENDED and _added.extended(name) is not None:
        assert getattr(nnx, name) is _added.extended(name)  # flax's own, with forms it lacks
    else:
        assert getattr(nnx, name) is getattr(upstream, name)


def test_star_import_binds_the_same_names_as_upstream() -> None:
    ours: dict[str, object] = {}
    theirs: dict[str, object] = {}
    exec("from nnx_compat.nnx import *", ours)
    exec("from flax.nnx import *", theirs)
    shims = set(_namespace.bound_shims(upstream))
    assert set(ours) - {"__builtins__"} == (set(theirs) - {"__builtins__"}) | shims
    # upstream's star import shadows the builtin ``object`` with a submodule; so does ours
    assert ours["object"] is theirs["object"]
    assert isinstance(ours["object"], types.ModuleType)


def test_submodules_are_reachable_and_importable() -> None:
    submodules = [n for n in UPSTREAM_NAMES if isinstance(getattr(upstream, n), types.ModuleType)]
    assert {"traversals", "bridge", "object", "rnglib"} <= set(submodules)
    for name in submodules:
        assert getattr(nnx, name) is getattr(upstream, name)
        module = importlib.import_module(f"nnx_compat.nnx.{name}")
        assert module is getattr(upstream, name)
    from nnx_compat.nnx import traversals

    assert traversals.flatten_mapping({"a": {"b": 1}}) == {("a", "b"): 1}


def test_dir_lists_the_upstream_names() -> None:
    assert set(UPSTREAM_NAMES) <= set(dir(nnx))


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match=r"neither has flax\.nnx"):
        _ = nnx.definitely_not_a_name  # type: ignore[attr-defined]


def test_import_does_not_warn() -> None:
    # what flax's own code triggers (flax 0.12.0-0.12.6 with the newest jax they run with:
    # jax.array_ref, jax.core.Effect, ...) is flax's; nnx_compat adds nothing to it
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "warnings.filterwarnings('ignore', category=DeprecationWarning, module=r'flax\\.')\n"
        "from nnx_compat import nnx\n"
        "m = nnx.Linear(2, 3, rngs=nnx.Rngs(0)); print(type(m).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Linear"


BACKENDS_AFTER = """
import os, sys
import jax
from jax._src import xla_bridge
{imports}
if xla_bridge.backends_are_initialized():
    sys.exit("a JAX backend was started by: {imports!r}")
# the configuration a program (or jax.distributed.initialize) must set before any computation
jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_platforms", "cpu")
print(jax.device_count())
"""

IMPORT_FORMS = {
    "package": "import nnx_compat",
    "namespace": "from nnx_compat import nnx",
    "install": "import nnx_compat; nnx_compat.install()",
    "every probe": (
        "from nnx_compat import _versions; from nnx_compat import nnx; _versions.detect()"
    ),
    "tree and checkpoints": "import nnx_compat; nnx_compat.tree; nnx_compat.fix_checkpoint",
}


@pytest.mark.parametrize("imports", IMPORT_FORMS.values(), ids=IMPORT_FORMS.keys())
def test_importing_starts_no_jax_backend(imports: str) -> None:
    """flax.nnx itself starts none; neither may nnx_compat, or the device count, the platform
    and jax.distributed.initialize() could no longer be configured after the import."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    code = BACKENDS_AFTER.format(imports=imports)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "4"


def test_the_check_sees_a_started_backend() -> None:
    """The test above fails when an import does start a backend."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    code = BACKENDS_AFTER.format(imports="import jax.numpy as jnp; jnp.zeros(1)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "a JAX backend was started" in out.stderr
