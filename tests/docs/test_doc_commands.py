"""Every ``kembar …`` command in docs/install.md, migrate.md and troubleshooting.md exists
and accepts what the document gives it: the verb, its options, their values and its
arguments, parsed by the command's own click parser (nothing is run).  Commands come from
the documents' ``sh`` blocks and from their inline code (`kembar …`); a synopsis with
placeholders (``[--group G]``, ``…``, ``<NODE>``) is not a command and is left out.
(The parser is the one the systemd units' test uses: tests/cli/cmdline.py.)"""

from __future__ import annotations

import re
import shlex

import click
import pytest

from tests.cli.cmdline import resolve as parse
from tests.docs.docrun import DOCS, blocks

DOCUMENTS = ("install.md", "migrate.md", "troubleshooting.md")
OPERATORS = {"&&", "||", ";", "|", "(", ")", "$(", "`", "&", ";;", "|&"}
KEYWORDS = {"if", "then", "else", "elif", "do", "while", "until", "!", "time", "sudo"}
PLACEHOLDER = re.compile(r"[\[\]<>…]|\.\.\.")
INLINE = re.compile(r"`(kembar [^`]+)`")


def commands_in_shell(text: str) -> list[list[str]]:
    """The argument lists of every ``kembar`` command of a shell script (pure)."""
    text = re.sub(r"\\\n", " ", text).replace("$(", " ( ")
    out = []
    for line in text.splitlines():
        if line.lstrip().startswith("#") or "<<" in line:
            continue
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        lex.commenters = "#"
        try:
            tokens = list(lex)
        except ValueError:
            continue  # a heredoc's body or the like: not a command line
        at_start = True
        for i, tok in enumerate(tokens):
            if at_start and tok == "kembar":
                args = []
                for t in tokens[i + 1:]:
                    if t in OPERATORS or t.startswith((">", "<", "2>")):
                        break
                    args.append(t)
                out.append(args)
            at_start = tok in OPERATORS or tok in KEYWORDS or (at_start and "=" in tok)
    return out


def document_commands(name: str) -> list[tuple[str, list[str]]]:
    path = DOCS / name
    found: list[tuple[str, list[str]]] = []
    for b in blocks(path):
        found += [(b.where, args) for args in commands_in_shell(b.text)]
    for n, line in enumerate(path.read_text().splitlines(), 1):
        for m in INLINE.finditer(line):
            if not PLACEHOLDER.search(m.group(1)):
                found += [(f"{name}:{n}", args) for args in commands_in_shell(m.group(1))]
    return [(w, a) for w, a in found if not any(PLACEHOLDER.search(x) for x in a)]


def test_the_extraction_finds_commands_where_they_are() -> None:
    script = ("kembar disk up r0 && kembar disk status r0 | grep -q x\n"
              "until kembar disk status r0 | grep x; do sleep 1; done\n"
              "x=$(kembar status --json) # kembar nothing\n"
              "ln -sf /opt/kembar/bin/kembar /usr/local/bin/kembar; journalctl -u kembar\n"
              "KEMBAR_NODE=node1 kembar disk primary --force r0 >/dev/null 2>&1\n")
    assert commands_in_shell(script) == [
        ["disk", "up", "r0"], ["disk", "status", "r0"], ["disk", "status", "r0"],
        ["status", "--json"], ["disk", "primary", "--force", "r0"]]
    with pytest.raises(click.NoSuchOption):
        parse(["disk", "primary", "--forse", "r0"])
    with pytest.raises(click.UsageError):
        parse(["disk", "promote", "r0"])
    with pytest.raises(click.MissingParameter):
        parse(["disk", "resolve", "r0"])  # --survivor is required


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_every_kembar_command_in_the_document_parses(doc: str) -> None:
    found = document_commands(doc)
    assert len(found) >= 5, f"{doc}: only {found}"
    bad = []
    for where, args in found:
        try:
            parse(args)
        except click.exceptions.Exit as exc:  # --version, --help: eager, they end parsing
            if exc.exit_code:
                bad.append(f"{where}: kembar {shlex.join(args)}: exit {exc.exit_code}")
        except click.ClickException as exc:
            bad.append(f"{where}: kembar {shlex.join(args)}: {exc}")
    assert not bad, "\n".join(bad)
