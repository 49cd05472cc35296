"""Layers that hold forked RNG streams on every flax, as flax 0.11 layers do.

flax 0.10 layers kept a reference to the caller's ``Rngs``; since 0.11.0 they hold
``rngs[stream].fork()``, which consumes one count of the parent stream when the layer is
built. The RNG state structure (``dropout/rngs/{key,count}``), the keys, the masks and the
parameters of every layer built after a ``Dropout`` therefore differ between the two. These
subclasses of the native layers give the 0.11 behaviour on every flax, so one program gives
the same numbers on 0.10, 0.11 and 0.12:

* on flax 0.11+ they are the native layers, plus an error that names the layer and the fix
  when the ``Rngs`` lacks the stream;
* on flax 0.10 they also fork the stream at construction and draw the call's key from it
  exactly as 0.11 does, handing the native ``__call__`` that key; reading ``layer.rngs``
  from user code warns there, since it no longer is the ``Rngs`` the layer was built with.

``Dropout`` also takes its flax 0.10 positional arguments (``Dropout(0.5, (0,))``).
"""

from __future__ import annotations

from typing import Any, Final

from nnx_compat import _classes, _patterns, _rngs, _versions, _warnings

__all__ = ["RNN", "Dropout", "MissingRngStreamError", "MultiHeadAttention"]

_nnx: Any = _versions.import_nnx()
# flax 0.11.0: layers fork their stream at construction.
_FORKS: Final = _versions.feature("LAYERS_FORK_RNGS")


class MissingRngStreamError(KeyError):
    """A layer was built with an ``Rngs`` that has neither its stream nor ``default``."""

    def __str__(self) -> str:
        return str(self.args[0])


def _check_stream(rngs: Any, stream: str, layer: str) -> None:
    if not isinstance(rngs, _nnx.Rngs) or stream in rngs or "default" in rngs:
        return
    frame = _warnings.user_frame()
    where = ""
    if frame is not None:
        code = frame.f_code
        where = f" at {code.co_filename}:{frame.f_lineno} (in {code.co_qualname})"
    names = ", ".join(repr(name) for name, _ in rngs.items()) or "none"
    raise MissingRngStreamError(
        f"nnx.{layer}{where} needs an RNG stream named {stream!r}, but its nnx.Rngs has only "
        f"{names} and no default. Since flax 0.11.0 a layer forks its stream when it is "
        f"built (flax 0.10 failed only when the layer was called without rngs). Give the "
        f"Rngs that stream, e.g. nnx.Rngs(params=0, {stream}=1), or a default seed, "
        f"nnx.Rngs(0); or build the layer with rngs=None and pass rngs= when calling it. "
        f"[nnx-compat: dropout-missing-stream]"
    )


def _fork(rngs: Any, stream: str, layer: str) -> Any:
    """The stream a flax 0.11 layer keeps: ``rngs[stream].fork()``."""
    if isinstance(rngs, _nnx.Rngs):
        _rngs.remember_parent(rngs)
        return _rngs.fork_stream(rngs[stream])
    if isinstance(rngs, _nnx.RngStream):
        return _rngs.fork_stream(rngs)
    if rngs is None:
        return None
    raise TypeError(
        f"nnx.{layer} takes rngs as an nnx.Rngs, an nnx.RngStream or None, got {rngs!r}"
    )


class _OneStream:
    """Hands flax 0.10's ``__call__`` one stream where it reads ``rngs[name]``/``rngs.name``."""

    __slots__ = ("_stream",)

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __getitem__(self, name: str) -> Any:
        return self._stream

    def __getattr__(self, name: str) -> Any:
        return self._stream


def _for_native(rngs: Any, stream: str) -> Any:
    """What flax 0.10's ``__call__`` needs to draw the key flax 0.11 would draw."""
    if isinstance(rngs, _nnx.RngStream):
        return _OneStream(rngs)
    if isinstance(rngs, _nnx.Rngs) or rngs is None:
        return rngs
    return _OneStream(lambda: rngs)  # a key, taken as it is (flax 0.11 accepts one)


class _ForkedRngs:
    """flax 0.10: ``layer.rngs`` is the layer's own forked stream, where 0.10's layer held the
    caller's ``Rngs``; reading it from user code warns. On flax 0.11+ the native attribute
    means the same, so there nothing is added (see the mixin's use below)."""

    @property
    def rngs(self) -> Any:
        """The layer's forked ``RngStream`` (not the ``Rngs`` it was built with)."""
        if _warnings.called_from_user():
            _warnings.warn_legacy("layers-share-rngs")
        return self.__dict__.get("rngs")

    @rngs.setter
    def rngs(self, value: Any) -> None:
        self.__dict__["rngs"] = value


# flax 0.11+: the native attribute already is the forked stream; a read means what it says.
_RNGS_MIXIN: Final[tuple[type, ...]] = () if _FORKS else (_ForkedRngs,)

_DROPOUT_POSITIONAL: Final = _patterns.POSITIONAL["dropout-positional"]


class Dropout(*_RNGS_MIXIN, _nnx.Dropout, metaclass=_classes.meta_of(_nnx.Dropout)):  # type: ignore[misc,metaclass]
    """``nnx.Dropout`` holding a forked stream on every flax; takes 0.10's positional form."""

    _nnx_compat_native = _nnx.Dropout

    def __init__(self, rate: float, *args: Any, **kwargs: Any) -> None:
        """As flax 0.11's ``Dropout(rate, *, broadcast_dims, deterministic, rng_collection,
        rngs)``; flax 0.10's positional ``Dropout(rate, broadcast_dims, ...)`` warns."""
        if args:
            kwargs = _positional("Dropout", _DROPOUT_POSITIONAL, args, kwargs)
            _warn_positional("dropout-positional", "nnx.Dropout(rate", _DROPOUT_POSITIONAL, args)
        rngs = kwargs.get("rngs")
        stream = kwargs.get("rng_collection", "dropout")
        _check_stream(rngs, stream, "Dropout")
        if _FORKS:
            if isinstance(rngs, _nnx.Rngs):
                _rngs.remember_parent(rngs)
            super().__init__(rate, **kwargs)
            return
        super().__init__(rate, **{**kwargs, "rngs": None})
        self.rngs = _fork(rngs, stream, "Dropout")

    if not _FORKS:

        def __call__(self, inputs: Any, *, rngs: Any = None, **kwargs: Any) -> Any:
            """Applies dropout, drawing the key as flax 0.11 does (flax 0.10 only)."""
            source = rngs if rngs is not None else self.__dict__.get("rngs")
            return super().__call__(inputs, rngs=_for_native(source, self.rng_collection), **kwargs)


# flax 0.10's order; flax 0.12.6 inserted num_kv_heads before in_kv_features.
_MHA_POSITIONAL: Final = _patterns.POSITIONAL["mha-positional"]


_MHA: Any = _nnx.MultiHeadAttention
# flax 0.10.7 added in_kv_features; before it, four positional arguments
_MHA_IN_KV: Final = _versions.feature("MHA_IN_KV_FEATURES")


class MultiHeadAttention(*_RNGS_MIXIN, _MHA, metaclass=_classes.meta_of(_MHA)):  # type: ignore[misc,metaclass]
    """``nnx.MultiHeadAttention`` holding a forked ``dropout`` stream on every flax.

    Positional arguments keep flax 0.10's meaning, ``(num_heads, in_features, qkv_features,
    out_features, in_kv_features)``: a fifth one is ``in_kv_features`` (with a warning), never
    flax 0.12.6's ``num_kv_heads``.
    """

    _nnx_compat_native = _nnx.MultiHeadAttention

    def __init__(self, num_heads: int, in_features: Any, *args: Any, **kwargs: Any) -> None:
        """As the native constructor; the kept stream is ``rngs.dropout.fork()``."""
        if args:
            if len(args) == len(_MHA_POSITIONAL) and not _MHA_IN_KV:
                raise TypeError(
                    f"MultiHeadAttention takes at most {len(args) + 1} positional arguments on "
                    f"flax {_versions.installed_version('flax')}: the fifth, in_kv_features, "
                    "needs flax 0.10.7 or newer"
                )
            kwargs = _positional("MultiHeadAttention", _MHA_POSITIONAL, args, kwargs, offset=2)
            if len(args) == len(_MHA_POSITIONAL):
                _warnings.warn_legacy(
                    "mha-positional",
                    detail="the fifth positional argument is in_kv_features; pass it, or "
                    "num_kv_heads, by keyword",
                )
        rngs = kwargs.get("rngs")
        keeps = kwargs.get("keep_rngs", True) and kwargs.get("dropout_rate", 0.0) > 0
        if keeps:
            _check_stream(rngs, "dropout", "MultiHeadAttention")
        super().__init__(num_heads, in_features, **kwargs)
        if not _FORKS:
            self.rngs = _fork(rngs, "dropout", "MultiHeadAttention") if keeps else None
        elif keeps and isinstance(rngs, _nnx.Rngs):
            _rngs.remember_parent(rngs)

    if not _FORKS:

        def __call__(self, *args: Any, rngs: Any = None, **kwargs: Any) -> Any:
            """Attends, drawing the dropout key as flax 0.11 does (flax 0.10 only)."""
            source = rngs if rngs is not None else self.__dict__.get("rngs")
            return super().__call__(*args, rngs=_for_native(source, "dropout"), **kwargs)


_RNN_POSITIONAL: Final = _patterns.POSITIONAL["rnn-positional"]


class RNN(_nnx.RNN, metaclass=_classes.meta_of(_nnx.RNN)):  # type: ignore[misc,metaclass]
    """``nnx.RNN`` that takes flax 0.10's positional ``RNN(cell, time_major, return_carry, ...)``,
    with flax 0.11's RNG handling on every flax (see ``_recurrent``): ``rngs=True`` (the
    default, its own carry stream), ``False``, an ``Rngs`` (``rngs.carry.fork()``) or a stream;
    ``rngs=None``, flax 0.10's default, means ``True``.
    """

    _nnx_compat_native = _nnx.RNN

    def __init__(self, cell: Any, *args: Any, **kwargs: Any) -> None:
        """As flax 0.11's constructor; positional arguments after ``cell`` warn."""
        from nnx_compat import _recurrent

        if args:
            kwargs = _positional("RNN", _RNN_POSITIONAL, args, kwargs)
            _warn_positional("rnn-positional", "nnx.RNN(cell", _RNN_POSITIONAL, args)
        rngs = kwargs.pop("rngs", True)
        if _FORKS:
            if rngs is None:
                rngs = _recurrent.rnn_rngs(None, "RNN") is not None  # warns; True
            super().__init__(cell, rngs=rngs, **kwargs)
            return
        super().__init__(cell, **kwargs)
        self.rngs = _recurrent.rnn_rngs(rngs, "RNN")

    if not _FORKS:

        def __call__(self, inputs: Any, *, rngs: Any = None, **kwargs: Any) -> Any:
            """As flax 0.11: the carry is drawn from the layer's stream, or from a fork of an
            ``Rngs``'s carry stream (flax 0.10 only)."""
            from nnx_compat import _recurrent

            return super().__call__(inputs, rngs=_recurrent.call_rngs(self, rngs), **kwargs)


def _warn_positional(
    pattern_id: str, call: str, names: tuple[str, ...], args: tuple[Any, ...]
) -> None:
    """Warns with the keyword form of the positional call: ``nnx.RNN(cell, time_major=...)``."""
    keywords = ", ".join(f"{name}=..." for name in names[: len(args)])
    _warnings.warn_legacy(pattern_id, detail=f"{call}, {keywords})")


def _positional(
    layer: str,
    names: tuple[str, ...],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    offset: int = 1,
) -> dict[str, Any]:
    """Maps a layer's flax 0.10 positional arguments to their keywords."""
    if len(args) > len(names):
        raise TypeError(
            f"nnx.{layer} takes at most {len(names) + offset} positional arguments in its "
            f"flax 0.10 form, got {len(args) + offset}; pass the others by keyword"
        )
    mapped = dict(zip(names, args, strict=False))
    both = sorted(set(mapped) & set(kwargs))
    if both:
        raise TypeError(f"nnx.{layer} got {', '.join(both)} both by position and by keyword")
    return {**mapped, **kwargs}
