"""Finding a test's own source lines by a trailing ``# MARKER`` comment."""

from __future__ import annotations

from pathlib import Path


def line_of(path: str, marker: str) -> int:
    """The number of the line in ``path`` that ends with ``# marker``."""
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(f"no line ends with '# {marker}' in {path}")
