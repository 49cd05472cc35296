"""RNG state with the flax 0.11 semantics on every flax.

Since flax 0.11.0, layers hold a forked ``RngStream`` (see ``_layers``), so after
``split_rngs`` + ``vmap`` in ``__init__`` their RNG state keeps the layer axis. The shims here
make both forms of a "scan over layers" run on every version:

* :func:`split_rngs` leaves a stream alone when its key already carries the split axes (the
  flax 0.10 form's second ``split_rngs`` over ``scan``), with a warning at the decorator;
  the native ``split_rngs`` splits everything else exactly as it would;
* :class:`Rngs` takes ``fork(split=n)``, the guide's ``fork(splits=n)`` and ``split(n)``;
* :func:`fork_rngs` (flax 0.11.0) and :func:`reseed` with the 0.11 semantics (a distinct key
  per stream, ``policy=``) on flax 0.10 too.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, TypeVar

import jax
import jax.numpy as jnp

from nnx_compat import _classes, _paths, _versions, _warnings

__all__ = ["RngStream", "Rngs", "fork_rngs", "remember_parent", "reseed", "split_rngs"]

_nnx: Any = _versions.import_nnx()
_filterlib: Any = _nnx.filterlib
_native_split_rngs: Any = _nnx.split_rngs
_native_reseed: Any = _nnx.reseed

F = TypeVar("F", bound=Callable[..., Any])


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final[Any] = _Missing()
# flax 0.12.6 added Rngs.split and deprecated fork(split=) in the same release; before it,
# fork(split=) is the installed flax's own spelling and runs without a warning.
_FORK_SPLIT_DEPRECATED: Final = _versions.feature("RNGS_SPLIT")

Splits = int | tuple[int, ...]


def _split_shape(splits: Splits) -> tuple[int, ...]:
    return (splits,) if isinstance(splits, int) else tuple(splits)


def _streams(node: Any, only: Any) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """The RNG streams in ``node`` that ``only`` selects, as native ``split_rngs`` selects them."""
    predicate = _filterlib.to_predicate(only)
    for path, stream in _nnx.graph.iter_graph(node):
        if (
            isinstance(stream, _nnx.RngStream)
            and predicate((*path, "key"), stream.key)
            and predicate((*path, "count"), stream.count)
        ):
            yield path, stream


def _label(path: tuple[Any, ...], arguments: bool) -> str:
    """A stream's path; for a decorated call's ``(args, kwargs)``, named by its argument."""
    if arguments and len(path) >= 2:
        which = f"argument {path[1]}" if path[0] == 0 else f"{path[1]}="
        return f"{which} {_paths.join(path[2:])}".rstrip()
    return _paths.join(path)


def _scalar_state(path: Any, variable: Any) -> bool:
    return tuple(variable.shape) == ()


def _presplit(
    node: Any, splits: Splits, only: Any, squeeze: bool, arguments: bool = False
) -> list[str]:
    """The paths of the streams that already carry the split axes.

    Raises:
        ValueError: for a stream that is split in another shape, which no ``split_rngs`` can
            split again.
    """
    shape = () if squeeze else _split_shape(splits)
    carried: list[str] = []
    wrong: list[str] = []
    for path, stream in _streams(node, only):
        key_shape = tuple(stream.key.shape)
        if key_shape == ():
            continue
        if shape and key_shape[: len(shape)] == shape:
            carried.append(_label(path, arguments))
        else:
            wrong.append(f"{_label(path, arguments)} (key shape {key_shape})")
    if wrong:
        raise ValueError(
            f"nnx.split_rngs(splits={splits!r}) found RNG streams that are already split in "
            f"another shape: {', '.join(wrong)}. Since flax 0.11.0 layers keep the axes their "
            f"RNG state was split into when they were built; scan or vmap over those axes "
            f"directly, or build the layers with splits={splits!r}."
        )
    return carried


def _check_and_warn(
    node: Any, splits: Splits, only: Any, squeeze: bool, site: _warnings.Site | None
) -> None:
    carried = _presplit(node, splits, only, squeeze, arguments=site is not None)
    if carried:
        _warnings.warn_legacy(
            "split-rngs-over-scan",
            detail=f"already split: {', '.join(carried)}",
            site=site,
        )


def split_rngs(
    node: Any = _MISSING,
    /,
    *,
    splits: Splits,
    only: Any = ...,
    squeeze: bool = False,
    **kwargs: Any,
) -> Any:
    """``nnx.split_rngs`` that leaves alone streams whose keys already carry the split axes.

    The flax 0.10 "scan over layers" puts ``@nnx.split_rngs(splits=n)`` over ``@nnx.scan``;
    since flax 0.11.0 the layers' streams already have that axis and the native call fails.
    Here such streams are not split again (the 0.11 form's behaviour) and a deprecation
    warning names the decorator's line. Every other stream is split by the native function,
    so the decorator, the functional form (``backups = nnx.split_rngs(node, splits=n)``,
    then ``nnx.restore_rngs(backups)``) and flax 0.12's ``graph=``/``graph_updates=`` behave
    as upstream.

    Raises:
        ValueError: for streams already split in a shape other than ``splits``.
    """
    selected = _filterlib.All(only, _scalar_state)
    if squeeze:  # flax 0.10.0-0.10.2 have no squeeze=; its default (False) is not passed
        kwargs["squeeze"] = squeeze
    if node is _MISSING:
        site = _warnings.user_site()

        def decorator(f: F) -> F:
            native = _native_split_rngs(splits=splits, only=selected, **kwargs)(f)

            @functools.wraps(f)
            def split_rngs_wrapper(*args: Any, **kw: Any) -> Any:
                _check_and_warn((args, kw), splits, only, squeeze, site)
                return native(*args, **kw)

            return split_rngs_wrapper  # type: ignore[return-value]

        return decorator
    _check_and_warn(node, splits, only, squeeze, None)
    return _native_split_rngs(node, splits=splits, only=selected, **kwargs)


# --------------------------------------------------------------------------- Rngs


# --------------------------------------------------------------------------- RngStream

# flax's own class, taken before install() can replace the attribute with the shim
_NativeRngStream: Any = _nnx.RngStream
# flax 0.11.0: RngStream(key, *, tag) instead of RngStream(tag, key).
_STREAM_KEY_FIRST: Final = _versions.feature("RNGSTREAM_KEY_FIRST")


def _stream_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """``RngStream``'s arguments in the installed flax's order, from either generation's."""
    if _STREAM_KEY_FIRST:
        if len(args) == 2 and isinstance(args[0], str) and "tag" not in kwargs:
            tag, key = args
            _warnings.warn_legacy("rngstream-positional-tag", detail=f"tag {tag!r}")
            kwargs["tag"] = tag
            return (key,)
        return args
    if "tag" in kwargs and len(args) <= 1:  # flax 0.11's form on flax 0.10
        key = args[0] if args else kwargs.pop("key")
        args = (kwargs.pop("tag"), key)
    if _STREAM_COUNT and "count" not in kwargs and len(args) == 2:
        # flax 0.10.0-0.10.6: a required count, and a typed key
        tag, key = args
        key = _typed_key(key)
        kwargs["count"] = jax.numpy.zeros(key.shape, dtype=jax.numpy.uint32)
        return (tag, key)
    return args


# before flax 0.10.7: RngStream(tag, key, count), the tag on the key only
_STREAM_COUNT: Final = _versions.feature("RNGSTREAM_TAKES_COUNT")


def _typed_key(key: Any) -> Any:
    if isinstance(key, int):
        return jax.random.key(key)
    if isinstance(key, jax.Array) and key.dtype == jax.numpy.uint32:
        return jax.random.wrap_key_data(key)
    return key


def stream_tag(stream: Any) -> str:
    """A stream's tag, on every flax (before 0.10.7 it lives on the key)."""
    tag = getattr(stream, "tag", None)
    return str(tag if tag is not None else stream.key.tag)


def stream_predicate(filter_: Any) -> Any:
    """A filter as a predicate on ``((), stream)``; a string selects a stream by its tag (on the
    key before flax 0.10.7, where a stream has no tag of its own)."""
    if isinstance(filter_, str):
        return lambda path, stream: stream_tag(stream) == filter_
    return _filterlib.to_predicate(filter_)


def new_stream(key: Any, tag: str) -> Any:
    """Flax's own ``RngStream`` for ``key`` (an int seed, a typed key or key data), count at
    zero, on every flax."""
    kwargs = {"key": key, "tag": tag}
    args = _stream_arguments((), kwargs)
    return _NativeRngStream(*args, **kwargs)


class _RngStreamMeta(_classes.meta_of(_nnx.RngStream)):  # type: ignore[misc]
    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if vars(cls).get(_classes.NATIVE) is None:  # a user's subclass: its own constructor
            return super().__call__(*args, **kwargs)
        args = _stream_arguments(args, kwargs)
        return _NativeRngStream(*args, **kwargs)  # flax's own stream, exactly


class RngStream(_nnx.RngStream, metaclass=_RngStreamMeta):  # type: ignore[misc]
    """``nnx.RngStream`` taking flax 0.10's ``RngStream(tag, key)`` and flax 0.11's
    ``RngStream(key, tag=tag)`` on every flax; it builds flax's own ``RngStream``."""

    _nnx_compat_native = _nnx.RngStream

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # a user's subclass: either generation's arguments, as for the class itself
        args = _stream_arguments(args, kwargs)
        super().__init__(*args, **kwargs)


# --------------------------------------------------------------------------- Rngs


class Rngs(_nnx.Rngs, metaclass=_classes.meta_of(_nnx.Rngs)):  # type: ignore[misc,metaclass]
    """``nnx.Rngs`` with ``split(n)`` and both spellings of ``fork(split=n)`` on every flax.

    flax 0.12.6 added ``Rngs.split(n)`` and deprecated ``fork(split=n)``; the 0.11 migration
    guide writes ``fork(splits=n)``, which no flax release accepts. All three give the same
    keys: each selected stream draws one key and splits it.
    """

    _nnx_compat_native = _nnx.Rngs

    def fork(self, /, *, split: Any = None, splits: Any = _MISSING) -> Rngs:
        """A new ``Rngs`` with a fresh key drawn from each stream.

        Args:
            split: ``n``, a shape, or a mapping from stream filters to either; the selected
                streams' keys are split to that shape (deprecated: use :meth:`split`).
            splits: The migration guide's spelling of ``split`` (deprecated).
        """
        if splits is not _MISSING:
            if split is not None:
                raise TypeError("Rngs.fork takes split= or splits=, not both; use rngs.split(n)")
            _warnings.warn_legacy("rngs-fork-splits", detail=f"use rngs.split({splits!r})")
            split = splits
        elif split is not None and _FORK_SPLIT_DEPRECATED:
            _warnings.warn_legacy("rngs-fork-split", detail=f"use rngs.split({split!r})")
        chosen = _choose(self, split, default=None)
        keys: dict[str, Any] = {}
        for name, stream in self.items():
            shape = chosen.get(name)
            keys[name] = stream() if shape is None else jax.random.split(stream(), shape)
        return type(self)(**keys)

    def split(self, k: Any) -> Rngs:
        """A new ``Rngs`` whose selected streams' keys are split to shape ``k``.

        ``k`` is ``n``, a shape, or a mapping from stream filters to either (``None`` keeps a
        stream as it is). As flax 0.12.6's ``Rngs.split``.
        """
        chosen = _choose(self, k, default=_MISSING)
        keys: dict[str, Any] = {}
        for name, stream in self.items():
            shape = chosen.get(name, _MISSING)
            if shape is None or shape is _MISSING:  # kept: its key, its count from zero
                keys[name] = stream.key[...]
            else:
                keys[name] = jax.random.split(stream(), shape)
        return type(self)(**keys)


def _choose(rngs: Any, split: Any, *, default: Any) -> dict[str, Any]:
    """Stream name -> split shape, for the ``split`` argument of ``fork``/``split``."""
    if split is None:
        return {}
    if not isinstance(split, Mapping):
        split = {...: split}
    predicates = [(stream_predicate(f), shape) for f, shape in split.items()]
    chosen: dict[str, Any] = {}
    for name, stream in rngs.items():
        for predicate, shape in predicates:
            if predicate((), stream):
                chosen[name] = shape
                break
        else:
            if default is not _MISSING:
                chosen[name] = default
    return chosen


# --------------------------------------------------------------------------- parents

# Rngs objects that layers forked their streams from, by id: reseeding one of them no longer
# reaches the layers. (Pytree classes need not be hashable, hence ids and weak references.)
_parents: dict[int, weakref.ref[Any]] = {}


#: flax 0.10.7 added ``RngStream.fork()``.
_STREAM_FORK: Final = _versions.feature("RNGSTREAM_FORK")


def fork_stream(stream: Any, *, split: Any = None) -> Any:
    """``stream.fork(split=split)``: a new stream keyed by the stream's next key (split to
    ``split``), its count at zero. The method is missing before flax 0.10.7:
    :func:`_fork_by_hand` computes the same there."""
    if not _STREAM_FORK:
        return _fork_by_hand(stream, split)
    if split is None:
        return stream.fork()
    # flax 0.12.6 deprecates fork(split=) for split(), which computes the same
    return stream.split(split) if _FORK_SPLIT_DEPRECATED else stream.fork(split=split)


def _fork_by_hand(stream: Any, split: Any) -> Any:
    # flax 0.10.0-0.10.6: the tag lives on the key, and the constructor takes the count
    key = stream()
    if split is not None:
        key = jax.random.split(key, split)
    return new_stream(key, stream_tag(stream))


def remember_parent(rngs: Any) -> None:
    """Records that a layer forked its stream from ``rngs``."""
    key = id(rngs)
    if key in _parents and _parents[key]() is rngs:
        return

    def forget(_: object) -> None:
        _parents.pop(key, None)

    with contextlib.suppress(TypeError):  # not weak-referenceable: nothing to warn about
        _parents[key] = weakref.ref(rngs, forget)


def _is_parent(node: Any) -> bool:
    ref = _parents.get(id(node))
    return ref is not None and ref() is node


# --------------------------------------------------------------------------- reseed

_RESEED_POLICY: Final = _versions.feature("RESEED_POLICY")
_RESEED_GRAPH_ARG: Final = _versions.feature("RESEED_GRAPH_ARG")


def _scalars_only(path: Any, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    if shape != ():
        raise ValueError(
            f"Cannot reseed the stream at {_paths.join(path)}: its key has shape {shape}. "
            f"Pass policy='match_shape' to split the new key to that shape."
        )
    return key


def _match_shape(path: Any, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return key if shape == () else jax.random.split(key, shape)


def reseed(
    node: Any, /, *, policy: Any = "scalars_only", graph: bool | None = None, **stream_keys: Any
) -> None:
    """``nnx.reseed`` with the flax 0.11 semantics on every flax.

    Each selected stream gets a distinct key drawn from a new ``Rngs(**stream_keys)``, in
    graph order, and a zero count; ``policy`` handles streams with split keys
    (``'scalars_only'``, ``'match_shape'`` or a callable). flax 0.10 gave every stream the
    same key and had no ``policy``.

    Reseeding an ``Rngs`` that layers were built from no longer reaches those layers, which
    hold forked streams since flax 0.11.0: that case warns; reseed the model instead.

    Raises:
        TypeError: for ``graph=False`` on a flax without tree mode (before 0.12.5).
    """
    if isinstance(node, _nnx.Rngs) and _is_parent(node):
        _warnings.warn_legacy("reseed-shared-rngs")
    if graph is not None:
        if _RESEED_GRAPH_ARG:
            stream_keys["graph"] = graph
        elif graph is not True:
            raise TypeError(
                f"nnx.reseed(..., graph={graph!r}) needs flax 0.12.5 or newer, whose reseed has "
                f"tree mode; drop graph= on flax {_versions.installed_version('flax')}."
            )
    if _RESEED_POLICY:
        _native_reseed(node, policy=policy, **stream_keys)
        return
    if policy == "scalars_only":
        policy = _scalars_only
    elif policy == "match_shape":
        policy = _match_shape
    elif not callable(policy):
        raise ValueError(
            f"policy must be 'scalars_only', 'match_shape' or a callable, got {policy!r}"
        )
    rngs = _nnx.Rngs(**stream_keys)
    for path, stream in _nnx.graph.iter_graph(node):
        if isinstance(stream, _nnx.RngStream) and stream.key.tag in stream_keys:
            key = policy(path, rngs[stream.key.tag](), tuple(stream.key.shape))
            stream.key.value = key
            stream.count.value = jnp.zeros(key.shape, dtype=jnp.uint32)


# --------------------------------------------------------------------------- fork_rngs


def _fork_rngs_backport(node: Any = _MISSING, /, *, split: Any = None) -> Any:
    """flax 0.11's ``nnx.fork_rngs`` for flax 0.10."""
    if node is _MISSING:

        def decorator(f: F) -> F:
            @functools.wraps(f)
            def fork_rngs_wrapper(*args: Any, **kwargs: Any) -> Any:
                with _fork_rngs_backport((args, kwargs), split=split):
                    return f(*args, **kwargs)

            return fork_rngs_wrapper  # type: ignore[return-value]

        return decorator
    if split is None:
        split = {...: None}
    elif not isinstance(split, Mapping):
        split = {...: split}
    predicates = [(_filterlib.to_predicate(f), shape) for f, shape in split.items()]
    backups: list[Any] = []
    for path, stream in _nnx.graph.iter_graph(node):
        if not isinstance(stream, _nnx.RngStream):
            continue
        for predicate, shape in predicates:
            if predicate((*path, "key"), stream.key) and predicate((*path, "count"), stream.count):
                forked = fork_stream(stream, split=shape)
                backups.append((stream, stream.key.raw_value, stream.count.raw_value))
                stream.key.raw_value = forked.key.raw_value
                stream.count.raw_value = forked.count.raw_value
    return _nnx.rnglib.SplitBackups(backups)


#: ``nnx.fork_rngs``: native from flax 0.11.0, the backport before.
fork_rngs: Any = _nnx.fork_rngs if _versions.feature("HAS_FORK_RNGS") else _fork_rngs_backport
