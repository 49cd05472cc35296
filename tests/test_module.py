"""``nnx.Module``: flax 0.10's plain list/tuple/dict attributes on every flax."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import flax.nnx as upstream
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nnx_compat
from nnx_compat import _paths, _versions, nnx
from tests.hlo import lowered_text
from tests.markers import line_of
from tests.strategies import assert_bitwise_equal, assert_same_bits, flat_arrays

STRICT = _versions.feature("STRICT_PYTREE_ATTRIBUTES")
ARRAYS = _versions.feature("ARRAY_ATTRIBUTES")  # flax 0.10.5: plain arrays as state
LATE_STATIC = _versions.feature("LATE_CONTAINERS_STATIC")  # flax 0.12.5

#: The state paths flax 0.10.7 gives the legacy model below (recorded on the pinned env).
PATHS_010 = [
    "blocks/decoder/bias",
    "blocks/decoder/kernel",
    "blocks/scale",
    "heads/0/bias",
    "heads/0/kernel",
    "heads/1",
    "layers/0/bias",
    "layers/0/kernel",
    "layers/2/bias",
    "layers/2/kernel",
    "norms/0/bias",
    "norms/0/mean",
    "norms/0/scale",
    "norms/0/var",
]


class Legacy(nnx.Module):
    """flax 0.10 style: plain containers of modules, functions, arrays and Variables."""

    def __init__(self, rngs: Any) -> None:
        self.layers = [nnx.Linear(3, 4, rngs=rngs), nnx.relu, nnx.Linear(4, 2, rngs=rngs)]  # L-list
        blocks = {"decoder": nnx.Linear(2, 2, rngs=rngs), "scale": nnx.Param(jnp.ones(2))}
        self.blocks = blocks  # L-dict
        self.heads = (nnx.Linear(2, 1, rngs=rngs), nnx.Param(jnp.zeros((1,))))  # L-tuple
        self.norms = []
        self.norms.append(nnx.BatchNorm(2, rngs=rngs))
        self.names = ["a", "b"]  # static: no warning

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = layer(x)
        x = self.norms[0](self.blocks["decoder"](x) * self.blocks["scale"][...])
        return self.heads[0](x) + self.heads[1][...]


class New(nnx.Module):
    """The same model in the flax 0.12 form, which nnx_compat also runs on 0.10/0.11."""

    def __init__(self, rngs: Any) -> None:
        self.layers = nnx.List([nnx.Linear(3, 4, rngs=rngs), nnx.relu, nnx.Linear(4, 2, rngs=rngs)])
        self.blocks = nnx.Dict(decoder=nnx.Linear(2, 2, rngs=rngs), scale=nnx.Param(jnp.ones(2)))
        self.heads = nnx.data((nnx.Linear(2, 1, rngs=rngs), nnx.Param(jnp.zeros((1,)))))
        self.norms = nnx.List()
        self.norms.append(nnx.BatchNorm(2, rngs=rngs))
        self.names = ["a", "b"]

    __call__ = Legacy.__call__


def _legacy(seed: int = 0) -> Legacy:
    with nnx_compat.warnings_policy("ignore"):
        return Legacy(nnx.Rngs(seed))


def _paths_of(model: Any) -> list[str]:
    return sorted(_paths.flatten(upstream.state(model)))


# --- reproduction -------------------------------------------------------------------------


def test_reproduce_plain_list_attribute_on_upstream_module() -> None:
    class Native(upstream.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            self.layers = [upstream.Linear(2, 2, rngs=upstream.Rngs(0))]

    if STRICT:  # flax 0.12.0
        with pytest.raises(ValueError, match=r"(Found data|Found unexpected).*static attribute"):
            Native()
    else:
        assert _paths_of(Native()) == ["layers/0/bias", "layers/0/kernel"]


# --- state structure ----------------------------------------------------------------------


def test_state_paths_are_those_of_flax_010() -> None:
    assert _paths_of(_legacy()) == PATHS_010
    assert _paths_of(New(nnx.Rngs(0))) == PATHS_010


def test_legacy_and_new_forms_hold_the_same_arrays() -> None:
    legacy, new = _legacy(3), New(nnx.Rngs(3))
    assert_bitwise_equal(flat_arrays(upstream.state(legacy)), flat_arrays(upstream.state(new)))
    x = jnp.ones((2, 3))
    assert_same_bits(legacy(x), new(x))
    assert isinstance(legacy.layers, list) and isinstance(legacy.blocks, dict)
    assert isinstance(legacy.heads, tuple) and legacy.names == ["a", "b"]


def test_split_merge_update_and_jit() -> None:
    model = _legacy()
    graphdef, state = upstream.split(model)
    merged = upstream.merge(graphdef, state)
    assert isinstance(merged, Legacy) and isinstance(merged.layers, list)
    assert _paths_of(merged) == PATHS_010
    x = jnp.ones((2, 3))
    assert_same_bits(merged(x), model(x))

    @nnx.jit
    def step(model: Legacy, x: jax.Array) -> jax.Array:
        model.blocks["scale"][...] = model.blocks["scale"][...] * 2
        return model(x)

    saved = jax.tree.map(jnp.copy, upstream.state(model))  # a copy on every flax
    step(model, x)
    assert np.array_equal(model.blocks["scale"][...], jnp.full((2,), 2.0))
    upstream.update(model, saved)
    assert np.array_equal(model.blocks["scale"][...], jnp.ones(2))


def test_training_step_equals_the_new_form_and_lowers_to_the_same_hlo() -> None:
    x, y = jnp.ones((4, 3)), jnp.zeros((4, 1))

    def program(model: Any) -> tuple[dict[str, np.ndarray], str]:
        with nnx_compat.warnings_policy("ignore"):
            optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
        graphdef, state = upstream.split((model, optimizer))

        def step(state: Any) -> Any:
            model, optimizer = upstream.merge(graphdef, state)
            loss, grads = upstream.value_and_grad(lambda m: ((m(x) - y) ** 2).mean())(model)
            optimizer.update(model, grads)
            return loss, upstream.state((model, optimizer))

        for _ in range(2):
            _, state = jax.jit(step)(state)
        upstream.update((model, optimizer), state)
        return flat_arrays(upstream.state(model)), lowered_text(step, state)

    (legacy, legacy_hlo), (new, new_hlo) = program(_legacy(1)), program(New(nnx.Rngs(1)))
    assert_bitwise_equal(legacy, new)
    assert "stablehlo" in legacy_hlo
    assert legacy_hlo == new_hlo


CHECKPOINT_RESTORE = textwrap.dedent(
    """
    import sys, numpy as np, orbax.checkpoint as ocp
    sys.path.insert(0, sys.argv[2])
    from flax import nnx
    from tests.strategies import flat_arrays
    class Target(nnx.Module):  # the flax 0.12 form, on flax itself
        def __init__(self, rngs):
            L = getattr(nnx, "List", list)
            D = getattr(nnx, "Dict", dict)
            data = getattr(nnx, "data", lambda x: x)
            self.layers = L([nnx.Linear(3, 4, rngs=rngs), nnx.relu, nnx.Linear(4, 2, rngs=rngs)])
            scale = nnx.Param(np.ones(2, np.float32))
            self.blocks = D(decoder=nnx.Linear(2, 2, rngs=rngs), scale=scale)
            self.heads = data((nnx.Linear(2, 1, rngs=rngs), nnx.Param(np.zeros((1,), np.float32))))
            self.norms = L([nnx.BatchNorm(2, rngs=rngs)])
    model = Target(nnx.Rngs(42))
    restored = ocp.StandardCheckpointer().restore(sys.argv[1], nnx.state(model))
    nnx.update(model, restored)
    np.savez(sys.argv[1] + ".npz", **{"/" + k: v for k, v in flat_arrays(nnx.state(model)).items()})
    """
)


def test_checkpoint_restores_into_flax_without_nnx_compat(tmp_path: Path) -> None:
    import orbax.checkpoint as ocp

    model = _legacy(5)
    path = tmp_path / "ckpt"
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, upstream.state(model))
    checkpointer.wait_until_finished()
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", CHECKPOINT_RESTORE, str(path), str(root)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    restored = dict(np.load(str(path) + ".npz"))
    assert_bitwise_equal(
        restored, {"/" + k: v for k, v in flat_arrays(upstream.state(model)).items()}
    )
    # and back: the restored state updates the legacy model
    fresh = _legacy(6)
    upstream.update(fresh, ocp.StandardCheckpointer().restore(path, upstream.state(fresh)))
    assert_bitwise_equal(flat_arrays(upstream.state(fresh)), flat_arrays(upstream.state(model)))


# --- isinstance and subclassing -----------------------------------------------------------


def test_every_flax_module_is_an_nnx_module() -> None:
    linear = upstream.Linear(2, 2, rngs=upstream.Rngs(0))
    assert isinstance(linear, nnx.Module) and issubclass(upstream.Linear, nnx.Module)
    assert isinstance(_legacy(), nnx.Module) and isinstance(_legacy(), upstream.Module)
    assert issubclass(Legacy, upstream.Module) and issubclass(Legacy, nnx.Module)
    assert not isinstance(3, nnx.Module) and not issubclass(int, nnx.Module)
    assert not isinstance(_legacy(), New) and not issubclass(Legacy, New)
    assert not isinstance(upstream.Rngs(0), nnx.Module)
    assert not isinstance(3, upstream.Module)  # flax's own check is unchanged


def test_subclass_with_super_init_and_pytree_false() -> None:
    # flax 0.10.0-0.10.4 take no plain array as state: a Param there (the same paths)
    leaf = (lambda x: x) if ARRAYS else nnx.Param

    class Base(nnx.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.items = [leaf(jnp.full((1,), float(i))) for i in range(n)]

    class Child(Base):
        def __init__(self) -> None:
            super().__init__(2)
            self.extra = {"w": nnx.Param(jnp.ones(1))}

    class Opaque(nnx.Module, pytree=False):
        def __init__(self) -> None:
            self.items = [leaf(jnp.ones(1))]

    with nnx_compat.warnings_policy("ignore"):
        child, opaque = Child(), Opaque()
    assert _paths_of(child) == ["extra/w", "items/0", "items/1"]
    assert _paths_of(opaque) == ["items/0"]


# --- warnings ----------------------------------------------------------------------------


@pytest.mark.skipif(STRICT, reason="flax 0.12 rejects plain containers: see the next test")
def test_plain_containers_are_flaxs_own_where_flax_accepts_them() -> None:
    """flax 0.10/0.11 accept the 0.10 form: nnx_compat's Module adds nothing, warns nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = Legacy(nnx.Rngs(0))
        model.extra = [nnx.Param(jnp.ones(3))]
    assert nnx_compat.report() == ()
    assert "__setattr__" not in vars(nnx.Module)

    class NativeLegacy(upstream.Module):  # type: ignore[misc]
        __init__ = Legacy.__init__
        __call__ = Legacy.__call__

    native = NativeLegacy(nnx.Rngs(0))
    assert _paths_of(model) == sorted([*_paths_of(native), "extra/0"])
    x = jnp.ones((1, 3))
    assert_same_bits(model(x), native(x))


@pytest.mark.skipif(not STRICT, reason="flax 0.10/0.11 accept plain containers")
def test_warnings_name_the_fixes_at_the_user_lines() -> None:
    with pytest.warns(nnx_compat.PytreeDeprecationWarning) as caught:
        Legacy(nnx.Rngs(0))  # L-construct
    seen = [(w.lineno, str(w.message).rsplit("[nnx-compat: ", 1)[1]) for w in caught]
    assert all(w.filename == __file__ for w in caught)
    assert seen == [
        (line_of(__file__, "L-list"), "list-attribute] (Legacy.layers is a plain list)"),
        (line_of(__file__, "L-dict"), "dict-attribute] (Legacy.blocks is a plain dict)"),
        (line_of(__file__, "L-tuple"), "list-attribute] (Legacy.heads is a plain tuple)"),
        (
            line_of(__file__, "L-construct"),
            "list-attribute] (Legacy.norms is a plain list filled after its assignment)",
        ),
    ]
    for w in caught:
        message = str(w.message)
        assert "nnx.List" in message and "nnx.Dict" in message and "nnx.data" in message


def test_new_form_emits_nothing() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = New(nnx.Rngs(0))
        model(jnp.ones((1, 3)))
        upstream.split(model)
    assert nnx_compat.report() == ()


@pytest.mark.skipif(not STRICT, reason="flax 0.10/0.11 accept plain containers")
def test_assignment_after_construction() -> None:
    model = New(nnx.Rngs(0))
    with pytest.warns(nnx_compat.PytreeDeprecationWarning, match="New.extra is a plain list"):
        model.extra = [nnx.Param(jnp.ones(3))]  # a plain list assigned in a method, later
    assert "extra/0" in _paths_of(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.tags = ["static", 1]  # no data: no warning
        model.more = nnx.data([jnp.ones(1)])
    assert "more/0" in _paths_of(model)


def test_install_serves_the_module_to_flax_code() -> None:
    nnx_compat.install()
    try:
        from flax import nnx as third_party

        class ThirdParty(third_party.Module):  # type: ignore[misc,name-defined]
            def __init__(self) -> None:
                self.layers = [third_party.Linear(2, 2, rngs=third_party.Rngs(0))]

        if STRICT:
            with pytest.warns(nnx_compat.PytreeDeprecationWarning, match="list-attribute"):
                model = ThirdParty()
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                model = ThirdParty()
        assert _paths_of(model) == ["layers/0/bias", "layers/0/kernel"]
    finally:
        nnx_compat.uninstall()
    assert upstream.Module is not nnx.Module


# --- flax 0.12's static attributes ------------------------------------------------------------


class _Pair(NamedTuple):
    a: jax.Array
    b: jax.Array


class LateData(nnx.Module):
    """flax 0.10 habits: attributes first static (None), data later; a user pytree of arrays."""

    def __init__(self, use_bias: bool, rngs: Any) -> None:
        self.b = None
        if use_bias:
            self.b = nnx.Param(jnp.zeros(3))  # LATE-bias
        self.cache = None
        self.child = None
        self.pair = _Pair(jnp.ones(2), jnp.zeros(2))  # LATE-pair

    def init_cache(self) -> None:
        self.cache = nnx.Cache(jnp.zeros(2))  # LATE-cache
        self.child = nnx.Linear(2, 2, rngs=nnx.Rngs(0))


def _late_data() -> Any:
    model = LateData(True, nnx.Rngs(0))
    model.init_cache()
    return model


def test_reproduce_static_then_data_on_flax_012() -> None:
    class Native(upstream.Module):  # type: ignore[misc]
        __init__ = LateData.__init__

    if STRICT:
        with pytest.raises(ValueError, match="static attribute 'b'"):
            Native(True, nnx.Rngs(0))
    else:
        Native(True, nnx.Rngs(0))


def test_static_then_data_is_state_as_on_flax_010() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _late_data()
    if not ARRAYS:  # flax 0.10.0-0.10.4: plain arrays are no state, natively and through us
        assert caught == [] and nnx_compat.report() == ()
        with pytest.raises(ValueError, match="Arrays leaves are not supported"):
            _paths_of(model)
        return
    assert _paths_of(model) == ["b", "cache", "child/bias", "child/kernel", "pair/a", "pair/b"]
    hits = sorted((h.pattern, h.lineno) for h in nnx_compat.report())
    if STRICT:
        assert hits == [
            ("pytree-attribute", line_of(__file__, "LATE-pair")),
            ("static-attribute-data", line_of(__file__, "LATE-bias")),
            ("static-attribute-data", line_of(__file__, "LATE-cache")),
            ("static-attribute-data", line_of(__file__, "LATE-cache") + 1),
        ]
        assert all(w.filename == __file__ for w in caught)
    else:  # flax 0.10/0.11 take these natively: nothing to bridge, nothing said
        assert hits == [] and caught == []
    # the model works as state: split, merge and a jitted call
    graphdef, state = nnx.split(model)
    merged = nnx.merge(graphdef, state)
    out = nnx.jit(lambda m, x: m.child(x) + m.cache[...])(merged, jnp.ones((1, 2)))
    assert out.shape == (1, 2)


def test_static_attributes_that_stay_static_are_untouched() -> None:
    class Config(nnx.Module):
        def __init__(self) -> None:
            self.name = None
            self.name = "encoder"
            self.sizes = (1, 2)
            self.param = nnx.Param(jnp.ones(1))
            self.param = nnx.Param(jnp.zeros(1))  # data to data: flax's own

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = Config()
    assert _paths_of(model) == ["param"]
    assert nnx_compat.report() == ()


class Registry(nnx.Module):
    """Containers created empty in ``__init__`` and filled by the Module's own methods."""

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}
        self.layers: list[Any] = []
        self.names = ["kept", "static"]  # a static container that never holds data

    def add(self, name: str, rngs: Any) -> None:
        self.items[name] = nnx.Linear(2, 2, rngs=rngs)
        self.layers.append(nnx.Linear(2, 2, rngs=rngs))


def test_reproduce_container_filled_after_init_on_flax_012() -> None:
    class Native(upstream.Module):
        def __init__(self) -> None:
            self.items: dict[str, Any] = {}

    native = Native()
    native.items["a"] = upstream.Linear(2, 2, rngs=upstream.Rngs(0))
    if not LATE_STATIC:  # before flax 0.12.5, flax flattens the Modules it received
        assert len(_paths.flatten(upstream.state(native))) == 2
        return
    assert len(_paths.flatten(upstream.state(native))) == 0  # silently missing
    with pytest.raises(ValueError, match="different trace level"):
        upstream.jit(lambda m: m.items["a"](jnp.ones(2)))(native)


def test_container_filled_after_init_is_state_as_on_flax_010() -> None:
    registry = Registry()
    registry.add("a", nnx.Rngs(0))
    if STRICT:
        with pytest.warns(
            nnx_compat.PytreeDeprecationWarning, match="container-filled-after-init"
        ) as caught:
            state = nnx.state(registry)  # FILLED-LATER
        assert {w.lineno for w in caught} == {line_of(__file__, "FILLED-LATER")}
    else:
        state = nnx.state(registry)
    paths = sorted(_paths.flatten(state))
    assert paths == ["items/a/bias", "items/a/kernel", "layers/0/bias", "layers/0/kernel"]
    out = nnx.jit(lambda m, x: m.layers[0](m.items["a"](x)))(registry, jnp.ones(2))
    expected = registry.layers[0](registry.items["a"](jnp.ones(2)))
    assert_same_bits(out, expected)
    assert registry.names == ["kept", "static"]
    if STRICT:  # the data-free container stays static: flax's own form
        assert not vars(registry)["_pytree__nodes"].get("names", False)
