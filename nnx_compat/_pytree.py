"""What an "NNX object" is, the same on every flax: ``is_nnx_object``, ``Pytree``, ``Object``.

* flax 0.10: every NNX object (Module, Rngs, Optimizer, ...) derives from ``nnx.Object``; none
  is a jax pytree, so ``jax.tree.*`` treats them as leaves. There is no ``nnx.Pytree``: the
  namespace serves flax 0.12's (``nnx_compat._backports.pytree``), of which every NNX object is
  an instance, and whose subclasses are jax pytrees.
* flax 0.11: Modules are pytrees; ``nnx.Pytree`` (0.11.1) is the base and ``Object`` an alias.
* flax 0.12.0: ``nnx.Object`` is a separate, non-pytree subclass of ``Pytree``, so
  ``isinstance(module, nnx.Object)`` is False. The namespace's ``nnx.Object`` keeps meaning
  "is an NNX object" in ``isinstance``/``issubclass`` (with an ``isinstance-object`` warning);
  subclassing it gives flax 0.12's non-pytree ``Object``.

Variables are not NNX objects in this sense: they are pytrees on every flax (their value is the
leaf), as ``jax.tree`` has always treated them.
"""

from __future__ import annotations

from typing import Any, Final

from nnx_compat import _versions, _warnings

__all__ = ["Object", "Pytree", "is_nnx_object"]

_nnx: Any = _versions.import_nnx()
# flax's own class, taken before install() can replace the attribute with the shim
_NativeObject: Any = _nnx.Object

#: The base class of every NNX object on the installed flax.
_BASE: Final[type] = _nnx.Pytree if _versions.feature("HAS_PYTREE") else _nnx.Object


def is_nnx_object(x: Any, /) -> bool:
    """Whether ``x`` is an NNX object (a Module, Rngs, Optimizer, ``nnx.List``, ...).

    Usable as ``is_leaf`` in ``jax.tree.*`` to treat NNX objects as leaves, as flax 0.10 did,
    on every flax: ``jax.tree.map(f, [modules], is_leaf=nnx_compat.is_nnx_object)``.
    Variables and ``nnx.State`` are not NNX objects.
    """
    return isinstance(x, _BASE)


if _versions.feature("HAS_PYTREE"):
    #: ``nnx.Pytree`` on every flax.
    Pytree: Any = _BASE
    _BACKPORT: Any = None
else:  # flax 0.10 has none: flax 0.12's, as a subclass of 0.10's Object (see _backports.pytree)
    from nnx_compat._backports.pytree import Pytree

    _BACKPORT = Pytree


def is_backported_pytree(x: Any, /) -> bool:
    """Whether ``x`` is an instance of a subclass of flax 0.10's backported ``nnx.Pytree``."""
    return _BACKPORT is not None and _BACKPORT in type(x).__mro__


def _derives(subclass: Any, base: type) -> bool:
    # the MRO, not issubclass: flax's classes are ABCs, whose checks would call back into ours
    return base in getattr(subclass, "__mro__", ())


class _ObjectMeta(type):
    """The namespace's ``Object`` on flax 0.12: matches every NNX object; subclassing gives flax's.

    It is not itself a subclass of flax's ``Object``: flax's ABC checks consult the subclasses of
    a class, and a broad check among them would change what ``isinstance(x, flax.nnx.Object)``
    answers for code that does not use nnx_compat.
    """

    def __new__(
        mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> Any:
        if not any(isinstance(base, _ObjectMeta) for base in bases):
            return super().__new__(mcls, name, bases, namespace)
        # class Foo(nnx.Object): a subclass of flax's Object, built by flax's metaclass
        native = tuple(_NativeObject if isinstance(b, _ObjectMeta) else b for b in bases)
        return type(_NativeObject)(name, native, namespace, **kwargs)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return _NativeObject(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        return getattr(_NativeObject, name)

    def __instancecheck__(cls, instance: Any) -> bool:
        _warnings.warn_legacy("isinstance-object")
        return _derives(type(instance), _BASE)

    def __subclasscheck__(cls, subclass: type) -> bool:
        _warnings.warn_legacy("isinstance-object")
        return _derives(subclass, _BASE)


if _versions.feature("OBJECT_IS_MODULE_BASE"):
    Object: Any = _NativeObject
else:  # flax 0.12.0: Object is no longer a base of Module

    class Object(metaclass=_ObjectMeta):  # type: ignore[no-redef]
        """``nnx.Object``: ``isinstance(x, nnx.Object)`` is True for every NNX object.

        .. deprecated::
            Since flax 0.12.0 ``nnx.Object`` is not a base of ``nnx.Module``; test
            ``isinstance(x, nnx.Pytree)`` (or ``nnx_compat.is_nnx_object(x)``). Subclassing it
            gives flax 0.12's non-pytree ``Object``; calling it makes one.
        """
