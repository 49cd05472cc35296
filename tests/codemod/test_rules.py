"""The codemod's rules: for each pattern id, a no-op case first (the new form stays as it
is), then the legacy case rewritten, then a second run that changes nothing."""

from __future__ import annotations

import textwrap

import pytest

from nnx_compat import _patterns
from nnx_compat.codemod import REWRITES, _load_rules, migrate_source
from tests.checker.test_rules import CASES, HEAD

_load_rules()

#: pattern id -> the legacy case of tests/checker/test_rules.py, rewritten (reviewed by hand)
AFTER: dict[str, str] = {
    "state-copies": (
        "\n"
        "graphdef, params, counts = nnx.split(model, nnx.Param, Count)\n"
        "\n"
        "@jax.jit\n"
        "def train_step(params, counts, x):\n"
        "    def loss_fn(params):\n"
        "        model = nnx.merge(graphdef, params, counts, copy=True)\n"
        "        return model(x).sum(), nnx.state(model, Count)\n"
        "    return jax.grad(loss_fn, has_aux=True)(params)\n"
    ),
    "container-filled-after-init": (
        "\n"
        "class M(nnx.Module):\n"
        "    def __init__(self):\n"
        "        self.items = nnx.Dict()\n"
        "    def add(self, name, rngs):\n"
        "        self.items[name] = nnx.Linear(2, 2, rngs=rngs)\n"
    ),
    "static-attribute-data": (
        "\n"
        "class M(nnx.Module):\n"
        "    def __init__(self, rngs):\n"
        "        self.head = nnx.data(None)\n"
        "    def build(self, rngs):\n"
        "        self.head = nnx.Linear(2, 2, rngs=rngs)\n"
    ),
    "dict-attribute": (
        "\n"
        "class M(nnx.Module):\n"
        "    def __init__(self, rngs):\n"
        "        self.blocks = nnx.Dict({'a': nnx.Linear(2, 2, rngs=rngs)})\n"
    ),
    "dropout-positional": "d = nnx.Dropout(0.5, broadcast_dims=(0,), rngs=rngs)",
    "isinstance-object": "ok = isinstance(x, nnx.Pytree)",
    "jit-abstracted-axes": "f = nnx.jit(g)",
    "linen-bridge-sharding-metadata": "names = variables['params']['w'].metadata['out_sharding']",
    "list-attribute": (
        "\n"
        "class M(nnx.Module):\n"
        "    def __init__(self, rngs):\n"
        "        self.layers = nnx.List([nnx.Linear(2, 2, rngs=rngs) for _ in r"
        "ange(3)])\n"
    ),
    "mha-positional": (
        "a = nnx.MultiHeadAttention(8, 64, qkv_features=64, out_features=64, rngs=rngs)"
    ),
    "optimizer-model-attribute": ("opt = nnx.Optimizer(model, tx, wrt=nnx.Param)\nm = model"),
    "optimizer-update-grads": (
        "opt = nnx.Optimizer(model, tx, wrt=nnx.Param)\nopt.update(model, grads)"
    ),
    "optimizer-wrt-default": "opt = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)",
    "optimizer-wrt-positional": "opt = nnx.Optimizer(model, tx, wrt=nnx.Param)",
    "pmap-global-arg-shapes": "f = nnx.pmap(g)",
    "recurrent-layers-fork-rngs": (
        "cell = nnx.LSTMCell(2, 3, rngs=rngs)\nc = cell.initialize_carry((1, 2))\nr = nnx.RNN(cell)"
    ),
    "rngs-fork-split": "r = rngs.split(4)",
    "rngs-fork-splits": "r = rngs.split(4)",
    "rngstream-positional-tag": "s = nnx.RngStream(key, tag='params')",
    "rnn-positional": "r = nnx.RNN(cell, time_major=True)",
    "shard-map-check-rep": (
        "f = nnx.shard_map(g, mesh=mesh, in_specs=s, out_specs=s, check_vma=False)"
    ),
    "sharding-metadata-key": "w = nnx.Param(x, out_sharding=('a', 'b'))",
    "split-rngs-over-scan": (
        "\n"
        "class Stack(nnx.Module):\n"
        "    def __call__(self, x):\n"
        "        @nnx.scan\n"
        "        def step(x, layer):\n"
        "            return layer(x), None\n"
        "        return step(x, self.layers)\n"
    ),
    "variable-inplace-op": (
        "\n"
        "class M(nnx.Module):\n"
        "    def __init__(self):\n"
        "        self.count = nnx.Variable(jnp.zeros(()))\n"
        "    def __call__(self):\n"
        "        self.count[...] += 1\n"
    ),
    "variable-state": "s = nnx.Param(x)",
    "variable-value": (
        "\n"
        "class M(nnx.Module):\n"
        "    def __init__(self):\n"
        "        self.count = nnx.BatchStat(jnp.zeros(()))\n"
        "    def __call__(self):\n"
        "        return self.count[...]\n"
    ),
}

#: the patterns the codemod leaves to the user, each with the table's reason
MANUAL: tuple[str, ...] = tuple(p.id for p in _patterns.PATTERNS if p.manual)


def _migrate(body: str, target: str = "0.12") -> tuple[str, dict[str, int], list[str]]:
    result = migrate_source(HEAD + textwrap.dedent(body), target)
    assert result.code.startswith(HEAD)
    return result.code[len(HEAD) :], dict(result.rewrites), [m.pattern for m in result.manual]


#: rewritten in one shape, a manual item (the record's ``manual``) in the others
PARTLY_REWRITTEN = {"mutable-arrays": "only the flag's read: flax.config.flax_mutable_array"}


def test_every_rewrite_has_its_expected_outcome() -> None:
    assert set(AFTER) == set(REWRITES) - set(PARTLY_REWRITTEN)
    seen = {p.id for p in _patterns.PATTERNS if not p.run_time_only and not p.same_call}
    assert set(MANUAL) == seen - set(REWRITES) | set(PARTLY_REWRITTEN), (
        "a pattern the checker sees is rewritten or says why not"
    )
    assert set(MANUAL) & set(REWRITES) == set(PARTLY_REWRITTEN)


@pytest.mark.parametrize("pattern_id", sorted(REWRITES))
def test_the_new_form_is_left_as_it_is(pattern_id: str) -> None:
    _, new = CASES[pattern_id]
    code, rewrites, manual = _migrate(new)
    assert (code, rewrites, manual) == (textwrap.dedent(new), {}, [])


@pytest.mark.parametrize("pattern_id", sorted(AFTER))
def test_the_legacy_form_is_rewritten_and_a_second_run_changes_nothing(pattern_id: str) -> None:
    legacy, _ = CASES[pattern_id]
    code, rewrites, _ = _migrate(legacy)
    assert code == AFTER[pattern_id]
    assert rewrites == {pattern_id: 1}
    again, more, _ = _migrate(code)
    assert (again, more) == (code, {})


@pytest.mark.parametrize("pattern_id", sorted(MANUAL))
def test_what_needs_more_than_the_source_is_a_manual_item(pattern_id: str) -> None:
    legacy, _ = CASES[pattern_id]
    result = migrate_source(HEAD + textwrap.dedent(legacy))
    assert result.code == HEAD + textwrap.dedent(legacy)
    new = _patterns.get(pattern_id).new
    todo = new if new.startswith(("keep ", "pass ", "read ", "return ")) else f"use {new}"
    assert [m.todo for m in result.manual if m.pattern == pattern_id] == [todo]


def test_target_011_spells_the_011_api() -> None:
    assert _migrate("r = rngs.fork(splits=4)", "0.11")[0] == "r = rngs.fork(split=4)"
    assert _migrate("r = rngs.fork(split=4)", "0.11")[1] == {}  # flax 0.11's own form
    value = "class M(nnx.Module):\n    def __init__(self):\n        self.c = nnx.BatchStat(1)\n"
    value += "    def f(self):\n        return self.c.value\n"
    assert _migrate(value, "0.11")[1] == {}  # .value is the 0.11 API


def test_a_release_target_spells_that_releases_api() -> None:
    """0.12.3 has neither Rngs.split (0.12.6) nor out_sharding (0.12.4)."""
    assert _migrate("r = rngs.fork(splits=4)", "0.12.3")[0] == "r = rngs.fork(split=4)"
    assert _migrate("r = rngs.fork(split=4)", "0.12.5")[1] == {}  # 0.12.5's own form
    assert _migrate("r = rngs.fork(split=4)", "0.12.6")[0] == "r = rngs.split(4)"
    # before 0.12.4 flax takes sharding= and sharding_names= and stores them under its own key
    for own in (
        "w = nnx.Param(x, sharding=('a', 'b'))",
        "w = nnx.Param(x, sharding_names=('a', 'b'))",
    ):
        assert _migrate(own, "0.12.3")[1] == {}
        assert _migrate(own, "0.12.4")[0] == "w = nnx.Param(x, out_sharding=('a', 'b'))"
    bridge = "names = variable.metadata['sharding']"
    assert _migrate(bridge, "0.12.3")[0] == "names = variable.metadata['sharding_names']"
    assert _migrate(bridge, "0.12")[0] == "names = variable.metadata['out_sharding']"


def test_comments_and_formatting_are_kept() -> None:
    code, _, _ = _migrate(
        "opt = nnx.Optimizer(  # the optimizer\n    model,\n    optax.adam(1e-3),  # lr\n)\n"
    )
    assert "# the optimizer" in code and "# lr" in code and "wrt=nnx.Param" in code
    assert _migrate(code)[0] == code


def test_aliases_are_kept() -> None:
    result = migrate_source("from flax import nnx as nn\nopt = nn.Optimizer(m, tx)\n")
    assert result.code == "from flax import nnx as nn\nopt = nn.Optimizer(m, tx, wrt=nn.Param)\n"


def test_the_optimizer_update_without_a_known_model_is_manual() -> None:
    code = "def step(optimizer: nnx.Optimizer, grads):\n    optimizer.update(grads)\n"
    out, rewrites, manual = _migrate(code)
    assert (out, rewrites, manual) == (code, {}, ["optimizer-update-grads"])


def test_suppressed_lines_are_not_rewritten() -> None:
    code = "d = nnx.Dropout(0.5, (0,))  # nnx-compat: ignore\n"
    assert _migrate(code) == (code, {}, [])


def test_every_family_has_its_rule_module() -> None:
    from nnx_compat.codemod import FAMILIES

    families = {_patterns.get(i).family for i in REWRITES}
    assert families <= set(FAMILIES) | {"checkpoint"}


def test_an_optimizer_argument_is_updated_with_the_model_argument_of_its_name() -> None:
    """The guide's ``train_step(model, optimizer, ...)``: the function takes the model under the
    name the optimizer was built from; a function that does not is left to the user."""
    built = "optimizer = nnx.Optimizer(model, tx)\n"
    takes_both = built + "def step(model, optimizer, grads):\n    optimizer.update(grads)\n"
    code, rewrites, _ = _migrate(takes_both)
    assert "    optimizer.update(model, grads)\n" in code
    assert rewrites["optimizer-update-grads"] == 1
    only_optimizer = built + "def step(optimizer, grads):\n    optimizer.update(grads)\n"
    code, rewrites, manual = _migrate(only_optimizer)
    assert "    optimizer.update(grads)\n" in code and "optimizer-update-grads" in manual


def test_variable_state_to_variable_becomes_a_copy() -> None:
    code, rewrites, manual = _migrate("v = state['w'].to_variable()\nw = v.to_variable(1)\n")
    assert code == "v = state['w'].copy()\nw = v.to_variable(1)\n"  # only the method's own call
    assert (rewrites, manual) == ({"variable-state": 1}, [])


def test_state_copies_graphdef_apply_merges_clones() -> None:
    code = (
        "graphdef, state = nnx.split(model)\n"
        "def body(c, x):\n"
        "    y, _ = graphdef.apply(state, other)(c)\n"
        "    return y, None\n"
        "jax.lax.scan(body, c, xs)\n"
    )
    out, rewrites, manual = _migrate(code)
    assert "    y, _ = graphdef.apply(nnx.clone(state), nnx.clone(other))(c)\n" in out
    assert (rewrites, manual) == ({"state-copies": 1}, [])
    assert _migrate(out) == (out, {}, [])


def test_state_copies_keeps_a_trailing_comma_and_the_alias() -> None:
    code = (
        "from flax import nnx as nn\n"
        "@jax.jit\n"
        "def f(x):\n"
        "    return nn.merge(\n        graphdef,\n        state,\n    )(x)\n"
    )
    out, rewrites, _ = _migrate(code)
    assert "        state, copy=True,\n    )(x)\n" in out
    assert rewrites == {"state-copies": 1}


def test_state_copies_on_a_target_without_copy_is_left_alone() -> None:
    legacy, _ = CASES["state-copies"]
    assert _migrate(legacy, "0.11.1")[1:] == ({}, [])


def test_split_rngs_over_scan_rewrite_and_manual_items_name_the_decorator_line() -> None:
    legacy, _ = CASES["split-rngs-over-scan"]
    result = migrate_source(HEAD + textwrap.dedent(legacy))
    assert result.rewrites == {"split-rngs-over-scan": 1}
    assert "@nnx.split_rngs(splits=4)\n                @nnx.scan" not in result.code
    # where the function cannot be rewritten, the manual item is at the decorator too
    from nnx_compat.codemod import REWRITES, Manual, Rewrite

    rule = REWRITES["split-rngs-over-scan"]
    try:
        REWRITES["split-rngs-over-scan"] = Rewrite(
            rule.pattern, lambda node, ctx, target: Manual.at(node, rule.pattern, "by hand")
        )
        (item,) = migrate_source(HEAD + textwrap.dedent(legacy)).manual
    finally:
        REWRITES["split-rngs-over-scan"] = rule
    line = (HEAD + textwrap.dedent(legacy)).splitlines()[item.line - 1]
    assert line.strip() == "@nnx.split_rngs(splits=4)"


def test_runtime_only_lists_what_the_checker_cannot_see_for_the_target() -> None:
    from nnx_compat.codemod import runtime_note, runtime_only

    for target in ("0.11", "0.12"):
        found = {p.id for p in runtime_only(target)}
        assert "state-copies" in found  # partly static: its other shapes
        assert "sharding-without-mesh" in found or target == "0.11"  # flax 0.12.0's change
        assert not found & set(REWRITES) - {"state-copies"}
        assert all(not _patterns.get(i).same_call for i in found)  # nothing warns about those
    assert {p.id for p in runtime_only("0.11")} < {p.id for p in runtime_only("0.12")}
    note = runtime_note("0.12")
    assert note.startswith(f"{len(runtime_only('0.12'))} patterns can only be found at run time")
    assert note.endswith(": run your tests with pytest --nnx-compat=report")
    assert [p.id for p in runtime_only("0.10.0")] == ["vmap-splits-rngs"]  # flax 0.10.x's
    assert runtime_note("0.10.0").startswith("1 pattern can only be found at run time")


def test_a_manual_item_reads_as_an_instruction() -> None:
    from nnx_compat import _patterns
    from nnx_compat.codemod import _todo

    for pattern in _patterns.PATTERNS:
        todo = _todo(pattern)
        assert not todo.startswith(("use keep", "use pass", "use read", "use return")), todo
    assert _todo(_patterns.get("layer-init-attributes")).startswith("keep the initializer")
    assert _todo(_patterns.get("optimizer-update-grads")) == "use optimizer.update(model, grads)"


def test_the_mutable_array_flag_reads_false_where_flax_removed_it() -> None:
    code = (
        "from flax import config\nimport flax\n"
        "on = config.flax_mutable_array or flax.config.flax_mutable_array\n"
        "a = nnx.mutable_array(x)\n"
    )
    out, rewrites, manual = _migrate(code)
    assert out.splitlines()[2] == (
        'on = getattr(config, "flax_mutable_array", False) or '
        'getattr(flax.config, "flax_mutable_array", False)'
    )
    assert (rewrites, manual) == ({"mutable-arrays": 2}, ["mutable-arrays"])
    assert _migrate(out) == (out, {}, ["mutable-arrays"])
    # another module's config is not flax's
    other = "from mylib import config\non = config.flax_mutable_array\n"
    assert _migrate(other) == (other, {}, [])
