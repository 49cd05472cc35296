"""``split_rngs``, ``Rngs.fork``/``split``, ``fork_rngs`` and ``reseed`` with 0.11 semantics."""

from __future__ import annotations

import warnings
from typing import Any

import flax.nnx as upstream
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnx_compat
from nnx_compat import _rngs, _versions, nnx
from nnx_compat._warnings import RngsDeprecationWarning
from nnx_compat.cli import doctor as _doctor
from tests.hlo import lowered_text
from tests.markers import line_of
from tests.strategies import assert_bitwise_equal, assert_same_bits, flat_arrays

FORKS = _versions.feature("LAYERS_FORK_RNGS")


#: flax 0.10.7 added ``Rngs.fork`` and ``RngStream.fork``; before it, the tests compare with
#: what those compute (each stream's next key, split where asked, in a new ``Rngs``).
NATIVE_FORK = _versions.feature("RNGSTREAM_FORK")


def _native_fork(rngs: Any, split: Any = None) -> Any:
    if NATIVE_FORK:
        return rngs.fork() if split is None else rngs.fork(split=split)
    keys = {name: stream() for name, stream in rngs.items()}
    if split is not None:
        keys = {name: jax.random.split(key, split) for name, key in keys.items()}
    return upstream.Rngs(**keys)


def _key_data(key: jax.Array) -> np.ndarray:
    return np.asarray(jax.random.key_data(key))


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    with nnx_compat.warnings_policy("ignore"):
        return fn(*args, **kwargs)


# --- reproductions on the installed flax ---------------------------------------------------


@pytest.mark.skipif(not FORKS, reason="flax 0.10 runs its own form natively")
def test_native_0_10_form_fails_on_0_11_and_later() -> None:
    with pytest.raises(ValueError, match="fold_in accepts a single key"):
        _doctor.seed_scan_program(upstream, "0.10")


@pytest.mark.skipif(FORKS, reason="flax 0.11+ runs the 0.11 form natively")
def test_native_0_11_form_fails_on_0_10() -> None:
    with pytest.raises(ValueError, match="axis 0 is out of bounds"):
        _doctor.seed_scan_program(upstream, "0.11")


@pytest.mark.parametrize("form", ["0.10", "0.11", "fork"])
def test_every_form_runs_and_gives_the_0_11_results(form: str) -> None:
    """The guide's three forms give one result; on flax 0.11+ it is the native 0.11 one."""
    result = _quiet(_doctor.seed_scan_program, nnx, form)
    reference = _doctor.seed_scan_program(upstream if FORKS else nnx, "0.11")
    assert_bitwise_equal(result, reference)
    assert result["model/dropout/rngs/key"].shape == (5, 2)  # the layer axis is kept
    assert result["model/dropout/rngs/count"].tolist() == [2] * 5  # two calls, one mask each


# --- equivalence -------------------------------------------------------------------------------


@given(
    layers=st.integers(1, 5),
    width=st.integers(1, 6),
    rate=st.sampled_from([0.0, 0.1, 0.5, 0.9]),
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 4),
)
def test_legacy_form_equals_the_0_11_form_bit_for_bit(
    layers: int, width: int, rate: float, seed: int, batch: int
) -> None:
    kwargs = dict(layers=layers, width=width, rate=rate, seed=seed, batch=batch)
    legacy = _quiet(_doctor.seed_scan_program, nnx, "0.10", **kwargs)
    # on flax 0.11+ the reference is the native 0.11 form; 0.10 has no native 0.11 form
    native = _doctor.seed_scan_program(upstream if FORKS else nnx, "0.11", **kwargs)
    assert_bitwise_equal(legacy, native)


def _scan_model(form: str) -> Any:
    def init(self: Any, rngs: Any) -> None:
        self.linear = nnx.Linear(3, 3, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)

    def call(self: Any, x: Any) -> Any:
        return self.dropout(self.linear(x))

    scanned = nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)(call)
    if form == "legacy":
        scanned = nnx.split_rngs(splits=4)(scanned)
    init = nnx.split_rngs(splits=4)(nnx.vmap(in_axes=(0, 0))(init))
    return type("MLP", (nnx.Module,), {"__init__": init, "__call__": scanned})(nnx.Rngs(0))


def test_legacy_form_lowers_to_the_hlo_of_the_0_11_form() -> None:
    x = jnp.ones((2, 3))

    def lowered(form: str) -> str:
        graphdef, state = nnx.split(_scan_model(form))

        def forward(state: Any, x: jax.Array) -> Any:
            model = nnx.merge(graphdef, state)
            return model(x), nnx.state(model)

        with nnx_compat.warnings_policy("ignore"):
            return lowered_text(forward, state, x)

    legacy, new = lowered("legacy"), lowered("new")
    assert "stablehlo" in legacy
    assert legacy == new


# --- split_rngs ----------------------------------------------------------------------------


def test_split_rngs_over_scan_warns_at_the_decorator() -> None:
    class MLP(nnx.Module):
        @nnx.split_rngs(splits=2)
        @nnx.vmap(in_axes=(0, 0))
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.dropout = nnx.Dropout(0.5, rngs=rngs)

        @nnx.split_rngs(splits=2)  # SPLIT-OVER-SCAN
        @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
        def __call__(self, x: jax.Array) -> jax.Array:
            return self.dropout(x)

    model = MLP(nnx.Rngs(0))
    with pytest.warns(RngsDeprecationWarning, match="split-rngs-over-scan") as caught:
        model(jnp.ones((3,)))
    (hit,) = [w for w in caught if "split-rngs-over-scan" in str(w.message)]
    assert hit.filename == __file__
    assert hit.lineno == line_of(__file__, "SPLIT-OVER-SCAN")
    assert "argument 0 dropout/rngs" in str(hit.message)
    model(jnp.ones((3,)))  # once per call site: no second warning under pytest's 'error'


def test_functional_split_rngs_and_restore_rngs_keep_working() -> None:
    rngs = nnx.Rngs(params=0, dropout=1)
    before = _key_data(rngs.dropout.key[...])
    backups = nnx.split_rngs(rngs, splits=5)
    assert rngs.params.key.shape == (5,) and rngs.dropout.count.shape == (5,)
    nnx.restore_rngs(backups)
    assert rngs.dropout.key.shape == () and np.array_equal(_key_data(rngs.dropout.key[...]), before)
    assert int(rngs.dropout.count[...]) == 1  # the split drew one key, as upstream's does

    with nnx.split_rngs(rngs, splits=(2, 3), only="params"):
        assert rngs.params.key.shape == (2, 3) and rngs.dropout.key.shape == ()
    assert rngs.params.key.shape == ()


def test_functional_split_rngs_matches_upstream() -> None:
    ours, theirs = nnx.Rngs(0, dropout=3), upstream.Rngs(0, dropout=3)
    nnx.split_rngs(ours, splits=4, only="dropout")
    upstream.split_rngs(theirs, splits=4, only="dropout")
    assert_bitwise_equal(flat_arrays(nnx.state(ours)), flat_arrays(upstream.state(theirs)))


def test_functional_split_rngs_skips_a_presplit_stream_and_warns_at_the_call() -> None:
    rngs = nnx.Rngs(dropout=1)
    nnx.split_rngs(rngs, splits=3)
    split_key = _key_data(rngs.dropout.key[...])
    with pytest.warns(RngsDeprecationWarning, match="already split: dropout") as caught:
        backups = nnx.split_rngs(rngs, splits=3)  # FUNCTIONAL-PRESPLIT
    assert caught[0].lineno == line_of(__file__, "FUNCTIONAL-PRESPLIT")
    assert list(backups) == []
    assert np.array_equal(_key_data(rngs.dropout.key[...]), split_key)


def test_split_rngs_in_another_shape_names_the_stream() -> None:
    rngs = nnx.Rngs(dropout=1)
    nnx.split_rngs(rngs, splits=3)
    with pytest.raises(ValueError, match=r"dropout \(key shape \(3,\)\)") as info:
        nnx.split_rngs(rngs, splits=5)
    assert "already split in another shape" in str(info.value)
    assert rngs.dropout.key.shape == (3,)  # nothing was split before the error


def test_split_rngs_only_filter_is_respected() -> None:
    rngs = nnx.Rngs(params=0, dropout=1)
    nnx.split_rngs(rngs, splits=2, only="dropout")
    # params is scalar and not selected; dropout is presplit: nothing to do, no error
    with pytest.warns(RngsDeprecationWarning):
        backups = nnx.split_rngs(rngs, splits=2, only="dropout")
    assert list(backups) == [] and rngs.params.key.shape == ()


# --- Rngs.fork / split ---------------------------------------------------------------------


def test_fork_split_and_split_give_the_same_keys() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RngsDeprecationWarning)
        a = nnx.Rngs(0, params=1).fork(splits=5)
        b = nnx.Rngs(0, params=1).fork(split=5)
    c = nnx.Rngs(0, params=1).split(5)
    for forked in (a, b, c):
        assert isinstance(forked, nnx.Rngs) and isinstance(forked, upstream.Rngs)
        assert forked.params.key.shape == (5,) and forked.default.count.shape == (5,)
    assert_bitwise_equal(flat_arrays(nnx.state(a)), flat_arrays(nnx.state(c)))
    assert_bitwise_equal(flat_arrays(nnx.state(b)), flat_arrays(nnx.state(c)))
    # and the keys are what upstream's fork(split=5) draws
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # flax 0.12.6+ deprecates it
        native = _native_fork(upstream.Rngs(0, params=1), split=5)
    assert_bitwise_equal(flat_arrays(nnx.state(c)), flat_arrays(upstream.state(native)))


def test_fork_splits_warns_naming_split() -> None:
    rngs = nnx.Rngs(0)
    with pytest.warns(RngsDeprecationWarning, match=r"rngs.split\(5\)") as caught:
        rngs.fork(splits=5)  # FORK-SPLITS
    assert caught[0].lineno == line_of(__file__, "FORK-SPLITS")
    assert "rngs-fork-splits" in str(caught[0].message)
    if _versions.feature("RNGS_SPLIT"):  # flax 0.12.6 deprecates fork(split=) itself
        with pytest.warns(RngsDeprecationWarning, match="rngs-fork-split]"):
            rngs.fork(split=5)
    else:  # before it, fork(split=) is the installed flax's own form: silent
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            forked = rngs.fork(split=5)
        assert forked.default.key.shape == (5,)
        assert [h.pattern for h in nnx_compat.report()] == ["rngs-fork-splits"]
    with pytest.raises(TypeError, match="not both"):
        rngs.fork(split=2, splits=2)


def test_plain_fork_matches_upstream_without_warning() -> None:
    forked = nnx.Rngs(0, dropout=2).fork()
    native = _native_fork(upstream.Rngs(0, dropout=2))
    assert isinstance(forked, nnx.Rngs)
    assert_bitwise_equal(flat_arrays(nnx.state(forked)), flat_arrays(upstream.state(native)))


def test_split_with_a_mapping_keeps_the_unselected_streams() -> None:
    rngs = nnx.Rngs(params=0, dropout=1)
    params_key = _key_data(rngs.params.key[...])
    split = rngs.split({"dropout": 3})
    assert split.dropout.key.shape == (3,) and split.params.key.shape == ()
    assert np.array_equal(_key_data(split.params.key[...]), params_key)
    assert int(rngs.params.count[...]) == 0 and int(rngs.dropout.count[...]) == 1
    if _versions.feature("RNGS_SPLIT"):
        native = upstream.Rngs(params=0, dropout=1).split({"dropout": 3})
        assert_bitwise_equal(flat_arrays(nnx.state(split)), flat_arrays(upstream.state(native)))


# --- fork_rngs -----------------------------------------------------------------------------


def _fork_reference(seed: int, count: int, splits: int | None) -> np.ndarray:
    key = jax.random.fold_in(jax.random.key(seed), count)
    return _key_data(key if splits is None else jax.random.split(key, splits))


# flax 0.12.6+'s own fork_rngs(split=) trips its deprecation of RngStream.fork(split=)
UPSTREAM_FORK_SPLIT = pytest.mark.filterwarnings(
    "ignore:The 'split' argument of 'fork' is deprecated:DeprecationWarning"
)


@UPSTREAM_FORK_SPLIT
@pytest.mark.parametrize("splits", [None, 4])
def test_fork_rngs_functional_and_restore(splits: int | None) -> None:
    rngs = nnx.Rngs(dropout=7)
    with nnx.fork_rngs(rngs, split=splits):
        assert np.array_equal(_key_data(rngs.dropout.key[...]), _fork_reference(7, 0, splits))
        assert int(np.sum(np.asarray(rngs.dropout.count[...]))) == 0
    assert rngs.dropout.key.shape == ()
    assert np.array_equal(_key_data(rngs.dropout.key[...]), _key_data(jax.random.key(7)))
    assert int(rngs.dropout.count[...]) == 1


@UPSTREAM_FORK_SPLIT
def test_fork_rngs_decorator_splits_for_vmap() -> None:
    @nnx.fork_rngs(split=3)
    @nnx.vmap(in_axes=(0,))
    def draw(rngs: nnx.Rngs) -> jax.Array:
        return jax.random.bits(rngs.dropout(), (2,))

    bits = draw(nnx.Rngs(dropout=5))
    keys = jax.random.split(jax.random.fold_in(jax.random.key(5), 0), 3)
    expected = jax.vmap(lambda k: jax.random.bits(jax.random.fold_in(k, 0), (2,)))(keys)
    assert np.array_equal(np.asarray(bits), np.asarray(expected))


# --- reseed ---------------------------------------------------------------------------------


class _TwoDropouts(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.a = nnx.Dropout(0.5, rngs=rngs)
        self.b = nnx.Dropout(0.5, rngs=rngs)


def test_reseed_gives_each_stream_its_own_key_on_every_flax() -> None:
    model = _TwoDropouts(nnx.Rngs(params=0, dropout=1))
    nnx.reseed(model, dropout=3)
    stream = jax.random.key(3)
    for index, name in enumerate(["a", "b"]):  # graph order
        layer_stream = vars(getattr(model, name))["rngs"]
        expected = _key_data(jax.random.fold_in(stream, index))
        assert np.array_equal(_key_data(layer_stream.key[...]), expected)
        assert int(layer_stream.count[...]) == 0


def test_reseed_policy_for_split_streams() -> None:
    rngs = nnx.Rngs(dropout=0)
    nnx.split_rngs(rngs, splits=3)
    with pytest.raises(ValueError, match="match_shape"):
        nnx.reseed(rngs, dropout=1)
    nnx.reseed(rngs, policy="match_shape", dropout=1)
    expected = jax.random.split(jax.random.fold_in(jax.random.key(1), 0), 3)
    assert np.array_equal(_key_data(rngs.dropout.key[...]), _key_data(expected))
    assert rngs.dropout.count.shape == (3,)
    with pytest.raises(ValueError, match="policy"):
        nnx.reseed(rngs, policy="no-such-policy", dropout=1)


def test_reseed_of_the_rngs_layers_were_built_with_warns() -> None:
    rngs = nnx.Rngs(dropout=0)
    model = _TwoDropouts(rngs)
    assert int(rngs.dropout.count[...]) == 2  # building each layer drew one count
    assert np.array_equal(_key_data(rngs.dropout.key[...]), _key_data(jax.random.key(0)))
    before = flat_arrays(nnx.state(model))
    with pytest.warns(RngsDeprecationWarning, match="reseed-shared-rngs") as caught:
        nnx.reseed(rngs, dropout=5)  # RESEED-PARENT
    assert caught[0].lineno == line_of(__file__, "RESEED-PARENT")
    assert_bitwise_equal(flat_arrays(nnx.state(model)), before)  # the layers are not reached
    # the Rngs itself was reseeded: the first key a fresh Rngs(dropout=5) draws, count 0
    expected = _key_data(jax.random.fold_in(jax.random.key(5), 0))
    assert np.array_equal(_key_data(rngs.dropout.key[...]), expected)
    assert int(rngs.dropout.count[...]) == 0
    other = nnx.Rngs(dropout=1)
    nnx.reseed(other, dropout=5)  # an Rngs no layer forked from: no warning (pytest's 'error')
    assert np.array_equal(_key_data(other.dropout.key[...]), expected)


def test_reseed_graph_argument() -> None:
    model = _TwoDropouts(nnx.Rngs(dropout=0))
    streams = [vars(model.a)["rngs"], vars(model.b)["rngs"]]  # graph order
    model.a(jnp.ones((4,)))
    model.b(jnp.ones((4,)))
    old_keys = [_key_data(stream.key[...]) for stream in streams]
    assert [int(stream.count[...]) for stream in streams] == [1, 1]
    nnx.reseed(model, graph=True, dropout=2)
    for index, stream in enumerate(streams):
        expected = _key_data(jax.random.fold_in(jax.random.key(2), index))
        assert not np.array_equal(expected, old_keys[index])
        assert np.array_equal(_key_data(stream.key[...]), expected)
        assert int(stream.count[...]) == 0
    if not _versions.feature("RESEED_GRAPH_ARG"):
        with pytest.raises(TypeError, match="graph=False"):
            nnx.reseed(model, graph=False, dropout=2)
    else:  # tree mode reaches the same streams in the same order
        tree = _TwoDropouts(nnx.Rngs(dropout=0))
        nnx.reseed(tree, graph=False, dropout=2)
        for name, stream in zip("ab", streams, strict=True):
            ours = _key_data(vars(getattr(tree, name))["rngs"].key[...])
            assert np.array_equal(ours, _key_data(stream.key[...]))


# --- RngStream(tag, key) ----------------------------------------------------------------------

KEY_FIRST = _versions.feature("RNGSTREAM_KEY_FIRST")  # flax 0.11.0


@pytest.mark.parametrize("form", ["0.10", "0.11"])
def test_rngstream_takes_both_argument_orders_and_is_flaxs_own(form: str) -> None:
    if KEY_FIRST:
        native = upstream.RngStream(3, tag="dropout")
    elif _versions.feature("RNGSTREAM_TAKES_COUNT"):  # flax 0.10.0-0.10.6
        native = upstream.RngStream("dropout", jax.random.key(3), jnp.zeros((), jnp.uint32))
    else:
        native = upstream.RngStream("dropout", 3)
    if form == "0.10":
        with nnx_compat.warnings_policy("ignore"):
            stream = nnx.RngStream("dropout", 3)  # STREAM-010
    else:
        stream = nnx.RngStream(3, tag="dropout")
    assert type(stream) is upstream.RngStream
    assert isinstance(stream, nnx.RngStream) and isinstance(native, nnx.RngStream)
    assert _rngs.stream_tag(stream) == "dropout"  # before flax 0.10.7 only the key has a tag
    assert_bitwise_equal(
        {"key": np.asarray(jax.random.key_data(stream()))},
        {"key": np.asarray(jax.random.key_data(native()))},
    )
    legacy_here = form == "0.10" and KEY_FIRST
    expected = (
        [("rngstream-positional-tag", line_of(__file__, "STREAM-010"))] if legacy_here else []
    )
    assert [(h.pattern, h.lineno) for h in nnx_compat.report()] == expected
    if legacy_here:
        with pytest.raises(TypeError):
            upstream.RngStream("dropout", 3)


def test_a_subclass_of_the_rngstream_shim_builds_itself() -> None:
    class Tagged(nnx.RngStream):  # type: ignore[misc]
        pass

    stream = Tagged(0, tag="a") if KEY_FIRST else Tagged("a", 0)
    assert type(stream) is Tagged


def test_fork_stream_is_rngstream_fork() -> None:
    """``_rngs.fork_stream``: the stream's own ``fork()`` where it has one (flax 0.10.7+),
    else the same computation; with and without ``split``."""
    for split in (None, 3, (2, 2)):
        a, b = upstream.Rngs(dropout=3), upstream.Rngs(dropout=3)
        forked = _rngs.fork_stream(a.dropout, split=split)
        if split is None:
            native = b.dropout.fork() if NATIVE_FORK else upstream.Rngs(dropout=b.dropout()).dropout
        elif _versions.feature("RNGS_SPLIT"):  # flax 0.12.6 deprecates fork(split=) for it
            native = b.dropout.split(split)
        elif NATIVE_FORK:
            native = b.dropout.fork(split=split)
        else:  # its computation: the next key, split
            native = upstream.Rngs(dropout=jax.random.split(b.dropout(), split)).dropout
        assert type(forked) is upstream.RngStream
        assert _rngs.stream_tag(forked) == "dropout"
        assert_same_bits(jax.random.key_data(forked.key[...]), jax.random.key_data(native.key[...]))
        assert_same_bits(forked.count[...], native.count[...])
        assert_same_bits(a.dropout.count[...], b.dropout.count[...])


def test_fork_stream_before_flax_0107(monkeypatch: pytest.MonkeyPatch) -> None:
    """flax 0.10.0-0.10.6 streams have no ``fork``: the same computation (the next key, a count
    of zero), with the tag read from the key and the count passed to the constructor."""

    built: dict[str, object] = {}

    class OldStream:  # the surface of flax 0.10.0's RngStream
        def __init__(self, tag: str, key: jax.Array, count: jax.Array) -> None:
            built.update(tag=tag, key=key, count=count)

        key = type("Key", (), {"tag": "dropout"})()

        def __call__(self) -> jax.Array:
            return jax.random.key(7)

    monkeypatch.setattr(_rngs, "_NativeRngStream", OldStream)
    monkeypatch.setattr(_rngs, "_STREAM_KEY_FIRST", False)
    monkeypatch.setattr(_rngs, "_STREAM_COUNT", True)
    stream = object.__new__(OldStream)
    _rngs._fork_by_hand(stream, None)
    assert built["tag"] == "dropout"
    assert_same_bits(jax.random.key_data(built["key"]), jax.random.key_data(jax.random.key(7)))
    assert_same_bits(built["count"], jnp.zeros((), jnp.uint32))
