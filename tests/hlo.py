"""Lowered program text, without source locations, for compiled-code equality tests."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax


def lowered_text(f: Callable[..., Any], *args: Any) -> str:
    """The StableHLO text of ``jax.jit(f)`` for ``args``, with locations removed."""
    text = jax.jit(f).lower(*args).as_text()
    text = re.sub(r"^module @\S+", "module @f", text)  # named after the function
    text = re.sub(r"\s*loc\((?:[^()]|\([^()]*\))*\)", "", text)
    return "\n".join(line for line in text.splitlines() if not line.startswith("#loc"))
