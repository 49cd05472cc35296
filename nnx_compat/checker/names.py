"""How a module reaches ``flax.nnx``: the import forms the checker understands.

``from flax import nnx``, ``from flax import nnx as nn``, ``import flax.nnx as nnx``,
``import flax`` (then ``flax.nnx.X``), ``from flax.nnx import Optimizer`` (``Optimizer`` is
``nnx.Optimizer``), ``from flax.nnx import bridge`` and the same through ``nnx_compat``
(``from nnx_compat import nnx``). A name bound any other way is not ``nnx``, so code that
happens to call its own ``Optimizer`` is never matched.
"""

from __future__ import annotations

import ast
from typing import Final

__all__ = ["Names"]

#: Modules that are ``flax.nnx`` (or serve it: ``flax.experimental.nnx`` is the deprecated
#: alias older NNX code imports, still present in flax 0.12).
_NNX_MODULES: Final = frozenset({"flax.nnx", "nnx_compat.nnx", "flax.experimental.nnx"})
#: Packages whose ``nnx`` attribute is ``flax.nnx``.
_NNX_PARENTS: Final = frozenset({"flax", "nnx_compat", "flax.experimental"})


class Names:
    """The names a module binds to ``flax.nnx`` and its members, from its imports.

    Imports anywhere in the module count (inside functions too): a checker that misses a
    local ``from flax import nnx`` would miss the code under it.
    """

    def __init__(self, tree: ast.AST) -> None:
        self.modules: set[str] = set()  # names bound to flax.nnx itself
        self.parents: set[str] = set()  # names bound to flax (flax.nnx.X)
        self.members: dict[str, str] = {}  # name -> "nnx.X" (from flax.nnx import X)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in _NNX_MODULES and alias.asname:
                        self.modules.add(alias.asname)
                    elif alias.name in _NNX_MODULES or alias.name in _NNX_PARENTS:
                        self.parents.add(
                            alias.name.split(".")[0]
                        )  # flax.nnx.X, flax.experimental...
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                module = node.module or ""
                for alias in node.names:
                    bound = alias.asname or alias.name
                    if module in _NNX_PARENTS and alias.name == "nnx":
                        self.modules.add(bound)
                    elif module in _NNX_MODULES:
                        self.members[bound] = f"nnx.{alias.name}"
                    elif module.startswith(tuple(f"{m}." for m in _NNX_MODULES)):
                        home = next(m for m in _NNX_MODULES if module.startswith(f"{m}."))
                        sub = module[len(home) + 1 :]
                        self.members[bound] = f"nnx.{sub}.{alias.name}"

    @property
    def any(self) -> bool:
        """Whether the module reaches ``flax.nnx`` at all."""
        return bool(self.modules or self.parents or self.members)

    def resolve(self, node: ast.AST) -> str | None:
        """``"nnx.X.Y"`` for an expression that names a member of ``flax.nnx``, else None."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        parts.reverse()
        if node.id in self.modules:
            return ".".join(["nnx", *parts]) if parts else "nnx"
        if node.id in self.members:
            return ".".join([self.members[node.id], *parts])
        if node.id in self.parents and parts[:1] == ["nnx"]:
            return ".".join(parts)
        if node.id in self.parents and parts[:2] == ["experimental", "nnx"]:
            return ".".join(parts[1:])
        return None
