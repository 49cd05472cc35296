"""flax 0.12's members of classes an older flax already has (``nnx_compat._added.MEMBERS``).

Every test runs in each environment and asserts flax 0.12.8's results (recorded from flax
0.12.8 natively): on flax 0.12.8 it exercises flax's own members, which proves the expected
values; on flax 0.10.7 and 0.11.2 the backports of ``nnx_compat._backports.members`` (and the
Variable, Rngs and Optimizer shims).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any, Final

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnx_compat import _added, _versions, nnx
from nnx_compat._backports import members
from tests.backports import member_as_in_0128
from tools import api_diff

#: The served members each test below exercises (each test names its own).
COVERED: set[str] = set()


def _covers(*keys: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def mark(test: Callable[..., Any]) -> Callable[..., Any]:
        COVERED.update(keys)
        return test

    return mark


# --------------------------------------------------------------------------- the table

_NEW = json.loads(api_diff.snapshot_path("0.12.8").read_text())
_OLD = {r: json.loads(api_diff.snapshot_path(r).read_text()) for r in ("0.10.7", "0.11.2")}


def _passes_everything_on(parameters: list[dict[str, Any]]) -> bool:
    """``(self, *args, **kwargs)``: the old method forwards any call (flax 0.11.2's Rngs
    sampling methods), so the parameters the new one spells out are no change."""
    kinds = sorted(p["kind"] for p in parameters if p["name"] not in ("self", "cls"))
    return kinds == ["VAR_KEYWORD", "VAR_POSITIONAL"]


def _differences(old: dict[str, Any]) -> dict[str, tuple[str, str, str | None]]:
    """Each member of a class both snapshots have that ``old`` lacks, and each parameter that
    a method of ``old`` lacks: ``"Class.member"`` / ``"Class.method(parameter)"`` -> parts."""
    out: dict[str, tuple[str, str, str | None]] = {}
    for name, entry in _NEW["api"].items():
        before = old["api"].get(name)
        if entry["kind"] != "class" or before is None or before["kind"] != "class":
            continue
        cls = name.removeprefix("nnx.")
        for member, spec in entry["members"].items():
            if member not in before["members"]:
                out[f"{cls}.{member}"] = (cls, member, None)
                continue
            previous = before["members"][member]
            if spec["kind"] != "method" or previous["kind"] != "method":
                continue
            parameters = previous.get("parameters") or []
            if _passes_everything_on(parameters):
                continue
            known = {p["name"] for p in parameters}
            for p in spec.get("parameters") or []:
                if p["name"] not in known and "VAR" not in p["kind"]:
                    out[f"{cls}.{member}({p['name']})"] = (cls, member, p["name"])
    return out


def _spec(cls: str, member: str) -> Any:
    return _NEW["api"][f"nnx.{cls}"]["members"][member]


@pytest.mark.parametrize("release", sorted(_OLD))
def test_the_table_is_every_member_flax_0_12_8_added(release: str) -> None:
    found = _differences(_OLD[release])
    listed = {key for key in _added.MEMBERS if key in found}
    for key, (cls, member, parameter) in found.items():
        if key in listed:
            continue
        # an inherited member is listed under the class that defines it (Variable for Param)
        assert any(
            found[other][1:] == (member, parameter)
            and _spec(found[other][0], member) == _spec(cls, member)
            for other in listed
        ), key


def test_each_entry_is_a_member_flax_0_12_8_added() -> None:
    found = set(_differences(_OLD["0.10.7"])) | set(_differences(_OLD["0.11.2"]))
    assert set(_added.MEMBERS) <= found, set(_added.MEMBERS) - found
    for key in _added.MEMBERS:
        cls, _, rest = key.partition("(")[0].rpartition(".")
        assert rest in _NEW["api"][f"nnx.{cls}"]["members"], key


def test_the_figures() -> None:
    per_release = {
        r: sum(k in _differences(old) for k in _added.MEMBERS) for r, old in _OLD.items()
    }
    served = sum(v == "served" for v in _added.MEMBERS.values())
    assert per_release == {"0.10.7": 244, "0.11.2": 151}
    assert (len(_added.MEMBERS), served) == (248, 192)


def test_each_member_is_served_and_exercised_or_has_a_reason() -> None:
    for key, status in _added.MEMBERS.items():
        assert status == "served" or len(status) > 40, key  # a reason in words
    served = {key for key, status in _added.MEMBERS.items() if status == "served"}
    assert served <= COVERED, sorted(served - COVERED)
    assert served >= COVERED, sorted(COVERED - served)


def test_restore_puts_flax_s_own_classes_back() -> None:
    entries = list(members._patched)
    members.restore()
    try:
        assert not members.patched()
        # what each attribute held before its first change (a layer's __init__ is wrapped
        # twice: for its metadata arguments, then for preferred_element_type)
        first: dict[tuple[type, str], Any] = {}
        for cls, name, previous in entries:
            first.setdefault((cls, name), previous)
        for (cls, name), previous in first.items():
            assert vars(cls).get(name, members._ABSENT) is previous, (cls, name)
        # flax 0.12.8 has every member; 0.12.0-0.12.7 lack a few (sharding_names, ...)
        assert bool(entries) is not _versions.installed_at_least("0.12.8")
    finally:
        members.patch()
    assert [(cls, name) for cls, name, _ in members._patched] == [(c, n) for c, n, _ in entries]


# --------------------------------------------------------------------------- Variable


def _param(**metadata: Any) -> Any:
    return nnx.Param(jnp.arange(3.0), **metadata)


@_covers(
    "Variable.get_metadata(name)",
    "Variable.get_metadata(default)",
    "Variable.get_metadata(exclude_required)",
    "Variable.has_metadata",
    "Variable.set_metadata",
    "Variable.del_metadata",
)
def test_metadata_api() -> None:
    v = _param(foo=1)
    assert v.get_metadata("foo") == 1
    assert v.get_metadata("bar", 5) == 5
    assert v.get_metadata("bar", None) is None
    assert v.get_metadata(exclude_required=True) == {"foo": 1}
    assert (v.has_metadata("foo"), v.has_metadata("bar")) == (True, False)
    v.set_metadata("bar", 2)
    v.set_metadata(baz=3, qux=4)
    assert v.get_metadata(exclude_required=True) == {"foo": 1, "bar": 2, "baz": 3, "qux": 4}
    v.del_metadata("qux")
    assert v.get_metadata(exclude_required=True) == {"foo": 1, "bar": 2, "baz": 3}
    v.set_metadata({"only": True})  # a mapping replaces the metadata
    assert v.get_metadata(exclude_required=True) == {"only": True}
    assert (v.hijax, v.ref) == (False, False)  # kept by set_metadata(mapping)
    assert v.get_metadata("only") is True


_OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["set", "set_keyword", "replace", "delete"]),
        st.sampled_from(["a", "b", "c"]),
        st.integers(-3, 3),
    ),
    max_size=12,
)


@_covers("Variable.set_metadata", "Variable.del_metadata", "Variable.has_metadata")
@given(_OPERATIONS)
def test_metadata_operations_act_as_on_a_dict(operations: list[tuple[str, str, int]]) -> None:
    v = nnx.Param(jnp.ones(1))
    model: dict[str, int] = {}
    for operation, name, value in operations:
        if operation == "set":
            v.set_metadata(name, value)
            model[name] = value
        elif operation == "set_keyword":
            v.set_metadata(**{name: value})
            model[name] = value
        elif operation == "replace":
            v.set_metadata({name: value})
            model = {name: value}
        elif name in model:
            v.del_metadata(name)
            del model[name]
        else:
            with pytest.raises(KeyError):
                v.del_metadata(name)
        assert v.get_metadata(exclude_required=True) == model
        for key in "abc":
            assert v.has_metadata(key) is (key in model)
            assert v.get_metadata(key, None) == model.get(key)


@_covers("Variable.set_metadata", "Variable.has_metadata", "Variable.sharding_names")
def test_the_sharding_annotation_is_out_sharding() -> None:
    v = nnx.Param(jnp.ones((2, 2)), out_sharding=("a", None), eager_sharding=False)
    if not member_as_in_0128(nnx.Variable, "get_metadata"):
        # flax 0.12.0-0.12.3's own get_metadata reads the key the annotation is stored under
        assert v.get_metadata(_versions.sharding_metadata_key()) == ("a", None)
        return
    assert v.get_metadata("out_sharding") == ("a", None)
    assert v.has_metadata("out_sharding")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # flax 0.12.8 deprecates the name
        assert v.sharding_names == ("a", None)
        assert nnx.Param(jnp.ones(2)).sharding_names is None
    v.set_metadata("out_sharding", ("b", None))
    assert v.get_metadata("out_sharding") == ("b", None)


@_covers("Variable.get_metadata(name)", "Variable.set_metadata", "Variable.del_metadata")
def test_metadata_errors() -> None:
    v = _param(foo=1)
    with pytest.raises(KeyError, match="nope"):
        v.get_metadata("nope")
    with pytest.raises(TypeError, match="Cannot specify both 'name' and 'exclude_required'"):
        v.get_metadata("foo", exclude_required=True)
    with pytest.raises(TypeError, match="Cannot provide a default value when 'name'"):
        v.get_metadata(default=3)
    with pytest.raises(TypeError, match="Cannot mix positional and keyword arguments"):
        v.set_metadata({"a": 1}, b=2)
    with pytest.raises(TypeError, match="takes either 1 or 2 arguments"):
        v.set_metadata()
    with pytest.raises(TypeError, match="takes either 1 or 2 arguments"):
        v.set_metadata("a", 1, 2)
    for call in (lambda: v.set_metadata("hijax", True), lambda: v.set_metadata(ref=True)):
        with pytest.raises(ValueError, match=r"Cannot change `(hijax|ref)` metadata"):
            call()
    with pytest.raises(ValueError, match="Cannot delete `hijax` metadata"):
        v.del_metadata("hijax")
    with pytest.raises(KeyError, match="zz"):
        v.del_metadata("zz")
    assert v.get_metadata(exclude_required=True) == {"foo": 1}


@_covers("Variable.set_metadata", "Variable.del_metadata", "Variable.set_raw_value")
def test_a_variable_of_another_trace_refuses_changes() -> None:
    v = _param(a=1)
    caught: list[str] = []

    @jax.jit
    def f(x: jax.Array) -> jax.Array:
        for change in (
            lambda: v.set_metadata("b", 2),
            lambda: v.del_metadata("a"),
            lambda: v.set_raw_value(x),
            lambda: v.set_raw_value(x, _unsafe_bypass_check=True),  # flax 0.12.8: checked too
        ):
            try:
                change()
            except Exception as error:  # flax.errors.TraceContextError
                caught.append(f"{type(error).__name__}: {error}")
        return x

    f(jnp.zeros(3))
    assert len(caught) == 4
    for text in caught:
        assert text.startswith("TraceContextError: Cannot mutate Param from a different trace")
    assert v.get_metadata(exclude_required=True) == {"a": 1}
    assert np.asarray(v[...]).tolist() == [0.0, 1.0, 2.0]


@_covers(
    "Variable.get_metadata(name)",
    "Variable.has_metadata",
    "Variable.set_metadata",
    "Variable.get_raw_value",
    "Variable.set_raw_value",
)
def test_under_nnx_jit() -> None:
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))

    @nnx.jit
    def step(model: Any) -> tuple[jax.Array, ...]:
        model.kernel.set_metadata("step", 1)
        model.bias.set_raw_value(model.bias.get_raw_value() + 1)
        found = model.kernel.get_metadata("step"), model.kernel.has_metadata("step")
        return (*found, model.kernel.get_raw_value().sum())

    step_metadata, has_step, total = step(model)
    assert (int(step_metadata), bool(has_step)) == (1, True)
    assert float(total) == pytest.approx(-1.5841567516326904, abs=0)
    # as on flax 0.12.8: the value comes out of the transform, the metadata set inside not
    assert model.kernel.get_metadata(exclude_required=True) == {}
    assert np.asarray(model.bias[...]).tolist() == [1.0, 1.0, 1.0]


@_covers(
    "Variable.get_value",
    "Variable.set_value",
    "Variable.get_raw_value",
    "Variable.set_raw_value",
    "Variable.raw_value",
    "Variable.shape",
)
def test_value_accessors() -> None:
    v = _param()
    assert np.asarray(v.get_value()).tolist() == [0.0, 1.0, 2.0]
    assert float(v.get_value(index=1)) == 1.0
    v.set_value(jnp.ones(3))
    v.set_value(5.0, index=0)
    assert np.asarray(v[...]).tolist() == [5.0, 1.0, 1.0]
    assert np.asarray(v.get_raw_value()).tolist() == [5.0, 1.0, 1.0]
    v.set_raw_value(jnp.zeros(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # flax 0.12.8 deprecates raw_value
        assert np.asarray(v.raw_value).tolist() == [0.0, 0.0, 0.0]
    assert v.shape == (3,)
    plain = nnx.Variable({"a": 1})
    assert plain.get_value() == {"a": 1} and plain.get_value(index="a") == 1

    @jax.jit
    def double(x: jax.Array) -> jax.Array:
        w = nnx.Param(x)
        w.set_value(w.get_value() * 2)
        return w.get_raw_value()

    assert np.asarray(double(jnp.arange(2.0))).tolist() == [0.0, 2.0]


@_covers("Variable.hijax", "Variable.ref", "Variable.type", "Variable.var_type")
def test_kind_properties() -> None:
    v = _param()
    assert (v.hijax, v.ref) == (False, False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert v.type is nnx.Param
    # flax 0.11.2 deprecates its own .type (nnx_compat warns there, as variable-state); flax
    # 0.12.8 and the backport on 0.10.7 do not
    assert all("variable-state" in str(w.message) for w in caught)
    assert v.var_type is nnx.Param
    assert nnx.BatchStat(jnp.ones(1)).var_type is nnx.BatchStat


@_covers("Variable.copy(value)")
def test_copy_with_a_value_and_metadata() -> None:
    v = _param(foo=1)
    w = v.copy(jnp.zeros(2), qux=4)
    assert type(w) is nnx.Param and w is not v
    assert np.asarray(w[...]).tolist() == [0.0, 0.0]
    assert w.get_metadata(exclude_required=True) == {"foo": 1, "qux": 4}
    assert v.get_metadata(exclude_required=True) == {"foo": 1}
    same = v.copy()
    assert np.asarray(same[...]).tolist() == [0.0, 1.0, 2.0]
    items = [1, [2]]
    copied = nnx.Variable(items).copy(items)
    assert copied.get_value() == items
    assert copied.get_value() is not items and copied.get_value()[1] is not items[1]
    assert nnx.Variable(3).copy(4).get_value() == 4


# --------------------------------------------------------------------------- layers

#: Each layer's metadata arguments and the Param paths each annotates, as flax 0.12.8 builds
#: them: layer -> (constructor arguments, {argument: paths}).
LAYERS: dict[str, tuple[tuple[Any, ...], dict[str, Any], dict[str, tuple[str, ...]]]] = {
    "Linear": ((2, 3), {}, {"kernel_metadata": ("kernel",), "bias_metadata": ("bias",)}),
    "LinearGeneral": ((2, 3), {}, {"kernel_metadata": ("kernel",), "bias_metadata": ("bias",)}),
    "Einsum": (
        ("ab,bc->ac", (2, 3), (3,)),
        {},
        {"kernel_metadata": ("kernel",), "bias_metadata": ("bias",)},
    ),
    "Conv": ((2, 3, (3,)), {}, {"kernel_metadata": ("kernel",), "bias_metadata": ("bias",)}),
    "ConvTranspose": (
        (2, 3, (3,)),
        {},
        {"kernel_metadata": ("kernel",), "bias_metadata": ("bias",)},
    ),
    "Embed": ((5, 3), {}, {"embedding_metadata": ("embedding",)}),
    "LayerNorm": ((3,), {}, {"scale_metadata": ("scale",), "bias_metadata": ("bias",)}),
    "GroupNorm": (
        (4,),
        {"num_groups": 2},
        {"scale_metadata": ("scale",), "bias_metadata": ("bias",)},
    ),
    "BatchNorm": ((3,), {}, {"scale_metadata": ("scale",), "bias_metadata": ("bias",)}),
    "RMSNorm": ((3,), {}, {"scale_metadata": ("scale",)}),
    "LoRA": ((2, 1, 3), {}, {"a_metadata": ("lora_a",), "b_metadata": ("lora_b",)}),
    "LoRALinear": (
        (2, 3),
        {"lora_rank": 1},
        {"a_metadata": ("lora/lora_a",), "b_metadata": ("lora/lora_b",)},
    ),
    "LSTMCell": (
        (2, 3),
        {},
        {
            "kernel_metadata": ("if_/kernel", "ig/kernel", "ii/kernel", "io/kernel"),
            "recurrent_kernel_metadata": ("hf/kernel", "hg/kernel", "hi/kernel", "ho/kernel"),
            "bias_metadata": ("hf/bias", "hg/bias", "hi/bias", "ho/bias"),
        },
    ),
    "OptimizedLSTMCell": (
        (2, 3),
        {},
        {
            "kernel_metadata": ("dense_i/kernel",),
            "recurrent_kernel_metadata": ("dense_h/kernel",),
            "bias_metadata": ("dense_h/bias",),
        },
    ),
    "SimpleCell": (
        (2, 3),
        {},
        {
            "kernel_metadata": ("dense_i/kernel",),
            "recurrent_kernel_metadata": ("dense_h/kernel",),
            "bias_metadata": ("dense_i/bias",),
        },
    ),
    "GRUCell": (
        (2, 3),
        {},
        {
            "kernel_metadata": ("dense_i/kernel",),
            "recurrent_kernel_metadata": ("dense_h/kernel",),
            "bias_metadata": ("dense_i/bias",),
        },
    ),
    "MultiHeadAttention": (
        (2, 4),
        {"normalize_qk": True, "decode": False},
        {
            "kernel_metadata": ("key/kernel", "query/kernel", "value/kernel"),
            "bias_metadata": ("key/bias", "query/bias", "value/bias"),
            "out_kernel_metadata": ("out/kernel",),
            "out_bias_metadata": ("out/bias",),
            "query_ln_scale_metadata": ("query_ln/scale",),
            "key_ln_scale_metadata": ("key_ln/scale",),
        },
    ),
}
COVERED.update(
    f"{layer}.__init__({argument})" for layer, (_, _, args) in LAYERS.items() for argument in args
)


def _param_metadata(layer: Any) -> dict[str, dict[str, Any]]:
    return {
        "/".join(map(str, path)): variable.get_metadata(exclude_required=True)
        for path, variable in nnx.iter_graph(layer)
        if isinstance(variable, nnx.Param)
    }


def _build(name: str, **kwargs: Any) -> Any:
    args, fixed, _ = LAYERS[name]
    return getattr(nnx, name)(*args, **fixed, **kwargs, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_metadata_arguments_annotate_their_params(name: str) -> None:
    arguments = LAYERS[name][2]
    plain = _build(name)
    layer = _build(name, **{argument: {"tag": argument} for argument in arguments})
    expected = {path: {} for path in _param_metadata(plain)}
    for argument, paths in arguments.items():
        for path in paths:
            expected[path] = {"tag": argument}
    assert _param_metadata(layer) == expected
    # the numbers are the layer's own: the same parameters as without the arguments
    before, after = (jax.tree.leaves(nnx.state(x, nnx.Param)) for x in (plain, layer))
    assert len(before) == len(after) and all(map(np.array_equal, before, after))


def test_attention_output_projection_falls_back_to_the_qkv_metadata() -> None:
    layer = _build("MultiHeadAttention", kernel_metadata={"k": 1}, bias_metadata={"b": 1})
    found = _param_metadata(layer)
    assert found["out/kernel"] == found["query/kernel"] == {"k": 1}
    assert found["out/bias"] == found["value/bias"] == {"b": 1}
    assert found["query_ln/scale"] == {}


def test_the_initializers_metadata_wins() -> None:
    init = nnx.with_metadata(nnx.initializers.lecun_normal(), tag="init")
    layer = nnx.Linear(
        2, 3, kernel_init=init, kernel_metadata={"tag": "arg", "x": 1}, rngs=nnx.Rngs(0)
    )
    assert layer.kernel.get_metadata(exclude_required=True) == {"tag": "init", "x": 1}
    y = layer(jnp.ones((1, 2)))
    assert np.asarray(y).tolist() == [
        [-0.11903059482574463, -1.3456432819366455, -0.1194828450679779]
    ]


# --------------------------------------------------------------------------- layer calls

_DIMS: Final = (((1,), (0,)), ((), ()))


def _explicit_mesh() -> Any:
    """Eight host devices on one axis in jax's explicit sharding mode."""
    explicit = (jax.sharding.AxisType.Explicit,)
    return jax.make_mesh((8,), ("data",), axis_types=explicit, devices=jax.devices()[:8])


def _use_mesh(mesh: Any) -> Any:
    return jax.set_mesh(mesh) if hasattr(jax, "set_mesh") else jax.sharding.use_mesh(mesh)


def _takes_out_sharding(op: Callable[..., Any]) -> bool:
    import inspect

    return "out_sharding" in inspect.signature(op).parameters


#: Each layer whose call takes out_sharding in flax 0.12.8: its inputs' shape and the
#: computation flax 0.12.8's __call__ makes of its parameters (the out_sharding passed on).
_SHARDED_LAYERS: Final[dict[str, tuple[Callable[[], Any], tuple[int, ...]]]] = {
    "Linear": (lambda: nnx.Linear(8, 6, rngs=nnx.Rngs(0)), (8, 8)),
    "LinearGeneral": (lambda: nnx.LinearGeneral(8, 6, rngs=nnx.Rngs(0)), (8, 8)),
    "Einsum": (lambda: nnx.Einsum("ab,bc->ac", (8, 6), (6,), rngs=nnx.Rngs(0)), (8, 8)),
    "LoRALinear": (lambda: nnx.LoRALinear(8, 6, lora_rank=2, rngs=nnx.Rngs(0)), (8, 8)),
    "Conv": (lambda: nnx.Conv(8, 6, (3,), rngs=nnx.Rngs(0)), (8, 5, 8)),
}


def _expected(name: str, layer: Any, x: Any, spec: Any) -> Any:
    """flax 0.12.8's computation of the layer (its __call__, written out with jax's ops)."""
    if name == "Conv":
        y = jax.lax.conv_general_dilated(
            x, layer.kernel[...], (1,), "SAME", lhs_dilation=(1,), rhs_dilation=(1,),
            dimension_numbers=jax.lax.conv_dimension_numbers(x.shape, layer.kernel.shape,
                                                             ("NHC", "HIO", "NHC")),
            feature_group_count=1, out_sharding=spec,
        )  # fmt: skip
    elif name == "Einsum":
        y = jnp.einsum("ab,bc->ac", x, layer.kernel[...], out_sharding=spec)
    else:
        y = jax.lax.dot_general(x, layer.kernel[...], _DIMS, out_sharding=spec)
    y = y + jnp.reshape(layer.bias[...], (1,) * (y.ndim - 1) + (-1,))
    if name == "LoRALinear":
        y = y + x @ layer.lora.lora_a[...] @ layer.lora.lora_b[...]
    return y


@_covers(
    "Linear.__call__(out_sharding)", "LinearGeneral.__call__(out_sharding)",
    "Einsum.__call__(out_sharding)", "LoRALinear.__call__(out_sharding)",
    "Conv.__call__(out_sharding)",
)  # fmt: skip
@pytest.mark.parametrize("name", sorted(_SHARDED_LAYERS))
@pytest.mark.parametrize("spec", [("data", None), (None, None)], ids=["batch", "replicated"])
def test_layers_pass_out_sharding_to_their_operation(name: str, spec: tuple[Any, ...]) -> None:
    build, shape = _SHARDED_LAYERS[name]
    mesh = _explicit_mesh()
    P = jax.sharding.PartitionSpec
    out = P(*spec, *(None,) * (len(shape) - 2))
    x = jnp.arange(np.prod(shape), dtype=jnp.float32).reshape(shape) / 64
    with _use_mesh(mesh):
        layer = build()  # its parameters on the mesh (replicated), as jax's explicit mode wants
        xs = jax.device_put(x, jax.sharding.NamedSharding(mesh, P("data")))
        if name == "Conv" and not _takes_out_sharding(jax.lax.conv_general_dilated):
            # jax 0.6.2's convolution takes none (flax 0.12.8 needs a jax that has it)
            with pytest.raises(TypeError, match="unexpected keyword argument 'out_sharding'"):
                layer(xs, out_sharding=out)
            return
        # under jax.jit of the split layer (flax 0.10's nnx.jit predates explicit sharding)
        graphdef, state = nnx.split(layer)
        y = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, out_sharding=out))(state, xs)
        expected = jax.jit(lambda s, x: _expected(name, nnx.merge(graphdef, s), x, out))(state, xs)
    # LoRALinear's sum keeps the batch sharding of its LoRA branch, as in flax 0.12.8
    spec_of_sum = P("data", None) if name == "LoRALinear" else out
    assert y.sharding.spec == expected.sharding.spec == spec_of_sum
    np.testing.assert_array_equal(np.asarray(y), np.asarray(expected))


@_covers("MultiHeadAttention.__call__(out_sharding)", "MultiHeadAttention.__call__(qkv_sharding)")
def test_attention_passes_both_shardings_to_its_projections() -> None:
    mesh = _explicit_mesh()
    P = jax.sharding.PartitionSpec
    x = jnp.arange(8 * 3 * 8, dtype=jnp.float32).reshape(8, 3, 8) / 100
    with _use_mesh(mesh):
        layer = nnx.MultiHeadAttention(
            num_heads=2, in_features=8, qkv_features=8, decode=False, rngs=nnx.Rngs(0)
        )
        xs = jax.device_put(x, jax.sharding.NamedSharding(mesh, P("data")))
        shardings = []

        # the projections' results as flax 0.12.8 shards them, seen by the attention function
        def attention_fn(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
            shardings.extend(jax.typeof(a).sharding.spec for a in (query, key, value))
            return nnx.dot_product_attention(query, key, value, *args, **kwargs)

        layer.attention_fn = attention_fn
        plain = layer(xs)
        y = layer(xs, out_sharding=P(), qkv_sharding=P(None, None, None, None))
    assert shardings[:3] == [P("data", None, None, None)] * 3  # propagated from the inputs
    assert shardings[3:] == [P(None, None, None, None)] * 3
    assert y.sharding.spec == P(None, None, None) != plain.sharding.spec
    np.testing.assert_array_equal(np.asarray(y), np.asarray(plain))


@_covers(
    "Linear.__init__(preferred_element_type)", "LinearGeneral.__init__(preferred_element_type)",
    "Einsum.__init__(preferred_element_type)", "Conv.__init__(preferred_element_type)",
)  # fmt: skip
@pytest.mark.parametrize("name", ["Linear", "LinearGeneral", "Einsum", "Conv"])
def test_preferred_element_type_is_the_operations(name: str) -> None:
    half = {"dtype": jnp.bfloat16, "param_dtype": jnp.bfloat16, "rngs": nnx.Rngs(0)}
    layer = {
        "Linear": lambda **kw: nnx.Linear(8, 6, **kw),
        "LinearGeneral": lambda **kw: nnx.LinearGeneral(8, 6, **kw),
        "Einsum": lambda **kw: nnx.Einsum("ab,bc->ac", (8, 6), (6,), **kw),
        "Conv": lambda **kw: nnx.Conv(8, 6, (1,), **kw),
    }[name]
    plain = layer(**half)
    wide = layer(**half, preferred_element_type=jnp.float32)
    assert plain.preferred_element_type is None and wide.preferred_element_type is jnp.float32
    x = (jnp.arange(64, dtype=jnp.float32).reshape(8, 8) / 10).astype(jnp.bfloat16)
    if name == "Conv":
        x = x[:, None, :]
    y = nnx.jit(lambda layer, x: layer(x))(wide, x)
    kernel = wide.kernel[...].reshape(8, 6)
    expected = (
        jax.lax.dot_general(
            x.reshape(-1, 8), kernel, _DIMS, preferred_element_type=jnp.float32
        ).reshape(y.shape)
        + wide.bias[...]
    )
    assert y.dtype == jnp.float32 and plain(x).dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(y), np.asarray(expected))


@_covers("Variable.__init__(eager_sharding)")
def test_eager_sharding_argument() -> None:
    auto = (jax.sharding.AxisType.Auto,) * 2
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=auto, devices=jax.devices()[:8])
    P = jax.sharding.PartitionSpec
    annotation = {"out_sharding": (None, "model"), "mesh": mesh}
    sharded = nnx.Param(jnp.ones((4, 4)), eager_sharding=True, **annotation)
    assert sharded[...].sharding.spec == P(None, "model")
    assert sharded.get_metadata("eager_sharding") is True
    kept = nnx.Param(jnp.ones((4, 4)), eager_sharding=False, **annotation)
    assert not isinstance(kept[...].sharding, jax.sharding.NamedSharding)
    with pytest.raises(ValueError, match="An auto mesh context or metadata is required"):
        nnx.Param(jnp.ones(2), out_sharding=("a",), eager_sharding=True)


def test_a_variables_out_sharding_attribute_is_its_annotation() -> None:
    v = nnx.Param(jnp.ones((2, 2)), out_sharding=("a", None), eager_sharding=False)
    assert v.out_sharding == ("a", None)
    with pytest.raises(AttributeError, match="has no attribute 'out_sharding'"):
        nnx.Param(jnp.ones(2)).out_sharding  # noqa: B018


def test_an_unknown_argument_is_still_refused() -> None:
    with pytest.raises(TypeError, match="kernel_metadta"):
        nnx.Linear(2, 3, kernel_metadta={}, rngs=nnx.Rngs(0))


@_covers("BatchNorm.set_view", "Dropout.set_view", "MultiHeadAttention.set_view")
def test_set_view() -> None:
    norm = nnx.BatchNorm(3, rngs=nnx.Rngs(0))
    norm.set_view(use_running_average=True)
    assert norm.use_running_average is True
    norm.set_view()
    assert norm.use_running_average is True
    dropout = nnx.Dropout(0.5, rngs=nnx.Rngs(0))
    dropout.set_view(deterministic=True)
    assert dropout.deterministic is True
    with pytest.raises(TypeError, match=r"Dropout.set_view\(\) got an unexpected keyword"):
        dropout.set_view(foo=1)
    attention = nnx.MultiHeadAttention(2, 4, decode=False, rngs=nnx.Rngs(0))
    attention.set_view(deterministic=True, decode=True, batch_size=1, max_length=3)
    assert (attention.deterministic, attention.decode) == (True, True)
    assert attention.cached_key is None  # flax 0.12.8 keeps the layer's own (absent) cache


@_covers(
    "GRUCell.__init__(keep_rngs)",
    "LSTMCell.__init__(keep_rngs)",
    "OptimizedLSTMCell.__init__(keep_rngs)",
    "SimpleCell.__init__(keep_rngs)",
)
@pytest.mark.parametrize("name", ["GRUCell", "LSTMCell", "OptimizedLSTMCell", "SimpleCell"])
def test_cells_keep_rngs(name: str) -> None:
    cls = getattr(nnx, name)
    assert vars(cls(2, 3, rngs=nnx.Rngs(0)))["rngs"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # flax 0.12.8 deprecates it
        cell = cls(2, 3, keep_rngs=True, rngs=nnx.Rngs(0))
    stream = vars(cell)["rngs"]
    assert isinstance(stream, nnx.RngStream)
    # the carry (here: default) stream, forked before the layers draw their parameters
    assert _key_data(stream) == [1797259609, 2579123966]
    assert int(stream.count[...]) == 0


# --------------------------------------------------------------------------- Rngs

#: Arguments for each sampling method (after the key), flax 0.12's ``jax.random.<name>``.
SAMPLING: dict[str, tuple[Any, ...]] = {
    "bits": ((3,),),
    "uniform": ((3,),),
    "randint": ((3,), 0, 10),
    "permutation": (5,),
    "choice": (5, (3,)),
    "normal": ((3,),),
    "multivariate_normal": (jnp.zeros(2), jnp.eye(2)),
    "truncated_normal": (-1.0, 1.0, (3,)),
    "bernoulli": (0.5, (3,)),
    "beta": (2.0, 3.0, (3,)),
    "cauchy": ((3,),),
    "dirichlet": (jnp.ones(3),),
    "exponential": ((3,),),
    "gamma": (2.0, (3,)),
    "loggamma": (2.0, (3,)),
    "poisson": (3.0, (3,)),
    "gumbel": ((3,),),
    "categorical": (jnp.zeros(4),),
    "laplace": ((3,),),
    "logistic": ((3,),),
    "pareto": (2.0, (3,)),
    "t": (3.0, (3,)),
    "chisquare": (3.0, (3,)),
    "f": (3.0, 4.0, (3,)),
    "rademacher": ((3,),),
    "maxwell": ((3,),),
    "double_sided_maxwell": (0.0, 1.0, (3,)),
    "weibull_min": (1.0, 2.0, (3,)),
    "orthogonal": (3,),
    "generalized_normal": (2.0, (3,)),
    "ball": (2,),
    "rayleigh": (1.0, (3,)),
    "wald": (1.0, (3,)),
    "geometric": (0.5, (3,)),
    "triangular": (0.0, 0.5, 1.0, (3,)),
    "lognormal": (1.0, (3,)),
    "binomial": (5.0, 0.5, (3,)),
    "multinomial": (5, jnp.array([0.2, 0.3, 0.5])),
}
#: Arguments for each initializer method, and the shape it initializes.
INITIALIZERS: dict[str, tuple[tuple[Any, ...], tuple[int, ...]]] = {
    "delta_orthogonal": ((), (3, 3, 4)),
    "glorot_normal": ((), (3, 4)),
    "glorot_uniform": ((), (3, 4)),
    "he_normal": ((), (3, 4)),
    "he_uniform": ((), (3, 4)),
    "kaiming_normal": ((), (3, 4)),
    "kaiming_uniform": ((), (3, 4)),
    "lecun_normal": ((), (3, 4)),
    "lecun_uniform": ((), (3, 4)),
    "variance_scaling": ((1.0, "fan_in", "normal"), (3, 4)),
    "xavier_normal": ((), (3, 4)),
    "xavier_uniform": ((), (3, 4)),
}
COVERED.update(f"{cls}.{m}" for cls in ("Rngs", "RngStream") for m in (*SAMPLING, *INITIALIZERS))


def _first_key(seed: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), 0)


def _bits(x: Any) -> bytes:
    return np.asarray(x).tobytes()


@pytest.mark.parametrize("name", sorted(SAMPLING))
def test_sampling_methods(name: str) -> None:
    args = SAMPLING[name]
    expected = getattr(jax.random, name)(_first_key(0), *args)
    rngs = nnx.Rngs(0, params=1)
    assert _bits(getattr(rngs, name)(*args)) == _bits(expected)
    assert int(rngs.default.count[...]) == 1
    stream = getattr(rngs.params, name)(*args)
    assert _bits(stream) == _bits(getattr(jax.random, name)(_first_key(1), *args))
    assert int(rngs.params.count[...]) == 1


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_initializer_methods(name: str) -> None:
    args, shape = INITIALIZERS[name]
    expected = getattr(nnx.initializers, name)(*args)(_first_key(0), shape)
    assert _bits(getattr(nnx.Rngs(0), name)(*args)(shape)) == _bits(expected)
    assert _bits(getattr(nnx.Rngs(0).default, name)(*args)(shape)) == _bits(expected)


def _key_data(stream: Any) -> list[Any]:
    return np.asarray(jax.random.key_data(stream.key[...])).tolist()  # type: ignore[no-any-return]


@_covers("Rngs.split", "RngStream.split", "Rngs.broadcast", "RngStream.broadcast")
def test_split_and_broadcast() -> None:
    rngs = nnx.Rngs(params=1, dropout=2)
    split = rngs.split({"params": 2, "dropout": None})
    assert _key_data(split.params) == [[3704974950, 1863054868], [2705940334, 2639757084]]
    assert _key_data(split.dropout) == np.asarray(jax.random.key_data(jax.random.key(2))).tolist()
    assert (int(rngs.params.count[...]), int(rngs.dropout.count[...])) == (1, 0)
    assert int(split.dropout.count[...]) == 0
    assert nnx.Rngs(0).split(3).default.key.shape == (3,)
    stream = nnx.Rngs(params=1).params.split(2)
    assert isinstance(stream, nnx.RngStream)
    assert _key_data(stream) == [[3704974950, 1863054868], [2705940334, 2639757084]]
    broadcast = nnx.Rngs(0).broadcast(2)
    assert _key_data(broadcast.default) == [[1797259609, 2579123966]] * 2
    assert _key_data(nnx.Rngs(0).default.broadcast((1, 2))) == [[[1797259609, 2579123966]] * 2]


# --------------------------------------------------------------------------- the rest


@_covers("Optimizer.update(model)")
def test_optimizer_update_takes_the_model() -> None:
    model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.5), wrt=nnx.Param)

    @nnx.jit
    def step(model: Any, optimizer: Any, x: jax.Array) -> None:
        grads = nnx.grad(lambda m: m(x).sum())(model)
        optimizer.update(model, grads)

    step(model, optimizer, jnp.ones((1, 2)))
    assert np.asarray(model.kernel[...]).tolist() == [[0.2567299008369446], [-1.185700535774231]]
    assert np.asarray(model.bias[...]).tolist() == [-0.5]
    assert int(optimizer.step[...]) == 1


@_covers("Dict.pop", "Dict.popitem", "Dict.clear", "Dict.setdefault", "Dict.update")
def test_dict_is_a_mutable_mapping() -> None:
    if not member_as_in_0128(nnx.Dict, "pop"):  # flax 0.12.0-0.12.7's own Dict
        return
    d = nnx.Dict(a=1, b=2)
    assert d.pop("a") == 1 and d.pop("z", 9) == 9
    with pytest.raises(KeyError, match="z"):
        d.pop("z")
    assert d.setdefault("c", 3) == 3 and d.setdefault("b", 0) == 2
    assert list(d) == ["b", "c"]
    assert d.popitem() == ("b", 2)
    d.update({"x": 1}, y=2)
    assert [(k, d[k]) for k in d] == [("c", 3), ("x", 1), ("y", 2)]
    d.clear()
    assert list(d) == []
    with pytest.raises(KeyError):
        d.popitem()


@_covers("StateAxes.get", "StateAxes.keys", "StateAxes.values")
def test_state_axes_is_a_mapping() -> None:
    axes = nnx.StateAxes({nnx.Param: 0, ...: None})
    assert list(axes.keys()) == [nnx.Param, ...]
    assert list(axes.values()) == [0, None]
    assert axes.get(nnx.Param) == 0 and axes.get(..., 1) is None
    with pytest.raises(ValueError, match="not in tuple"):  # flax 0.12.8 looks it up by index
        axes.get(nnx.BatchStat)


@_covers("DiffState.map_prefix")
def test_diff_state_map_prefix() -> None:
    diff = nnx.DiffState(0, nnx.Param)
    assert diff.map_prefix(("kernel",), _param()) is True
    assert diff.map_prefix(("mean",), nnx.BatchStat(jnp.ones(1))) is False


@_covers("PathContains.__init__(exact)")
def test_path_contains_exact() -> None:
    loose, exact = nnx.PathContains("ker", exact=False), nnx.PathContains("ker")
    assert (loose.exact, exact.exact) == (False, True)
    assert loose(("layer", "kernel"), None) is True
    assert exact(("layer", "kernel"), None) is False
    assert nnx.PathContains("kernel", exact=True)(("layer", "kernel"), None) is True
    assert loose != exact and exact == nnx.PathContains("ker", exact=True)
    assert len({loose, nnx.PathContains("ker", exact=False), exact}) == 2
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    assert list(nnx.state(model, nnx.PathContains("kern", exact=False))) == ["kernel"]


def test_sow_and_perturb_outside_capture_are_flaxs_own() -> None:
    """The served ``sow``/``perturb`` store in ``__captures__`` only under ``nnx.capture``."""

    class Sowing(nnx.Module):
        def __call__(self, x: jax.Array) -> jax.Array:
            self.sow(nnx.Intermediate, "h", x)
            return self.perturb("p", x)  # type: ignore[no-any-return]

    sowing = Sowing()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # flax 0.12.6+: outside capture
        sowing(jnp.ones(1))
        sowing(jnp.full(1, 2.0))
    assert type(sowing.h) is nnx.Intermediate and type(sowing.p) is nnx.Perturbation
    assert [float(v[0]) for v in sowing.h.get_value()] == [1.0, 2.0]  # a tuple of both calls
    assert "__captures__" not in vars(sowing)
