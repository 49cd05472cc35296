"""The shipped checkpoint fixtures: complete, restorable, and what the script writes.

``tests/fixtures/checkpoints/flax-<version>/`` holds the output of
``python -m tests.make_checkpoints`` in one flax environment. Every environment checks that
each fixture restores (orbax, no target) to the tree its ``meta.json`` lists; the environment
with the flax and jax that wrote a fixture reruns the script and checks that it writes the same
tree: the same paths, dtypes and shapes, every integer (RNG key data and counts, the
optimizer's step) identical, and every float within :data:`MAX_ULPS`.

Not bit for bit: XLA compiles for the CPU it runs on (FMA contraction, vector width, the order
of reductions), so the same flax and jax give the shipped floats bit for bit only on the kind
of CPU that wrote them, and the fixtures do not record which CPU that was. So no machine gets
a strict check: one that holds only on an unrecorded CPU would fail elsewhere or be skipped
everywhere. The fixtures are per release, not per generation: another jax release compiles
differently again, so the gate is the exact versions in ``meta.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import numpy as np
import pytest

from nnx_compat import _versions
from tests import checkpoint_models

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"
SHIPPED = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
CHECKPOINTS = [(release, name) for release in SHIPPED for name in checkpoint_models.MODELS]

#: How far a float the script writes may be from the shipped one, in ulps of the scale: the
#: largest magnitude among the shipped floats of its dtype that it is compared with (one
#: checkpoint, one continuation, or one model's training losses). Elementwise,
#: ``|written - shipped| <= MAX_ULPS * ulp(scale)``.
#:
#: Of the scale, not of each value: a sum that cancels to about zero keeps the absolute
#: rounding error of its terms. The gradient of the Linear bias before BatchNorm is zero up to
#: rounding, so that bias is rounding noise of about 1e-9 whose sign differs between CPUs, a
#: billion ulps of its own. And thousands of ulps, not a few: six training steps carry each
#: op's last-ulp difference on, and BatchNorm over a batch of 4 amplifies it. Measured against
#: the flax 0.12.8 fixtures: 49 ulps of the scale (1.2e-5 at 2.57, the scan model's largest
#: kernel value) on an AMD EPYC with AVX-512; 460 with XLA held to AVX, no FMA
#: (``XLA_FLAGS=--xla_cpu_max_isa=AVX``); 355 for the flax 0.10.7 fixtures held to AVX or
#: SSE4.2. 2048 ulps is 2**-12 (2.4e-4) of the scale: a changed seed, RNG key, initializer or
#: model moves the values by orders of magnitude more, and a learning rate 0.1% off moves the
#: seed model's training losses by 4086.
MAX_ULPS: Final = 2048


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many steps of adjacent floats of their dtype lead from ``a`` to ``b`` (``uint64``).

    Elementwise, from the IEEE bits: read as an unsigned integer they are the sign bit and then
    the magnitude, which counts the floats up from zero. Two floats of one sign are the
    difference of their magnitudes apart; a negative and a positive one the sum. ``-0.0`` and
    ``0.0`` are 0 apart: they are equal, and which of them a sum of zeros gives depends on the
    order of the sum, the very thing that differs between CPUs. For finite values.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.dtype.kind != "f":
        raise TypeError(f"two arrays of one float dtype, not {a.dtype} and {b.dtype}")
    unsigned = np.dtype(f"u{a.dtype.itemsize}")
    magnitude = np.uint64(np.iinfo(np.dtype(f"i{a.dtype.itemsize}")).max)  # all but the sign

    def split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bits = np.asarray(x, order="C").view(unsigned).astype(np.uint64)
        return bits > magnitude, bits & magnitude

    (negative_a, magnitude_a), (negative_b, magnitude_b) = split(a), split(b)
    same_sign = np.maximum(magnitude_a, magnitude_b) - np.minimum(magnitude_a, magnitude_b)
    return np.where(negative_a == negative_b, same_sign, magnitude_a + magnitude_b)


def _scales(arrays: dict[str, np.ndarray]) -> dict[np.dtype, float]:
    """The largest finite magnitude of each float dtype among ``arrays``."""
    scales: dict[np.dtype, float] = {}
    for array in arrays.values():
        if array.dtype.kind == "f":
            largest = float(np.abs(array[np.isfinite(array)]).max(initial=0.0))
            scales[array.dtype] = max(scales.get(array.dtype, 0.0), largest)
    return scales


def _compare(shipped: dict[str, np.ndarray], fresh: dict[str, np.ndarray]) -> tuple[list[str], str]:
    """What differs between two flattened trees beyond the bound, and the largest float gap.

    Paths, dtypes and shapes must match; arrays that are not IEEE floats numpy knows (integers,
    RNG key data, bools, bfloat16) must match bit for bit; NaN and inf must sit in the same
    places; the finite floats must be within :data:`MAX_ULPS` ulps of their scale.
    """
    problems: list[str] = []
    if shipped.keys() != fresh.keys():
        problems.append(
            f"paths differ: only shipped {sorted(shipped.keys() - fresh.keys())}, "
            f"only written {sorted(fresh.keys() - shipped.keys())}"
        )
    scales = _scales(shipped)
    worst, largest = -1.0, "none (no finite floats)"
    for path in sorted(shipped.keys() & fresh.keys()):
        a, b = np.asarray(shipped[path]), np.asarray(fresh[path])
        if (a.dtype, a.shape) != (b.dtype, b.shape):
            problems.append(
                f"{path}: shipped {a.dtype}{list(a.shape)}, written {b.dtype}{list(b.shape)}"
            )
        elif a.dtype.kind != "f":
            if a.tobytes() != b.tobytes():
                problems.append(f"{path}: {a.dtype} values differ (compared exactly)")
        elif not np.array_equal(np.isfinite(a), np.isfinite(b)) or not np.array_equal(
            a[~np.isfinite(a)], b[~np.isfinite(b)], equal_nan=True
        ):
            problems.append(f"{path}: NaN or inf differ")
        elif np.isfinite(a).any():
            finite = np.isfinite(a)
            unit = float(np.spacing(a.dtype.type(scales[a.dtype])))  # the ulp of the scale
            ulps = np.zeros(a.shape)
            ulps[finite] = (
                np.abs(a[finite].astype(np.float64) - b[finite].astype(np.float64)) / unit
            )
            index = np.unravel_index(np.argmax(ulps), ulps.shape)
            if ulps[index] > worst:
                worst = float(ulps[index])
                at = f"{path}[{', '.join(map(str, index))}]" if index else path
                largest = (
                    f"{worst:.1f} ulps of the scale {scales[a.dtype]:.4g} at {at}: shipped "
                    f"{a[index]!s}, written {b[index]!s} ({ulp_distance(a[index], b[index])} "
                    "ulps apart as values)"
                )
            if ulps[index] > MAX_ULPS:
                problems.append(f"{path}: {ulps[index]:.1f} ulps of the scale > {MAX_ULPS}")
    if worst == 0.0:
        largest = "none: every float equal"
    return problems, largest


def _assert_same(shipped: dict[str, np.ndarray], fresh: dict[str, np.ndarray], what: str) -> str:
    """Asserts :func:`_compare` finds nothing; returns the largest float difference."""
    problems, largest = _compare(shipped, fresh)
    assert not problems, (
        f"{what}: {'; '.join(problems)}. Largest float difference: {largest} (bound {MAX_ULPS})"
    )
    return f"{what}: largest float difference {largest}"


def test_ulp_distance() -> None:
    f32 = np.float32
    one, tiny = f32(1.0), np.finfo(f32).smallest_subnormal
    assert ulp_distance(one, np.nextafter(one, f32(2.0))) == 1
    assert ulp_distance(one, f32(2.0)) == 2**23
    assert ulp_distance(f32(-2.0), f32(-1.0)) == 2**23
    assert ulp_distance(tiny, -tiny) == 2  # across zero: -tiny, 0, tiny
    assert ulp_distance(f32(-0.0), f32(0.0)) == 0  # equal; the sign of a zero is not portable
    huge = np.finfo(np.float64).max
    assert ulp_distance(huge, -huge) == 2 * int(np.float64(huge).view(np.uint64))  # no overflow
    assert ulp_distance(
        np.array([0.5, -0.5], np.float16), np.array([0.5, 0.5], np.float16)
    ).tolist() == [
        0,
        2 * int(np.float16(0.5).view(np.uint16)),
    ]
    with pytest.raises(TypeError):
        ulp_distance(np.zeros(2, np.uint32), np.zeros(2, np.uint32))


def test_floats_pass_within_the_bound_and_fail_beyond_it() -> None:
    unit = float(np.spacing(np.float32(1.0)))  # the ulp of the scale: 1.0 is the largest value
    shipped = {"w": np.array([1.0, 0.25, -0.0, np.inf, np.nan], np.float32)}
    at_bound = np.array([1.0, 0.25 + MAX_ULPS * unit, 0.0, np.inf, np.nan], np.float32)
    assert f"{MAX_ULPS}.0 ulps of the scale 1 at w[1]" in _assert_same(
        shipped, {"w": at_bound}, "at the bound"
    )
    beyond = np.array([1.0, 0.25 + (MAX_ULPS + 1) * unit, -0.0, np.inf, np.nan], np.float32)
    with pytest.raises(
        AssertionError, match=rf"w: {MAX_ULPS + 1}\.0 ulps of the scale > {MAX_ULPS}"
    ):
        _assert_same(shipped, {"w": beyond}, "beyond")


def _tree() -> dict[str, np.ndarray]:
    return {
        "linear/kernel/value": np.array([[0.5, -1.5], [2.0, 1e-9]], np.float32),
        "dropout/rngs/key/value": np.array([0, 42], np.uint32),  # a key's key data
        "dropout/rngs/count/value": np.array(3, np.uint32),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("value", r"linear/kernel/value: \d+\.\d ulps of the scale > "),
        ("nan", "linear/kernel/value: NaN or inf differ"),
        ("inf", "linear/kernel/value: NaN or inf differ"),
        ("dtype", r"linear/kernel/value: shipped float32\[2, 2\], written float64\[2, 2\]"),
        ("shape", r"linear/kernel/value: shipped float32\[2, 2\], written float32\[4\]"),
        ("key", "dropout/rngs/key/value: uint32 values differ"),
        ("count", "dropout/rngs/count/value: uint32 values differ"),
        ("path", r"paths differ: only shipped \['dropout/rngs/count/value'\]"),
    ],
)
def test_a_real_difference_fails(change: str, message: str) -> None:
    fresh = _tree()
    kernel = fresh["linear/kernel/value"]
    if change == "value":
        kernel[0, 1] = -1.25
    elif change == "nan":
        kernel[1, 1] = np.nan
    elif change == "inf":
        kernel[1, 0] = np.inf
    elif change == "dtype":
        fresh["linear/kernel/value"] = kernel.astype(np.float64)
    elif change == "shape":
        fresh["linear/kernel/value"] = kernel.reshape(4)
    elif change == "key":
        fresh["dropout/rngs/key/value"][1] ^= 1
    elif change == "count":
        fresh["dropout/rngs/count/value"] += 1
    else:
        fresh["dropout/rngs/counter/value"] = fresh.pop("dropout/rngs/count/value")
    with pytest.raises(AssertionError, match=f"tree: {message}.*Largest float difference: "):
        _assert_same(_tree(), fresh, "tree")


def _meta(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "meta.json").read_text())


def _restore(directory: Path) -> dict[str, np.ndarray]:
    import orbax.checkpoint as ocp

    restored = ocp.StandardCheckpointer().restore((directory / "state").absolute())
    return checkpoint_models.flatten(restored)


def test_fixtures_shipped() -> None:
    assert SHIPPED == ["flax-0.10.7", "flax-0.12.8"]
    for release, name in CHECKPOINTS:
        directory = FIXTURES / release / name
        assert (directory / "state" / "commit_success.txt").is_file(), directory
        assert _meta(directory)["versions"]["flax"] == release.removeprefix("flax-")


@pytest.mark.parametrize(("release", "name"), CHECKPOINTS)
def test_fixture_restores(release: str, name: str) -> None:
    directory = FIXTURES / release / name
    restored = _restore(directory)
    expected = {leaf["path"]: (leaf["shape"], leaf["dtype"]) for leaf in _meta(directory)["leaves"]}
    assert sorted(restored) == sorted(expected)
    for path, array in restored.items():
        shape, dtype = expected[path]
        if dtype.startswith("key<"):  # stored as a typed key; flatten gives its key data
            assert list(array.shape[: len(shape)]) == shape and array.dtype == np.uint32, path
        else:
            assert (list(array.shape), str(array.dtype)) == (shape, dtype), path


def _writer_installed(release: str) -> str | None:
    """Why this environment cannot reproduce ``release``'s fixtures, or None if it can."""
    wrote = _meta(FIXTURES / release / checkpoint_models.MODELS[0])["versions"]
    installed = {d: _versions.installed_version(d) for d in ("flax", "jax")}
    differs = [
        f"{d} {installed[d]} (fixtures: {wrote[d]})" for d in installed if wrote[d] != installed[d]
    ]
    return ", ".join(differs) or None


def _losses(meta: dict[str, Any]) -> dict[str, np.ndarray]:
    # float32 losses, written as Python floats: float32 holds them exactly
    return {"training_losses": np.asarray(meta.pop("training_losses"), np.float32)}


@pytest.mark.parametrize("release", SHIPPED)
def test_script_reproduces_fixtures(release: str, tmp_path: Path) -> None:
    reason = _writer_installed(release)
    if reason is not None:
        pytest.skip(f"only the versions that wrote {release} reproduce it: {reason}")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    # The fixtures were written on jax's default devices; 8 forced host devices (tox.ini)
    # give the same arrays but start slower.
    env.pop("XLA_FLAGS", None)
    subprocess.run(
        [sys.executable, "-m", "tests.make_checkpoints", str(tmp_path)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    for name in checkpoint_models.MODELS:
        shipped, fresh = FIXTURES / release / name, tmp_path / name
        print(_assert_same(_restore(shipped), _restore(fresh), f"{name} checkpoint"))
        with np.load(shipped / "continuation.npz") as a, np.load(fresh / "continuation.npz") as b:
            print(_assert_same(dict(a), dict(b), f"{name} continuation"))
        expected, written = _meta(shipped), _meta(fresh)
        expected.pop("versions")
        written.pop("versions")
        print(_assert_same(_losses(expected), _losses(written), f"{name} training losses"))
        assert expected == written, name
