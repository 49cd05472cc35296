"""Builds the drop-in namespace ``nnx_compat.nnx`` from the installed ``flax.nnx``.

Every public name of ``flax.nnx`` is served as the identical upstream object, except the names
that the pattern table (``_patterns.SHIMS``) bridges, which are served by their shims.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, MutableMapping
from typing import Any

from nnx_compat import _patterns, _versions, _warnings

__all__ = ["bound_shims", "populate", "public_names"]


def public_names(module: types.ModuleType) -> list[str]:
    """The names ``from module import *`` binds (flax.nnx defines no ``__all__``)."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [name for name in vars(module) if not name.startswith("_")]
    return sorted(names)


def bound_shims(upstream: types.ModuleType) -> list[str]:
    """The shims the namespace binds: every one except those of names the installed flax
    removed, which its module ``__getattr__`` serves with their warning at each access, and
    those wrapping a function the installed flax does not have yet (its error names the
    release)."""
    from nnx_compat import _added

    return [
        n
        for n in _patterns.shims()
        if (n not in _patterns.REMOVED and n not in _added.WRAPS_NATIVE) or n in vars(upstream)
    ]


def populate(namespace: MutableMapping[str, Any]) -> None:
    """Fills a module's globals with flax.nnx's public names, then overlays the shims.

    Also sets ``__all__`` (the same names ``from flax.nnx import *`` binds, so a star import
    shadows the builtin ``object`` exactly as upstream's does), a module ``__getattr__`` for
    names upstream adds later, and ``sys.modules`` aliases so that
    ``import nnx_compat.nnx.traversals`` works like ``import flax.nnx.traversals``.
    """
    upstream = _versions.import_nnx()
    own_name = namespace["__name__"]
    names = public_names(upstream)
    for name in names:
        value = getattr(upstream, name)
        namespace[name] = value
        if isinstance(value, types.ModuleType) and value.__name__.startswith("flax."):
            sys.modules.setdefault(f"{own_name}.{name}", value)
    shimmed = bound_shims(upstream)
    for name in shimmed:
        namespace[name] = _patterns.load_shim(name)
    # flax's own Variable class gets the Variable API of both generations (see _variables),
    # and GraphDef.apply bridges a captured state as nnx.merge does (see _state)
    from nnx_compat import _sharding, _state, _variables

    _variables.patch()
    _state.patch()
    _sharding.patch_bridge()
    _removed_patch()
    _added_patch()
    # the 0.12 API on an older flax: backports where flax lacks the name (never a warning)
    from nnx_compat import _added, _backports

    _backports.patch()
    for name in _added.BACKPORTS:
        if name not in vars(upstream):
            namespace[name] = _added.backport(name)
    for name in _added.EXTENDED:
        if (served := _added.extended(name)) is not None:
            namespace[name] = served
    for name in _added.ALIASES:
        if name not in vars(upstream):
            namespace[name] = _added.alias(name)
    namespace["__all__"] = sorted(set(names) | set(shimmed))
    namespace["__getattr__"] = _fallback(upstream, own_name)
    namespace["__dir__"] = lambda: sorted(set(namespace["__all__"]) | set(vars(upstream)))


def _removed_patch() -> None:
    from nnx_compat import _removed

    _removed.patch_config()


def _added_patch() -> None:
    from nnx_compat import _added

    _added.patch()


def _fallback(upstream: types.ModuleType, own_name: str) -> Callable[[str], Any]:
    def __getattr__(name: str) -> Any:
        if name in _patterns.REMOVED and name not in vars(upstream):
            # a flax 0.10 name the installed flax removed: 0.10's behaviour, or the way out
            value = _patterns.load_removed(name)
            _warnings.warn_legacy(_patterns.REMOVED[name].pattern, detail=f"nnx.{name}")
            return value
        try:
            return getattr(upstream, name)
        except AttributeError:
            from nnx_compat import _added

            if name in _added.ADDED:  # a name of a later flax: the release it needs
                raise _added.missing(name) from None
            raise AttributeError(
                f"module {own_name!r} has no attribute {name!r} "
                f"(neither has flax.nnx of the installed flax)"
            ) from None

    return __getattr__
