"""``install()``/``uninstall()``: serve the shims to code that does ``from flax import nnx``."""

from __future__ import annotations

import threading
from typing import Any, Final

from nnx_compat import _namespace

__all__ = ["install", "installed", "uninstall"]

_MISSING: Final = object()
_lock = threading.Lock()
_saved: dict[str, Any] = {}  # name -> the upstream attribute it replaced, or _MISSING
_active = False


def install() -> None:
    """Makes ``flax.nnx.<name>`` the nnx_compat shim for every bridged name, and serves the
    flax 0.10 names the installed flax removed as ``nnx_compat.nnx`` does.

    For third-party code that does ``from flax import nnx`` and cannot be edited. Code that
    bound a name before (``from flax.nnx import Optimizer``) keeps the upstream object.
    Idempotent and thread-safe; :func:`uninstall` restores every attribute exactly.
    """
    global _active
    with _lock:
        if _active:
            return
        from nnx_compat import nnx as namespace

        upstream = _upstream()
        for name in _namespace.bound_shims(upstream):
            _saved[name] = upstream.__dict__.get(name, _MISSING)
            setattr(upstream, name, getattr(namespace, name))
        native = upstream.__dict__.get("__getattr__", _MISSING)
        _saved["__getattr__"] = native
        upstream.__getattr__ = _removed_names(namespace, native)
        _active = True


def _removed_names(namespace: Any, native: Any) -> Any:
    """A module ``__getattr__`` for ``flax.nnx`` that serves the flax 0.10 names the installed
    flax removed (``_patterns.REMOVED``) as ``nnx_compat.nnx`` does, and leaves every other
    missing name to flax's own ``__getattr__`` (or flax's ``AttributeError``)."""
    from nnx_compat import _patterns

    def __getattr__(name: str) -> Any:
        if name in _patterns.REMOVED:
            return getattr(namespace, name)
        if native is not _MISSING:
            return native(name)
        raise AttributeError(f"module 'flax.nnx' has no attribute {name!r}")

    return __getattr__


def uninstall() -> None:
    """Restores every ``flax.nnx`` attribute :func:`install` replaced or added. Idempotent."""
    global _active
    with _lock:
        if not _active:
            return
        upstream = _upstream()
        for name, original in _saved.items():
            if original is _MISSING:
                upstream.__dict__.pop(name, None)
            else:
                setattr(upstream, name, original)
        _saved.clear()
        _active = False


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    return _active


def _upstream() -> Any:
    from nnx_compat import _versions

    return _versions.import_nnx()
