"""Disk faults (DRBD's on-io-error detach) with real processes on failing FUSE disks.

The backing stores are the lab's hardware disks (``kembar.lab.hw``): regular files on a
FUSE mount that, switched to ``fail``, answer every read, write and fsync with EIO.
"""

from __future__ import annotations

import hashlib
import random
import struct
from typing import Any

import pytest

from kembar.disk.client import DiskClient
from kembar.errors import StateError
from kembar.lab.pair import Pair, alive, wait_for

from tests.disk.conftest import HwDisks

KiB = 1024
MiB = 1024 * KiB


def block(offset: int, gen: int, length: int) -> bytes:
    """Self-checking content: a header (offset, generation, sha256 of the rest)."""
    body = hashlib.shake_256(struct.pack("!QQ", offset, gen)).digest(length - 48)
    head = struct.pack("!QQ", offset, gen) + hashlib.sha256(body).digest()
    return head + body


def check(data: bytes, offset: int, gen: int) -> None:
    o, g = struct.unpack("!QQ", data[:16])
    assert (o, g) == (offset, gen), f"block at {offset}: found ({o}, {g}), want ({offset}, {gen})"
    assert hashlib.sha256(data[48:]).digest() == data[16:48], f"block at {offset}: bad checksum"


class Workload:
    """Sequential writes of self-checking blocks; remembers what was acknowledged."""

    def __init__(self, c: DiskClient, size: int, seed: int = 1) -> None:
        self.c = c
        self.size = size
        self.rng = random.Random(seed)
        self.acked: dict[int, tuple[int, int]] = {}  # offset -> (gen, length)
        self.gen = 0

    def write(self, n: int) -> None:
        for _ in range(n):
            length = self.rng.choice((4, 8, 16, 64)) * KiB
            slot = self.rng.randrange(0, self.size // (64 * KiB))
            offset = slot * 64 * KiB
            self.gen += 1
            self.c.write(offset, block(offset, self.gen, length))
            self.acked[offset] = (self.gen, length)

    def verify(self) -> None:
        for offset, (gen, length) in sorted(self.acked.items()):
            check(self.c.read(offset, length), offset, gen)


def st(p: Pair, node: str) -> dict[str, Any]:
    return p.st(node)


def test_primary_disk_fails_under_load_acked_writes_served_by_the_peer(
        hw_pair: tuple[Pair, HwDisks]) -> None:
    p, hw = hw_pair
    p.start_fresh()
    pid = p.pid("n1")
    with p.client("n1", timeout=30) as c:
        w = Workload(c, p.size)
        w.write(150)
        hw.fail("n1")
        w.write(150)  # every one succeeds: the peer has the data (protocol C)
        s = st(p, "n1")
        assert s["disk_state"] == "Diskless", s
        assert s["role"] == "Primary"
        assert s["counters"]["io_errors"] > 0
        assert "failed" in s["diskless_reason"] and s["disk_failed"]
        assert s["peer"]["disk_state"] == "UpToDate"
        w.verify()  # from the peer, every acknowledged write with its content
        assert st(p, "n1")["counters"]["peer_reads"] > 0
        c.flush()
    assert alive(pid)
    assert "I/O error on the backing store" in p.log("n1")
    assert p.log("n1").count("detaching (on-io-error detach)") == 1
    # The survivor tracks what the failed disk misses (a new generation, bits marked).
    s2 = st(p, "n2")
    assert s2["disk_state"] == "UpToDate" and s2["peer"]["disk_state"] == "Diskless"
    assert s2["uuids"]["bitmap"] != "0" * 16 and s2["out_of_sync"] > 0
    # And the peer's disk really has it all.
    image = hw.image("n2")
    for offset, (gen, length) in w.acked.items():
        check(image[offset:offset + length], offset, gen)
    # A Diskless disk is never promoted, not even forced, and not attached while Primary.
    res = p.kembar("n1", "attach", "r0", check=False)
    assert res.returncode != 0 and "Diskless Primary" in res.stderr


def test_secondary_disk_fails_primary_continues_then_attach_resyncs(
        hw_pair: tuple[Pair, HwDisks]) -> None:
    p, hw = hw_pair
    p.start_fresh()
    with p.client("n1", timeout=30) as c:
        w = Workload(c, p.size, seed=2)
        w.write(60)
        hw.fail("n2")
        w.write(120)
        wait_for(lambda: st(p, "n2")["disk_state"] == "Diskless", 10, "n2 Diskless")
        s1 = st(p, "n1")
        assert s1["disk_state"] == "UpToDate" and s1["peer"]["disk_state"] == "Diskless"
        assert s1["out_of_sync"] > 0
        s2 = st(p, "n2")
        assert s2["counters"]["io_errors"] > 0 and s2["role"] == "Secondary"
        # Still failing: attach is refused and changes nothing.
        res = p.kembar("n2", "attach", "r0", check=False)
        assert res.returncode != 0 and "still fails" in res.stderr, res.stderr
        assert st(p, "n2")["disk_state"] == "Diskless"
        # Never promoted while Diskless.
        res = p.kembar("n2", "primary", "--force", "r0", check=False)
        assert res.returncode != 0
        hw.repair("n2")
        out = p.kembar("n2", "attach", "r0").stdout
        assert "attached" in out
        w.write(40)  # writes go on during the resync
        p.wait_synced(60)
        w.verify()
    assert st(p, "n2")["disk_failed"] is False
    assert hw.image("n1") == hw.image("n2")


def test_diskless_primary_without_peer_fails_io_then_serves_again(
        hw_pair: tuple[Pair, HwDisks]) -> None:
    p, hw = hw_pair
    p.start_fresh()
    pid = p.pid("n1")
    with p.client("n1", timeout=30) as c:
        w = Workload(c, p.size, seed=3)
        w.write(40)
        hw.fail("n1")
        w.write(20)
        assert st(p, "n1")["disk_state"] == "Diskless"
        p.kembar("n1", "disconnect", "r0")
        offset, (gen, length) = next(iter(w.acked.items()))
        with pytest.raises(StateError, match="Diskless"):
            c.read(offset, length)
        with pytest.raises(StateError, match="Diskless"):
            c.write(0, block(0, 999, 4096))
        with pytest.raises(StateError):
            c.flush()
        assert alive(pid)
        p.kembar("n1", "connect", "r0")
        wait_for(lambda: st(p, "n1")["peer"]["connection"] == "Connected", 20, "reconnect")
        w.verify()
        w.write(20)
        w.verify()
    assert alive(pid)


def test_restart_after_a_disk_failure_comes_back_inconsistent_and_resyncs(
        hw_pair: tuple[Pair, HwDisks]) -> None:
    p, hw = hw_pair
    p.start_fresh()
    with p.client("n1", timeout=30) as c:
        w = Workload(c, p.size, seed=4)
        w.write(40)
        hw.fail("n2")
        w.write(40)
        wait_for(lambda: st(p, "n2")["disk_state"] == "Diskless", 10, "n2 Diskless")
        p.kembar("n2", "down", "r0")
        # Up again on a disk that still fails: Diskless at once (the start probe).
        p.kembar("n2", "up", "r0")
        assert st(p, "n2")["disk_state"] == "Diskless"
        p.kembar("n2", "down", "r0")
        hw.repair("n2")
        w.write(20)
        up = p.kembar("n2", "up", "r0").stdout
        assert "UpToDate" not in up, up  # the metadata remembers the failure
        p.wait_synced(60)
        w.verify()
    assert hw.image("n1") == hw.image("n2")
