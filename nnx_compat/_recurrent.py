"""flax 0.11's RNG handling for the recurrent layers, on flax 0.10.

Since flax 0.11.0 a cell (``LSTMCell``, ``OptimizedLSTMCell``, ``SimpleCell``, ``GRUCell``)
keeps no RNGs unless built with ``keep_rngs=True`` (then ``rngs.carry.fork()``), and draws its
carry from a stream (``initialize_carry(shape, rngs)`` takes an ``Rngs``, whose ``carry``
stream it uses, or an ``RngStream``); ``RNN`` and ``Bidirectional`` take ``rngs=True`` (their
own ``RngStream(0, tag='carry')``), ``False``, an ``Rngs`` (``rngs.carry.fork()``) or a stream.
flax 0.10's layers held the caller's ``Rngs`` (``rngs/<stream>/{key,count}`` under each) and
drew ``rngs.carry()``. The classes below give 0.11's behaviour, state structure and keys on
flax 0.10, on top of flax's own layers; on flax 0.11+ they are flax's layers plus the two
0.10 calls flax rejects there, each with a ``recurrent-layers-fork-rngs`` warning:

* ``RNN(cell, rngs=None)`` / ``Bidirectional(..., rngs=None)``, 0.10's spelling of the default,
  means ``rngs=True``;
* ``cell.initialize_carry(shape)`` on a cell that keeps no stream draws, as on 0.10, from the
  carry stream of the ``Rngs`` the cell was built with.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any, Final

from nnx_compat import _classes, _layers, _rngs, _versions, _warnings

__all__ = ["Bidirectional", "GRUCell", "LSTMCell", "OptimizedLSTMCell", "SimpleCell", "rnn_rngs"]

_nnx: Any = _versions.import_nnx()
# flax 0.11.0: layers fork their stream at construction (the recurrent layers with the rest).
_FORKS: Final = _versions.feature("LAYERS_FORK_RNGS")

_NO_CARRY_RNGS: Final = "RNGs must be provided to initialize the cell carry."


def _carry_stream(rngs: Any) -> Any:
    """flax 0.11's reading of a cell's ``rngs`` argument: an ``Rngs`` gives its carry stream."""
    if isinstance(rngs, _nnx.Rngs):
        return rngs.carry
    return rngs


def rnn_rngs(rngs: Any, layer: str) -> Any:
    """The stream flax 0.11's ``RNN``/``Bidirectional`` keep for ``rngs=``.

    Raises:
        TypeError: for anything but a bool, an ``Rngs`` or an ``RngStream``.
    """
    if rngs is None:  # flax 0.10's default, which meant Rngs(0)
        _warnings.warn_legacy("recurrent-layers-fork-rngs", detail=f"nnx.{layer}(rngs=None)")
        rngs = True
    if rngs is True:
        return _rngs.RngStream(0, tag="carry")
    if rngs is False:
        return None
    if isinstance(rngs, _nnx.Rngs):
        return _layers._fork(rngs, "carry", layer)  # rngs.carry.fork(), as a layer forks
    if isinstance(rngs, _nnx.RngStream):
        return rngs
    raise TypeError(
        f"nnx.{layer} takes rngs as True (its own carry stream, the default), False, an "
        f"nnx.Rngs or an nnx.RngStream, got {type(rngs).__name__}"
    )


class _Carry:
    """Hands flax 0.10's ``initialize_carry`` a stream where it calls ``rngs.carry()``."""

    __slots__ = ("stream",)

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    @property
    def carry(self) -> Any:
        return self.stream


#: cell -> the ``Rngs`` it was built with: flax 0.10's ``cell.initialize_carry(shape)``
#: drew from it (``rngs.carry()``), where flax 0.11+ raises without a kept stream.
_BUILT_WITH: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _remember(cell: Any, rngs: Any) -> None:
    if isinstance(rngs, _nnx.Rngs):
        _rngs.remember_parent(rngs)
        with contextlib.suppress(TypeError):  # not weak-referenceable: nothing to remember
            _BUILT_WITH[cell] = rngs


def _legacy_carry_rngs(cell: Any) -> Any:
    """The ``Rngs`` a cell was built with, for flax 0.10's ``initialize_carry(shape)``, with
    its warning; None when there is none.

    Raises:
        ValueError: inside a transform whose trace the ``Rngs`` is not part of.
    """
    rngs = _BUILT_WITH.get(cell)
    if rngs is None:
        return None
    stream = rngs.carry
    trace = getattr(getattr(stream, "count", None), "_trace_state", None)
    if trace is not None and not trace.is_valid():
        raise ValueError(
            f"{type(cell).__name__}.initialize_carry(shape) without rngs draws, as on flax "
            "0.10, from the Rngs the cell was built with, which this transform cannot update: "
            "pass rngs= (cell.initialize_carry(shape, rngs)) or build the cell with "
            "keep_rngs=True [nnx-compat: recurrent-layers-fork-rngs]"
        )
    _warnings.warn_legacy(
        "recurrent-layers-fork-rngs", detail=f"{type(cell).__name__}.initialize_carry(shape)"
    )
    return rngs


class _Cell:
    """flax 0.11's cell constructor and ``initialize_carry`` on every flax (over flax 0.10's
    cells there), plus flax 0.10's ``initialize_carry(shape)`` from the build ``Rngs``."""

    def __init__(self, *args: Any, keep_rngs: bool = False, rngs: Any, **kwargs: Any) -> None:
        if _FORKS:
            super().__init__(*args, keep_rngs=keep_rngs, rngs=rngs, **kwargs)  # type: ignore[call-arg]
        else:
            # flax 0.11 forks the carry stream before building the Linear layers (with only a
            # default stream, both draw from it, so the order decides the keys)
            kept = _layers._fork(rngs, "carry", type(self).__name__) if keep_rngs else None
            super().__init__(*args, rngs=rngs, **kwargs)  # type: ignore[call-arg]
            self.rngs = kept
        _remember(self, rngs)

    def initialize_carry(
        self, input_shape: tuple[int, ...], rngs: Any = None, **kwargs: Any
    ) -> Any:
        """The initial carry, drawn from ``rngs`` (an ``Rngs``: its carry stream) or from the
        stream the cell keeps; with neither, flax 0.10's draw from the ``Rngs`` the cell was
        built with (a warning), else flax 0.11's ValueError."""
        if isinstance(rngs, _Carry):
            rngs = rngs.stream
        if rngs is None and self.__dict__.get("rngs") is None:
            rngs = _legacy_carry_rngs(self)
        if _FORKS:  # flax 0.12 also takes carry_init=
            return super().initialize_carry(input_shape, rngs, **kwargs)  # type: ignore[misc]
        stream = _carry_stream(rngs)
        if stream is None:
            stream = self.__dict__.get("rngs")
        if stream is None:
            raise ValueError(_NO_CARRY_RNGS)
        return super().initialize_carry(input_shape, _Carry(stream), **kwargs)  # type: ignore[misc]


def _cell(name: str) -> Any:
    native = getattr(_nnx, name)
    # on flax 0.10 reading cell.rngs warns, as for the other layers
    mixins = (_Cell,) if _FORKS else (_layers._ForkedRngs, _Cell)
    shim = _classes.meta_of(native)(name, (*mixins, native), {"_nnx_compat_native": native})
    shim.__module__ = __name__
    shim.__qualname__ = name
    shim.__doc__ = (
        f"``nnx.{name}`` with flax 0.11's ``keep_rngs=`` and carry stream on every flax, and "
        "flax 0.10's ``initialize_carry(shape)``."
    )
    return shim


LSTMCell: Any = _cell("LSTMCell")
OptimizedLSTMCell: Any = _cell("OptimizedLSTMCell")
SimpleCell: Any = _cell("SimpleCell")
GRUCell: Any = _cell("GRUCell")


def call_rngs(layer: Any, rngs: Any) -> Any:
    """What flax 0.10's ``RNN.__call__`` hands its cell for flax 0.11's ``rngs`` argument: the
    layer's stream, or an ``Rngs``'s forked carry stream, wrapped for 0.10's cells."""
    if rngs is None:
        rngs = layer.__dict__.get("rngs")
    if isinstance(rngs, _nnx.Rngs):
        rngs = _rngs.fork_stream(rngs.carry)
    return None if rngs is None else _Carry(rngs)


_Bidirectional: Any = _nnx.Bidirectional


class Bidirectional(_Bidirectional, metaclass=_classes.meta_of(_Bidirectional)):  # type: ignore[misc,metaclass]
    """``nnx.Bidirectional`` with flax 0.11's RNG handling on every flax; ``rngs=None`` (flax
    0.10's default) means ``rngs=True``."""

    _nnx_compat_native = _Bidirectional

    def __init__(self, forward_rnn: Any, backward_rnn: Any, *, rngs: Any = True, **kwargs: Any):
        if _FORKS:
            if rngs is None:
                rngs = rnn_rngs(None, "Bidirectional") is not None  # warns; True
            super().__init__(forward_rnn, backward_rnn, rngs=rngs, **kwargs)
            return
        super().__init__(forward_rnn, backward_rnn, **kwargs)
        self.rngs = rnn_rngs(rngs, "Bidirectional")

    if not _FORKS:

        def __call__(self, inputs: Any, *, rngs: Any = None, **kwargs: Any) -> Any:
            """As flax 0.11: an ``Rngs`` gives its carry stream, shared by both directions."""
            if rngs is None:
                rngs = self.__dict__.get("rngs")
            if isinstance(rngs, _nnx.Rngs):
                rngs = rngs.carry
            return super().__call__(inputs, rngs=rngs, **kwargs)
