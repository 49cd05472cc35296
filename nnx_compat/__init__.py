"""nnx_compat: run Flax NNX 0.10 code on Flax 0.11 and 0.12, and the new API on 0.10.

Use ``from nnx_compat import nnx`` instead of ``from flax import nnx``. Importing this package
does not import flax; ``nnx_compat.nnx`` does.
"""

from __future__ import annotations

import typing as _typing

from nnx_compat._install import install as install
from nnx_compat._install import installed as installed
from nnx_compat._install import uninstall as uninstall
from nnx_compat._patterns import PATTERNS as PATTERNS
from nnx_compat._patterns import Pattern as Pattern
from nnx_compat._versions import Environment as Environment
from nnx_compat._versions import IncompatibleJaxError as IncompatibleJaxError
from nnx_compat._versions import UnknownFlaxVersionWarning as UnknownFlaxVersionWarning
from nnx_compat._versions import detect as detect
from nnx_compat._warnings import CheckpointDeprecationWarning as CheckpointDeprecationWarning
from nnx_compat._warnings import Hit as Hit
from nnx_compat._warnings import LayersDeprecationWarning as LayersDeprecationWarning
from nnx_compat._warnings import NNXCompatDeprecationWarning as NNXCompatDeprecationWarning
from nnx_compat._warnings import OptimizerDeprecationWarning as OptimizerDeprecationWarning
from nnx_compat._warnings import PytreeDeprecationWarning as PytreeDeprecationWarning
from nnx_compat._warnings import RngsDeprecationWarning as RngsDeprecationWarning
from nnx_compat._warnings import ShardingDeprecationWarning as ShardingDeprecationWarning
from nnx_compat._warnings import TransformsDeprecationWarning as TransformsDeprecationWarning
from nnx_compat._warnings import VariableDeprecationWarning as VariableDeprecationWarning
from nnx_compat._warnings import print_report as print_report
from nnx_compat._warnings import report as report
from nnx_compat._warnings import report_at_exit as report_at_exit
from nnx_compat._warnings import reset_report as reset_report
from nnx_compat._warnings import warnings_policy as warnings_policy

if _typing.TYPE_CHECKING:
    from nnx_compat import nnx as nnx
    from nnx_compat import tree as tree
    from nnx_compat._checkpoint import CheckpointError as CheckpointError
    from nnx_compat._checkpoint import CheckpointMismatchError as CheckpointMismatchError
    from nnx_compat._checkpoint import CheckpointNote as CheckpointNote
    from nnx_compat._checkpoint import OptimizerCheckpoint as OptimizerCheckpoint
    from nnx_compat._checkpoint import fix_checkpoint as fix_checkpoint
    from nnx_compat._checkpoint import legacy_checkpoint as legacy_checkpoint
    from nnx_compat._pytree import is_nnx_object as is_nnx_object

__version__ = "0.1.0"

__all__ = [
    "CheckpointDeprecationWarning",
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointNote",
    "Environment",
    "Hit",
    "IncompatibleJaxError",
    "LayersDeprecationWarning",
    "NNXCompatDeprecationWarning",
    "OptimizerCheckpoint",
    "OptimizerDeprecationWarning",
    "PATTERNS",
    "Pattern",
    "PytreeDeprecationWarning",
    "RngsDeprecationWarning",
    "ShardingDeprecationWarning",
    "TransformsDeprecationWarning",
    "UnknownFlaxVersionWarning",
    "VariableDeprecationWarning",
    "__version__",
    "detect",
    "fix_checkpoint",
    "install",
    "installed",
    "is_nnx_object",
    "legacy_checkpoint",
    "nnx",
    "print_report",
    "report",
    "report_at_exit",
    "reset_report",
    "tree",
    "uninstall",
    "warnings_policy",
]


_CHECKPOINT = frozenset(
    {
        "CheckpointError",
        "CheckpointMismatchError",
        "CheckpointNote",
        "OptimizerCheckpoint",
        "fix_checkpoint",
        "legacy_checkpoint",
    }
)


def __getattr__(name: str) -> _typing.Any:
    # These import flax, so they are loaded on first use, not with the package.
    import importlib

    if name in ("nnx", "tree"):
        return importlib.import_module(f"nnx_compat.{name}")
    if name == "is_nnx_object":
        return importlib.import_module("nnx_compat._pytree").is_nnx_object
    if name in _CHECKPOINT:
        return getattr(importlib.import_module("nnx_compat._checkpoint"), name)
    raise AttributeError(f"module 'nnx_compat' has no attribute {name!r}")
