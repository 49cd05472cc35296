"""The recurrent layers with flax 0.11's RNG handling on every flax (``_recurrent``).

The cross-version run (``tests/crossversion.py``, ``recurrent/...``) proves that flax 0.10 draws
the same carries and holds the same RNG state as 0.11 and 0.12; these tests prove the forms,
the warnings, and that on flax 0.11+ the shims are flax's layers, bit for bit.
"""

from __future__ import annotations

from typing import Any

import flax.nnx as upstream
import jax
import jax.numpy as jnp
import pytest

import nnx_compat
from nnx_compat import _paths, _versions, nnx
from nnx_compat._warnings import LayersDeprecationWarning
from tests.markers import line_of
from tests.strategies import assert_same_bits

# flax 0.12 deprecates the 0.11 forms these tests build (its own UserWarnings, passed through)
pytestmark = pytest.mark.filterwarnings(
    "ignore:keep_rngs argument is deprecated:UserWarning",
    "ignore:carry_init is provided in __init__:UserWarning",
)

FORKS = _versions.feature("LAYERS_FORK_RNGS")  # flax 0.11.0
CELLS = ("LSTMCell", "OptimizedLSTMCell", "SimpleCell", "GRUCell")
INIT = upstream.initializers.normal(1.0)
X = jnp.linspace(-1.0, 1.0, 2 * 5 * 3).reshape(2, 5, 3)


def _rng_paths(node: Any) -> list[str]:
    return sorted(_paths.flatten(nnx.state(node, nnx.RngState)))


def _flat(node: Any) -> dict[str, Any]:
    """Every array of the node's state by path (keys as their raw data)."""
    out = {}
    for path, leaf in _paths.flatten(nnx.state(node)).items():
        value = leaf.get_value() if hasattr(leaf, "get_value") else leaf.value
        if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
            value = jax.random.key_data(value)
        out[path] = value
    return out


@pytest.mark.parametrize("name", CELLS)
def test_a_cell_keeps_no_rngs_unless_asked(name: str) -> None:
    cls = getattr(nnx, name)
    assert _rng_paths(cls(3, 4, rngs=nnx.Rngs(0))) == []
    assert _rng_paths(cls(3, 4, keep_rngs=True, rngs=nnx.Rngs(0))) == ["rngs/count", "rngs/key"]
    assert nnx_compat.report() == ()


@pytest.mark.parametrize("name", CELLS)
def test_a_cell_is_flaxs_own_where_flax_forks(name: str) -> None:
    """On flax 0.11+ the shim builds and runs exactly as flax's class."""
    if not FORKS:
        pytest.skip("flax 0.10's cells hold the caller's Rngs: the cross-version run compares")
    for keep in (False, True):  # flax 0.12 deprecates keep_rngs itself (a UserWarning)
        ours = getattr(nnx, name)(3, 4, carry_init=INIT, keep_rngs=keep, rngs=nnx.Rngs(0))
        theirs = getattr(upstream, name)(3, 4, carry_init=INIT, keep_rngs=keep, rngs=nnx.Rngs(0))
        assert isinstance(ours, getattr(upstream, name))
        for path, value in _flat(theirs).items():
            assert_same_bits(_flat(ours)[path], value)
        carry = ours.initialize_carry((2, 3), nnx.Rngs(carry=5))
        assert_same_bits(carry, theirs.initialize_carry((2, 3), nnx.Rngs(carry=5)))
    assert nnx_compat.report() == ()


def test_rnn_and_bidirectional_take_flax_011_rngs() -> None:
    cell = nnx.GRUCell(3, 4, carry_init=INIT, rngs=nnx.Rngs(0))
    assert _rng_paths(nnx.RNN(cell)) == ["rngs/count", "rngs/key"]  # rngs=True by default
    assert _rng_paths(nnx.RNN(cell, rngs=False)) == []
    rngs = nnx.Rngs(carry=3)
    rnn = nnx.RNN(cell, rngs=rngs)
    assert int(rngs.carry.count[...]) == 1  # the RNN forked the carry stream
    y1, y2 = rnn(X), rnn(X)
    assert not jnp.array_equal(y1, y2)  # each call draws a new carry
    bi = nnx.Bidirectional(nnx.RNN(cell, rngs=False), nnx.RNN(cell, rngs=False))
    assert _rng_paths(bi) == ["rngs/count", "rngs/key"]
    assert bi(X).shape == (2, 5, 8)
    with pytest.raises(TypeError if not FORKS else (TypeError, ValueError)):
        nnx.RNN(cell, rngs="carry")
    assert nnx_compat.report() == ()


def test_rngs_none_means_the_default_stream() -> None:
    """flax 0.10's default ``rngs=None``, which flax 0.11+ rejects."""
    cell = nnx.SimpleCell(3, 4, carry_init=INIT, rngs=nnx.Rngs(0))
    if FORKS:
        with pytest.raises(ValueError, match="rngs"):
            upstream.RNN(cell, rngs=None)
        with pytest.raises(TypeError, match="rngs"):
            upstream.Bidirectional(upstream.RNN(cell), upstream.RNN(cell), rngs=None)
    with pytest.warns(LayersDeprecationWarning, match="recurrent-layers-fork-rngs") as caught:
        rnn = nnx.RNN(cell, rngs=None)  # RNN-RNGS-NONE
    assert caught[0].lineno == line_of(__file__, "RNN-RNGS-NONE")
    assert_same_bits(rnn(X), nnx.RNN(cell)(X))
    backward = nnx.RNN(cell, rngs=False)
    with pytest.warns(LayersDeprecationWarning, match="recurrent-layers-fork-rngs") as caught:
        bi = nnx.Bidirectional(rnn, backward, rngs=None)  # BI-RNGS-NONE
    assert caught[0].lineno == line_of(__file__, "BI-RNGS-NONE")
    assert_same_bits(bi(X), nnx.Bidirectional(rnn, backward)(X))


@pytest.mark.parametrize("name", CELLS)
def test_initialize_carry_without_rngs_draws_from_the_build_rngs(name: str) -> None:
    """flax 0.10's ``cell.initialize_carry(shape)``: flax 0.11+ raises without a kept stream."""
    if FORKS:
        native = getattr(upstream, name)(3, 4, rngs=upstream.Rngs(0))
        with pytest.raises(ValueError, match="RNGs must be provided"):
            native.initialize_carry((2, 3))
    rngs = nnx.Rngs(0, carry=7)
    cell = getattr(nnx, name)(3, 4, carry_init=INIT, rngs=rngs)
    expected = jax.tree.map(
        lambda c: INIT(jax.random.fold_in(jax.random.key(7), 0), c.shape, c.dtype),
        cell.initialize_carry((2, 3), nnx.Rngs(carry=7)),
    )
    with pytest.warns(LayersDeprecationWarning, match="recurrent-layers-fork-rngs") as caught:
        carry = cell.initialize_carry((2, 3))  # CARRY-NO-RNGS
    assert caught[0].lineno == line_of(__file__, "CARRY-NO-RNGS")
    first = jax.tree.leaves(carry)[0]
    assert_same_bits(first, jax.tree.leaves(expected)[0])
    assert int(rngs.carry.count[...]) == len(jax.tree.leaves(carry))


def _flax_checks_trace_levels() -> bool:
    """flax 0.10.4 checks no trace level (its ``TraceState.is_valid`` answers True)."""
    rngs = upstream.Rngs(0)
    seen: list[bool] = []
    jax.jit(lambda: seen.append(rngs.default.count._trace_state.is_valid()))()
    return not seen[0]


def test_initialize_carry_without_rngs_inside_a_transform_names_the_fix() -> None:
    """The build Rngs belongs to the outer trace: drawing from it there cannot be had."""
    cell = nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0))
    if not _flax_checks_trace_levels():  # flax 0.10.4: it draws (a leak), as flax itself does
        with pytest.warns(LayersDeprecationWarning, match="recurrent-layers-fork-rngs"):
            jax.jit(lambda: cell.initialize_carry((2, 3)))()
        return
    with pytest.raises(ValueError, match=r"keep_rngs=True .*recurrent-layers-fork-rngs"):
        jax.jit(lambda: cell.initialize_carry((2, 3)))()

    @nnx.jit
    def first_carry(cell: Any) -> Any:  # nnx.jit's copy of the cell: flax 0.11's own error
        return cell.initialize_carry((2, 3))

    with pytest.raises(ValueError, match="RNGs must be provided"):
        first_carry(cell)


def test_a_cell_without_any_rngs_raises_flax_011s_error() -> None:
    """A cell nnx_compat did not see built (so no build Rngs to fall back on) and keeping no
    stream: flax 0.11's error."""
    stray = nnx.SimpleCell.__new__(nnx.SimpleCell)
    stray.__dict__.update(vars(nnx.SimpleCell(3, 4, rngs=nnx.Rngs(0))))
    with pytest.raises(ValueError, match="RNGs must be provided"):
        stray.initialize_carry((2, 3))


def test_the_shims_answer_isinstance_as_flaxs_classes() -> None:
    for name in (*CELLS, "RNN", "Bidirectional"):
        assert issubclass(getattr(upstream, name), getattr(nnx, name)), name
    native = upstream.LSTMCell(3, 4, rngs=upstream.Rngs(0))
    assert isinstance(native, nnx.LSTMCell)


def test_initialize_carry_passes_the_installed_flaxs_keywords() -> None:
    """flax 0.12 takes ``carry_init=`` at ``initialize_carry``; the shim passes it on."""
    import inspect

    native = inspect.signature(upstream.LSTMCell.initialize_carry).parameters
    if "carry_init" not in native:
        pytest.skip("the installed flax's initialize_carry takes no carry_init")
    cell = nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0))
    ours = cell.initialize_carry((2, 3), nnx.Rngs(carry=1), carry_init=INIT)
    theirs = upstream.LSTMCell(3, 4, rngs=upstream.Rngs(0)).initialize_carry(
        (2, 3), upstream.Rngs(carry=1), carry_init=INIT
    )
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        assert_same_bits(a, b)
