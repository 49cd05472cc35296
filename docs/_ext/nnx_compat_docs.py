"""Sphinx extension: the generated parts of the docs, rendered from the project at build time.

A page names a generator of ``tools/docs.py`` with a block of its own::

    ```{nnx-compat-generated} patterns
    ```

When Sphinx reads the page, the block is replaced by the generator's Markdown (a table, the
command-line reference), so that headings in it become sections of the page. A block that is
not written exactly so (options, content, an unknown name) reaches the directive below, which
fails the build with what to write instead. The page is read again whenever a file the
generator renders from changes (``tools.docs.SOURCES``).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from tools import docs as generators

NAME = "nnx-compat-generated"
_BLOCK = re.compile(r"^```\{" + NAME + r"\}[ \t]+([\w-]+)[ \t]*\n```[ \t]*$", re.MULTILINE)


def _expand(app: Sphinx, docname: str, source: list[str]) -> None:
    """``source-read``: each generator block of the page, replaced by its Markdown."""

    def render(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in generators.GENERATED:
            return match.group(0)  # left for the directive, which reports it
        for path in generators.SOURCES.get(name, ()):
            app.env.note_dependency(str(generators.ROOT / path))
        return generators.generated(name).rstrip("\n")

    source[0] = _BLOCK.sub(render, source[0])


class GeneratedDirective(SphinxDirective):
    """Reached only by a block the ``source-read`` hook did not expand: an error."""

    optional_arguments = 1
    final_argument_whitespace = True
    has_content = True
    option_spec: ClassVar[dict[str, Any]] = {}

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0] if self.arguments else ""
        if name not in generators.GENERATED:
            why = f"unknown generated part {name!r}; known: {', '.join(generators.GENERATED)}"
        else:
            why = "write it with no options or content, the closing fence on the next line"
        raise self.error(f"{NAME}: {why}")


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("source-read", _expand)
    app.add_directive(NAME, GeneratedDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
