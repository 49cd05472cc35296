"""The Variable API both ways, on flax's own Variables (``nnx_compat._variables``)."""

from __future__ import annotations

import operator
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from typing import Any

import flax.nnx as upstream
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_compat
from nnx_compat import _variables, _versions, nnx
from tests.hlo import lowered_text
from tests.markers import line_of
from tests.strategies import assert_same_bits

VALUE_WARNS = _versions.feature("VARIABLE_VALUE_WARNS")  # flax 0.12.1
INPLACE_RAISES = _versions.feature("VARIABLE_INPLACE_RAISES")  # flax 0.12.0
# flax 0.11 kept VariableState's .type on Variable with a warning; 0.12 without one
TYPE_WARNS = _versions.installed_at_least("0.11.0") and not _versions.installed_at_least("0.12.0")


def _kernel() -> Any:
    return upstream.Linear(2, 3, rngs=upstream.Rngs(0)).kernel


# --- get_value / set_value / [...] ------------------------------------------------------------


def test_get_and_set_value_on_flax_own_params() -> None:
    kernel = _kernel()
    assert np.array_equal(kernel.get_value(), kernel[...])
    kernel.set_value(jnp.ones((2, 3)))
    assert np.array_equal(kernel[...], jnp.ones((2, 3)))
    assert np.array_equal(kernel.get_value(index=0), jnp.ones(3))
    kernel.set_value(jnp.zeros(3), index=1)
    assert np.array_equal(kernel[...], jnp.array([[1.0] * 3, [0.0] * 3]))
    kernel[...] = jnp.full((2, 3), 2.0)
    assert np.array_equal(kernel.get_value(), jnp.full((2, 3), 2.0))
    counter = upstream.Variable(3)  # not an array
    counter.set_value(counter.get_value() + 1)
    assert counter.get_value() == 4


def test_new_api_under_jit_and_silent() -> None:
    model = upstream.Linear(2, 3, rngs=upstream.Rngs(0))

    @nnx.jit
    def double(model: Any) -> Any:
        model.kernel.set_value(model.kernel.get_value() * 2)
        model.bias[...] = model.bias[...] + 1
        return model.kernel.get_value()

    before = np.asarray(model.kernel[...])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = double(model)
    assert np.array_equal(out, before * 2) and np.array_equal(model.kernel[...], before * 2)
    assert np.array_equal(model.bias[...], jnp.ones(3))
    assert nnx_compat.report() == ()


# --- .value ---------------------------------------------------------------------------------


def test_value_warns_once_at_the_user_line() -> None:
    kernel = _kernel()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            value = kernel.value  # MARK-read
        kernel.value = value * 2  # MARK-write
    assert np.array_equal(kernel[...], value * 2)
    if not VALUE_WARNS:  # flax 0.10/0.11: .value is the API
        assert caught == []
        return
    seen = [(w.category, w.filename, w.lineno) for w in caught]
    category = nnx_compat.VariableDeprecationWarning
    assert seen == [
        (category, __file__, line_of(__file__, "MARK-read")),
        (category, __file__, line_of(__file__, "MARK-write")),
    ]
    assert "variable[...]" in str(caught[0].message)
    assert "[nnx-compat: variable-value]" in str(caught[0].message)


def test_reproduce_flax_warning_on_every_access(upstream_variable: None) -> None:
    kernel = _kernel()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            _ = kernel.value
    assert len(caught) == (3 if VALUE_WARNS else 0)
    assert all(not issubclass(w.category, nnx_compat.NNXCompatDeprecationWarning) for w in caught)


def test_reproduce_flax_011_warns_on_every_read_of_type(upstream_variable: None) -> None:
    _, state = upstream.split(upstream.Linear(2, 3, rngs=upstream.Rngs(0)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert state["kernel"].type is upstream.Param
    assert len(caught) == (3 if TYPE_WARNS else 0)
    assert _variables._type_warns() is TYPE_WARNS


def test_type_is_the_variables_type_with_one_warning_at_the_user_line() -> None:
    _, state = nnx.split(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            assert state["kernel"].type is upstream.Param  # READ-TYPE
    if TYPE_WARNS:
        assert [(type(w.message), w.lineno) for w in caught] == [
            (nnx_compat.VariableDeprecationWarning, line_of(__file__, "READ-TYPE"))
        ]
        assert "state.type" in str(caught[0].message)
        assert "[nnx-compat: variable-state]" in str(caught[0].message)
    else:  # flax's own .type: silent
        assert caught == []


# --- in-place operators -------------------------------------------------------------------------

OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
}


@pytest.mark.parametrize("symbol", sorted(OPERATORS))
def test_inplace_operators_equal_the_indexed_form(symbol: str) -> None:
    op = OPERATORS[symbol]
    legacy, new = upstream.Param(jnp.arange(1.0, 4.0)), upstream.Param(jnp.arange(1.0, 4.0))
    with nnx_compat.warnings_policy("ignore"):
        result = op(legacy, 2.0)
    new[...] = op(new[...], 2.0)
    assert result is legacy
    assert_same_bits(legacy[...], new[...])


def test_inplace_warns_at_the_user_line_and_counts_work() -> None:
    count = upstream.Variable(jnp.zeros((), jnp.int32))
    steps = upstream.Variable(0)  # a Python number, not an array
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        count += 1  # MARK-iadd
        count += upstream.Variable(jnp.ones((), jnp.int32))
        steps += 1
    assert int(count[...]) == 2 and steps.get_value() == 1
    if not INPLACE_RAISES:  # flax 0.10/0.11 support it
        assert caught == []
        return
    lines = [(w.filename, w.lineno) for w in caught]
    assert lines[0] == (__file__, line_of(__file__, "MARK-iadd"))
    assert "variable[...] += x" in str(caught[0].message)


def test_reproduce_inplace_raises_on_012(upstream_variable: None) -> None:
    count = upstream.Variable(jnp.zeros((), jnp.int32))
    if INPLACE_RAISES:
        # flax 0.12.0 names variable.value += x, 0.12.1+ variable[...] += x
        with pytest.raises(NotImplementedError, match=r"In-place operations are no longer"):
            count += 1
    else:
        count += 1
        assert int(count[...]) == 1


@pytest.mark.skipif(
    not INPLACE_RAISES,
    reason="both forms are flax's own before 0.12 (and 0.10's v[...] = x lowers to a scatter)",
)
def test_inplace_lowers_to_the_hlo_of_the_indexed_form() -> None:
    model = upstream.Linear(3, 3, rngs=upstream.Rngs(0))
    graphdef, state = upstream.split(model)

    def legacy(state: Any, x: jax.Array) -> Any:
        model = upstream.merge(graphdef, state)
        model.bias += x
        model.kernel *= 2.0
        return upstream.state(model)

    def new(state: Any, x: jax.Array) -> Any:
        model = upstream.merge(graphdef, state)
        model.bias[...] += x
        model.kernel[...] *= 2.0
        return upstream.state(model)

    x = jnp.ones(3)
    with nnx_compat.warnings_policy("ignore"):
        legacy_hlo = lowered_text(legacy, state, x)
    assert "stablehlo" in legacy_hlo
    assert legacy_hlo == lowered_text(new, state, x)


@pytest.mark.skipif(not VALUE_WARNS, reason="both forms are flax's own before 0.12.1")
def test_value_lowers_to_the_hlo_of_the_indexed_form() -> None:
    model = upstream.Linear(3, 3, rngs=upstream.Rngs(0))
    graphdef, state = upstream.split(model)

    def legacy(state: Any, x: jax.Array) -> Any:
        model = upstream.merge(graphdef, state)
        model.bias.value = model.bias.value + x @ model.kernel.value
        return upstream.state(model)

    def new(state: Any, x: jax.Array) -> Any:
        model = upstream.merge(graphdef, state)
        model.bias[...] = model.bias[...] + x @ model.kernel[...]
        return upstream.state(model)

    x = jnp.ones(3)
    with nnx_compat.warnings_policy("ignore"):
        legacy_hlo = lowered_text(legacy, state, x)
    assert legacy_hlo == lowered_text(new, state, x)


# --- what is patched, and when ------------------------------------------------------------------

PATCH_AND_RESTORE = textwrap.dedent(
    """
    import json, sys
    import nnx_compat
    from flax import nnx
    before = dict(vars(nnx.Variable))
    from nnx_compat import nnx as compat  # the namespace applies the patch
    from nnx_compat import _variables
    from nnx_compat._backports import members
    members.restore()  # flax 0.12's members, added where flax lacks them (test_members.py)
    after = dict(vars(nnx.Variable))
    changed = sorted(k for k in set(before) | set(after) if before.get(k) is not after.get(k))
    _variables.restore()
    restored = dict(vars(nnx.Variable)) == before
    _variables.patch(); _variables.patch()
    print(json.dumps({"changed": changed, "restored": restored,
                      "twice": dict(vars(nnx.Variable)).keys() == after.keys()}))
    """
)


def test_importing_the_namespace_patches_and_restore_is_exact() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PATCH_AND_RESTORE], capture_output=True, text=True, check=True
    )
    import json

    result = json.loads(out.stdout)
    expected = {"__init__"}
    if not _versions.feature("VARIABLE_GET_VALUE"):
        expected |= {"get_value", "set_value"}
    if VALUE_WARNS or _versions.feature("VARIABLE_VALUE_REJECTS_VARIABLE"):
        expected.add("value")
    if INPLACE_RAISES:
        expected |= {name for name in _variables._INPLACE if name in vars(upstream.Variable)}
    # the mutation check tells the watchers of nnx.merge's copies (flax 0.11+)
    if _versions.feature("VARIABLE_UPDATE_CHECK"):
        # and metadata set as an attribute, where flax 0.12.1 raises
        expected |= {"_check_can_update", "__setattr__"}
    if _versions.feature("VARIABLE_UNHASHABLE"):  # identity hashing (flax 0.12.1)
        expected.add("__hash__")
    elif _versions.feature("STATE_SHARES_VARIABLES"):
        expected |= {"__setattr__", "__setitem__"}
    # variable[key] = x assigned into the immutable array before flax 0.10.7
    if not _versions.feature("VARIABLE_SETITEM_FUNCTIONAL"):
        expected.add("__setitem__")
    # flax 0.10's VariableState API (Param.state(value), state.to_variable()), flax 0.11+
    if _versions.feature("STATE_SHARES_VARIABLES"):
        expected |= {"state", "to_variable"}
    if TYPE_WARNS:  # and its .type, which flax 0.11 warns about on every read
        expected.add("type")
    # variable.sharding on a traced value (flax 0.11+ renamed the metadata key)
    if _versions.sharding_metadata_key() != "sharding":
        expected.add("__getattr__")
    assert set(result["changed"]) == expected
    assert result["restored"] and result["twice"]


def test_import_nnx_compat_alone_leaves_flax_untouched() -> None:
    code = (
        "import nnx_compat, flax.nnx as f\n"
        "print(f.Variable.__init__.__module__, hasattr(f.Variable, 'get_value'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    module, has_get_value = out.stdout.split()
    assert module.startswith("flax.")
    assert has_get_value == str(_versions.feature("VARIABLE_GET_VALUE"))


# --- variable.value = other_variable (flax 0.10's model surgery guide) ------------------------

# flax 0.10/0.11's Variable rejects it; 0.10's states hold VariableState, which takes it
REJECTS_VARIABLE = _versions.feature("VARIABLE_VALUE_REJECTS_VARIABLE")
SURGERY_FAILS = REJECTS_VARIABLE and _versions.feature("STATE_SHARES_VARIABLES")  # flax 0.11


class _Surgery(nnx.Module):  # type: ignore[misc]
    def __init__(self, rngs: Any) -> None:
        self.linear1 = nnx.Linear(2, 3, rngs=rngs)


def _surgery() -> tuple[jax.Array, jax.Array]:
    """The guide's model surgery: an abstract state filled with another model's Variables."""
    model = _Surgery(nnx.Rngs(0))
    graphdef, abs_state = nnx.split(nnx.eval_shape(lambda: _Surgery(nnx.Rngs(1))))
    abs_state["linear1"]["kernel"].value = model.linear1.kernel  # SURGERY
    abs_state["linear1"]["bias"].value = model.linear1.bias
    merged = nnx.merge(graphdef, abs_state)
    x = jnp.ones((1, 2))
    return merged.linear1(x), model.linear1(x)


@pytest.mark.skipif(not SURGERY_FAILS, reason="flax 0.10 and 0.12 accept it")
def test_reproduce_setting_a_variable_as_value(upstream_variable: None) -> None:
    rejected = pytest.raises(ValueError, match="Cannot set value to a Variable")
    with rejected, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # flax 0.12.1+ deprecates the setter
        _surgery()


def test_setting_a_variable_as_value_runs_the_surgery() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        merged, original = _surgery()
    assert_same_bits(merged, original)
    hits = [(h.pattern, h.lineno) for h in nnx_compat.report() if h.pattern != "variable-value"]
    if SURGERY_FAILS:
        surgery = line_of(__file__, "SURGERY")
        assert hits == [
            ("variable-value-variable", surgery),
            ("variable-value-variable", surgery + 1),
        ]
        assert [w.lineno for w in caught if "variable-value-variable" in str(w.message)] == [
            surgery,
            surgery + 1,
        ]
    else:  # the installed flax's own meaning (it stores the Variable), silently
        assert not [h for h in hits if h[0] == "variable-value-variable"]


@pytest.mark.skipif(not REJECTS_VARIABLE, reason="flax 0.12 stores the Variable as the value")
def test_a_variable_as_value_takes_its_value_where_flax_rejects_it() -> None:
    target, source = nnx.Param(jnp.zeros(3)), nnx.Param(jnp.ones(3))
    with nnx_compat.warnings_policy("ignore"):
        target.value = source
    assert_same_bits(target[...], jnp.ones(3))
    # flax 0.12.1-0.12.5 also deprecate .value itself
    expected = ["variable-value"] if VALUE_WARNS else []
    assert [h.pattern for h in nnx_compat.report()] == [*expected, "variable-value-variable"]
