from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnx_compat import _versions
from nnx_compat._versions import Version, generation, parse_version


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("0.12.0rc1", "0.12.0"),
        ("0.12.0.dev5", "0.12.0rc1"),
        ("0.12.0", "0.12.0.post1"),
        ("0.10.7", "0.11.0a1"),
        ("0.12.8", "1!0.10.0"),  # the epoch is kept, and orders first
        ("0.12.8", "0.12.10"),
    ],
)
def test_versions_order_as_pep_440(older: str, newer: str) -> None:
    assert parse_version(older) < parse_version(newer)


def test_parse_version_keeps_every_part() -> None:
    v = parse_version("1!0.13.0rc2.dev3+g1a2b3c")
    assert (v.epoch, v.release, v.pre, v.dev, v.local) == (1, (0, 13, 0), ("rc", 2), 3, "g1a2b3c")
    assert parse_version("0.11") == parse_version("0.11.0")
    assert isinstance(v, Version)


@given(
    st.tuples(*(st.integers(0, 999),) * 3),
    st.sampled_from(["", "a1", "b3", "rc2"]),
    st.sampled_from(["", ".post4"]),
    st.sampled_from(["", ".dev7"]),
    st.sampled_from(["", "+abc.12"]),
)
def test_parse_version_components(
    release: tuple[int, int, int], pre: str, post: str, dev: str, local: str
) -> None:
    v = parse_version(".".join(map(str, release)) + pre + post + dev + local)
    assert v.release == release
    assert (v.pre is not None) == bool(pre)
    assert v.post == (4 if post else None)
    assert v.dev == (7 if dev else None)
    assert v.local == (local[1:] or None)


@pytest.mark.parametrize("bad", ["", "abc", "0.x.1", "12..3"])
def test_parse_version_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="Invalid version"):
        parse_version(bad)


def test_installed_at_least(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_installed(monkeypatch, flax="0.12.0rc1")
    assert _versions.installed_at_least("0.12.0")  # a pre-release has the release's API
    assert _versions.installed_at_least("0.11.2")
    assert not _versions.installed_at_least("0.12.1")
    _fake_installed(monkeypatch, flax=None)
    assert not _versions.installed_at_least("0.10.0")


@pytest.mark.parametrize(
    ("text", "api"),
    [
        ("0.10.0", "0.10"),
        ("0.10.7", "0.10"),
        ("0.11.0rc1", "0.11"),
        ("0.11.2.post1", "0.11"),
        ("0.12.0.dev5", "0.12"),
        ("0.12.8+local", "0.12"),
        ("0.13.0", "0.12"),
        ("1.2.0", "0.12"),
    ],
)
def test_generation(text: str, api: str) -> None:
    assert generation(text) == api


@pytest.mark.parametrize("old", ["0.9.0", "0.8.5", "0.10.0rc1".replace("0.10", "0.9")])
def test_generation_too_old(old: str) -> None:
    with pytest.raises(ImportError, match=r"pip install 'flax>=0.10'"):
        generation(old)


def test_jax_range_for() -> None:
    assert _versions.jax_range_for("0.10.7") == "jax>=0.6.0,<0.8"
    assert _versions.jax_range_for("0.10.0rc1") == "jax>=0.4.27,<0.8.3"
    assert _versions.jax_range_for("0.12.8") == "jax>=0.10.0"
    assert _versions.jax_range_for("0.12.8.post1") == "jax>=0.10.0"
    assert _versions.jax_range_for("0.12.4") == "jax>=0.8.1,<0.10"
    assert _versions.jax_range_for("0.12.6") == "jax>=0.8.1"
    assert _versions.jax_range_for("0.13.0") is None


SWEEP = Path(__file__).resolve().parents[1] / "tools" / "sweep" / "results.json"


def test_jax_ranges_agree_with_the_release_sweep() -> None:
    """Each release the sweep ran: the jax releases it found working are inside the table's
    requirement, and the one it found failing (the reason names it) is outside."""
    from packaging.requirements import Requirement

    releases = json.loads(SWEEP.read_text())["releases"]
    assert len(releases) >= 20
    for release, record in releases.items():
        spec = _versions.jax_range_for(release)
        assert spec is not None, release
        allowed = Requirement(spec).specifier
        for jax in (record["oldest"], record["newest"]):
            assert allowed.contains(jax), (release, jax, spec)
        failing = re.match(r"jax (\S+):", record.get("reason", ""))
        if failing:
            assert not allowed.contains(failing[1]), (release, failing[1], spec)


def test_each_probe_changes_at_its_release() -> None:
    """The releases patterns take from their probes are checked against the installed flax."""
    installed = _versions.installed_version("flax")
    assert installed is not None
    for name, (release, answer) in _versions.CHANGES.items():
        expected = answer if _versions.installed_at_least(release) else not answer
        assert _versions.feature(name) is expected, (name, release, installed)


def _fake_installed(monkeypatch: pytest.MonkeyPatch, **versions: str | None) -> None:
    real = _versions.installed_version

    def fake(dist: str) -> str | None:
        key = dist.replace("-", "_")
        return versions[key] if key in versions else real(dist)

    monkeypatch.setattr(_versions, "installed_version", fake)


def test_import_nnx_without_flax(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_installed(monkeypatch, flax=None)
    with pytest.raises(ImportError, match=r"needs flax, which is not installed.*pip install"):
        _versions.import_nnx()


def test_import_nnx_old_flax(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_installed(monkeypatch, flax="0.9.0")
    with pytest.raises(ImportError, match=r"flax 0.9.0 is installed.*pip install 'flax>=0.10'"):
        _versions.import_nnx()


def test_import_nnx_newer_flax_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_installed(monkeypatch, flax="0.13.1")
    monkeypatch.setattr(_versions, "_warned_newer", False)
    with pytest.warns(_versions.UnknownFlaxVersionWarning, match="0.13.1 is newer") as caught:
        _versions.import_nnx()
        _versions.import_nnx()
    assert len(caught) == 1
    assert caught[0].filename == __file__


def test_import_nnx_incompatible_jax_message(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_installed(monkeypatch, flax="0.10.7", jax="0.10.2")
    real_import = importlib.import_module

    def failing(name: str, package: str | None = None) -> object:
        if name == "flax.nnx":
            raise ImportError("cannot import name 'mutable_array' from 'jax._src.core'")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", failing)
    with pytest.raises(_versions.IncompatibleJaxError) as info:
        _versions.import_nnx()
    message = str(info.value)
    assert "flax 0.10.7 cannot be imported with jax 0.10.2" in message
    assert "mutable_array" in message
    assert "pip install 'jax>=0.6.0,<0.8'" in message
    assert isinstance(info.value, ImportError)


@pytest.mark.broken_jax
def test_real_incompatible_jax() -> None:
    """Runs only in the tox env that installs flax 0.10.7 with jax 0.10.2 on purpose."""
    code = "from nnx_compat import nnx"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("nnx_compat._versions.IncompatibleJaxError: flax 0.10.7 cannot be")
    assert "cannot import name 'mutable_array'" in last
    assert "pip install 'jax>=0.6.0,<0.8'" in last


def test_detect_versions() -> None:
    env = _versions.detect()
    assert env.flax == importlib.metadata.version("flax")
    assert env.jax == importlib.metadata.version("jax")
    assert env.jaxlib == importlib.metadata.version("jaxlib")
    assert env.optax == importlib.metadata.version("optax")
    assert env.api == f"{parse_version(env.flax).major}.{parse_version(env.flax).minor}"
    expected_flax = os.environ.get("NNX_COMPAT_EXPECT_FLAX")
    if expected_flax:  # set by each tox env
        assert env.flax == expected_flax
        assert env.api == generation(expected_flax)
    with pytest.raises(dataclasses_frozen_error()):
        env.api = "0.10"  # type: ignore[misc]
    assert env.as_dict()["features"] == dict(env.features)


def dataclasses_frozen_error() -> type[Exception]:
    import dataclasses

    return dataclasses.FrozenInstanceError


# What each generation's probes must find, per FLAX_CHANGES and the pinned environments.
_EXPECTED_FEATURES = {
    "0.10": dict(
        HAS_MODEL_AND_OPTIMIZER=False,
        OPTIMIZER_REQUIRES_WRT=False,
        OPTIMIZER_UPDATE_TAKES_MODEL=False,
        OPTIMIZER_HOLDS_MODEL=True,
        HAS_PYTREE=False,
        MODULES_ARE_PYTREES=False,
        OBJECT_IS_MODULE_BASE=True,
        HAS_LIST=False,
        HAS_DICT=True,
        HAS_DATA=False,
        DATA_FIELD=False,
        STATIC_TAKES_VALUE=False,
        SOW_CAPTURES=False,
        BRIDGE_SOWN_TUPLE_IS_ONE_VARIABLE=False,
        STRICT_PYTREE_ATTRIBUTES=False,
        VARIABLE_GET_VALUE=False,
        VARIABLE_VALUE_WARNS=False,
        VARIABLE_INPLACE_RAISES=False,
        LAYERS_FORK_RNGS=False,
        HAS_FORK_RNGS=False,
        RNGS_SPLIT=False,
        RESEED_POLICY=False,
        RESEED_GRAPH_ARG=False,
        EAGER_SHARDING=False,
        TRANSFORMS_GRAPH_ARG=False,
        GRAPH_MODE_CONTEXT=False,
        STATE_SHARES_VARIABLES=False,
        MERGE_COPY_ARG=False,
        VARIABLE_UPDATE_CHECK=False,
        VARIABLE_VALUE_REJECTS_VARIABLE=True,
        JIT_ABSTRACTED_AXES=True,
        PMAP_GLOBAL_ARG_SHAPES=True,
        VARIABLE_UNHASHABLE=False,
        HAS_SHARD_MAP=True,
        RNGSTREAM_FORK=True,
        SHARD_MAP_CHECK_VMA=False,
        RNGSTREAM_KEY_FIRST=False,
        OPTIMIZER_REFUSES_MODEL_ATTRIBUTE=False,
        OPTIMIZER_GRAPH_ARG=False,
        VARIABLE_SETITEM_FUNCTIONAL=True,
        RNGSTREAM_TAKES_COUNT=False,
        ARRAY_ATTRIBUTES=True,
        MODULE_PYTREE_ARG=True,
        MHA_IN_KV_FEATURES=True,
        OPTIMIZER_UPDATE_KWARGS=True,
        LATE_CONTAINERS_STATIC=False,
        NAMED_SHARDING_MESH=False,
        MERGE_SHARES_VARIABLES=False,
        SHARDING_NAMES_KEY=False,
        LAYERS_KEYWORD_ONLY=False,
        MHA_NUM_KV_HEADS=False,
        OUT_SHARDING_KEY=False,
        HAS_VARIABLE_STATE=True,
        HAS_WITH_SHARDING_CONSTRAINT=True,
    ),
    "0.11": dict(
        HAS_MODEL_AND_OPTIMIZER=True,
        OPTIMIZER_REQUIRES_WRT=True,
        OPTIMIZER_UPDATE_TAKES_MODEL=True,
        OPTIMIZER_HOLDS_MODEL=False,
        HAS_PYTREE=True,
        MODULES_ARE_PYTREES=True,
        OBJECT_IS_MODULE_BASE=True,
        HAS_LIST=False,
        HAS_DICT=False,
        HAS_DATA=True,
        DATA_FIELD=False,
        STATIC_TAKES_VALUE=False,
        SOW_CAPTURES=False,
        BRIDGE_SOWN_TUPLE_IS_ONE_VARIABLE=False,
        STRICT_PYTREE_ATTRIBUTES=False,
        VARIABLE_GET_VALUE=False,
        VARIABLE_VALUE_WARNS=False,
        VARIABLE_INPLACE_RAISES=False,
        LAYERS_FORK_RNGS=True,
        HAS_FORK_RNGS=True,
        RNGS_SPLIT=False,
        RESEED_POLICY=True,
        RESEED_GRAPH_ARG=False,
        EAGER_SHARDING=False,
        TRANSFORMS_GRAPH_ARG=False,
        GRAPH_MODE_CONTEXT=False,
        STATE_SHARES_VARIABLES=True,
        MERGE_COPY_ARG=True,
        VARIABLE_UPDATE_CHECK=False,
        VARIABLE_VALUE_REJECTS_VARIABLE=True,
        JIT_ABSTRACTED_AXES=True,
        PMAP_GLOBAL_ARG_SHAPES=True,
        VARIABLE_UNHASHABLE=False,
        HAS_SHARD_MAP=True,
        RNGSTREAM_FORK=True,
        SHARD_MAP_CHECK_VMA=False,
        RNGSTREAM_KEY_FIRST=True,
        OPTIMIZER_REFUSES_MODEL_ATTRIBUTE=True,
        OPTIMIZER_GRAPH_ARG=False,
        VARIABLE_SETITEM_FUNCTIONAL=True,
        RNGSTREAM_TAKES_COUNT=False,
        ARRAY_ATTRIBUTES=True,
        MODULE_PYTREE_ARG=True,
        MHA_IN_KV_FEATURES=True,
        OPTIMIZER_UPDATE_KWARGS=True,
        LATE_CONTAINERS_STATIC=False,
        NAMED_SHARDING_MESH=False,
        MERGE_SHARES_VARIABLES=True,
        SHARDING_NAMES_KEY=True,
        LAYERS_KEYWORD_ONLY=True,
        MHA_NUM_KV_HEADS=False,
        OUT_SHARDING_KEY=False,
        HAS_VARIABLE_STATE=False,
        HAS_WITH_SHARDING_CONSTRAINT=False,
    ),
    "0.12": dict(
        HAS_MODEL_AND_OPTIMIZER=True,
        OPTIMIZER_REQUIRES_WRT=True,
        OPTIMIZER_UPDATE_TAKES_MODEL=True,
        OPTIMIZER_HOLDS_MODEL=False,
        HAS_PYTREE=True,
        MODULES_ARE_PYTREES=True,
        OBJECT_IS_MODULE_BASE=False,
        HAS_LIST=True,
        HAS_DICT=True,
        HAS_DATA=True,
        DATA_FIELD=True,
        STATIC_TAKES_VALUE=True,
        SOW_CAPTURES=True,
        BRIDGE_SOWN_TUPLE_IS_ONE_VARIABLE=True,
        STRICT_PYTREE_ATTRIBUTES=True,
        VARIABLE_GET_VALUE=True,
        VARIABLE_VALUE_WARNS=True,
        VARIABLE_INPLACE_RAISES=True,
        LAYERS_FORK_RNGS=True,
        HAS_FORK_RNGS=True,
        RNGS_SPLIT=True,
        RESEED_POLICY=True,
        RESEED_GRAPH_ARG=True,
        EAGER_SHARDING=True,
        TRANSFORMS_GRAPH_ARG=True,
        GRAPH_MODE_CONTEXT=True,
        STATE_SHARES_VARIABLES=True,
        MERGE_COPY_ARG=True,
        VARIABLE_UPDATE_CHECK=True,
        VARIABLE_VALUE_REJECTS_VARIABLE=False,
        JIT_ABSTRACTED_AXES=False,
        PMAP_GLOBAL_ARG_SHAPES=False,
        VARIABLE_UNHASHABLE=True,
        HAS_SHARD_MAP=True,
        RNGSTREAM_FORK=True,
        SHARD_MAP_CHECK_VMA=True,
        RNGSTREAM_KEY_FIRST=True,
        OPTIMIZER_REFUSES_MODEL_ATTRIBUTE=True,
        OPTIMIZER_GRAPH_ARG=True,
        VARIABLE_SETITEM_FUNCTIONAL=True,
        RNGSTREAM_TAKES_COUNT=False,
        ARRAY_ATTRIBUTES=True,
        MODULE_PYTREE_ARG=True,
        MHA_IN_KV_FEATURES=True,
        OPTIMIZER_UPDATE_KWARGS=True,
        LATE_CONTAINERS_STATIC=True,
        NAMED_SHARDING_MESH=True,
        MERGE_SHARES_VARIABLES=True,
        SHARDING_NAMES_KEY=True,
        LAYERS_KEYWORD_ONLY=True,
        MHA_NUM_KV_HEADS=True,
        OUT_SHARDING_KEY=True,
        HAS_VARIABLE_STATE=False,
        HAS_WITH_SHARDING_CONSTRAINT=False,
    ),
}
_PINNED = {"0.10.7", "0.11.2", "0.12.8"}


def test_feature_probes_match_the_pinned_release() -> None:
    env = _versions.detect()
    if env.flax not in _PINNED:
        pytest.skip(f"expectations are recorded for the pinned releases only, not {env.flax}")
    expected = _EXPECTED_FEATURES[env.api]
    assert set(expected) == set(_versions.FEATURES), "record every probe's value here"
    observed = {name: env.features[name] for name in expected}
    assert observed == expected


def _counting(probe: _versions.Probe, calls: list[object]) -> _versions.Probe:
    """``probe``, recording each module it is called with in ``calls``."""

    def counting(module: object) -> bool:
        calls.append(module)
        return probe(module)

    return counting


def test_every_feature_is_documented_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each probe is named after its function, says which flax changed it, and runs once."""
    nnx = _versions.import_nnx()
    _versions.feature.cache_clear()
    try:
        for name, probe in list(_versions.FEATURES.items()):
            assert name == probe.__name__.upper()
            assert probe.__doc__ and "flax" in probe.__doc__
            calls: list[object] = []
            monkeypatch.setitem(_versions.FEATURES, name, _counting(probe, calls))
            first = _versions.feature(name)
            second = _versions.feature(name)
            assert len(calls) == 1, name
            assert calls[0] is nnx
            assert first == second == probe(nnx), name
        with pytest.raises(KeyError):
            _versions.feature("NO_SUCH_FEATURE")
    finally:
        monkeypatch.undo()
        _versions.feature.cache_clear()


def test_probes_emit_no_warnings() -> None:
    from nnx_compat._versions import FEATURES, import_nnx

    nnx = import_nnx()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, probe in FEATURES.items():
            assert isinstance(probe(nnx), bool), name
