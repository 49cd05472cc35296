"""flax 0.12's transforms and sharding helpers on every flax: ``vjp``, ``jvp``, ``make_jaxpr``,
``jit_partial``, ``transform_metadata``, ``with_rngs``, ``capture``, ``get_abstract_model``,
``as_abstract`` (``abstract_with_sharding``) and ``logical_axis_rules``.

The expected values are flax 0.12.8's, recorded natively: on flax 0.12.8 these tests run flax's
own functions (and the backports too, the ``backport`` parameter), elsewhere the backports.
Floats: jax 0.6/0.7's XLA may round the last place differently from jax 0.10's, so values
computed through a model compare within a few ulp (:func:`_close`).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import spmd as core_spmd
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnx_compat import _versions, nnx
from nnx_compat._backports import transforms as backport

upstream = _versions.import_nnx()
KEY = _versions.sharding_metadata_key()
#: flax 0.12.8 has the names: its own and the backports run the same tests there.
NATIVE = "vjp" in vars(upstream)
IMPLS = ["served", "backport"] if NATIVE else ["served"]


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Any:
    return nnx if request.param == "served" else backport


def _close(actual: Any, expected: Any) -> None:
    """Equal within a few float32 ulp (jax 0.6/0.7's XLA against jax 0.10's)."""
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=1e-6, atol=1e-7)


def _leaves(tree: Any) -> list[Any]:
    return [np.asarray(leaf).tolist() for leaf in jax.tree.leaves(tree)]


def _leaf_type(leaf: Any) -> type:
    """A state leaf's Variable type (flax 0.10's states hold ``VariableState``)."""
    return type(leaf) if isinstance(leaf, upstream.Variable) else leaf.type  # type: ignore[no-any-return]


def _key_data(key: Any) -> Any:
    return np.asarray(jax.random.key_data(key)).tolist()


class Counter(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.lin = nnx.Linear(2, 3, rngs=rngs)
        self.count = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def __call__(self, x: jax.Array) -> jax.Array:
        self.count[...] += 1
        return self.lin(x)  # type: ignore[no-any-return]


def _loss(m: Counter, x: jax.Array) -> jax.Array:
    return jnp.sum(jnp.sin(m(x)))


X = jnp.array([[1.0, 2.0]])
# flax 0.12.8: nnx.vjp(_loss, Counter(nnx.Rngs(0)), X, graph_updates=False)
LOSS = -1.4216856956481934
KERNEL_GRAD = [
    [0.5446780920028687, -0.4212197959423065, 0.9460850954055786],
    [1.0893561840057373, -0.842439591884613, 1.8921701908111572],
]
BIAS_GRAD = [0.5446780920028687, -0.4212197959423065, 0.9460850954055786]
X_GRAD = [[0.16283977031707764, 0.22609753906726837]]
LINEAR_SUM = -2.670509099960327  # jnp.sum(Counter(nnx.Rngs(0)).lin(X))


def _tangent(m: Any) -> Any:
    """A Module like ``m``: ones for its float Variables, float0 zeros for the others."""
    graphdef, state = nnx.split(m)

    def one(a: Any) -> Any:
        if jnp.issubdtype(a.dtype, jnp.floating):
            return jnp.ones_like(a)
        return np.zeros(a.shape, jax.dtypes.float0)

    return nnx.merge(graphdef, jax.tree.map(one, state))


# --------------------------------------------------------------------------- vjp


def test_vjp_gives_module_gradients_and_updates_variables(impl: Any) -> None:
    m = Counter(nnx.Rngs(0))
    out, vjp_fn = impl.vjp(_loss, m, X, graph_updates=False)
    _close(out, LOSS)
    assert int(m.count[...]) == 1  # the update inside propagates
    grad_m, grad_x = vjp_fn(jnp.ones(()))
    assert type(grad_m) is Counter and grad_m is not m
    _close(grad_m.lin.kernel[...], KERNEL_GRAD)
    _close(grad_m.lin.bias[...], BIAS_GRAD)
    _close(grad_x, X_GRAD)
    assert grad_m.count[...].dtype == jax.dtypes.float0
    # has_aux; the partial forms
    aux_fn = lambda m, x: (_loss(m, x), {"y": x * 2})  # noqa: E731
    out, vjp_fn, aux = impl.vjp(aux_fn, m, X, has_aux=True, graph_updates=False)
    assert _leaves(aux) == [[[2.0, 4.0]]] and int(m.count[...]) == 2
    out, vjp_fn = impl.vjp(_loss, graph_updates=False)(m, X)
    out, vjp_fn = impl.vjp(graph_updates=False)(_loss)(m, X)
    _close(out, LOSS)
    _close(vjp_fn(jnp.ones(()))[0].lin.kernel[...], KERNEL_GRAD)
    assert int(m.count[...]) == 4


def test_vjp_keeps_shared_variables_shared(impl: Any) -> None:
    class Tied(nnx.Module):
        def __init__(self) -> None:
            self.a = nnx.Param(jnp.array([1.0, 2.0]))
            self.b = self.a

    _, vjp_fn = impl.vjp(lambda t: jnp.sum(t.a[...] * t.b[...]), Tied(), graph_updates=False)
    (grad,) = vjp_fn(jnp.ones(()))
    assert grad.a is grad.b
    assert _leaves(grad.a) == [[2.0, 4.0]]  # d(a * a)/da = 2a


def test_vjp_errors_as_on_flax_012(impl: Any) -> None:
    m = Counter(nnx.Rngs(0))
    with pytest.raises(NotImplementedError, match=r"graph-mode with graph_updates is not"):
        impl.vjp(_loss, m, X)  # graph mode with graph updates: flax 0.12's default
    with pytest.raises(ValueError, match=r"nnx\.vjp does not support bound methods"):
        impl.vjp(m.__call__, X, graph_updates=False)
    with pytest.raises(ValueError, match=r"Duplicate[\s\S]*does not support Variable aliasing"):
        impl.vjp(lambda m, x: m, m, X, graph_updates=False)  # an input returned
    outside = nnx.Linear(2, 2, rngs=nnx.Rngs(1))
    with pytest.raises(ValueError, match=r"Cannot return captured Variable of type Param from"):
        impl.vjp(lambda x: (x.sum(), outside)[1], X, graph_updates=False)
    with pytest.raises(NotImplementedError, match=r"reduce_axes argument to vjp is deprecated"):
        impl.vjp(_loss, m, X, reduce_axes=("i",), graph_updates=False)
    if impl is backport:
        with pytest.raises(TypeError, match=r"graph=False\) needs flax 0\.12\.6"):
            impl.vjp(_loss, m, X, graph=False)


@given(hnp.arrays(np.float32, (1, 2), elements=st.floats(-4, 4, width=32)))
def test_vjp_and_jvp_are_jax_s_over_the_split_state(x: np.ndarray) -> None:
    m = Counter(nnx.Rngs(0))
    graphdef, state = nnx.split(m)

    def pure(state: Any, x: Any) -> Any:
        return _loss(nnx.merge(graphdef, state), x)

    expected_out, expected_fn = jax.vjp(pure, state, jnp.asarray(x))
    expected_state, expected_x = expected_fn(jnp.ones(()))
    out, vjp_fn = nnx.vjp(_loss, m, jnp.asarray(x), graph_updates=False)
    grad_m, grad_x = vjp_fn(jnp.ones(()))
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(grad_x, expected_x)
    floats = lambda s: [a for a in jax.tree.leaves(s) if a.dtype != jax.dtypes.float0]  # noqa: E731
    for got, want in zip(floats(nnx.state(grad_m)), floats(expected_state), strict=True):
        np.testing.assert_array_equal(got, want)
    tangent = _tangent(m)
    expected = jax.jvp(pure, (state, jnp.asarray(x)), (nnx.state(tangent), jnp.ones((1, 2))))
    primal_out, tangent_out = nnx.jvp(
        _loss, (m, jnp.asarray(x)), (tangent, jnp.ones((1, 2))), graph_updates=False
    )
    np.testing.assert_array_equal(primal_out, expected[0])
    np.testing.assert_array_equal(tangent_out, expected[1])


# --------------------------------------------------------------------------- jvp


def test_jvp_takes_module_tangents_and_updates_variables(impl: Any) -> None:
    m = Counter(nnx.Rngs(0))
    out, tangent_out = impl.jvp(_loss, (m, X), (_tangent(m), jnp.ones_like(X)), graph_updates=False)
    _close(out, LOSS)
    _close(tangent_out, 4.667110919952393)  # flax 0.12.8
    assert int(m.count[...]) == 1
    aux_fn = lambda x: (jnp.sin(x), x + 1)  # noqa: E731
    out, tangent_out, aux = impl.jvp(
        aux_fn, (X,), (jnp.ones_like(X),), has_aux=True, graph_updates=False
    )
    _close(tangent_out, np.cos(np.asarray(X)))
    assert _leaves(aux) == [[[2.0, 3.0]]]
    out, tangent_out = impl.jvp(jnp.sin, graph_updates=False)((X,), (jnp.ones_like(X),))
    _close(out, np.sin(np.asarray(X)))
    with pytest.raises(NotImplementedError, match=r"not supported for nnx\.jvp"):
        impl.jvp(jnp.sin, (X,), (X,))
    with pytest.raises(ValueError, match=r"nnx\.jvp does not support bound methods"):
        impl.jvp(m.__call__, (X,), (X,), graph_updates=False)
    with pytest.raises(ValueError, match=r"Cannot return captured Variable of type Param from"):
        impl.jvp(lambda x: m.lin, (X,), (X,), graph_updates=False)


def test_vjp_and_jvp_under_jit(impl: Any) -> None:
    @jax.jit
    def step(x: jax.Array) -> Any:
        m = Counter(nnx.Rngs(0))
        out, vjp_fn = impl.vjp(_loss, m, x, graph_updates=False)
        grad_m, grad_x = vjp_fn(jnp.ones(()))
        _, tangent_out = impl.jvp(
            _loss, (m, x), (_tangent(m), jnp.ones_like(x)), graph_updates=False
        )
        return out, grad_m.lin.kernel[...], grad_x, tangent_out, m.count[...]

    out, kernel, grad_x, tangent_out, count = step(X)
    _close(out, LOSS)
    _close(kernel, KERNEL_GRAD)
    _close(grad_x, X_GRAD)
    _close(tangent_out, 4.667110919952393)
    assert int(count) == 2


# --------------------------------------------------------------------------- make_jaxpr


def test_make_jaxpr_takes_the_variables_as_inputs(impl: Any) -> None:
    m = Counter(nnx.Rngs(0))
    jaxpr = impl.make_jaxpr(lambda m, x: m.lin(x), graph_updates=False)(m, X)
    # flax 0.12.8: the state's Variables in key order, then x
    assert [str(v.aval) for v in jaxpr.jaxpr.invars] == [
        "int32[]",
        "float32[3]",
        "float32[2,3]",
        "float32[1,2]",
    ]
    assert [e.primitive.name for e in jaxpr.jaxpr.eqns] == ["dot_general", "reshape", "add"]
    assert [str(v.aval) for v in jaxpr.jaxpr.outvars] == ["float32[1,3]"]
    assert int(m.count[...]) == 0  # tracing changes nothing
    # a static argument, keyword arguments; the decorator form
    jaxpr = impl.make_jaxpr(static_argnums=1, graph_updates=False)(lambda x, n: x * n)(X, 3)
    assert [e.primitive.name for e in jaxpr.jaxpr.eqns] == ["mul"]
    jaxpr = impl.make_jaxpr(lambda m, x: m(x), graph_updates=False)(m, x=X)
    assert [e.primitive.name for e in jaxpr.jaxpr.eqns][-3:] == ["dot_general", "reshape", "add"]
    assert len(jaxpr.jaxpr.outvars) == 1


def test_make_jaxpr_errors_as_on_flax_012(impl: Any) -> None:
    m = Counter(nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"nnx\.make_jaxpr does not support graph_updates=True"):
        impl.make_jaxpr(_loss)
    with pytest.raises(ValueError, match=r"nnx\.make_jaxpr does not support bound methods"):
        impl.make_jaxpr(m.__call__, graph_updates=False)
    with pytest.raises(ValueError, match=r"Duplicate[\s\S]*does not support Variable aliasing"):
        impl.make_jaxpr(lambda m: m.lin, graph_updates=False)(m)
    outside = nnx.Linear(2, 2, rngs=nnx.Rngs(1))  # a captured Variable is fine here
    assert len(impl.make_jaxpr(lambda x: outside, graph_updates=False)(X).jaxpr.outvars) == 2


# --------------------------------------------------------------------------- jit_partial


def test_jit_partial_binds_modules_and_updates_them(impl: Any) -> None:
    m = Counter(nnx.Rngs(0))
    traces: list[int] = []

    def step(m: Counter, x: jax.Array, scale: float) -> jax.Array:
        traces.append(1)
        return jnp.sum(m(x)) * scale

    f = impl.jit_partial(step, m, static_argnums=2, graph_updates=False)  # arg 0: the bound ones
    first = f(X, 2.0)
    _close(first, -5.341018199920654)  # flax 0.12.8
    assert f(X, 2.0) == first and len(traces) == 1 and int(m.count[...]) == 2
    m.lin.kernel[...] = jnp.zeros((2, 3))  # a new value: read at the next call, no recompile
    assert float(f(X, 2.0)) == 0.0 and len(traces) == 1 and int(m.count[...]) == 3
    assert f.eval_shape(X, 2.0).shape == ()
    compiled = f.lower(X, 2.0).compile()
    assert float(compiled(X)) == 0.0 and int(m.count[...]) == 4
    assert float(f.trace(X, 2.0).lower().compile()(X)) == 0.0 and int(m.count[...]) == 5
    with pytest.raises(ValueError, match=r"Found Variable in non-partial arguments"):
        f(m, 2.0)


def test_jit_partial_donation_shardings_and_errors(impl: Any) -> None:
    m = Counter(nnx.Rngs(0))
    f = impl.jit_partial(lambda m, x: jnp.sum(m.lin(x)), m, donate_argnums=0, graph_updates=False)
    _close(f(X), LINEAR_SUM)
    assert _leaves(m.lin.bias) == [[0.0, 0.0, 0.0]]  # donated: written back
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("d",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    g = impl.jit_partial(
        lambda m, x: m.lin(x),
        m,
        in_shardings=(replicated, replicated),
        out_shardings=replicated,
        graph_updates=False,
    )
    y = g(X)
    assert y.sharding == replicated
    _close(jnp.sum(y), LINEAR_SUM)

    def relabel(m: Counter, x: jax.Array) -> jax.Array:
        kernel = m.lin.kernel  # its metadata may not change inside jit
        if hasattr(kernel, "set_metadata"):
            kernel.set_metadata("note", 1)
        else:  # before flax 0.12
            kernel.note = 1
        return x

    with pytest.raises(ValueError, match=r"Variable metadata changed inside jit"):
        impl.jit_partial(relabel, Counter(nnx.Rngs(0)), graph_updates=False)(X)
    with pytest.raises(ValueError, match=r"Duplicate[\s\S]*does not support Variable aliasing"):
        impl.jit_partial(lambda m, x: m.lin, Counter(nnx.Rngs(0)), graph_updates=False)(X)
    with pytest.raises(ValueError, match=r"Cannot return captured Variable of type Param from"):
        impl.jit_partial(lambda c, x: m.lin, Counter(nnx.Rngs(1)), graph_updates=False)(X)
    with pytest.raises(ValueError, match=r"`graph_updates` not supported by `jit_partial`"):
        impl.jit_partial(_loss, m)
    with pytest.raises(ValueError, match=r"Graph nodes are not allowed as prefixes"):
        impl.jit_partial(_loss, m, in_shardings=(m, None), graph_updates=False)


# --------------------------------------------------------------------------- transform_metadata


class Annotated(nnx.Module):
    def __init__(self) -> None:
        self.w = nnx.Param(jnp.ones((3, 2)), out_sharding=("x", "a"), eager_sharding=False)
        self.c = nnx.BatchStat(jnp.zeros((3,)), out_sharding=("x",), eager_sharding=False)


def _names(variable: Any) -> Any:
    return variable.get_metadata().get(KEY)


def test_transform_metadata_removes_and_adds_the_axis(impl: Any) -> None:
    m = Annotated()
    seen: dict[str, Any] = {}

    @impl.transform_metadata(in_axes=0, out_axes=0, partition="x")
    def f(m: Annotated, y: jax.Array) -> Any:
        seen.update(w=_names(m.w), c=_names(m.c))
        m.c[...] = m.c[...] + y[0]
        return nnx.Param(jnp.zeros((3,)), out_sharding=("a",), eager_sharding=False)

    out = f(m, jnp.ones(2))
    assert seen == {"w": ("a",), "c": ()}  # inside: the axis is gone
    assert _leaves(m.c) == [[1.0, 1.0, 1.0]]  # the update propagates
    assert _names(m.w) == ("x", "a") and _names(out) == ("x", "a") and type(out) is nnx.Param
    # as flax 0.12.8: an emptied annotation gains no axis back, and the updated Variable keeps it
    assert _names(m.c) == ()
    with pytest.raises(IndexError):
        f(m, jnp.ones(2))  # nothing left to remove
    fresh = Annotated()
    f(fresh, y=jnp.ones(2))  # a keyword argument is bound to its position
    assert _leaves(fresh.c) == [[1.0, 1.0, 1.0]]
    g = impl.transform_metadata(lambda m: m.w[...].sum(), in_axes=None, partition="x")
    assert float(g(fresh)) == 6.0 and _names(fresh.w) == ("x", "a")


def test_transform_metadata_errors_as_on_flax_012(impl: Any) -> None:
    m = Annotated()
    with pytest.raises(ValueError, match=r"Graph nodes are not allowed as prefixes"):
        impl.transform_metadata(lambda m: 1, in_axes=(m,), partition="x")
    with pytest.raises(ValueError, match=r"Variables prefixes are not supported"):
        impl.transform_metadata(lambda m: 1, in_axes=nnx.Param(1.0), partition="x")
    kwargs_only = impl.transform_metadata(lambda **kw: 1, partition="x")
    with pytest.raises(TypeError, match=r"keyword arguments could not be resolved to positions"):
        kwargs_only(m=m)
    wrong = impl.transform_metadata(lambda w: 1, in_axes=1, partition="x")
    with pytest.raises(ValueError, match=r"Expected to remove 'x' at index 1"):
        wrong(m.w)  # its annotation is ("x", "a")


# --------------------------------------------------------------------------- with_rngs


def test_with_rngs_splits_forks_and_broadcasts(impl: Any) -> None:
    rngs = nnx.Rngs(params=0, dropout=1)
    copy = impl.with_rngs((rngs, [rngs]), split={"params": 2}, fork="dropout", graph_updates=False)
    first, (again,) = copy
    assert first is again and first is not rngs  # a copy, its sharing kept
    # flax 0.12.8's keys: each drawn from the original stream, whose count advanced
    assert _key_data(first.params.key[...]) == [[4165894930, 804218099], [1353695780, 2116000888]]
    assert _key_data(first.dropout.key[...]) == [507451445, 1853169794]
    assert int(rngs.params.count[...]) == 1 and int(rngs.dropout.count[...]) == 1
    assert first.dropout is not rngs.dropout and first.params.count is not rngs.params.count

    rngs = nnx.Rngs(params=0, dropout=1)
    copy = impl.with_rngs(rngs, broadcast={"dropout": 2}, graph_updates=False)
    assert _key_data(copy.dropout.key[...]) == [[507451445, 1853169794]] * 2
    assert copy.params.key.shape == () and copy.params.count is rngs.params.count  # kept, shared
    copy = impl.with_rngs(rngs, split=3, only="params", graph_updates=False)
    assert (copy.params.key.shape, copy.dropout.key.shape) == ((3,), ())

    @impl.with_rngs(split=4, graph_updates=False)
    def shapes(r: nnx.Rngs) -> Any:
        return r.params.key.shape

    assert shapes(nnx.Rngs(params=5)) == (4,)


def test_with_rngs_errors_as_on_flax_012(impl: Any) -> None:
    rngs = nnx.Rngs(params=0)
    with pytest.raises(ValueError, match=r"RngStream at path \('params',\) matches multiple"):
        impl.with_rngs(rngs, split={"params": 2}, broadcast={"params": 3}, graph_updates=False)
    with pytest.raises(NotImplementedError, match=r"graph_updates=True is not supported"):
        impl.with_rngs(rngs, split=2)


# --------------------------------------------------------------------------- capture


class Block(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.lin = nnx.Linear(2, 2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.lin(x)
        self.sow(nnx.Intermediate, "h", y)
        return self.perturb("p", y)  # type: ignore[no-any-return]


class Model(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.a = Block(rngs)
        self.b = Block(rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.a(x)
        self.sow(nnx.Intermediate, "mid", x)
        return self.b(x)


# flax 0.12.8: nnx.capture(Model(nnx.Rngs(0)), nnx.Intermediate)(jnp.ones((1, 2)))
OUT = [[0.6701327562332153, 1.1038974523544312]]
H_A = [[[0.18789619207382202, -1.5614609718322754]]]
SOWN = [
    (("a", "h"), "Intermediate", H_A),
    (("b", "h"), "Intermediate", [OUT]),
    (("mid",), "Intermediate", H_A),
]


def _flat(state: Any) -> list[Any]:
    return sorted(
        (tuple(path), _leaf_type(leaf).__name__, _leaves(leaf))
        for path, leaf in nnx.to_flat_state(state)
    )


def _attributes(model: Model) -> list[list[str]]:
    return [sorted(k for k in vars(b) if not k.startswith("_")) for b in (model, model.a, model.b)]


# on flax 0.12.8, the backport runs flax's sow and perturb outside its capture, which warn there
pytestmark_capture = pytest.mark.filterwarnings(
    r"ignore:[\s\S]*Module\.(sow|perturb)\(\)' outside of 'nnx\.capture\(\)':DeprecationWarning"
)


@pytestmark_capture
def test_capture_returns_what_sow_stored_and_leaves_the_module(impl: Any) -> None:
    m = Model(nnx.Rngs(0))
    x = jnp.ones((1, 2))
    attributes = _attributes(m)
    out, state = impl.capture(m, nnx.Intermediate)(x)
    _close(out, OUT)
    for got, want in zip(_flat(state), SOWN, strict=True):
        assert got[:2] == want[:2]
        _close(got[2], want[2])
    assert _attributes(m) == attributes  # nothing stays on the Modules
    assert impl.capture(m)(x).shape == (1, 2)  # no types: the result alone
    # Perturbation is an Intermediate: the first filter takes it (flax 0.12.8's split_state)
    out, intermediates, perturbations = impl.capture(m, nnx.Intermediate, nnx.Perturbation)(x)
    assert [p for p, *_ in _flat(intermediates)] == [
        ("a", "h"),
        ("a", "p"),
        ("b", "h"),
        ("b", "p"),
        ("mid",),
    ]
    assert _flat(perturbations) == []
    _, zeros = impl.capture(lambda m, x: m(x), nnx.Perturbation)(m, x)  # a function of it
    assert _flat(zeros) == [
        (("a", "p"), "Perturbation", [[[0.0, 0.0]]]),
        (("b", "p"), "Perturbation", [[[0.0, 0.0]]]),
    ]
    _, by_decorator = impl.capture(nnx.Intermediate)(m.__call__)(x)  # the decorator, a method
    assert [p for p, *_ in _flat(by_decorator)] == [("a", "h"), ("b", "h"), ("mid",)]
    assert _attributes(m) == attributes


@pytestmark_capture
def test_capture_stores_in_captures_while_the_call_runs(impl: Any) -> None:
    """flax 0.12.8's docs_nnx extracting_intermediates: ``sow`` under a method's name, and
    ``__captures__`` (one Variable per captured type) visible to the call."""
    seen: list[tuple[str, ...]] = []
    returned: list[bool] = []

    class Foo(nnx.Module):
        def __init__(self) -> None:
            self.w = nnx.Param(jnp.full(2, 2.0))

        def features(self, x: jax.Array) -> jax.Array:
            y = x * self.w[...]
            self.sow(nnx.Intermediate, "features", y)  # the name of a method
            returned.append(self.sow(nnx.Perturbation, "p", y))  # a type not captured
            return y

        def __call__(self, x: jax.Array) -> jax.Array:
            seen.append(tuple(type(v).__name__ for v in self.__captures__))
            return self.features(x) + self.features(x + 1)

    foo = Foo()
    out, state = impl.capture(foo, nnx.Intermediate)(jnp.ones(2))
    _close(out, [6.0, 6.0])
    assert seen == [("Intermediate",)] and returned == [False, False]
    assert _flat(state) == [(("features",), "Intermediate", [[2.0, 2.0], [4.0, 4.0]])]
    assert "__captures__" not in vars(foo) and callable(foo.features)


@pytestmark_capture
def test_capture_init_gives_perturbations_their_gradient(impl: Any) -> None:
    graphdef, state = nnx.split(Model(nnx.Rngs(0)))
    x = jnp.ones((1, 2))

    def loss(pa: jax.Array, pb: jax.Array) -> jax.Array:
        model = nnx.merge(graphdef, state)
        init = nnx.from_flat_state(
            {("a", "p"): nnx.Perturbation(pa), ("b", "p"): nnx.Perturbation(pb)}
        )
        out, _ = impl.capture(model, nnx.Intermediate, init=init)(x)
        return jnp.sum(out)

    grads = jax.grad(loss, argnums=(0, 1))(jnp.zeros((1, 2)), jnp.zeros((1, 2)))
    _close(grads[0], [[1.962630033493042, -0.8999645709991455]])  # flax 0.12.8
    _close(grads[1], [[1.0, 1.0]])
    _close(loss(jnp.ones((1, 2)), jnp.full((1, 2), 2.0)), 6.836695671081543)


@pytestmark_capture
def test_capture_method_outputs(impl: Any) -> None:
    class Two(nnx.Module):
        def __init__(self) -> None:
            self.w = nnx.Param(jnp.full(2, 3.0))

        def feature(self, x: jax.Array) -> jax.Array:
            return x * self.w[...]

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.feature(x) + 1

    two = Two()
    _, state = impl.capture(two, nnx.Intermediate, method_outputs=nnx.Intermediate)(jnp.ones(2))
    assert _flat(state) == [
        (("__call__",), "Intermediate", [[4.0, 4.0]]),
        (("feature",), "Intermediate", [[3.0, 3.0]]),
    ]
    assert sorted(k for k in vars(two) if not k.startswith("_")) == ["w"]
    assert Two.feature.__name__ == "feature" and not hasattr(Two.feature, "__wrapped__")
    # a type no state is captured for: nothing
    _, perturbations = impl.capture(two, nnx.Perturbation, method_outputs=nnx.Intermediate)(
        jnp.ones(2)
    )
    assert _flat(perturbations) == []


# --------------------------------------------------------------------------- sharding helpers


def _mesh() -> jax.sharding.Mesh:
    return jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("a", "b"))


def _use_mesh(mesh: jax.sharding.Mesh) -> Any:
    return jax.set_mesh(mesh) if hasattr(jax, "set_mesh") else jax.sharding.use_mesh(mesh)


def _annotated_linear() -> Any:
    init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("a", "b"))
    return nnx.Linear(4, 8, kernel_init=init, rngs=nnx.Rngs(0))


def test_get_abstract_model_gives_sharded_shapes() -> None:
    mesh = _mesh()
    graphdef, state = nnx.get_abstract_model(_annotated_linear, mesh)
    found = {}
    for path, leaf in nnx.to_flat_state(state):
        (value,) = jax.tree.leaves(leaf)
        assert isinstance(value, jax.ShapeDtypeStruct) and _leaf_type(leaf) is nnx.Param
        assert value.sharding.mesh.axis_names == ("a", "b")
        found[path] = (value.shape, str(value.dtype), tuple(value.sharding.spec))
    # flax 0.12.8's
    assert found == {("bias",): ((8,), "float32", ()), ("kernel",): ((4, 8), "float32", ("a", "b"))}
    assert type(nnx.merge(graphdef, state)) is nnx.Linear
    if "get_abstract_model" not in vars(upstream):
        with pytest.raises(TypeError, match=r"needs flax 0\.12\.6"):
            nnx.get_abstract_model(_annotated_linear, mesh, graph=False)


@pytest.mark.parametrize("name", ["as_abstract", "abstract_with_sharding"])
def test_as_abstract_adds_the_annotation_s_sharding(impl: Any, name: str) -> None:
    mesh = _mesh()
    metadata = {"out_sharding": ("a", None), "eager_sharding": False}
    abstract = nnx.eval_shape(lambda: nnx.Linear(4, 8, kernel_metadata=metadata, rngs=nnx.Rngs(0)))
    (kernel,) = jax.tree.leaves(abstract.kernel)
    assert kernel.sharding is None
    deprecated = name == "abstract_with_sharding"
    with warnings.catch_warnings(record=True) as caught, _use_mesh(mesh):
        warnings.simplefilter("always")
        new = getattr(impl, name)(abstract)
    messages = [str(w.message) for w in caught if w.category is DeprecationWarning]
    assert messages == (
        ["This function is deprecated. Use as_abstract instead."] if deprecated else []
    )
    assert new is not abstract and new.kernel is not abstract.kernel
    (kernel,) = jax.tree.leaves(new.kernel)
    assert isinstance(kernel, jax.ShapeDtypeStruct) and kernel.shape == (4, 8)
    assert tuple(kernel.sharding.spec) == ("a", None)
    assert type(kernel.sharding.mesh).__name__ == "AbstractMesh"
    assert kernel.sharding.mesh.axis_names == ("a", "b")
    (bias,) = jax.tree.leaves(new.bias)
    assert bias.sharding is None  # no annotation: as it was
    # a mesh in the Variable's metadata is the one used
    on_mesh = nnx.eval_shape(
        lambda: nnx.Param(
            jnp.ones((2, 2)), out_sharding=("b", "a"), mesh=mesh, eager_sharding=False
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        (value,) = jax.tree.leaves(getattr(impl, name)({"w": on_mesh})["w"])
    assert value.sharding.mesh == mesh and tuple(value.sharding.spec) == ("b", "a")


def test_logical_axis_rules_is_flax_s_and_applies_to_partition_specs() -> None:
    assert nnx.logical_axis_rules is core_spmd.logical_axis_rules
    layer = Annotated()  # annotated ("x", "a") and ("x",)
    with nnx.logical_axis_rules((("x", "data"), ("a", None))):
        assert core_spmd.get_logical_axis_rules() == (("x", "data"), ("a", None))
        spec = nnx.get_partition_spec(nnx.state(layer))
    assert core_spmd.get_logical_axis_rules() == ()
    assert tuple(jax.tree.leaves(spec["w"])[0]) == ("data", None)
    assert tuple(jax.tree.leaves(spec["c"])[0]) == ("data",)


def test_the_graph_mode_only_error_names_the_release() -> None:
    if not NATIVE:  # the backports are what the namespace serves
        assert nnx.vjp is backport.vjp and nnx.with_rngs is backport.with_rngs
    m = Counter(nnx.Rngs(0))
    calls = [
        functools.partial(backport.vjp, _loss, m, X, graph=False),
        functools.partial(backport.jvp, _loss, (m, X), (m, X), graph=False),
        functools.partial(backport.make_jaxpr, _loss, graph=False, graph_updates=False),
        functools.partial(backport.jit_partial, _loss, m, graph=False),
        functools.partial(backport.with_rngs, nnx.Rngs(0), split=2, graph=False),
        functools.partial(backport.transform_metadata, _loss, partition="x", graph=False),
        functools.partial(backport.as_abstract, m, graph=False),
        functools.partial(backport.get_abstract_model, _annotated_linear, _mesh(), graph=False),
    ]
    for call in calls:
        with pytest.raises(TypeError, match=r"graph=False\) needs flax 0\.12\.6 or newer"):
            call()
