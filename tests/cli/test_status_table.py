"""`kembar status`'s groups table: why a group runs nowhere is in its notes."""

from __future__ import annotations

from io import StringIO
from typing import Any

from rich.console import Console

from kembar.cli.daemon import format_groups


def render(decisions: list[str]) -> str:
    st: dict[str, Any] = {"manager": {"standby": False, "groups": {"web": {
        "running_on": [], "here": "stopped", "preferred": "node1", "auto_failback": True,
        "failed_here": "", "last_error": "", "failed_on": [], "decisions": decisions}}}}
    table = format_groups(st)
    assert table is not None
    out = StringIO()
    Console(file=out, width=400).print(table)
    return out.getvalue()


def test_a_group_waiting_for_fencing_says_so() -> None:
    text = render(["fence node1 before web moves: node1 died while running web and "
                   "fencing is on"])
    assert "nowhere" in text and "fence node1 before web moves" in text


def test_waits_are_notes_other_decisions_are_not() -> None:
    text = render(["wait for web on node1: no node can run web", "start web on node2: x"])
    assert "wait for web on node1" in text and "start web on node2" not in text
