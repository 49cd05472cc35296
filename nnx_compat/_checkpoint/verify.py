"""Verification of a converted checkpoint: every array that came from the source is in the
destination bit for bit, nothing is missing or extra, and the fresh RNG state reads back as
written. ``nnx-compat fix-checkpoint`` runs it on what it saved before putting it in place."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nnx_compat._bits import is_key, same_bits
from nnx_compat._checkpoint.layout import CheckpointError, is_rng_path

__all__ = ["Plan", "VerificationError", "array_nbytes", "verify"]


class VerificationError(CheckpointError):
    """The destination does not hold what was written; ``problems`` says where."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def array_nbytes(array: Any) -> int:
    """The bytes of an array (a PRNG key array: of its key data)."""
    import jax

    if is_key(array):
        array = jax.random.key_data(array)
    return int(array.size) * int(array.dtype.itemsize)


class Plan:
    """What to save, and where each of its arrays comes from in SRC.

    Attributes:
        tree: The pytree saved to DST.
        written: ``path -> array`` of ``tree``.
        renames: ``(DST prefix, SRC prefix)`` pairs: an array at ``DST prefix + rest`` is SRC's
            ``SRC prefix + rest``, first match wins.
        ignored: SRC paths that are not expected in DST (besides RNG state).
        unchanged: SRC needed no conversion; then RNG state is carried over too.
    """

    def __init__(
        self,
        tree: Any,
        written: dict[str, Any],
        renames: tuple[tuple[str, str], ...] = (("", ""),),
        ignored: tuple[str, ...] = (),
        unchanged: bool = False,
    ) -> None:
        self.tree = tree
        self.written = written
        self.renames = renames
        self.ignored = ignored
        self.unchanged = unchanged

    def source(self, path: str, src: Mapping[str, Any]) -> str | None:
        """The SRC path DST's ``path`` must equal bit for bit, or None for fresh RNG state."""
        for dst_prefix, src_prefix in self.renames:
            if path.startswith(dst_prefix):
                candidate = src_prefix + path[len(dst_prefix) :]
                if candidate in src and (self.unchanged or not is_rng_path(candidate)):
                    return candidate
        return None

    def carried(self, src: Mapping[str, Any]) -> set[str]:
        """The SRC paths that must arrive in DST."""
        return {
            path
            for path in src
            if (self.unchanged or not is_rng_path(path)) and not path.startswith(self.ignored)
        }


def verify(
    plan: Plan,
    src: Mapping[str, Any],
    dst: Mapping[str, Any],
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> tuple[int, int, int]:
    """Compares DST (read back) with SRC and with what was written.

    Returns:
        The number of arrays from SRC found equal, their bytes, and the fresh RNG arrays.

    Raises:
        VerificationError: listing every difference.
    """
    problems: list[str] = []
    missing = sorted(set(plan.written) - set(dst))
    extra = sorted(set(dst) - set(plan.written))
    if missing:
        problems.append(f"missing from DST: {', '.join(missing)}")
    if extra:
        problems.append(f"in DST but not written: {', '.join(extra)}")
    verified = nbytes = fresh = 0
    seen: set[str] = set()  # the SRC paths found in DST, equal or not
    paths = sorted(set(dst) & set(plan.written))
    for k, path in enumerate(paths, 1):
        origin = plan.source(path, src)
        if origin is None:  # RNG state, initialised afresh: DST holds what was written
            fresh += 1
            if not same_bits(dst[path], plan.written[path]):
                problems.append(f"{path}: the RNG state read back is not the one written")
        elif same_bits(dst[path], src[origin]):
            verified += 1
            nbytes += array_nbytes(src[origin])
            seen.add(origin)
        else:
            seen.add(origin)
            problems.append(f"{path}: differs from SRC's {origin}")
        progress(k, len(paths))
    lost = sorted(plan.carried(src) - seen)
    if lost:
        problems.append(f"not carried over from SRC: {', '.join(lost)}")
    if problems:
        raise VerificationError(problems)
    return verified, nbytes, fresh
