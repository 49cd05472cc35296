"""The public surface of ``nnx_compat`` and the cost of importing it."""

from __future__ import annotations

import subprocess
import sys

import nnx_compat


def test_all_is_sorted_and_complete() -> None:
    # from __future__, the tools' packages and the test helpers (bound here once a command, a
    # test or pytest's plugin loading imported them), and what pytest's assertion rewriting
    # adds to a pytest11 plugin's distribution
    public = {name for name in vars(nnx_compat) if not name.startswith(("_", "@"))} - {
        "annotations",
        "checker",
        "cli",
        "codemod",
        "pytest_plugin",
        "testing",
    }
    # lazy: they import flax
    public |= {"__version__", "is_nnx_object", "nnx", "tree"} | nnx_compat._CHECKPOINT
    assert set(nnx_compat.__all__) == public
    assert list(nnx_compat.__all__) == sorted(nnx_compat.__all__)


def test_import_is_light() -> None:
    code = (
        "import sys, nnx_compat\n"
        "heavy = ('flax', 'jax', 'optax', 'orbax', 'numpy')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_nnx_is_lazy_attribute() -> None:
    import importlib

    assert nnx_compat.nnx is importlib.import_module("nnx_compat.nnx")


def test_py_typed_is_shipped() -> None:
    from pathlib import Path

    assert (Path(nnx_compat.__file__).parent / "py.typed").is_file()
