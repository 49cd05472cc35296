"""``nnx.Optimizer``/``nnx.ModelAndOptimizer``: both forms, bit for bit equal to native."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import typing
import warnings
from pathlib import Path
from typing import Any

import flax.nnx as upstream
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnx_compat
from nnx_compat import _versions, nnx
from tests.hlo import lowered_text
from tests.markers import line_of
from tests.strategies import (
    MLP,
    NATIVE_UPDATE_TAKES_MODEL,
    TRANSFORMS,
    WRT,
    LoRAParam,
    ModelSpec,
    assert_bitwise_equal,
    flat_arrays,
    model_specs,
)

API = _versions.detect().api
SPEC = ModelSpec(din=3, widths=(8,), dout=2, batchnorm=True, dropout=0.2, lora_rank=2, seed=0)


def _batch(spec: ModelSpec, seed: int = 1, n: int = 4) -> tuple[jax.Array, jax.Array]:
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.normal(kx, (n, spec.din)), jax.random.normal(ky, (n, spec.dout))


def _loss_fn(model: Any, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    pred = model(x)
    return ((pred - y) ** 2).mean(), pred.mean()


def _grads(model: Any, wrt: Any, x: jax.Array, y: jax.Array) -> tuple[Any, Any]:
    grad_fn = upstream.value_and_grad(_loss_fn, argnums=upstream.DiffState(0, wrt), has_aux=True)
    return grad_fn(model, x, y)


# --- the three ways of writing one training step ----------------------------------------
#: "legacy": the flax 0.10 form through the shim (Optimizer(model, tx[, wrt]), update(grads));
#: "new": the 0.11 form through the shim (wrt=..., update(model, grads));
#: "native": the installed flax's own form, on flax.nnx itself.


def make_optimizer(form: str, model: Any, tx: Any, wrt: Any = upstream.Param) -> Any:
    with nnx_compat.warnings_policy("ignore"):
        if form == "legacy":
            return (
                nnx.Optimizer(model, tx) if wrt is upstream.Param else nnx.Optimizer(model, tx, wrt)
            )
        if form == "new":
            return nnx.Optimizer(model, tx, wrt=wrt)
        return upstream.Optimizer(model, tx, wrt=wrt)


def apply_update(form: str, optimizer: Any, model: Any, grads: Any, **kwargs: Any) -> Any:
    if form == "legacy" or (form == "native" and not NATIVE_UPDATE_TAKES_MODEL):
        return optimizer.update(grads, **kwargs)
    return optimizer.update(model, grads, **kwargs)


def run(
    form: str, spec: ModelSpec, tx: Any, wrt_name: str, steps: int
) -> tuple[Any, Any, list[Any]]:
    """Trains ``steps`` steps under ``nnx.jit``, written in one of the three forms."""
    wrt = WRT[wrt_name][0]
    model = MLP.build(spec)
    optimizer = make_optimizer(form, model, tx, wrt)

    @nnx.jit
    def step(model: Any, optimizer: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        (loss, _), grads = _grads(model, wrt, x, y)
        apply_update(form, optimizer, model, grads)
        return loss

    with nnx_compat.warnings_policy("ignore"):
        losses = [step(model, optimizer, *_batch(spec, i)) for i in range(steps)]
    return model, optimizer, losses


def _opt_arrays(optimizer: Any) -> dict[str, np.ndarray]:
    """The optimizer's own state (opt_state and step), without a held model."""
    flat = flat_arrays(upstream.state(optimizer))
    return {k: v for k, v in flat.items() if not k.startswith("model/")}


def _compare(a: tuple[Any, Any, list[Any]], b: tuple[Any, Any, list[Any]]) -> None:
    assert_bitwise_equal(flat_arrays(upstream.state(a[0])), flat_arrays(upstream.state(b[0])))
    assert_bitwise_equal(_opt_arrays(a[1]), _opt_arrays(b[1]))
    assert_bitwise_equal(
        {str(i): np.asarray(v) for i, v in enumerate(a[2])},
        {str(i): np.asarray(v) for i, v in enumerate(b[2])},
    )


@given(
    spec=model_specs(),
    tx_name=st.sampled_from(sorted(TRANSFORMS)),
    wrt_name=st.sampled_from(sorted(WRT)),
    steps=st.integers(1, 4),
)
def test_legacy_and_new_forms_equal_native_bit_for_bit(
    spec: ModelSpec, tx_name: str, wrt_name: str, steps: int
) -> None:
    if WRT[wrt_name][1] and not spec.lora_rank:
        spec = ModelSpec(**{**spec.__dict__, "lora_rank": 2})
    native = run("native", spec, TRANSFORMS[tx_name](), wrt_name, steps)
    _compare(run("legacy", spec, TRANSFORMS[tx_name](), wrt_name, steps), native)
    _compare(run("new", spec, TRANSFORMS[tx_name](), wrt_name, steps), native)


# --- reproductions: what upstream does with the other generation's form ------------------


def test_upstream_rejects_the_other_form() -> None:
    model = MLP.build(SPEC)
    if API == "0.10":
        optimizer = upstream.Optimizer(model, optax.sgd(0.1), wrt=upstream.Param)
        (_, _), grads = _grads(model, upstream.Param, *_batch(SPEC))
        with pytest.raises(TypeError, match="takes 2 positional arguments but 3 were given"):
            optimizer.update(model, grads)
        assert not hasattr(upstream, "ModelAndOptimizer")
    else:
        with pytest.raises(TypeError, match="Missing required argument `wrt`"):
            upstream.Optimizer(model, optax.sgd(0.1))
        with pytest.raises(TypeError, match="Missing required argument `wrt`"):
            upstream.Optimizer(model, optax.sgd(0.1), upstream.Param)
        optimizer = upstream.Optimizer(model, optax.sgd(0.1), wrt=upstream.Param)
        (_, _), grads = _grads(model, upstream.Param, *_batch(SPEC))
        with pytest.raises(TypeError, match="grads"):
            optimizer.update(grads)
        # flax 0.11.0-0.11.1 say "does have attribute 'model' since Flax 0.11.0"
        with pytest.raises(AttributeError, match=r"does (not )?have attribute 'model'"):
            _ = optimizer.model


# --- warnings ---------------------------------------------------------------------------


def _line(marker: str) -> int:
    return line_of(__file__, marker)


def test_each_legacy_form_warns_at_the_user_line() -> None:
    model = MLP.build(SPEC)
    x, y = _batch(SPEC)
    with pytest.warns(nnx_compat.OptimizerDeprecationWarning) as caught:
        optimizer = nnx.Optimizer(model, optax.adam(1e-3))  # MARK-default
        nnx.Optimizer(model, optax.adam(1e-3), nnx.Param)  # MARK-positional

        @nnx.jit
        def step(model: Any, optimizer: Any) -> None:
            (_, _), grads = _grads(model, nnx.Param, x, y)
            optimizer.update(grads)  # MARK-update

        step(model, optimizer)
        step(model, optimizer)
        assert optimizer.model is model  # MARK-model
    seen = [(w.filename, w.lineno, str(w.message).rsplit("[nnx-compat: ", 1)[1]) for w in caught]
    assert seen == [
        (__file__, _line("MARK-default"), "optimizer-wrt-default]"),
        (__file__, _line("MARK-positional"), "optimizer-wrt-positional]"),
        (__file__, _line("MARK-update"), "optimizer-update-grads]"),
        (__file__, _line("MARK-model"), "optimizer-model-attribute]"),
    ]


def test_new_form_and_model_and_optimizer_emit_nothing() -> None:
    """The 0.11 forms run silently, and each update trains as the native optimizer does."""
    x, y = _batch(SPEC)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = MLP.build(SPEC)
        optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
        (_, _), grads = _grads(model, nnx.Param, x, y)
        optimizer.update(model, grads)
        optimizer.update(model=model, grads=grads)
        both = nnx.ModelAndOptimizer(model, optax.adam(1e-3), wrt=nnx.Param)
        both.update(grads)
        both.update(model, grads)
        assert both.model is model
        upstream.state(both)  # flax reading .model internally is not the user's legacy read
    assert nnx_compat.report() == ()
    # the same four updates, written natively: two optimizers over one model
    reference = MLP.build(SPEC)
    natives = [make_optimizer("native", reference, optax.adam(1e-3)) for _ in range(2)]
    (_, _), native_grads = _grads(reference, upstream.Param, x, y)
    for native in natives:
        for _ in range(2):
            apply_update("native", native, reference, native_grads)
    assert_bitwise_equal(flat_arrays(upstream.state(model)), flat_arrays(upstream.state(reference)))
    assert_bitwise_equal(_opt_arrays(optimizer), _opt_arrays(natives[0]))
    assert_bitwise_equal(_opt_arrays(both), _opt_arrays(natives[1]))
    assert int(_opt_arrays(both)["step"]) == 2


def test_typing_deprecated_marks_the_legacy_overloads() -> None:
    marked = {}
    for func in (nnx.Optimizer.__init__, nnx.Optimizer.update):
        for overload in typing.get_overloads(func):
            if getattr(overload, "__deprecated__", None):
                marked[overload.__deprecated__] = overload
    legacy_ids = ("optimizer-wrt-default", "optimizer-wrt-positional", "optimizer-update-grads")
    for pattern_id in legacy_ids:
        pattern = nnx_compat._patterns.get(pattern_id)
        expected = (
            f"{pattern.legacy} is deprecated since flax {pattern.changed_in}: use {pattern.new}"
        )
        assert expected in marked, (expected, list(marked))
    assert len(marked) == len(legacy_ids)


# --- keyword forms and return value ----------------------------------------------------


@pytest.mark.parametrize("call", ["positional", "keywords", "grads-keyword", "legacy-keyword"])
def test_update_keyword_forms(call: str) -> None:
    spec, (x, y) = SPEC, _batch(SPEC)
    reference = MLP.build(spec)
    native = make_optimizer("native", reference, optax.adam(1e-2))
    (_, _), native_grads = _grads(reference, upstream.Param, x, y)
    native_result = apply_update("native", native, reference, native_grads)
    model = MLP.build(spec)
    form = "legacy" if call == "legacy-keyword" else "new"
    optimizer = make_optimizer(form, model, optax.adam(1e-2))
    with nnx_compat.warnings_policy("ignore"):
        (_, _), grads = _grads(model, nnx.Param, x, y)
        result = {
            "positional": lambda: optimizer.update(model, grads),
            "keywords": lambda: optimizer.update(model=model, grads=grads),
            "grads-keyword": lambda: optimizer.update(model, grads=grads),
            "legacy-keyword": lambda: optimizer.update(grads=grads),
        }[call]()
    assert (result is None) == (native_result is None)
    if result is not None:  # flax 0.12.7+ returns the optax updates
        assert_bitwise_equal(flat_arrays(result), flat_arrays(native_result))
    assert_bitwise_equal(flat_arrays(upstream.state(model)), flat_arrays(upstream.state(reference)))
    assert_bitwise_equal(_opt_arrays(optimizer), _opt_arrays(native))


@pytest.mark.parametrize("form", ["legacy", "new"])
def test_extra_arguments_reach_the_transformation(form: str) -> None:
    """``update(..., value=loss)`` feeds optax's extra arguments as natively."""
    spec, (x, y) = SPEC, _batch(SPEC)

    def program(form: str) -> dict[str, np.ndarray]:
        model = MLP.build(spec)
        tx = optax.chain(optax.sgd(0.1), optax.contrib.reduce_on_plateau(patience=0, factor=0.5))
        optimizer = make_optimizer(form, model, tx)
        with nnx_compat.warnings_policy("ignore"):
            for scale in (1.0, 2.0, 4.0):  # a rising loss: the plateau rule halves the step
                (loss, _), grads = _grads(model, upstream.Param, x, y)
                apply_update(form, optimizer, model, grads, value=loss * scale)
        return {**flat_arrays(upstream.state(model)), **_opt_arrays(optimizer)}

    if not _versions.feature("OPTIMIZER_UPDATE_KWARGS"):  # flax 0.10.0-0.10.1
        with pytest.raises(TypeError, match=r"need flax 0\.10\.2"):
            program(form)
        return
    shim, native = program(form), program("native")
    assert_bitwise_equal(shim, native)
    (plateau_scale,) = [
        v for k, v in shim.items() if k.startswith("opt_state/") and k.endswith("/scale")
    ]
    assert float(plateau_scale) < 1.0, "value= did not reach reduce_on_plateau"


# --- transforms --------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["legacy", "new"])
@pytest.mark.skipif(not hasattr(upstream, "fori_loop"), reason="nnx.fori_loop: flax 0.10.2")
def test_fori_loop_scan_and_cond(form: str) -> None:
    spec, (x, y) = SPEC, _batch(SPEC)

    def program(form: str) -> dict[str, np.ndarray]:
        ns = upstream if form == "native" else nnx
        model = MLP.build(spec)
        optimizer = make_optimizer(form, model, optax.adam(1e-2))

        def body(i: Any, carry: Any) -> Any:
            model, optimizer = carry
            (_, _), grads = _grads(model, upstream.Param, x, y)
            apply_update(form, optimizer, model, grads)
            return model, optimizer

        @ns.jit
        def train(model: Any, optimizer: Any) -> None:
            ns.fori_loop(0, 3, body, (model, optimizer))

            @ns.scan(in_axes=(ns.Carry, 0), out_axes=(ns.Carry, 0))
            def scan_step(carry: Any, xs: Any) -> Any:
                model, optimizer = carry
                (loss, _), grads = _grads(model, upstream.Param, xs, y)
                apply_update(form, optimizer, model, grads)
                return (model, optimizer), loss

            scan_step((model, optimizer), jnp.stack([x, x * 2]))

            def true_fn(model: Any, optimizer: Any) -> None:
                (_, _), grads = _grads(model, upstream.Param, x, y)
                apply_update(form, optimizer, model, grads)

            ns.cond(jnp.sum(x) > -1e9, true_fn, lambda m, o: None, model, optimizer)

        with nnx_compat.warnings_policy("ignore"):
            train(model, optimizer)
        return {**flat_arrays(upstream.state(model)), **_opt_arrays(optimizer)}

    try:
        native = program("native")
    except ValueError as error:
        # flax 0.10.2's own fori_loop rejects a carry whose optimizer shares the model (0.10.3
        # fixed it): the same error through nnx_compat
        assert "fori_loop requires" in str(error)
        with pytest.raises(ValueError, match="fori_loop requires"):
            program(form)
        return
    assert_bitwise_equal(program(form), native)


@pytest.mark.parametrize("form", ["legacy", "new"])
def test_jax_jit_with_split_and_merge(form: str) -> None:
    spec, (x, y) = SPEC, _batch(SPEC)

    def program(form: str) -> dict[str, np.ndarray]:
        model = MLP.build(spec)
        optimizer = make_optimizer(form, model, optax.adam(1e-2))
        graphdef, state = upstream.split((model, optimizer))

        @jax.jit
        def step(state: Any) -> Any:
            model, optimizer = upstream.merge(graphdef, state)
            (_, _), grads = _grads(model, upstream.Param, x, y)
            apply_update(form, optimizer, model, grads)
            return upstream.state((model, optimizer))

        with nnx_compat.warnings_policy("ignore"):
            for _ in range(2):
                state = step(state)
        upstream.update((model, optimizer), state)
        return {**flat_arrays(upstream.state(model)), **_opt_arrays(optimizer)}

    assert_bitwise_equal(program(form), program("native"))


def _plain_mlp(spec: ModelSpec) -> Any:
    """Parameters only: tree-mode grad differentiates every leaf."""
    rngs = upstream.Rngs(spec.seed)
    return upstream.Sequential(
        upstream.Linear(spec.din, 8, rngs=rngs),
        jax.nn.relu,
        upstream.Linear(8, spec.dout, rngs=rngs),
    )


@pytest.mark.skipif(not _versions.feature("OPTIMIZER_GRAPH_ARG"), reason="tree mode: flax 0.12.8+")
def test_tree_mode_new_form_equals_native() -> None:
    spec, (x, y) = SPEC, _batch(SPEC)

    def program(ns: Any) -> dict[str, np.ndarray]:
        model = _plain_mlp(spec)
        optimizer = ns.Optimizer(model, optax.adam(1e-2), wrt=upstream.Param, graph=False)

        @jax.jit
        def step(model: Any, optimizer: Any) -> Any:
            grads = upstream.grad(lambda m: _loss_fn(m, x, y)[0], graph=False)(model)
            optimizer.update(model, grads)
            return model, optimizer

        for _ in range(2):
            model, optimizer = step(model, optimizer)
        return {**flat_arrays(upstream.state(model)), **_opt_arrays(optimizer)}

    assert_bitwise_equal(program(nnx), program(upstream))


@pytest.mark.skipif(not _versions.feature("OPTIMIZER_GRAPH_ARG"), reason="tree mode: flax 0.12.8+")
def test_tree_mode_legacy_with_a_separate_model_names_the_fix() -> None:
    model = _plain_mlp(SPEC)
    with nnx_compat.warnings_policy("ignore"):
        optimizer = nnx.Optimizer(model, optax.adam(1e-2))
    optimizer.graph = False

    @jax.jit
    def step(model: Any, optimizer: Any) -> Any:
        grads = upstream.grad(lambda m: _loss_fn(m, *_batch(SPEC))[0], graph=False)(model)
        optimizer.update(model, grads)
        return model, optimizer

    with pytest.raises(ValueError, match=r"tree mode \(graph=False\).*graph=False\)"):
        step(model, optimizer)


def test_graph_argument_on_older_flax() -> None:
    """``graph=None``/``graph=True`` train as the plain form on every flax; ``graph=False``
    needs flax 0.12.8."""
    x, y = _batch(SPEC)
    reference = MLP.build(SPEC)
    native = make_optimizer("native", reference, optax.sgd(0.1))
    (_, _), native_grads = _grads(reference, upstream.Param, x, y)
    apply_update("native", native, reference, native_grads)
    for graph in (None, True):
        model = MLP.build(SPEC)
        optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param, graph=graph)
        (_, _), grads = _grads(model, nnx.Param, x, y)
        optimizer.update(model, grads)
        assert_bitwise_equal(
            flat_arrays(upstream.state(model)), flat_arrays(upstream.state(reference))
        )
        assert_bitwise_equal(_opt_arrays(optimizer), _opt_arrays(native))
    if _versions.feature("OPTIMIZER_GRAPH_ARG"):
        optimizer = nnx.Optimizer(_plain_mlp(SPEC), optax.sgd(0.1), wrt=nnx.Param, graph=False)
        assert vars(optimizer)["graph"] is False
    else:
        with pytest.raises(TypeError, match=r"needs flax 0\.12\.8"):
            nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param, graph=False)


# --- state structure and checkpoints ------------------------------------------------------


def _paths(node: Any) -> list[str]:
    return sorted(flat_arrays(upstream.state(node)))


def test_state_structure_matches_native() -> None:
    model = MLP.build(SPEC)
    with nnx_compat.warnings_policy("ignore"):
        legacy = nnx.Optimizer(model, optax.adam(1e-3))
    new = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    both = nnx.ModelAndOptimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    native_new = upstream.Optimizer(model, optax.adam(1e-3), wrt=upstream.Param)
    assert _paths(new) == _paths(native_new)
    if API == "0.10":  # 0.10's Optimizer holds the model, and is its ModelAndOptimizer
        assert _paths(legacy) == _paths(native_new)
        assert _paths(both) == _paths(native_new)
    else:
        native_both = upstream.ModelAndOptimizer(model, optax.adam(1e-3), wrt=upstream.Param)
        assert _paths(legacy) == _paths(native_both)
        assert _paths(both) == _paths(native_both)
        assert isinstance(both, upstream.ModelAndOptimizer)
    assert any(p.startswith("model/") for p in _paths(legacy))
    assert isinstance(legacy, upstream.Optimizer) and isinstance(new, upstream.Optimizer)
    assert isinstance(both, nnx.Optimizer)


CHECKPOINT_RESTORE = textwrap.dedent(
    """
    import sys, numpy as np, optax, orbax.checkpoint as ocp
    from flax import nnx
    sys.path.insert(0, sys.argv[3])
    from tests.strategies import MLP, ModelSpec, flat_arrays
    assert "nnx_compat.nnx" not in sys.modules and "nnx_compat._optimizer" not in sys.modules
    spec = ModelSpec(**eval(sys.argv[2]))
    model = MLP.build(ModelSpec(**{**spec.__dict__, "seed": spec.seed + 1}))
    form = sys.argv[4]
    if form == "legacy" and hasattr(nnx, "ModelAndOptimizer"):
        optimizer = nnx.ModelAndOptimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    else:
        optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    target = nnx.state(optimizer)
    restored = ocp.StandardCheckpointer().restore(sys.argv[1], target)
    nnx.update(optimizer, restored)
    arrays = flat_arrays(nnx.state(optimizer))
    np.savez(sys.argv[1] + ".npz", **{"/" + k: v for k, v in arrays.items()})
    """
)


@pytest.mark.parametrize("form", ["legacy", "new"])
def test_checkpoint_restores_into_native_without_nnx_compat(form: str, tmp_path: Path) -> None:
    import orbax.checkpoint as ocp

    spec = SPEC
    _, optimizer, _ = run(form, spec, optax.adam(1e-2), "Param", 2)
    path = tmp_path / "ckpt"
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, upstream.state(optimizer))
    checkpointer.wait_until_finished()
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", CHECKPOINT_RESTORE, str(path), repr(spec.__dict__), str(root), form],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    restored = dict(np.load(str(path) + ".npz"))
    expected = {"/" + k: v for k, v in flat_arrays(upstream.state(optimizer)).items()}
    assert_bitwise_equal(restored, expected)
    # the model travels separately in the new form (0.10's native Optimizer holds it)
    assert ("/model/linear0/kernel" in restored) == (form == "legacy" or API == "0.10")


# --- bad input --------------------------------------------------------------------------


def test_model_that_is_not_an_nnx_object() -> None:
    with pytest.raises(TypeError, match=r"needs the model .* got dict"):
        nnx.Optimizer({"w": jnp.ones(3)}, optax.sgd(0.1), wrt=nnx.Param)
    model = MLP.build(SPEC)
    with pytest.raises(TypeError, match=r"You passed an nnx\.State; pass the model itself"):
        nnx.Optimizer(upstream.state(model), optax.sgd(0.1), wrt=nnx.Param)
    with pytest.raises(TypeError, match="optax GradientTransformation"):
        nnx.Optimizer(model, 0.1, wrt=nnx.Param)


def test_wrt_that_matches_nothing() -> None:
    model = MLP.build(ModelSpec(2, (), 2, False, 0.0, 0, 0))
    with pytest.raises(ValueError, match=r"matches no variable of MLP.*types CallCount, Param"):
        nnx.Optimizer(model, optax.sgd(0.1), wrt=upstream.BatchStat)


def test_update_with_another_model() -> None:
    model, other = MLP.build(SPEC), MLP.build(SPEC)
    with nnx_compat.warnings_policy("ignore"):
        optimizer = nnx.Optimizer(model, optax.sgd(0.1))
    (_, _), grads = _grads(other, nnx.Param, *_batch(SPEC))
    with pytest.raises(ValueError, match="got a different model from the one this optimizer holds"):
        optimizer.update(other, grads)


def test_grads_that_do_not_match_wrt() -> None:
    model = MLP.build(SPEC)
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    (_, _), grads = _grads(model, nnx.Param, *_batch(SPEC))
    del grads["linear0"]["bias"]
    with pytest.raises(ValueError, match=r"missing from grads: linear0/bias"):
        optimizer.update(model, grads)


#: flax 0.12.1's update takes the grads of the variables wrt selects and ignores the others
UPDATE_SELECTS_GRADS = _versions.installed_at_least("0.12.1")


def test_reproduce_grads_of_more_variables_than_wrt_selects() -> None:
    # flax 0.12.8's optimization cookbook: a LoRA optimizer updated with the grads of every Param
    model = MLP.build(SPEC)
    (_, _), grads = _grads(model, upstream.Param, *_batch(SPEC))
    if UPDATE_SELECTS_GRADS:
        upstream.Optimizer(model, optax.adam(1e-3), wrt=LoRAParam).update(model, grads)
    elif API == "0.11":  # optax's tree of the LoRA params against the grads of every Param
        optimizer = upstream.Optimizer(model, optax.adam(1e-3), wrt=LoRAParam)
        with pytest.raises(ValueError, match="Mismatch custom node data"):
            optimizer.update(model, grads)
    else:  # flax 0.10: the optimizer holds the model
        optimizer = upstream.Optimizer(model, optax.adam(1e-3), wrt=LoRAParam)
        with pytest.raises(ValueError, match="ismatch"):
            optimizer.update(grads)


@pytest.mark.parametrize("jit", [False, True])
def test_grads_of_more_variables_than_wrt_selects_update_those_it_selects(jit: bool) -> None:
    shimmed, reference = MLP.build(SPEC), MLP.build(SPEC)
    x, y = _batch(SPEC)
    results = []
    for model, select in ((shimmed, False), (reference, True)):
        optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=LoRAParam)

        def step(model: Any, optimizer: Any, select: bool = select) -> None:
            (_, _), grads = _grads(model, upstream.Param, x, y)
            optimizer.update(model, upstream.filter_state(grads, LoRAParam) if select else grads)

        for _ in range(2):
            (nnx.jit(step) if jit else step)(model, optimizer)
        results.append((flat_arrays(upstream.state(model)), _opt_arrays(optimizer)))
    assert_bitwise_equal(results[0][0], results[1][0])
    assert_bitwise_equal(results[0][1], results[1][1])
    lora = [k for k in results[0][0] if "lora" in k]
    assert lora and any(
        not np.array_equal(results[0][0][k], flat_arrays(upstream.state(MLP.build(SPEC)))[k])
        for k in lora
    )


def test_wrt_keyword_with_the_legacy_update_and_model() -> None:
    """flax 0.10 code builds ``Optimizer(model, tx, wrt=...)`` (valid there, as in every LoRA
    script) and then calls ``update(grads)`` and ``.model``: honoured on every flax, with the
    optimizer's state exactly the installed flax's native one."""
    model = MLP.build(SPEC)
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    reference = MLP.build(SPEC)
    native = upstream.Optimizer(reference, optax.sgd(0.1), wrt=upstream.Param)
    for _ in range(2):
        (_, _), grads = _grads(model, nnx.Param, *_batch(SPEC))
        (_, _), native_grads = _grads(reference, upstream.Param, *_batch(SPEC))
        if API == "0.10":
            native.update(native_grads)
        else:
            native.update(reference, native_grads)
        with nnx_compat.warnings_policy("ignore"):
            optimizer.update(grads)  # MARK-mixed
            assert optimizer.model is model
    assert_bitwise_equal(flat_arrays(upstream.state(model)), flat_arrays(upstream.state(reference)))
    assert_bitwise_equal(
        flat_arrays(upstream.state(optimizer)), flat_arrays(upstream.state(native))
    )
    hits = sorted((h.pattern, h.lineno, h.count) for h in nnx_compat.report())
    assert hits == [
        ("optimizer-model-attribute", _line("MARK-mixed") + 1, 2),
        ("optimizer-update-grads", _line("MARK-mixed"), 2),
    ]


@pytest.mark.skipif(API == "0.10", reason="flax 0.10's Optimizer holds its model in its state")
@pytest.mark.parametrize("beside", [True, False], ids=["model-beside", "through-optimizer"])
def test_wrt_keyword_legacy_update_inside_nnx_jit_names_the_fix(beside: bool) -> None:
    """Inside ``nnx.jit`` the optimizer is rebuilt from its native state, which holds no model:
    the legacy call cannot reach it, and says what to write instead (README: Optimizer)."""
    model = MLP.build(SPEC)
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    x, y = _batch(SPEC)

    @nnx.jit
    def step(model: Any, optimizer: Any) -> None:
        (_, _), grads = _grads(model, nnx.Param, x, y)
        optimizer.update(grads)

    @nnx.jit
    def through(optimizer: Any) -> None:
        _ = optimizer.model

    before = flat_arrays(upstream.state(model))
    with nnx_compat.warnings_policy("ignore"):
        if beside:
            with pytest.raises(TypeError, match=r"optimizer\.update\(model, grads\)"):
                step(model, optimizer)
        else:
            with pytest.raises(AttributeError, match=r"nnx\.ModelAndOptimizer"):
                through(optimizer)
    assert_bitwise_equal(flat_arrays(upstream.state(model)), before)  # nothing half-applied


def test_update_missing_grads() -> None:
    model = MLP.build(SPEC)
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    with pytest.raises(TypeError, match=r"got the model \(MLP\) where the grads belong"):
        optimizer.update(model, model)
    with nnx_compat.warnings_policy("ignore"):
        holding = nnx.Optimizer(model, optax.sgd(0.1))
    with pytest.raises(TypeError, match=r"got the model \(MLP\) where the grads belong"):
        holding.update(model)
    with pytest.raises(TypeError, match="missing grads"):
        optimizer.update()
    with pytest.raises(TypeError, match="surplus"):
        optimizer.update(model, model, model)


# --- compiled code ------------------------------------------------------------------------


def test_legacy_step_lowers_to_the_native_hlo() -> None:
    spec, (x, y) = SPEC, _batch(SPEC)

    def lowered(form: str) -> str:
        model = MLP.build(spec)
        optimizer = make_optimizer(form, model, optax.adamw(1e-3))
        graphdef, state = upstream.split((model, optimizer))

        def step(state: Any, x: jax.Array, y: jax.Array) -> Any:
            model, optimizer = upstream.merge(graphdef, state)
            (loss, _), grads = _grads(model, upstream.Param, x, y)
            apply_update(form, optimizer, model, grads)
            return loss, upstream.state((model, optimizer))

        with nnx_compat.warnings_policy("ignore"):
            return lowered_text(step, state, x, y)

    shim, native = lowered("legacy"), lowered("native")
    assert "stablehlo" in shim or "mhlo" in shim
    assert shim == native


# --- multi-device -------------------------------------------------------------------------


@pytest.mark.multidevice
@pytest.mark.parametrize("form", ["legacy", "new"])
def test_sharded_training_keeps_shardings_and_values(form: str) -> None:
    if len(jax.devices()) < 8:
        pytest.fail(
            "needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8 (tox sets it)"
        )
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
    spec = ModelSpec(din=8, widths=(16,), dout=4, batchnorm=False, dropout=0.0, lora_rank=0, seed=3)
    x, y = _batch(spec, n=8)
    x = jax.device_put(x, NamedSharding(mesh, P("data", None)))
    y = jax.device_put(y, NamedSharding(mesh, P("data", None)))

    def shard(model: Any) -> None:
        def place(path: tuple[Any, ...], value: Any) -> Any:
            if value.ndim == 2:
                return jax.device_put(value, NamedSharding(mesh, P("data", "model")))
            if value.ndim == 1:
                return jax.device_put(value, NamedSharding(mesh, P("model")))
            return jax.device_put(value, NamedSharding(mesh, P()))

        params = upstream.state(model, upstream.Param)
        upstream.update(model, jax.tree_util.tree_map_with_path(place, params))

    def program(form: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        model = MLP.build(spec)
        shard(model)
        optimizer = make_optimizer(form, model, optax.adam(1e-2))

        @nnx.jit
        def step(model: Any, optimizer: Any) -> None:
            (_, _), grads = _grads(model, upstream.Param, x, y)
            apply_update(form, optimizer, model, grads)

        with nnx_compat.warnings_policy("ignore"):
            for _ in range(3):
                step(model, optimizer)
        params = upstream.state(model, upstream.Param)
        leaves = jax.tree_util.tree_leaves_with_path(params)
        shardings = {jax.tree_util.keystr(p): leaf.sharding for p, leaf in leaves}
        return flat_arrays(params), shardings

    shim_values, shim_shardings = program(form)
    native_values, native_shardings = program("native")
    assert_bitwise_equal(shim_values, native_values)
    assert shim_shardings == native_shardings
    assert any(
        isinstance(s, NamedSharding) and s.spec == P("data", "model")
        for s in shim_shardings.values()
    )
