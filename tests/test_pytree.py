"""``nnx.Pytree``, ``nnx.Object`` and ``nnx_compat.is_nnx_object`` on every flax."""

from __future__ import annotations

import warnings
from typing import Any

import flax.nnx as upstream
import jax.numpy as jnp
import optax
import pytest

import nnx_compat
from nnx_compat import _versions, nnx
from tests.markers import line_of

API = _versions.detect().api
OBJECT_SHIMMED = not _versions.feature("OBJECT_IS_MODULE_BASE")
ARRAYS = _versions.feature("ARRAY_ATTRIBUTES")  # flax 0.10.5: plain arrays as state


def _nnx_objects() -> list[Any]:
    model = upstream.Linear(2, 2, rngs=upstream.Rngs(0))

    class Custom(nnx.Module):
        pass

    class Plain(nnx.Object):  # type: ignore[misc]
        pass

    return [
        model,
        upstream.BatchNorm(2, rngs=upstream.Rngs(0)),
        upstream.Rngs(0),
        Custom(),
        Plain(),
        nnx.List([model]),
        nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param),
    ]


NOT_OBJECTS = [1, "a", [1], jnp.ones(2), upstream.Param(jnp.ones(2)), None]


def test_pytree_exists_and_matches_every_nnx_object() -> None:
    # flax 0.11.1 added nnx.Pytree; before, nnx_compat's is flax 0.12's, built on 0.10's Object
    if _versions.feature("HAS_PYTREE"):
        assert nnx.Pytree is upstream.Pytree
    else:
        assert upstream.Object in nnx.Pytree.__mro__
    for obj in _nnx_objects():
        assert isinstance(obj, nnx.Pytree), obj
        assert nnx_compat.is_nnx_object(obj)
    for value in NOT_OBJECTS:
        assert not isinstance(value, nnx.Pytree)
        assert not nnx_compat.is_nnx_object(value)


def test_isinstance_object_means_nnx_object_on_every_flax() -> None:
    with nnx_compat.warnings_policy("ignore"):
        for obj in _nnx_objects():
            assert isinstance(obj, nnx.Object), obj
            assert issubclass(type(obj), nnx.Object)
        for value in NOT_OBJECTS:
            assert not isinstance(value, nnx.Object)
        assert issubclass(upstream.Linear, nnx.Object)
        assert not issubclass(int, nnx.Object)


def test_reproduce_object_is_not_a_module_base_on_012() -> None:
    model = upstream.Linear(2, 2, rngs=upstream.Rngs(0))
    assert isinstance(model, upstream.Object) == (API != "0.12")
    # and nnx_compat does not change what flax's own Object answers
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(model, upstream.Object) == (API != "0.12")
        assert issubclass(upstream.Linear, upstream.Object) == (API != "0.12")
        assert not isinstance(3, upstream.Object)
        assert not isinstance(3, upstream.Module)


def test_isinstance_object_warns_at_the_user_line_on_012() -> None:
    model = upstream.Linear(2, 2, rngs=upstream.Rngs(0))
    if not OBJECT_SHIMMED:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert isinstance(model, nnx.Object)
        assert nnx.Object is upstream.Object
        return
    with pytest.warns(nnx_compat.PytreeDeprecationWarning) as caught:
        assert isinstance(model, nnx.Object)  # MARK-isinstance
        assert issubclass(upstream.Linear, nnx.Object)  # MARK-issubclass
    assert [(w.filename, w.lineno) for w in caught] == [
        (__file__, line_of(__file__, "MARK-isinstance")),
        (__file__, line_of(__file__, "MARK-issubclass")),
    ]
    message = str(caught[0].message)
    assert "isinstance(x, nnx.Pytree)" in message and "[nnx-compat: isinstance-object]" in message


def test_subclassing_object_gives_flaxs_object() -> None:
    class Counter(nnx.Object):  # type: ignore[misc]
        def __init__(self) -> None:
            self.count = upstream.Variable(jnp.zeros((), jnp.int32))
            # a non-pytree Object may hold anything (an array from flax 0.10.5 on)
            self.history = [jnp.ones(1) if ARRAYS else upstream.Param(jnp.ones(1))]

    counter = Counter()
    assert isinstance(counter, upstream.Object)
    assert upstream.Object in type(counter).__mro__
    assert type(type(counter)) is type(upstream.Object)
    assert sorted(nnx_compat._paths.flatten(upstream.state(counter))) == ["count", "history/0"]
    graphdef, state = upstream.split(counter)
    assert isinstance(upstream.merge(graphdef, state), Counter)
    if OBJECT_SHIMMED:
        assert isinstance(nnx.Object(), upstream.Object)  # calling it makes flax's Object
        assert nnx.Object.__init_subclass__ is not None  # class attributes are flax's


def test_new_form_is_silent() -> None:
    model = upstream.Linear(2, 2, rngs=upstream.Rngs(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(model, nnx.Pytree)
        assert nnx_compat.is_nnx_object(model)
    assert nnx_compat.report() == ()
