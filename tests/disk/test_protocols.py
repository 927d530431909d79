"""Completion semantics of protocols A, B and C against a stalled Secondary (SIGSTOP)."""

from __future__ import annotations

import os
import signal
import threading
from typing import Callable

import pytest

from kembar.errors import KembarError
from kembar.lab.pair import MiB, Pair, wait_for

PATIENT = {"timeout": "30s", "ping_int": "60s", "ping_timeout": "20s"}


def _write_in_thread(p: Pair, data: bytes, flush: bool = False) -> threading.Thread:
    def run() -> None:
        with p.client("n1") as c:
            c.write(4096, data)
            if flush:
                c.flush()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_protocol_c_write_waits_for_the_stalled_secondary(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(protocol="C", options=PATIENT)
    p.start_fresh()
    os.kill(p.pid("n2"), signal.SIGSTOP)
    try:
        t = _write_in_thread(p, b"C" * 8192)
        t.join(1.5)
        assert t.is_alive(), "a protocol C write completed while the Secondary was stopped"
    finally:
        os.kill(p.pid("n2"), signal.SIGCONT)
    t.join(10)
    assert not t.is_alive()
    assert p.backing("n2").read_bytes()[4096:4096 + 8192] == b"C" * 8192
    assert p.st("n1")["peer"]["connection"] == "Connected"


@pytest.mark.parametrize("protocol", ["A", "B"])
def test_protocols_a_and_b_complete_without_the_peer_writing(
        make_pair: Callable[..., Pair], protocol: str) -> None:
    """A completes without the peer at all; B once the peer has received (it is stopped
    here, so B waits like C)."""
    p = make_pair(protocol=protocol, options=PATIENT)
    p.start_fresh()
    os.kill(p.pid("n2"), signal.SIGSTOP)
    try:
        t = _write_in_thread(p, b"A" * 8192, flush=True)
        t.join(3)
        if protocol == "A":
            assert not t.is_alive(), "protocol A waited for a stopped peer"
        else:
            assert t.is_alive(), "protocol B completed before the peer received the data"
    finally:
        os.kill(p.pid("n2"), signal.SIGCONT)
    t.join(10)
    assert not t.is_alive()
    wait_for(p.identical, 10, "the peer to catch up")


def test_protocol_c_flush_reaches_both_sides(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(protocol="C")
    p.start_fresh()
    with p.client("n1") as c:
        c.submit_write(0, os.urandom(4 * MiB))
        c.flush()
    assert p.identical()


def test_secondary_refuses_io_and_never_two_primaries(make_pair: Callable[..., Pair]) -> None:
    p = make_pair()
    p.start_fresh()
    with p.client("n2") as c:
        with pytest.raises(Exception, match="Secondary"):
            c.write(0, b"x")
    res = p.kembar("n2", "primary", "r0", check=False)
    assert res.returncode != 0 and "Primary" in res.stderr
    p.kembar("n1", "secondary", "r0")
    p.kembar("n2", "primary", "r0")
    assert p.st("n2")["role"] == "Primary" and p.st("n1")["peer"]["role"] == "Primary"
    with p.client("n2") as c:
        c.write(0, b"from n2")
    wait_for(lambda: p.backing("n1").read_bytes()[:7] == b"from n2", 5, "replication n2->n1")


def test_stalled_peer_is_dropped_then_reconnects_by_itself(make_pair: Callable[..., Pair]) -> None:
    """A Secondary that stops answering for longer than `timeout` is dropped: the pending
    protocol C write completes (marked out of sync); when the peer answers again the link
    comes back by itself and the marked blocks are resynced."""
    p = make_pair(protocol="C", options={"timeout": "2s", "ping_int": "1s",
                                         "ping_timeout": "500ms"})
    p.start_fresh()
    os.kill(p.pid("n2"), signal.SIGSTOP)
    try:
        t = _write_in_thread(p, b"S" * 8192)
        t.join(10)
        assert not t.is_alive(), "the write did not complete after the peer timed out"
        st = p.st("n1")
        assert st["peer"]["connection"] != "Connected" and st["out_of_sync"] >= 8192
    finally:
        os.kill(p.pid("n2"), signal.SIGCONT)
    p.wait_synced(30)
    assert p.identical()
    assert p.st("n1")["counters"]["connects"] >= 2


def test_outdated_data_is_never_promoted(make_pair: Callable[..., Pair]) -> None:
    p = make_pair()
    p.start_fresh()
    p.kembar("n1", "disconnect", "r0")
    wait_for(lambda: p.st("n2")["peer"]["connection"] != "Connected", 10)
    assert "Outdated" in p.kembar("n2", "outdate", "r0").stdout
    res = p.kembar("n2", "primary", "r0", check=False)
    assert res.returncode != 0 and "Outdated" in res.stderr
    p.kembar("n2", "down", "r0")  # Outdated survives a restart
    p.up("n2")
    assert p.st("n2")["disk_state"] == "Outdated"
    p.kembar("n1", "connect", "r0")  # back with its UpToDate peer: UpToDate again
    p.wait_synced()
    p.kembar("n1", "secondary", "r0")
    p.kembar("n2", "primary", "r0")


def test_check_peer_drops_a_silent_primary_so_the_secondary_can_be_promoted(
        make_pair: Callable[..., Pair]) -> None:
    """The cluster declared n1 dead: n2's disk still holds its connection to n1 (Primary)
    until its own ping notices.  `check-peer` asks at once: a live peer answers and stays;
    a frozen one is dropped within ping_timeout, and n2 may be promoted."""
    p = make_pair(options={"ping_int": "60s", "ping_timeout": "500ms", "timeout": "30s"})
    p.start_fresh()
    assert "answers" in p.kembar("n2", "check-peer", "r0").stdout
    assert p.st("n2")["peer"]["connection"] == "Connected"
    for bad in (0, -1, 61, "1", True, [1]):
        with p.client("n2") as c, pytest.raises(KembarError, match=r"timeout: a number of "
                                                                 r"seconds in \(0, 60\]"):
            c.control("check-peer", timeout=bad)
    assert p.st("n2")["peer"]["connection"] == "Connected"  # the refusals changed nothing
    res = p.kembar("n2", "primary", "r0", check=False)
    assert res.returncode != 0 and "peer n1 is Primary" in res.stderr
    os.kill(p.pid("n1"), signal.SIGSTOP)
    try:
        assert "did not answer" in p.kembar("n2", "check-peer", "r0").stdout
        st = p.st("n2")
        assert st["peer"]["connection"] != "Connected" and "did not answer" in p.log("n2")
        p.kembar("n2", "primary", "r0")
        assert p.st("n2")["role"] == "Primary"
    finally:
        p.kill("n1")
