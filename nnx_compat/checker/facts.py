"""What the checker knows about values: which names and ``self`` attributes hold what.

A flow-insensitive, one-pass approximation, enough to tell ``optimizer.update(grads)`` on an
``nnx.Optimizer`` from ``config.update(other)`` on a dict: a name assigned the result of
``nnx.Optimizer(...)`` (in the same function, or at module level) holds an ``nnx.Optimizer``; an
attribute ``self.x`` assigned ``nnx.Dropout(...)`` in a method of a class holds an
``nnx.Dropout`` in every method of that class. Parameters annotated with an ``nnx`` type count
too. Nothing else is guessed: an unknown receiver is never matched.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import Final

from nnx_compat.checker.names import Names

__all__ = [
    "JAX_TRANSFORMS",
    "LAYER_VARIABLES",
    "VARIABLE_TYPES",
    "Facts",
    "JaxNames",
    "Scope",
    "is_module_type",
    "walk",
]

#: ``nnx`` Variable types (a call to one builds a Variable).
VARIABLE_TYPES: Final = frozenset(
    {
        "nnx.Variable",
        "nnx.Param",
        "nnx.BatchStat",
        "nnx.Cache",
        "nnx.Intermediate",
        "nnx.LoRAParam",
        "nnx.OptState",
        "nnx.Perturbation",
        "nnx.RngState",
        "nnx.RngKey",
        "nnx.RngCount",
        "nnx.VariableState",  # flax 0.10's state leaf, a Variable since 0.11
    }
)


#: The Variables flax's layers hold, by attribute name: ``model.linear.kernel`` is a Param.
LAYER_VARIABLES: Final = {
    "kernel": "nnx.Param",
    "bias": "nnx.Param",
    "scale": "nnx.Param",
    "embedding": "nnx.Param",
    "mean": "nnx.BatchStat",
    "var": "nnx.BatchStat",
}
#: jax's transforms, each with where its traced functions are passed: positions, keywords.
#: A function passed there (or decorated with it) runs at a new trace level.
JAX_TRANSFORMS: Final[dict[str, tuple[tuple[int, ...], tuple[str, ...]]]] = {
    **{
        f"jax.{name}": ((0,), ("fun", "f"))
        for name in (
            "jit",
            "grad",
            "value_and_grad",
            "vmap",
            "pmap",
            "checkpoint",
            "remat",
            "jacfwd",
            "jacrev",
            "hessian",
            "vjp",
            "jvp",
            "linearize",
            "eval_shape",
            "shard_map",
        )
    },
    "jax.experimental.shard_map.shard_map": ((0,), ("f",)),
    "jax.lax.scan": ((0,), ("f",)),
    "jax.lax.map": ((0,), ("f",)),
    "jax.lax.fori_loop": ((2,), ("body_fun",)),
    "jax.lax.while_loop": ((0, 1), ("cond_fun", "body_fun")),
    "jax.lax.cond": ((1, 2), ("true_fun", "false_fun")),
}
_PARTIALS: Final = frozenset({"functools.partial"})


#: The packages whose names :class:`JaxNames` resolves.
_ROOTS: Final = ("jax", "functools", "flax")


class JaxNames:
    """The names a module binds to jax, to ``functools.partial`` and to flax's own modules
    (``flax.config``), from its imports: ``import jax`` (``jax.lax.scan``),
    ``from jax import lax, jit``, ``import jax.lax as lax``, ``from functools import partial``,
    ``from flax import config``."""

    def __init__(self, tree: ast.AST) -> None:
        self.bound: dict[str, str] = {}  # name -> the dotted name it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    root = alias.name.split(".")[0]
                    if root in _ROOTS:
                        if alias.asname:
                            self.bound[alias.asname] = alias.name
                        else:
                            self.bound[root] = root
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                module = node.module or ""
                if module.split(".")[0] in _ROOTS:
                    for alias in node.names:
                        self.bound[alias.asname or alias.name] = f"{module}.{alias.name}"

    def resolve(self, node: ast.AST) -> str | None:
        """``"jax.lax.scan"`` for an expression naming it, else None."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in self.bound:
            return None
        return ".".join([self.bound[node.id], *reversed(parts)])

    def transform(self, node: ast.AST) -> str | None:
        """The jax transform an expression is (``jax.jit``, ``partial(jax.jit, ...)``)."""
        if isinstance(node, ast.Call) and self.resolve(node.func) in _PARTIALS and node.args:
            node = node.args[0]
        name = self.resolve(node)
        return name if name in JAX_TRANSFORMS else None


#: Variables of other flax objects: ``optimizer.step`` is an OptState.
_OBJECT_VARIABLES: Final = {("nnx.Optimizer", "step"): "nnx.OptState"}


class Scope:
    """The class and function a node is in, and the functions around that one (closures see
    their names), for the facts' lookups."""

    __slots__ = ("cls", "enclosing", "function")

    def __init__(
        self,
        cls: ast.ClassDef | None,
        function: ast.AST | None,
        enclosing: tuple[ast.AST, ...] = (),
    ) -> None:
        self.cls = cls
        self.function = function
        self.enclosing = enclosing  # outer functions, innermost first


def walk(tree: ast.AST) -> Iterator[tuple[ast.AST, Scope, list[ast.AST]]]:
    """Every node with its scope and its ancestors (innermost last)."""

    def visit(
        node: ast.AST,
        cls: ast.ClassDef | None,
        functions: tuple[ast.AST, ...],
        parents: list[ast.AST],
    ) -> Iterator[tuple[ast.AST, Scope, list[ast.AST]]]:
        yield node, Scope(cls, functions[0] if functions else None, functions[1:]), parents
        if isinstance(node, ast.ClassDef):
            cls, functions = node, ()  # a class body does not see its functions' names
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            functions = (node, *functions)
        inner = [*parents, node]
        for child in ast.iter_child_nodes(node):
            yield from visit(child, cls, functions, inner)

    yield from visit(tree, None, (), [])


class Facts:
    """The ``nnx`` type each name or ``self`` attribute was assigned (see the module doc)."""

    def __init__(self, tree: ast.AST, names: Names) -> None:
        self.names = names
        self._names: dict[tuple[int, str], str] = {}  # (id(function or module), name) -> type
        self._attributes: dict[tuple[int, str], str] = {}  # (id(class), attr) -> type
        #: the same keys -> the call that built the value (a rewrite reads its arguments)
        self._origins: dict[tuple[str, int, str], ast.Call] = {}
        #: classes of the module that subclass an nnx Module (directly or through the module)
        self.modules: set[str] = set()
        #: classes of the module that subclass an nnx Variable type
        self.variables: set[str] = set()
        self._classes: dict[str, ast.ClassDef] = {}
        #: (id(function), parameter) -> the Module class of this file it is annotated with
        self._parameter_classes: dict[tuple[int, str], ast.ClassDef] = {}
        #: (id(class), attr) -> the plain value first assigned to ``self.attr`` ("None", "[]",
        #: "{}") and the node of that assignment
        self.first_static: dict[tuple[int, str], str] = {}
        #: the same keys -> that first assignment (a rewrite changes it)
        self.first_static_at: dict[tuple[int, str], ast.AST] = {}
        self._module_id = id(tree)
        self.jax = JaxNames(tree)
        #: the functions (defs, lambdas) that a jax transform traces: decorated with one, or
        #: passed to one where they are defined
        self.traced: set[int] = set()
        #: (id(function or module), name) -> the def of that name there
        self._defs: dict[tuple[int, str], ast.AST] = {}
        self._locals: dict[int, frozenset[str]] = {}
        calls: list[tuple[ast.Call, Scope]] = []
        for node, scope, _ in walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                key = id(scope.function) if scope.function is not None else self._module_id
                self._defs.setdefault((key, node.name), node)
                if any(self.jax.transform(d) for d in node.decorator_list):
                    self.traced.add(id(node))
            elif isinstance(node, ast.Call) and self.jax.transform(node.func):
                calls.append((node, scope))
            if isinstance(node, ast.ClassDef):
                self._note_class(node)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                value = node.value
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    self._note(target, value, scope, node)
            elif isinstance(node, ast.arg) and node.annotation is not None:
                kind = names.resolve(node.annotation)
                function = scope.function
                key = id(function) if function is not None else self._module_id
                if kind:
                    self._names[(key, node.arg)] = kind
                elif isinstance(node.annotation, ast.Name) and node.annotation.id in self.modules:
                    # weights: Weights, a Module class of this file: the class of that name
                    # defined last before the function (a notebook may define it again)
                    self._names[(key, node.arg)] = "module"
                    self._parameter_classes[(key, node.arg)] = self._classes[node.annotation.id]

        for call, scope in calls:
            self._note_traced(call, scope)

    def _note_traced(self, call: ast.Call, scope: Scope) -> None:
        transform = self.jax.transform(call.func)
        assert transform is not None
        positions, keywords = JAX_TRANSFORMS[transform]
        if isinstance(call.func, ast.Call):  # partial(jax.jit, f): its arguments come first
            call = ast.Call(call.func, [*call.func.args[1:], *call.args], call.keywords)
        functions = [call.args[i] for i in positions if i < len(call.args)]
        functions += [k.value for k in call.keywords if k.arg in keywords]
        for function in functions:
            if isinstance(function, ast.Lambda):
                self.traced.add(id(function))
            elif isinstance(function, ast.Name):
                for key in _chain(scope, self._module_id):
                    if (key, function.id) in self._defs:
                        self.traced.add(id(self._defs[(key, function.id)]))
                        break

    def local_names(self, function: ast.AST) -> frozenset[str]:
        """The names a function (a def or a lambda) binds itself: its parameters and the names
        it assigns, less those it declares ``global`` or ``nonlocal``."""
        if id(function) not in self._locals:
            self._locals[id(function)] = _local_names(function)
        return self._locals[id(function)]

    def _note_class(self, node: ast.ClassDef) -> None:
        for base in node.bases:
            kind = self.names.resolve(base)
            if kind in VARIABLE_TYPES or (isinstance(base, ast.Name) and base.id in self.variables):
                self.variables.add(node.name)  # class Count(nnx.Variable)
                return
            if kind in ("nnx.Module", "nnx.Object", "nnx.Pytree") or (
                isinstance(base, ast.Name) and base.id in self.modules
            ):
                self.modules.add(node.name)
                self._classes[node.name] = node

    def _note(
        self, target: ast.AST, value: ast.AST | None, scope: Scope, statement: ast.AST
    ) -> None:
        kind = self.call_type(value)
        if isinstance(target, ast.Tuple | ast.List) and kind in _SPLITS:
            # graphdef, state, ... = nnx.split(model, ...)
            for index, element in enumerate(target.elts):
                if isinstance(element, ast.Name):
                    key = id(scope.function) if scope.function is not None else self._module_id
                    split = "nnx.GraphDef" if index == 0 else "nnx.State"
                    self._names.setdefault((key, element.id), split)
            return
        if isinstance(target, ast.Name):
            key = id(scope.function) if scope.function is not None else self._module_id
            if kind:
                self._names.setdefault((key, target.id), kind)
                assert isinstance(value, ast.Call)
                self._origins.setdefault(("name", key, target.id), value)
        elif _is_self_attribute(target) and scope.cls is not None:
            assert isinstance(target, ast.Attribute)
            where = (id(scope.cls), target.attr)
            if kind:
                self._attributes.setdefault(where, kind)
                assert isinstance(value, ast.Call)
                self._origins.setdefault(("attribute", *where), value)
            elif where not in self.first_static:
                plain = _plain(value)
                if plain:
                    self.first_static[where] = plain
                    self.first_static_at[where] = statement

    def call_type(self, value: ast.AST | None) -> str | None:
        """``"nnx.X"`` for ``nnx.X(...)`` (or a local Module class: ``"module"``)."""
        if not isinstance(value, ast.Call):
            return None
        kind = self.names.resolve(value.func)
        if kind:
            return kind
        if isinstance(value.func, ast.Name) and value.func.id in self.modules:
            return "module"
        if isinstance(value.func, ast.Name) and value.func.id in self.variables:
            return "nnx.Variable"
        return None

    def type_of(self, node: ast.AST, scope: Scope) -> str | None:
        """What ``node`` holds, when the module says so; None when unknown."""
        if isinstance(node, ast.Call):
            return self.call_type(node)
        if isinstance(node, ast.Name):
            for key in _chain(scope, self._module_id):
                if (key, node.id) in self._names:
                    return self._names[(key, node.id)]
            return None
        if _is_self_attribute(node) and scope.cls is not None:
            assert isinstance(node, ast.Attribute)
            return self._attributes.get((id(scope.cls), node.attr))
        if not isinstance(node, ast.Attribute):
            return None
        owner = self.type_of(node.value, scope)
        if owner == "module":
            # model.calls, where model = MLP(...) and MLP is a Module class of this file
            cls = self._parameter_class(node.value, scope)
            origin = self.origin(node.value, scope)
            if cls is None and origin is not None and isinstance(origin.func, ast.Name):
                cls = self._classes.get(origin.func.id)
            return self._attributes.get((id(cls), node.attr)) if cls is not None else None
        if owner is not None and (owner, node.attr) in _OBJECT_VARIABLES:
            return _OBJECT_VARIABLES[(owner, node.attr)]
        if owner != "module" and is_module_type(owner) and node.attr in LAYER_VARIABLES:
            return LAYER_VARIABLES[node.attr]  # model.linear.kernel
        return None

    def _parameter_class(self, node: ast.AST, scope: Scope) -> ast.ClassDef | None:
        if isinstance(node, ast.Name):
            for key in _chain(scope, self._module_id):
                if (key, node.id) in self._names:  # the innermost binding decides
                    return self._parameter_classes.get((key, node.id))
        return None

    def origin(self, node: ast.AST, scope: Scope) -> ast.Call | None:
        """The call that built what ``node`` holds (as :meth:`type_of` finds it), if known."""
        if isinstance(node, ast.Name):
            for key in _chain(scope, self._module_id):
                if ("name", key, node.id) in self._origins:
                    return self._origins[("name", key, node.id)]
            return None
        if _is_self_attribute(node) and scope.cls is not None:
            assert isinstance(node, ast.Attribute)
            return self._origins.get(("attribute", id(scope.cls), node.attr))
        return None


#: The calls whose result unpacks as ``graphdef, state, ...``.
_SPLITS: Final = frozenset({"nnx.split", "nnx.graph.split"})


def _local_names(function: ast.AST) -> frozenset[str]:
    args = function.args  # type: ignore[attr-defined]
    names = {
        a.arg
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        if a is not None
    }
    declared: set[str] = set()
    body = function.body if isinstance(function.body, list) else [function.body]  # type: ignore[attr-defined]
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Global | ast.Nonlocal):
            declared.update(node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            continue  # its body is another scope
        elif isinstance(node, ast.Lambda):
            continue
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        stack.extend(ast.iter_child_nodes(node))
    return frozenset(names - declared)


#: Capitalised ``nnx`` names that are not Modules.
_NOT_MODULES: Final = frozenset(
    {"Rngs", "RngStream", "Optimizer", "ModelAndOptimizer", "State", "GraphDef", "GraphState"}
)


def is_module_type(kind: str | None) -> bool:
    """Whether a value of this kind is a Module or another node holding data: a Module class
    of the file (``"module"``) or a capitalised ``nnx`` class that is neither a Variable nor
    one of :data:`_NOT_MODULES` (``nnx.Linear``, ``nnx.Sequential``, ``nnx.List``)."""
    if kind == "module":
        return True
    if kind is None or not kind.startswith("nnx.") or kind in VARIABLE_TYPES:
        return False
    last = kind.split(".")[-1]
    return last[:1].isupper() and last not in _NOT_MODULES


def _chain(scope: Scope, module_id: int) -> list[int]:
    """The keys of the scopes a name is looked up in: the function, the enclosing ones, the
    module."""
    return [id(scope.function), *(id(f) for f in scope.enclosing), module_id]


def _is_self_attribute(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )


def _plain(value: ast.AST | None) -> str | None:
    if isinstance(value, ast.Constant) and value.value is None:
        return "None"
    if isinstance(value, ast.List) and not value.elts:
        return "[]"
    if isinstance(value, ast.Dict) and not value.keys:
        return "{}"
    if (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id in ("list", "dict")
        and not value.args
        and not value.keywords
    ):
        return "[]" if value.func.id == "list" else "{}"
    return None
