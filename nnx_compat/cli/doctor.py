"""``nnx-compat doctor``: what is installed, which shims are active, and self-checks.

Each self-check runs a program from the migration guide through ``nnx_compat.nnx`` under
``nnx.jit`` and compares it, bit for bit, with the same program written in the form that the
installed flax supports natively, run with ``flax.nnx`` itself. Where the layers of the
installed flax behave differently from 0.11's (flax 0.10 shares RNG streams), both sides build
the model with nnx_compat's layers, so that the check compares what it names. A check that
cannot run says why; it never reports a pass it did not observe.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Literal

from nnx_compat import _patterns, _versions, _warnings

__all__ = [
    "Check",
    "add_parser",
    "arrays",
    "command",
    "run_checks",
    "same",
    "seed_optimizer_program",
    "verdict",
]

Form = Literal["0.10", "0.11"]

#: The legacy patterns each form of the seed's optimizer example uses.
_FORM_PATTERNS: dict[Form, tuple[str, ...]] = {
    "0.10": ("optimizer-wrt-default", "optimizer-update-grads"),
    "0.11": (),
}


@dataclasses.dataclass(frozen=True)
class Check:
    """One self-check result.

    Attributes:
        name: What was checked.
        ok: Whether it passed.
        detail: What was observed.
    """

    name: str
    ok: bool
    detail: str


def seed_optimizer_program(
    nnx: Any, form: Form, steps: int = 3, *, layers: Any = None, tx: Any = None
) -> dict[str, Any]:
    """The optimizer example of the 0.10 -> 0.11 migration guide, in one of its two forms.

    Args:
        nnx: The namespace to run it with (``flax.nnx`` or ``nnx_compat.nnx``).
        form: ``"0.10"`` (``Optimizer(model, tx)``, ``update(grads)``) or ``"0.11"``
            (``wrt=nnx.Param``, ``update(model, grads)``).
        steps: Training steps under ``nnx.jit``.
        layers: The namespace whose layers build the model (default: ``nnx``). The layers
            differ between flax 0.10 and 0.11 (forked RNG streams): to compare optimizers
            alone, build both models with the same layers.
        tx: The optax transformation (default: the guide's ``optax.adam(1e-3)``).

    Returns:
        ``path -> numpy array``: the losses (``loss/<i>``), the model's whole state
        (``model/...``, RNG keys as their uint32 key data) and the optimizer's own state
        (``opt_state/...``, ``step``).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    build = nnx if layers is None else layers
    tx = optax.adam(1e-3) if tx is None else tx

    class Model(build.Module):  # type: ignore[misc,name-defined]
        def __init__(self, din: int, dmid: int, dout: int, rngs: Any) -> None:
            self.linear = build.Linear(din, dmid, rngs=rngs)
            self.bn = build.BatchNorm(dmid, rngs=rngs)
            self.dropout = build.Dropout(0.2, rngs=rngs)
            self.linear_out = build.Linear(dmid, dout, rngs=rngs)

        def __call__(self, x: Any) -> Any:
            x = build.relu(self.dropout(self.bn(self.linear(x))))
            return self.linear_out(x)

    model = Model(2, 64, 3, rngs=build.Rngs(0))
    if form == "0.10":
        optimizer = nnx.Optimizer(model, tx)

        def train_step(model: Any, optimizer: Any, x: Any, y: Any) -> Any:
            def loss_fn(model: Any) -> Any:
                y_pred = model(x)
                return ((y_pred - y) ** 2).mean()

            loss, grads = nnx.value_and_grad(loss_fn)(model)
            optimizer.update(grads)
            return loss

    else:
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

        def train_step(model: Any, optimizer: Any, x: Any, y: Any) -> Any:
            def loss_fn(model: Any) -> Any:
                y_pred = model(x)
                return ((y_pred - y) ** 2).mean()

            loss, grads = nnx.value_and_grad(loss_fn)(model)
            optimizer.update(model, grads)
            return loss

    step = nnx.jit(train_step)
    key_x, key_y = jax.random.split(jax.random.key(42))
    x = jax.random.normal(key_x, (8, 2), jnp.float32)
    y = jax.random.normal(key_y, (8, 3), jnp.float32)
    results = {f"loss/{i}": np.asarray(step(model, optimizer, x, y)) for i in range(steps)}
    results.update(arrays("model", nnx.state(model)))
    own = arrays("", nnx.state(optimizer))
    results.update({k: v for k, v in own.items() if k.startswith(("opt_state/", "step"))})
    return results


ScanForm = Literal["0.10", "0.11", "fork"]


def seed_scan_program(
    nnx: Any,
    form: ScanForm,
    *,
    layers: int = 5,
    width: int = 3,
    rate: float = 0.5,
    seed: int = 0,
    batch: int = 3,
    calls: int = 2,
) -> dict[str, Any]:
    """The "scan over layers" MLP of the 0.10 -> 0.11 migration guide, in one of its forms.

    Args:
        nnx: The namespace to run it with (``flax.nnx`` or ``nnx_compat.nnx``).
        form: ``"0.10"`` (``split_rngs`` over ``scan`` in ``__call__``), ``"0.11"`` (``scan``
            alone) or ``"fork"`` (no ``split_rngs`` in ``__init__``; the guide's
            ``MLP(rngs=rngs.fork(splits=n))``).
        layers, width, rate, seed, batch: The guide's 5, 3, 0.5, 0 and 3 by default.
        calls: Forward passes under ``nnx.jit`` (each advances the BatchNorm and RNG state).

    Returns:
        ``path -> numpy array``: the outputs (``y/<i>``) and the model's whole state
        (``model/...``, RNG keys as their uint32 key data).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    def init(self: Any, rngs: Any) -> None:
        self.linear = nnx.Linear(width, width, rngs=rngs)
        self.bn = nnx.BatchNorm(width, rngs=rngs)
        self.dropout = nnx.Dropout(rate, rngs=rngs)
        self.node = nnx.Param(jnp.ones((2,)))

    def call(self: Any, x: Any) -> Any:
        return nnx.gelu(self.dropout(self.bn(self.linear(x))))

    vmapped_init = nnx.vmap(in_axes=(0, 0))(init)
    scanned_call = nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)(call)
    if form != "fork":
        vmapped_init = nnx.split_rngs(splits=layers)(vmapped_init)
    if form == "0.10":
        scanned_call = nnx.split_rngs(splits=layers)(scanned_call)
    mlp = type("MLP", (nnx.Module,), {"__init__": vmapped_init, "__call__": scanned_call})
    rngs = nnx.Rngs(seed)
    model = mlp(rngs.fork(splits=layers)) if form == "fork" else mlp(rngs)
    x = jax.random.normal(jax.random.key(seed + 1), (batch, width), jnp.float32)
    forward = nnx.jit(lambda model, x: model(x))
    results = {f"y/{i}": forward(model, x) for i in range(calls)}
    results.update(arrays("model", nnx.state(model)))
    return {k: np.asarray(v) for k, v in results.items()}


def arrays(prefix: str, tree: Any) -> dict[str, Any]:
    """``prefix/path -> numpy array`` for a state; RNG keys become their uint32 key data."""
    import jax
    import numpy as np

    from nnx_compat import _paths

    out: dict[str, Any] = {}
    for path, leaf in _paths.flatten(tree).items():
        (value,) = jax.tree_util.tree_leaves(leaf)
        if jax.numpy.issubdtype(value.dtype, jax.dtypes.prng_key):
            value = jax.random.key_data(value)
        out[f"{prefix}/{path}" if prefix else path] = np.asarray(value)
    return out


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two results have the same paths, dtypes, shapes and bits."""
    from nnx_compat._bits import differences

    return not differences(a, b)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def _check_optimizer_form(form: Form) -> Check:
    import flax.nnx as upstream

    from nnx_compat import nnx

    name = f"optimizer-seed-{form}-form"
    native_form: Form = "0.10" if _versions.feature("OPTIMIZER_HOLDS_MODEL") else "0.11"
    try:
        with _warnings.warnings_policy("ignore"):
            shimmed = seed_optimizer_program(nnx, form)
    except Exception as err:  # reported in the check, not hidden
        return Check(name, False, f"failed: {_short(err)}\n{traceback.format_exc(limit=-3)}")
    reference = seed_optimizer_program(upstream, native_form, layers=nnx)
    if not same(shimmed, reference):
        return Check(
            name,
            False,
            f"ran, but its losses and parameters differ from the native {native_form} form",
        )
    used = ", ".join(_FORM_PATTERNS[form]) or "no legacy pattern"
    return Check(
        name,
        True,
        f"3 steps under nnx.jit through nnx_compat ({used}); losses, model and optimizer state "
        f"equal the native {native_form} form bit for bit",
    )


def _check_scan_form(form: ScanForm) -> Check:
    import flax.nnx as upstream

    from nnx_compat import nnx

    name = f"scan-over-layers-seed-{form}-form"
    forks = _versions.feature("LAYERS_FORK_RNGS")
    try:
        with _warnings.warnings_policy("ignore"):
            shimmed = seed_scan_program(nnx, form)
            # flax 0.10 cannot run the 0.11 form natively: compare with it through nnx_compat
            reference = seed_scan_program(upstream if forks else nnx, "0.11")
    except Exception as err:  # reported in the check, not hidden
        return Check(name, False, f"failed: {_short(err)}\n{traceback.format_exc(limit=-3)}")
    against = "the native 0.11 form" if forks else "the 0.11 form through nnx_compat"
    if not same(shimmed, reference):
        return Check(name, False, f"ran, but its outputs and state differ from {against}")
    return Check(
        name,
        True,
        f"2 forward passes under nnx.jit through the shim; outputs, parameters, BatchNorm "
        f"and RNG state equal {against} bit for bit",
    )


def _check_jax_range() -> Check:
    """The installed jax is one the installed flax release works with (the release sweep's
    range: beyond it, flax's own transforms fail)."""
    from packaging.requirements import Requirement

    env = _versions.detect()
    known = _versions.jax_requirement(env.flax)
    if known is None:
        return Check("jax-range", True, f"no jax range is recorded for flax {env.flax}")
    spec, why = known
    if env.jax is not None and Requirement(spec).specifier.contains(env.jax, prereleases=True):
        return Check("jax-range", True, f"flax {env.flax} works with {spec}: jax {env.jax}")
    return Check(
        "jax-range",
        False,
        f"flax {env.flax} works with {spec}, not jax {env.jax} ({why}): pip install '{spec}'",
    )


#: The self-checks in the order they run: (name, check).
CHECKS: tuple[tuple[str, Callable[[], Check]], ...] = (
    ("jax-range", _check_jax_range),
    ("optimizer-seed-0.10-form", lambda: _check_optimizer_form("0.10")),
    ("optimizer-seed-0.11-form", lambda: _check_optimizer_form("0.11")),
    ("scan-over-layers-seed-0.10-form", lambda: _check_scan_form("0.10")),
    ("scan-over-layers-seed-fork-form", lambda: _check_scan_form("fork")),
)


def run_checks(
    on_start: Callable[[str], None] | None = None, on_done: Callable[[Check], None] | None = None
) -> list[Check]:
    """Runs every self-check; ``on_start`` hears each one's name before it runs, ``on_done``
    its result."""
    results = []
    for name, check in CHECKS:
        if on_start is not None:
            on_start(name)
        results.append(check())
        if on_done is not None:
            on_done(results[-1])
    return results


class _Progress:
    """The self-checks as they run: on a terminal, the running check's name on one line that
    its result then replaces; elsewhere (a pipe, a file, CI logs) each result as it comes."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.live = stream.isatty() and os.environ.get("TERM") != "dumb"
        self.index = 0

    def start(self, name: str) -> None:
        self.index += 1
        if self.live:
            self.stream.write(f"  [{self.index}/{len(CHECKS)}] running {name} ...")
            self.stream.flush()

    def done(self, check: Check) -> None:
        if self.live:
            self.stream.write("\r\033[K")
        self.stream.write(f"  [{'PASS' if check.ok else 'FAIL'}] {check.name}: {check.detail}\n")
        self.stream.flush()


def verdict(checks: Sequence[Check]) -> str:
    """The last line: how many self-checks passed, or which failed and what to do."""
    failed = [c.name for c in checks if not c.ok]
    if not failed:
        return f"nnx-compat doctor: {len(checks)}/{len(checks)} self-checks passed"
    todo = (
        "install a jax in the named range"
        if failed == ["jax-range"]
        else "see each FAIL above; report it with the output of nnx-compat doctor --json"
    )
    return (
        f"nnx-compat doctor: {len(failed)} of {len(checks)} self-checks failed "
        f"({', '.join(failed)}): {todo}"
    )


def command(args: argparse.Namespace) -> int:
    """``nnx-compat doctor [--json] [--verbose]``."""
    import nnx_compat

    try:
        env = _versions.detect()
    except ImportError as err:
        if args.json:
            print(json.dumps({"error": str(err), "error_type": type(err).__name__}))
        else:
            print(f"nnx-compat doctor: {err}", file=sys.stderr)
        return 2
    shims = [
        {"name": name, "patterns": [p.id for p in _patterns.PATTERNS if name in p.shims]}
        for name in _patterns.shims()
    ]
    if args.json:
        checks = run_checks()
        ok = all(check.ok for check in checks)
        data: dict[str, Any] = {"nnx_compat": nnx_compat.__version__, **env.as_dict()}
        data["shims"] = shims
        data["checks"] = [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks]
        data["ok"] = ok
        print(json.dumps(data, indent=2))
        return 0 if ok else 1
    print(f"nnx_compat {nnx_compat.__version__}")
    newer = ", newer than known" if env.newer_than_known else ""
    print(f"flax {env.flax} (API generation {env.api}{newer})")
    print(
        f"jax {env.jax}, jaxlib {env.jaxlib}, optax {env.optax}, "
        f"orbax-checkpoint {env.orbax_checkpoint or '(not installed)'}"
    )
    if args.verbose:
        print("features:")
        for name, value in env.features.items():
            print(f"  {'yes' if value else 'no ':3} {name}")
        print("shims:" if shims else "shims: none active")
        for shim in shims:
            print(f"  nnx.{shim['name']}: {', '.join(shim['patterns'])}")
    else:
        active = sum(1 for value in env.features.values() if value)
        print(
            f"{len(env.features)} feature probes ({active} present), {len(shims)} shims active "
            "(--verbose lists them)"
        )
    print("checks:", flush=True)
    progress = _Progress(sys.stdout)
    checks = run_checks(progress.start, progress.done)
    print(verdict(checks))
    return 0 if all(check.ok for check in checks) else 1


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "doctor",
        help="versions, active shims and self-checks",
        description="What is installed, which shims are active, and self-checks: programs of "
        "the migration guide run through nnx_compat and compared bit for bit with the native "
        "form. Exit status: 0 every self-check passed, 1 one failed, 2 flax or jax cannot be "
        "imported.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also list the feature probes and shims"
    )
    parser.set_defaults(func=command)
