"""The drop-in replacement for ``flax.nnx``: ``from nnx_compat import nnx``.

Every public name of the installed ``flax.nnx`` is here, and is the upstream object itself
unless the pattern table bridges it; bridged names run the legacy call patterns with the new
semantics and warn at the user's line. This module defines nothing else: after ``populate``,
its globals mirror ``flax.nnx`` (including the submodule named ``object``).
"""

from nnx_compat import _namespace

_namespace.populate(globals())
