"""fix_checkpoint and legacy_checkpoint on the installed flax (the real fixtures: see below)."""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path
from typing import Any

import flax.nnx as upstream
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnx_compat
from nnx_compat import _checkpoint, _versions, nnx
from nnx_compat.cli import doctor as _doctor
from tests import checkpoint_models

LAYERS_FORK = _versions.feature("LAYERS_FORK_RNGS")


class Net(nnx.Module):
    """The seed's Linear/BatchNorm/Dropout model, sizes and dropout as parameters."""

    def __init__(self, din: int, dmid: int, dout: int, rate: float | None, *, rngs: Any) -> None:
        self.linear = nnx.Linear(din, dmid, rngs=rngs)
        self.bn = nnx.BatchNorm(dmid, rngs=rngs)
        if rate is not None:
            self.dropout = nnx.Dropout(rate, rngs=rngs)
        self.linear_out = nnx.Linear(dmid, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.bn(self.linear(x))
        if hasattr(self, "dropout"):
            h = self.dropout(h)
        return self.linear_out(nnx.relu(h))


def _rngs(seed: int) -> Any:
    return nnx.Rngs(params=seed, dropout=seed + 1)


def _arrays(tree: Any) -> dict[str, np.ndarray]:
    return _doctor.arrays("", tree)


def _assert_same(a: Any, b: Any) -> None:
    left, right = _arrays(a), _arrays(b)
    assert left.keys() == right.keys()
    for path in left:
        assert left[path].dtype == right[path].dtype, path
        np.testing.assert_array_equal(left[path], right[path], err_msg=path, strict=True)


def _as_orbax(tree: Any) -> dict[str, Any]:
    """A state as ``StandardCheckpointer().restore(path)`` returns it (no file needed)."""
    out: dict[str, Any] = {}
    for path, value in _checkpoint.read(tree).items():
        node = out
        for part in path.split("/"):
            node = node.setdefault(part, {})
        node["value"] = value
    return out


sizes = st.tuples(
    st.integers(1, 4),
    st.integers(1, 6),
    st.integers(1, 3),
    st.sampled_from([None, 0.0, 0.3, 0.9]),
    st.integers(0, 2**16),
)


# --- the round trip: legacy layout -> fix_checkpoint -> the native model's own state ---------


@settings(max_examples=min(settings().max_examples, 6))  # each example compiles 4 programs
@given(sizes)
def test_fix_checkpoint_gives_the_state_of_the_model_built_with_rngs(spec: Any) -> None:
    din, dmid, dout, rate, seed = spec
    factory = functools.partial(Net, din, dmid, dout, rate)
    model = factory(rngs=_rngs(seed))
    legacy = nnx_compat.legacy_checkpoint(nnx.state(model), factory, rngs=_rngs(seed))
    if rate is None:  # no layer kept an Rngs: the layouts agree
        with pytest.warns(nnx_compat.CheckpointNote):
            assert nnx.fix_checkpoint(legacy, factory, rngs=_rngs(seed)) is legacy
        _assert_same(legacy, nnx.state(model))
        return
    fixed = nnx.fix_checkpoint(legacy, factory, rngs=_rngs(seed))
    # parameters from the checkpoint, RNG state as the factory makes it: the model's own state
    _assert_same(fixed, nnx.state(model))

    restored = nnx.eval_shape(lambda: factory(rngs=_rngs(seed + 1)))
    nnx.update(restored, fixed)
    x = jax.random.normal(jax.random.key(seed), (3, din))
    forward = nnx.jit(lambda m, x: m(x))
    np.testing.assert_array_equal(forward(restored, x), forward(model, x), strict=True)
    _assert_same(nnx.state(restored), nnx.state(model))  # the streams advanced alike


def test_params_are_not_copied() -> None:
    factory = functools.partial(Net, 2, 4, 3, 0.5)
    legacy = nnx_compat.legacy_checkpoint(nnx.state(factory(rngs=_rngs(0))), factory, rngs=_rngs(0))
    fixed = nnx.fix_checkpoint(legacy, factory, rngs=_rngs(0))
    kernel = legacy["linear"]["kernel"]["value"]
    assert _checkpoint.read(fixed)["linear/kernel"] is kernel


@pytest.mark.parametrize("form", ["orbax", "pure", "state"])
def test_every_input_form_gives_the_same_state(form: str) -> None:
    factory = functools.partial(Net, 2, 5, 3, 0.2)
    model = factory(rngs=_rngs(3))
    legacy = nnx_compat.legacy_checkpoint(nnx.state(model), factory, rngs=_rngs(3))
    if form == "pure":
        checkpoint: Any = {}
        for path, value in _checkpoint.read(legacy).items():
            node = checkpoint
            *parents, last = path.split("/")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
    elif form == "state":
        checkpoint = upstream.State(legacy)
    else:
        checkpoint = legacy
    _assert_same(nnx.fix_checkpoint(checkpoint, factory, rngs=_rngs(3)), nnx.state(model))


def test_rngs_advance_as_building_the_model_does() -> None:
    factory = functools.partial(Net, 2, 4, 3, 0.5)
    legacy = nnx_compat.legacy_checkpoint(nnx.state(factory(rngs=_rngs(0))), factory, rngs=_rngs(0))
    used, built = _rngs(0), _rngs(0)
    nnx.fix_checkpoint(legacy, factory, rngs=used)
    factory(rngs=built)
    _assert_same(nnx.state(used), nnx.state(built))


def test_rng_state_is_computed_without_the_parameters() -> None:
    # Linear(37, 53): a shape nothing else in the model has
    factory = functools.partial(Net, 37, 53, 3, 0.5)
    init, state = _checkpoint.rng_init(factory, _rngs(0))
    compiled = jax.jit(init).lower(state).compile().as_text()
    assert "37,53" not in compiled and "53,37" not in compiled

    def everything(state: Any) -> Any:
        return nnx.state(factory(rngs=upstream.merge(upstream.graphdef(_rngs(0)), state)))

    assert "37,53" in jax.jit(everything).lower(state).compile().as_text()  # the control


# --- optimizer checkpoints ---------------------------------------------------------------


def _train(model: Any, optimizer: Any, steps: int) -> Any:
    @nnx.jit
    def step(model: Any, optimizer: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        def loss_fn(model: Any) -> jax.Array:
            return ((model(x) - y) ** 2).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    x = jnp.linspace(-1, 1, 8, dtype=jnp.float32).reshape(4, 2)
    return [step(model, optimizer, x, jnp.sin(x[:, :1] * 3)) for _ in range(steps)]


def test_optimizer_checkpoint_returns_both_halves_and_training_continues() -> None:
    factory = functools.partial(Net, 2, 6, 1, 0.2)
    tx = optax.sgd(0.1, momentum=0.9)
    model = factory(rngs=_rngs(0))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    _train(model, optimizer, 2)
    legacy = nnx_compat.legacy_checkpoint(
        nnx.state(model), factory, rngs=_rngs(0), optimizer=nnx.state(optimizer)
    )
    assert set(legacy) == {"model", "opt_state", "step"}  # flax 0.10's Optimizer layout

    with pytest.raises(nnx_compat.CheckpointError, match=r"pass the optax transformation"):
        nnx.fix_checkpoint(legacy, factory, rngs=_rngs(0))
    fixed = nnx.fix_checkpoint(legacy, factory, rngs=_rngs(0), tx=tx)
    assert isinstance(fixed, nnx_compat.OptimizerCheckpoint)
    model_state, optimizer_state = fixed
    assert int(_checkpoint.read(optimizer_state)["step"]) == 2

    restored = factory(rngs=_rngs(5))
    restored_optimizer = nnx.Optimizer(restored, tx, wrt=nnx.Param)
    nnx.update(restored, model_state)
    nnx.update(restored_optimizer, optimizer_state)
    # the RNG state is the one a fresh build has; make the original's the same, then compare
    nnx.update(model, nnx.state(factory(rngs=_rngs(0)), nnx.RngState))
    expected = _train(model, optimizer, 3)
    got = _train(restored, restored_optimizer, 3)
    np.testing.assert_array_equal(np.array(got), np.array(expected), strict=True)
    _assert_same(nnx.state(restored_optimizer), nnx.state(optimizer))


def test_optimizer_checkpoint_with_another_tx_is_refused() -> None:
    factory = functools.partial(Net, 2, 4, 1, None)
    model = factory(rngs=_rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1, momentum=0.9), wrt=nnx.Param)
    legacy = nnx_compat.legacy_checkpoint(
        nnx.state(model), factory, rngs=_rngs(0), optimizer=nnx.state(optimizer)
    )
    with pytest.raises(nnx_compat.CheckpointMismatchError, match="tx=") as err:
        nnx.fix_checkpoint(legacy, factory, rngs=_rngs(0), tx=optax.adam(1e-3))
    assert any("mu" in path for path in err.value.missing)
    assert any("trace" in path for path in err.value.extra)


# --- already converted, other models, bad input --------------------------------------------


def test_a_checkpoint_in_the_installed_structure_is_returned_unchanged_with_a_note() -> None:
    factory = functools.partial(Net, 2, 4, 3, 0.5)
    state = _as_orbax(nnx.state(factory(rngs=_rngs(0))))
    with pytest.warns(nnx_compat.CheckpointNote, match="returned unchanged") as record:
        out = nnx.fix_checkpoint(state, factory, rngs=_rngs(0))
    assert out is state
    assert record[0].filename == __file__


def test_another_models_checkpoint_lists_missing_and_extra_paths() -> None:
    legacy = nnx_compat.legacy_checkpoint(
        nnx.state(Net(2, 4, 3, 0.5, rngs=_rngs(0))),
        functools.partial(Net, 2, 4, 3, 0.5),
        rngs=_rngs(0),
    )
    legacy["head"] = legacy.pop("linear_out")

    with pytest.raises(nnx_compat.CheckpointMismatchError) as err:
        nnx.fix_checkpoint(legacy, functools.partial(Net, 2, 4, 3, 0.5), rngs=_rngs(0))
    assert err.value.missing == ("linear_out/bias", "linear_out/kernel")
    assert err.value.extra == ("head/bias", "head/kernel")
    message = str(err.value)
    assert "missing from the checkpoint (2): linear_out/bias, linear_out/kernel" in message
    assert "in the checkpoint only (2): head/bias, head/kernel" in message
    assert "nothing was converted" in message


def test_wrong_shapes_and_dtypes_are_named() -> None:
    factory = functools.partial(Net, 2, 4, 3, None)
    state = _as_orbax(nnx.state(factory(rngs=_rngs(0))))
    state["linear"]["kernel"]["value"] = jnp.zeros((4, 2), jnp.float32)
    state["bn"]["mean"]["value"] = jnp.zeros((4,), jnp.float16)
    with pytest.raises(nnx_compat.CheckpointMismatchError) as err:
        nnx.fix_checkpoint(state, factory, rngs=_rngs(0))
    assert err.value.mismatched == {
        "bn/mean": ("float16[4]", "float32[4]"),
        "linear/kernel": ("float32[4, 2]", "float32[2, 4]"),
    }
    assert "linear/kernel: checkpoint float32[4, 2], model float32[2, 4]" in str(err.value)


def test_long_listings_are_counted() -> None:
    state = {f"layer{i}": {"kernel": {"value": jnp.zeros(2)}} for i in range(30)}
    with pytest.raises(nnx_compat.CheckpointMismatchError, match=r"\(30\): .* and 18 more"):
        nnx.fix_checkpoint(state, functools.partial(Net, 2, 4, 3, None), rngs=_rngs(0))


@pytest.mark.parametrize(
    ("checkpoint", "message"),
    [
        ([1, 2], "got list"),
        ({"linear": {"kernel": "weights"}}, r"not: linear/kernel \(str\)"),
    ],
)
def test_what_is_not_a_checkpoint_is_refused(checkpoint: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        nnx.fix_checkpoint(checkpoint, functools.partial(Net, 2, 4, 3, None), rngs=_rngs(0))


def test_rngs_must_be_an_rngs() -> None:
    with pytest.raises(TypeError, match=r"nnx.Rngs\(params=0, dropout=1\)"):
        nnx.fix_checkpoint({}, functools.partial(Net, 2, 4, 3, None), rngs=0)


# --- the flax 0.10 layout ------------------------------------------------------------------


class Blocks(nnx.Module):
    """Dropouts at several depths: flax 0.10 stores their shared Rngs once."""

    def __init__(self, *, rngs: Any) -> None:
        self.b_inner = Net(2, 3, 2, 0.1, rngs=rngs)
        self.a_dropout = nnx.Dropout(0.5, rngs=rngs)
        self.z = nnx.Linear(2, 2, rngs=rngs)


@pytest.mark.parametrize("factory", [functools.partial(Net, 2, 4, 3, 0.5), Blocks])
def test_legacy_layout_is_the_one_flax_0_10_writes(factory: Any) -> None:
    legacy = nnx_compat.legacy_checkpoint(nnx.state(factory(rngs=_rngs(0))), factory, rngs=_rngs(0))
    layout = {p: (v.shape, v.dtype) for p, v in _checkpoint.read(legacy).items()}
    if LAYERS_FORK:
        assert all(p.split("/")[-2] != "rngs" for p in layout)  # no forked stream left
        return
    # on flax 0.10 the native layers are the reference: build the model with them
    with _native_layers():
        native = nnx.state(factory(rngs=_rngs(0)))
    assert layout == {p: (v.shape, v.dtype) for p, v in _checkpoint.read(native).items()}
    np.testing.assert_array_equal(
        jax.random.key_data(_checkpoint.read(legacy)[_first_key(layout)]),
        jax.random.key_data(_checkpoint.read(native)[_first_key(layout)]),
    )


def _first_key(layout: dict[str, Any]) -> str:
    return next(p for p in sorted(layout) if p.endswith("rngs/dropout/key"))


class _native_layers:
    """Builds with flax 0.10's own Dropout (it shares the caller's Rngs)."""

    def __enter__(self) -> None:
        self.saved = nnx.Dropout
        self.namespace = vars(nnx)
        self.namespace["Dropout"] = upstream.Dropout

    def __exit__(self, *exc: object) -> None:
        self.namespace["Dropout"] = self.saved


def test_legacy_then_fix_is_the_identity_on_parameters() -> None:
    factory = Blocks
    model = factory(rngs=_rngs(4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        legacy = nnx_compat.legacy_checkpoint(nnx.state(model), factory, rngs=_rngs(4))
        _assert_same(nnx.fix_checkpoint(legacy, factory, rngs=_rngs(4)), nnx.state(model))


# --- the real checkpoints: written by flax 0.10.7 and 0.12.8 (tests/make_checkpoints.py) ----

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"
OLD, NEW = FIXTURES / "flax-0.10.7", FIXTURES / "flax-0.12.8"


def _factory(name: str) -> Any:
    return lambda rngs: checkpoint_models.build(nnx, name, rngs, form="0.11").model


def _restore(path: Path) -> Any:
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer().restore(path.resolve())


def _restore_into(path: Path, target: Any) -> Any:
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer().restore(path.resolve(), target)


def _layout(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    return {p: (tuple(v.shape), str(v.dtype)) for p, v in _checkpoint.read(tree).items()}


def _meta_layout(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    leaves = json.loads((path / "meta.json").read_text())["leaves"]
    return {
        leaf["path"].removesuffix("/value"): (tuple(leaf["shape"]), leaf["dtype"])
        for leaf in leaves
    }


def _continue(namespace: Any, built: Any, fixture: Path) -> Any:
    """Trains ``built`` 3 more steps, dropout off; the losses must be the fixture's."""
    checkpoint_models.set_deterministic(namespace, built)
    step = checkpoint_models.train_step(namespace, built)
    x, y = checkpoint_models.batch(built.name)
    losses = np.array([step(x, y) for _ in range(3)])
    continuation = np.load(fixture / "continuation.npz")
    np.testing.assert_allclose(losses, [continuation[f"loss/{i}"] for i in range(3)], rtol=1e-5)
    return continuation


def _params(flat: dict[str, Any]) -> dict[str, Any]:
    return {p: v for p, v in flat.items() if not _checkpoint.is_rng_path(p)}


@pytest.mark.skipif(not LAYERS_FORK, reason="flax 0.10 restores its own checkpoints")
@pytest.mark.parametrize("name", checkpoint_models.MODELS)
def test_reproduce_restoring_a_flax_0_10_checkpoint_natively_fails(name: str) -> None:
    import orbax.checkpoint as ocp

    def build() -> Any:
        built = checkpoint_models.build(upstream, name, checkpoint_models.rngs(upstream))
        # a 0.10 Optimizer checkpoint is the Optimizer's state: restore into the new one's
        return built.model if built.optimizer is None else built.optimizer

    target = upstream.state(upstream.eval_shape(build))
    # the model's paths differ (dropout/rngs/...); an Optimizer's lost its model/ subtree
    mismatch = r"Structure mismatch: Target path .* not found|tree structures do not match"
    with pytest.raises(ValueError, match=mismatch):
        ocp.StandardCheckpointer().restore((OLD / name / "state").resolve(), target)


@pytest.mark.parametrize("name", checkpoint_models.MODELS)
def test_flax_0_10_checkpoint_restores_bit_for_bit_and_training_continues(name: str) -> None:
    raw = _restore(OLD / name / "state")
    factory = _factory(name)
    rngs = checkpoint_models.rngs(nnx)
    built = checkpoint_models.build(nnx, name, checkpoint_models.rngs(nnx), form="0.11")
    if name == "optimizer":
        tx = optax.sgd(checkpoint_models.LEARNING_RATE, momentum=checkpoint_models.MOMENTUM)
        model_state, optimizer_state = nnx.fix_checkpoint(raw, factory, rngs=rngs, tx=tx)
        nnx.update(built.model, model_state)
        nnx.update(built.optimizer, optimizer_state)
        got = {f"model/{p}": v for p, v in _checkpoint.read(model_state).items()}
        got.update(_checkpoint.read(optimizer_state))
    else:
        if _layout(nnx.state(built.model)) == _meta_layout(OLD / name):
            # flax 0.10's recurrent layers keep the caller's Rngs through nnx_compat too
            with pytest.warns(nnx_compat.CheckpointNote, match="returned unchanged"):
                assert nnx.fix_checkpoint(raw, factory, rngs=rngs) is raw
            # so it restores as the note says
            state = _restore_into(OLD / name / "state", nnx.state(built.model))
        else:
            state = nnx.fix_checkpoint(raw, factory, rngs=rngs)
        nnx.update(built.model, state)
        got = _checkpoint.read(state)
    # every array that is not RNG state arrives bit for bit
    expected = _params(_checkpoint.read(raw))
    assert _params(got).keys() == expected.keys()
    for path, value in expected.items():
        np.testing.assert_array_equal(got[path], value, err_msg=path, strict=True)

    continuation = _continue(nnx, built, OLD / name)
    after = _checkpoint.read(nnx.state(built.model))
    for key in continuation.files:
        if key.startswith("model/"):
            np.testing.assert_allclose(
                after[key.removeprefix("model/")], continuation[key], rtol=1e-5, atol=1e-6
            )


@pytest.mark.parametrize("name", checkpoint_models.MODELS)
def test_rollback_gives_exactly_the_layout_flax_0_10_writes(name: str) -> None:
    raw = _restore(NEW / name / "state")
    rngs = checkpoint_models.rngs(nnx)
    if name == "optimizer":
        legacy = nnx_compat.legacy_checkpoint(
            raw["model"], _factory(name), rngs=rngs, optimizer=raw["optimizer"]
        )
        params = {f"model/{p}": v for p, v in _checkpoint.read(raw["model"]).items()}
        params.update(_checkpoint.read(raw["optimizer"]))
    else:
        legacy = nnx_compat.legacy_checkpoint(raw, _factory(name), rngs=rngs)
        params = _checkpoint.read(raw)
    assert _layout(legacy) == _meta_layout(OLD / name)  # as flax 0.10.7 wrote it
    got = _checkpoint.read(legacy)
    for path, value in _params(params).items():
        np.testing.assert_array_equal(got[path], value, err_msg=path, strict=True)


@pytest.mark.skipif(LAYERS_FORK, reason="rolling back: flax 0.10 itself restores it")
@pytest.mark.parametrize("name", checkpoint_models.MODELS)
def test_rolled_back_checkpoint_restores_in_flax_0_10_and_training_continues(
    name: str, tmp_path: Path
) -> None:
    import orbax.checkpoint as ocp

    raw = _restore(NEW / name / "state")
    rngs = checkpoint_models.rngs(nnx)
    if name == "optimizer":
        legacy = nnx_compat.legacy_checkpoint(
            raw["model"], _factory(name), rngs=rngs, optimizer=raw["optimizer"]
        )
    else:
        legacy = nnx_compat.legacy_checkpoint(raw, _factory(name), rngs=rngs)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "state", legacy)
    checkpointer.wait_until_finished()
    # flax 0.10.7's own layers and Optimizer, restoring as its users do
    built = checkpoint_models.build(upstream, name, checkpoint_models.rngs(upstream))
    target = built.checkpoint(upstream)
    restored = checkpointer.restore(tmp_path / "state", target)
    nnx.update(built.optimizer if name == "optimizer" else built.model, restored)
    _continue(upstream, built, NEW / name)
