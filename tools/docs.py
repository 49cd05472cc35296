"""The generated parts of the documentation site (``docs/``), rendered from the project itself.

The docs never hold a copy of a table or of a command's options: each page names a generator
(a ```` ```{nnx-compat-generated} NAME ```` block, expanded by ``docs/_ext/nnx_compat_docs.py``
when Sphinx reads the page), and the build renders it from the code:

* ``patterns``: the table of legacy patterns (``nnx-compat patterns --markdown``), each row
  anchored by its pattern's id;
* ``added``: the names flax added and what older releases get (``nnx-compat patterns --added``);
* ``sweep``: the release sweep's support matrix (``python -m tools.sweep render``);
* ``cli``: every ``nnx-compat`` subcommand's usage, description and options, from the argparse
  parser the command itself parses with (``nnx_compat.cli._parser()``);
* ``pytest-options``: the pytest plugin's command-line and ini options, from its
  ``pytest_addoption``.

Usage: ``python -m tools.docs NAME`` prints one of them, as the docs build renders it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "GENERATED",
    "SOURCES",
    "USAGE_WIDTH",
    "cli_reference",
    "generated",
    "pytest_options",
    "subcommands",
]

ROOT = Path(__file__).resolve().parents[1]
#: The width the usage lines are wrapped at (``--help`` takes the terminal's).
USAGE_WIDTH = 88


def subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Each subcommand of ``parser`` (depth first, in the order they were added) with its full
    name, ``parser`` itself first."""
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from subcommands(sub)


def _visible(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments ``--help`` shows, subcommand selectors left out (they have their own
    sections)."""
    return [
        a
        for a in parser._actions
        if a.help is not argparse.SUPPRESS and not isinstance(a, argparse._SubParsersAction)
    ]


def _paragraphs(text: str, raw: bool) -> str:
    """A description or epilog as Markdown paragraphs. Where argparse prints the text as it is
    written (``RawDescriptionHelpFormatter``), a paragraph with indented lines (a list, a table
    of exit statuses) becomes a text block, so that its layout stays."""
    out = []
    for paragraph in text.strip("\n").split("\n\n"):
        if not paragraph.strip():
            continue
        lines = paragraph.strip("\n").splitlines()
        if raw and any(line[:1].isspace() for line in lines):
            out.append("```text\n" + "\n".join(lines) + "\n```")
        else:
            out.append(" ".join(paragraph.split()))
    return "\n\n".join(out)


def _raw(parser: argparse.ArgumentParser) -> bool:
    cls = parser.formatter_class
    return isinstance(cls, type) and issubclass(cls, argparse.RawDescriptionHelpFormatter)


def _option(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """One argument as a Markdown list item: how it is written, and its help."""
    formatter = parser._get_formatter()
    if action.option_strings:
        line = f"- `{formatter._format_action_invocation(action)}`"
    else:  # a positional: by its name (argparse's help would show its choices instead)
        line = f"- `{action.metavar or action.dest}`"
        if action.choices is not None:
            line += f" (one of: {', '.join(map(str, action.choices))})"
    if action.help:
        line += ": " + " ".join(formatter._expand_help(action).split())
    return line


def cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """The reference of the ``nnx-compat`` command line, as Markdown: for the command and each
    subcommand, a section with its usage (as ``--help`` prints it), its description, its
    arguments and options, and its epilog.

    Args:
        parser: The parser to document; by default the command's own
            (``nnx_compat.cli._parser()``).
    """
    if parser is None:
        from nnx_compat.cli import _parser

        parser = _parser()
    out: list[str] = []
    summaries = {
        f"{sub.prog} {choice.dest}": choice.help
        for _, sub in subcommands(parser)
        for action in sub._actions
        if isinstance(action, argparse._SubParsersAction)
        for choice in action._choices_actions
    }
    for prog, sub in subcommands(parser):
        out += [f"## `{prog}`", ""]
        summary = summaries.get(prog)
        if summary:
            out += [summary[:1].upper() + summary[1:] + ".", ""]
        formatter_class: Any = sub.formatter_class
        formatter = formatter_class(prog=sub.prog, width=USAGE_WIDTH)
        formatter.add_usage(sub.usage, sub._actions, sub._mutually_exclusive_groups)
        usage = formatter.format_help().strip()
        out += ["```text", usage, "```", ""]
        if sub.description:
            out += [_paragraphs(sub.description, _raw(sub)), ""]
        positionals = [a for a in _visible(sub) if not a.option_strings]
        optionals = [a for a in _visible(sub) if a.option_strings]
        for title, actions in (("Arguments", positionals), ("Options", optionals)):
            if actions:
                out += [f"{title}:", ""]
                out += [_option(sub, a) for a in actions]
                out.append("")
        if sub.epilog:
            out += [_paragraphs(sub.epilog, _raw(sub)), ""]
    return "\n".join(out).rstrip() + "\n"


class _OptionRecorder:
    """Stands in for pytest's ``Parser`` (and its option groups) and records what a plugin's
    ``pytest_addoption`` adds."""

    def __init__(self) -> None:
        self.options: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        self.ini: list[tuple[str, str, dict[str, Any]]] = []

    def getgroup(self, name: str, description: str = "") -> _OptionRecorder:
        return self

    def addoption(self, *names: str, **attrs: Any) -> None:
        self.options.append((names, attrs))

    def addini(self, name: str, help: str, **attrs: Any) -> None:
        self.ini.append((name, help, attrs))


def pytest_options() -> str:
    """The pytest plugin's options (``nnx_compat.pytest_plugin.pytest_addoption``) as a
    Markdown list: the command-line options, then the ini options."""
    from nnx_compat import pytest_plugin

    recorder = _OptionRecorder()
    pytest_plugin.pytest_addoption(recorder)  # type: ignore[arg-type]
    out = ["Command-line options:", ""]
    for names, attrs in recorder.options:
        flag = ", ".join(names)
        if attrs.get("choices"):
            flag += "={" + ",".join(attrs["choices"]) + "}"
        elif attrs.get("metavar"):
            flag += "=" + attrs["metavar"]
        out.append(f"- `{flag}`: {' '.join(str(attrs.get('help', '')).split())}")
    out += ["", "Ini options (`[tool.pytest.ini_options]`, `pytest.ini`, ...):", ""]
    for name, help_text, attrs in recorder.ini:
        default = f" (default: `{attrs['default']}`)" if "default" in attrs else ""
        out.append(f"- `{name}`: {' '.join(help_text.split())}{default}")
    return "\n".join(out) + "\n"


def _patterns() -> str:
    from nnx_compat.cli.patterns import markdown_table

    return markdown_table(anchors=True) + "\n"  # patterns.html#<id>: nnx-compat report's links


def _added() -> str:
    from nnx_compat.cli.patterns import added_table

    return added_table() + "\n"


def _sweep() -> str:
    from tools import sweep

    return sweep.render(json.loads(sweep.RESULTS.read_text())) + "\n"


#: Every generator the pages may name, by name.
GENERATED: dict[str, Callable[[], str]] = {
    "patterns": _patterns,
    "added": _added,
    "sweep": _sweep,
    "cli": cli_reference,
    "pytest-options": pytest_options,
}

#: The files each generator renders from (relative to the repository root), so that an
#: incremental docs build reads a page again when one of them changes.
SOURCES: dict[str, tuple[str, ...]] = {
    "patterns": ("nnx_compat/_patterns.py", "nnx_compat/cli/patterns.py"),
    "added": ("nnx_compat/_added.py", "nnx_compat/_patterns.py", "nnx_compat/cli/patterns.py"),
    "sweep": ("tools/sweep/results.json", "tools/sweep.py"),
    "cli": tuple(
        sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "nnx_compat" / "cli").glob("*.py"))
    ),
    "pytest-options": ("nnx_compat/pytest_plugin.py",),
}


def generated(name: str) -> str:
    """The Markdown of the generator ``name`` (one of :data:`GENERATED`).

    Raises:
        KeyError: For an unknown name; the message names the known ones.
    """
    try:
        render = GENERATED[name]
    except KeyError:
        raise KeyError(f"no generated docs part {name!r}; known: {', '.join(GENERATED)}") from None
    return render()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.docs", description=__doc__)
    parser.add_argument("name", choices=tuple(GENERATED))
    args = parser.parse_args(argv)
    sys.stdout.write(generated(args.name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
