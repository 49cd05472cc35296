"""Notebooks as people keep them: Jupyter ``.ipynb`` files and MyST markdown notebooks
(``.md`` with ``{code-cell}`` blocks, as jupytext pairs them)."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["is_myst_notebook"]

_CODE_CELL: Final = re.compile(r"(?m)^(`{3,}|~{3,})\{code-cell\}")


def is_myst_notebook(text: str) -> bool:
    """Whether a ``.md`` file's text is a MyST notebook (has at least one ``{code-cell}``)."""
    return _CODE_CELL.search(text) is not None
