"""``nnx.split``/``state``/``merge``: the installed flax's semantics, ``copy=`` both ways, and
flax 0.10's captured-state merge (the functional API) bridged where flax 0.11+ fails on it."""

from __future__ import annotations

import contextlib
import inspect
import warnings
from typing import Any

import flax
import flax.nnx as upstream
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnx_compat
from nnx_compat import _versions, nnx
from nnx_compat._warnings import CheckpointDeprecationWarning
from tests import strategies
from tests.hlo import lowered_text
from tests.markers import line_of
from tests.strategies import (
    MLP,
    Count,
    ModelSpec,
    assert_bitwise_equal,
    flat_arrays,
    functional_program,
    model_dims,
    model_specs,
    stateful_linear,
)

NativeOptimizer = upstream.Optimizer  # before any install()

# flax 0.11.0: states share the model's Variables; 0.11.2: merge shares them unless copy=True
SHARES = _versions.feature("STATE_SHARES_VARIABLES")
MERGE_SHARES = _versions.feature("MERGE_SHARES_VARIABLES")
needs_sharing = pytest.mark.skipif(not SHARES, reason="flax 0.10's states are always copies")
needs_merge_sharing = pytest.mark.skipif(
    not MERGE_SHARES, reason="flax 0.10-0.11.1's merge always copies"
)
only_copies = pytest.mark.skipif(SHARES, reason="flax 0.11+ can share Variables")


# --- reproductions on the installed flax ----------------------------------------------------


@needs_merge_sharing
def test_captured_merge_under_grad_fails_natively(upstream_variable: None) -> None:
    with pytest.raises(flax.errors.TraceContextError, match="Cannot mutate Count"):
        functional_program(upstream, stateful_linear(), form="legacy")


@only_copies
def test_captured_merge_under_grad_runs_natively_on_flax_010(upstream_variable: None) -> None:
    if not _versions.feature("VARIABLE_SETITEM_FUNCTIONAL"):
        # flax 0.10.0-0.10.6: the model's own `count[...] = ...` assigns into the immutable
        # array (nnx_compat's Variable does what 0.10.7 does)
        with pytest.raises(TypeError, match="immutable"):
            functional_program(upstream, stateful_linear(), form="legacy")
        return
    native = functional_program(upstream, stateful_linear(), form="legacy")
    assert native["count"] == 3


def test_captured_merge_under_grad_runs_and_equals_flax_010() -> None:
    expected = functional_program(upstream, stateful_linear(), form="nnx-grad")
    warns = pytest.warns(CheckpointDeprecationWarning, match="state-copies")
    with warns if MERGE_SHARES else contextlib.nullcontext():
        legacy = functional_program(nnx, stateful_linear(), form="legacy")
    assert legacy["count"] == 3
    assert_bitwise_equal(legacy, expected)
    if not MERGE_SHARES:  # flax 0.10-0.11.1 itself
        assert_bitwise_equal(legacy, functional_program(upstream, stateful_linear(), form="legacy"))


def snapshot_program(
    ns: Any, model: Any, *, steps: int = 2, **kwargs: Any
) -> dict[str, np.ndarray]:
    """Takes ``nnx.state(model, **kwargs)``, trains the model in place, then restores it."""
    snapshot = ns.state(model, **kwargs)
    x = jnp.ones((4, model_dims(model)[0]))

    @ns.jit
    def step(model: Any) -> None:
        grads = ns.grad(lambda m: jnp.mean(m(x) ** 2))(model)
        ns.update(model, jax.tree.map(lambda p, g: p - 0.1 * g, ns.state(model, ns.Param), grads))

    for _ in range(steps):
        step(model)
    ns.update(model, snapshot)
    return flat_arrays(ns.state(model))


@needs_sharing
def test_snapshot_moves_with_the_model_natively() -> None:
    model = stateful_linear()
    before = flat_arrays(upstream.state(model))
    restored = snapshot_program(upstream, model)
    assert restored["count"] == 2  # nothing was restored
    assert not np.array_equal(restored["w"], before["w"])


@needs_sharing
def test_clone_is_the_native_snapshot() -> None:
    """The new form the warning and the README name for a snapshot on flax 0.11+."""
    model = stateful_linear()
    before = flat_arrays(upstream.state(model))
    snapshot = upstream.clone(upstream.state(model))
    model(jnp.ones((1, 3)))
    upstream.update(model, snapshot)
    assert_bitwise_equal(flat_arrays(upstream.state(model)), before)


def test_snapshot_follows_the_installed_flax() -> None:
    """The same call succeeds with a different meaning on 0.11+: the installed flax's stands."""
    model = stateful_linear()
    before = flat_arrays(upstream.state(model))
    restored = snapshot_program(nnx, model)
    native = snapshot_program(upstream, stateful_linear())
    assert_bitwise_equal(restored, native)
    if SHARES:
        assert restored["count"] == 2  # the snapshot moved with the model, as natively
    else:
        assert_bitwise_equal(restored, before)
    assert nnx_compat.report() == ()


def test_snapshot_with_copy_true_restores_on_every_flax() -> None:
    model = stateful_linear()
    before = flat_arrays(upstream.state(model))
    assert_bitwise_equal(snapshot_program(nnx, model, copy=True), before)


# --- property tests -------------------------------------------------------------------------

#: Each example compiles two or three training programs: a third of the profile's examples.
few_examples = settings(max_examples=max(3, settings().max_examples // 3))


@few_examples
@given(spec=model_specs(), steps=st.integers(1, 3), lr=st.sampled_from([0.01, 0.1]))
def test_functional_api_legacy_equals_native_nnx_grad_form(
    spec: ModelSpec, steps: int, lr: float
) -> None:
    """Counters, BatchNorm statistics and dropout RNG counts mutated inside ``jax.grad``."""
    native = functional_program(upstream, MLP.build(spec), form="nnx-grad", steps=steps, lr=lr)
    with nnx_compat.warnings_policy("ignore"):
        legacy = functional_program(nnx, MLP.build(spec), form="legacy", steps=steps, lr=lr)
    assert legacy["calls"] == steps
    assert_bitwise_equal(legacy, native)
    if MERGE_SHARES:  # the 0.11 form of the legacy program, natively
        native_copy = functional_program(upstream, MLP.build(spec), form="copy", steps=steps, lr=lr)
        assert_bitwise_equal(legacy, native_copy)


@few_examples
@given(spec=model_specs(), steps=st.integers(1, 2))
def test_snapshot_property(spec: ModelSpec, steps: int) -> None:
    model = MLP.build(spec)
    before = flat_arrays(upstream.state(model))
    assert_bitwise_equal(snapshot_program(nnx, model, steps=steps, copy=True), before)


# --- warnings -------------------------------------------------------------------------------


@needs_merge_sharing
def test_warning_lands_at_the_merge_line() -> None:
    with pytest.warns(CheckpointDeprecationWarning, match=r"count .*TraceContextError") as caught:
        functional_program(nnx, stateful_linear(), form="legacy")
    (hit,) = [w for w in caught if "state-copies" in str(w.message)]
    assert hit.filename == strategies.__file__
    assert hit.lineno == line_of(strategies.__file__, "CAPTURED-MERGE")
    (reported,) = nnx_compat.report()
    assert (reported.pattern, reported.lineno) == ("state-copies", hit.lineno)


@needs_merge_sharing
def test_captured_state_only_read_is_native_and_silent() -> None:
    """Merged inside a trace and only read: flax 0.11+ succeeds, so nothing warns, and the
    Variables of the current trace stay shared."""
    model = stateful_linear()
    graphdef, params, rest = upstream.split(model, upstream.Param, ...)
    x = jnp.ones((2, 3))

    def loss(ns: Any) -> Any:
        def f(params: Any) -> Any:
            m = ns.merge(graphdef, params, rest)
            assert m.w is params["w"]  # passed in: shared, as natively
            return jnp.mean(jnp.dot(x, m.w[...]) + m.b[...])

        return jax.jit(jax.grad(f))(params)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shimmed = loss(nnx)
    assert_bitwise_equal(flat_arrays(shimmed), flat_arrays(loss(upstream)))
    assert nnx_compat.report() == ()


def test_no_warning_where_copying_changes_nothing() -> None:
    # merged where it was passed in (jit's arguments), or copy=True is explicit
    functional_program(nnx, stateful_linear(), form="nnx-grad")
    functional_program(nnx, stateful_linear(), form="copy")
    model = stateful_linear()
    graphdef, state = nnx.split(model)
    nnx.merge(graphdef, state)
    jax.jit(lambda s: nnx.merge(graphdef, s)(jnp.ones((1, 3))))(state)
    assert nnx_compat.report() == ()


# --- copy= ----------------------------------------------------------------------------------


def _variables(tree: Any) -> list[Any]:
    leaf_types = _versions.variable_leaf_types()
    return jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, leaf_types))


def test_copy_true_copies_the_variables_not_the_arrays() -> None:
    model = stateful_linear()
    own = (model.w, model.b, model.count)
    graphdef, params, counts = nnx.split(model, nnx.Param, Count, copy=True)
    state = nnx.state(model, copy=True)
    copies = _variables(state) + _variables(params) + _variables(counts)
    assert len(copies) == 6
    assert not any(c is v for c in copies for v in own)
    merged = nnx.merge(graphdef, params, counts, copy=True)
    assert not any(getattr(merged, n) is c for n in ("w", "b", "count") for c in copies)
    # the arrays themselves are not copied
    assert jax.tree.leaves(state)[0] is jax.tree.leaves(upstream.state(model))[0]


def test_default_is_the_installed_flaxs() -> None:
    model = stateful_linear()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    native_graphdef, native_params, _ = upstream.split(model, upstream.Param, ...)
    assert graphdef == native_graphdef
    assert (params["w"] is model.w) == (native_params["w"] is model.w) == SHARES
    assert (nnx.state(model)["w"] is model.w) == SHARES
    merged = nnx.merge(graphdef, params, rest)
    assert (merged.w is params["w"]) == (upstream.merge(graphdef, params, rest).w is params["w"])


def test_copies_keep_paths_types_and_order() -> None:
    model = MLP.build(ModelSpec(3, (4,), 2, True, 0.1, 2, 0))
    native = upstream.state(model, upstream.Param, ...)
    copied = nnx.state(model, nnx.Param, ...)
    for a, b in zip(native, copied, strict=True):
        assert type(a) is type(b)
        assert list(flat_arrays(a)) == list(flat_arrays(b))
        assert [type(v) for v in _variables(a)] == [type(v) for v in _variables(b)]
        assert_bitwise_equal(flat_arrays(a), flat_arrays(b))


def test_shared_variables_stay_shared_after_merge() -> None:
    class Tied(upstream.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            self.a = upstream.Param(jnp.ones((2,)))
            self.b = self.a

    merged = nnx.merge(*nnx.split(Tied()))
    assert merged.a is merged.b


@needs_sharing
def test_copy_false_shares_the_models_variables() -> None:
    model = stateful_linear()
    assert nnx.state(model, copy=False)["w"] is model.w
    graphdef, params, rest = nnx.split(model, nnx.Param, ..., copy=False)
    assert params["w"] is model.w and rest["count"] is model.count
    if not MERGE_SHARES:  # flax 0.11.0-0.11.1's merge always copies
        with pytest.raises(TypeError, match=r"nnx\.merge\(\.\.\., copy=False\).*flax 0\.11\.2"):
            nnx.merge(graphdef, params, rest, copy=False)
        return
    assert nnx.merge(graphdef, params, rest, copy=False).w is model.w


@only_copies
@pytest.mark.parametrize("name", ["split", "state", "merge"])
def test_copy_false_on_flax_010_names_the_requirement(name: str) -> None:
    model = stateful_linear()
    graphdef, state = nnx.split(model)
    call = {
        "split": lambda: nnx.split(model, copy=False),
        "state": lambda: nnx.state(model, copy=False),
        "merge": lambda: nnx.merge(graphdef, state, copy=False),
    }[name]
    with pytest.raises(TypeError, match=rf"nnx\.{name}\(\.\.\., copy=False\).*flax 0\.11"):
        call()


@pytest.mark.parametrize("name", ["split", "state", "merge"])
def test_signature_is_the_installed_flaxs_plus_copy(name: str) -> None:
    native = inspect.signature(getattr(upstream, name)).parameters
    shim = inspect.signature(getattr(nnx, name)).parameters
    assert [n for n in shim if n != "copy"] == [n for n in native if n != "copy"]
    assert shim["copy"].kind is inspect.Parameter.KEYWORD_ONLY
    assert shim["copy"].default is None


# --- flax's own code, and compiled code -----------------------------------------------------


def test_flax_internals_keep_their_semantics_under_install() -> None:
    spec = ModelSpec(3, (4,), 2, True, 0.0, 0, 0)
    results = []
    for installed in (False, True):
        if installed:
            nnx_compat.install()
        try:
            assert (upstream.state is nnx.state) == installed
            model = MLP.build(spec)
            if SHARES:
                optimizer = NativeOptimizer(model, optax.adam(1e-2), wrt=upstream.Param)
            else:
                optimizer = NativeOptimizer(model, optax.adam(1e-2))

            @upstream.jit
            def step(model: Any, optimizer: Any) -> None:
                grads = upstream.grad(lambda m: jnp.mean(m(jnp.ones((2, 3))) ** 2))(model)
                if SHARES:
                    optimizer.update(model, grads)
                else:
                    optimizer.update(grads)

            for _ in range(2):
                step(model, optimizer)
            results.append(flat_arrays(upstream.state(model)))
            if hasattr(upstream, "WeightNorm"):  # flax 0.12: updates nnx.state()'s Variables
                layer = upstream.WeightNorm(
                    upstream.Linear(2, 3, rngs=upstream.Rngs(0)), rngs=upstream.Rngs(1)
                )
                results.append({"wn": np.asarray(layer(jnp.ones((1, 2))))})
        finally:
            nnx_compat.uninstall()
    assert_bitwise_equal(results[0], results[2 if len(results) == 4 else 1])
    if len(results) == 4:
        assert_bitwise_equal(results[1], results[3])


def test_forward_lowers_to_the_native_hlo() -> None:
    """The guide's jitted forward (split, merge inside jit, split again): copies add nothing."""
    model = stateful_linear()

    def forward(ns: Any) -> Any:
        graphdef, state = ns.split(model)

        def f(state: Any, x: jax.Array) -> tuple[jax.Array, Any]:
            m = ns.merge(graphdef, state)
            y = m(x)
            _, state = ns.split(m)
            return y, state

        return f, state

    native, state = forward(upstream)
    shim, _ = forward(nnx)
    x = jnp.ones((1, 3))
    assert lowered_text(shim, state, x) == lowered_text(native, state, x)


def test_legacy_training_step_lowers_to_the_native_hlo() -> None:
    """The captured merge through nnx_compat compiles as its native 0.11 form (0.10: itself)."""
    model = stateful_linear()
    graphdef, params, rest = upstream.split(model, upstream.Param, ...)
    x = jnp.ones((2, 3))

    def step(ns: Any, copy: bool | None) -> Any:
        kwargs = {} if copy is None else {"copy": copy}

        def f(params: Any, rest: Any) -> Any:
            def loss_fn(params: Any) -> Any:
                m = ns.merge(graphdef, params, rest, **kwargs)
                return jnp.mean(m(x) ** 2), ns.split(m, ns.Param, ...)[2]

            return jax.grad(loss_fn, has_aux=True)(params)

        return f

    native = step(upstream, True if MERGE_SHARES else None)
    with nnx_compat.warnings_policy("ignore"):
        shim_text = lowered_text(step(nnx, None), params, rest)
    assert shim_text == lowered_text(native, params, rest)


# --- GraphDef.apply -------------------------------------------------------------------------


def apply_program(captured: bool) -> dict[str, np.ndarray]:
    """The functional API's ``graphdef.apply`` under ``jax.grad`` in ``jax.jit``, the counter
    state captured (flax 0.10's form) or cloned inside the trace (a form native on every flax)."""
    model = stateful_linear()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x = jnp.ones((2, 3))

    @jax.jit
    def step(params: Any, rest: Any) -> Any:
        def loss(params: Any) -> Any:
            state = rest if captured else jax.tree.map(lambda x: x, rest)  # new Variables
            y, (_, updates) = graphdef.apply(params, state)(x)  # APPLY
            return jnp.mean(y**2), updates

        return jax.grad(loss, has_aux=True)(params)

    grads, updates = step(params, rest)
    return {**flat_arrays(grads), **{f"updates/{k}": v for k, v in flat_arrays(updates).items()}}


@pytest.fixture
def native_apply() -> Any:
    from nnx_compat import _state

    _state.restore()
    try:
        yield
    finally:
        _state.patch()


@needs_merge_sharing
def test_captured_apply_fails_natively(native_apply: None) -> None:
    with pytest.raises(flax.errors.TraceContextError, match="Cannot mutate Count"):
        apply_program(captured=True)


def test_captured_apply_runs_as_passed_in_and_warns_at_the_apply_line() -> None:
    expected = apply_program(captured=False)
    assert nnx_compat.report() == ()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        legacy = apply_program(captured=True)
    assert_bitwise_equal(legacy, expected)
    assert int(legacy["updates/count"]) == 1
    hits = [(h.pattern, h.lineno) for h in nnx_compat.report()]
    if MERGE_SHARES:
        assert hits == [("state-copies", line_of(__file__, "APPLY"))]
        assert [w.lineno for w in caught if "state-copies" in str(w.message)] == [hits[0][1]]
    else:  # flax 0.10-0.11.1 copy themselves: nothing to bridge
        assert hits == [] and not caught


def test_apply_is_patched_where_flax_shares_and_restored_exactly() -> None:
    from nnx_compat import _state

    patched = vars(upstream.GraphDef).get("apply")
    assert (patched is not _state._native_apply) == MERGE_SHARES
    _state.restore()
    try:
        assert vars(upstream.GraphDef).get("apply") is _state._native_apply
    finally:
        _state.patch()
    assert vars(upstream.GraphDef).get("apply") is patched
