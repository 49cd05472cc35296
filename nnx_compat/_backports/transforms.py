"""Backports of flax 0.11/0.12 transforms for an older flax (see nnx_compat._backports)."""

from __future__ import annotations
