"""Resync: only marked blocks travel; checksum-based resync; online verify; rate limit;
the activity log after a crash of the Primary; failover to the Secondary."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Callable

from kembar.lab.pair import MiB, Pair, wait_for

BLOCK = 4096


def _rs(p: Pair, node: str, key: str = "rs_sent") -> int:
    return int(p.st(node)["counters"][key])


def test_only_marked_blocks_travel(make_pair: Callable[..., Pair]) -> None:
    p = make_pair()
    p.start_fresh()
    sent0, recv0 = _rs(p, "n1"), _rs(p, "n2", "rs_received")
    p.kembar("n1", "disconnect", "r0")
    blocks: set[int] = set()
    with p.client("n1") as c:
        for off, n in [(0, 10), (4096 * 7, 4096), (3 * MiB + 100, 5000), (9 * MiB, 64 * 1024)]:
            c.write(off, os.urandom(n))
            blocks.update(range(off // BLOCK, (off + n - 1) // BLOCK + 1))
        c.flush()
    st = p.st("n1")
    assert st["out_of_sync"] == len(blocks) * BLOCK
    assert st["peer"]["connection"] == "StandAlone"
    p.kembar("n1", "connect", "r0")
    p.wait_synced()
    assert p.identical()
    assert _rs(p, "n1") - sent0 == len(blocks) * BLOCK
    assert _rs(p, "n2", "rs_received") - recv0 == len(blocks) * BLOCK


def test_checksum_resync_sends_only_differing_blocks(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(options={"csums_alg": "sha256"})
    p.start_fresh()
    with p.client("n1") as c:
        c.write(0, b"k" * MiB)
    sent0 = _rs(p, "n1")
    p.kembar("n1", "disconnect", "r0")
    with p.client("n1") as c:
        c.write(0, b"k" * MiB)  # the same bytes again: 256 marked blocks, all equal
        c.write(2 * MiB, b"new" * 1000)  # 3000 bytes: one block that really differs
    assert p.st("n1")["out_of_sync"] == 257 * BLOCK
    p.kembar("n1", "connect", "r0")
    p.wait_synced()
    assert p.identical()
    assert _rs(p, "n1") - sent0 == BLOCK


def test_online_verify_finds_and_marks_out_of_sync_blocks(make_pair: Callable[..., Pair]) -> None:
    p = make_pair()
    p.start_fresh()
    with p.client("n1") as c:
        c.write(0, os.urandom(2 * MiB))
    # damage two blocks of the Secondary's backing store behind kembar's back
    fd = os.open(p.backing("n2"), os.O_WRONLY)
    os.pwrite(fd, b"\xff" * 100, 5 * BLOCK + 7)
    os.pwrite(fd, b"\xee" * BLOCK, 300 * BLOCK)
    os.close(fd)
    out = p.kembar("n1", "verify", "r0").stdout
    assert "2 blocks" in out
    assert p.st("n1")["out_of_sync"] == 2 * BLOCK
    assert "out of sync at sector" in p.log("n1")
    p.kembar("n1", "disconnect", "r0")
    p.kembar("n1", "connect", "r0")
    p.wait_synced()
    assert p.identical()
    assert "0 blocks" in p.kembar("n1", "verify", "r0").stdout


def test_resync_rate_limit_is_honoured(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(options={"resync_rate": "2M"})
    p.start_fresh()  # 16 MiB at 2 MiB/s: at least ~7 s
    p.kembar("n1", "disconnect", "r0")
    with p.client("n1") as c:
        c.write(0, os.urandom(6 * MiB))
    p.kembar("n1", "connect", "r0")
    wait_for(lambda: p.st("n1")["peer"]["connection"] == "Connected", 10)
    t0 = time.monotonic()
    st = wait_for(lambda: p.st("n1").get("sync"), 5, "sync progress in status")
    assert st["done_percent"] < 100
    text = p.kembar("n1", "status", "r0").stdout
    assert "replication:SyncSource" in text and "eta:" in text
    p.wait_synced(30)
    assert time.monotonic() - t0 >= 2.0  # 6 MiB at 2 MiB/s cannot be faster than ~3 s
    assert p.identical()


def _writer(p: Pair, done: list[tuple[int, bytes]], stop: threading.Event) -> threading.Thread:
    def run() -> None:
        try:
            with p.client("n1") as c:
                i = 0
                while not stop.is_set():
                    off = (i * 37 % 200) * BLOCK * 16 + (i % 3) * 512
                    data = os.urandom(BLOCK * (1 + i % 8))
                    c.write(off, data)
                    done.append((off, data))
                    i += 1
        except Exception:  # noqa: BLE001 - the process was killed under us
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _expected(done: list[tuple[int, bytes]], size: int) -> tuple[bytearray, bytearray]:
    """What the disk must hold where completed writes landed (mask marks those bytes)."""
    model, mask = bytearray(size), bytearray(size)
    for off, data in done:
        model[off:off + len(data)] = data
        mask[off:off + len(data)] = b"\1" * len(data)
    return model, mask


def _check_completed(image: bytes, done: list[tuple[int, bytes]]) -> None:
    model, mask = _expected(done, len(image))
    for off, data in done[-300:]:
        got = image[off:off + len(data)]
        want = bytes(model[off:off + len(data)])
        assert got == want, f"completed write at {off} lost"


def test_crashed_primary_resyncs_its_activity_log(make_pair: Callable[..., Pair]) -> None:
    p = make_pair()
    p.start_fresh()
    done: list[tuple[int, bytes]] = []
    stop = threading.Event()
    t = _writer(p, done, stop)
    wait_for(lambda: len(done) > 50, 20, "writes")
    p.kill("n1")
    stop.set()
    t.join(10)
    completed = list(done)
    p.up("n1")
    p.wait_synced()
    assert "last Primary of this node crashed" in p.log("n1")
    assert p.identical()
    _check_completed(p.backing("n2").read_bytes(), completed)
    assert "crashed-primary" in p.log("n1")


def test_failover_keeps_every_completed_write(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(protocol="C")
    p.start_fresh()
    done: list[tuple[int, bytes]] = []
    stop = threading.Event()
    t = _writer(p, done, stop)
    wait_for(lambda: len(done) > 50, 20, "writes")
    p.kill("n1", signal.SIGKILL)
    stop.set()
    t.join(10)
    completed = list(done)
    wait_for(lambda: p.st("n2")["peer"]["connection"] != "Connected", 10)
    p.kembar("n2", "primary", "r0")  # UpToDate: the failover promotion is allowed
    with p.client("n2") as c:
        image = c.read(0, p.size)
        c.write(15 * MiB, b"after failover")
    _check_completed(image, completed)
    p.up("n1")  # the crashed Primary comes back and becomes SyncTarget
    p.wait_synced()
    assert p.identical()
    assert p.st("n1")["role"] == "Secondary"


def test_crash_with_a_changed_activity_log_size_marks_the_whole_disk(
        make_pair: Callable[..., Pair]) -> None:
    """If al_extents changed while a crashed Primary was down, its crash regions cannot be
    read back: the whole disk is resynced rather than trusting an empty log."""
    p = make_pair()
    p.start_fresh()
    with p.client("n1") as c:
        c.write(0, os.urandom(MiB))
    p.kill("n1")
    cfg = p.configs["n1"]
    cfg.write_text(cfg.read_text().replace("[disks.r0.on.n1]", "al_extents = 61\n[disks.r0.on.n1]"))
    p.up("n1")
    assert "does not match al_extents" in p.log("n1")
    p.wait_synced()
    assert p.identical()
    assert _rs(p, "n1") == p.size  # all of it went over again


def test_interrupted_full_sync_resumes_where_it_stopped(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(options={"resync_rate": "2M"})  # 8 s for the 16 MiB: time to interrupt
    p.create()
    p.up()
    p.kembar("n1", "primary", "--force", "r0")
    wait_for(lambda: p.st("n1").get("sync", {}).get("done_percent", 0) >= 30, 20, "30% synced")
    p.kembar("n1", "disconnect", "r0")
    first = _rs(p, "n1")
    p.kembar("n1", "connect", "r0")
    p.wait_synced(30)
    assert p.identical()
    assert "resume-full-sync" in p.log("n1")
    total = _rs(p, "n1")
    assert first >= p.size * 0.25
    after = total - first
    assert after <= p.size - first + p.size * 0.1, f"{after} bytes after the resume: started over"
