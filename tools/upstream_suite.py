"""No harm, checked: flax's own NNX test suite, run through nnx_compat.

For the installed flax release, this downloads flax's sdist, extracts its ``tests/nnx`` and runs
it three ways, always with the same interpreter, environment and pytest configuration (flax's
own ``[tool.pytest.ini_options]``, warnings as errors included):

* ``native``: as flax ships it;
* ``shim``: with ``flax.nnx`` imports swapped for ``nnx_compat.nnx`` and nothing else changed
  (``from flax import nnx``, ``import flax.nnx as nnx``, ``from flax.nnx import Name``; imports
  of flax's submodules, ``from flax.nnx.nn import initializers``, stay as they are);
* ``install``: the tests unchanged, ``nnx_compat.install()`` active from a ``conftest.py``.

The natively passing tests of each release are kept in ``tools/upstream/flax-<release>.passes``
(regenerate with ``--regenerate``); a run of ``shim`` or ``install`` fails if any of them does not
pass, and prints each with its error. Usage::

    python -m tools.upstream_suite --work DIR [--mode shim --mode install] [--jobs N]
    python -m tools.upstream_suite --work DIR --regenerate

Legacy mode (``--source-release 0.10.7``) takes the tests from that release's sdist instead:
code written for flax 0.10, run on the installed flax through nnx_compat (``shim``, ``install``)
and compared with the tests that pass natively on 0.10.7 (``tools/upstream/flax-0.10.7.passes``,
written by ``--regenerate`` with flax 0.10.7 installed). nnx_compat's deprecation warnings are
expected there, so they are not errors; a natively passing test may fail only where
:data:`LEGACY_FAILURES` lists it with its pattern record and reason::

    python -m tools.upstream_suite --work DIR --source-release 0.10.7 [--mode shim] [--jobs N]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

HERE = Path(__file__).resolve().parent
PASSES_DIR = HERE / "upstream"
MODES = ("native", "shim", "install")

#: The import forms of flax.nnx that the shim mode swaps, with their replacements.
SWAPS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(\s*)import flax\.nnx as (\w+)", re.M), r"\1from nnx_compat import nnx as \2"),
    (re.compile(r"^(\s*)from flax\.nnx import ", re.M), r"\1from nnx_compat.nnx import "),
)
#: ``from flax import a, nnx, b``: nnx is taken out and imported from nnx_compat on the same line.
FROM_FLAX = re.compile(r"^(?P<indent>[ \t]*)from flax import (?P<names>[\w ,]+?)[ \t]*$", re.M)


#: flax's tests that assert the installed flax *rejects* a flax 0.10 form which nnx_compat bridges
#: by design (where flax fails on a 0.10 call, nnx_compat makes it work, with a warning), per flax
#: line: test id -> the id of the pattern that bridges it. Each must fail through nnx_compat for
#: that reason alone (its failure names the pattern, or says the expected error was not raised),
#: and a listed test that passes is reported as stale.
BRIDGED_REJECTIONS: dict[str, dict[str, str]] = {
    "0.12": {
        # a plain list attribute filled with an array after its assignment
        "tests.nnx.graph_utils_test.TestGraphUtils::test_data_after_init": "list-attribute",
        # a Variable / a Module in a plain list attribute of a dataclass Module
        "tests.nnx.module_test.TestModuleDataclass::test_variable_in_static_list": "list-attribute",
        "tests.nnx.module_test.TestModuleDataclass::test_module_in_static_list": "list-attribute",
    },
}


def bridged_rejections(release: str) -> dict[str, str]:
    """The :data:`BRIDGED_REJECTIONS` of a release's line (``0.12.8`` -> ``0.12``)."""
    return BRIDGED_REJECTIONS.get(".".join(release.split(".")[:2]), {})


#: The release whose tests the legacy mode runs by default (``--source-release``).
LEGACY_SOURCE = "0.10.7"

#: Warning filters added to flax's own in legacy mode: the tests are flax 0.10 code, so
#: nnx_compat's deprecation warnings are what they should get (the warnings still happen).
LEGACY_FILTERS: tuple[str, ...] = ("ignore::nnx_compat.NNXCompatDeprecationWarning",)

#: Why a listed legacy test may fail (:class:`Listed`): ``non-goal`` (its record's
#: ``non_goal``), ``flax-internals`` (a test of the graph engine's details or of private
#: ``nnx.graph`` functions: the record of that name), ``native`` (the installed flax succeeds
#: with another meaning for the same call, and that meaning stands: a ``same_call`` record) or
#: ``fails-natively`` (the test fails on the installed flax without nnx_compat as well, with
#: flax's own deprecation warnings not errors: a change of flax or jax that no flax 0.10 call
#: of the test reaches; no record, and checked by running it natively).
Category = Literal["non-goal", "flax-internals", "native", "fails-natively"]
CATEGORIES: tuple[Category, ...] = ("non-goal", "flax-internals", "native", "fails-natively")

#: The warning filters of the native rerun of the ``fails-natively`` tests: flax's deprecations
#: of the 0.10 forms the test uses (which nnx_compat bridges) would stop it before the point
#: where it fails natively.
NATIVE_RERUN_FILTERS: tuple[str, ...] = ("ignore::DeprecationWarning",)


@dataclasses.dataclass(frozen=True)
class Listed:
    """A test of an older release that may fail through nnx_compat on a later flax line.

    Attributes:
        pattern: The id of the record of ``nnx_compat._patterns`` that explains the failure.
        category: Why it fails (:data:`CATEGORIES`); it must agree with the record.
        reason: Text that its failure message holds; empty: the message must name the
            pattern (``[nnx-compat: <id>]``).
    """

    pattern: str
    category: Category
    reason: str = ""

    def explains(self, message: str) -> bool:
        """Whether a failure message is this failure: it names the pattern or the reason."""
        return f"nnx-compat: {self.pattern}" in message or bool(
            self.reason and self.reason in message
        )


_G = "tests.nnx.graph_utils_test.TestGraphUtils::"
_T = "tests.nnx.transforms_test."
_RETURN_VARIABLES = Listed(
    "flax-internals", "flax-internals", "unexpected keyword argument 'return_variables'"
)
#: a Variable's sharding read as its partition names: since flax 0.11 the array's sharding
_SHARDING = Listed("variable-sharding-attribute", "native", "Sharding(")
#: nnx.state / nnx.split as a snapshot: since flax 0.11 the state holds the model's Variables
_SNAPSHOT = Listed("state-snapshot", "native", "is not Param(")
_WRT_SNAPSHOT = Listed("state-snapshot", "native", "Unexpected match at path")


def _draws(reason: str) -> Listed:
    """A layer built with the test's Rngs draws from its own forked stream (flax 0.11)."""
    return Listed("layer-rng-draws", "native", reason)


#: a test that matches the text of flax 0.10's error for a missing stream
_MISSING_STREAM = Listed("rngs-error-text", "native", 'does not match "No RngStream named')
_COUNT = _draws("= RngCount(")  # the caller's count, which the layer's calls no longer advance
_COMMON: dict[str, Listed] = {
    "tests.nnx.rngs_test.TestRngs::test_fallback_error_no_default": _MISSING_STREAM,
    "tests.nnx.module_test.TestModule::test_create_abstract_stateful": _draws(
        "'RngStream' object has no attribute 'default'"
    ),
    "tests.nnx.nn.attention_test.TestMultiHeadAttention::test_keep_rngs0": _draws(
        "assert RngStream("
    ),
    "tests.nnx.nn.recurrent_test.TestRNN::test_recurrent_dropout": _draws(
        "'NoneType' object has no attribute 'recurrent_dropout'"
    ),
    "tests.nnx.nn.stochastic_test.TestStochastic::test_dropout_internal_rngs": _draws(
        "'RngStream' object has no attribute 'dropout'"
    ),
    "tests.nnx.nn.stochastic_test.TestStochastic::test_dropout_rng_override": _draws(
        "Not equal to tolerance"
    ),
    "tests.nnx.summary_test.SummaryTest::test_tabulate": _draws("'2 (12 B)' not found"),
    _T + "TestPmap::test_basic_demo_single": _COUNT,
    _T + "TestPmap::test_basic_single": _COUNT,
    _T + "TestPmap::test_replicate_single": _COUNT,
    _T + "TestVmap::test_replicate": _COUNT,
    _T + "TestVmap::test_split_rngs_context_manager": _COUNT,
    _T + "TestVmap::test_split_rngs_decorator": _COUNT,
    _T + "TestVmap::test_split_rngs_decorator_simple": _draws(
        "'RngStream' object has no attribute 'params'"
    ),
    _G + "test_clone_with_same_variables": _RETURN_VARIABLES,
    _G + "test_unflatten_return_variables": _RETURN_VARIABLES,
    # the model and the state it was split into share their Variables (the test reads .type,
    # which flax 0.12 has without a warning and nnx_compat bridges on 0.11)
    _G + "test_state_variables_not_shared_with_graph": _SNAPSHOT,
    _G + "test_shared_state_variables_not_shared_with_graph": _SNAPSHOT,
    "tests.nnx.optimizer_test.TestOptimizer::test_sharding_propagation": _SHARDING,
    # the parameters before the updates, taken with nnx.state, move with the model
    **{
        f"tests.nnx.optimizer_test.TestOptimizer::test_wrt_update{n}": _WRT_SNAPSHOT
        for n in range(3)
    },
    **{
        f"tests.nnx.optimizer_test.TestOptimizer::test_wrt_update_linesearch{n}": _WRT_SNAPSHOT
        for n in range(2)
    },
    _T + "TestScan::test_scan_with_sharding": _SHARDING,
    _T + "TestVmap::test_metadata": _SHARDING,
    _T + "TestJIT::test_mutable_array_input_output": Listed("mutable-arrays", "non-goal"),
}
#: flax 0.12's own deprecation of the Variable hooks that 0.10.7 stored as metadata
_HOOKS = Listed("variable-hooks", "native", "Variable hooks are deprecated")
_FINGERPRINT = Listed("flax-internals", "flax-internals", "has no attribute 'fingerprint'")
_OBJECT_STATE = Listed("flax-internals", "flax-internals", "'_object__state' is deprecated")
#: Linen and NNX normalization compared exactly in float16: on flax 0.12.8 with jax 0.10.2 they
#: round differently in the last bits, with or without nnx_compat
_F16 = Listed("", "fails-natively", "Arrays are not equal")
_MHA = "tests.nnx.nn.attention_test.TestMultiHeadAttention::"
_NORMALIZATION = "tests.nnx.nn.normalization_test.TestLinenConsistency::test_nnx_linen_"
_FLOAT16 = {
    "batchnorm": (8, 10, 12, 14),
    "groupnorm": (9, 11, 13, 15),
    "layernorm": range(8, 16),
    "rmsnorm": range(8, 16),
}


def _deprecated(message: str) -> Listed:
    """flax's (or jax's) own warning for a 0.10 form that still runs, an error in flax's tests."""
    return Listed("flax-deprecations", "native", message)


#: The tests of :data:`LEGACY_SOURCE` that pass natively there but may fail through nnx_compat,
#: per installed flax line: test id -> why. Each must fail for that reason alone; a listed test
#: that passes is reported as stale.
LEGACY_FAILURES: dict[str, dict[str, Listed]] = {
    "0.11": {
        **_COMMON,
        "tests.nnx.bridge.wrappers_test.TestCompatibility::test_linen_to_nnx_metadata": _SHARDING,
        "tests.nnx.bridge.wrappers_test.TestCompatibility::test_nnx_linen_nnx": _SHARDING,
        # merge(*split(m)) reuses the Variables of the state it merges
        _G + "test_pytree_node": Listed("merge-shares-variables", "native", "is not Param("),
        "tests.nnx.spmd_test.TestSPMD::test_add_remove_axis_in_transform": _SHARDING,
    },
    "0.12": {
        **_COMMON,
        # ToNNX's RNG state is to_nnx__rngs on flax 0.12, which deprecates reading .rngs
        "tests.nnx.bridge.wrappers_test.TestCompatibility::test_linen_to_nnx_noncall_method": (
            Listed("bridge-to-nnx-rngs", "native", "`ToNNX.rngs` is deprecated")
        ),
        "tests.nnx.rngs_test.TestRngs::test_rng_trace_level_constraints": Listed(
            "rngs-error-text", "native", 'does not match "Cannot mutate RngCount'
        ),
        "tests.nnx.containers_test.TestContainers::test_module_box": _HOOKS,
        "tests.nnx.containers_test.TestContainers::test_module_unbox": _HOOKS,
        "tests.nnx.containers_test.TestContainers::test_on_set_value": _HOOKS,
        "tests.nnx.containers_test.TestContainers::test_unbox": _HOOKS,
        "tests.nnx.spmd_test.TestSPMD::test_add_remove_axis_in_transform": _HOOKS,
        _G + "test_fingerprint_basic": _FINGERPRINT,
        _G + "test_fingerprint_module_id_insensitive": _FINGERPRINT,
        _G + "test_fingerprint_variable_id_sensitive": _FINGERPRINT,
        _G + "test_pytree_flatten": Listed(
            "flax-internals", "flax-internals", "has no attribute '_flatten_pytree'"
        ),
        # the private object state of the graph engine, renamed _pytree__state
        _G + "test_object_state_propagation": _OBJECT_STATE,
        "tests.nnx.module_test.TestModule::test_has_module_state": _OBJECT_STATE,
        # the graph engine's update context: the static attribute b is now a leaf of the state
        _G + "test_to_tree_update_context": Listed(
            "flax-internals", "flax-internals", "has length of 2, expected 1"
        ),
        **{f"{_NORMALIZATION}{k}_equivalence{n}": _F16 for k, ns in _FLOAT16.items() for n in ns},
        # jax 0.10 removed jax.experimental.enable_x64 (jax.enable_x64 since jax 0.8)
        _MHA + "test_autoregressive_decode_with_x64": Listed(
            "", "fails-natively", "has no attribute 'enable_x64'"
        ),
        "tests.nnx.module_test.TestModule::test_set_attribute_error": Listed(
            "error-text", "native", 'does not match "Could not find at least one instance'
        ),
        "tests.nnx.bridge.wrappers_test.TestCompatibility::test_linen_to_nnx_metadata": (
            _deprecated("`with mesh:` context manager has been deprecated")
        ),
        "tests.nnx.bridge.wrappers_test.TestCompatibility::test_nnx_linen_nnx": _SHARDING,
        "tests.nnx.bridge.wrappers_test.TestCompatibility::test_nnx_to_linen_mutated_static_data": (
            _deprecated("Found unknown module paths in incoming state")
        ),
        _G + "test_pytree_node": _deprecated("'.raw_value' access is now deprecated"),
        "tests.nnx.module_test.TestModule::test_perturb_basic": _deprecated(
            "Using 'Module.perturb()' outside of 'nnx.capture()' is deprecated"
        ),
        "tests.nnx.module_test.TestModule::test_sow_basic": _deprecated(
            "Using 'Module.sow()' outside of 'nnx.capture()' is deprecated"
        ),
        _MHA + "test_multihead_sow_attention_weights": _deprecated(
            "Using 'Module.sow()' outside of 'nnx.capture()' is deprecated"
        ),
        "tests.nnx.module_test.TestModuleDef::test_children_modules_iterator": _deprecated(
            "The 'm.iter_children()' method is deprecated"
        ),
        "tests.nnx.module_test.TestModuleDef::test_modules_iterator": _deprecated(
            "The 'm.iter_modules()' method is deprecated"
        ),
        "tests.nnx.nn.recurrent_test.TestLSTMCell::test_lstm_initialize_carry": _deprecated(
            "carry_init is provided in __init__"
        ),
    },
}


def legacy_failures(release: str) -> dict[str, Listed]:
    """The :data:`LEGACY_FAILURES` of an installed release's line (``0.12.8`` -> ``0.12``)."""
    return LEGACY_FAILURES.get(".".join(release.split(".")[:2]), {})


def check_listed(listed: dict[str, Listed]) -> list[str]:
    """What is wrong with a list of :data:`LEGACY_FAILURES`: unknown records, or a category
    the record does not have. Imports nnx_compat's table (not flax)."""
    from nnx_compat import _patterns

    problems = []
    for test, entry in sorted(listed.items()):
        if entry.category == "fails-natively":
            if entry.pattern:
                problems.append(f"{test}: a fails-natively entry names no pattern record")
            continue
        try:
            record = _patterns.get(entry.pattern)
        except KeyError:
            problems.append(f"{test}: no pattern record {entry.pattern!r}")
            continue
        if entry.category == "flax-internals":
            fits = record.id == "flax-internals"
        elif entry.category == "non-goal":
            fits = bool(record.non_goal) and record.id != "flax-internals"
        else:
            fits = record.same_call
        if not fits:
            problems.append(
                f"{test}: [{entry.pattern}] is {record.status}, not a {entry.category} record"
            )
    return problems


INSTALL_CONFTEST = '''"""nnx_compat.install() is in effect for every test (flax's own tests)."""

import nnx_compat

nnx_compat.install()
'''


def flax_version() -> str:
    return importlib.metadata.version("flax")


def jax_version() -> str:
    return importlib.metadata.version("jax")


def sdist(release: str, work: Path) -> Path:
    """flax's sdist for ``release`` under ``work`` (downloaded once)."""
    archive = work / f"flax-{release}.tar.gz"
    if not archive.exists():
        download = work / "download"
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:"]
        subprocess.run([*pip, "--no-deps", f"flax=={release}", "-d", str(download)], check=True)
        (found,) = download.glob(f"flax-{release}.tar.gz")
        found.replace(archive)
    return archive


def pytest_ini(pyproject: bytes) -> str:
    """flax's ``[tool.pytest.ini_options]`` as a ``pytest.ini``."""
    options = tomllib.loads(pyproject.decode())["tool"]["pytest"]["ini_options"]
    return ini_text(options)


def ini_text(options: dict[str, Any]) -> str:
    """pytest's ini options as a ``pytest.ini``."""
    lines = ["[pytest]"]
    for key, value in options.items():
        if isinstance(value, list):
            lines.append(f"{key} =")
            lines.extend(f"    {item}" for item in value)
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def legacy_pytest_ini(pyproject: bytes) -> str:
    """:func:`pytest_ini`, with :data:`LEGACY_FILTERS` after flax's own warning filters."""
    options = dict(tomllib.loads(pyproject.decode())["tool"]["pytest"]["ini_options"])
    options["filterwarnings"] = [*options.get("filterwarnings", []), *LEGACY_FILTERS]
    return ini_text(options)


def swap_imports(source: str) -> tuple[str, int]:
    """``source`` with its flax.nnx imports served by nnx_compat, and how many were swapped."""
    swapped = 0

    def from_flax(match: re.Match[str]) -> str:
        nonlocal swapped
        names = [name.strip() for name in match["names"].split(",")]
        ours = [name for name in names if name.split(" as ")[0].strip() == "nnx"]
        if not ours:
            return match[0]
        swapped += 1
        rest = [name for name in names if name not in ours]
        head = f"from flax import {', '.join(rest)}; " if rest else ""
        return f"{match['indent']}{head}from nnx_compat import {', '.join(ours)}"

    source = FROM_FLAX.sub(from_flax, source)
    for pattern, replacement in SWAPS:
        source, count = pattern.subn(replacement, source)
        swapped += count
    return source, swapped


def prepare(
    release: str, mode: str, work: Path, *, root: Path | None = None, legacy: bool = False
) -> Path:
    """A directory holding flax's ``tests/nnx`` for ``mode`` and its pytest configuration.

    ``root`` is the directory (default ``work/<release>/<mode>``); ``legacy``: the tests are
    those of an older release run on the installed flax, where nnx_compat's deprecation
    warnings are expected (:data:`LEGACY_FILTERS`).
    """
    root = root if root is not None else work / release / mode
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    prefix = f"flax-{release}/"
    swapped = 0
    with tarfile.open(sdist(release, work)) as archive:
        for member in archive.getmembers():
            name = member.name
            if name == prefix + "pyproject.toml":
                data = archive.extractfile(member).read()  # type: ignore[union-attr]
                ini = legacy_pytest_ini(data) if legacy and mode != "native" else pytest_ini(data)
                (root / "pytest.ini").write_text(ini)
            elif name.startswith(prefix + "tests/nnx/") and member.isfile():
                target = root / name[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                data = archive.extractfile(member).read()  # type: ignore[union-attr]
                if mode == "shim" and name.endswith(".py"):
                    text, count = swap_imports(data.decode())
                    swapped += count
                    data = text.encode()
                target.write_bytes(data)
    if mode == "shim":
        if swapped == 0:
            raise SystemExit(f"no flax.nnx import was swapped in flax {release}'s tests")
        print(f"[{mode}] {swapped} flax.nnx imports now read nnx_compat.nnx")
    if mode == "install":
        (root / "conftest.py").write_text(INSTALL_CONFTEST)
    return root


def outcomes(junit: Path) -> dict[str, str]:
    """Test id -> ``passed``, ``failed``, ``error`` or ``skipped``, from pytest's JUnit XML."""
    results: dict[str, str] = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        if "error" in kinds:
            results[test_id] = "error"
        elif "failure" in kinds:
            results[test_id] = "failed"
        elif "skipped" in kinds:
            results[test_id] = "skipped"
        else:
            results[test_id] = "passed"
    return results


def messages(junit: Path, wanted: Iterable[str]) -> dict[str, str]:
    """The first line of the failure of each test in ``wanted``."""
    return {
        test: (message.splitlines() or [""])[0]
        for test, message in failure_messages(junit, wanted).items()
    }


def run(
    release: str,
    mode: str,
    work: Path,
    jobs: int,
    *,
    root: Path | None = None,
    legacy: bool = False,
) -> tuple[dict[str, str], Path]:
    root = prepare(release, mode, work, root=root, legacy=legacy)
    junit = root / "junit.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/nnx",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
    ]
    if jobs > 1:
        command += ["-n", str(jobs)]
    if legacy:  # a file that an older release's tests cannot import fails alone
        command.append("--continue-on-collection-errors")
    started = time.perf_counter()
    # flax's tests run on their own defaults (one host device), as the list of passes was made
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    completed = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if not junit.exists():
        sys.stdout.write(completed.stdout[-5000:] + completed.stderr[-5000:])
        raise SystemExit(f"[{mode}] pytest wrote no report (exit status {completed.returncode})")
    results = outcomes(junit)
    counts = {
        kind: sum(1 for v in results.values() if v == kind)
        for kind in sorted(set(results.values()))
    }
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    print(f"[{mode}] flax {release}: {summary} in {elapsed:.0f} s")
    return results, junit


def passes_file(release: str) -> Path:
    return PASSES_DIR / f"flax-{release}.passes"


def write_passes(release: str, results: dict[str, str], *, options: str = "--regenerate") -> None:
    passed = sorted(test for test, outcome in results.items() if outcome == "passed")
    header = (
        f"# flax {release}'s tests/nnx that pass natively (jax {jax_version()}); "
        f"written by python -m tools.upstream_suite {options}\n"
    )
    PASSES_DIR.mkdir(exist_ok=True)
    passes_file(release).write_text(header + "\n".join(passed) + "\n")
    print(f"wrote {len(passed)} tests to {passes_file(release)}")


def read_passes(release: str) -> set[str]:
    path = passes_file(release)
    if not path.exists():
        raise SystemExit(
            f"no list of natively passing tests for flax {release} ({path}); "
            "make it with: python -m tools.upstream_suite --work DIR --regenerate"
        )
    return read_listing(path)


def read_listing(path: Path) -> set[str]:
    """The lines of a checked-in list (a list of passes), less blank lines and ``#`` comments."""
    lines = path.read_text().splitlines()
    return {line for line in lines if line and not line.startswith("#")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="downloads and test copies")
    parser.add_argument("--mode", action="append", choices=MODES[1:], help="default: both")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--regenerate", action="store_true", help="run natively and rewrite the list of passes"
    )
    parser.add_argument(
        "--source-release",
        metavar="RELEASE",
        help=f"legacy mode: run this release's tests (e.g. {LEGACY_SOURCE}) on the installed flax",
    )
    args = parser.parse_args(argv)
    release = flax_version()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.source_release:
        return legacy_main(args.source_release, release, args)
    if args.regenerate:
        results, _ = run(release, "native", args.work, args.jobs)
        write_passes(release, results)
        return 0
    expected = read_passes(release)
    status = 0
    for mode in args.mode or MODES[1:]:
        results, junit = run(release, mode, args.work, args.jobs)
        if not compare(mode, expected, results, junit, bridged_rejections(release)):
            status = 1
    return status


def compare(
    mode: str,
    expected: set[str],
    results: dict[str, str],
    junit: Path,
    rejections: dict[str, str],
) -> bool:
    """Prints how the run compares with the natively passing tests; whether it holds.

    ``rejections`` are the release's :data:`BRIDGED_REJECTIONS`.
    """

    def bridged(test: str) -> bool:
        pattern = rejections.get(test)
        reason = reasons.get(test, "")
        return pattern is not None and (
            f"nnx-compat: {pattern}" in reason or "not raised" in reason
        )

    lost = sorted(test for test in expected if results.get(test) != "passed")
    reasons = messages(junit, lost)
    harmed = [test for test in lost if not bridged(test)]
    stale = sorted(t for t in rejections if t in expected and results.get(t) == "passed")
    kept = len(expected) - len(lost)
    print(f"[{mode}] {kept} of {len(expected)} natively passing tests pass")
    for test in lost:
        if test not in harmed:
            print(f"  expected: {test} asserts that flax rejects [{rejections[test]}]")
    if harmed:
        print(f"[{mode}] {len(harmed)} natively passing tests do not pass through nnx_compat:")
        for test in harmed:
            outcome = results.get(test, "not collected")
            print(f"  {test}: {outcome} {reasons.get(test, '')[:600]}")
    for test in stale:
        print(f"  stale: {test} is listed in BRIDGED_REJECTIONS but passes; remove it")
    return not harmed and not stale


def legacy_main(source: str, release: str, args: argparse.Namespace) -> int:
    """Legacy mode: ``source``'s tests on the installed ``release`` (see the module's doc)."""
    if args.regenerate:
        if release != source:
            raise SystemExit(
                f"the list of flax {source}'s natively passing tests is made with flax {source} "
                f"installed, not {release}"
            )
        results, _ = run(source, "native", args.work, args.jobs)
        write_passes(source, results, options=f"--source-release {source} --regenerate")
        return 0
    expected = read_passes(source)
    listed = legacy_failures(release)
    problems = check_listed(listed)
    for problem in problems:
        print(f"  LEGACY_FAILURES: {problem}")
    status = 1 if problems else 0
    for mode in args.mode or MODES[1:]:
        root = args.work / f"{source}-on-{release}" / mode
        results, junit = run(source, mode, args.work, args.jobs, root=root, legacy=True)
        print(f"[{mode}] flax {source}'s tests on flax {release}, per file:")
        for line in per_file(expected, results):
            print(f"  {line}")
        if not compare_legacy(mode, expected, results, junit, listed):
            status = 1
    natively = sorted(t for t, e in listed.items() if e.category == "fails-natively")
    if natively:
        outcomes_there = run_natively(source, release, args.work, natively)
        for problem in check_fails_natively(natively, outcomes_there):
            print(f"  LEGACY_FAILURES: {problem}")
            status = 1
    return status


def node_id(test: str) -> str:
    """pytest's node id of a test id (``tests.nnx.a_test.TestA::test_x`` ->
    ``tests/nnx/a_test.py::TestA::test_x``)."""
    path = test_file(test)
    module = path[: -len(".py")].replace("/", ".")
    return (
        path
        + test.split("::")[0][len(module) :].replace(".", "::")
        + "::"
        + (test.split("::", 1)[1])
    )


def run_natively(source: str, release: str, work: Path, tests: list[str]) -> dict[str, str]:
    """The outcomes of ``tests`` (ids) of ``source``'s tests run on the installed flax without
    nnx_compat, flax's deprecation warnings not errors (:data:`NATIVE_RERUN_FILTERS`)."""
    root = prepare(source, "native", work, root=work / f"{source}-on-{release}" / "native")
    filters = [arg for f in NATIVE_RERUN_FILTERS for arg in ("-W", f)]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    results: dict[str, str] = {}
    # one run per file: pytest stops the whole run where a node id's file cannot be collected
    # (such a file's tests fail natively: they stay absent from the results)
    by_file: dict[str, list[str]] = {}
    for test in tests:
        by_file.setdefault(test_file(test), []).append(test)
    for number, (_, group) in enumerate(sorted(by_file.items())):
        junit = root / f"junit-{number}.xml"
        junit.unlink(missing_ok=True)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *filters]
        command += [f"--junitxml={junit}", *(node_id(t) for t in group)]
        subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        if junit.exists():
            results.update(outcomes(junit))
    print(
        f"[native] flax {source}'s fails-natively tests on flax {release} without nnx_compat: "
        f"{sum(v != 'passed' for v in results.values())} of {len(tests)} fail"
    )
    return results


def check_fails_natively(tests: list[str], results: dict[str, str]) -> list[str]:
    """The ``fails-natively`` entries that pass natively (nnx_compat would break them). A test
    whose file cannot be collected natively fails there too (it is absent from ``results``)."""
    return [
        f"{test} is listed as failing natively, but passes on the installed flax alone"
        for test in tests
        if results.get(test) == "passed"
    ]


def test_file(test: str) -> str:
    """The file of a test id (``tests.nnx.nn.lora_test.TestLora::test_x`` ->
    ``tests/nnx/nn/lora_test.py``)."""
    parts = test.split("::")[0].split(".")
    ends = [i for i, part in enumerate(parts) if part.endswith("_test") or part.startswith("test_")]
    return "/".join(parts[: ends[-1] + 1 if ends else len(parts)]) + ".py"


def per_file(expected: set[str], results: dict[str, str]) -> list[str]:
    """For each file: how many of its natively passing tests pass in ``results``."""
    files: dict[str, list[int]] = {}
    for test in expected:
        counts = files.setdefault(test_file(test), [0, 0])
        counts[0] += 1
        counts[1] += results.get(test) == "passed"
    return [f"{name}: {kept}/{total}" for name, (total, kept) in sorted(files.items())]


def failure_messages(junit: Path, wanted: Iterable[str]) -> dict[str, str]:
    """The whole failure message of each test in ``wanted`` (:func:`messages` keeps the first
    line)."""
    wanted = set(wanted)
    found: dict[str, str] = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        if test_id in wanted:
            for child in case:
                if child.tag in ("failure", "error"):
                    found[test_id] = child.get("message") or ""
    return found


def compare_legacy(
    mode: str,
    expected: set[str],
    results: dict[str, str],
    junit: Path,
    listed: dict[str, Listed],
) -> bool:
    """Prints how a legacy run compares with the natively passing tests; whether it holds.

    ``listed`` are the installed line's :data:`LEGACY_FAILURES`: each may fail, for its reason
    alone; a listed test that passes, or that is not natively passing, is stale.
    """
    lost = sorted(test for test in expected if results.get(test) != "passed")
    reasons = failure_messages(junit, lost)
    explained = [t for t in lost if t in listed and listed[t].explains(reasons.get(t, ""))]
    harmed = [test for test in lost if test not in explained]
    stale = sorted(t for t in listed if t not in expected or results.get(t) == "passed")
    kept = len(expected) - len(lost)
    share = 100 * kept / len(expected) if expected else 100.0
    print(
        f"[{mode}] {kept} of {len(expected)} natively passing tests pass ({share:.1f}%), "
        f"{len(explained)} listed"
    )
    for test in explained:
        entry = listed[test]
        print(f"  listed: {test} [{entry.pattern}] {entry.category}")
    if harmed:
        print(f"[{mode}] {len(harmed)} natively passing tests do not pass through nnx_compat:")
        for test in harmed:
            outcome = results.get(test, "not collected")
            why = (
                f" (listed as [{listed[test].pattern}], another failure)" if test in listed else ""
            )
            first = (reasons.get(test, "").splitlines() or [""])[0]
            print(f"  {test}: {outcome}{why} {first[:300]}")
    for test in stale:
        why = "passes" if test in expected else "does not pass natively"
        print(f"  stale: {test} is listed in LEGACY_FAILURES but {why}; remove it")
    return not harmed and not stale


if __name__ == "__main__":
    sys.exit(main())
