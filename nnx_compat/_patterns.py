"""The table of legacy patterns: one record for each call pattern that a flax release changed.

Everything else reads this table: the drop-in namespace takes its shims from :data:`SHIMS`,
the warnings take their text from :class:`Pattern`, the README's table is generated from it
(``python -m nnx_compat patterns --markdown``), and the checker and codemod match its ids.

A pattern is *bridged* when its shim is listed in :data:`SHIMS`: the namespace then serves the
shim instead of the upstream object, and the legacy call, which fails on the installed flax,
runs with its 0.10 meaning and a warning. A pattern whose legacy call *succeeds* on the
installed flax with another meaning is marked ``same_call``: the installed flax's meaning
stands for everyone, and the record exists so that the docs and the checker can name it. A
pattern that is not yet bridged stays in the table as ``planned``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator, Mapping
from typing import Any, Final, Literal

from nnx_compat import _versions

__all__ = [
    "FAMILIES",
    "PATTERNS",
    "POSITIONAL",
    "REMOVED",
    "SHIMS",
    "Pattern",
    "Removed",
    "get",
    "load_removed",
    "load_shim",
    "shims",
]

Family = Literal[
    "optimizer", "rngs", "checkpoint", "pytree", "variable", "sharding", "layers", "transforms"
]

#: Pattern families; each has its own warning subclass in ``_warnings``.
FAMILIES: Final[tuple[Family, ...]] = (
    "optimizer",
    "rngs",
    "checkpoint",
    "pytree",
    "variable",
    "sharding",
    "layers",
    "transforms",
)


@dataclasses.dataclass(frozen=True)
class Pattern:
    """One legacy call pattern.

    Attributes:
        id: Stable identifier, used in warnings, reports, the checker and the codemod.
        family: Which warning subclass it raises and which docs section it belongs to.
        legacy: The old form, as code.
        new: The form that replaces it, as code.
        changed_in: The flax release that changed it.
        shims: The ``nnx`` names whose shims bridge it (empty: documented only).
        note: One sentence on what changes in behaviour, if anything.
        same_call: The legacy code is a call that the installed flax runs without error but
            with another meaning. That meaning stands for everyone: nnx_compat neither bridges
            nor warns at run time; the table, the README and the checker name the difference.
        non_goal: Why nnx_compat deliberately does not bridge it; the user gets an error that
            names the new form.
        static: Why ``nnx-compat check`` cannot see the legacy form in source (it needs the
            type or the value of an object, or happens in data), starting ``run time only:``;
            empty when the checker has a matcher for it (``nnx_compat.checker.rules``). A
            record whose common shapes have a matcher while others need the run time says
            which, starting ``partly static:``.
        api: The entries of the API audit (``tools/api/REPORT.md``: a name, parameter,
            default or method that a release removed or changed) that this record accounts
            for, as ``fnmatch`` patterns; every 0.10 -> 0.11/0.12 entry must be matched.
        probe: The feature probe (``_versions.FEATURES``) that tells whether the installed
            flax has the change; ``changed_in`` is then the probe's release
            (``_versions.CHANGES``), never written in the record. Empty for a change no probe
            can see from the code (a behaviour of values); ``changed_in`` is then given.
        manual: Why ``nnx-compat migrate`` leaves the legacy form to the user (it is listed as
            a manual item naming ``new``); empty when the codemod has a rewrite for it
            (``nnx_compat.codemod.REWRITES``). Only for patterns the checker can see.
    """

    id: str
    family: Family
    legacy: str
    new: str
    changed_in: str
    shims: tuple[str, ...] = ()
    note: str = ""
    same_call: bool = False
    non_goal: str = ""
    static: str = ""
    api: tuple[str, ...] = ()
    probe: str = ""
    manual: str = ""

    def __post_init__(self) -> None:
        if not self.probe:
            if not self.changed_in:
                raise ValueError(f"{self.id}: give the release (changed_in) or a probe")
            return
        if self.changed_in:
            raise ValueError(
                f"{self.id}: the release comes from probe {self.probe}, not the record"
            )
        release, _ = _versions.CHANGES[self.probe]
        object.__setattr__(self, "changed_in", release)

    @property
    def example(self) -> Any:
        """The legacy form and the new form as code that runs (``nnx_compat._examples``,
        loaded on first use: the runtime never needs it)."""
        from nnx_compat import _examples

        return _examples.EXAMPLES[self.id]

    def changed(self) -> bool:
        """Whether the installed flax has the change: the probe's answer (inverted for a probe
        that stops answering True there), or, without a probe, the installed version against
        ``changed_in``. Imports flax."""
        if self.probe:
            return _versions.feature(self.probe) is _versions.CHANGES[self.probe][1]
        return _versions.installed_at_least(self.changed_in)

    @property
    def run_time_only(self) -> bool:
        """Whether only the run time finds the legacy form (no matcher of the checker sees
        it: ``static`` starts ``run time only``)."""
        return self.static.startswith("run time only")

    @property
    def bridged(self) -> bool:
        """Whether every shim this pattern needs is implemented (or backported, for names
        that a later flax removed)."""
        return bool(self.shims) and all(
            name in SHIMS or (name in REMOVED and REMOVED[name].backport) for name in self.shims
        )

    @property
    def status(self) -> str:
        """``bridged``, ``native`` (the installed flax's meaning stands), ``non-goal`` (an error
        names the new form) or ``planned``."""
        if self.same_call:
            return "native"
        if self.non_goal:
            return "non-goal"
        return "bridged" if self.bridged else "planned"

    def message(self) -> str:
        """The deprecation message: the legacy call, its replacement, the release."""
        runs = (
            "leaves it the installed flax's meaning"
            if self.same_call
            else f"runs it with the flax {self.changed_in} semantics"
        )
        text = f"{self.legacy} is deprecated since flax {self.changed_in}: use {self.new}. "
        text += f"nnx_compat {runs}"
        if self.note:
            text += f"; {self.note}"
        return f"{text} [nnx-compat: {self.id}]"


_P = Pattern

#: The table. Keep it sorted by family, then by the release that changed it.
PATTERNS: Final[tuple[Pattern, ...]] = (
    # ---------------------------------------------------------------- optimizer
    _P(
        "optimizer-wrt-default",
        "optimizer",
        "nnx.Optimizer(model, tx)",
        "nnx.Optimizer(model, tx, wrt=nnx.Param)",
        "",
        ("Optimizer",),
        api=("nnx.*Optimizer.__init__: parameter wrt now required",),
        probe="OPTIMIZER_REQUIRES_WRT",
    ),
    _P(
        "optimizer-wrt-positional",
        "optimizer",
        "nnx.Optimizer(model, tx, nnx.Param)",
        "nnx.Optimizer(model, tx, wrt=nnx.Param)",
        "",
        ("Optimizer",),
        api=("nnx.*Optimizer.__init__: parameter wrt POSITIONAL_OR_KEYWORD -> KEYWORD_ONLY",),
        probe="OPTIMIZER_REQUIRES_WRT",
    ),
    _P(
        "optimizer-update-grads",
        "optimizer",
        "optimizer.update(grads)",
        "optimizer.update(model, grads)",
        "",
        ("Optimizer",),
        api=("nnx.*Optimizer.update: *",),
        probe="OPTIMIZER_UPDATE_TAKES_MODEL",
    ),
    _P(
        "optimizer-model-attribute",
        "optimizer",
        "optimizer.model",
        "keep a reference to the model (or nnx.ModelAndOptimizer(model, tx, wrt=...).model)",
        "",
        ("Optimizer", "ModelAndOptimizer"),
        probe="OPTIMIZER_REFUSES_MODEL_ATTRIBUTE",
    ),
    # ---------------------------------------------------------------- rngs
    _P(
        "split-rngs-over-scan",
        "rngs",
        "@nnx.split_rngs(splits=n) over @nnx.scan in __call__",
        "@nnx.scan alone (the layer RNG state already carries the split axis)",
        "",
        ("split_rngs",),
        "the split_rngs becomes a no-op when the state is already split",
        probe="LAYERS_FORK_RNGS",
    ),
    _P(
        "layers-share-rngs",
        "rngs",
        "layer.rngs as the nnx.Rngs the layer was built with",
        "layer.rngs as the layer's own forked nnx.RngStream; draw keys from your own Rngs",
        "",
        ("Dropout", "MultiHeadAttention"),
        "building a layer consumes one count of the parent stream, on every flax",
        static="run time only: reading layer.rngs is the new form too (the layer's forked "
        "stream); only what the code does with it tells the 0.10 use",
        probe="LAYERS_FORK_RNGS",
    ),
    _P(
        "layer-rng-draws",
        "rngs",
        "a layer built with rngs=rngs drawing from that nnx.Rngs: its calls advance the "
        "caller's counts, and layer.rngs.<stream> is the caller's stream",
        "the same call: the layer draws from its own forked nnx.RngStream (layer.rngs); the "
        "caller's Rngs advances once, when the layer is built",
        "0.11.0",
        note="the layer's keys and the caller's counts differ from flax 0.10's; the calls "
        "succeed, so the installed flax's streams stand (nnx_compat's layers fork on 0.10 too, "
        "where reading layer.rngs warns: layers-share-rngs)",
        same_call=True,
        static="run time only: which Rngs a layer's draws advance is a value",
    ),
    _P(
        "rngs-error-text",
        "rngs",
        'matching the text of flax 0.10\'s nnx.Rngs errors ("No RNG named ...", "Cannot '
        'mutate RngStream from a different trace level")',
        "match the exception's type (AttributeError, flax.errors.TraceContextError), not its text",
        "0.11.0",
        note='the same calls raise the same types; flax 0.11 reworded the messages ("No '
        'RngStream named ..."; 0.12: "Cannot mutate RngCount ..."), and error texts are '
        "flax's",
        same_call=True,
        static="run time only: it is the text of an exception flax raises",
    ),
    _P(
        "error-text",
        "pytree",
        "matching the text of flax 0.10's other error messages (Module.set_attributes' "
        '"Could not find at least one instance of the following attributes: {...}")',
        "match the exception's type (ValueError), not its text",
        "0.12.0",
        note="the same call raises the same type; flax 0.12 words the message otherwise (a "
        "list of the names, not a set), and error texts are flax's",
        same_call=True,
        static="run time only: it is the text of an exception flax raises",
    ),
    _P(
        "flax-deprecations",
        "pytree",
        "the 0.10 forms flax 0.12 runs with its own deprecation warning: Module.sow() / "
        "Module.perturb() outside nnx.capture(), m.iter_children() / m.iter_modules(), "
        "variable.raw_value, LSTMCell(carry_init=...), attributes a bridge.ToLinen module "
        "creates in __call__, and jax's `with mesh:`",
        "nnx.capture(...), nnx.iter_children(m) / nnx.iter_modules(m), "
        "variable.get_raw_value(), cell.initialize_carry(..., carry_init=...), attributes "
        "created in __init__, `with jax.set_mesh(mesh):`",
        "0.12.1",
        note="the 0.10 form still runs with its 0.10 meaning on flax 0.12 and flax (or jax) "
        "warns, naming the new form, at each call: the installed flax's warning stands (a "
        "test configuration that makes warnings errors fails on it)",
        same_call=True,
        static="run time only: flax's own warning names each call",
    ),
    _P(
        "rngs-fork-splits",
        "rngs",
        "rngs.fork(splits=n)",
        "rngs.split(n) (rngs.fork(split=n) before flax 0.12.6)",
        "0.11.0",
        ("Rngs",),
        "no flax release accepts 'splits'; the 0.11 migration guide misspells 'split'",
    ),
    _P(
        "rngs-fork-split",
        "rngs",
        "rngs.fork(split=n)",
        "rngs.split(n)",
        "",
        ("Rngs",),
        probe="RNGS_SPLIT",
    ),
    _P(
        "nnx-fork",
        "rngs",
        "nnx.fork(state, split_filter, split_pattern) / nnx.ForkStates",
        "nnx.split_rngs(splits=n) or nnx.fork_rngs(split=n) around the transform",
        "",
        ("fork", "ForkStates", "fork_rngs"),
        "flax 0.11 removed both; nnx_compat serves 0.10's nnx.fork where they are missing",
        api=(
            "nnx.*fork: removed",
            "nnx.*ForkStates: removed",
        ),
        probe="HAS_FORK_RNGS",
        manual="the replacement (split_rngs or fork_rngs around the transform) depends on how "
        "the forked state is passed to it",
    ),
    _P(
        "bridge-to-nnx-rngs",
        "rngs",
        "bridge.ToNNX(linen_module, rngs=rngs) initialised from rngs' own keys, its RNG state "
        "under rngs/...",
        "the same call: flax 0.12 forks the Rngs (other parameters for a seed) and keeps it "
        "under to_nnx__rngs/...",
        "0.12.0",
        note="the call succeeds, so the installed flax's parameters and paths stand; a 0.10 "
        "checkpoint of a ToNNX model restores by renaming rngs/ to to_nnx__rngs/",
        same_call=True,
    ),
    _P(
        "rngs-array-protocol",
        "rngs",
        "duck typing an nnx.Rngs by its dunders (hasattr(rngs, '__array__') is True on 0.10)",
        "isinstance(x, nnx.Rngs)",
        "0.12.7",
        note="flax 0.12.7 stopped answering dunder names with the default stream, so "
        "np.asarray(rngs) no longer raises; the installed flax's meaning stands",
        same_call=True,
        static="run time only: it is duck typing on an object whose type the source does not state",
    ),
    _P(
        "reseed-shared-rngs",
        "rngs",
        "nnx.reseed(rngs, ...) on the Rngs the layers were built with",
        "nnx.reseed(model, ...)",
        "",
        ("reseed",),
        "layers hold forked streams, so reseeding the caller's Rngs does not reach them",
        probe="LAYERS_FORK_RNGS",
        manual="whether the Rngs reached the layers is a run-time fact: reseed the model where "
        "it did",
    ),
    _P(
        "rngstream-positional-tag",
        "rngs",
        "nnx.RngStream(tag, key)",
        "nnx.RngStream(key, tag=tag)",
        "",
        ("RngStream",),
        api=("nnx.*RngStream.__init__: parameter tag *",),
        probe="RNGSTREAM_KEY_FIRST",
    ),
    # ---------------------------------------------------------------- checkpoint
    _P(
        "checkpoint-shared-rngs",
        "checkpoint",
        "restoring a flax 0.10 checkpoint with rngs/<stream>/{key,count} per layer",
        "nnx.fix_checkpoint(checkpoint, Model, rngs=nnx.Rngs(...))",
        "",
        ("fix_checkpoint",),
        static="run time only: it is the layout of a checkpoint, not code",
        probe="LAYERS_FORK_RNGS",
    ),
    _P(
        "checkpoint-optimizer-model",
        "checkpoint",
        "an Optimizer checkpoint holding model/..., opt_state and step",
        "nnx.fix_checkpoint(...) returning the model and optimizer halves",
        "",
        ("fix_checkpoint",),
        static="run time only: it is the layout of a checkpoint, not code",
        probe="OPTIMIZER_UPDATE_TAKES_MODEL",
    ),
    _P(
        "state-copies",
        "checkpoint",
        "nnx.merge(graphdef, captured_state) or graphdef.apply(captured_state) inside "
        "jax.grad/jax.jit, then mutating the merged model (flax 0.10's functional API)",
        "pass the state in as an argument (nnx.grad(f)(model)), or "
        "nnx.merge(graphdef, state, copy=True)",
        "",
        ("merge",),
        "the merged node gets copies of the Variables of the outer trace, which flax 0.11.2+ "
        "refuses to mutate (TraceContextError); it warns at the first mutation",
        static="partly static: found where a function that a jax transform traces "
        "(@jax.jit, jax.grad(f), a jax.lax.scan body, ...) merges a state from outside it (a "
        "closure, a global); a state that reaches the merge otherwise (an argument, a "
        "container) belongs to an outer trace only at run time",
        probe="MERGE_SHARES_VARIABLES",
    ),
    _P(
        "state-snapshot",
        "checkpoint",
        "snapshot = nnx.state(model) (or nnx.split) as a copy that later updates of the "
        "model leave unchanged",
        "snapshot = nnx.state(model, copy=True) through nnx_compat, or nnx.clone(nnx.state(model))",
        "",
        ("split", "state"),
        "since flax 0.11 the state holds the model's own Variables and moves with it; the "
        "call succeeds either way, so the installed flax's meaning stands",
        same_call=True,
        static="run time only: the call is the new form too; only the later use of its "
        "result makes it a snapshot",
        probe="STATE_SHARES_VARIABLES",
    ),
    _P(
        "merge-shares-variables",
        "checkpoint",
        "copy = nnx.merge(*nnx.split(model)), or two nnx.merge of one state, as independent "
        "models (flax 0.10 copied every Variable)",
        "copy = nnx.clone(model), or nnx.merge(graphdef, state, copy=True)",
        "0.11.2",
        note="since flax 0.11.2 merge reuses the state's Variables, so the merged model shares "
        "them with the model and with other merges; the call succeeds, so that meaning stands",
        same_call=True,
    ),
    _P(
        "mutable-arrays",
        "variable",
        "nnx.mutable_array / nnx.MutableArray / nnx.is_mutable_array / nnx.mutable / nnx.freeze",
        "jax's array refs (jax.array_ref or jax.new_ref) and, on flax 0.12, hijax Variables "
        "(nnx.with_vars)",
        "0.11.1",
        ("mutable_array", "MutableArray", "is_mutable_array", "mutable", "freeze"),
        "flax.config.flax_mutable_array reads False where flax removed it: the mode is off",
        non_goal="flax 0.10's experimental mutable-array API has no counterpart with the same "
        "meaning in later flax; using a name raises an AttributeError naming the replacement",
        api=(
            "nnx.*.__init__: parameter mutable removed (**kwargs)",
            "nnx.*.mutable: removed",
            "nnx.mutable: removed",
            "nnx.*MutableArray: removed",
            "nnx.*mutable_array: removed",
            "nnx.*freeze: removed",
            "nnx.graph.*MUTABLE_ARRAY*: removed",
            "nnx.graph.MutableArray*: removed",
        ),
        manual="flax 0.10's mutable arrays have no replacement with the same meaning (a read "
        "of the mode's flag, flax.config.flax_mutable_array, is rewritten to read False where "
        "flax removed it)",
    ),
    _P(
        "nnx-dataclasses",
        "pytree",
        "nnx.dataclass / nnx.field / nnx.static / nnx.Static / nnx.dataclasses (flax 0.10)",
        "dataclasses.dataclass with nnx.data(...) for data fields (flax 0.12: nnx.dataclass "
        "with nnx.data() / nnx.static() fields)",
        "0.11.0",
        ("dataclass", "field", "static", "Static", "dataclasses"),
        non_goal="flax 0.12's nnx.dataclass, nnx.static and nnx.Static mean something else "
        "(which stands; nnx_compat serves them on flax 0.11, which has none of them); "
        "nnx.field and nnx.dataclasses raise an AttributeError naming the replacement",
        api=(
            "nnx.dataclass: removed",
            "nnx.dataclasses: removed",
            "nnx.field: removed",
            "nnx.static: removed",
            "nnx.*Static: removed",
        ),
        manual="flax 0.12's nnx.dataclass and nnx.static mean something else; the fields need "
        "deciding one by one",
    ),
    # ---------------------------------------------------------------- pytree
    _P(
        "tree-map-over-modules",
        "pytree",
        "jax.tree.map(f, [modules]) with modules as leaves",
        "jax.tree.map(f, [modules], is_leaf=lambda x: isinstance(x, nnx.Pytree)) "
        "or nnx_compat.tree.map(f, [modules])",
        "",
        ("Pytree",),
        "jax.tree cannot be intercepted, so this never warns; nnx.Pytree, "
        "nnx_compat.is_nnx_object and nnx_compat.tree give 0.10's leaves on every flax",
        static="run time only: jax.tree.map over arbitrary values; whether they are Modules "
        "is a type",
        probe="MODULES_ARE_PYTREES",
    ),
    _P(
        "isinstance-object",
        "pytree",
        "isinstance(x, nnx.Object)",
        "isinstance(x, nnx.Pytree)",
        "",
        ("Object", "Pytree"),
        "it stays True for every NNX object (issubclass too); subclassing nnx.Object gives "
        "flax's non-pytree Object",
        probe="OBJECT_IS_MODULE_BASE",
    ),
    _P(
        "list-attribute",
        "pytree",
        "self.layers = [module, ...] (a plain list or tuple attribute holding modules or arrays)",
        "self.layers = nnx.List([module, ...]), or nnx.data([...]) to keep a plain list",
        "",
        ("Module", "List", "data"),
        "the container is kept as nnx.data(...), so the state paths stay those of flax 0.10; "
        "for a dict use nnx.Dict({...})",
        probe="STRICT_PYTREE_ATTRIBUTES",
    ),
    _P(
        "dict-attribute",
        "pytree",
        "self.blocks = {'a': module} (a plain dict attribute holding modules or arrays)",
        "self.blocks = nnx.Dict({'a': module}), or nnx.data({...}) to keep a plain dict",
        "",
        ("Module", "Dict", "data"),
        "the dict is kept as nnx.data(...), so the state paths stay those of flax 0.10; "
        "for a list use nnx.List([...])",
        api=("nnx.*Dict: removed",),
        probe="STRICT_PYTREE_ATTRIBUTES",
    ),
    # ---------------------------------------------------------------- variable
    _P(
        "container-filled-after-init",
        "pytree",
        "self.items = {} in __init__, filled later through the Module's own methods",
        "self.items = nnx.Dict() (or nnx.data({})) at the assignment",
        "",
        ("Module",),
        "flax 0.12 leaves the container static: arrays in it raise when flax reads the "
        "Module, and from 0.12.5 its Modules and Variables are missing from nnx.state and "
        "transforms fail; nnx_compat makes it data when flax next reads the Module",
        probe="STRICT_PYTREE_ATTRIBUTES",
    ),
    _P(
        "static-attribute-data",
        "pytree",
        "self.x = None (or another static value), later self.x = a Module, Variable or array",
        "self.x = nnx.data(None) at the first assignment, or self.x = nnx.data(value)",
        "",
        ("Module",),
        "flax 0.12 keeps an attribute's first status and raises for data in a static one; "
        "nnx_compat makes it data, as on 0.10",
        probe="STRICT_PYTREE_ATTRIBUTES",
    ),
    _P(
        "pytree-attribute",
        "pytree",
        "self.tree = a registered pytree (not an NNX object) holding arrays or Variables",
        "self.tree = nnx.data(tree)",
        "",
        ("Module",),
        static="run time only: whether an attribute's value is a user pytree holding arrays "
        "is a type",
        probe="STRICT_PYTREE_ATTRIBUTES",
    ),
    _P(
        "variable-value",
        "variable",
        "variable.value",
        "variable[...] / variable.get_value() / variable.set_value(x)",
        "",
        ("Variable",),
        "nnx_compat warns once per call site instead of flax's warning on every access",
        probe="VARIABLE_VALUE_WARNS",
    ),
    _P(
        "variable-value-variable",
        "variable",
        "variable.value = other_variable (flax 0.10's model surgery)",
        "variable.value = other_variable.value (flax 0.12: variable.set_value(other[...]))",
        "0.11.0",
        ("Variable",),
        "flax 0.11 raises 'Cannot set value to a Variable'; nnx_compat takes the other "
        "Variable's value (flax 0.10 and 0.12 store the Variable itself, and keep doing so)",
        static="run time only: whether the assigned value is a Variable is a type",
    ),
    _P(
        "variable-hooks",
        "variable",
        "nnx.with_metadata(init, set_value_hooks=..., get_value_hooks=..., ...) "
        "(VariableMetadata's *_hooks)",
        "on_get_value / on_set_value / on_create_value methods on a Variable subclass",
        "0.11.0",
        note="flax 0.10.7 already stored the *_hooks keywords as plain metadata and never "
        "called them; flax 0.11+ does the same through **metadata (VariableMetadata itself "
        "rejects them), so the installed flax's meaning stands",
        same_call=True,
        api=(
            "nnx.*with_metadata: parameter *_hooks removed (**kwargs)",
            "nnx.*VariableMetadata.__init__: parameter *_hooks removed",
        ),
    ),
    _P(
        "flax-internals",
        "pytree",
        "flax's internal machinery under public names: nnx.graph's node implementations, "
        "VariableDef, fingerprint/check_fingerprint, flatten(return_variables=), "
        "rnglib.get_fry_dtype, spmd.HasSharding, statelib.EmptyState, "
        "variablelib.split_flat_state",
        "nnx.split / nnx.merge / nnx.graphdef / nnx.to_flat_state and the public nnx API",
        "0.11.0",
        non_goal="they are flax's implementation, rebuilt in every release (code written "
        "against them targets one release); nnx_compat serves the nnx namespace, and the "
        "submodules stay flax's own, so the user gets flax's AttributeError or TypeError",
        api=(
            "nnx.graph.ARRAY_ATTR: removed",
            "nnx.graph.ArrayAttr: removed",
            "nnx.graph.FingerprintContext: removed",
            "nnx.graph.HashableMapping: removed",
            "nnx.graph.PytreeNodeImpl.__init__: *",
            "nnx.graph.VariableDef.__init__: *",
            "nnx.graph.*fingerprint: removed",
            "nnx.graph.flatten: parameter return_variables removed",
            "nnx.rnglib.get_fry_dtype: removed",
            "nnx.spmd.HasSharding: removed",
            "nnx.statelib.EmptyState: removed",
            "nnx.variablelib.split_flat_state: removed",
        ),
        manual="flax's internals have no one-to-one public counterpart",
    ),
    _P(
        "variable-hash",
        "variable",
        "hash(variable): Variables as dict keys or set members (identity)",
        "id(variable) as the key, or a dict keyed by the state path",
        "0.12.1",
        ("Variable",),
        "flax 0.12.1 made Variables unhashable (they compare by value); nnx_compat gives them "
        "back their identity hash",
        static="run time only: hashing is implicit (dict keys, sets) and needs the key's type",
    ),
    _P(
        "variable-eq",
        "variable",
        "variable == other, or variable in a list of Variables (identity on flax 0.10)",
        "variable is other; any(v is variable for v in variables)",
        "0.12.1",
        note="flax 0.12.1 compares the values (an array for a non-scalar Variable, so `in` and "
        "list.index raise there); for scalars the call succeeds, so that meaning stands",
        same_call=True,
        static="run time only: == and `in` need both operands' types",
    ),
    _P(
        "variable-metadata-attribute",
        "variable",
        "variable.foo = x to set metadata",
        "variable.set_metadata(foo=x)",
        "0.12.1",
        ("Variable",),
        "flax 0.12.1 raises for a name that is not an attribute; nnx_compat sets the metadata",
        static="run time only: an attribute set on an object whose Variable type the source "
        "rarely states",
    ),
    _P(
        "variable-metadata-keys",
        "variable",
        "variable.get_metadata() holding only the metadata the code gave",
        "read the keys you set; flax 0.12 adds hijax, ref and eager_sharding",
        "0.12.0",
        note="the extra keys round-trip through Variable(value, **metadata); the call succeeds, "
        "so the installed flax's dict stands",
        same_call=True,
        static="run time only: it is the content of a returned dict",
    ),
    _P(
        "variable-inplace-op",
        "variable",
        "variable += x",
        "variable[...] += x",
        "",
        ("Variable",),
        "every in-place operator (-=, *=, ...) runs as variable[...] op= x",
        probe="VARIABLE_INPLACE_RAISES",
    ),
    _P(
        "variable-state",
        "variable",
        "nnx.VariableState(nnx.Param, value) / nnx.Param.state(value) / state.to_variable()",
        "nnx.Param(value) (a state's leaves are Variables) / variable.to_state()",
        "",
        ("VariableState",),
        "states hold Variables since flax 0.11: VariableState(nnx.Param, value) builds "
        "nnx.Param(value), Param.state(value) too, and state.to_variable() is a copy "
        "(variable.to_state()); isinstance(x, nnx.VariableState) is isinstance(x, nnx.Variable)",
        api=(
            "nnx.*VariableState*",
            "nnx.*.state: removed",
        ),
        probe="HAS_VARIABLE_STATE",
    ),
    # ---------------------------------------------------------------- sharding
    _P(
        "sharding-without-mesh",
        "sharding",
        "a Variable with sharding metadata created outside a mesh",
        "a mesh context around its creation (jax.set_mesh or jax.sharding.use_mesh), "
        "or nnx.use_eager_sharding(False)",
        "",
        ("Variable",),
        "it is created unsharded, as on flax 0.10, for nnx.get_partition_spec to shard later",
        static="run time only: whether a mesh is active when the Variable is created",
        probe="EAGER_SHARDING",
    ),
    _P(
        "with-sharding-constraint",
        "sharding",
        "nnx.with_sharding_constraint(x, spec, mesh)",
        "jax.lax.with_sharding_constraint(x, jax.sharding.NamedSharding(mesh, spec))",
        "",
        ("with_sharding_constraint",),
        "flax 0.11 removed it; nnx_compat serves 0.10's where it is missing (a no-op without "
        "a mesh, as before)",
        api=("nnx.*with_sharding_constraint: removed",),
        probe="HAS_WITH_SHARDING_CONSTRAINT",
        manual="the mesh is not an argument of the new form: it must be found in the code around "
        "the call",
    ),
    _P(
        "variable-sharding-attribute",
        "sharding",
        "variable.sharding as the Variable's partition names (flax 0.10)",
        "nnx.get_partition_spec(nnx.state(model)), or the out_sharding metadata",
        "",
        ("Variable",),
        "since flax 0.11 variable.sharding reads the array's sharding and the call succeeds, so "
        "that meaning stands (on a traced value flax raises: see variable-sharding-traced)",
        same_call=True,
        static="run time only: .sharding is common on arrays; the receiver's type decides",
        probe="SHARDING_NAMES_KEY",
    ),
    _P(
        "variable-sharding-traced",
        "sharding",
        "variable.sharding as the partition names inside jit/vmap (flax 0.10)",
        "variable.get_metadata()['out_sharding'] (sharding_names on flax 0.11), or "
        "nnx.get_partition_spec(state)",
        "",
        ("Variable",),
        "where flax 0.11+ raises (the value is traced, or has no sharding) it gives the names, as "
        "on 0.10; where flax answers, the array's sharding stands",
        static="run time only: whether the value is traced depends on the transform around it",
        probe="SHARDING_NAMES_KEY",
    ),
    _P(
        "linen-bridge-sharding-metadata",
        "sharding",
        "NNXMeta.metadata['sharding'] from the Linen bridge",
        "NNXMeta.metadata['sharding_names'] (flax 0.11) / ['out_sharding'] (flax 0.12.4)",
        "",
        ("bridge",),
        "where flax 0.11+ raises KeyError, the missing key reads the names stored under the "
        "installed flax's key; the dict's keys, get() and iteration stay flax's",
        probe="SHARDING_NAMES_KEY",
    ),
    _P(
        "sharding-metadata-key",
        "sharding",
        "Variable(..., sharding=...) / sharding_names=...",
        "Variable(..., out_sharding=...)",
        "",
        ("Variable",),
        "the annotation is stored under the installed flax's key; out_sharding= works on 0.10",
        probe="OUT_SHARDING_KEY",
    ),
    # ---------------------------------------------------------------- layers
    _P(
        "dropout-positional",
        "layers",
        "nnx.Dropout(rate, broadcast_dims, ...)",
        "nnx.Dropout(rate, broadcast_dims=..., ...)",
        "",
        ("Dropout",),
        api=("nnx.*Dropout.__init__: parameter * POSITIONAL_OR_KEYWORD -> KEYWORD_ONLY",),
        probe="LAYERS_KEYWORD_ONLY",
    ),
    _P(
        "rnn-positional",
        "layers",
        "nnx.RNN(cell, time_major, return_carry, ...)",
        "nnx.RNN(cell, time_major=..., return_carry=..., ...)",
        "",
        ("RNN",),
        api=("nnx.*RNN.__init__: parameter * POSITIONAL_OR_KEYWORD -> KEYWORD_ONLY",),
        probe="LAYERS_KEYWORD_ONLY",
    ),
    _P(
        "mha-positional",
        "layers",
        "nnx.MultiHeadAttention(num_heads, in_features, qkv_features, ...)",
        "nnx.MultiHeadAttention(num_heads, in_features, qkv_features=..., ...)",
        "",
        ("MultiHeadAttention",),
        "flax 0.12.6 inserted num_kv_heads, so positional calls change meaning",
        probe="MHA_NUM_KV_HEADS",
    ),
    _P(
        "recurrent-layers-fork-rngs",
        "layers",
        "flax 0.10's recurrent layers: cells holding the caller's nnx.Rngs, "
        "cell.initialize_carry(shape) drawing from it, RNN(cell, rngs=None)",
        "cell.initialize_carry(shape, rngs) or a cell built with keep_rngs=True; "
        "nnx.RNN(cell) or nnx.RNN(cell, rngs=rngs)",
        "",
        ("LSTMCell", "OptimizedLSTMCell", "SimpleCell", "GRUCell", "RNN", "Bidirectional"),
        "the layers hold flax 0.11's forked streams on every flax (0.10 included: the same "
        "state and carries); initialize_carry(shape) draws from the build Rngs' carry stream "
        "and rngs=None means rngs=True, where flax 0.11+ raises",
        api=(
            "nnx.*RNN.__init__: default of rngs None -> True",
            "nnx.*Bidirectional.__init__: default of rngs None -> True",
        ),
        probe="LAYERS_FORK_RNGS",
    ),
    _P(
        "layer-init-attributes",
        "layers",
        "layer.kernel_init / bias_init / embedding_init / scale_init (an initializer kept on "
        "the layer)",
        "keep the initializer you pass to the layer (or read flax's default from its signature)",
        "0.12.1",
        non_goal="flax 0.12.1 removed them from the layers' attributes and graph; bringing them "
        "back would change every layer's graphdef, so the user gets flax's AttributeError",
        manual="the initializer the layer was built with is a value the source may not show",
    ),
    _P(
        "sequential-empty",
        "layers",
        "nnx.Sequential()(x) returning None",
        "nnx.Sequential()(x) returns x (the identity)",
        "0.11.1",
        note="the call succeeds, so the installed flax's identity stands",
        same_call=True,
    ),
    _P(
        "dropout-missing-stream",
        "layers",
        "nnx.Dropout(rate, rngs=nnx.Rngs(params=0)): no 'dropout' stream, rngs given at call",
        "nnx.Dropout(rate, rngs=nnx.Rngs(params=0, dropout=1)), or rngs=None and rngs at call",
        "",
        ("Dropout", "MultiHeadAttention"),
        "flax 0.11 fails at construction, naming the layer, instead of at call",
        static="run time only: the streams of an Rngs are values",
        probe="LAYERS_FORK_RNGS",
    ),
    # ---------------------------------------------------------------- transforms
    _P(
        "vmap-splits-rngs",
        "transforms",
        "nnx.vmap(f, axis_size=n)(rngs) with an unsplit nnx.Rngs",
        "@nnx.split_rngs(splits=n) over @nnx.vmap(f, axis_size=n)",
        "0.9.0",
        ("vmap",),
        "the unsplit Rngs arguments that vmap maps on axis 0 are split for the call",
        static="run time only: whether an argument is an unsplit Rngs is a value",
    ),
    _P(
        "transforms-bound-methods",
        "transforms",
        "nnx.jit(model.method) / nnx.grad(model.loss) / nnx.vmap(model.__call__) (a bound method)",
        "nnx.jit(type(model).method)(model, ...), or the decorator on the method",
        "0.12.1",
        non_goal="each transform would need its argument specification shifted (argnums, "
        "in_axes, static_argnums, shardings) for the module passed first; flax's ValueError "
        "names the unbound form",
        manual="each transform's argnums/in_axes would have to shift for the module passed first",
    ),
    _P(
        "fori-loop-error-type",
        "transforms",
        "except ValueError around nnx.fori_loop for a body that returns None",
        "return the carry from the body",
        "0.12.3",
        note="flax 0.12 raises AttributeError there instead; error types are flax's",
        same_call=True,
        static="run time only: it is the type of an exception flax raises",
    ),
    _P(
        "jit-abstracted-axes",
        "transforms",
        "nnx.jit(f, abstracted_axes=...)",
        "nnx.jit(f) (abstracted_axes was removed)",
        "",
        ("jit",),
        "nnx_compat drops it where flax removed it: the function is traced once per shape, "
        "with the same results",
        api=("nnx.jit: parameter abstracted_axes removed",),
        probe="JIT_ABSTRACTED_AXES",
    ),
    _P(
        "pmap-global-arg-shapes",
        "transforms",
        "nnx.pmap(f, global_arg_shapes=None)",
        "nnx.pmap(f)",
        "",
        ("pmap",),
        "jax accepted only None for it; nnx_compat drops None where flax removed the keyword "
        "and raises jax's error for any other value, as every release did",
        api=("nnx.pmap: parameter global_arg_shapes removed",),
        probe="PMAP_GLOBAL_ARG_SHAPES",
    ),
    _P(
        "shard-map-check-rep",
        "transforms",
        "nnx.shard_map(..., check_rep=..., auto=...)",
        "nnx.shard_map(..., check_vma=..., axis_names=...)",
        "",
        ("shard_map",),
        api=(
            "nnx.shard_map: parameter check_rep removed",
            "nnx.shard_map: parameter auto removed",
        ),
        probe="SHARD_MAP_CHECK_VMA",
    ),
)

#: The shims that are implemented: ``nnx`` name -> ``"module:attribute"`` of the replacement.
#: A name listed here is served by ``nnx_compat.nnx`` (and by ``install()``) instead of the
#: upstream object; every other name is the upstream object itself.
SHIMS: Final[Mapping[str, str]] = {
    "Bidirectional": "nnx_compat._recurrent:Bidirectional",
    "Dict": "nnx_compat._containers:Dict",
    "GRUCell": "nnx_compat._recurrent:GRUCell",
    "LSTMCell": "nnx_compat._recurrent:LSTMCell",
    "Dropout": "nnx_compat._layers:Dropout",
    "List": "nnx_compat._containers:List",
    "ModelAndOptimizer": "nnx_compat._optimizer:ModelAndOptimizer",
    "Module": "nnx_compat._module:Module",
    "MultiHeadAttention": "nnx_compat._layers:MultiHeadAttention",
    "Object": "nnx_compat._pytree:Object",
    "OptimizedLSTMCell": "nnx_compat._recurrent:OptimizedLSTMCell",
    "Optimizer": "nnx_compat._optimizer:Optimizer",
    "Pytree": "nnx_compat._pytree:Pytree",
    "RNN": "nnx_compat._layers:RNN",
    "RngStream": "nnx_compat._rngs:RngStream",
    "Rngs": "nnx_compat._rngs:Rngs",
    "SimpleCell": "nnx_compat._recurrent:SimpleCell",
    "Variable": "nnx_compat._variables:Variable",
    "VariableState": "nnx_compat._removed:VariableState",
    "bridge": "nnx_compat._sharding:bridge",
    "data": "nnx_compat._containers:data",
    "fix_checkpoint": "nnx_compat._checkpoint:fix_checkpoint",
    "fork_rngs": "nnx_compat._rngs:fork_rngs",
    "jit": "nnx_compat._transforms:jit",
    "merge": "nnx_compat._state:merge",
    "pmap": "nnx_compat._transforms:pmap",
    "reseed": "nnx_compat._rngs:reseed",
    "shard_map": "nnx_compat._transforms:shard_map",
    "split": "nnx_compat._state:split",
    "split_rngs": "nnx_compat._rngs:split_rngs",
    "state": "nnx_compat._state:state",
    "vmap": "nnx_compat._transforms:vmap",
}


#: The flax 0.10 positional parameters of the layers whose calls became keyword-only (after
#: the arguments that stay positional: ``rate``, ``cell``, ``num_heads, in_features``), read by
#: the layer shims and the codemod.
POSITIONAL: Final[Mapping[str, tuple[str, ...]]] = {
    "dropout-positional": ("broadcast_dims", "deterministic", "rng_collection", "rngs"),
    "rnn-positional": ("time_major", "return_carry", "reverse", "keep_order", "unroll", "rngs"),
    # flax 0.10's order; flax 0.12.6 inserted num_kv_heads before in_kv_features
    "mha-positional": ("qkv_features", "out_features", "in_kv_features"),
}


@dataclasses.dataclass(frozen=True)
class Removed:
    """A public name of flax 0.10's ``nnx`` that a later flax removed.

    Attributes:
        pattern: The id of the record that names it.
        backport: ``"module:attribute"`` of 0.10's behaviour, served where the installed flax
            lacks the name (with the record's warning); None: using the name raises an
            ``AttributeError`` that names the record's new form.
    """

    pattern: str
    backport: str | None = None


#: The removed names, read by the namespace's ``__getattr__`` for names the installed flax lacks.
REMOVED: Final[Mapping[str, Removed]] = {
    "ForkStates": Removed("nnx-fork", "nnx_compat._removed:ForkStates"),
    "MutableArray": Removed("mutable-arrays"),
    "Static": Removed("nnx-dataclasses"),
    "VariableState": Removed("variable-state", "nnx_compat._removed:VariableState"),
    "dataclass": Removed("nnx-dataclasses"),
    "dataclasses": Removed("nnx-dataclasses"),
    "field": Removed("nnx-dataclasses"),
    "fork": Removed("nnx-fork", "nnx_compat._removed:fork"),
    "freeze": Removed("mutable-arrays"),
    "is_mutable_array": Removed("mutable-arrays"),
    "mutable": Removed("mutable-arrays"),
    "mutable_array": Removed("mutable-arrays"),
    "static": Removed("nnx-dataclasses"),
    "with_sharding_constraint": Removed(
        "with-sharding-constraint", "nnx_compat._removed:with_sharding_constraint"
    ),
}

_BY_ID: Final = {p.id: p for p in PATTERNS}


def get(pattern_id: str) -> Pattern:
    """The pattern with this id.

    Raises:
        KeyError: naming the known ids, for an unknown id.
    """
    try:
        return _BY_ID[pattern_id]
    except KeyError:
        raise KeyError(
            f"unknown nnx_compat pattern {pattern_id!r}; known: {sorted(_BY_ID)}"
        ) from None


def shims() -> Iterator[str]:
    """The names of the implemented shims, sorted."""
    return iter(sorted(SHIMS))


def load_shim(name: str) -> Any:
    """Imports and returns the implementation of the shim for ``nnx.<name>``."""
    module, _, attribute = SHIMS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def load_removed(name: str) -> Any:
    """The backport of a removed name, or an ``AttributeError`` naming its replacement.

    Raises:
        KeyError: for a name that is not in :data:`REMOVED`.
        AttributeError: for a removed name without a backport.
    """
    removed = REMOVED[name]
    pattern = get(removed.pattern)
    if removed.backport is None:
        raise AttributeError(
            f"nnx.{name} was removed in flax {pattern.changed_in} ({pattern.legacy}); use "
            f"{pattern.new}. nnx_compat does not serve it: {pattern.non_goal} "
            f"[nnx-compat: {pattern.id}]"
        )
    module, _, attribute = removed.backport.partition(":")
    return getattr(importlib.import_module(module), attribute)
