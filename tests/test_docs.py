"""tools/docs.py: the docs' generated parts cover what the code declares (no Sphinx needed)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from nnx_compat import pytest_plugin
from nnx_compat.cli import _parser
from nnx_compat.cli.patterns import added_table, markdown_table
from tools import docs, sweep


def _sections(text: str) -> dict[str, str]:
    """The reference's sections by the command they document (``nnx-compat check``)."""
    parts = re.split(r"^## `([^`]+)`$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every command and subcommand of ``parser``, by its full name, from argparse itself."""
    found = {parser.prog: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found |= _commands(child)
    return found


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_cli_reference_covers_every_subcommand_and_option() -> None:
    parser = _parser()
    sections = _sections(docs.cli_reference(parser))
    commands = _commands(parser)
    assert set(commands) >= {
        "nnx-compat",
        "nnx-compat doctor",
        "nnx-compat patterns",
        "nnx-compat fix-checkpoint",
        "nnx-compat check",
        "nnx-compat migrate",
    }
    assert list(sections) == list(commands)
    for prog, command in commands.items():
        section = sections[prog]
        usage = section.split("```text\n", 1)[1].split("\n```", 1)[0]
        assert _flat(usage) == _flat(command.format_usage()), prog
        if command.description:
            assert _flat(command.description) in _flat(section), prog
        if command.epilog:
            assert _flat(command.epilog) in _flat(re.sub("```(text)?", "", section)), prog
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue  # each subcommand has its own section (above)
            for name in action.option_strings or [str(action.metavar or action.dest)]:
                assert re.search(rf"^- `[^`]*{re.escape(str(name))}\b", section, re.M), (
                    prog,
                    name,
                )
            if action.help:
                assert _flat(action.help % {"default": action.default}) in _flat(section), (
                    prog,
                    action.help,
                )


def test_cli_reference_of_every_kind_of_argument() -> None:
    parser = argparse.ArgumentParser(prog="tool", description="A tool.\n\nTwo   paragraphs.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run something",
        description="Runs.",
        epilog="exit status:\n  0  fine\n  1  not fine\n\nThe end.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("mode", choices=("fast", "slow"))
    group = run.add_mutually_exclusive_group()
    group.add_argument("--diff", action="store_true", help="a diff")
    group.add_argument("--write", action="store_true", help="write")
    run.add_argument("-n", "--count", type=int, default=3, help="how many (default: %(default)s)")
    run.add_argument("--secret", help=argparse.SUPPRESS)
    deep = run.add_subparsers(dest="deep").add_parser("deeper", help="one level more")
    deep.add_argument("--flag", action="store_true")

    text = docs.cli_reference(parser)
    sections = _sections(text)

    # argparse names a subcommand's subcommand after the positionals before it
    assert list(sections) == ["tool", "tool run", "tool run {fast,slow} deeper"]
    run_section = sections["tool run"]
    assert run_section.lstrip().startswith("Run something.")
    assert "[--diff | --write]" in run_section
    assert "- `mode` (one of: fast, slow)" in run_section
    assert "- `-n COUNT, --count COUNT`: how many (default: 3)" in run_section
    assert "--secret" not in text
    # the indented block keeps its layout; prose paragraphs are joined
    assert "```text\nexit status:\n  0  fine\n  1  not fine\n```" in run_section
    assert "\nThe end.\n" in run_section
    assert "A tool.\n\nTwo paragraphs." in sections["tool"]
    assert "- `--flag`" in text


def test_pytest_options_lists_every_option_of_the_plugin() -> None:
    source = Path(pytest_plugin.__file__).read_text()
    options = re.findall(r'addoption\(\s*"(--[\w-]+)"', source)
    inis = re.findall(r'addini\(\s*"(\w+)"', source)
    assert options and inis
    text = docs.pytest_options()
    for name in options:
        assert re.search(rf"^- `{re.escape(name)}[=`]", text, re.M), name
    for name in inis:
        assert f"- `{name}`:" in text
    assert "--nnx-compat={off,report,strict}" in text


def test_generated_parts_are_the_project_renderers() -> None:
    assert docs.generated("patterns") == markdown_table(anchors=True) + "\n"
    assert docs.generated("added") == added_table() + "\n"
    assert docs.generated("sweep") == sweep.render(json.loads(sweep.RESULTS.read_text())) + "\n"
    assert docs.generated("cli") == docs.cli_reference()


def test_every_generated_part_names_files_that_exist() -> None:
    assert set(docs.SOURCES) == set(docs.GENERATED)
    for name, paths in docs.SOURCES.items():
        assert paths, name
        for path in paths:
            assert (docs.ROOT / path).is_file(), (name, path)


def test_an_unknown_part_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="patterns, added, sweep, cli, pytest-options"):
        docs.generated("nope")
