"""``nnx-compat fix-checkpoint``: convert an orbax checkpoint directory, verified and atomic.

SRC is restored as it is (no target), converted with :func:`nnx_compat.fix_checkpoint` (or
:func:`nnx_compat.legacy_checkpoint` with ``--to-legacy``), saved into a temporary directory
beside DST, restored again and compared array by array with SRC, and only then renamed into
place. Importing this module is cheap: orbax, jax and flax are imported when the command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the command imports jax only when it runs
    from nnx_compat._checkpoint.verify import Plan


__all__ = ["add_parser", "run"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: Without a terminal, verification prints a progress line at most this often (seconds).
LINE_EVERY_S = 5.0

#: A terminal's progress indicator is redrawn at most this often (seconds).
REDRAW_EVERY_S = 0.1

_PROG = "nnx-compat fix-checkpoint"

#: How long a failed restore waits for tensorstore's reads in flight (seconds).
_SETTLE_S = 0.05

#: How much of orbax's or tensorstore's message on an unreadable checkpoint is shown.
_REASON_CHARS = 600

_DESCRIPTION = """\
Converts the flax 0.10 orbax checkpoint SRC to the structure of the installed flax and writes
it to the new directory DST (with --to-legacy: the other way). SRC is never modified.

DST is saved into a temporary directory beside it, restored again and compared with SRC: every
array that is not RNG state must arrive bit for bit (same dtype, shape and bytes). Only then is
it renamed into place; on any failure, or Ctrl-C, nothing is left behind. RNG state is not
carried over: it is initialised afresh from --rngs, as building the model would.
"""

_EPILOG = """\
what DST holds:
  * from a model checkpoint: the model's state, as ocp.StandardCheckpointer().save(DST,
    nnx.state(model)) writes it. Restore it with
    ocp.StandardCheckpointer().restore(DST, nnx.state(abstract_model)).
  * from a flax 0.10 Optimizer checkpoint (model/, opt_state, step; needs --tx): the dict
    {"model": <model state>, "optimizer": <optimizer state>}. Restore it with
    restore(DST, {"model": nnx.state(model), "optimizer": nnx.state(optimizer)}).
  * with --to-legacy: the nested {"value": array} dict flax 0.10 writes; a SRC of the
    {"model", "optimizer"} layout above becomes flax 0.10's Optimizer checkpoint
    (model/, opt_state, step).

A SRC that already has the installed structure needs no conversion: the command says so,
writes nothing and exits with 0; with --write-unchanged it writes a verified copy to DST.

exit status:
  0    DST written and verified, or SRC needed no conversion
  1    conversion or verification failed: SRC is not a readable orbax checkpoint, it is
       a checkpoint of another model (missing or extra paths, wrong shapes or dtypes),
       the model factory raised, writing failed or DST did not verify; nothing was written
  2    usage error: a bad option, SRC missing, DST existing without --overwrite, --model
       or --tx not importable, a missing --tx, orbax-checkpoint not installed
  130  interrupted; nothing was written
"""


class _Exit(Exception):
    """Ends the command with ``status`` after printing ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _usage(message: str) -> _Exit:
    return _Exit(EXIT_USAGE, message)


def _failed(message: str) -> _Exit:
    return _Exit(EXIT_FAILED, message)


# --------------------------------------------------------------------------- arguments


def add_parser(sub: Any) -> None:
    """Adds ``fix-checkpoint`` to the ``nnx-compat`` subcommands."""
    cmd = sub.add_parser(
        "fix-checkpoint",
        help="convert a flax 0.10 orbax checkpoint to the installed structure (or back)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("src", metavar="SRC", help="the orbax checkpoint directory to convert")
    cmd.add_argument("dst", metavar="DST", help="the directory to write; must not exist")
    cmd.add_argument(
        "--model",
        required=True,
        metavar="MODULE:FACTORY",
        help="what builds the model, called as FACTORY(rngs=...): pkg.mod:Name or "
        "path/to/file.py:Name (the current directory is importable)",
    )
    cmd.add_argument(
        "--rngs",
        default="0",
        metavar="SPEC",
        help="the nnx.Rngs that initialise the RNG state: 'params=0,dropout=1' or a bare "
        "seed '0' (nnx.Rngs(0)); default: 0",
    )
    cmd.add_argument(
        "--tx",
        metavar="MODULE:ATTR",
        help="for a flax 0.10 Optimizer checkpoint: the optax transformation it was trained "
        "with, an object or a callable taking no arguments",
    )
    cmd.add_argument(
        "--wrt",
        metavar="MODULE:ATTR",
        help="the Optimizer's wrt filter (default: nnx.Param)",
    )
    cmd.add_argument(
        "--to-legacy",
        action="store_true",
        help="write the layout flax 0.10 writes, from a checkpoint of the installed structure",
    )
    cmd.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing DST, once the new one is verified",
    )
    cmd.add_argument(
        "--write-unchanged",
        action="store_true",
        help="if SRC needs no conversion, write a verified copy to DST instead of nothing",
    )
    cmd.add_argument("--quiet", action="store_true", help="no progress on stderr")
    cmd.set_defaults(func=run)


def parse_rngs(spec: str) -> tuple[int | None, dict[str, int]]:
    """``"params=0,dropout=1"`` -> ``(None, {"params": 0, "dropout": 1})``; ``"0"`` -> ``(0, {})``.

    Raises:
        ValueError: naming what is wrong.
    """
    default: int | None = None
    streams: dict[str, int] = {}
    for raw in spec.split(","):
        item = raw.strip()
        name, eq, seed = item.partition("=")
        name, seed = name.strip(), seed.strip()
        if not eq:
            name, seed = "", name
        if eq and not name.isidentifier():
            raise ValueError(f"{item!r}: a stream name must be an identifier")
        try:
            value = int(seed)
        except ValueError:
            raise ValueError(f"{item!r}: the seed must be an integer") from None
        if not eq:
            if default is not None:
                raise ValueError("more than one bare seed")
            default = value
        elif name in streams:
            raise ValueError(f"stream {name!r} given twice")
        else:
            streams[name] = value
    return default, streams


def resolve(spec: str, option: str) -> Any:
    """The object ``pkg.mod:Name`` or ``path/to/file.py:Name`` names (``Name`` may be dotted).

    Raises:
        _Exit: a usage error naming ``option``.
    """
    where, colon, name = spec.rpartition(":")
    if not colon or not where or not name:
        raise _usage(f"{option} {spec}: expected MODULE:NAME, e.g. models.mlp:MLP")
    try:
        if where.endswith(".py") or os.sep in where or "/" in where:
            module = _load_file(Path(where))
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(where)
    except _Exit:
        raise
    except Exception as err:
        reason = f"{type(err).__name__}: {err}"
        raise _usage(f"{option} {spec}: cannot import {where}: {reason}") from None
    obj: Any = module
    for part in name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _usage(f"{option} {spec}: {where} has no attribute {name!r}") from None
    return obj


def _load_file(path: Path) -> Any:
    if not path.is_file():
        raise _usage(f"no such file: {path}")
    name = f"_nnx_compat_cli_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise _usage(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _optax_transformation(obj: Any, spec: str) -> Any:
    if not (hasattr(obj, "init") and hasattr(obj, "update")) and callable(obj):
        try:
            obj = obj()
        except TypeError as err:
            raise _usage(
                f"--tx {spec}: calling it with no arguments failed ({err}); name an optax "
                "transformation or a function of no arguments that returns one"
            ) from None
    if not (hasattr(obj, "init") and hasattr(obj, "update")):
        raise _usage(f"--tx {spec}: not an optax transformation: {type(obj).__name__}")
    return obj


def _check_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    src = Path(args.src).absolute()
    dst = Path(args.dst).absolute()
    if not src.exists():
        raise _usage(f"SRC does not exist: {src}")
    if not src.is_dir():
        raise _usage(f"SRC is not a directory (an orbax checkpoint is one): {src}")
    real_src, real_dst = src.resolve(), dst.resolve()
    if real_dst == real_src or real_src in real_dst.parents or real_dst in real_src.parents:
        raise _usage(f"DST must lie outside SRC and SRC outside DST: {src}, {dst}")
    if not dst.parent.is_dir():
        raise _usage(f"DST's parent directory does not exist: {dst.parent}")
    if (dst.exists() or dst.is_symlink()) and not args.overwrite:
        raise _usage(f"DST exists: {dst}; pass --overwrite to replace it")
    return src, dst


# --------------------------------------------------------------------------- progress


class Progress:
    """Stage lines with timings on ``stream``; an in-place indicator on a terminal."""

    def __init__(self, stream: TextIO, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last = 0.0

    def _write(self, text: str) -> None:
        if not self.quiet:
            self.stream.write(text)
            self.stream.flush()

    @contextlib.contextmanager
    def stage(self, doing: str) -> Iterator[list[str]]:
        """Shows ``doing`` while the block runs, then one line: what it appended, and the time."""
        if self.tty:
            self._write(f"\r\x1b[K{doing} ...")
        start = time.perf_counter()
        done: list[str] = []
        try:
            yield done
        finally:
            if self.tty:
                self._write("\r\x1b[K")  # on failure too: the error starts a clean line
        seconds = time.perf_counter() - start
        self._write(f"{done[0] if done else doing} ({seconds:.2f} s)\n")

    def count(self, doing: str, k: int, n: int) -> None:
        """``doing k/n``: redrawn on a terminal, a sparse line otherwise."""
        now = time.perf_counter()
        if self.tty:
            if k == n or now - self._last >= REDRAW_EVERY_S:
                self._last = now
                percent = 100 * k // max(n, 1)
                self._write(f"\r\x1b[K{doing} {k}/{n} ({percent}%)")
        elif k < n and now - self._last >= LINE_EVERY_S:
            self._last = now
            self._write(f"{doing} {k}/{n}\n")

    def start_counting(self) -> None:
        self._last = time.perf_counter()


def _size(nbytes: int) -> str:
    if nbytes < 1024:
        return f"{nbytes} B"
    value = float(nbytes)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.2f} {unit}"


# --------------------------------------------------------------------------- arrays


# --------------------------------------------------------------------------- the command


def _optimizer_layout(flat: Mapping[str, Any]) -> bool:
    """Whether ``flat`` has the ``{"model", "optimizer"}`` layout this command writes."""
    tops = {path.split("/", 1)[0] for path in flat}
    return tops == {"model", "optimizer"} and "optimizer/step" in flat


def _convert(
    raw: Any, flat: dict[str, Any], args: argparse.Namespace, factory: Any, tx: Any, wrt: Any
) -> tuple[Plan, str | None]:
    """The plan for DST, and a note when SRC needed no conversion."""
    from nnx_compat import _checkpoint, _versions
    from nnx_compat._checkpoint.verify import Plan

    nnx = _versions.import_nnx()
    default, streams = parse_rngs(args.rngs)

    def rngs() -> Any:
        return nnx.Rngs(**streams) if default is None else nnx.Rngs(default, **streams)

    read = _checkpoint.read
    if args.to_legacy:
        if _optimizer_layout(flat):
            tree = _checkpoint.legacy_checkpoint(
                raw["model"], factory, rngs=rngs(), optimizer=raw["optimizer"]
            )
            renames = (("model/", "model/"), ("", "optimizer/"))
            return Plan(tree, read(tree), renames, ignored=("optimizer/model/",)), None
        tree = _checkpoint.legacy_checkpoint(raw, factory, rngs=rngs())
        return Plan(tree, read(tree)), None
    unchanged = Plan(raw, flat, unchanged=True)
    flax = _versions.detect().flax
    if _optimizer_layout(flat):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", _checkpoint.CheckpointNote)
                _checkpoint.fix_checkpoint(raw["model"], factory, rngs=rngs())
        except _checkpoint.CheckpointNote:
            return unchanged, (
                f"SRC is a {{model, optimizer}} checkpoint whose model already has the "
                f"structure of flax {flax}"
            )
        raise _failed(
            "SRC has the {model, optimizer} layout this command writes, but its model does "
            f"not have the structure of flax {flax}: convert the flax 0.10 checkpoint it came "
            "from instead"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", _checkpoint.CheckpointNote)
            fixed = _checkpoint.fix_checkpoint(raw, factory, rngs=rngs(), tx=tx, wrt=wrt)
    except _checkpoint.CheckpointNote:
        return unchanged, f"SRC already has the structure of flax {flax}"
    except _checkpoint.CheckpointMismatchError:
        raise
    except _checkpoint.CheckpointError as err:
        if tx is None:
            raise _usage(f"{err}\nOn the command line: --tx MODULE:ATTR") from None
        raise
    if isinstance(fixed, _checkpoint.OptimizerCheckpoint):
        tree = {"model": fixed.model, "optimizer": fixed.optimizer}
        written = {f"model/{p}": v for p, v in read(fixed.model).items()}
        written.update((f"optimizer/{p}", v) for p, v in read(fixed.optimizer).items())
        # flax 0.10's Optimizer holds its model: optimizer/model/... is SRC's model/... too
        halves = (("model/", "model/"), ("optimizer/model/", "model/"), ("optimizer/", ""))
        return Plan(tree, written, halves), None
    return Plan(fixed, read(fixed)), None


@contextlib.contextmanager
def _reads_in_flight() -> Iterator[None]:
    """Silences the reads still in flight when orbax gives up on a damaged checkpoint.

    When one array cannot be read, orbax's restore raises and closes its event loop while
    tensorstore's other reads are still running; each then reports ``RuntimeError('Event loop
    is closed')`` as an unraisable exception: a traceback on stderr that says nothing.
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        exc = unraisable.exc_value
        if not (isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    except Exception:
        time.sleep(_SETTLE_S)  # the reads in flight end while the hook is in place
        raise
    finally:
        sys.unraisablehook = previous


def _restore(ckptr: Any, path: Path, what: str) -> tuple[Any, dict[str, Any]]:
    from nnx_compat import _checkpoint

    try:
        with _reads_in_flight():
            raw = ckptr.restore(path)
        return raw, _checkpoint.read(raw)
    except Exception as err:
        # tensorstore appends its whole spec to each message: the reason comes before it
        reason = str(err).split(" [tensorstore_spec=", 1)[0]
        if len(reason) > _REASON_CHARS:
            reason = reason[: _REASON_CHARS - 3] + "..."
        raise _failed(
            f"{what} is not a readable orbax checkpoint: {path}: {type(err).__name__}: {reason}"
        ) from None


def _save(ckptr: Any, path: Path, tree: Any) -> None:
    ckptr.save(path, tree)
    ckptr.wait_until_finished()


def _verify(
    plan: Plan, src: Mapping[str, Any], dst: Mapping[str, Any], progress: Progress
) -> tuple[int, int, int]:
    """Compares DST with SRC (:func:`nnx_compat._checkpoint.verify.verify`), counting progress."""
    from nnx_compat._checkpoint.verify import VerificationError, verify

    progress.start_counting()
    try:
        return verify(plan, src, dst, lambda k, n: progress.count("verifying", k, n))
    except VerificationError as err:
        shown = "\n  ".join(err.problems[:12])
        more = f"\n  and {len(err.problems) - 12} more" if len(err.problems) > 12 else ""
        raise _failed(f"DST did not verify; nothing was written:\n  {shown}{more}") from None


def _install(staged: Path, dst: Path, staging: Path) -> None:
    """Renames ``staged`` to ``dst``; an existing ``dst`` is moved into ``staging`` first."""
    if dst.exists() or dst.is_symlink():
        previous = staging / "previous"
        os.rename(dst, previous)
        try:
            os.rename(staged, dst)
        except BaseException:
            os.rename(previous, dst)
            raise
    else:
        os.rename(staged, dst)


def _command(args: argparse.Namespace, progress: Progress) -> int:
    from nnx_compat._checkpoint.verify import array_nbytes

    if args.to_legacy and (args.tx or args.wrt):
        raise _usage(
            "--tx and --wrt are for converting to the installed structure, not with "
            "--to-legacy (the optimizer state is carried over as it is)"
        )
    src, dst = _check_paths(args)
    try:
        parse_rngs(args.rngs)
    except ValueError as err:
        raise _usage(
            f"--rngs {args.rngs}: {err}; expected e.g. 'params=0,dropout=1' or '0'"
        ) from None
    try:
        import orbax.checkpoint as ocp
    except ImportError as err:
        raise _usage(
            f"this command needs orbax-checkpoint: pip install orbax-checkpoint ({err})"
        ) from None
    factory = resolve(args.model, "--model")
    tx = None if args.tx is None else _optax_transformation(resolve(args.tx, "--tx"), args.tx)
    wrt = None if args.wrt is None else resolve(args.wrt, "--wrt")
    from nnx_compat import _checkpoint

    staging: Path | None = None
    try:
        # the checkpointer is closed (its background writes done) before staging is removed
        with ocp.StandardCheckpointer() as ckptr:
            with progress.stage("restoring SRC") as line:
                raw, flat = _restore(ckptr, src, "SRC")
                total = sum(array_nbytes(a) for a in flat.values())
                line.append(f"restored SRC: {len(flat)} arrays, {_size(total)}")
            with progress.stage("converting") as line:
                try:
                    plan, note = _convert(raw, flat, args, factory, tx, wrt)
                except _checkpoint.CheckpointMismatchError as err:
                    raise _failed(f"SRC is not a checkpoint of {args.model}: {err}") from None
                except _Exit:
                    raise
                except Exception as err:
                    raise _failed(f"converting failed: {type(err).__name__}: {err}") from None
                line.append("converted" if note is None else "no conversion needed")
            if note is not None and not args.write_unchanged:
                print(
                    f"{note}: nothing to convert, nothing written (use SRC as it is, or pass "
                    "--write-unchanged for a verified copy in DST)"
                )
                return EXIT_OK
            try:
                staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}.nnx-compat-", dir=dst.parent))
            except OSError as err:
                raise _usage(f"cannot create a directory beside DST: {err}") from None
            staged = staging / dst.name
            with progress.stage("writing") as line:
                try:
                    _save(ckptr, staged, plan.tree)
                except Exception as err:
                    reason = f"{type(err).__name__}: {err}"
                    raise _failed(f"writing DST failed: {reason}; nothing was written") from None
                line.append(f"wrote {len(plan.written)} arrays to a temporary directory")
            with progress.stage("verifying") as line:
                _, written = _restore(ckptr, staged, "the DST just written")
                verified, nbytes, fresh = _verify(plan, flat, written, progress)
                as_written = f", {fresh} RNG state as written" if fresh else ""
                line.append(
                    f"verified {len(written)} arrays: {verified} equal to SRC's{as_written}"
                )
            try:
                _install(staged, dst, staging)
            except OSError as err:
                raise _failed(f"moving DST into place failed: {err}; nothing was written") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    src_rng = sum(1 for p in flat if _checkpoint.is_rng_path(p))
    if plan.unchanged:
        rng = f"RNG state carried over unchanged: {src_rng} arrays" if src_rng else "no RNG state"
    else:
        rng = f"RNG state re-initialised: {fresh} arrays"
        if fresh != src_rng:
            rng += f" (SRC had {src_rng})"
    print(f"verified {verified} arrays ({_size(nbytes)}) bit for bit; {rng}")
    print(f"wrote {dst}")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Runs ``fix-checkpoint``; returns the exit status."""
    progress = Progress(sys.stderr, quiet=args.quiet)
    try:
        return _command(args, progress)
    except _Exit as err:
        print(f"{_PROG}: error: {err}", file=sys.stderr)
        return err.status
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted; nothing was written", file=sys.stderr)
        return 130
