"""The new API on the old flax: every name flax 0.11 and 0.12 added to ``flax.nnx`` is served
by nnx_compat on an older flax (natively, by a shim, or by a backport with flax 0.12's
behaviour), or raises an AttributeError naming the release it needs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnx_compat import _added, _patterns, _versions, nnx

upstream = _versions.import_nnx()
API = Path(__file__).resolve().parents[1] / "tools" / "api"
_V011 = _versions.parse_version("0.11.0")


def _public(snapshot: str) -> set[str]:
    names = json.loads((API / snapshot).read_text())["api"]
    return {n.split(".", 1)[1] for n in names if n.count(".") == 1}


def test_the_table_is_every_name_the_api_snapshots_add() -> None:
    # the snapshots record exported names; submodules appear as they were imported there
    newest, pin_010 = _public("flax-0.12.8.json"), _public("flax-0.10.7.json")
    added = newest - pin_010
    later = {n for n, r in _added.ADDED.items() if _versions.parse_version(r) >= _V011}
    unrecorded = {"graphlib", "compat"} | set(_added.SUBMODULE_SINCE)
    assert added - unrecorded <= later, added - later
    assert later - added <= unrecorded, later - added
    # the 0.10 point releases' names: in flax 0.10.7 and still in 0.12.8
    for name in set(_added.ADDED) - later:
        assert name in pin_010 and name in newest, name
    assert set(_added.ALIASES) <= set(_added.ADDED)


@pytest.mark.parametrize("name", sorted(_added.ADDED))
def test_each_added_name_is_served_or_names_its_release(name: str) -> None:
    release = _added.ADDED[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new API never warns
        try:
            value = getattr(nnx, name)
        except AttributeError as error:
            assert f"needs flax {release} or newer" in str(error)
            assert name not in vars(upstream) and name not in _added.BACKPORTS
            assert name not in _patterns.SHIMS or name in _added.WRAPS_NATIVE
            if name in _added.INSTEAD:
                assert _added.INSTEAD[name] in str(error)
            return
    if name in vars(upstream) and name not in _patterns.SHIMS:
        assert value is getattr(upstream, name)  # native where flax has it
    elif name in _added.BACKPORTS and name not in vars(upstream):
        assert value is _added.backport(name)
    elif name in _added.ALIASES and name not in vars(upstream):
        assert value is _added.alias(name)  # the object the later release exports
    assert (
        _versions.installed_at_least(release)
        or name not in vars(upstream)
        or name in _added.SUBMODULE_SINCE  # submodules older than their export
    )


def test_a_name_no_flax_has_is_a_plain_attribute_error() -> None:
    with pytest.raises(AttributeError, match=r"neither has flax\.nnx"):
        nnx.no_such_name  # noqa: B018


# --- the backports, against flax 0.12.8's own results (asserted natively there too) ---------


class Sub(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.z = nnx.Linear(1, 1, rngs=rngs)
        self.a = nnx.Param(jnp.ones(1))
        self.m = nnx.BatchNorm(1, rngs=rngs)
        self.k = 3


class Block(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.sub = Sub(rngs)
        self.b = nnx.Linear(1, 1, rngs=rngs)
        self.r = rngs


def _names(pairs: object) -> list[tuple[object, str]]:
    return [(key, type(value).__name__) for key, value in pairs]  # type: ignore[attr-defined]


def test_iter_modules_and_iter_children_as_on_flax_012() -> None:
    block = Block(nnx.Rngs(0))
    modules = [
        (("b",), "Linear"),
        (("sub", "m"), "BatchNorm"),
        (("sub", "z"), "Linear"),
        (("sub",), "Sub"),
        ((), "Block"),
    ]
    assert _names(nnx.iter_modules(block)) == modules
    children = [("a", "Param"), ("m", "BatchNorm"), ("z", "Linear")]
    top = [("b", "Linear"), ("r", "Rngs"), ("sub", "Sub")]
    if _versions.installed_at_least("0.12.1") and not _versions.installed_at_least("0.12.5"):
        # flax 0.12.1-0.12.4's own nnx.iter_children yields the Modules only: its meaning stands
        assert nnx.iter_children is upstream.iter_children
        children, top = children[1:], [top[0], top[2]]
    assert _names(nnx.iter_children(block.sub)) == children
    assert _names(nnx.iter_children(block)) == top
    if "iter_modules" not in vars(upstream):
        with pytest.raises(TypeError, match=r"needs flax 0\.12\.6"):
            list(nnx.iter_modules(block, graph=False))


def test_is_data_and_has_data_as_on_flax_012() -> None:
    block = Block(nnx.Rngs(0))
    data = [jnp.array(0), np.zeros(1), nnx.Param(1.0), nnx.Rngs(2), block]
    static = ["hello", 42, 1.5, [1, 2.0, 3j, jnp.array(1)], {"a": jnp.ones(1)}, None]
    assert [nnx.is_data(x) for x in data] == [True] * len(data)
    assert [nnx.is_data(x) for x in static] == [False] * len(static)
    shared = jnp.ones(2)
    found = nnx.has_data({"a": shared, "b": [shared, "x", 3], "c": nnx.Param(2.0)})
    # as flax 0.12 does: a shared leaf is found at each place it is
    assert len(found) == 3 and found[0] is shared and found[1] is shared
    assert nnx.has_data(["x", 1]) == []


def test_use_eager_sharding_false_is_what_an_old_flax_does() -> None:
    with nnx.use_eager_sharding(False):
        assert nnx.using_eager_sharding() is False
        layer = nnx.Linear(
            2,
            4,
            kernel_init=nnx.with_partitioning(nnx.initializers.ones, (None, "m")),
            rngs=nnx.Rngs(0),
        )
    assert jax.tree.leaves(nnx.state(layer))[1].shape == (2, 4)
    if "use_eager_sharding" in vars(upstream):
        return
    if not _versions.feature("EAGER_SHARDING"):
        # before flax 0.12.0 nothing shards eagerly unless asked (tests/test_sharding.py)
        assert nnx.using_eager_sharding() is False
        with nnx.use_eager_sharding(True):
            assert nnx.using_eager_sharding() is True
        assert nnx.using_eager_sharding() is False
        return
    # flax 0.12.0: its config flag, set for the block and put back
    assert nnx.using_eager_sharding() is True
    with nnx.use_eager_sharding(False):
        assert nnx.using_eager_sharding() is False
    assert nnx.using_eager_sharding() is True


# --- Rngs and RngStream methods of flax 0.12, bit for bit (the same bits on every jax) -------


def test_sampling_methods_draw_from_the_stream() -> None:
    rngs = nnx.Rngs(0, params=1)
    # as flax 0.12: jax.random.<name>(fold_in(key, count), ...), then count + 1 (the same bits
    # on every jax from 0.5; jax 0.4's default PRNG gave others)
    bits = jax.random.bits(jax.random.fold_in(jax.random.key(0), 0), (3,))
    assert np.asarray(rngs.bits((3,))).tolist() == np.asarray(bits).tolist()
    ints = jax.random.randint(jax.random.fold_in(jax.random.key(1), 0), (4,), 0, 100)
    assert np.asarray(rngs.params.randint((4,), 0, 100)).tolist() == np.asarray(ints).tolist()
    if _versions.installed_at_least("0.5.0", "jax"):  # what flax 0.12.8 natively gives
        assert np.asarray(bits).tolist() == [3617712097, 783310428, 975722988]
        assert np.asarray(ints).tolist() == [87, 91, 30, 72]
    again = nnx.Rngs(0)
    expected = jax.random.normal(jax.random.fold_in(jax.random.key(0), 0), (3,))
    assert np.asarray(again.normal((3,))).tobytes() == np.asarray(expected).tobytes()
    assert int(again.default.count[...]) == 1  # one key drawn
    assert nnx.Rngs(0).lecun_normal()((2, 2)).shape == (2, 2)


def test_a_stream_named_like_a_method_stays_the_stream() -> None:
    rngs = nnx.Rngs(gamma=0)  # as on flax 0.12: the instance's stream comes first
    assert isinstance(rngs.gamma, upstream.RngStream)


def test_split_and_broadcast_as_on_flax_012() -> None:
    split = nnx.Rngs(params=1).params.split(2)
    assert isinstance(split, upstream.RngStream) and split.key.shape == (2,)
    keys = jax.random.split(jax.random.fold_in(jax.random.key(1), 0), 2)
    assert np.array_equal(jax.random.key_data(split.key[...]), jax.random.key_data(keys))
    broadcast = nnx.Rngs(0).broadcast(3)
    first = jax.random.key_data(jax.random.fold_in(jax.random.key(0), 0))
    assert np.array_equal(jax.random.key_data(broadcast.default.key[...]), np.stack([first] * 3))
    if _versions.installed_at_least("0.5.0", "jax"):  # what flax 0.12.8 natively gives
        assert np.asarray(jax.random.key_data(keys)).tolist() == [
            [3704974950, 1863054868],
            [2705940334, 2639757084],
        ]
        assert np.asarray(first).tolist() == [1797259609, 2579123966]
    mixed = nnx.Rngs(params=1, dropout=2, noise=3).broadcast(
        {"params": 5, "dropout": None, ...: (2, 5)}
    )
    shapes = (mixed.params.key.shape, mixed.dropout.key.shape, mixed.noise.key.shape)
    assert shapes == ((5,), (), (2, 5))
