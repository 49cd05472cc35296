"""Sphinx configuration of nnx_compat's documentation site.

Sphinx with MyST Markdown, as flax, optax and jax write their documentation: the pages are
Markdown that reads well on GitHub too, and myst-nb runs the code cells of the pages written as
notebooks (``file_format: mystnb``: the tour) at every build, so an example that stops working
fails the build (``nb_execution_raise_on_error``), as a warning does under ``-W``.

The tables and the command-line reference are not written in the pages: each page names a
generator of ``tools/docs.py`` (the extension ``_ext/nnx_compat_docs.py``), rendered from the
code at build time.

Build: ``tox -e docs``, or from an environment with the package, ``tools`` extra and the docs'
dependencies (see ``tox.ini``)::

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "_ext"))  # the extension
sys.path.append(str(ROOT))  # tools/ (not installed); the installed nnx_compat comes first

# The notebook kernels inherit this process's environment: JAX on the CPU (no accelerator probing
# in the outputs), and this environment's scripts first, so that `!nnx-compat` in a cell is the
# installed command of the same package.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])

from nnx_compat import __version__  # noqa: E402  (imports neither flax nor jax)

project = "nnx_compat"
author = "the nnx_compat authors"
copyright = "the nnx_compat authors"
version = release = __version__

extensions = ["myst_nb", "nnx_compat_docs"]
exclude_patterns = ["_build", "jupyter_execute", ".jupyter_cache", "**.ipynb_checkpoints"]

# MyST: anchors for the headings of levels 1 to 3 (links as `page.md#a-heading`)
myst_heading_anchors = 3

# myst-nb: run every notebook page at every build, in a fresh temporary directory (the tour writes
# files there); a cell that raises fails the build.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_show_tb = True  # the failing cell's traceback in the build log
nb_execution_timeout = 300
nb_execution_in_temp = True
nb_merge_streams = True

html_theme = "furo"
html_title = f"nnx_compat {version}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
