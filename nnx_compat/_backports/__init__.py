"""Backports of the ``flax.nnx`` API that flax 0.11 and 0.12 added, for an older flax.

Each module holds one family (layers, graph functions, transforms, module helpers, the
members of classes an older flax already has, and the Linen bridge) and is imported when
``nnx_compat.nnx`` is built, with flax imported. ``nnx_compat._added.BACKPORTS`` names where
each backported name lives; :func:`patch` gives flax's own classes the members of flax 0.12 they
lack, and the older bridge flax 0.12's handling of sown values.
"""

from __future__ import annotations

import importlib
from typing import Final

__all__ = ["FAMILIES", "patch"]

#: The modules of this package, in the order their ``patch`` runs.
FAMILIES: Final = ("layers", "graph", "transforms", "module", "members", "bridge")


def patch() -> None:
    """Runs each family's ``patch()`` (where it has one): members of flax 0.12 on flax's own
    classes where the installed flax lacks them."""
    for family in FAMILIES:
        module = importlib.import_module(f"{__name__}.{family}")
        hook = getattr(module, "patch", None)
        if hook is not None:
            hook()
