"""flax 0.12.8's ``PReLU``, ``InstanceNorm``, ``WeightNorm``, ``SpectralNorm``, ``identity`` and
``EMA`` through ``nnx_compat.nnx`` on every flax: flax's own on 0.12.8, the backports of
``nnx_compat._backports.layers`` on flax 0.10.7 and 0.11.2.

The expected values are flax 0.12.8's: ``tests/fixtures/backports/layers.npz`` and
``layers.json``, written by ``python -m tests.backports.test_layers`` with flax 0.12.8 installed.
There the same tests run flax's own layers, which checks the recording. State paths, Variable
types, dtypes, shapes, integers and RNG key data are compared exactly; floats within
:data:`MAX_ULPS` ulps of the array's largest magnitude, as XLA of jax 0.6.2 and 0.7.2 rounds
some last ulps of a matmul or a reduction unlike jax 0.10.2 (and XLA compiles for the CPU it
runs on). Which keys a layer draws is checked bit for bit in each environment: each random
parameter equals its initializer applied to ``fold_in(key, count)`` of the stream it must use.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnx_compat import _added, _versions, nnx
from nnx_compat._backports import layers as _layers
from nnx_compat._bits import same_bits

upstream = _versions.import_nnx()
FIXTURES: Final = Path(__file__).resolve().parents[1] / "fixtures" / "backports"
#: How far a computed float may be from flax 0.12.8's, in ulps of the array's largest magnitude.
#: Measured here: at most 4 (jax 0.6.2 and 0.7.2 against 0.10.2; 0 on 0.12.8 itself).
MAX_ULPS: Final = 16
NAMES: Final = ("EMA", "InstanceNorm", "PReLU", "SpectralNorm", "WeightNorm", "identity")

Entry = tuple[str, np.ndarray, bool]  # Variable type name, value, compared bit for bit


def _x(*shape: int) -> jax.Array:
    """Inputs every machine computes alike: small multiples of 1/4."""
    n = int(np.prod(shape))
    return jnp.asarray((((np.arange(n) * 37) % 23 - 11) / 4.0).reshape(shape), jnp.float32)


def _leaf(leaf: Any) -> tuple[str, np.ndarray]:
    if isinstance(leaf, upstream.Variable):
        return type(leaf).__name__, np.asarray(leaf[...])
    if hasattr(leaf, "type"):  # flax 0.10's VariableState
        return leaf.type.__name__, np.asarray(leaf.value)
    return type(leaf).__name__, np.asarray(leaf)


def _state(node: Any, exact: bool, prefix: str = "state") -> dict[str, Entry]:
    entries = {}
    for path, leaf in nnx.to_flat_state(nnx.state(node)):
        name, value = _leaf(leaf)
        entries[f"{prefix} {path!r}"] = (name, value, exact)
    return entries


def _out(value: Any) -> Entry:
    return ("output", np.asarray(value), False)


def _call(layer: Any, x: Any, **kwargs: Any) -> Any:
    return nnx.jit(lambda layer, x: layer(x, **kwargs))(layer, x)


def _next_key(rngs: Any, stream: str = "params") -> Entry:
    """The stream's next key: it shows how many keys the layer drew."""
    return ("key", np.asarray(jax.random.key_data(getattr(rngs, stream)())), True)


# --------------------------------------------------------------------------- the cases


def _prelu(nn: Any) -> dict[str, Entry]:
    layer = nn.PReLU(0.2)
    x = _x(4, 5)
    return {
        **_state(layer, exact=True),
        "y": ("output", np.asarray(_call(layer, x)), True),  # one IEEE product: exact anywhere
        "y int": ("output", np.asarray(layer(jnp.arange(-3, 3))), True),
        "y dtype": _out(nn.PReLU(dtype=jnp.float16, param_dtype=jnp.bfloat16)(x)),
    }


def _instance_norm(nn: Any) -> dict[str, Entry]:
    rngs = nnx.Rngs(params=3)
    init = nnx.initializers
    layer = nn.InstanceNorm(5, scale_init=init.normal(1.0), bias_init=init.uniform(), rngs=rngs)
    masked = nn.InstanceNorm(
        4, feature_axes=1, use_fast_variance=False, use_bias=False, epsilon=1e-3, rngs=rngs
    )
    x, x2 = _x(2, 3, 4, 5), _x(2, 4, 6) * 3.0 + 1.0
    mask = (jnp.arange(6) % 4 != 0)[None, None, :]
    return {
        **_state(layer, exact=True),
        **_state(masked, exact=True, prefix="masked"),
        "next key": _next_key(rngs),
        "y": _out(_call(layer, x)),
        "y masked": _out(_call(masked, x2, mask=mask)),
        "y bf16": _out(nn.InstanceNorm(5, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))(x)),
    }


def _weight_norm(nn: Any) -> dict[str, Entry]:
    rngs = nnx.Rngs(0)
    layer = nn.WeightNorm(nnx.Linear(3, 4, rngs=rngs), rngs=rngs)
    before = _state(layer, exact=True, prefix="init")
    x = _x(5, 3)
    y = _call(layer, x)
    y2 = _call(layer, x)
    conv = nn.WeightNorm(
        nnx.Conv(2, 3, (3, 3), rngs=rngs),
        feature_axes=None,
        scale_init=nnx.initializers.constant(2.0),
        rngs=rngs,
    )
    bare = nn.WeightNorm(nnx.Linear(3, 2, rngs=rngs), use_scale=False, rngs=rngs)
    return {
        **before,
        **_state(layer, exact=False),
        **_state(conv, exact=True, prefix="conv init"),
        "next key": _next_key(rngs),
        "y": _out(y),
        "y2": _out(y2),
        "y conv": _out(_call(conv, _x(2, 5, 5, 2))),
        **_state(conv, exact=False, prefix="conv"),
        "y bare": _out(_call(bare, x)),
        **_state(bare, exact=False, prefix="bare"),
    }


def _spectral_norm(nn: Any) -> dict[str, Entry]:
    rngs = nnx.Rngs(0, params=1)
    layer = nn.SpectralNorm(nnx.Linear(3, 4, rngs=rngs), rngs=rngs)
    before = _state(layer, exact=True, prefix="init")
    x = _x(5, 3)
    y = _call(layer, x)
    y2 = _call(layer, x)
    conv = nn.SpectralNorm(
        nnx.Conv(2, 3, (3, 3), rngs=rngs), n_steps=3, update_stats=False, rngs=rngs
    )
    conv_init = _state(conv, exact=True, prefix="conv init")
    y_conv = _call(conv, _x(2, 5, 5, 2))
    after_two = _state(layer, exact=False)
    y_frozen = _call(layer, x, update_stats=False)  # the kernel changes, u and sigma do not
    frozen = _state(layer, exact=False, prefix="frozen")
    layer.eval()  # use_running_average=True: no update_stats
    y_eval = _call(layer, x)
    return {
        **before,
        **conv_init,
        "next key": _next_key(rngs),
        "y": _out(y),
        "y2": _out(y2),
        **after_two,
        "y conv": _out(y_conv),
        **_state(conv, exact=False, prefix="conv"),
        "y frozen": _out(y_frozen),
        **frozen,
        "y eval": _out(y_eval),
        **_state(layer, exact=False, prefix="eval"),
    }


def _ema(nn: Any) -> dict[str, Entry]:
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    ema = nn.EMA(model, decay=0.9)
    ema_model = ema.apply_to(model)

    @nnx.jit
    def step(model: Any, ema: Any) -> None:
        model.kernel[...] = model.kernel[...] * 2.0 + 1.0
        model.bias[...] = model.bias[...] + 0.5
        ema.update(model)

    step(model, ema)
    step(model, ema)
    return {
        **_state(ema, exact=False),
        "y": _out(_call(ema_model, _x(4, 2))),
    }


CASES: Final[dict[str, Callable[[Any], dict[str, Entry]]]] = {
    "prelu": _prelu,
    "instance_norm": _instance_norm,
    "weight_norm": _weight_norm,
    "spectral_norm": _spectral_norm,
    "ema": _ema,
}


# --------------------------------------------------------------------------- checkpoints


def _checkpoint_layers(seed: int) -> dict[str, tuple[Any, Any, dict[str, Any]]]:
    """Each layer (built from ``seed``), an input and the call's keyword arguments."""
    rngs = nnx.Rngs(seed)
    init = nnx.initializers
    return {
        "prelu": (nnx.PReLU(0.1 + seed), _x(3, 4), {}),
        "instance_norm": (
            nnx.InstanceNorm(4, scale_init=init.normal(1.0), bias_init=init.normal(1.0), rngs=rngs),
            _x(2, 3, 4),
            {},
        ),
        "weight_norm": (
            nnx.WeightNorm(
                nnx.Linear(3, 4, rngs=rngs), scale_init=init.constant(1.0 + seed), rngs=rngs
            ),
            _x(2, 3),
            {},
        ),
        "spectral_norm": (nnx.SpectralNorm(nnx.Linear(3, 4, rngs=rngs), rngs=rngs), _x(2, 3), {}),
    }


def _pure(node: Any) -> dict[tuple[Any, ...], np.ndarray]:
    return {path: _leaf(leaf)[1] for path, leaf in nnx.to_flat_state(nnx.state(node))}


def _restore(node: Any, flat: dict[tuple[Any, ...], np.ndarray]) -> None:
    """``nnx.update(node, state)`` with a state of the saved values (flax 0.10.7's own
    ``replace_by_pure_dict`` takes no tuple keys, which these layers' dicts have)."""
    leaves = nnx.to_flat_state(nnx.state(node))
    assert sorted(map(repr, flat)) == sorted(repr(p) for p, _ in leaves)
    restored = [
        (path, leaf.replace(jnp.asarray(flat[path])) if hasattr(leaf, "replace") else flat[path])
        for path, leaf in leaves
    ]
    nnx.update(node, nnx.from_flat_state(restored))


def _checkpoints() -> dict[str, Entry]:
    """flax 0.12.8's state of each layer after one call, and the output a layer built from
    another seed gives once that state is loaded into it."""
    entries: dict[str, Entry] = {}
    saved = _checkpoint_layers(7)
    fresh = _checkpoint_layers(0)
    for name, (layer, x, kwargs) in saved.items():
        _call(layer, x, **kwargs)
        for path, value in _pure(layer).items():
            entries[f"{name} saved {path!r}"] = ("array", value, False)
        target, _, _ = fresh[name]
        _restore(target, _pure(layer))
        entries[f"{name} y"] = _out(_call(target, x, **kwargs))
    return entries


# --------------------------------------------------------------------------- the fixture


def _jsonable(path: tuple[Any, ...]) -> list[Any]:
    return [list(p) if isinstance(p, tuple) else p for p in path]


def _from_json(path: list[Any]) -> tuple[Any, ...]:
    return tuple(tuple(p) if isinstance(p, list) else p for p in path)


def record(directory: Path = FIXTURES) -> None:
    """Writes the fixture with the installed flax (flax 0.12.8 for the shipped one)."""
    index: dict[str, Any] = {
        "flax": _versions.installed_version("flax"),
        "jax": _versions.installed_version("jax"),
        "cases": {},
    }
    arrays: dict[str, np.ndarray] = {}
    cases = {name: case(nnx) for name, case in CASES.items()}
    for case, entries in {**cases, "checkpoints": _checkpoints()}.items():
        index["cases"][case] = {}
        for i, (label, (kind, value, exact)) in enumerate(entries.items()):
            key = f"{case}.{i}"
            dtype = str(value.dtype)
            if value.dtype == jnp.bfloat16:  # numpy cannot store it: float32 holds it exactly
                value = value.astype(np.float32)
            arrays[key] = value
            index["cases"][case][label] = {"type": kind, "dtype": dtype, "exact": exact, "at": key}
    index["checkpoint_paths"] = {
        name: [_jsonable(p) for p in _pure(layer)]
        for name, (layer, _, _) in _checkpoint_layers(7).items()
    }
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "layers.npz", **arrays)
    (directory / "layers.json").write_text(json.dumps(index, indent=1) + "\n")


@functools.cache
def _fixture() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    index = json.loads((FIXTURES / "layers.json").read_text())
    with np.load(FIXTURES / "layers.npz") as data:
        return index, {key: data[key] for key in data.files}


def _ulps(expected: np.ndarray, actual: np.ndarray) -> float:
    """The largest difference in ulps of the expected array's largest magnitude."""
    a, b = expected.astype(np.float64), actual.astype(np.float64)
    scale = float(np.max(np.abs(a), initial=0.0))
    unit = float(np.spacing(expected.dtype.type(scale))) if scale else np.finfo(expected.dtype).tiny
    return float(np.max(np.abs(a - b), initial=0.0)) / unit


def _compare(case: str, actual: dict[str, Entry]) -> None:
    index, arrays = _fixture()
    expected = index["cases"][case]
    assert list(actual) == list(expected)  # the same state paths, outputs, in the same order
    for label, (kind, value, _) in actual.items():
        record_ = expected[label]
        stored = arrays[record_["at"]]
        assert (kind, str(value.dtype), value.shape) == (
            record_["type"],
            record_["dtype"],
            stored.shape,
        ), label
        if str(value.dtype) == "bfloat16":
            value = value.astype(np.float32)
        if record_["exact"] or not np.issubdtype(stored.dtype, np.floating):
            assert same_bits(value, stored), f"{case} {label}: {value} != {stored}"
        else:
            ulps = _ulps(stored, value)
            assert ulps <= MAX_ULPS, f"{case} {label}: {ulps} ulps: {value} != {stored}"


# --------------------------------------------------------------------------- the tests


def test_each_name_is_flax_0128s_or_the_backport() -> None:
    for name in NAMES:
        if name in vars(upstream):
            assert getattr(nnx, name) is getattr(upstream, name)
        else:
            assert getattr(nnx, name) is _added.backport(name)
            assert name not in _added.INSTEAD
    assert nnx.identity is jax.nn.identity  # flax 0.12.8's is jax's own


#: flax 0.12.8's constructors: each parameter's name, whether it is keyword-only, its default.
_K, _P = "keyword", "positional"
SIGNATURES: Final = {
    "PReLU": [
        ("negative_slope_init", _P, "0.01"),
        ("dtype", _K, "None"),
        ("param_dtype", _K, "float32"),
        ("promote_dtype", _K, "promote_dtype"),
        ("negative_slope_metadata", _K, "mappingproxy({})"),
    ],
    "InstanceNorm": [
        ("num_features", _P, None),
        ("epsilon", _K, "1e-06"),
        ("dtype", _K, "None"),
        ("param_dtype", _K, "float32"),
        ("use_bias", _K, "True"),
        ("use_scale", _K, "True"),
        ("bias_init", _K, "zeros"),
        ("scale_init", _K, "ones"),
        ("feature_axes", _K, "-1"),
        ("axis_name", _K, "None"),
        ("axis_index_groups", _K, "None"),
        ("use_fast_variance", _K, "True"),
        ("promote_dtype", _K, "promote_dtype"),
        ("rngs", _K, None),
        ("bias_metadata", _K, "mappingproxy({})"),
        ("scale_metadata", _K, "mappingproxy({})"),
    ],
    "WeightNorm": [
        ("layer_instance", _P, None),
        ("feature_axes", _K, "-1"),
        ("use_scale", _K, "True"),
        ("scale_init", _K, "ones"),
        ("epsilon", _K, "1e-12"),
        ("dtype", _K, "None"),
        ("param_dtype", _K, "float32"),
        ("variable_filter", _K, "PathContains('kernel')"),
        ("promote_dtype", _K, "promote_dtype"),
        ("rngs", _K, None),
    ],
    "SpectralNorm": [
        ("layer_instance", _P, None),
        ("n_steps", _K, "1"),
        ("epsilon", _K, "1e-12"),
        ("dtype", _K, "None"),
        ("param_dtype", _K, "float32"),
        ("error_on_non_matrix", _K, "False"),
        ("update_stats", _K, "True"),
        ("rngs", _K, None),
    ],
    "EMA": [
        ("params", _P, None),
        ("decay", _P, None),
        ("only", _K, "Ellipsis"),
        ("graph", _K, "None"),
    ],
}


def _default(value: Any) -> str | None:
    if value is inspect.Parameter.empty:
        return None
    if isinstance(value, upstream.PathContains):  # flax 0.12's repr adds exact=True
        return f"PathContains({value.key!r})"
    return getattr(value, "__name__", None) if callable(value) else repr(value)


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_constructors_take_flax_0128s_parameters(name: str) -> None:
    parameters = list(inspect.signature(getattr(nnx, name).__init__).parameters.values())[1:]
    kinds = {inspect.Parameter.KEYWORD_ONLY: _K, inspect.Parameter.POSITIONAL_OR_KEYWORD: _P}
    found = [(p.name, kinds[p.kind], _default(p.default)) for p in parameters]
    assert found == SIGNATURES[name]


def test_the_fixture_was_written_by_flax_0128() -> None:
    index, _ = _fixture()
    assert index["flax"] == "0.12.8"


class _Backports:
    """``nnx`` with the backports in place of flax's own layers (where it has them)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_layers if name in NAMES else nnx, name)


#: The name each case is about.
SUBJECTS: Final = {
    "prelu": "PReLU",
    "instance_norm": "InstanceNorm",
    "weight_norm": "WeightNorm",
    "spectral_norm": "SpectralNorm",
    "ema": "EMA",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_parameters_state_and_outputs_are_flax_0128s(case: str) -> None:
    served = CASES[case](nnx)
    _compare(case, served)
    if SUBJECTS[case] in vars(upstream):
        # flax has the layer: the backport, with the same jax on the same machine, gives its
        # bits (every float too, where the fixture allows a few ulps for another jax)
        ported = CASES[case](_Backports())
        assert list(ported) == list(served)
        for label, (kind, value, _) in served.items():
            other_kind, other, _ = ported[label]
            assert kind == other_kind and same_bits(value, other), f"{case} {label}"
    else:
        assert getattr(nnx, SUBJECTS[case]) is getattr(_layers, SUBJECTS[case])


def test_a_flax_0128_state_loads_and_gives_its_outputs() -> None:
    _compare("checkpoints", _checkpoints())  # here too: the state after a call, and its load
    index, arrays = _fixture()
    expected = index["cases"]["checkpoints"]
    fresh = _checkpoint_layers(0)
    for name, (layer, x, kwargs) in fresh.items():
        paths = [_from_json(p) for p in index["checkpoint_paths"][name]]
        flat = {p: arrays[expected[f"{name} saved {p!r}"]["at"]] for p in paths}
        _restore(layer, flat)
        y = np.asarray(_call(layer, x, **kwargs))
        stored = arrays[expected[f"{name} y"]["at"]]
        assert y.dtype == stored.dtype and y.shape == stored.shape
        assert _ulps(stored, y) <= MAX_ULPS, name


def _fold(seed: int, count: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), count)


def test_layers_draw_flax_0128s_keys_from_the_params_stream() -> None:
    # InstanceNorm: scale then bias, one key each from ``params``
    rngs = nnx.Rngs(params=3, dropout=5)
    normal, uniform = nnx.initializers.normal(1.0), nnx.initializers.uniform()
    layer = nnx.InstanceNorm(5, scale_init=normal, bias_init=uniform, rngs=rngs)
    assert same_bits(layer.scale[...], normal(_fold(3, 0), (5,), jnp.float32))
    assert same_bits(layer.bias[...], uniform(_fold(3, 1), (5,), jnp.float32))
    assert int(rngs.params.count[...]) == 2 and int(rngs.dropout.count[...]) == 0
    # without a scale or a bias: no key
    nnx.InstanceNorm(5, use_scale=False, use_bias=False, rngs=rngs)
    assert int(rngs.params.count[...]) == 2
    # SpectralNorm: one key per matrix, for u; sigma is one; vectors are left alone
    rngs = nnx.Rngs(params=4)
    sn = nnx.SpectralNorm(nnx.Linear(3, 4, rngs=rngs), rngs=rngs)
    assert int(rngs.params.count[...]) == 3
    u = sn.batch_stats[("kernel", "u")][...]
    assert same_bits(u, nnx.initializers.normal()(_fold(4, 2), (1, 4), jnp.float32))
    assert same_bits(sn.batch_stats[("kernel", "sigma")][...], jnp.ones((), jnp.float32))
    # WeightNorm: no key (its scale_init gets the stream itself)
    rngs = nnx.Rngs(params=5)
    nnx.WeightNorm(nnx.Linear(3, 4, rngs=rngs), rngs=rngs)
    assert int(rngs.params.count[...]) == 2
    # PReLU takes no rngs
    with pytest.raises(TypeError, match="rngs"):
        nnx.PReLU(rngs=rngs)


def test_state_paths_and_types_as_on_flax_0128() -> None:
    # the dicts' keys are the wrapped parameter's path (tuples), as flax 0.12.8 keys them
    sn = nnx.SpectralNorm(nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0))), rngs=nnx.Rngs(1))
    wn = nnx.WeightNorm(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    types = {path: _leaf(leaf)[0] for path, leaf in nnx.to_flat_state(nnx.state(sn))}
    assert types == {
        ("batch_stats", ("layers", 0, "kernel", "sigma")): "BatchStat",
        ("batch_stats", ("layers", 0, "kernel", "u")): "BatchStat",
        ("layer_instance", "layers", 0, "bias"): "Param",
        ("layer_instance", "layers", 0, "kernel"): "Param",
    }
    types = {path: _leaf(leaf)[0] for path, leaf in nnx.to_flat_state(nnx.state(wn))}
    assert types == {
        ("layer_instance", "bias"): "Param",
        ("layer_instance", "kernel"): "Param",
        ("scales", ("kernel",)): "ArrayImpl",  # a plain array, not a Variable, in 0.12.8
    }
    assert len(jax.tree.leaves(nnx.state(sn, nnx.Param))) == 2
    assert sn.use_running_average is False and sn.n_steps == 1


def test_wrappers_change_the_wrapped_layers_weights_in_place() -> None:
    linear = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
    wn = nnx.WeightNorm(linear, rngs=nnx.Rngs(1))
    wn(_x(2, 3))
    assert wn.layer_instance is linear
    norms = np.linalg.norm(np.asarray(linear.kernel[...]), axis=0)
    np.testing.assert_allclose(norms, np.ones(4), rtol=1e-6)
    linear = nnx.Linear(4, 4, rngs=nnx.Rngs(0))
    sn = nnx.SpectralNorm(linear, n_steps=20, rngs=nnx.Rngs(1))
    sn(_x(2, 4))
    top = np.linalg.svd(np.asarray(linear.kernel[...]), compute_uv=False)[0]
    assert abs(top - 1.0) < 1e-3
    sigma = sn.batch_stats[("kernel", "sigma")][...]
    sn(_x(2, 4), update_stats=False)
    assert same_bits(sn.batch_stats[("kernel", "sigma")][...], sigma)


def test_ema_follows_flax_0128s_example() -> None:
    model = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    ema = nnx.EMA(model, decay=0.9)
    ema_model = ema.apply_to(model)
    assert ema_model.kernel is ema.params["kernel"] and type(ema_model) is type(model)
    assert ema.params["kernel"] is not model.kernel
    assert isinstance(ema.params, upstream.State)

    def loss_fn(model: Any, x: Any, y: Any) -> Any:
        return jnp.mean((model(x) - y) ** 2)

    @nnx.jit
    def train_step(model: Any, optimizer: Any, ema: Any, x: Any, y: Any) -> None:
        grads = nnx.grad(loss_fn)(model, x, y)
        optimizer.update(model, grads)
        ema.update(model)

    x, y = jnp.ones((1, 2)), jnp.ones((1, 2))
    before = np.asarray(ema.params["kernel"][...])
    train_step(model, optimizer, ema, x, y)
    expected = 0.9 * before + (1.0 - 0.9) * np.asarray(model.kernel[...])
    np.testing.assert_allclose(np.asarray(ema_model.kernel[...]), expected, rtol=1e-6)
    loss = nnx.jit(loss_fn)(ema_model, x, y)
    assert abs(float(loss) - 3.396929) < 1e-5  # flax 0.12.8's


def test_ema_blends_arrays_as_they_are() -> None:
    ema = nnx.EMA({"a": nnx.Param(jnp.ones(2))}, 0.5)
    ema.update({"a": jnp.full(2, 3.0)})  # no Variable: the array is the update
    assert np.asarray(ema.params["a"][...]).tolist() == [2.0, 2.0]
    ema.update({"a": nnx.Param(jnp.full(2, 4.0))})
    assert np.asarray(ema.params["a"][...]).tolist() == [3.0, 3.0]


def test_ema_only_tracks_what_its_filter_selects() -> None:
    class Model(nnx.Module):
        def __init__(self, rngs: Any) -> None:
            self.linear = nnx.Linear(2, 2, rngs=rngs)
            self.bn = nnx.BatchNorm(2, rngs=rngs)

    model = Model(nnx.Rngs(0))
    ema = nnx.EMA(model, 0.5, only=nnx.Param)
    paths = [p for p, _ in nnx.to_flat_state(nnx.state(ema))]
    assert paths == [
        ("params", "bn", "bias"),
        ("params", "bn", "scale"),
        ("params", "linear", "bias"),
        ("params", "linear", "kernel"),
    ]
    view = ema.apply_to(model)
    assert view.bn.mean is model.bn.mean  # the model's own, where the filter leaves it out
    assert view.bn.scale is ema.params["bn"]["scale"]


def test_errors_as_on_flax_0128() -> None:
    with pytest.raises(AttributeError, match="'list' object has no attribute 'dtype'"):
        nnx.PReLU()([1.0, -1.0])
    with pytest.raises(ValueError, match="channel axes cannot include the leading dimension"):
        nnx.InstanceNorm(3, feature_axes=0, rngs=nnx.Rngs(0))(jnp.ones((2, 3)))
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'rngs'"):
        nnx.InstanceNorm(3)
    with pytest.raises(AttributeError, match="'params'"):  # flax's own Rngs says which stream
        nnx.InstanceNorm(3, rngs=nnx.Rngs(dropout=0))
    with pytest.raises(KeyError, match="'params'"):
        nnx.WeightNorm(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(dropout=0))
    with pytest.raises(TypeError, match="unexpected PRNG key type"):  # it gets the stream
        nnx.WeightNorm(
            nnx.Linear(2, 3, rngs=nnx.Rngs(0)),
            scale_init=nnx.initializers.normal(),
            rngs=nnx.Rngs(1),
        )
    with pytest.raises(ValueError, match="parameter is 4D but error_on_non_matrix is True"):
        nnx.SpectralNorm(
            nnx.Conv(2, 3, (3, 3), rngs=nnx.Rngs(0)), error_on_non_matrix=True, rngs=nnx.Rngs(1)
        )
    wn = nnx.WeightNorm(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    wn.layer_instance = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
    with pytest.raises(RuntimeError, match=r"scale corresponding to the param \('layers', 0"):
        wn(jnp.ones((1, 2)))
    sn = nnx.SpectralNorm(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    sn.layer_instance = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
    with pytest.raises(RuntimeError, match=r"path for u batch stat corresponding to the param"):
        sn(jnp.ones((1, 2)))
    message = (
        r"EMA only supports Variable leaves, got ArrayImpl at path '\['a'\]/\['b'\]'\. "
        r"Use the `only` filter"
    )
    with pytest.raises(TypeError, match=message):
        nnx.EMA({"a": {"b": jnp.ones(2)}, "c": nnx.Param(jnp.ones(1))}, 0.5)
    ema = nnx.EMA(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), 0.5)
    with pytest.raises(ValueError):  # jax's message for the two trees' structures
        ema.update(nnx.Linear(2, 3, use_bias=False, rngs=nnx.Rngs(0)))


def test_ema_tree_mode_needs_flax_0126() -> None:
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    if _versions.installed_at_least("0.12.6"):
        assert nnx.EMA(model, 0.5, graph=False).graph is False
    else:
        with pytest.raises(TypeError, match=r"graph=False\) needs flax 0\.12\.6"):
            nnx.EMA(model, 0.5, graph=False)
    assert nnx.EMA(model, 0.5, graph=True).graph is True


# --------------------------------------------------------------------------- hypothesis


def _signed(low: float, high: float) -> st.SearchStrategy[float]:
    """Zeros of both signs and floats of magnitude in [low, high]: XLA on CPU flushes
    subnormal floats to zero (numpy does not), so no input or product is one."""
    magnitudes = st.floats(low, high, width=32)
    return st.one_of(st.sampled_from([0.0, -0.0]), magnitudes, magnitudes.map(lambda m: -m))


@given(
    x=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=0, max_dims=3, max_side=5),
        elements=_signed(2.0**-20, 2.0**20),
    ),
    slope=_signed(2.0**-20, 2.0),
)
def test_prelu_is_where_x_is_negative_slope_times_x(x: np.ndarray, slope: float) -> None:
    layer = nnx.PReLU(slope)
    y = np.asarray(layer(jnp.asarray(x)))
    expected = np.where(x >= 0, x, np.float32(slope) * x)
    assert same_bits(y, expected)


@given(
    shape=hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=5),
    data=st.data(),
    fast=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_instance_norm_normalizes_each_example_per_feature(
    shape: tuple[int, ...], data: st.DataObject, fast: bool, seed: int
) -> None:
    x = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(-4, 4, width=32)))
    axis = data.draw(st.integers(1, len(shape) - 1))
    init = nnx.initializers.normal(1.0)
    layer = nnx.InstanceNorm(
        shape[axis],
        feature_axes=axis,
        use_fast_variance=fast,
        scale_init=init,
        bias_init=init,
        rngs=nnx.Rngs(seed),
    )
    y = np.asarray(layer(jnp.asarray(x)))
    # float64: the mean and variance over every axis but the batch and the feature axis
    reduce = tuple(a for a in range(1, len(shape)) if a != axis)
    x64 = x.astype(np.float64)
    mean = x64.mean(reduce, keepdims=True) if reduce else x64
    var = x64.var(reduce, keepdims=True) if reduce else np.zeros_like(x64)
    feature = [1] * len(shape)
    feature[axis] = shape[axis]
    scale = np.asarray(layer.scale[...], np.float64).reshape(feature)
    bias = np.asarray(layer.bias[...], np.float64).reshape(feature)
    expected = (x64 - mean) / np.sqrt(var + 1e-6) * scale + bias
    assert y.dtype == np.float32 and y.shape == x.shape
    # float32 statistics of values up to 4 in size, divided by sqrt(var + 1e-6) >= 1e-3
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=4e-3 * float(np.max(np.abs(scale))))


if __name__ == "__main__":
    if _versions.installed_version("flax") != "0.12.8":
        sys.exit("record the fixture with flax 0.12.8 installed")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record(Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURES)
