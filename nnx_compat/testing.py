"""Helpers for testing code that runs legacy flax.nnx patterns through nnx_compat.

:func:`assert_legacy` is to nnx_compat's warnings what NumPy's ``assert_deprecated`` is to
NumPy's: the block must run the named legacy pattern, and nnx_compat must say so exactly once
per call site, at the caller's line; under the ``error`` policy (``NNX_COMPAT_WARNINGS=error``
or ``nnx_compat.warnings_policy("error")``) the block must raise the warning instead.
"""

from __future__ import annotations

import sys
import warnings
from types import TracebackType

from nnx_compat import _patterns, _warnings

__all__ = ["assert_legacy"]


class assert_legacy:
    """Asserts that the ``with`` block runs the legacy pattern ``pattern_id``.

    Usage::

        with assert_legacy("optimizer-update-grads"):
            optimizer.update(grads)

    Checks, when the block ends:

    * under the ``error`` policy: the block raised the pattern's warning (which is swallowed);
    * otherwise: the pattern warned at least once, exactly once per call site, each time at a
      line of the file that holds the ``with`` statement. Other warnings pass through.

    Call sites warned about before the block warn again inside it (the ``once`` policy counts
    afresh), so the assertion does not depend on what ran earlier in the process.

    Raises:
        KeyError: for an unknown pattern id (naming the known ones).
        AssertionError: when a check fails.
    """

    def __init__(self, pattern_id: str) -> None:
        self.pattern = _patterns.get(pattern_id)
        self._sites = _warnings.fresh_call_sites()
        self._error = _warnings.current_policy() == "error"
        # "once" per call site is what is asserted; "error" is kept
        self._policy = _warnings.warnings_policy("error" if self._error else "once")
        self._record = warnings.catch_warnings(record=True)
        self._caught: list[warnings.WarningMessage] = []
        self._filename = ""
        self._first_line = 0

    def __enter__(self) -> assert_legacy:
        caller = sys._getframe(1)
        self._filename, self._first_line = caller.f_code.co_filename, caller.f_lineno
        self._sites.__enter__()
        self._policy.__enter__()
        self._caught = self._record.__enter__()
        warnings.simplefilter("always", _warnings.NNXCompatDeprecationWarning)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        self._record.__exit__(None, None, None)
        self._policy.__exit__(None, None, None)
        self._sites.__exit__(None, None, None)
        ours = [w for w in self._caught if getattr(w.message, "pattern", None) is self.pattern]
        for other in self._caught:
            if other not in ours:  # pass the others on, as if we were not here
                warnings.warn_explicit(
                    other.message, other.category, other.filename, other.lineno, source=other.source
                )
        if self._error:
            if getattr(error, "pattern", None) is self.pattern:
                return True  # raised as it must be
            if error is not None:
                return False
            raise AssertionError(
                f"under the 'error' policy the block did not raise [{self.pattern.id}]: "
                f"{self.pattern.legacy} did not run"
            )
        if error is not None:
            return False
        if not ours:
            raise AssertionError(
                f"the block did not run the legacy pattern {self.pattern.id!r} "
                f"({self.pattern.legacy}): no warning"
            )
        sites: dict[tuple[str, int], int] = {}
        for w in ours:
            sites[(w.filename, w.lineno)] = sites.get((w.filename, w.lineno), 0) + 1
        twice = [f"{f}:{line} x{n}" for (f, line), n in sites.items() if n > 1]
        if twice:
            raise AssertionError(
                f"[{self.pattern.id}] warned more than once at a call site: {', '.join(twice)}"
            )
        elsewhere = [f"{f}:{line}" for f, line in sites if f != self._filename]
        if elsewhere:
            raise AssertionError(
                f"[{self.pattern.id}] warned at {', '.join(elsewhere)}, not in the caller's file "
                f"{self._filename} (the warning must name the user's line)"
            )
        return False
