"""Everything nnx_compat knows about the installed flax, and the only place that reads versions.

Two kinds of knowledge live here:

* version numbers, parsed once (:func:`parse_version`) and used for the API generation
  and for error messages;
* named feature probes (:data:`FEATURES`), which look at the installed code rather than at
  its version number. Shims ask for a feature by name (:func:`feature`), never for a version.

Importing this module is cheap: it does not import flax. :func:`import_nnx` does, and turns
the ways that can fail into errors that say what to install.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import inspect
import types
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Final

from packaging.specifiers import SpecifierSet
from packaging.version import Version

__all__ = [
    "CHANGES",
    "FEATURES",
    "GENERATIONS",
    "Environment",
    "IncompatibleJaxError",
    "UnknownFlaxVersionWarning",
    "Version",
    "detect",
    "feature",
    "generation",
    "import_nnx",
    "parse_version",
]

#: API generations, oldest first. The last one is used for any newer flax.
GENERATIONS: Final = ("0.10", "0.11", "0.12")

#: The oldest flax release nnx_compat supports.
MINIMUM_FLAX: Final = Version("0.10.0")

_JIT_AXES: Final = "its nnx.jit passes abstracted_axes= to jax.jit, which jax 0.8.3 rejects"
_SHARD_MAP_AUTO: Final = "its nnx.shard_map passes auto= to jax's, which jax 0.8.0 rejects"

#: The jax releases each flax release works with, as the release sweep found them
#: (``python -m tools.sweep``: the oldest and newest of its candidates with which flax imports
#: and runs a layer under ``nnx.jit`` and ``nnx.grad``, its ``nnx.pmap`` and ``nnx.shard_map``; flax
#: declares no upper bound): (flax releases, jax requirement, why). A test checks the table
#: against the sweep's results (``tools/sweep/results.json``).
JAX_RANGES: Final[tuple[tuple[str, str, str], ...]] = (
    (">=0.10.0,<0.10.4", "jax>=0.4.27,<0.8.3", _JIT_AXES),
    ("==0.10.4", "jax>=0.4.33,<0.8", "needs jax.sharding.AbstractMesh; " + _SHARD_MAP_AUTO),
    (">=0.10.5,<0.10.7", "jax>=0.5.3,<0.8", "flax declares jax>=0.5.1; " + _SHARD_MAP_AUTO),
    (
        ">=0.10.7,<0.11.1",
        "jax>=0.6.0,<0.8",
        "imports jax._src.core.mutable_array, which jax 0.8 removed",
    ),
    (">=0.11.1,<0.12.0", "jax>=0.6.0,<0.8", _SHARD_MAP_AUTO),
    ("==0.12.0", "jax>=0.7.2,<0.8", "flax declares jax>=0.7.2; " + _SHARD_MAP_AUTO),
    ("==0.12.1", "jax>=0.8.1,<0.8.3", "flax declares jax>=0.8.1; " + _JIT_AXES),
    (
        ">=0.12.2,<0.12.6",
        "jax>=0.8.1,<0.10",
        "flax declares jax>=0.8.1; its nnx.pmap passes global_arg_shapes= to jax.pmap, "
        "which jax 0.10.0 rejects",
    ),
    ("==0.12.6", "jax>=0.8.1", "flax's declared floor; works with jax up to 0.10.2"),
    (">=0.12.7,<0.13", "jax>=0.10.0", "flax 0.12.7 raised its jax floor"),
)


class IncompatibleJaxError(ImportError):
    """The installed flax cannot be imported with the installed jax."""


class UnknownFlaxVersionWarning(UserWarning):
    """The installed flax is newer than every generation nnx_compat knows."""


# --------------------------------------------------------------------------- versions


def parse_version(text: str) -> Version:
    """Parses a PEP 440 version such as ``0.12.8``, ``0.11.0rc1``, ``0.10.7.dev3+g1a2b``.

    Raises:
        ValueError: if ``text`` is not a PEP 440 version (``packaging``'s InvalidVersion).
    """
    return Version(text)


def _minor(version: Version) -> tuple[int, int]:
    return (version.major, version.minor)


def generation(version: Version | str) -> str:
    """The API generation (``"0.10"``, ``"0.11"`` or ``"0.12"``) of a flax version.

    A pre-release belongs to the generation it leads to (``0.11.0rc1`` is ``"0.11"``). A flax
    newer than the newest known generation maps to the newest one.

    Raises:
        ImportError: for a flax older than 0.10.
    """
    v = parse_version(version) if isinstance(version, str) else version
    if Version(v.base_version) < MINIMUM_FLAX:
        raise ImportError(
            f"nnx_compat supports flax 0.10 and newer, but flax {v} is installed. "
            "Upgrade it: pip install 'flax>=0.10'"
        )
    key = f"{v.major}.{v.minor}"
    return key if key in GENERATIONS else GENERATIONS[-1]


def is_newer_than_known(version: Version | str) -> bool:
    v = parse_version(version) if isinstance(version, str) else version
    return _minor(v) > _minor(parse_version(GENERATIONS[-1]))


@functools.cache
def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, or None if it is not installed (read once:
    every shim module asks for flax's when it is imported)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def jax_requirement(flax_version: Version | str) -> tuple[str, str] | None:
    """The jax requirement that ``flax_version`` works with, and why it ends there, if known."""
    v = parse_version(flax_version) if isinstance(flax_version, str) else flax_version
    for releases, spec, why in JAX_RANGES:
        if SpecifierSet(releases).contains(Version(v.base_version)):  # 0.12.8rc1 is 0.12.8's
            return spec, why
    return None


def jax_range_for(flax_version: Version | str) -> str | None:
    """The jax requirement known to work with ``flax_version``, if known."""
    known = jax_requirement(flax_version)
    return known[0] if known else None


def installed_at_least(release: str, distribution: str = "flax") -> bool:
    """Whether the installed ``distribution`` is ``release`` or newer (a pre-release of
    ``release`` counts as it)."""
    text = installed_version(distribution)
    if text is None:
        return False
    return Version(parse_version(text).base_version) >= parse_version(release)


# --------------------------------------------------------------------------- import


_warned_newer = False


def import_nnx() -> types.ModuleType:
    """Imports ``flax.nnx``, turning each way it can fail into an error that names the fix.

    Raises:
        ImportError: no flax, or a flax older than 0.10.
        IncompatibleJaxError: the installed flax cannot import with the installed jax.
    """
    global _warned_newer
    flax_text = installed_version("flax")
    if flax_text is None:
        raise ImportError(
            "nnx_compat needs flax, which is not installed. Install it: pip install 'flax>=0.10' "
            "(flax 0.10.7 also needs jax<0.8: pip install 'flax==0.10.7' 'jax==0.6.2')"
        )
    flax_v = parse_version(flax_text)
    generation(flax_v)  # raises for flax < 0.10
    try:
        nnx = importlib.import_module("flax.nnx")
    except ImportError as err:
        jax_text = installed_version("jax") or "(not installed)"
        known = jax_range_for(flax_v)
        hint = (
            f"flax {flax_text} imports with {known}: pip install '{known}'"
            if known
            else f"install a jax release that flax {flax_text} supports"
        )
        raise IncompatibleJaxError(
            f"flax {flax_text} cannot be imported with jax {jax_text} ({err}). {hint}"
        ) from err
    if is_newer_than_known(flax_v) and not _warned_newer:
        _warned_newer = True
        warnings.warn(
            f"flax {flax_text} is newer than the newest flax generation nnx_compat knows "
            f"({GENERATIONS[-1]}); using the {GENERATIONS[-1]} semantics. "
            "Upgrade nnx_compat if a newer release supports it.",
            UnknownFlaxVersionWarning,
            stacklevel=2,
        )
    return nnx


# --------------------------------------------------------------------------- probes

Probe = Callable[[Any], bool]

FEATURES: dict[str, Probe] = {}
"""Named feature probes. Each takes the ``flax.nnx`` module and returns a bool."""


#: The release where a probe's answer changes: name -> (release, the answer from it on).
#: Patterns take their release from here (``Pattern.probe``); a test checks each against the
#: installed flax's version.
CHANGES: dict[str, tuple[str, bool]] = {}


def _probe(since: str | None = None, *, until: str | None = None) -> Callable[[Probe], Probe]:
    """Registers a probe; ``since``: it answers True from that release on; ``until``: it answers
    False from that release on; neither: it does not follow the release order."""

    def register(func: Probe) -> Probe:
        name = func.__name__.upper()
        FEATURES[name] = func
        if since is not None:
            CHANGES[name] = (since, True)
        elif until is not None:
            CHANGES[name] = (until, False)
        return func

    return register


def _init_signature(cls: type) -> inspect.Signature:
    return inspect.signature(cls.__init__)  # type: ignore[misc]


@_probe(since="0.11.0")
def has_model_and_optimizer(nnx: Any) -> bool:
    """``nnx.ModelAndOptimizer`` exists (flax 0.11.0)."""
    return hasattr(nnx, "ModelAndOptimizer")


@_probe(since="0.11.0")
def optimizer_requires_wrt(nnx: Any) -> bool:
    """``Optimizer(model, tx, *, wrt)``: wrt keyword-only and required (flax 0.11.0)."""
    param = _init_signature(nnx.Optimizer).parameters.get("wrt")
    return (
        param is not None
        and param.kind is inspect.Parameter.KEYWORD_ONLY
        and param.default is inspect.Parameter.empty
    )


@_probe(since="0.10.2")
def optimizer_update_kwargs(nnx: Any) -> bool:
    """``Optimizer.update(..., **kwargs)`` passes extra arguments to the transformation's
    update (flax 0.10.2)."""
    parameters = inspect.signature(nnx.Optimizer.update).parameters.values()
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


@_probe(since="0.11.0")
def optimizer_update_takes_model(nnx: Any) -> bool:
    """``Optimizer.update(model, grads)`` instead of ``update(grads)`` (flax 0.11.0)."""
    return "model" in inspect.signature(nnx.Optimizer.update).parameters


@_probe(until="0.11.0")
def optimizer_holds_model(nnx: Any) -> bool:
    """The Optimizer keeps ``.model`` (flax 0.10; removed in 0.11.0)."""
    return not optimizer_update_takes_model(nnx)


@_probe(since="0.11.0")
def optimizer_refuses_model_attribute(nnx: Any) -> bool:
    """``Optimizer.__getattribute__`` refuses ``.model`` with flax's own message (flax 0.11.0)."""
    return "__getattribute__" in vars(nnx.Optimizer)


@_probe(since="0.12.8")
def optimizer_graph_arg(nnx: Any) -> bool:
    """``Optimizer(..., graph=)`` for tree mode (flax 0.12.8)."""
    return "graph" in _init_signature(nnx.Optimizer).parameters


@_probe(since="0.11.1")
def has_pytree(nnx: Any) -> bool:
    """``nnx.Pytree`` exists (flax 0.11.1)."""
    return hasattr(nnx, "Pytree")


@_probe(since="0.11.0")
def modules_are_pytrees(nnx: Any) -> bool:
    """jax's tree functions descend into Modules (flax 0.11.0)."""
    import jax

    class _Probe(nnx.Module):  # type: ignore[misc,name-defined]
        pass

    # A registered pytree with no children has no leaves; an unregistered object is one leaf.
    return len(jax.tree_util.tree_leaves(_Probe())) == 0


@_probe(until="0.12.0")
def object_is_module_base(nnx: Any) -> bool:
    """``nnx.Object`` is a base class of ``nnx.Module`` (true before flax 0.12.0)."""
    return issubclass(nnx.Module, nnx.Object)


@_probe(since="0.12.0")
def has_list(nnx: Any) -> bool:
    """``nnx.List`` exists (flax 0.12.0)."""
    return hasattr(nnx, "List")


@_probe()
def has_dict(nnx: Any) -> bool:
    """``nnx.Dict`` exists (flax 0.10 and 0.12, not 0.11)."""
    return hasattr(nnx, "Dict")


@_probe(since="0.11.0")
def has_data(nnx: Any) -> bool:
    """``nnx.data`` exists (flax 0.11.0)."""
    return hasattr(nnx, "data")


@_probe(since="0.12.1")
def data_field(nnx: Any) -> bool:
    """``nnx.data(**field_keywords)``, a dataclass field marked as data (flax 0.12.1)."""
    if not hasattr(nnx, "data"):
        return False
    value = inspect.signature(nnx.data).parameters.get("value")
    return value is not None and value.default is not inspect.Parameter.empty


@_probe(since="0.12.0")
def static_takes_value(nnx: Any) -> bool:
    """``nnx.static(value)`` marks an attribute static (flax 0.12.0; flax 0.10's ``static``
    is a dataclass field and takes keywords only)."""
    if not hasattr(nnx, "static"):
        return False
    return "value" in inspect.signature(nnx.static).parameters


@_probe(since="0.12.6")
def sow_captures(nnx: Any) -> bool:
    """``Module.sow``/``perturb`` store into ``__captures__`` when ``nnx.capture`` sets it
    (flax 0.12.6)."""
    return hasattr(nnx, "capture")


@_probe(since="0.12.0")
def bridge_sown_tuple_is_one_variable(nnx: Any) -> bool:
    """The Linen bridge keeps a tuple Linen's ``sow`` stored as one Variable holding it (flax
    0.12.0; before it, as a tuple of Variables, which its next call cannot convert back)."""
    import numpy as np

    attrs = nnx.bridge.variables.linen_vars_to_nnx_attrs(
        {"intermediates": {"probe": (np.zeros(()),)}}
    )
    return isinstance(attrs["probe"], nnx.Variable)


@_probe(since="0.12.5")
def late_containers_static(nnx: Any) -> bool:
    """A plain container attribute assigned empty and filled afterwards stays static: its
    contents are missing from the state (flax 0.12.5; flax 0.12.0-0.12.4 still flatten them)."""
    import numpy as np

    class _Probe(nnx.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self.items: dict[str, Any] = {}

    probe = _Probe()
    probe.items["a"] = nnx.Param(np.zeros(1))
    return not _graph_leaves(nnx.graph.flatten(probe)[1])


def _graph_leaves(state: Any) -> list[Any]:
    import jax

    return jax.tree_util.tree_leaves(state)


@_probe(since="0.12.0")
def strict_pytree_attributes(nnx: Any) -> bool:
    """A plain list attribute holding arrays raises (flax 0.12.0)."""
    import numpy as np

    class _Probe(nnx.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self.items = [np.zeros((1,), np.float32)]

    try:
        _Probe()
    except (ValueError, TypeError):
        return True
    return False


@_probe(since="0.12.1")
def variable_get_value(nnx: Any) -> bool:
    """``Variable.get_value()``/``set_value()`` exist (flax 0.12.1)."""
    return hasattr(nnx.Variable, "get_value") and hasattr(nnx.Variable, "set_value")


@_probe(since="0.12.1")
def variable_value_warns(nnx: Any) -> bool:
    """Reading ``Variable.value`` emits a DeprecationWarning (flax 0.12.1)."""
    import numpy as np

    variable = nnx.Variable(np.zeros((), np.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _ = variable.value
    return any(issubclass(w.category, DeprecationWarning) for w in caught)


@_probe()
def variable_value_rejects_variable(nnx: Any) -> bool:
    """``variable.value = other_variable`` raises ``Cannot set value to a Variable`` (flax 0.10
    and 0.11; flax 0.10's states hold ``VariableState``, which takes it, and flax 0.12 stores
    the Variable as the value)."""
    import numpy as np

    variable = nnx.Variable(np.zeros((), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flax 0.12.1+ deprecates the .value setter itself
        try:
            variable.value = nnx.Variable(np.zeros((), np.float32))
        except ValueError:
            return True
    return False


@_probe(since="0.12.0")
def variable_inplace_raises(nnx: Any) -> bool:
    """``variable += x`` raises NotImplementedError (flax 0.12.0)."""
    import numpy as np

    variable = nnx.Variable(np.zeros((), np.float32))
    try:
        variable += 1
    except NotImplementedError:
        return True
    return False


@_probe(since="0.11.0")
def layers_fork_rngs(nnx: Any) -> bool:
    """Layers hold a forked ``RngStream`` instead of the caller's ``Rngs`` (flax 0.11.0).

    Read from ``Dropout``'s signature, which takes an ``RngStream`` to fork from the same
    release: building an ``Rngs`` would create a key array and start the JAX backend.
    """
    annotation = inspect.signature(nnx.Dropout.__init__).parameters["rngs"].annotation
    return "RngStream" in str(annotation)


@_probe(since="0.11.0")
def has_fork_rngs(nnx: Any) -> bool:
    """``nnx.fork_rngs`` exists (flax 0.11.0)."""
    return hasattr(nnx, "fork_rngs")


@_probe(since="0.11.0")
def rngstream_key_first(nnx: Any) -> bool:
    """``RngStream(key, *, tag)`` instead of ``RngStream(tag, key)`` (flax 0.11.0)."""
    names = [name for name in _init_signature(nnx.RngStream).parameters if name != "self"]
    return names[:1] == ["key"]


@_probe(since="0.12.6")
def rngs_split(nnx: Any) -> bool:
    """``Rngs.split(n)`` exists (flax 0.12.6)."""
    return hasattr(nnx.Rngs, "split")


@_probe(since="0.11.0")
def reseed_policy(nnx: Any) -> bool:
    """``nnx.reseed`` gives each stream its own key and takes ``policy=`` (flax 0.11.0)."""
    return "policy" in inspect.signature(nnx.reseed).parameters


@_probe(since="0.12.5")
def reseed_graph_arg(nnx: Any) -> bool:
    """``nnx.reseed`` takes ``graph=`` for tree mode (flax 0.12.5)."""
    return "graph" in inspect.signature(nnx.reseed).parameters


@_probe(since="0.12.0")
def eager_sharding(nnx: Any) -> bool:
    """Variables with a sharding annotation are sharded at creation and need a mesh (flax
    0.12.0, under its config flag ``flax_always_shard_variable``; 0.12.1 added
    ``nnx.use_eager_sharding``)."""
    import flax

    return hasattr(nnx, "use_eager_sharding") or bool(
        getattr(flax.config, "flax_always_shard_variable", False)
    )


@_probe(since="0.12.6")
def graph_mode_context(nnx: Any) -> bool:
    """``nnx.set_graph_mode`` sets graph or tree mode for a block (flax 0.12.6)."""
    return hasattr(nnx, "set_graph_mode")


@_probe(since="0.12.4")
def transforms_graph_arg(nnx: Any) -> bool:
    """Transforms take ``graph=`` for tree mode (flax 0.12.4)."""
    return "graph" in inspect.signature(nnx.jit).parameters


@_probe(until="0.12.2")
def jit_abstracted_axes(nnx: Any) -> bool:
    """``nnx.jit`` takes ``abstracted_axes=`` (removed in flax 0.12.2)."""
    return "abstracted_axes" in inspect.signature(nnx.jit).parameters


@_probe()
def variable_unhashable(nnx: Any) -> bool:
    """``Variable`` defines ``__eq__`` and is unhashable (flax 0.12.1, by value; also flax
    0.10.0-0.10.3, by attributes)."""
    return vars(nnx.Variable).get("__hash__", object.__hash__) is None


@_probe(until="0.12.6")
def pmap_global_arg_shapes(nnx: Any) -> bool:
    """``nnx.pmap`` takes ``global_arg_shapes=`` (removed in flax 0.12.6)."""
    return "global_arg_shapes" in inspect.signature(nnx.pmap).parameters


@_probe(since="0.10.4")
def has_shard_map(nnx: Any) -> bool:
    """``nnx.shard_map`` exists (flax 0.10.4)."""
    return hasattr(nnx, "shard_map")


@_probe(since="0.10.7")
def rngstream_fork(nnx: Any) -> bool:
    """``RngStream.fork()`` exists (flax 0.10.7)."""
    return hasattr(nnx.RngStream, "fork")


@_probe(since="0.12.1")
def shard_map_check_vma(nnx: Any) -> bool:
    """``nnx.shard_map`` takes ``check_vma=``/``axis_names=`` instead of ``check_rep=``/``auto=``
    (flax 0.12.1)."""
    shard_map = getattr(nnx, "shard_map", None)  # flax 0.10.0 has none
    return shard_map is not None and "check_vma" in inspect.signature(shard_map).parameters


@_probe(since="0.11.0")
def state_shares_variables(nnx: Any) -> bool:
    """``nnx.state``/``nnx.split`` return the model's own Variables (flax 0.11.0)."""
    import numpy as np

    class _Probe(nnx.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self.param = nnx.Param(np.zeros((), np.float32))

    probe = _Probe()
    return nnx.graph.state(probe)["param"] is probe.param


@_probe(since="0.12.1")
def variable_update_check(nnx: Any) -> bool:
    """Variables check that they may be mutated in one method, ``_check_can_update``
    (flax 0.12.1; flax 0.11 checks inline in ``__setattr__``/``__setitem__``)."""
    return hasattr(nnx.Variable, "_check_can_update")


@_probe(since="0.11.2")
def merge_shares_variables(nnx: Any) -> bool:
    """``nnx.merge`` builds the node from the states' own Variables (flax 0.11.2, with
    ``copy=``; flax 0.11.0-0.11.1 share in ``nnx.state`` but merge copies)."""
    import numpy as np

    class _Probe(nnx.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self.param = nnx.Param(np.zeros((), np.float32))

    graphdef, state = nnx.graph.split(_Probe())
    return nnx.graph.merge(graphdef, state).param is state["param"]


@_probe(since="0.11.2")
def sharding_names_key(nnx: Any) -> bool:
    """Sharding annotations are stored under ``sharding_names`` (``out_sharding`` from 0.12.4),
    no longer ``sharding``, so ``variable.sharding`` is the array's (flax 0.11.2)."""
    metadata = nnx.with_partitioning(lambda *_: None, ("probe",))(None).metadata
    return "sharding" not in metadata


@_probe(since="0.11.2")
def merge_copy_arg(nnx: Any) -> bool:
    """``nnx.merge(..., copy=)`` chooses new or shared Variables (flax 0.11.2)."""
    return "copy" in inspect.signature(nnx.graph.merge).parameters


@_probe(since="0.11.0")
def layers_keyword_only(nnx: Any) -> bool:
    """``Dropout(rate, *, broadcast_dims, ...)`` and ``RNN(cell, *, time_major, ...)`` take
    their options by keyword only (flax 0.11.0)."""
    param = _init_signature(nnx.Dropout).parameters["broadcast_dims"]
    return param.kind is inspect.Parameter.KEYWORD_ONLY


@_probe(since="0.10.5")
def array_attributes(nnx: Any) -> bool:
    """An array held by a Module attribute is state (flax 0.10.5; before it, flattening the
    Module raises "Arrays leaves are not supported"). A numpy array: no JAX backend starts."""
    import numpy as np

    class _Probe(nnx.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self.array = np.zeros(1)

    try:
        nnx.graph.flatten(_Probe())
    except ValueError:
        return False
    return True


@_probe(since="0.10.7")
def module_pytree_arg(nnx: Any) -> bool:
    """``class M(nnx.Module, pytree=...)`` is accepted (flax 0.10.7)."""
    return "pytree" in inspect.signature(nnx.Module.__init_subclass__).parameters


@_probe(since="0.10.7")
def mha_in_kv_features(nnx: Any) -> bool:
    """``MultiHeadAttention`` takes ``in_kv_features``, its fifth positional argument
    (flax 0.10.7)."""
    return "in_kv_features" in _init_signature(nnx.MultiHeadAttention).parameters


@_probe(since="0.12.6")
def named_sharding_mesh(nnx: Any) -> bool:
    """A Variable annotated with a ``NamedSharding`` is sharded on that sharding's own mesh
    outside any mesh context (flax 0.12.6; before, it needs a mesh context like any other)."""
    try:
        from flax.core import spmd
    except ImportError:  # flax 0.10.0-0.10.x have no flax.core.spmd
        return False
    return hasattr(spmd, "get_mesh")


@_probe(since="0.12.6")
def mha_num_kv_heads(nnx: Any) -> bool:
    """``MultiHeadAttention`` takes ``num_kv_heads``, inserted before ``in_kv_features``
    (flax 0.12.6)."""
    return "num_kv_heads" in _init_signature(nnx.MultiHeadAttention).parameters


@_probe(since="0.12.4")
def out_sharding_key(nnx: Any) -> bool:
    """Sharding annotations are stored under ``out_sharding`` (flax 0.12.4; ``sharding_names``
    from 0.11.2, ``sharding`` before)."""
    return "out_sharding" in inspect.signature(nnx.Variable.__init__).parameters or (
        "out_sharding" in inspect.getsource(nnx.with_partitioning)
    )


@_probe(until="0.11.0")
def has_variable_state(nnx: Any) -> bool:
    """``nnx.VariableState`` is a class of its own that states hold (flax 0.10; an alias of
    ``Variable`` from 0.11.0). Read from the module's dict: 0.12 deprecates the name."""
    state_cls = vars(nnx).get("VariableState")
    return isinstance(state_cls, type) and not issubclass(state_cls, nnx.Variable)


@_probe(until="0.11.2")
def has_with_sharding_constraint(nnx: Any) -> bool:
    """``nnx.with_sharding_constraint`` exists (removed in flax 0.11.2)."""
    return "with_sharding_constraint" in vars(nnx)


@_probe(since="0.10.7")
def variable_setitem_functional(nnx: Any) -> bool:
    """``variable[...] = x`` replaces a jax array's value (``.at[key].set``) instead of
    assigning into the immutable array, which raises (flax 0.10.7). Read from the method's
    source: building a Variable would create an array and start the JAX backend."""
    try:
        source = inspect.getsource(nnx.Variable.__setitem__)
    except (OSError, TypeError):
        return True
    return "self.value[key] = value" not in source


@_probe(until="0.10.7")
def rngstream_takes_count(nnx: Any) -> bool:
    """``RngStream(tag, key, count)``: the count is a required argument, and the tag lives
    on the key (before flax 0.10.7)."""
    return "count" in _init_signature(nnx.RngStream).parameters


@functools.cache
def variable_leaf_types() -> tuple[type, ...]:
    """The classes a state's leaves can have: ``Variable``, and 0.10's ``VariableState``.

    Read from the module's own attributes: on flax 0.12 merely touching
    ``nnx.VariableState`` emits a DeprecationWarning.
    """
    nnx = import_nnx()
    state_cls = vars(nnx).get("VariableState")
    if isinstance(state_cls, type) and not issubclass(state_cls, nnx.Variable):
        return (nnx.Variable, state_cls)
    return (nnx.Variable,)


#: The metadata keys flax has used for a Variable's sharding annotation, oldest first.
SHARDING_KEYS: Final = ("sharding", "sharding_names", "out_sharding")


@functools.cache
def sharding_metadata_key() -> str:
    """The metadata key the installed flax stores sharding annotations under.

    ``sharding`` (flax 0.10), ``sharding_names`` (0.11.2), ``out_sharding`` (0.12.4). Read from
    what ``nnx.with_partitioning`` produces, with an initializer that needs no PRNG key.
    """
    nnx = import_nnx()
    metadata = nnx.with_partitioning(lambda *_: None, ("probe",))(None).metadata
    (key,) = (k for k in SHARDING_KEYS if k in metadata)
    return key


@functools.cache
def feature(name: str) -> bool:
    """The value of one named feature probe on the installed flax (cached).

    Raises:
        KeyError: for an unknown feature name.
    """
    probe = FEATURES[name]
    return probe(import_nnx())


# --------------------------------------------------------------------------- detect


@dataclasses.dataclass(frozen=True)
class Environment:
    """What :func:`detect` found.

    Attributes:
        flax: The installed flax version.
        jax: The installed jax version.
        jaxlib: The installed jaxlib version.
        optax: The installed optax version.
        orbax_checkpoint: The installed orbax-checkpoint version, or None.
        api: The API generation, ``"0.10"``, ``"0.11"`` or ``"0.12"``.
        newer_than_known: Whether flax is newer than the newest known generation.
        features: Each named feature probe (:data:`FEATURES`) and its value.
    """

    flax: str
    jax: str | None
    jaxlib: str | None
    optax: str | None
    orbax_checkpoint: str | None
    api: str
    newer_than_known: bool
    features: Mapping[str, bool]

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON-able data."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["features"] = dict(self.features)
        return data


@functools.cache
def detect() -> Environment:
    """Detects the installed versions, the API generation and every feature (cached).

    Raises:
        ImportError: no flax, or a flax older than 0.10.
        IncompatibleJaxError: the installed flax cannot import with the installed jax.
    """
    import_nnx()
    flax_text = installed_version("flax")
    assert flax_text is not None  # import_nnx checked
    flax_v = parse_version(flax_text)
    return Environment(
        flax=flax_text,
        jax=installed_version("jax"),
        jaxlib=installed_version("jaxlib"),
        optax=installed_version("optax"),
        orbax_checkpoint=installed_version("orbax-checkpoint"),
        api=generation(flax_v),
        newer_than_known=is_newer_than_known(flax_v),
        features=types.MappingProxyType({name: feature(name) for name in FEATURES}),
    )
