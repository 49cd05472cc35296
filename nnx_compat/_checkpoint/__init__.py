"""Checkpoints across flax generations: :func:`fix_checkpoint` and :func:`legacy_checkpoint`.

flax 0.10's layers kept the caller's ``Rngs``: a checkpoint holds the whole shared ``Rngs``
(``<layer>/rngs/<stream>/{key,count}``) once, under the first layer that kept it. Since 0.11
Dropout and MultiHeadAttention keep a forked stream (``<layer>/rngs/{key,count}``), the
recurrent cells keep none and ``RNN`` keeps its own ``carry`` stream; an ``Optimizer`` no
longer holds its model, so its state lost the ``model/...`` subtree.

:func:`fix_checkpoint` takes a restored checkpoint and returns the state of the model that
``model_factory`` builds on the installed flax: every array that is not RNG state is taken
from the checkpoint as it is (no copy), and the RNG state alone is initialised afresh from
``rngs`` under ``jit``, so that the parameters the factory would initialise are dead code and
are never computed. :func:`legacy_checkpoint` goes the other way, to the layout flax 0.10
writes. Nothing here reads or writes files; the ``nnx-compat fix-checkpoint`` command does.

The package: :mod:`.layout` (what each flax writes, read as ``path -> array``, and the errors),
:mod:`.fix` (0.10 -> installed), :mod:`.legacy` (installed -> 0.10) and :mod:`.verify` (a
converted checkpoint against its source, bit for bit). Reading and writing files is the
``nnx-compat fix-checkpoint`` command's.
"""

from __future__ import annotations

from nnx_compat._checkpoint.fix import fix_checkpoint, rng_init
from nnx_compat._checkpoint.layout import (
    LEGACY_CELLS,
    LEGACY_OWN_RNGS,
    LEGACY_SHARED_RNGS,
    CheckpointError,
    CheckpointMismatchError,
    CheckpointNote,
    OptimizerCheckpoint,
    is_rng_path,
    read,
)
from nnx_compat._checkpoint.legacy import legacy_checkpoint

__all__ = [
    "LEGACY_CELLS",
    "LEGACY_OWN_RNGS",
    "LEGACY_SHARED_RNGS",
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointNote",
    "OptimizerCheckpoint",
    "fix_checkpoint",
    "is_rng_path",
    "legacy_checkpoint",
    "read",
    "rng_init",
]
