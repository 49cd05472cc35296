"""Legacy sharding annotations on every flax, and flax 0.10's FSDP toy pattern on 8 devices."""

from __future__ import annotations

import warnings
from typing import Any

import flax.nnx as upstream
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import nnx_compat
from nnx_compat import _versions, nnx
from tests.markers import line_of

KEY = _versions.sharding_metadata_key()  # sharding (0.10), sharding_names (0.11), out_sharding
EAGER = _versions.feature("EAGER_SHARDING")  # flax 0.12.0
OLD_KEYS_WARN = KEY == "out_sharding"  # flax 0.12.4 deprecates the older keys


def _pspec(variable: Any) -> Any:
    return upstream.get_partition_spec(upstream.state({"v": variable}))["v"]


def _spec_of(pspec_leaf: Any) -> Any:
    return pspec_leaf.get_value() if hasattr(pspec_leaf, "get_value") else pspec_leaf.value


# --- reproduction ---------------------------------------------------------------------------------


def test_reproduce_annotation_without_mesh(upstream_variable: None) -> None:
    x = jnp.ones((4, 4))
    if EAGER:
        with pytest.raises(ValueError, match="An auto mesh context or metadata is required"):
            upstream.Param(x, **{KEY: (None, "model")})
    else:
        assert upstream.Param(x, **{KEY: (None, "model")}).get_metadata()[KEY] == (None, "model")


def test_reproduce_rules_applied_without_mesh(upstream_variable: None) -> None:
    # flax 0.10.7's test_nnx_linen_nnx: rules given as one pair, not a tuple of pairs
    rules = ("out-alias", "out")
    if EAGER:  # flax 0.12.8 applies the rules at creation, before it looks for a mesh (0.12.3
        # looks for the mesh first)
        with pytest.raises(ValueError, match=r"too many values to unpack|auto mesh context"):
            upstream.Param(jnp.ones(2), **{KEY: ("out-alias",)}, sharding_rules=rules)
    else:  # flax 0.10 and 0.11 keep them as metadata
        param = upstream.Param(jnp.ones(2), **{KEY: ("out-alias",)}, sharding_rules=rules)
        assert param.get_metadata()["sharding_rules"] == rules


@pytest.mark.parametrize("mesh", [{}, {"mesh": None}], ids=["no-mesh", "mesh-None"])
def test_rules_that_fail_without_a_mesh_are_kept_as_metadata(mesh: dict[str, Any]) -> None:
    # mesh=None: what flax's Linen bridge (bridge.ToNNX) passes for a Linen annotation
    rules = ("out-alias", "out")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        param = nnx.Param(jnp.ones(2), **{KEY: ("out-alias",)}, sharding_rules=rules, **mesh)
    assert param.get_metadata()["sharding_rules"] == rules
    assert np.asarray(param[...]).tolist() == [1.0, 1.0]
    hits = [str(w.message) for w in caught if "sharding-without-mesh" in str(w.message)]
    assert len(hits) == EAGER
    # in a mesh the rules are flax's to apply: its error stands
    if EAGER:
        mesh = jax.make_mesh((1,), ("out",), devices=jax.devices()[:1])
        with jax.set_mesh(mesh), pytest.raises(ValueError, match="too many values to unpack"):
            nnx.Param(jnp.ones(2), **{KEY: ("out-alias",)}, sharding_rules=rules)


# --- keys and the missing mesh ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["sharding", "sharding_names", "out_sharding"])
def test_every_key_is_stored_under_the_installed_flaxs_key(key: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        param = nnx.Param(jnp.ones((4, 2)), **{key: ("model", None)})  # MARK-param
    assert param.get_metadata()[KEY] == ("model", None)
    assert all(k == KEY or k not in param.get_metadata() for k in ("sharding", "sharding_names"))
    assert _spec_of(_pspec(param)) == P("model", None)
    ids = [str(w.message).rsplit("[nnx-compat: ", 1)[1].split("]")[0] for w in caught]
    expected = []
    if key != KEY and OLD_KEYS_WARN:
        expected.append("sharding-metadata-key")
    if EAGER:
        expected.append("sharding-without-mesh")
    assert ids == expected
    assert all(w.lineno == line_of(__file__, "MARK-param") for w in caught)
    assert all(issubclass(w.category, nnx_compat.ShardingDeprecationWarning) for w in caught)


def test_with_partitioning_without_mesh() -> None:
    init = nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, "model"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        linear = nnx.Linear(4, 8, kernel_init=init, rngs=nnx.Rngs(0))  # MARK-linear
    assert _spec_of(_pspec(linear.kernel)) == P(None, "model")
    assert [(w.filename, w.lineno) for w in caught] == (
        [(__file__, line_of(__file__, "MARK-linear"))] if EAGER else []
    )


def test_both_keys_is_an_error_naming_the_fix() -> None:
    other = "sharding" if KEY != "sharding" else "out_sharding"
    with pytest.raises(TypeError, match=f"pass only {KEY}="):
        nnx.Param(jnp.ones(2), **{KEY: ("a",), other: ("a",)})


def _use_mesh(mesh: Mesh) -> Any:
    return jax.set_mesh(mesh) if hasattr(jax, "set_mesh") else jax.sharding.use_mesh(mesh)


def _auto_mesh() -> Mesh:
    auto = (jax.sharding.AxisType.Auto,) * 2
    return jax.make_mesh((2, 4), ("data", "model"), axis_types=auto, devices=jax.devices()[:8])


@pytest.mark.multidevice
def test_under_a_mesh_variables_shard_eagerly_without_warnings() -> None:
    mesh = _mesh()
    # flax 0.12 shards eagerly by default; an older flax does not, unless asked (below)
    assert nnx.using_eager_sharding() is EAGER
    with nnx.use_eager_sharding(True), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nnx.using_eager_sharding()
        with _use_mesh(mesh):
            param = nnx.Param(jnp.ones((4, 8)), out_sharding=P(None, "model"))
        explicit = nnx.Param(jnp.ones(2), out_sharding=P("model"), eager_sharding=False)
    assert nnx.using_eager_sharding() is EAGER
    assert param[...].sharding.spec == P(None, "model")
    assert not isinstance(explicit[...].sharding, NamedSharding)
    np.testing.assert_array_equal(np.asarray(param[...]), np.ones((4, 8)))


@pytest.mark.multidevice
def test_eager_sharding_of_the_flax_gspmd_guide() -> None:
    """flax 0.12.8's guide (docs_nnx/guides/flax_gspmd): eager sharding asked for, on every flax."""
    mesh = _auto_mesh()
    with nnx.use_eager_sharding(True):
        # a mesh given as metadata, no mesh context
        param = nnx.Param(jnp.ones((4, 4)), out_sharding=(None, "model"), eager_sharding=True,
                          mesh=mesh)  # fmt: skip
        assert param[...].sharding.spec == P(None, "model")
        assert param[...].sharding.mesh.shape == mesh.shape

        @jax.jit
        def init_sharded_kernel(key: jax.Array) -> Any:
            init = nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, "model"))
            linear = nnx.Linear(4, 8, use_bias=False, rngs=nnx.Rngs(key), kernel_init=init)
            return linear.kernel[...]

        with _use_mesh(mesh):
            kernel = init_sharded_kernel(jax.random.key(0))
        # sharded by the sharding constraint inside jit; the same numbers as unsharded
        assert kernel.sharding.spec == P(None, "model")
        with nnx.use_eager_sharding(False):
            plain = nnx.Linear(
                4, 8, use_bias=False, rngs=nnx.Rngs(jax.random.key(0)),
                kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, "model")),
            )  # fmt: skip
    np.testing.assert_array_equal(np.asarray(kernel), np.asarray(plain.kernel[...]))


@pytest.mark.multidevice
def test_eager_sharding_applies_the_logical_axis_rules_and_explicit_meshes() -> None:
    explicit = (jax.sharding.AxisType.Explicit,) * 2
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=explicit, devices=jax.devices()[:8])
    with nnx.use_eager_sharding(True), _use_mesh(mesh):
        with nnx.logical_axis_rules((("embed", "model"),)):
            renamed = nnx.Param(jnp.ones((4, 8)), out_sharding=(None, "embed"))
        own_rules = nnx.Param(
            jnp.ones((4, 8)), out_sharding=("batch", None), sharding_rules=(("batch", "data"),)
        )
    assert renamed[...].sharding.spec == P(None, "model")
    assert own_rules[...].sharding.spec == P("data", None)


def test_eager_sharding_without_a_mesh() -> None:
    # asked for on the Variable: flax 0.12's error
    with pytest.raises(ValueError, match="An auto mesh context or metadata is required"):
        nnx.Param(jnp.ones(2), out_sharding=("a",), eager_sharding=True)
    # asked for by the setting: created unsharded with a warning, as flax 0.12 through
    # nnx_compat does (0.10 code annotates Variables with no mesh)
    warns = pytest.warns(nnx_compat.ShardingDeprecationWarning, match="sharding-without-mesh")
    with nnx.use_eager_sharding(True), warns:
        param = nnx.Param(jnp.ones(2), out_sharding=("a",))
    assert param.get_metadata()[KEY] == ("a",)


@pytest.mark.multidevice
@pytest.mark.skipif(not EAGER, reason="eager sharding: flax 0.12.0+")
def test_a_named_sharding_carries_its_mesh_outside_a_mesh_context() -> None:
    """flax 0.12.6+ shards with a NamedSharding's own mesh; only a failing creation is bridged."""
    mesh = _mesh()
    sharding = NamedSharding(mesh, P("data", None))
    if not _versions.feature("NAMED_SHARDING_MESH"):
        # flax 0.12.1-0.12.5 want a mesh context even for a NamedSharding: bridged as any
        # annotation created outside a mesh
        with pytest.warns(nnx_compat.ShardingDeprecationWarning, match="sharding-without-mesh"):
            nnx.Variable(jnp.ones((4, 4)), **{KEY: sharding})
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = nnx.Variable(jnp.ones((4, 4)), out_sharding=sharding)
    assert ours[...].sharding.is_equivalent_to(sharding, 2)
    assert ours[...].sharding.spec == P("data", None)
    # a mesh made with jax.make_mesh and its axis types, set with jax.set_mesh
    auto = (jax.sharding.AxisType.Auto,) * 2
    made = jax.make_mesh((2, 2), ("data", "model"), axis_types=auto, devices=jax.devices()[:4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with jax.set_mesh(made):
            in_context = nnx.Variable(jnp.ones((4, 4)), out_sharding=P("data", "model"))
    assert in_context[...].sharding.spec == P("data", "model")
    assert nnx_compat.report() == ()


# --- flax 0.10's FSDP toy pattern, on 8 host devices ----------------------------------------------


def _mesh() -> Mesh:
    if len(jax.devices()) < 8:
        pytest.fail("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8")
    return Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))


class MLP(nnx.Module):
    """The model of flax 0.10's FSDP example: annotations, no mesh at construction."""

    def __init__(self, din: int, dmid: int, dout: int, rngs: Any) -> None:
        init = nnx.initializers.lecun_normal()
        self.w1 = nnx.Param(init(rngs.params(), (din, dmid)), sharding=(None, "model"))
        self.b1 = nnx.Param(jnp.zeros((dmid,)), sharding=("model",))
        self.out = nnx.Linear(
            dmid, dout, kernel_init=nnx.with_partitioning(init, ("model", None)), rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(nnx.relu(x @ self.w1 + self.b1))


EXPECTED_SPECS = {
    "w1": P(None, "model"),
    "b1": P("model"),
    "out/kernel": P("model", None),
    "out/bias": P(),
}


def _data(mesh: Mesh, n: int = 16) -> tuple[jax.Array, jax.Array]:
    x = np.linspace(-2, 2, n, dtype=np.float32)[:, None]
    y = 0.8 * x**2 + 0.1
    sharding = NamedSharding(mesh, P("data", None))
    return jax.device_put(x, sharding), jax.device_put(y, sharding)


def _train_legacy(mesh: Mesh, steps: int) -> tuple[Any, list[float]]:
    """Written as flax 0.10's example: create and shard in one jitted function, then train."""

    @nnx.jit
    def create_sharded() -> tuple[MLP, Any]:
        model = MLP(1, 32, 1, rngs=nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, optax.adam(1e-2))  # 0.10 form: holds the model
        state = nnx.state(optimizer)
        pspecs = nnx.get_partition_spec(state)
        shardings = jax.tree.map(
            lambda p: NamedSharding(mesh, p), pspecs, is_leaf=lambda p: isinstance(p, P)
        )
        nnx.update(optimizer, jax.lax.with_sharding_constraint(state, shardings))
        return model, optimizer

    @nnx.jit
    def train_step(model: MLP, optimizer: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        def loss_fn(model: MLP) -> jax.Array:
            return jnp.mean((y - model(x)) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(grads)  # 0.10 form
        return loss

    model, optimizer = create_sharded()
    x, y = _data(mesh)
    return model, [float(train_step(model, optimizer, x, y)) for _ in range(steps)]


def _specs(model: Any) -> dict[str, Any]:
    flat = nnx_compat._paths.flatten(upstream.state(model))
    # the value of a Variable (a VariableState before flax 0.10.7 cannot be indexed)
    return {path: jax.tree.leaves(variable)[0].sharding.spec for path, variable in flat.items()}


def _normalized(spec: Any) -> tuple[Any, ...]:
    parts = tuple(spec)
    while parts and parts[-1] is None:
        parts = parts[:-1]
    return parts


@pytest.mark.multidevice
def test_fsdp_toy_example_shards_and_trains_on_every_flax() -> None:
    mesh = _mesh()
    with nnx_compat.warnings_policy("ignore"):
        model, losses = _train_legacy(mesh, steps=30)
    assert {k: _normalized(v) for k, v in _specs(model).items()} == {
        k: _normalized(v) for k, v in EXPECTED_SPECS.items()
    }
    assert losses[-1] < losses[0] / 2
    hits = {hit.pattern for hit in nnx_compat.report()}
    assert {"optimizer-wrt-default", "optimizer-update-grads"} <= hits
    assert ("sharding-without-mesh" in hits) == EAGER
    assert ("sharding-metadata-key" in hits) == OLD_KEYS_WARN
    # the same training, unsharded, on one device
    with nnx_compat.warnings_policy("ignore"):
        reference = MLP(1, 32, 1, rngs=nnx.Rngs(0))
        optimizer = nnx.Optimizer(reference, optax.adam(1e-2), wrt=nnx.Param)
    x, y = (np.asarray(a) for a in _data(mesh))
    for loss in losses:
        value, grads = nnx.value_and_grad(lambda m: jnp.mean((y - m(x)) ** 2))(reference)
        optimizer.update(reference, grads)
        np.testing.assert_allclose(float(value), loss, rtol=1e-4)


@pytest.mark.multidevice
@pytest.mark.skipif(not EAGER, reason="the native new form shards eagerly from flax 0.12.0")
def test_fsdp_toy_shards_like_the_native_new_form() -> None:
    mesh = _mesh()
    with nnx_compat.warnings_policy("ignore"):
        legacy, _ = _train_legacy(mesh, steps=1)

    class Native(upstream.Module):  # type: ignore[misc]
        def __init__(self, rngs: Any) -> None:
            init = upstream.initializers.lecun_normal()
            self.w1 = upstream.Param(init(rngs.params(), (1, 32)), out_sharding=P(None, "model"))
            self.b1 = upstream.Param(jnp.zeros((32,)), out_sharding=P("model"))
            kernel_init = upstream.with_partitioning(init, P("model", None))
            self.out = upstream.Linear(32, 1, kernel_init=kernel_init, rngs=rngs)

    with jax.set_mesh(mesh):
        native = Native(upstream.Rngs(0))
    assert {k: _normalized(v) for k, v in _specs(legacy).items()} == {
        k: _normalized(v) for k, v in _specs(native).items()
    }


# --- flax 0.10's reads of the partition names ---------------------------------------------------


def _annotated(names: tuple[str, ...]) -> Any:
    with nnx_compat.warnings_policy("ignore"):  # sharding-without-mesh on flax 0.12
        return nnx.Param(jnp.ones((4, 4)), **{KEY: names})


def test_variable_sharding_on_a_traced_value_gives_the_names() -> None:
    """flax 0.10's metadata attribute; flax 0.11+ raises for a tracer (it reads the array's)."""
    variable = _annotated(("a", "b"))
    if KEY == "sharding":  # flax 0.10: the metadata itself, everywhere
        assert variable.sharding == ("a", "b")
    else:  # outside a trace: the array's sharding, flax's meaning
        assert isinstance(variable.sharding, jax.sharding.Sharding)
    seen: list[Any] = []

    class Holder(nnx.Module):  # a Variable is no transform argument of its own before 0.10.7
        def __init__(self, variable: Any) -> None:
            self.variable = variable

    @nnx.vmap
    def names(holder: Any) -> Any:
        seen.append(holder.variable.sharding)  # TRACED-SHARDING
        return holder.variable[...]

    with nnx_compat.warnings_policy("ignore"):
        stacked = nnx.Param(jnp.ones((2, 4, 4)), **{KEY: ("layers", "a", "b")})
    if KEY == "sharding":
        names(Holder(stacked))
    else:
        with pytest.warns(
            nnx_compat.ShardingDeprecationWarning, match="variable-sharding-traced"
        ) as caught:
            names(Holder(stacked))
        assert caught[0].lineno == line_of(__file__, "TRACED-SHARDING")
    assert seen == [("layers", "a", "b")]  # no PARTITION_NAME: the names stay, as on 0.10
    unannotated = Holder(nnx.Param(jnp.ones(2)))
    with pytest.raises(AttributeError, match="sharding"):
        nnx.jit(lambda holder: holder.variable.sharding)(unannotated)


def test_linen_bridge_metadata_sharding_key() -> None:
    """``NNXMeta.metadata['sharding']``: flax 0.11+ stores the names under its own key."""
    from flax import linen
    from flax.nnx import bridge

    class Block(nnx.Module):
        def __init__(self, *, rngs: Any) -> None:
            init = nnx.with_partitioning(nnx.initializers.ones, ("a", "b"))
            with nnx_compat.warnings_policy("ignore"):
                self.w = nnx.Param(init(rngs.params(), (2, 2)))

        def __call__(self, x: jax.Array) -> jax.Array:
            return x @ self.w[...]

    with nnx_compat.warnings_policy("ignore"):
        variables = bridge.ToLinen(Block).init(jax.random.key(0), jnp.ones(2))
    meta = variables["params"]["w"]
    assert isinstance(meta, linen.meta.AxisMetadata)
    assert dict(meta.metadata)[KEY] == ("a", "b")
    if KEY == "sharding":
        assert meta.metadata["sharding"] == ("a", "b")
        return
    with pytest.raises(KeyError):
        dict(meta.metadata)["sharding"]  # flax's own dict
    assert "sharding" not in meta.metadata and meta.metadata.get("sharding") is None
    with pytest.warns(
        nnx_compat.ShardingDeprecationWarning, match="linen-bridge-sharding-metadata"
    ) as caught:
        names = meta.metadata["sharding"]  # BRIDGE-SHARDING
    assert caught[0].lineno == line_of(__file__, "BRIDGE-SHARDING")
    assert names == ("a", "b")
    with pytest.raises(KeyError):
        meta.metadata["no_such_key"]
    with nnx_compat.warnings_policy("ignore"):
        rebuilt = meta.to_nnx_variable()
    assert rebuilt.get_metadata()[KEY] == ("a", "b")  # ** sees only the real keys
    assert "sharding" not in rebuilt.get_metadata() or KEY == "sharding"


def test_transform_metadata_and_optimizer_state_carry_the_names() -> None:
    """flax 0.10's ``transform_metadata={nnx.PARTITION_NAME: ...}`` and its optimizer state
    carrying the model's names: native on every flax, under the installed flax's key."""

    class Block(nnx.Module):
        def __init__(self, rngs: Any) -> None:
            init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("a", "b"))
            with nnx_compat.warnings_policy("ignore"):
                self.w = nnx.Param(init(rngs.params(), (4, 4)))

    @nnx.vmap(in_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def stack(key: jax.Array) -> Any:
        return Block(nnx.Rngs(params=key))

    with nnx_compat.warnings_policy("ignore"):
        blocks = stack(jax.random.split(jax.random.key(0), 3))
    assert blocks.w.get_metadata()[KEY] == ("layers", "a", "b")
    spec = nnx.get_partition_spec(nnx.state(blocks))
    assert tuple(_spec_of(spec["w"])) == ("layers", "a", "b")
    with nnx_compat.warnings_policy("ignore"):
        optimizer = nnx.Optimizer(blocks, optax.adam(1e-3), wrt=nnx.Param)
    opt_specs = nnx.get_partition_spec(nnx.state(optimizer, nnx.OptState))
    moments = [tuple(s) for s in jax.tree.leaves(opt_specs, is_leaf=lambda x: isinstance(x, P))]
    assert moments.count(("layers", "a", "b")) == 2  # adam's mu and nu
