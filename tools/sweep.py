"""The release sweep: nnx_compat on every flax release, outside CI (too slow for every run).

For each flax release on the registry (0.10.0 and newer), the sweep

1. finds the jax releases it works with: the oldest and the newest of :data:`JAX_CANDIDATES`
   with which flax itself, without nnx_compat, imports and runs :data:`SMOKE` (a layer under
   ``nnx.jit`` and ``nnx.grad``: a flax release can import with a jax that no longer accepts
   what its ``nnx.jit`` passes); a bisection from flax's own declared floor, each try a fresh
   ``uv`` environment, with the reason the next one fails;
2. builds an environment with that release, the newest jax found and nnx_compat with its test
   extra, and runs the test suite there (JUnit XML, counted) and ``nnx-compat doctor --json``;
3. records everything in one JSON file (``tools/sweep/results.json``), resumable: a release
   already recorded is skipped unless ``--again``.

``python -m tools.sweep render`` prints the results as the support matrix (the docs page
"Supported versions" includes it at build time); ``python -m tools.sweep ranges`` prints
the jax ranges found, to compare with ``nnx_compat._versions.JAX_RANGES`` (a test does).

Usage: ``python -m tools.sweep run [--releases 0.10.0,0.12.3] [--work DIR] [--no-tests]``.
Needs ``uv``, ``pip`` (run it with an interpreter that has both) and the package registry.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "tools" / "sweep" / "results.json"
PYTHON = "3.11"
FIRST = Version("0.10.0")

#: The jax releases the sweep tries (one per minor line, and the ends of each line that flax
#: releases were built against), oldest first.
JAX_CANDIDATES: tuple[str, ...] = (
    "0.4.27",
    "0.4.30",
    "0.4.33",
    "0.4.35",
    "0.4.38",
    "0.5.0",
    "0.5.3",
    "0.6.0",
    "0.6.2",
    "0.7.0",
    "0.7.2",
    "0.8.0",
    "0.8.1",
    "0.8.3",
    "0.9.0",
    "0.9.2",
    "0.10.0",
    "0.10.2",
)


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def _last_line(text: str) -> str:
    """The error of a traceback (its last ``SomethingError: ...`` line), else the last line."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Warning)\b", line)]
    return (errors or lines or [""])[-1][:300]


def flax_releases() -> list[str]:
    """Every flax release from 0.10.0 on, from the registry, oldest first."""
    out = _run([sys.executable, "-m", "pip", "index", "versions", "flax"])
    match = re.search(r"Available versions: (.*)", out.stdout)
    if match is None:
        raise SystemExit(f"cannot list flax's releases: {out.stderr.strip()}")
    versions = [Version(v.strip()) for v in match[1].split(",")]
    return [str(v) for v in sorted(v for v in versions if v >= FIRST and not v.is_prerelease)]


def declared_jax_floor(release: str, work: Path) -> str | None:
    """The lowest jax that flax ``release`` declares (its wheel's ``Requires-Dist``)."""
    dest = work / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    out = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            "-d",
            str(dest),
            f"flax=={release}",
        ]
    )
    wheels = sorted(dest.glob(f"flax-{release}-*.whl"))
    if not wheels:
        raise SystemExit(f"cannot download flax {release}: {_last_line(out.stderr)}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = wheel.read(name).decode()
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist: jax") and "extra ==" not in line:
            requirement = Requirement(line.split(":", 1)[1].strip())
            if requirement.name == "jax":
                floors = [s.version for s in requirement.specifier if s.operator in (">=", "==")]
                return floors[0] if floors else None
    return None


def _env(path: Path, requirements: Iterable[str]) -> tuple[bool, str]:
    if path.exists():
        shutil.rmtree(path)
    made = _run(["uv", "venv", "-q", "--python", PYTHON, str(path)])
    if made.returncode:
        return False, _last_line(made.stderr)
    python = str(path / "bin" / "python")
    installed = _run(["uv", "pip", "install", "-q", "--python", python, *requirements], cwd=ROOT)
    if installed.returncode:
        return False, "uv: " + _last_line(installed.stderr)
    return True, ""


#: What flax must run, natively, for a jax release to count as working with it: a layer under
#: its ``jit`` and ``grad``, its ``pmap`` (flax 0.10.0-0.12.5 pass ``global_arg_shapes=`` to
#: jax's, which newer jax releases no longer take), and its ``shard_map`` where it has one
#: (flax 0.10.4-0.12.0 pass ``auto=`` to jax's, which jax 0.8.0 no longer takes).
SMOKE = """
import jax
import jax.numpy as jnp
from flax import nnx

model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
forward = nnx.jit(lambda model, x: model(x))
forward(model, jnp.ones((1, 2)))
nnx.grad(lambda model: forward(model, jnp.ones((1, 2))).sum())(model)
nnx.pmap(lambda x: 2 * x)(jnp.ones((1, 3)))
if hasattr(nnx, "shard_map"):
    P = jax.sharding.PartitionSpec
    mesh = jax.sharding.Mesh(jax.devices()[:1], ("data",))
    double = nnx.shard_map(lambda x: 2 * x, mesh=mesh, in_specs=P("data"), out_specs=P("data"))
    double(jnp.ones(4))
"""
#: Names the cached results of one :data:`SMOKE` (a new smoke test tries every pair afresh).
SMOKE_ID = hashlib.sha256(SMOKE.encode()).hexdigest()[:8]


def imports(release: str, jax: str, work: Path, cache: dict[str, Any]) -> tuple[bool, str]:
    """Whether flax ``release`` imports with jax ``jax`` and runs :data:`SMOKE` (cached in
    ``cache``)."""
    key = f"{release}+{jax}+smoke-{SMOKE_ID}"
    if key in cache:
        return cache[key]["ok"], cache[key]["reason"]
    path = work / "probe"
    ok, reason = _env(path, [f"flax=={release}", f"jax=={jax}", f"jaxlib=={jax}"])
    if ok:
        out = _run([str(path / "bin" / "python"), "-c", SMOKE], timeout=300)
        ok, reason = out.returncode == 0, _last_line(out.stderr)
    cache[key] = {"ok": ok, "reason": reason}
    return ok, reason


def jax_range(release: str, work: Path, cache: dict[str, Any]) -> dict[str, Any]:
    """The oldest and newest candidate jax that flax ``release`` imports with, and why the
    ones beyond them fail."""
    floor = declared_jax_floor(release, work)
    candidates = [j for j in JAX_CANDIDATES if floor is None or Version(j) >= Version(floor)]
    # the newest: bisect, assuming a contiguous range of working releases from the floor
    lo, hi = 0, len(candidates) - 1
    if not imports(release, candidates[lo], work, cache)[0]:
        # the floor itself fails: walk up to the first that works
        while lo < hi and not imports(release, candidates[lo], work, cache)[0]:
            lo += 1
    oldest = candidates[lo]
    if not imports(release, oldest, work, cache)[0]:
        return {"declared_floor": floor, "oldest": None, "newest": None, "reason": "none imports"}
    good, bad = lo, len(candidates)
    if imports(release, candidates[-1], work, cache)[0]:
        good = len(candidates) - 1
    else:
        bad = len(candidates) - 1
        while bad - good > 1:
            mid = (good + bad) // 2
            if imports(release, candidates[mid], work, cache)[0]:
                good = mid
            else:
                bad = mid
    newest = candidates[good]
    reason = ""
    if bad < len(candidates):
        reason = f"jax {candidates[bad]}: {imports(release, candidates[bad], work, cache)[1]}"
    return {"declared_floor": floor, "oldest": oldest, "newest": newest, "reason": reason}


def run_suite(release: str, jax: str, work: Path, timeout: int, jobs: str) -> dict[str, Any]:
    """The test suite (``jobs`` pytest-xdist workers) and the doctor in an environment with
    flax ``release`` and ``jax``."""
    path = work / "suite"
    ok, reason = _env(path, [f"flax=={release}", f"jax=={jax}", f"jaxlib=={jax}", f"{ROOT}[test]"])
    if not ok:
        return {"error": reason}
    python = str(path / "bin" / "python")
    junit = work / "junit.xml"
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        PYTHONHASHSEED="0",
        # a flax release with a newer jax than it was built with: the deprecations flax's own
        # code triggers there are flax's (tests/conftest.py)
        NNX_COMPAT_FLAX_OWN_DEPRECATIONS="ignore",
    )
    env.pop("NNX_COMPAT_EXPECT_FLAX", None)
    start = time.monotonic()
    try:
        out = _run(
            [
                python,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={junit}",
                "-n",
                jobs,
                "tests",
            ],
            cwd=ROOT,
            env=env,
            timeout=timeout,
        )
        tail = out.stdout[-4000:]
    except subprocess.TimeoutExpired:
        return {"error": f"the test suite ran past {timeout} s"}
    seconds = round(time.monotonic() - start)
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    failures: list[str] = []
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            if case.find("failure") is not None:
                counts["failed"] += 1
                failures.append(name)
            elif case.find("error") is not None:
                counts["errors"] += 1
                failures.append(name)
            elif case.find("skipped") is not None:
                counts["skipped"] += 1
            else:
                counts["passed"] += 1
    doctor = _run([python, "-m", "nnx_compat", "doctor", "--json"], cwd=ROOT, env=env)
    try:
        report = json.loads(doctor.stdout)
    except json.JSONDecodeError:
        report = {"error": _last_line(doctor.stderr or doctor.stdout)}
    commit = _run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT).stdout.strip()
    return {
        "commit": commit,
        "tests": counts,
        "failures": failures,
        "seconds": seconds,
        "tail": "" if not failures else tail,
        "doctor": report,
    }


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {"releases": {}, "imports": {}}


def _save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def command_run(args: argparse.Namespace) -> int:
    data = _load(args.output)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    releases = args.releases.split(",") if args.releases else flax_releases()
    for release in releases:
        if release in data["releases"] and not args.again:
            print(f"flax {release}: recorded", flush=True)
            continue
        print(f"flax {release}: finding its jax range", flush=True)
        record: dict[str, Any] = jax_range(release, work, data["imports"])
        _save(args.output, data)
        print(f"flax {release}: jax {record['oldest']} - {record['newest']}", flush=True)
        if record["newest"] and not args.no_tests:
            record.update(run_suite(release, record["newest"], work, args.timeout, args.jobs))
            print(f"flax {release}: {record.get('tests') or record.get('error')}", flush=True)
        data["releases"][release] = record
        _save(args.output, data)
    return 0


def _doctor_ok(record: dict[str, Any]) -> str:
    doctor = record.get("doctor") or {}
    checks = doctor.get("checks") or doctor.get("self_checks") or []
    if not checks:
        return "-"
    passed = sum(1 for c in checks if c.get("ok"))
    return f"{passed}/{len(checks)}"


def render(data: dict[str, Any]) -> str:
    """The support matrix: per release, the jax it works with, and the suite and the doctor
    run with the newest of them ("not run" where the sweep has not run the suite yet)."""
    rows = [
        "| flax | works with jax | suite (jax) | passed | failed | skipped | doctor | commit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for release in sorted(data["releases"], key=Version):
        record = data["releases"][release]
        span = f"{record.get('oldest')} - {record.get('newest')}"
        tests = record.get("tests")
        if tests:
            failed = tests.get("failed", 0) + tests.get("errors", 0)
            cells = [record.get("newest"), tests["passed"], failed, tests["skipped"]]
        elif record.get("error"):
            cells = [record.get("newest"), "-", record["error"], "-"]
        else:
            cells = ["not run", "-", "-", "-"]
        doctor = _doctor_ok(record)
        commit = record.get("commit") or "-"
        rows.append(
            f"| {release} | {span} | " + " | ".join(map(str, cells)) + f" | {doctor} | {commit} |"
        )
    return "\n".join(rows)


def command_render(args: argparse.Namespace) -> int:
    print(render(_load(args.output)))
    return 0


def command_ranges(args: argparse.Namespace) -> int:
    releases = _load(args.output)["releases"]
    for release in sorted(releases, key=Version):
        record = releases[release]
        span = f"{record.get('oldest')} - {record.get('newest')}"
        print(f"{release}: jax {span}  {record.get('reason', '')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.sweep", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="sweep the releases")
    run.add_argument("--releases", help="comma-separated (default: every release from 0.10.0)")
    run.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "nnx-compat-sweep"))
    run.add_argument("--no-tests", action="store_true", help="only the jax ranges")
    run.add_argument("--again", action="store_true", help="redo recorded releases")
    run.add_argument("--timeout", type=int, default=1800, help="seconds for one test suite")
    run.add_argument("--jobs", default="auto", help="pytest-xdist workers (default: one per core)")
    run.set_defaults(func=command_run)
    rend = sub.add_parser("render", help="the support matrix, as Markdown")
    rend.set_defaults(func=command_render)
    ranges = sub.add_parser("ranges", help="the jax ranges found")
    ranges.set_defaults(func=command_ranges)
    for p in (run, rend, ranges):
        p.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
