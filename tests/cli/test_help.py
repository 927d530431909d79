"""Every command's ``--help`` reads like a manual page: a one-line summary, a description,
examples that are valid command lines, and the exit status where it matters."""

from __future__ import annotations

import inspect

import click
import pytest
from click.testing import CliRunner

from kembar.cli.main import cli
from tests.cli.cmdline import kembar_words, resolve, walk

COMMANDS = list(walk())
IDS = [" ".join(path) for path, _ in COMMANDS]
# commands whose exit status says more than "0 ok, 1 error, 2 bad configuration or usage"
EXIT_STATUS = {"kembar", "kembar config check", "kembar disk up", "kembar disk primary",
               "kembar disk status", "kembar lab exec", "kembar lab torture", "kembar status",
               "kembar drill", "kembar standby", "kembar takeover"}


def _paragraphs(cmd: click.Command) -> list[str]:
    return [p.strip("\n") for p in inspect.cleandoc(cmd.help or "").split("\n\n") if p.strip()]


def _block(cmd: click.Command, title: str) -> list[str] | None:
    """The lines of the preformatted block titled ``title`` ("\\b" then "Title:")."""
    for p in _paragraphs(cmd):
        lines = p.splitlines()
        if lines[0] == "\b" and len(lines) > 1 and lines[1] == f"{title}:":
            return [ln for ln in lines[2:] if ln.strip()]
    return None


def test_the_tree_is_complete() -> None:
    assert len(COMMANDS) >= 40
    assert "kembar completion" in IDS and "kembar disk up" in IDS


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=IDS)
def test_summary_description_examples(path: tuple[str, ...], cmd: click.Command) -> None:
    paragraphs = _paragraphs(cmd)
    assert paragraphs, "no help at all"
    summary = paragraphs[0]
    assert "\n" not in summary, f"the summary is one line: {summary!r}"
    assert summary.endswith(".") and len(summary) <= 90, summary
    description = [p for p in paragraphs[1:] if not p.startswith("\b")]
    assert description and len(" ".join(description).split()) >= 12, \
        "a description paragraph after the summary"
    examples = _block(cmd, "Examples")
    assert examples, "an Examples section (a \\b block)"
    runs = [kembar_words(ln.strip()) for ln in examples]
    assert any(words and words[1:len(path)] == list(path[1:]) for words in runs), \
        f"an example runs {' '.join(path)} itself: {examples}"


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=IDS)
def test_examples_are_valid_command_lines(path: tuple[str, ...], cmd: click.Command) -> None:
    for line in _block(cmd, "Examples") or []:
        words = kembar_words(line.strip())
        if words is None:
            continue
        if "--help" in words:
            continue
        try:
            resolve(words[1:])
        except click.UsageError as exc:
            pytest.fail(f"{line.strip()!r}: {exc}")


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=IDS)
def test_help_exits_0_and_shows_it_all(path: tuple[str, ...], cmd: click.Command) -> None:
    res = CliRunner().invoke(cli, [*path[1:], "--help"], prog_name="kembar",
                             terminal_width=100)
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"Usage: {' '.join(path)} ")
    assert "Examples:" in res.output
    first = _paragraphs(cmd)[0]
    assert " ".join(first.split()) in " ".join(res.output.split())


def test_exit_status_where_it_matters() -> None:
    stated = {" ".join(path) for path, cmd in COMMANDS if _block(cmd, "Exit status")}
    assert EXIT_STATUS <= stated, sorted(EXIT_STATUS - stated)
    root = _block(cli, "Exit status")
    assert root is not None and [ln.split()[0] for ln in root] == ["0", "1", "2"]


def test_help_preserves_the_examples_layout() -> None:
    res = CliRunner().invoke(cli, ["disk", "status", "--help"], prog_name="kembar",
                             terminal_width=100)
    lines = res.output.splitlines()
    start = lines.index("  Examples:")
    assert lines[start + 1].startswith("    kembar disk status")  # not re-wrapped
