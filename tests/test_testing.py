"""nnx_compat.testing.assert_legacy."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

import nnx_compat
from nnx_compat._warnings import Site, warn_legacy
from nnx_compat.testing import assert_legacy


def _update_grads() -> None:
    warn_legacy("optimizer-update-grads")


def test_passes_when_the_block_runs_the_pattern() -> None:
    with assert_legacy("optimizer-update-grads"):
        for _ in range(3):  # once per call site, however often it runs
            _update_grads()


def test_call_sites_warned_before_warn_again_inside() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _update_grads()  # this call site is now warned about
    with assert_legacy("optimizer-update-grads"):
        _update_grads()
    assert [h.count for h in nnx_compat.report()] == [2]


def test_fails_without_the_warning() -> None:
    with (
        pytest.raises(AssertionError, match="did not run the legacy pattern 'variable-value'"),
        assert_legacy("variable-value"),
    ):
        pass


def test_other_warnings_pass_through() -> None:
    with pytest.warns(UserWarning, match="unrelated"), assert_legacy("optimizer-update-grads"):
        _update_grads()
        warnings.warn("unrelated", UserWarning, stacklevel=1)


def test_fails_when_the_warning_names_another_file() -> None:
    with (
        pytest.raises(AssertionError, match=r"warned at elsewhere\.py:3, not in the caller's"),
        assert_legacy("optimizer-update-grads"),
    ):
        warn_legacy("optimizer-update-grads", site=Site("elsewhere.py", 3))


def test_under_the_error_policy_the_block_must_raise() -> None:
    def error() -> Any:
        return nnx_compat.warnings_policy("error")

    with error(), assert_legacy("optimizer-update-grads"):
        _update_grads()
    not_raised = pytest.raises(AssertionError, match="did not raise")
    with error(), not_raised, assert_legacy("optimizer-update-grads"):
        pass
    # another pattern's error propagates
    other = pytest.raises(nnx_compat.NNXCompatDeprecationWarning, match="rngs-fork-splits")
    with error(), other, assert_legacy("optimizer-update-grads"):
        warn_legacy("rngs-fork-splits")


def test_unknown_ids_are_named() -> None:
    with pytest.raises(KeyError, match="unknown nnx_compat pattern 'no-such'"):
        assert_legacy("no-such")


def test_with_a_real_legacy_call() -> None:
    from nnx_compat import nnx

    rngs = nnx.Rngs(0)
    with assert_legacy("rngs-fork-splits"):
        rngs.fork(splits=2)
