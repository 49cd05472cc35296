"""Backports of flax 0.11/0.12 layers for an older flax (see nnx_compat._backports).

flax 0.12.8's ``PReLU``, ``InstanceNorm`` (0.12.0), ``WeightNorm``, ``SpectralNorm`` (0.12.1),
``identity`` (0.11.2) and ``EMA`` (0.12.8), built on the installed flax's own pieces: its
``Module``, ``Param``/``BatchStat``, initializers, dtype promotion and the statistics and
normalization helpers its ``LayerNorm``/``GroupNorm`` use. Each has 0.12.8's constructor,
attribute names, state paths and Variable types, draws the same keys from ``rngs`` (so the
same seed gives the same parameters) and computes the same numbers, so a state written on
0.12.8 updates into it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

import jax
import jax.numpy as jnp
from flax.nnx.nn import dtypes, initializers
from flax.nnx.nn import normalization as _norm

from nnx_compat import _containers, _pytree, _versions
from nnx_compat._added import _graph_mode_only

__all__ = ["EMA", "InstanceNorm", "PReLU", "SpectralNorm", "WeightNorm", "identity"]

_nnx: Any = _versions.import_nnx()
#: flax 0.12.1: ``get_value()``/``set_value()``, and ``.value`` deprecated.
_GET_VALUE: Final = _versions.feature("VARIABLE_GET_VALUE")
#: flax 0.11.0: ``nnx.data`` marks an attribute as data (required for arrays from 0.12.0); on
#: flax 0.10 the backport's, for the backported ``nnx.Pytree``.
_data: Callable[[Any], Any] = _containers.data

_NO_METADATA: Final[Mapping[str, Any]] = MappingProxyType({})
#: ``WeightNorm``'s default ``variable_filter``.
_KERNELS: Final = _nnx.PathContains("kernel")


class _Arrays(dict[Any, Any]):
    """``WeightNorm.scales`` on flax 0.10: a dict registered as a graph node, so that
    ``nnx.update`` (a restored checkpoint) and ``nnx.jit`` can replace the arrays it holds, as
    flax 0.12.8 does with a plain dict. The state's paths are a plain dict's."""


@functools.cache
def _scales_dict() -> Callable[[dict[Any, Any]], Any]:
    """What holds ``WeightNorm``'s scales: a plain dict (as data), or :class:`_Arrays` where
    ``nnx.update`` cannot replace an array a plain dict holds (flax 0.10, where a dict is an
    immutable pytree node; flax 0.11.0 takes the update)."""
    import numpy as np

    class _Probe(_nnx.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self.items = _data({"a": np.zeros(1, np.float32)})

    probe = _Probe()
    try:
        _nnx.update(probe, _nnx.state(probe))
    except ValueError:
        _nnx.graph.register_graph_node_type(
            _Arrays,
            flatten=lambda node: ([(key, node[key]) for key in sorted(node)], None),
            set_key=_Arrays.__setitem__,
            pop_key=_Arrays.pop,
            create_empty=lambda _: _Arrays(),
            clear=_Arrays.clear,
            init=_Arrays.update,
        )
        return _Arrays
    return _data


#: flax 0.11.2's ``nnx.identity``: jax's own ``identity`` activation.
identity: Final = jax.nn.identity


def _get(variable: Any) -> Any:
    return variable.get_value() if _GET_VALUE else variable.value


def _set(variable: Any, value: Any) -> None:
    if _GET_VALUE:
        variable.set_value(value)
    else:
        variable.value = value


def _own_state(node: Any, *filters: Any) -> Any:
    """``nnx.state(node, *filters)`` holding the node's own Variables, as flax 0.11+ gives it
    (flax 0.10's holds VariableState copies: swapped for the Variables at their paths)."""
    state = _nnx.state(node, *filters)
    if _versions.feature("STATE_SHARES_VARIABLES"):  # flax 0.11.0
        return state
    own = {path: v for path, v in _nnx.iter_graph(node) if isinstance(v, _nnx.Variable)}
    flat = [(path, own.get(path, leaf)) for path, leaf in _nnx.to_flat_state(state)]
    return _nnx.from_flat_state(flat)


def _l2_normalize(x: Any, axis: Any = None, eps: float = 1e-12) -> Any:
    """``x`` divided by its L2 norm along ``axis`` (all axes: None), ``eps`` under the root."""
    return x * jax.lax.rsqrt((x * x).sum(axis=axis, keepdims=True) + eps)


class PReLU(_nnx.Module):  # type: ignore[misc,name-defined]
    """flax 0.12.0's ``nnx.PReLU``: ``x`` where ``x >= 0``, else ``negative_slope * x``, the
    slope a learned scalar ``Param`` (``negative_slope``)."""

    def __init__(
        self,
        negative_slope_init: float = 0.01,
        *,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        promote_dtype: Any = dtypes.promote_dtype,
        negative_slope_metadata: Mapping[str, Any] = _NO_METADATA,
    ) -> None:
        self.negative_slope = _nnx.Param(
            jnp.asarray(negative_slope_init, dtype=param_dtype), **negative_slope_metadata
        )
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.promote_dtype = promote_dtype

    def __call__(self, inputs: Any) -> Any:
        slope = _get(self.negative_slope)
        if self.dtype is None:  # the slope takes the input's dtype, as linen's PReLU does
            slope = jnp.asarray(slope, inputs.dtype)
        else:
            inputs, slope = self.promote_dtype((inputs, slope), dtype=self.dtype)
        return jnp.where(inputs >= 0, inputs, slope * inputs)


class InstanceNorm(_nnx.Module):  # type: ignore[misc,name-defined]
    """flax 0.12.0's ``nnx.InstanceNorm``: each example normalized over every axis but the
    leading (batch) one and ``feature_axes``, with a ``scale`` and ``bias`` per feature."""

    def __init__(
        self,
        num_features: int,
        *,
        epsilon: float = 1e-6,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        use_bias: bool = True,
        use_scale: bool = True,
        bias_init: Any = initializers.zeros,
        scale_init: Any = initializers.ones,
        feature_axes: Any = -1,
        axis_name: str | None = None,
        axis_index_groups: Any = None,
        use_fast_variance: bool = True,
        promote_dtype: Any = dtypes.promote_dtype,
        rngs: Any,
        bias_metadata: Mapping[str, Any] = _NO_METADATA,
        scale_metadata: Mapping[str, Any] = _NO_METADATA,
    ) -> None:
        shape = (num_features,)
        # one key from the params stream for each parameter, scale first (as flax 0.12)
        self.scale = (
            _nnx.Param(scale_init(rngs.params(), shape, param_dtype), **scale_metadata)
            if use_scale
            else None
        )
        self.bias = (
            _nnx.Param(bias_init(rngs.params(), shape, param_dtype), **bias_metadata)
            if use_bias
            else None
        )
        self.num_features = num_features
        self.epsilon = epsilon
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.use_bias = use_bias
        self.use_scale = use_scale
        self.feature_axes = feature_axes
        self.axis_name = axis_name
        self.axis_index_groups = axis_index_groups
        self.use_fast_variance = use_fast_variance
        self.promote_dtype = promote_dtype

    def __call__(self, x: Any, *, mask: Any = None) -> Any:
        feature_axes = _norm._canonicalize_axes(x.ndim, self.feature_axes)
        if 0 in feature_axes:
            raise ValueError(
                "The channel axes cannot include the leading dimension as this is assumed to "
                "be the batch axis."
            )
        reduction_axes = [axis for axis in range(1, x.ndim) if axis not in feature_axes]
        # a Variable's truth is its length's, as in flax 0.12 (no features: no parameter)
        scale = _get(self.scale) if self.scale else None
        bias = _get(self.bias) if self.bias else None
        x, scale, bias = self.promote_dtype((x, scale, bias), dtype=self.dtype)
        mean, var = _norm._compute_stats(
            x,
            reduction_axes,
            self.dtype,
            self.axis_name,
            self.axis_index_groups,
            use_fast_variance=self.use_fast_variance,
            mask=mask,
        )
        return _norm._normalize(
            x, mean, var, scale, bias, reduction_axes, feature_axes, self.dtype, self.epsilon
        )


class WeightNorm(_nnx.Module):  # type: ignore[misc,name-defined]
    """flax 0.12.1's ``nnx.WeightNorm``: wraps ``layer_instance`` and, at each call, replaces
    every Variable ``variable_filter`` selects with its L2-normalized value (over the axes
    other than ``feature_axes``) times a learned scale, then calls the layer.

    The scales are arrays in the attribute ``scales``, a dict keyed by each parameter's path
    in the layer (``nnx.state(wrapper)['scales'][('kernel',)]``); ``scale_init`` gets the
    ``params`` stream itself (no key is drawn), as flax 0.12.8 passes it.
    """

    def __init__(
        self,
        layer_instance: Any,
        *,
        feature_axes: Any = -1,
        use_scale: bool = True,
        scale_init: Any = initializers.ones,
        epsilon: float = 1e-12,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        variable_filter: Any = _KERNELS,
        promote_dtype: Any = dtypes.promote_dtype,
        rngs: Any,
    ) -> None:
        self.layer_instance = layer_instance
        self.feature_axes = () if feature_axes is None else feature_axes
        self.use_scale = use_scale
        self.scale_init = scale_init
        self.epsilon = epsilon
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.variable_filter = _nnx.filterlib.to_predicate(variable_filter)
        self.promote_dtype = promote_dtype
        self.scales: dict[Any, Any] | None = None
        if use_scale:
            scales = {}
            for path, param in _nnx.to_flat_state(_own_state(layer_instance, _nnx.Param)):
                if self.variable_filter(path, param):
                    value = _get(param)
                    axes = _norm._canonicalize_axes(value.ndim, self.feature_axes)
                    shape = tuple(value.shape[axis] for axis in axes)
                    scales[path] = scale_init(rngs["params"], shape)
            self.scales = _scales_dict()(scales)

    def _normalize_inplace(self, path: Any, param: Any) -> None:
        if not self.variable_filter(path, param):
            return
        value = _get(param)
        feature_axes = _norm._canonicalize_axes(value.ndim, self.feature_axes)
        reduction_axes = tuple(axis for axis in range(value.ndim) if axis not in feature_axes)
        normalized = _l2_normalize(value, axis=reduction_axes, eps=self.epsilon)
        cast = [value]
        if self.use_scale:
            assert self.scales is not None
            if path not in self.scales:
                raise RuntimeError(
                    f"Could not find the scale corresponding to the param {path} in scales "
                    "dict. Parameters of the layer_instance should not change!"
                )
            scale = self.scales[path]
            if len(feature_axes) < value.ndim:
                shape = [1] * value.ndim
                for axis in feature_axes:
                    shape[axis] = value.shape[axis]
                scale = scale.reshape(shape)
            normalized = normalized * scale
            cast.append(scale)
        _set(param, jnp.asarray(normalized, dtypes.canonicalize_dtype(*cast, dtype=self.dtype)))

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        """Normalizes the selected weights of ``layer_instance`` in place, then calls it with
        ``x`` and the other arguments."""
        for path, param in _nnx.to_flat_state(_own_state(self.layer_instance)):
            self._normalize_inplace(path, param)
        return self.layer_instance(x, *args, **kwargs)


class SpectralNorm(_nnx.Module):  # type: ignore[misc,name-defined]
    """flax 0.12.1's ``nnx.SpectralNorm``: wraps ``layer_instance`` and, at each call, divides
    each of its matrix ``Param``s (higher ranks flattened to ``(-1, last)``) by its largest
    singular value, estimated by ``n_steps`` of power iteration, then calls the layer.

    The power iteration's vector ``u`` and the estimate ``sigma`` are ``BatchStat``s in the
    dict ``batch_stats``, keyed ``path + ('u',)`` and ``path + ('sigma',)``; ``u`` starts
    from ``normal(0.01)`` with one key drawn from the ``params`` stream per matrix. They are
    written back when ``update_stats`` (the call's, else ``not use_running_average``, which
    ``eval()``/``train()`` set).
    """

    def __init__(
        self,
        layer_instance: Any,
        *,
        n_steps: int = 1,
        epsilon: float = 1e-12,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        error_on_non_matrix: bool = False,
        update_stats: bool = True,
        rngs: Any,
    ) -> None:
        self.layer_instance = layer_instance
        self.n_steps = n_steps
        self.epsilon = epsilon
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.error_on_non_matrix = error_on_non_matrix
        self.use_running_average = not update_stats
        batch_stats = {}
        for path, param in _nnx.to_flat_state(_own_state(layer_instance, _nnx.Param)):
            matrix = self._matrix(_get(param))
            if matrix is None:
                continue
            key = rngs.params()  # one key for both, as flax 0.12
            u = initializers.normal()(key, (1, matrix.shape[-1]), param_dtype)
            batch_stats[(*path, "u")] = _nnx.BatchStat(u)
            batch_stats[(*path, "sigma")] = _nnx.BatchStat(initializers.ones(key, (), param_dtype))
        self.batch_stats = _data(batch_stats)

    def _matrix(self, value: Any) -> Any:
        """The parameter as the matrix it normalizes, or None where it leaves it alone."""
        if value.ndim <= 1 or self.n_steps < 1:
            return None
        if value.ndim > 2:
            if self.error_on_non_matrix:
                raise ValueError(
                    f"Layer instance parameter is {value.ndim}D but error_on_non_matrix is True"
                )
            return jnp.reshape(value, (-1, value.shape[-1]))
        return value

    def __call__(self, x: Any, update_stats: bool | None = None) -> Any:
        """Spectral-normalizes the matrices of ``layer_instance`` in place (updating ``u`` and
        ``sigma`` when ``update_stats``), then calls it with ``x``."""
        if update_stats is None:
            update_stats = not self.use_running_average
        for path, param in _nnx.to_flat_state(_own_state(self.layer_instance, _nnx.Param)):
            self._normalize_inplace(path, param, update_stats)
        return self.layer_instance(x)

    def _normalize_inplace(self, path: Any, param: Any, update_stats: bool) -> None:
        value = _get(param)
        matrix = self._matrix(value)
        if matrix is None:
            return
        for name in ("u", "sigma"):
            if (*path, name) not in self.batch_stats:
                raise RuntimeError(
                    f"Could not find the path for {name} batch stat corresponding to the param "
                    f"{path} in the batch stats dict. Parameters of the layer_instance should "
                    "not change!"
                )
        u = _get(self.batch_stats[(*path, "u")])
        for _ in range(self.n_steps):
            v = _l2_normalize(jnp.matmul(u, matrix.T), eps=self.epsilon)
            u = _l2_normalize(jnp.matmul(v, matrix), eps=self.epsilon)
        u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
        sigma = jnp.matmul(jnp.matmul(v, matrix), u.T)[0, 0]
        normalized = (matrix / jnp.where(sigma != 0, sigma, 1)).reshape(value.shape)
        if update_stats:
            _set(self.batch_stats[(*path, "u")], u)
            _set(self.batch_stats[(*path, "sigma")], sigma)
        dtype = dtypes.canonicalize_dtype(normalized, u, v, sigma, dtype=self.dtype)
        _set(param, jnp.asarray(normalized, dtype))


def _is_variable(x: Any) -> bool:
    return isinstance(x, _versions.variable_leaf_types())


class EMA(_pytree.Pytree):  # type: ignore[misc]
    """flax 0.12.8's ``nnx.EMA``: an exponential moving average of a node's Variables.

    ``params`` is a State of new Variables (same types and metadata) copied from the tracked
    Variables; ``update(node)`` moves each towards the node's (``decay * ema + (1 - decay) *
    new``); ``apply_to(model)`` is ``model`` rebuilt on the averages (sharing their Variables,
    and the model's own for what ``only`` leaves out). Graph mode only: ``graph=False`` needs
    flax 0.12.6.
    """

    def __init__(
        self, params: Any, decay: float, *, only: Any = ..., graph: bool | None = None
    ) -> None:
        _graph_mode_only("EMA", graph)
        self.graph = graph
        self.decay = decay
        self.filter = only
        copies = []
        for path, leaf in _nnx.to_flat_state(_own_state(params, only)):
            if not isinstance(leaf, _nnx.Variable):
                where = "/".join(f"[{key!r}]" for key in path)
                raise TypeError(
                    f"EMA only supports Variable leaves, got {type(leaf).__name__} at path "
                    f"'{where}'. Use the `only` filter to select Variable leaves."
                )
            copies.append((path, type(leaf)(jnp.copy(_get(leaf)), **leaf.get_metadata())))
        self.params = _data(_nnx.from_flat_state(copies))

    def update(self, updates: Any) -> None:
        """Moves each average towards ``updates``' Variable at its path:
        ``ema = decay * ema + (1 - decay) * update``."""

        def blend(ema: Any, update: Any) -> None:
            new = _get(update) if _is_variable(update) else update  # an array is taken as is
            _set(ema, self.decay * _get(ema) + (1.0 - self.decay) * new)

        jax.tree.map(blend, self.params, _nnx.state(updates, self.filter), is_leaf=_is_variable)

    def apply_to(self, model: Any) -> Any:
        """A new ``model`` (same type and structure) whose tracked Variables are the averages'
        own Variables; the rest are ``model``'s."""
        graphdef, _ = _nnx.split(model)
        state = _nnx.merge_state(_own_state(model), self.params)
        return _nnx.merge(graphdef, state)
