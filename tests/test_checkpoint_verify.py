"""nnx_compat._checkpoint.verify: a converted checkpoint against its source, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from nnx_compat._checkpoint.verify import Plan, VerificationError, array_nbytes, verify

SRC = {
    "linear/kernel": np.ones((2, 3), np.float32),
    "linear/bias": np.zeros(3, np.float32),
    "dropout/rngs/default/count": np.uint32(4),
}


def _plan(**kwargs: object) -> Plan:
    written = {
        "linear/kernel": SRC["linear/kernel"],
        "linear/bias": SRC["linear/bias"],
        "dropout/rngs/count": np.asarray(np.uint32(0)),
    }
    return Plan(written, written, **kwargs)  # type: ignore[arg-type]


def test_a_faithful_copy_verifies() -> None:
    plan = _plan()
    seen: list[tuple[int, int]] = []
    counts = verify(plan, SRC, dict(plan.written), lambda k, n: seen.append((k, n)))
    assert counts == (2, 24 + 12, 1)  # two arrays from SRC, their bytes, one fresh RNG array
    assert seen[-1] == (3, 3)


def test_every_difference_is_listed() -> None:
    plan = _plan()
    dst = dict(plan.written)
    dst["linear/bias"] = np.array([0.0, -0.0, 0.0], np.float32)  # -0.0: not the same bits
    dst["dropout/rngs/count"] = np.asarray(np.uint32(1))
    dst["extra"] = np.zeros(1)
    with pytest.raises(VerificationError) as caught:
        verify(plan, SRC, dst)
    assert caught.value.problems == [
        "in DST but not written: extra",
        "dropout/rngs/count: the RNG state read back is not the one written",
        "linear/bias: differs from SRC's linear/bias",
    ]


def test_what_src_had_must_arrive() -> None:
    plan = _plan()
    dst = {p: v for p, v in plan.written.items() if p != "linear/kernel"}
    with pytest.raises(VerificationError, match="missing from DST: linear/kernel") as caught:
        verify(plan, SRC, dst)
    assert "not carried over from SRC: linear/kernel" in caught.value.problems


def test_renames_and_unchanged_rng_state() -> None:
    plan = Plan(None, {"model/linear/bias": SRC["linear/bias"]}, renames=(("model/", ""),))
    assert plan.source("model/linear/bias", SRC) == "linear/bias"
    assert plan.source("model/dropout/rngs/default/count", SRC) is None  # RNG state: fresh
    unchanged = Plan(None, dict(SRC), unchanged=True)
    assert unchanged.source("dropout/rngs/default/count", SRC) == "dropout/rngs/default/count"
    assert array_nbytes(SRC["linear/kernel"]) == 24
