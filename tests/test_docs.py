"""Every `minifrrn` command the README and the lessons show exists as shown, so that a renamed or
removed option cannot linger in the docs: whole commands in code blocks parse with the real command
line, and the options named in prose exist on their subcommand."""
import argparse
import json
import re
import shlex
from pathlib import Path

import pytest

from minifrrn.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _texts():
    """(where, markdown) of the READMEs and of every lesson's markdown cells."""
    for name in ("README.md", "lessons/README.md"):
        yield name, (ROOT / name).read_text(encoding="utf-8")
    for path in sorted((ROOT / "lessons").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        yield path.name, "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def _code_blocks(text, languages=("", "bash", "sh")):
    """The code blocks of a markdown text whose fence is tagged with one of ``languages`` (the
    default: shell blocks, tagged bash or sh, or untagged)."""
    blocks, lines, language = [], None, None
    for line in text.splitlines():
        if line.startswith("```"):
            if lines is None:
                lines, language = [], line[3:].strip()
            else:
                if language in languages:
                    blocks.append("\n".join(lines))
                lines = None
        elif lines is not None:
            lines.append(line)
    return blocks


def _block_commands(text):
    """The `minifrrn ...` commands of the code blocks: continuation lines joined, comments dropped,
    each part of an `&&` chain."""
    commands = []
    for block in _code_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            commands += [" ".join(part.split()) for part in line.split("&&")
                         if part.strip().startswith("minifrrn ")]
    return commands


BLOCKS = [(where, command) for where, text in _texts() for command in _block_commands(text)]
INLINE = [(where, span) for where, text in _texts()
          for span in re.findall(r"`(minifrrn [a-z]+[^`]*)`", text)]


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def test_the_docs_show_commands_of_every_kind():
    assert {shlex.split(command)[1] for _, command in BLOCKS} >= {"train", "eval", "predict"}
    assert {shlex.split(span)[1] for _, span in INLINE} >= {"train", "bench"}


@pytest.mark.parametrize("where,command", BLOCKS, ids=[f"{w}: {c[:70]}" for w, c in BLOCKS])
def test_documented_command_parses(where, command):
    parser, _ = _subcommands()
    try:
        parser.parse_args(shlex.split(command)[1:])
    except SystemExit as exit_:
        pytest.fail(f"{where} shows `{command}`, which the command line refuses (exit {exit_.code})")


@pytest.mark.parametrize("where,span", INLINE, ids=[f"{w}: {s[:70]}" for w, s in INLINE])
def test_options_named_in_prose_exist(where, span):
    _, commands = _subcommands()
    words = shlex.split(span)
    assert words[1] in commands, f"{where} names `{span}`: there is no command {words[1]!r}"
    options = commands[words[1]]._option_string_actions
    for word in words[2:]:
        if word.startswith("--"):
            assert word.split("=")[0] in options, f"{where} names `{span}`: no option {word}"


PYTHON_BLOCKS = [(where, block) for where, text in _texts()
                 for block in _code_blocks(text, languages=("python",))]


def test_the_readme_shows_python():
    assert any(where == "README.md" for where, _ in PYTHON_BLOCKS)


@pytest.mark.parametrize("where,block", PYTHON_BLOCKS,
                         ids=[f"{w}: block {i}" for i, (w, _) in enumerate(PYTHON_BLOCKS)])
def test_documented_python_runs(where, block):
    exec(compile(block, f"<python block of {where}>", "exec"), {"__name__": "__docs__"})
