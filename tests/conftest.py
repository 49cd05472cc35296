"""Shared fixtures and the hypothesis profiles (``--hypothesis-profile=thorough`` for more)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


#: Deprecations that flax's own code triggers in jax releases newer than the flax release (an
#: intermediate release with the newest jax it runs with: the release sweep, the flax0100 and
#: flax0123 envs). flax's to fix, not errors there: ``NNX_COMPAT_FLAX_OWN_DEPRECATIONS=ignore``.
FLAX_OWN_DEPRECATIONS = (
    r"ignore::DeprecationWarning:flax(\..*)?",
    r"ignore::FutureWarning:flax(\..*)?",
    r"ignore::DeprecationWarning:orbax(\..*)?",
)


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("NNX_COMPAT_FLAX_OWN_DEPRECATIONS") == "ignore":
        for line in FLAX_OWN_DEPRECATIONS:
            config.addinivalue_line("filterwarnings", line)


#: The tests of the upgrade tools that neither import flax nor depend on its version (the
#: checker parses, the codemod rewrites source, the CLI reads and writes files): the flax012 envs
#: run them, and the checker env runs the checker's without flax installed. The envs of the
#: other flax releases leave them out (``NNX_COMPAT_TOOLING_TESTS=elsewhere``, tox.ini), so CI
#: does not run the same version-independent tests five times.
TOOLING_TESTS = (
    "tests/checker/",
    "tests/cli/test_check.py",
    "tests/cli/test_conventions.py",
    "tests/cli/test_discover.py",
    "tests/cli/test_migrate.py",
    "tests/cli/test_report.py",
    "tests/cli/test_source.py",
    "tests/codemod/test_notebooks.py",
    "tests/codemod/test_rules.py",
)


#: Besides the tools' tests, the ones whose subject depends on the Python version: warnings
#: attributed to the caller's frame, the pytest plugin, the CLI, the namespace and the package.
#: The flax012-py312 env runs only these and :data:`TOOLING_TESTS`
#: (``NNX_COMPAT_TOOLING_TESTS=only``): the shims' behaviour does not depend on the Python
#: version, and flax012 runs the whole suite on Python 3.11.
PYTHON_SENSITIVE = (
    "tests/cli/",
    "tests/codemod/",
    "tests/test_install.py",
    "tests/test_nnx.py",
    "tests/test_package.py",
    "tests/test_pytest_plugin.py",
    "tests/test_warnings.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selection = os.environ.get("NNX_COMPAT_TOOLING_TESTS")
    if selection not in ("elsewhere", "only"):
        return
    root = config.rootpath
    wanted = TOOLING_TESTS if selection == "elsewhere" else (*TOOLING_TESTS, *PYTHON_SENSITIVE)
    kept, left = [], []
    for item in items:
        relative = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) else ""
        tooling = relative.startswith(wanted)
        (left if tooling == (selection == "elsewhere") else kept).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept


def pytest_addoption(parser: pytest.Parser) -> None:
    # pyproject.toml sets the plugin's ini option (this suite runs legacy patterns on purpose);
    # where the plugin is not loaded (the package not installed: PYTHONPATH runs, the checker
    # env) the key must still be known, or pytest's strict config warning fails the session
    parser.addini("nnx_compat", "off, report (the default) or strict", default="report")


@pytest.fixture(autouse=True)
def _clean_report(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with an empty legacy-pattern registry and the default policy."""
    import nnx_compat

    monkeypatch.delenv("NNX_COMPAT_WARNINGS", raising=False)
    nnx_compat.reset_report()
    yield
    nnx_compat.reset_report()


@pytest.fixture
def upstream_variable() -> Iterator[None]:
    """flax's Variable class exactly as flax ships it, for the reproductions."""
    from nnx_compat import _variables

    _variables.restore()
    try:
        yield
    finally:
        _variables.patch()
