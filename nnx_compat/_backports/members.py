"""Backports of flax 0.12 members of classes an older flax already has (nnx_compat._backports)."""

from __future__ import annotations
