"""Split brain: detected every time, resolved only by a policy or by the operator."""

from __future__ import annotations

from typing import Callable

from kembar.lab.pair import MiB, Pair, wait_for


def _diverge(p: Pair, n1_writes: bool = True, n2_writes: bool = True) -> None:
    """Both nodes Primary while apart, as after a partition with two failovers."""
    p.start_fresh()
    p.kembar("n1", "disconnect", "r0")
    wait_for(lambda: p.st("n2")["peer"]["connection"] != "Connected", 10)
    if n1_writes:
        with p.client("n1") as c:
            c.write(0, b"n1 was here")
    p.kembar("n2", "primary", "r0")
    if n2_writes:
        with p.client("n2") as c:
            c.write(MiB, b"n2 was here")
    p.kembar("n1", "secondary", "r0")
    p.kembar("n2", "secondary", "r0")


def _standalone(p: Pair, node: str) -> bool:
    return p.st(node)["peer"]["connection"] == "StandAlone"


def test_split_brain_detected_and_left_disconnected(make_pair: Callable[..., Pair]) -> None:
    p = make_pair()
    _diverge(p)
    p.kembar("n1", "connect", "r0")
    wait_for(lambda: _standalone(p, "n1") and _standalone(p, "n2"), 15, "both StandAlone")
    assert "Split-Brain detected" in p.log("n1")
    assert "Split-Brain" in p.st("n1")["last_error"]
    assert b"n2 was here" not in p.backing("n1").read_bytes()
    assert b"n1 was here" not in p.backing("n2").read_bytes()
    # manual recovery: n2 is the victim
    p.kembar("n2", "connect", "--discard-my-data", "r0")
    p.kembar("n1", "connect", "r0")
    p.wait_synced()
    assert p.identical()
    image = p.backing("n2").read_bytes()
    assert image.startswith(b"n1 was here") and b"n2 was here" not in image


def test_discard_zero_changes(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(options={"after_sb_0pri": "discard-zero-changes"})
    _diverge(p, n2_writes=False)
    p.kembar("n1", "connect", "r0")
    p.wait_synced()
    assert p.identical() and p.backing("n2").read_bytes().startswith(b"n1 was here")
    assert "discard-zero-changes" in p.log("n1")


def test_discard_zero_changes_refuses_when_both_wrote(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(options={"after_sb_0pri": "discard-zero-changes"})
    _diverge(p)
    p.kembar("n1", "connect", "r0")
    wait_for(lambda: _standalone(p, "n1") and _standalone(p, "n2"), 15, "both StandAlone")


def test_discard_younger_primary(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(options={"after_sb_0pri": "discard-younger-primary"})
    _diverge(p)  # n1 was Primary when they parted; n2 was promoted later: n2 loses
    p.kembar("n1", "connect", "r0")
    p.wait_synced()
    image = p.backing("n2").read_bytes()
    assert p.identical() and image.startswith(b"n1 was here") and b"n2 was here" not in image


def test_unrelated_data_refused(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(options={"after_sb_0pri": "discard-zero-changes"})
    p.start_fresh()
    p.kembar("n1", "disconnect", "r0")
    p.kembar("n2", "down", "r0")
    p.kembar("n2", "create-md", "--force", "r0")
    p.up("n2")
    p.kembar("n2", "primary", "--force", "r0")  # a new, unrelated data generation
    p.kembar("n2", "secondary", "r0")
    p.kembar("n1", "connect", "r0")
    wait_for(lambda: _standalone(p, "n1"), 15, "n1 StandAlone")
    assert "unrelated data" in p.log("n1")
    assert p.st("n1")["disk_state"] == "UpToDate"
