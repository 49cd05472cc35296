"""``nnx-compat fix-checkpoint`` on real orbax checkpoints written in tmp directories.

The flax 0.10 checkpoints are made on every flax with ``legacy_checkpoint`` and saved with
orbax, as flax 0.10 saves ``nnx.state(model)``. The models live in ``tests/cli_models.py``.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import nnx_compat
from nnx_compat import _checkpoint, nnx
from nnx_compat._bits import same_bits
from nnx_compat._checkpoint import verify as _verify
from nnx_compat.cli import fix_checkpoint as _checkpoint_cli
from nnx_compat.cli import main
from tests.cli_models import ADAM, MLP, Plain

ROOT = Path(__file__).resolve().parents[2]
RNGS = {"params": 0, "dropout": 1}


def _save(path: Path, tree: Any) -> None:
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, tree)


def _restore(path: Path, target: Any = None) -> Any:
    with ocp.StandardCheckpointer() as ckptr:
        return ckptr.restore(path) if target is None else ckptr.restore(path, target)


def _optimizer(model: Any) -> Any:
    optimizer = nnx.Optimizer(model, ADAM, wrt=nnx.Param)
    grads = jax.tree_util.tree_map(jnp.ones_like, nnx.state(model, nnx.Param))
    optimizer.update(model, grads)  # opt_state and step that are not their initial values
    return optimizer


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """flax 0.10 checkpoints (read only) and the states they were made from."""
    root = tmp_path_factory.mktemp("sources")
    out: dict[str, Any] = {"root": root}
    for name, factory in (("mlp", MLP), ("plain", Plain)):
        model = factory(rngs=nnx.Rngs(**RNGS))
        optimizer = _optimizer(model)
        state = nnx.state(model)
        legacy = nnx_compat.legacy_checkpoint(state, factory, rngs=nnx.Rngs(**RNGS))
        _save(root / name, legacy)
        legacy_opt = nnx_compat.legacy_checkpoint(
            state, factory, rngs=nnx.Rngs(**RNGS), optimizer=nnx.state(optimizer)
        )
        _save(root / f"{name}_opt", legacy_opt)
        out[name] = root / name
        out[f"{name}_opt"] = root / f"{name}_opt"
        out[f"{name}_state"] = _checkpoint.read(state)
        out[f"{name}_optimizer"] = _checkpoint.read(nnx.state(optimizer))
    return out


def _hashes(path: Path) -> dict[str, str]:
    """Every file and directory under ``path``, with its content's hash."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
        for p in sorted(path.rglob("*"))
    }


def _run(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = main(["fix-checkpoint", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_same_bits(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert set(got) == set(want)
    for path in want:
        assert same_bits(got[path], want[path]), path


def _params(state: dict[str, Any]) -> dict[str, Any]:
    return {p: a for p, a in state.items() if not _checkpoint.is_rng_path(p)}


def _rng(state: dict[str, Any]) -> dict[str, Any]:
    return {p: a for p, a in state.items() if _checkpoint.is_rng_path(p)}


def test_converts_a_model_checkpoint(
    sources: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _hashes(sources["mlp"])
    dst = tmp_path / "dst"
    code, out, err = _run(
        capsys,
        sources["mlp"],
        dst,
        "--model",
        "tests.cli_models:MLP",
        "--rngs",
        "params=0,dropout=1",
    )
    assert (code, err.count("error")) == (0, 0), err
    assert (
        "verified 4 arrays (200 B) bit for bit; RNG state re-initialised: 2 arrays (SRC had 4)"
        in out
    )
    for stage in (
        "restored SRC: 8 arrays, 224 B (",
        "converted (",
        "wrote 6 arrays",
        "verified 6 arrays: 4 equal to SRC's, 2 RNG state as written",
    ):
        assert stage in err
    assert _hashes(sources["mlp"]) == before
    assert os.listdir(tmp_path) == ["dst"]
    # it restores into a model built through nnx_compat, parameters bit for bit
    abstract = nnx.eval_shape(lambda: MLP(rngs=nnx.Rngs(0)))
    model = MLP(rngs=nnx.Rngs(7))
    nnx.update(model, _restore(dst, nnx.state(abstract)))
    restored = _checkpoint.read(nnx.state(model))
    _assert_same_bits(_params(restored), _params(sources["mlp_state"]))
    # the RNG state is the one --rngs gives the model
    fresh = _checkpoint.read(nnx.state(MLP(rngs=nnx.Rngs(**RNGS)), nnx.RngState))
    _assert_same_bits(_rng(restored), fresh)


@pytest.mark.parametrize(
    ("name", "factory", "tx"),
    [
        ("mlp", MLP, ["--tx", "tests.cli_models:make_adam"]),
        ("plain", Plain, ["--tx", "tests.cli_models:ADAM", "--wrt", "nnx_compat.nnx:Param"]),
    ],
)
def test_converts_an_optimizer_checkpoint(
    sources: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    factory: Any,
    tx: list[str],
) -> None:
    src = sources[f"{name}_opt"]
    before = _hashes(src)
    dst = tmp_path / "dst"
    code, out, err = _run(capsys, src, dst, "--model", f"tests.cli_models:{factory.__name__}", *tx)
    assert code == 0, err
    assert _hashes(src) == before
    model = factory(rngs=nnx.Rngs(7))
    optimizer = nnx.Optimizer(model, ADAM, wrt=nnx.Param)
    target = {"model": nnx.state(model), "optimizer": nnx.state(optimizer)}
    restored = _restore(dst, target)
    nnx.update(model, restored["model"])
    nnx.update(optimizer, restored["optimizer"])
    _assert_same_bits(
        _params(_checkpoint.read(nnx.state(model))), _params(sources[f"{name}_state"])
    )
    _assert_same_bits(
        _params(_checkpoint.read(nnx.state(optimizer))), _params(sources[f"{name}_optimizer"])
    )
    assert int(optimizer.step.get_value()) == 1
    # the model, and the optimizer (flax 0.10: with its model/ again), less the RNG state
    verified = len(_params(sources[f"{name}_state"])) + len(_params(sources[f"{name}_optimizer"]))
    assert f"verified {verified} arrays (" in out


def test_optimizer_checkpoint_needs_tx(
    sources: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(
        capsys, sources["mlp_opt"], tmp_path / "dst", "--model", "tests.cli_models:MLP"
    )
    assert code == 2
    assert "Optimizer checkpoint" in err and "--tx MODULE:ATTR" in err
    assert os.listdir(tmp_path) == []


def test_python_m(sources: dict[str, Any], tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    model = ("--model", "tests.cli_models:MLP")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nnx_compat",
            "fix-checkpoint",
            sources["mlp"],
            dst,
            *model,
            "--quiet",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "verified 4 arrays (200 B) bit for bit" in proc.stdout
    assert "restored SRC" not in proc.stderr
    abstract = nnx.eval_shape(lambda: MLP(rngs=nnx.Rngs(0)))
    restored = _checkpoint.read(_restore(dst, nnx.state(abstract)))
    _assert_same_bits(_params(restored), _params(sources["mlp_state"]))


def test_model_from_a_file(
    sources: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = f"{ROOT / 'tests' / 'cli_models.py'}:MLP"
    code, out, err = _run(capsys, sources["mlp"], tmp_path / "dst", "--model", spec, "--quiet")
    assert (code, err) == (0, "")
    assert "verified 4 arrays" in out


def test_refuses_to_overwrite(
    sources: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "old").write_text("old")
    args = (sources["mlp"], dst, "--model", "tests.cli_models:MLP", "--quiet")
    code, _, err = _run(capsys, *args)
    assert code == 2 and "DST exists" in err and "--overwrite" in err
    assert (dst / "old").read_text() == "old"
    code, _, err = _run(capsys, *args, "--overwrite")
    assert code == 0, err
    assert not (dst / "old").exists() and (dst / "_CHECKPOINT_METADATA").exists()
    assert os.listdir(tmp_path) == ["dst"]


def _differ(a: Any, b: Any) -> bool:
    return False


def _save_then_fail(ckptr: Any, path: Path, tree: Any) -> None:
    ckptr.save(path, tree)
    ckptr.wait_until_finished()
    raise OSError("disk full")


def _interrupted(ckptr: Any, path: Path, tree: Any) -> None:
    ckptr.save(path, tree)
    ckptr.wait_until_finished()
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("name", "patch", "status", "message", "overwrite"),
    [
        ("same_bits", _differ, 1, "DST did not verify; nothing was written", False),
        ("same_bits", _differ, 1, "DST did not verify; nothing was written", True),
        ("_save", _save_then_fail, 1, "writing DST failed: OSError: disk full", False),
        ("_save", _interrupted, 130, "interrupted; nothing was written", True),
    ],
    ids=["unverified", "unverified-overwrite", "save-fails", "interrupted-overwrite"],
)
def test_nothing_half_written(
    sources: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    patch: Any,
    status: int,
    message: str,
    overwrite: bool,
) -> None:
    before = _hashes(sources["mlp"])
    dst = tmp_path / "dst"
    if overwrite:
        dst.mkdir()
        (dst / "old").write_text("old")
    module = _verify if name == "same_bits" else _checkpoint_cli
    monkeypatch.setattr(module, name, patch)
    args = [sources["mlp"], dst, "--model", "tests.cli_models:MLP"] + ["--overwrite"] * overwrite
    code, _, err = _run(capsys, *args)
    assert code == status and message in err
    assert os.listdir(tmp_path) == (["dst"] if overwrite else [])
    if overwrite:
        assert os.listdir(dst) == ["old"]
    assert _hashes(sources["mlp"]) == before


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            "wide",
            "wrong shape or dtype (1): l1/kernel: checkpoint float32[3, 8], model float32[5, 8]",
        ),
        ("Half", "l1/bias: checkpoint float32[8], model bfloat16[8]"),
        ("Plain", "in the checkpoint only (2): l2/bias, l2/kernel"),
    ],
)
def test_checkpoint_of_another_model(
    sources: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    model: str,
    message: str,
) -> None:
    before = _hashes(sources["mlp"])
    code, out, err = _run(
        capsys, sources["mlp"], tmp_path / "dst", "--model", f"tests.cli_models:{model}"
    )
    assert code == 1
    assert f"SRC is not a checkpoint of tests.cli_models:{model}" in err and message in err
    # the hint names the factory, not the library's argument
    assert f"Is {model} the model this checkpoint was saved from" in err
    assert "model_factory" not in err
    assert out == "" and os.listdir(tmp_path) == []
    assert _hashes(sources["mlp"]) == before


def _truncate_data(src: Path) -> None:
    for data in (src / "d").iterdir():
        with data.open("r+b") as f:
            f.truncate(3)


@pytest.mark.parametrize(
    "damage",
    [
        lambda src: (src / "_METADATA").unlink(),
        lambda src: (src / "_METADATA").write_text('{"tree_metadata'),
        lambda src: (src / "manifest.ocdbt").write_bytes(b"ocdbt"),
        _truncate_data,
        lambda src: [p.unlink() for p in src.iterdir() if p.is_file()],
    ],
    ids=["no-metadata", "truncated-metadata", "truncated-manifest", "truncated-data", "empty"],
)
def test_unreadable_source(
    sources: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: Any
) -> None:
    src = tmp_path / "src"
    shutil.copytree(sources["mlp"], src)
    damage(src)
    before = _hashes(src)
    code, out, err = _run(capsys, src, tmp_path / "dst", "--model", "tests.cli_models:MLP")
    assert code == 1 and out == ""
    assert f"SRC is not a readable orbax checkpoint: {src}: " in err
    assert "tensorstore_spec" not in err
    assert os.listdir(tmp_path) == ["src"]
    assert _hashes(src) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rngs", "params=x"], "--rngs params=x: 'params=x': the seed must be an integer"),
        (["--rngs", "a=1,a=2"], "stream 'a' given twice"),
        (["--rngs", "0,1"], "more than one bare seed"),
        (["--rngs", "2x=1"], "must be an identifier"),
        (["--model", "no_such_module:MLP"], "cannot import no_such_module: ModuleNotFoundError"),
        (["--model", "tests.cli_models:Nope"], "tests.cli_models has no attribute 'Nope'"),
        (["--model", "MLP"], "expected MODULE:NAME"),
        (["--tx", "tests.cli_models:Plain"], "calling it with no arguments failed"),
        (["--tx", "tests.cli_models:RNGS_NOTE"], "has no attribute"),
        (["--to-legacy", "--tx", "tests.cli_models:ADAM"], "not with --to-legacy"),
    ],
)
def test_usage_errors(
    sources: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    argv = [sources["mlp"], tmp_path / "dst", "--model", "tests.cli_models:MLP", *args]
    code, _, err = _run(capsys, *argv)
    assert code == 2 and message in err, err
    assert os.listdir(tmp_path) == []


def test_source_and_destination_paths(
    sources: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = ("--model", "tests.cli_models:MLP", "--overwrite")
    code, _, err = _run(capsys, tmp_path / "missing", tmp_path / "dst", *model)
    assert code == 2 and f"SRC does not exist: {tmp_path / 'missing'}" in err
    src = tmp_path / "src"
    shutil.copytree(sources["mlp"], src)
    before = _hashes(src)
    for dst in (src, src / "inside", tmp_path):
        code, _, err = _run(capsys, src, dst, *model)
        assert code == 2 and "DST must lie outside SRC" in err
    code, _, err = _run(capsys, src, tmp_path / "no" / "dst", *model)
    assert code == 2 and "DST's parent directory does not exist" in err
    assert _hashes(src) == before and os.listdir(tmp_path) == ["src"]


def test_orbax_is_optional(
    sources: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "orbax.checkpoint", None)
    code, _, err = _run(capsys, sources["mlp"], tmp_path / "dst", "--model", "tests.cli_models:MLP")
    assert code == 2 and "pip install orbax-checkpoint" in err


def test_importing_the_cli_stays_light() -> None:
    code = (
        "import sys, nnx_compat.cli; "
        "print(sorted(m for m in ('jax', 'flax', 'orbax') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_write_unchanged_reports_rng_state_once(
    sources: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tmp_path / "first"
    model = ["--model", "tests.cli_models:MLP", "--rngs", "params=0,dropout=1"]
    assert _run(capsys, sources["mlp"], first, *model)[0] == 0
    code, out, err = _run(capsys, first, tmp_path / "dst", *model, "--write-unchanged")
    assert code == 0, err
    assert "bit for bit; RNG state carried over unchanged: 2 arrays" in out
    assert "RNG state as written" not in err  # nothing was re-initialised
    assert "verified 6 arrays: 6 equal to SRC's (" in err


def test_already_converted(
    sources: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flax = nnx_compat.detect().flax
    for src, model, extra in (
        (sources["plain"], "Plain", []),
        (sources["plain_opt"], "Plain", ["--tx", "tests.cli_models:ADAM"]),
    ):
        first = tmp_path / "first"
        if extra:  # a {model, optimizer} checkpoint this command wrote
            assert _run(capsys, src, first, "--model", f"tests.cli_models:{model}", *extra)[0] == 0
            src = first
        before = _hashes(src)
        argv = [src, tmp_path / "dst", "--model", f"tests.cli_models:{model}", "--quiet"]
        code, out, err = _run(capsys, *argv)
        assert (code, err) == (0, "")
        assert f"the structure of flax {flax}" in out and "nothing written" in out
        assert "--write-unchanged" in out
        assert not (tmp_path / "dst").exists()
        code, out, err = _run(capsys, *argv, "--write-unchanged")
        assert (code, err) == (0, "")
        assert "bit for bit; no RNG state" in out
        _assert_same_bits(
            _checkpoint.read(_restore(tmp_path / "dst")), _checkpoint.read(_restore(src))
        )
        assert _hashes(src) == before
        shutil.rmtree(tmp_path / "dst")


def test_to_legacy_round_trip(
    sources: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, extra in (("mlp", []), ("mlp_opt", ["--tx", "tests.cli_models:ADAM"])):
        new, legacy, again = (tmp_path / f"{name}_{n}" for n in ("new", "legacy", "again"))
        common = ["--model", "tests.cli_models:MLP", "--rngs", "params=0,dropout=1", "--quiet"]
        assert _run(capsys, sources[name], new, *common, *extra)[0] == 0
        code, out, err = _run(capsys, new, legacy, *common, "--to-legacy")
        assert (code, err) == (0, ""), err
        assert "bit for bit" in out
        # flax 0.10's layout again: the same paths, arrays and RNG state as the source
        _assert_same_bits(
            _checkpoint.read(_restore(legacy)), _checkpoint.read(_restore(sources[name]))
        )
        assert _run(capsys, legacy, again, *common, *extra)[0] == 0
        _assert_same_bits(_checkpoint.read(_restore(again)), _checkpoint.read(_restore(new)))


def test_progress_lines(
    sources: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_checkpoint_cli, "LINE_EVERY_S", 0.0)
    code, _, err = _run(capsys, sources["mlp"], tmp_path / "dst", "--model", "tests.cli_models:MLP")
    assert code == 0
    assert [line for line in err.splitlines() if line.startswith("verifying ")] == [
        f"verifying {k}/6" for k in range(1, 6)
    ]
    assert "\r" not in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_checkpoint_cli, "REDRAW_EVERY_S", 0.0)
    stream = _Terminal()
    progress = _checkpoint_cli.Progress(stream)
    with progress.stage("verifying") as line:
        progress.start_counting()
        for k in range(1, 4):
            progress.count("verifying", k, 3)
        line.append("verified 3/3 arrays")
    text = stream.getvalue()
    assert "\r\x1b[Kverifying 2/3 (66%)" in text and "\r\x1b[Kverifying 3/3 (100%)" in text
    assert text.endswith("\r\x1b[Kverified 3/3 arrays (0.00 s)\n")
    quiet = io.StringIO()
    progress = _checkpoint_cli.Progress(quiet, quiet=True)
    with progress.stage("x"):
        progress.count("verifying", 1, 1)
    assert quiet.getvalue() == ""


def test_parse_rngs() -> None:
    parse = _checkpoint_cli.parse_rngs
    assert parse("0") == (0, {})
    assert parse("params=0, dropout=1") == (None, {"params": 0, "dropout": 1})
    assert parse("3,dropout=-1") == (3, {"dropout": -1})
    with pytest.raises(ValueError):
        parse("")


def test_same_bits() -> None:
    same = same_bits
    a = jnp.array([0.0, 1.0], jnp.float32)
    assert same(a, np.array([0.0, 1.0], np.float32))
    assert not same(a, jnp.array([-0.0, 1.0], jnp.float32))  # equal, but not bit for bit
    assert not same(a, a.astype(jnp.bfloat16)) and not same(a, a[None])
    nan = jnp.array(jnp.nan)
    assert same(nan, nan)
    key = jax.random.key(0)
    assert same(key, jax.random.key(0)) and not same(key, jax.random.key(1))
    assert not same(key, jax.random.key_data(key))
