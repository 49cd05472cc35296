"""Deprecation warnings for legacy patterns: categories, call-site attribution, policy, report.

Every shim reports a legacy pattern through :func:`warn_legacy`. It

1. finds the user's frame by walking the stack past nnx_compat, flax, jax, optax and orbax
   (so the warning names the user's file and line even when the pattern is detected deep
   inside a transform, or while ``jit`` traces the user's function);
2. records the hit in a thread-safe registry (:func:`report`), whatever the policy;
3. applies the policy: ``once`` per call site (the default), ``always``, ``error`` (raise the
   warning as an exception) or ``ignore``. The policy comes from :func:`warnings_policy` if one
   is active, else from the ``NNX_COMPAT_WARNINGS`` environment variable.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import dataclasses
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from types import FrameType
from typing import IO, Any, Final, Literal

from nnx_compat import _patterns

__all__ = [
    "NNXCompatDeprecationWarning",
    "Hit",
    "Policy",
    "Site",
    "category_for",
    "print_report",
    "report",
    "report_at_exit",
    "reset_report",
    "user_site",
    "warn_legacy",
    "warnings_policy",
]

Policy = Literal["once", "always", "error", "ignore"]
POLICIES: Final[tuple[Policy, ...]] = ("once", "always", "error", "ignore")
ENV_POLICY: Final = "NNX_COMPAT_WARNINGS"
ENV_REPORT: Final = "NNX_COMPAT_REPORT"


class NNXCompatDeprecationWarning(DeprecationWarning):
    """A legacy flax.nnx call pattern ran through nnx_compat.

    The message names the legacy call, its replacement and the flax release that changed it;
    the warning's filename and lineno are the user's line.

    Attributes:
        pattern: The record of the pattern table this warning is about (None only for a
            warning built by hand).
    """

    pattern: _patterns.Pattern | None = None


def _warning(category: type[NNXCompatDeprecationWarning], text: str, pattern: Any) -> Any:
    """A warning of ``category`` carrying its pattern record (``warning.pattern``)."""
    warning = category(text)
    warning.pattern = pattern
    return warning


class OptimizerDeprecationWarning(NNXCompatDeprecationWarning):
    """A legacy ``nnx.Optimizer`` pattern."""


class RngsDeprecationWarning(NNXCompatDeprecationWarning):
    """A legacy ``nnx.Rngs`` or ``split_rngs`` pattern."""


class CheckpointDeprecationWarning(NNXCompatDeprecationWarning):
    """A legacy checkpoint or state pattern."""


class PytreeDeprecationWarning(NNXCompatDeprecationWarning):
    """A legacy pytree or object-model pattern."""


class VariableDeprecationWarning(NNXCompatDeprecationWarning):
    """A legacy ``nnx.Variable`` pattern."""


class ShardingDeprecationWarning(NNXCompatDeprecationWarning):
    """A legacy sharding-annotation pattern."""


class LayersDeprecationWarning(NNXCompatDeprecationWarning):
    """A legacy layer-constructor pattern."""


class TransformsDeprecationWarning(NNXCompatDeprecationWarning):
    """A legacy transform argument."""


_CATEGORIES: Final[dict[str, type[NNXCompatDeprecationWarning]]] = {
    "optimizer": OptimizerDeprecationWarning,
    "rngs": RngsDeprecationWarning,
    "checkpoint": CheckpointDeprecationWarning,
    "pytree": PytreeDeprecationWarning,
    "variable": VariableDeprecationWarning,
    "sharding": ShardingDeprecationWarning,
    "layers": LayersDeprecationWarning,
    "transforms": TransformsDeprecationWarning,
}


def category_for(pattern: _patterns.Pattern) -> type[NNXCompatDeprecationWarning]:
    """The warning subclass of a pattern's family."""
    return _CATEGORIES[pattern.family]


# --------------------------------------------------------------------------- attribution

_INTERNAL_PACKAGES: Final = ("nnx_compat", "flax", "jax", "jaxlib", "optax", "orbax")
_INTERNAL_FILES: Final = ("contextlib", "functools", "threading")


@dataclasses.dataclass
class _Internal:
    dirs: tuple[str, ...] = ()
    files: frozenset[str] = frozenset()
    seen_modules: int = -1


_internal = _Internal()


def _internal_paths() -> _Internal:
    # Recomputed when new modules were imported, since flax/jax may be imported after us.
    if _internal.seen_modules != len(sys.modules):
        dirs = []
        for name in _INTERNAL_PACKAGES:
            module = sys.modules.get(name)
            path = getattr(module, "__file__", None)
            if path:
                dirs.append(os.path.dirname(os.path.abspath(path)) + os.sep)
            for entry in getattr(module, "__path__", ()) or ():
                dirs.append(os.path.abspath(entry) + os.sep)
        files = {
            os.path.abspath(path)
            for name in _INTERNAL_FILES
            if (path := getattr(sys.modules.get(name), "__file__", None))
        }
        _internal.dirs = tuple(sorted(set(dirs)))
        _internal.files = frozenset(files)
        _internal.seen_modules = len(sys.modules)
    return _internal


def _is_internal(filename: str, internal: _Internal) -> bool:
    if filename.startswith("<frozen "):
        return True
    if filename in internal.files:
        return True
    return filename.startswith(internal.dirs)


def user_frame() -> FrameType | None:
    """The innermost frame on the stack that belongs to neither nnx_compat nor its upstreams."""
    internal = _internal_paths()
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not _is_internal(filename, internal) and not _is_internal(
            os.path.abspath(filename), internal
        ):
            return frame
        frame = frame.f_back  # type: ignore[assignment]
    return None


def called_from_user(depth: int = 2) -> bool:
    """Whether the frame ``depth`` levels above the caller is user code.

    Shims use it to warn about an attribute read by the user (``optimizer.model``) but not
    about the same read done by flax internals (graph traversal, ``nnx.update``).
    """
    frame: FrameType | None = sys._getframe(depth)
    # attribute hooks between the user and the property (flax's own __getattribute__, and
    # flax 0.12 Variable's __setattr__, which runs property setters)
    while frame is not None and frame.f_code.co_name in ("__getattribute__", "__setattr__"):
        frame = frame.f_back
    return frame is not None and not _is_internal(frame.f_code.co_filename, _internal_paths())


# --------------------------------------------------------------------------- policy

_policy_var: contextvars.ContextVar[Policy | None] = contextvars.ContextVar(
    "nnx_compat_warnings_policy", default=None
)
_bad_env_reported: set[str] = set()


def _check_policy(value: str) -> Policy:
    if value not in POLICIES:
        raise ValueError(f"unknown nnx_compat warnings policy {value!r}; use one of {POLICIES}")
    return value


def current_policy() -> Policy:
    """The policy in force: the innermost :func:`warnings_policy`, else the environment."""
    policy = _policy_var.get()
    if policy is not None:
        return policy
    value = os.environ.get(ENV_POLICY, "once").strip().lower() or "once"
    if value in POLICIES:
        return value
    if value not in _bad_env_reported:
        _bad_env_reported.add(value)
        warnings.warn(
            f"{ENV_POLICY}={value!r} is not one of {', '.join(POLICIES)}; using 'once'",
            UserWarning,
            stacklevel=3,
        )
    return "once"


@contextlib.contextmanager
def warnings_policy(policy: Policy) -> Iterator[None]:
    """Sets the policy for legacy-pattern warnings inside a ``with`` block.

    Args:
        policy: ``"once"`` per call site, ``"always"``, ``"error"`` (raise the warning) or
            ``"ignore"`` (hits are still recorded in :func:`report`).

    Raises:
        ValueError: for an unknown policy.
    """
    token = _policy_var.set(_check_policy(policy))
    try:
        yield
    finally:
        _policy_var.reset(token)


# --------------------------------------------------------------------------- report


@dataclasses.dataclass(frozen=True)
class Hit:
    """Where a legacy pattern ran, and how often.

    Attributes:
        pattern: The pattern id.
        filename: The user's file.
        lineno: The user's line.
        count: How many times it ran there.
    """

    pattern: str
    filename: str
    lineno: int
    count: int


_lock = threading.Lock()
_hits: dict[tuple[str, str, int], int] = {}
_warned: set[tuple[str, str, int]] = set()
_exit_report_registered = False

#: Called on every hit, whatever the policy, with the hit and the policy in force (the pytest
#: plugin attributes hits to tests this way).
Listener = Callable[["Occurrence", "Policy"], None]
_listeners: list[Listener] = []


@dataclasses.dataclass(frozen=True)
class Occurrence:
    """One run of a legacy pattern: which, where, and whether the warning filters in force
    there would show its warning (``shown``: False when they ignore it)."""

    pattern: str
    filename: str
    lineno: int
    module: str

    def shown(self) -> bool:
        """Whether the active warning filters show this pattern's warning at its line."""
        pattern = _patterns.get(self.pattern)
        return filter_action(
            category_for(pattern), pattern.message(), self.module, self.lineno
        ) != ("ignore")


def add_listener(listener: Listener) -> None:
    """Calls ``listener`` on every hit from now on."""
    with _lock:
        _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


@contextlib.contextmanager
def fresh_call_sites() -> Iterator[None]:
    """Under the ``once`` policy, every call site warns again inside the block (the sites warned
    about before it are remembered again after it)."""
    with _lock:
        saved = set(_warned)
        _warned.clear()
    try:
        yield
    finally:
        with _lock:
            _warned.update(saved)


def report() -> tuple[Hit, ...]:
    """Every legacy pattern hit so far in this process, sorted by pattern, file and line."""
    with _lock:
        items = sorted(_hits.items())
    return tuple(Hit(p, f, line, count) for (p, f, line), count in items)


def reset_report() -> None:
    """Forgets every recorded hit and every call site already warned about."""
    with _lock:
        _hits.clear()
        _warned.clear()


def print_report(file: IO[str] | None = None) -> None:
    """Prints :func:`report` as a table: one line per call site, with the replacement."""
    out = file if file is not None else sys.stderr
    hits = report()
    if not hits:
        print("nnx_compat: no legacy flax.nnx patterns ran.", file=out)
        return
    sites = f"{len(hits)} call site" + ("" if len(hits) == 1 else "s")
    print(f"nnx_compat: {sites} ran legacy flax.nnx patterns:", file=out)
    for hit in hits:
        pattern = _patterns.get(hit.pattern)
        print(
            f"  {hit.filename}:{hit.lineno}: {pattern.legacy} -> {pattern.new} "
            f"(flax {pattern.changed_in}) x{hit.count} [{hit.pattern}]",
            file=out,
        )


def report_at_exit(enable: bool = True) -> None:
    """Prints :func:`report` to stderr when the process exits (also: ``NNX_COMPAT_REPORT=1``)."""
    global _exit_report_registered
    with _lock:
        if enable and not _exit_report_registered:
            atexit.register(print_report)
            _exit_report_registered = True
        elif not enable and _exit_report_registered:
            atexit.unregister(print_report)
            _exit_report_registered = False


if os.environ.get(ENV_REPORT, "").strip().lower() in ("1", "true", "yes", "on"):
    report_at_exit()


# --------------------------------------------------------------------------- warn


@dataclasses.dataclass(frozen=True)
class Site:
    """A line of user code: where a legacy pattern is written."""

    filename: str
    lineno: int
    module_globals: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno}"


def user_site() -> Site:
    """The user's line that is running now (see :func:`user_frame`)."""
    frame = user_frame()
    if frame is None:  # nothing but internal frames on the stack
        return Site("<unknown>", 0)
    return Site(frame.f_code.co_filename, frame.f_lineno, frame.f_globals)


def warn_legacy(pattern_id: str, *, detail: str = "", site: Site | None = None) -> None:
    """Reports that a legacy pattern ran at the user's line.

    Args:
        pattern_id: The id of a record in the pattern table.
        detail: Extra text for the message (e.g. the values involved).
        site: Where the pattern is written, when that is not the running line (a decorator
            whose legacy use only shows when the decorated function runs).

    Raises:
        NNXCompatDeprecationWarning: (a subclass) under the ``error`` policy.
    """
    pattern = _patterns.get(pattern_id)
    if pattern.same_call:
        raise ValueError(
            f"pattern {pattern_id!r} is a call the installed flax runs with its own meaning: "
            "nnx_compat does not warn about it at run time"
        )
    where = site if site is not None else user_site()
    filename, lineno, module_globals = where.filename, where.lineno, where.module_globals
    key = (pattern_id, filename, lineno)
    policy = current_policy()
    module = module_globals.get("__name__", "<unknown>")
    with _lock:
        _hits[key] = _hits.get(key, 0) + 1
        listeners = tuple(_listeners)
    for listener in listeners:
        listener(Occurrence(pattern_id, filename, lineno, module), policy)
    with _lock:
        if policy == "ignore" or (policy == "once" and key in _warned):
            return
        _warned.add(key)
    message = pattern.message() + (f" ({detail})" if detail else "")
    category = category_for(pattern)
    if policy == "error":
        raise _warning(category, f"{filename}:{lineno}: {message}", pattern)
    if _hidden_by_python_default(category, message, module, lineno):
        # Python hides DeprecationWarning outside __main__ unless told otherwise; a legacy
        # pattern in a user's library module would go unseen. Show it, as "default" would.
        warnings.showwarning(_warning(category, message, pattern), category, filename, lineno)
        return
    warnings.warn_explicit(
        _warning(category, message, pattern),
        category,
        filename,
        lineno,
        module=module,
        # A fresh registry: nnx_compat already decided that this call site should warn.
        registry={},
        module_globals=_source_globals(filename, lineno, module_globals),
    )


def _source_globals(filename: str, lineno: int, module_globals: dict[str, Any]) -> Any:
    """``module_globals`` if ``warnings.warn_explicit`` can use them to find the source line,
    else None (the line is then shown without its source, or from the file itself).

    ``warn_explicit`` asks the module's loader for the source. For ``python -c`` and
    ``python - < script.py`` the ``__main__`` loader is ``BuiltinImporter``, which raises
    ``ImportError: '__main__' is not a built-in module``; Python 3.12 also insists on a
    ``__spec__.loader`` (``runpy.run_path`` and ``exec`` give none) and raises ``ValueError`` or
    warns otherwise. A legacy warning must never crash the program, nor add a warning.
    """
    if not module_globals:
        return None
    spec = module_globals.get("__spec__")
    loader = getattr(spec, "loader", None)
    if loader is None or module_globals.get("__loader__", loader) is not loader:
        return None
    get_source = getattr(loader, "get_source", None)
    if get_source is None:
        return None
    try:
        get_source(module_globals.get("__name__", "__main__"))
    except Exception:
        return None
    return module_globals


def _matches(pattern: Any, text: str) -> bool:
    # as the warnings module does: None matches all, a str exactly, a regex from its start
    if pattern is None:
        return True
    if isinstance(pattern, str):
        return pattern == text
    return bool(pattern.match(text))


_PYTHON_DEFAULT_IGNORE: Final = ("ignore", None, DeprecationWarning, None, 0)


def _first_filter(category: type[Warning], text: str, module: str, lineno: int) -> Any:
    for item in warnings.filters:
        _, msg, cat, mod, line = item
        if not issubclass(category, cat):
            continue
        if not _matches(msg, text) or not _matches(mod, module):
            continue
        if line and line != lineno:
            continue
        return item
    return None


def filter_action(category: type[Warning], text: str, module: str, lineno: int) -> str:
    """What the active warning filters do with this warning (``"default"`` if none matches),
    as nnx_compat applies them: the interpreter's default ignore of DeprecationWarning is
    overridden (see :func:`_hidden_by_python_default`)."""
    item = _first_filter(category, text, module, lineno)
    if item is None or item == _PYTHON_DEFAULT_IGNORE:
        return "default"
    return str(item[0])


def _hidden_by_python_default(category: type[Warning], text: str, module: str, lineno: int) -> bool:
    """Whether the filter that would handle this warning is the interpreter's default ignore.

    Any filter the user, ``-W`` or pytest installed comes first and is respected.
    """
    return bool(_first_filter(category, text, module, lineno) == _PYTHON_DEFAULT_IGNORE)
