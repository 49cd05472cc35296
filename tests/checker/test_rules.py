"""The checker's matchers: for each pattern id, its legacy form is found and its new form is not.

Every case is a small module with ``from flax import nnx`` (other import forms: see
``test_names.py``). The new form of each case is the code the record's ``new`` names; a finding
there would be a false positive, which the checker must not give.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nnx_compat import _patterns
from nnx_compat.checker import applies, check_source
from nnx_compat.checker.rules import RULES

HEAD = "from flax import nnx\nimport jax, optax, jax.numpy as jnp\n"

#: pattern id -> (legacy source, new-form source)
CASES: dict[str, tuple[str, str]] = {
    "optimizer-wrt-default": (
        "opt = nnx.Optimizer(model, optax.adam(1e-3))",
        "opt = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)",
    ),
    "optimizer-wrt-positional": (
        "opt = nnx.Optimizer(model, tx, nnx.Param)",
        "opt = nnx.Optimizer(model, tx, wrt=nnx.Param)",
    ),
    "optimizer-update-grads": (
        "opt = nnx.Optimizer(model, tx, wrt=nnx.Param)\nopt.update(grads)",
        "opt = nnx.Optimizer(model, tx, wrt=nnx.Param)\nopt.update(model, grads)\n"
        "d = {}\nd.update(grads)",
    ),
    "optimizer-model-attribute": (
        "opt = nnx.Optimizer(model, tx, wrt=nnx.Param)\nm = opt.model",
        "both = nnx.ModelAndOptimizer(model, tx, wrt=nnx.Param)\nm = both.model",
    ),
    "split-rngs-over-scan": (
        """
        class Stack(nnx.Module):
            def __call__(self, x):
                @nnx.split_rngs(splits=4)
                @nnx.scan
                def step(x, layer):
                    return layer(x), None
                return step(x, self.layers)
        """,
        """
        class Stack(nnx.Module):
            def __init__(self, rngs):
                @nnx.split_rngs(splits=4)
                @nnx.vmap
                def make(rngs):
                    return nnx.Linear(2, 2, rngs=rngs)
                self.layers = make(rngs)
            def __call__(self, x):
                @nnx.scan
                def step(x, layer):
                    return layer(x), None
                return step(x, self.layers)
        """,
    ),
    "rngs-fork-splits": ("r = rngs.fork(splits=4)", "r = rngs.split(4)"),
    "rngs-fork-split": ("r = rngs.fork(split=4)", "r = rngs.split(4)"),
    "nnx-fork": ("s = nnx.fork(state, ..., 4)", "s = nnx.fork_rngs(rngs, split=4)"),
    "reseed-shared-rngs": (
        "rngs = nnx.Rngs(0)\nmodel = Model(rngs)\nnnx.reseed(rngs, dropout=1)",
        "rngs = nnx.Rngs(0)\nmodel = Model(rngs)\nnnx.reseed(model, dropout=1)",
    ),
    "rngstream-positional-tag": (
        "s = nnx.RngStream('params', key)",
        "s = nnx.RngStream(key, tag='params')",
    ),
    "bridge-to-nnx-rngs": (
        "from flax.nnx import bridge\nm = bridge.ToNNX(dense, rngs=nnx.Rngs(0))",
        "from flax.nnx import bridge\nm = bridge.ToLinen(Model)",
    ),
    "merge-shares-variables": (
        "copy = nnx.merge(*nnx.split(model))",
        "copy = nnx.clone(model)\nsame = nnx.merge(*nnx.split(model), copy=True)",
    ),
    "mutable-arrays": ("a = nnx.mutable_array(x)", "a = jax.new_ref(x)"),
    "nnx-dataclasses": ("f = nnx.field(default=1)", "f = nnx.data(1)"),
    "isinstance-object": ("ok = isinstance(x, nnx.Object)", "ok = isinstance(x, nnx.Pytree)"),
    "list-attribute": (
        """
        class M(nnx.Module):
            def __init__(self, rngs):
                self.layers = [nnx.Linear(2, 2, rngs=rngs) for _ in range(3)]
        """,
        """
        class M(nnx.Module):
            def __init__(self, rngs):
                self.layers = nnx.List([nnx.Linear(2, 2, rngs=rngs) for _ in range(3)])
                self.sizes = [2, 2, 3]
        """,
    ),
    "dict-attribute": (
        """
        class M(nnx.Module):
            def __init__(self, rngs):
                self.blocks = {'a': nnx.Linear(2, 2, rngs=rngs)}
        """,
        """
        class M(nnx.Module):
            def __init__(self, rngs):
                self.blocks = nnx.Dict({'a': nnx.Linear(2, 2, rngs=rngs)})
                self.config = {'a': 1}
        """,
    ),
    "container-filled-after-init": (
        """
        class M(nnx.Module):
            def __init__(self):
                self.items = {}
            def add(self, name, rngs):
                self.items[name] = nnx.Linear(2, 2, rngs=rngs)
        """,
        """
        class M(nnx.Module):
            def __init__(self):
                self.items = nnx.Dict()
            def add(self, name, rngs):
                self.items[name] = nnx.Linear(2, 2, rngs=rngs)
        """,
    ),
    "static-attribute-data": (
        """
        class M(nnx.Module):
            def __init__(self, rngs):
                self.head = None
            def build(self, rngs):
                self.head = nnx.Linear(2, 2, rngs=rngs)
        """,
        """
        class M(nnx.Module):
            def __init__(self, rngs):
                self.head = nnx.data(None)
            def build(self, rngs):
                self.head = nnx.Linear(2, 2, rngs=rngs)
        """,
    ),
    "variable-value": (
        """
        class M(nnx.Module):
            def __init__(self):
                self.count = nnx.BatchStat(jnp.zeros(()))
            def __call__(self):
                return self.count.value
        """,
        """
        class M(nnx.Module):
            def __init__(self):
                self.count = nnx.BatchStat(jnp.zeros(()))
                self.mode = Enum('mode', 'a b').a
            def __call__(self):
                return self.count[...] + self.mode.value
        """,
    ),
    "variable-inplace-op": (
        """
        class M(nnx.Module):
            def __init__(self):
                self.count = nnx.Variable(jnp.zeros(()))
            def __call__(self):
                self.count += 1
        """,
        """
        class M(nnx.Module):
            def __init__(self):
                self.count = nnx.Variable(jnp.zeros(()))
                self.steps = 0
            def __call__(self):
                self.count[...] += 1
                self.steps += 1
        """,
    ),
    "state-copies": (
        """
        graphdef, params, counts = nnx.split(model, nnx.Param, Count)

        @jax.jit
        def train_step(params, counts, x):
            def loss_fn(params):
                model = nnx.merge(graphdef, params, counts)
                return model(x).sum(), nnx.state(model, Count)
            return jax.grad(loss_fn, has_aux=True)(params)
        """,
        """
        graphdef, params, counts = nnx.split(model, nnx.Param, Count)

        @jax.jit
        def train_step(params, counts, x):
            def loss_fn(params):
                model = nnx.merge(graphdef, params, counts, copy=True)
                return model(x).sum(), nnx.state(model, Count)
            return jax.grad(loss_fn, has_aux=True)(params)

        @jax.jit
        def test_step(params, counts, x):
            return nnx.merge(graphdef, params, counts)(x)
        """,
    ),
    "variable-state": ("s = nnx.VariableState(nnx.Param, x)", "s = nnx.Param(x)"),
    "variable-hooks": (
        "init = nnx.with_metadata(nnx.initializers.ones, get_value_hooks=(f,))",
        "init = nnx.with_metadata(nnx.initializers.ones, tag='x')",
    ),
    "flax-internals": ("h = nnx.graph.fingerprint(model)", "g = nnx.graphdef(model)"),
    "with-sharding-constraint": (
        "y = nnx.with_sharding_constraint(x, spec, mesh)",
        "y = jax.lax.with_sharding_constraint(x, spec)",
    ),
    "linen-bridge-sharding-metadata": (
        "names = variables['params']['w'].metadata['sharding']",
        "names = variables['params']['w'].metadata['out_sharding']",
    ),
    "sharding-metadata-key": (
        "w = nnx.Param(x, sharding=('a', 'b'))",
        "w = nnx.Param(x, out_sharding=('a', 'b'))",
    ),
    "dropout-positional": (
        "d = nnx.Dropout(0.5, (0,), rngs=rngs)",
        "d = nnx.Dropout(0.5, broadcast_dims=(0,), rngs=rngs)",
    ),
    "rnn-positional": ("r = nnx.RNN(cell, True)", "r = nnx.RNN(cell, time_major=True)"),
    "mha-positional": (
        "a = nnx.MultiHeadAttention(8, 64, 64, 64, rngs=rngs)",
        "a = nnx.MultiHeadAttention(8, 64, 64, out_features=64, rngs=rngs)",
    ),
    "recurrent-layers-fork-rngs": (
        "cell = nnx.LSTMCell(2, 3, rngs=rngs)\nc = cell.initialize_carry((1, 2))\n"
        "r = nnx.RNN(cell, rngs=None)",
        "cell = nnx.LSTMCell(2, 3, rngs=rngs)\nc = cell.initialize_carry((1, 2), rngs)\n"
        "r = nnx.RNN(cell)",
    ),
    "layer-init-attributes": (
        "layer = nnx.Linear(2, 3, rngs=rngs)\ninit = layer.kernel_init",
        "init = nnx.initializers.lecun_normal()\nlayer = nnx.Linear(2, 3, kernel_init=init, "
        "rngs=rngs)",
    ),
    "sequential-empty": ("s = nnx.Sequential()", "s = nnx.Sequential(lambda x: x)"),
    "jit-abstracted-axes": (
        "f = nnx.jit(g, abstracted_axes=({0: 'n'},))",
        "f = nnx.jit(g)",
    ),
    "pmap-global-arg-shapes": (
        "f = nnx.pmap(g, global_arg_shapes=None)",
        "f = nnx.pmap(g)",
    ),
    "shard-map-check-rep": (
        "f = nnx.shard_map(g, mesh=mesh, in_specs=s, out_specs=s, check_rep=False)",
        "f = nnx.shard_map(g, mesh=mesh, in_specs=s, out_specs=s, check_vma=False)",
    ),
    "transforms-bound-methods": (
        "model = nnx.Linear(2, 3, rngs=rngs)\nf = nnx.jit(model.__call__)",
        "model = nnx.Linear(2, 3, rngs=rngs)\nf = nnx.jit(nnx.Linear.__call__)\n"
        "g = nnx.jit(lambda m, x: m(x))",
    ),
}


def _findings(body: str, target: str = "0.12", native: bool = True) -> list[str]:
    source = HEAD + textwrap.dedent(body)
    return [f.pattern for f in check_source(source, target=target, native=native)]


def test_every_pattern_has_a_matcher_or_says_why_not() -> None:
    for pattern in _patterns.PATTERNS:
        assert (pattern.id in RULES) != pattern.run_time_only, pattern.id
        if pattern.static and not pattern.run_time_only:  # a matcher for its common shapes
            assert pattern.static.startswith("partly static: "), pattern.id
    assert set(RULES) <= {p.id for p in _patterns.PATTERNS}


def test_every_matcher_has_a_case() -> None:
    assert set(CASES) == set(RULES)


@pytest.mark.parametrize("pattern_id", sorted(CASES))
def test_the_legacy_form_is_found(pattern_id: str) -> None:
    legacy, _ = CASES[pattern_id]
    assert pattern_id in _findings(legacy)


@pytest.mark.parametrize("pattern_id", sorted(CASES))
def test_the_new_form_is_not(pattern_id: str) -> None:
    _, new = CASES[pattern_id]
    assert _findings(new) == []


@pytest.mark.parametrize("pattern_id", sorted(CASES))
def test_a_011_target_skips_what_flax_012_changed(pattern_id: str) -> None:
    legacy, _ = CASES[pattern_id]
    found = pattern_id in _findings(legacy, target="0.11")
    assert found == applies(_patterns.get(pattern_id), "0.11")


def test_native_patterns_are_reported_only_on_request() -> None:
    """A native pattern's legacy text is new-API code too (the call runs, with flax's meaning)."""
    native = [p.id for p in _patterns.PATTERNS if p.same_call and p.id in RULES]
    assert native
    for pattern_id in native:
        legacy, _ = CASES[pattern_id]
        assert pattern_id not in _findings(legacy, native=False)
        assert pattern_id in _findings(legacy, native=True)


def test_nnx_dataclass_and_static_are_legacy_only_for_a_011_target() -> None:
    code = "@nnx.dataclass\nclass C(nnx.Pytree):\n    x: int = nnx.static()\n"
    assert _findings(code) == []  # flax 0.12's own API
    assert _findings(code, target="0.11") == ["nnx-dataclasses", "nnx-dataclasses"]


def test_without_flax_nnx_nothing_is_matched() -> None:
    code = "class Optimizer:\n    pass\nopt = Optimizer(model, tx)\nopt.update(grads)\n"
    assert [f.pattern for f in check_source(code)] == []


def test_suppression_comments() -> None:
    code = HEAD + (
        "a = nnx.Dropout(0.5, (0,))  # nnx-compat: ignore\n"
        "b = nnx.Dropout(0.5, (0,))  # nnx-compat: ignore[dropout-positional]\n"
        "c = nnx.Dropout(0.5, (0,))  # nnx-compat: ignore[rnn-positional]\n"
    )
    assert [(f.line, f.pattern) for f in check_source(code)] == [(5, "dropout-positional")]


def test_select_and_ignore() -> None:
    code = HEAD + "a = nnx.Dropout(0.5, (0,))\nr = rngs.fork(splits=2)\n"
    assert [f.pattern for f in check_source(code, select=["rngs-fork-splits"])] == [
        "rngs-fork-splits"
    ]
    assert [f.pattern for f in check_source(code, ignore=["rngs-fork-splits"])] == [
        "dropout-positional"
    ]


def test_a_syntax_error_is_one_finding_with_its_location() -> None:
    (finding,) = check_source("from flax import nnx\ndef f(:\n", "broken.py")
    assert finding.pattern == "syntax-error"
    assert (finding.path, finding.line) == ("broken.py", 2)
    assert finding.text().startswith("broken.py:2:")


GUIDE = Path(__file__).resolve().parents[1] / "fixtures" / "guide"


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        ("scan_over_layers", ["split-rngs-over-scan"]),
        ("optimizer", ["optimizer-update-grads", "optimizer-wrt-default"]),
    ],
)
def test_the_migration_guides_two_forms(example: str, expected: list[str]) -> None:
    """The official 0.10 -> 0.11 guide's v0.10 code is found, its v0.11 code is not."""
    for target in ("0.11", "0.12"):
        legacy = (GUIDE / f"{example}_010.py").read_text()
        new = (GUIDE / f"{example}_011.py").read_text()
        assert sorted({f.pattern for f in check_source(legacy, target=target)}) == expected
        assert check_source(new, target=target) == []


def test_the_010_nnx_basics_guide() -> None:
    """NNX Basics as flax 0.10 wrote it (``from flax.experimental import nnx``, its code cells
    verbatim): the 0.10 Optimizer and ``.value`` on Variables and user Variable subclasses."""
    from nnx_compat.checker import check_notebook

    text = (GUIDE / "nnx_basics_010.ipynb").read_text()
    found = sorted(f.pattern for f in check_notebook(text, "nnx_basics.ipynb"))
    assert found == sorted(
        ["optimizer-update-grads", "optimizer-wrt-default"] + ["variable-value"] * 7
    )
    assert [f.pattern for f in check_notebook(text, "x", target="0.11")] == [
        "optimizer-wrt-default",
        "optimizer-update-grads",
    ]


@pytest.mark.parametrize(
    "body",
    [
        # a closure of a function that jax.grad traces, inside a jitted function
        "def f(params):\n    return nnx.merge(graphdef, params, counts)\ng = jax.grad(f)\n",
        # a global, under a jax.jit decorator
        "@jax.jit\ndef f(x):\n    return nnx.merge(graphdef, state)(x)\n",
        # @partial(jax.jit, ...) and jax.value_and_grad
        "@partial(jax.jit, static_argnums=0)\ndef f(n, x):\n    return nnx.merge(g, s)(x)\n",
        "def f(p):\n    return nnx.merge(g, p, state.counts)(x)\njax.value_and_grad(f)(p)\n",
        # a lambda passed to the transform
        "jax.grad(lambda p: loss(nnx.merge(graphdef, p, counts)))(params)\n",
        # a jax.lax.scan body and a fori_loop body, through `from jax import lax`
        "def body(c, x):\n    return nnx.merge(g, s)(c), None\nlax.scan(body, c, xs)\n",
        "def body(i, c):\n    return nnx.merge(g, s)(c)\nlax.fori_loop(0, 3, body, c)\n",
        # graphdef.apply of a GraphDef that nnx.split made
        "graphdef, state = nnx.split(model)\n"
        "def body(c, x):\n    return graphdef.apply(state)(c)\njax.lax.scan(body, c, xs)\n",
    ],
)
def test_state_copies_shapes_are_found(body: str) -> None:
    head = "from functools import partial\nfrom jax import lax\n"
    assert _findings(head + body) == ["state-copies"]


@pytest.mark.parametrize(
    "body",
    [
        # the state is the traced function's own argument: Variables of its own trace
        "@jax.jit\ndef f(graphdef, state, x):\n    return nnx.merge(graphdef, state)(x)\n",
        # assigned in the function
        "@jax.jit\ndef f(x):\n    s = nnx.state(m)\n    return nnx.merge(g, s)(x)\n",
        # not traced: a plain function, an nnx transform (which handles its own state)
        "def f(x):\n    return nnx.merge(graphdef, state)(x)\n",
        "@nnx.jit\ndef f(x):\n    return nnx.merge(graphdef, state)(x)\n",
        # copy= given, and the apply of something nnx.split did not make
        "@jax.jit\ndef f(x):\n    return nnx.merge(g, s, copy=True)(x)\n",
        "@jax.jit\ndef f(x):\n    return other.apply(state)(x)\n",
        # jit of another module's name
        "import mylib\n@mylib.jit\ndef f(x):\n    return nnx.merge(g, s)(x)\n",
    ],
)
def test_state_copies_other_shapes_are_not(body: str) -> None:
    assert _findings(body) == []


def test_state_copies_for_a_target_before_its_release() -> None:
    legacy, _ = CASES["state-copies"]
    assert "state-copies" in _findings(legacy, target="0.11")  # flax 0.11.2's merge
    assert "state-copies" not in _findings(legacy, target="0.11.1")  # 0.11.1 still copied


def test_split_rngs_over_scan_is_found_at_the_decorator_line() -> None:
    """One line per finding: the decorator's, as the run-time warning names it."""
    legacy, _ = CASES["split-rngs-over-scan"]
    source = HEAD + textwrap.dedent(legacy)
    (finding,) = check_source(source)
    line = source.splitlines()[finding.line - 1]
    assert line.strip() == "@nnx.split_rngs(splits=4)"
    assert finding.column == line.index("@") + 2  # the decorator's expression
