"""Parse a kembar command line as the real CLI would, without running anything."""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import click

from kembar.cli.main import cli

SHELL_WORDS = {">", ">>", "<", "|", "||", "&&", ";", "&", "2>&1", "2>/dev/null"}


def resolve(args: list[str]) -> tuple[str, dict[str, object]]:
    """The command ``kembar ARGS`` would run (its path) and its parameters, parsed as the
    real CLI parses them (no callback runs); click.UsageError if the line is not valid."""
    ctx = cli.make_context("kembar", list(args))
    cmd: click.Command = cli
    while isinstance(cmd, click.Group):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert name is not None and sub is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        cmd = sub
    return ctx.command_path, dict(ctx.params)


def kembar_words(line: str) -> list[str] | None:
    """The words of a shell line that runs kembar (up to the first pipe, redirection or
    list operator), None if the line does not start with ``kembar``."""
    words = shlex.split(line, comments=True)
    for i, word in enumerate(words):
        if word in SHELL_WORDS or word.startswith((">", "2>")):
            words = words[:i]
            break
    return words if words and words[0] == "kembar" else None


def walk(cmd: click.Command = cli, path: tuple[str, ...] = ("kembar",)
         ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command of the tree, the root first, with its path."""
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from walk(cmd.commands[name], (*path, name))
