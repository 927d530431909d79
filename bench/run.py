"""kembar benchmarks: every figure is a ratio to a baseline measured in the same run.

    .venv/bin/python bench/run.py                      # full run (100M, 500M, 1G; 1 GiB sync)
    .venv/bin/python bench/run.py --quick              # smoke run (16M, 32M; 32M sync;
                                                       # fs 16M, 64M, 2 rounds), ~1.5 min
    .venv/bin/python bench/run.py --sizes 100M,1G --only writes,memory
    .venv/bin/python bench/run.py --only fs --fs-runs 3

Sections:
  writes  replicated sequential 1 MiB writes (DiskClient.submit_write, window 16, final
          flush) per protocol A/B/C, against os.pwrite of the same bytes to two local files
          of the same size on the same filesystem plus fsync of both; 3 interleaved rounds
          (--repeat), the median ratio is reported (these disks are noisy).
  sync    full initial sync of a disk holding real data, against a plain copy of the same
          file over one TCP socket between two processes (read, sendall, recv, write, fsync).
  resync  resync after 10 MiB changed while disconnected, against the full sync time.
  memory  VmRSS of both disk processes after serving a disk's worth of writes, against a
          bare interpreter started the same way.
  fs      (bench/fs.py) the paper's experiment on ext4: cold `dd bs=1M conv=fsync` of
          100M, 500M, 1G (--fs-sizes), --fs-runs rounds (default 10), in MB/s (10^6 bytes/s)
          next to the paper's means; and fio 4 KiB random writes with fsync (IOPS); on a
          kembar disk connected under protocol C, against the same disk disconnected and
          against a plain loop device over a local file (`losetup --direct-io=on`).
  membership  (bench/membership.py) crash -> "node dead" latency per timing; a soak.
  failover    (bench/failover.py) the client-visible outage through the VIP for a crash,
          a clean stop and the failbacks, per timing (paper 2s/15s, fast 10ms/50ms) and
          group (site + VIP; the site on both nodes + VIP; disk + fs + site + VIP),
          --failover-runs each (default 10); then a client that ignores gratuitous ARP,
          without and with a virtual MAC (--failover-garp-runs, default 3).
  peers   (bench/peers.py) Heartbeat 3.0.6 and keepalived 2.2.7 measured the same way in
          the same lab (site + VIP): paper, 10ms/30ms/50ms and 200ms/500ms/1s timings;
          advert_int 0.1 and 1; --failover-runs each.

Page-cache state of every figure: "cold" = `sync; echo 3 > /proc/sys/vm/drop_caches`, 1 s
sleep, then measure; "cached" = the same writes again over data already in the page cache.
Prints a table and writes bench/results/latest.json.  Everything lives in one directory
/var/tmp/kembar-bench-*, removed at the end; every disk process is killed by PID.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import re
import shutil
import statistics
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kembar.lab.pair import Pair, alive

if __name__ == "__main__":  # bench/fs.py does `import run`: give it this module, not a copy
    sys.modules.setdefault("run", sys.modules[__name__])
import failover  # noqa: E402 - after the alias above
import fs  # noqa: E402
import membership  # noqa: E402
import peers  # noqa: E402

MiB = 1024 * 1024
CHUNK = MiB
WINDOW = int(os.environ.get("KEMBAR_BENCH_WINDOW", "16"))
REPEAT = 3  # rounds per write figure (--repeat); the median ratio is reported
PAD = MiB  # a disk is the written size plus a little
AIM_WRITES = {"A": 0.9, "B": None, "C": 0.8}  # replicated / baseline, at least
AIM_SYNC = 0.8  # baseline time / sync time, at least
AIM_RESYNC = 0.05  # resync time / full sync time, below
AIM_RSS_MIB = 100  # per disk process, below
RESYNC_CHANGED = 10  # MiB changed while disconnected
SECTIONS = ("writes", "sync", "resync", "memory", "fs", "membership", "failover", "peers")
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
LOGS = RESULTS.parent / "logs"  # the disk logs of the last run

PAIRS: list[Pair] = []  # every pair started, for the final cleanup
NOTES: list[str] = []


# ------------------------------------------------------------------ helpers

def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (use e.g. 100M, 1G)")
    return int(m.group(1)) * {"": 1, "K": 1024, "M": MiB, "G": 1024 * MiB}[m.group(2).upper()]


def label(nbytes: int) -> str:
    if nbytes % (1024 * MiB) == 0:
        return f"{nbytes // (1024 * MiB)}G"
    return f"{nbytes // MiB}M" if nbytes % MiB == 0 else str(nbytes)


def note(text: str) -> None:
    NOTES.append(text)
    print(f"note: {text}", flush=True)


def drop_caches() -> None:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
    except OSError as exc:
        if not any("drop_caches" in n for n in NOTES):
            note(f"cannot drop caches ({exc}); 'cold' figures are not cold")
    time.sleep(1)


def prepare(cache: str) -> None:
    """Put the page cache in the named state: 'cold' drops it; 'cached' leaves it."""
    if cache == "cold":
        drop_caches()


def mibs(nbytes: int, seconds: float) -> float:
    return nbytes / MiB / seconds if seconds > 0 else float("inf")


def pattern(seed: int = 1) -> bytes:
    """1 MiB of random bytes, reused for every block (no compression anywhere)."""
    return random.Random(seed).randbytes(CHUNK)


def fits(base: Path, need: int, what: str) -> bool:
    free = shutil.disk_usage(base).free
    if free < need + 256 * MiB:
        note(f"skipping {what}: needs {label(need)} + 256M, {free // MiB}M free in {base}")
        return False
    return True


def vm_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MiB."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


def new_pair(base: Path, name: str, size: int, protocol: str = "C") -> Pair:
    root = base / name
    root.mkdir()
    pair = Pair(root, size=size, protocol=protocol)
    PAIRS.append(pair)
    return pair


def both(pair: Pair, *args: str) -> None:
    """A `kembar disk` verb on n1 and n2 at the same time (each CLI run is ~0.4 s)."""
    with ThreadPoolExecutor(2) as pool:
        for fut in [pool.submit(pair.kembar, n, *args) for n in ("n1", "n2")]:
            fut.result()


def start(pair: Pair, timeout: float) -> float:
    """create-md, up, primary --force on n1; returns seconds until both are synced."""
    both(pair, "create-md", "r0")
    both(pair, "up", "r0")
    t0 = time.monotonic()
    with pair.client("n1", timeout=30) as c:
        c.control("primary", force=True)
    pair.wait_synced(timeout)
    return time.monotonic() - t0


def stop(pair: Pair) -> None:
    """`down` on both (through the control socket), then wait for both processes to exit."""
    pids = [pair.pid(n) for n in ("n1", "n2")]
    for node in ("n1", "n2"):
        with pair.client(node, timeout=30) as c:
            c.control("down")
    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    pair.cleanup()


def remove(pair: Pair) -> None:
    """Kill the pair's processes, keep its logs under bench/results/logs/, delete its files."""
    pair.cleanup()
    LOGS.mkdir(parents=True, exist_ok=True)
    for node in ("n1", "n2"):
        (LOGS / f"{pair.root.name}-{node}.log").write_text(pair.log(node))
    shutil.rmtree(pair.root, ignore_errors=True)


def sync_timeout(size: int) -> float:
    return max(120.0, size / (5 * MiB))  # at least 5 MiB/s


def counters(pair: Pair, node: str = "n1") -> dict[str, int]:
    return dict(pair.st(node)["counters"])


# ------------------------------------------------------------------ writes

def replicated_pass(pair: Pair, nbytes: int, buf: bytes) -> tuple[float, float]:
    """Seconds for the whole pass, and of them for the final flush (wait + fsyncs)."""
    with pair.client("n1", window=WINDOW) as c:
        t0 = time.monotonic()
        for off in range(0, nbytes, CHUNK):
            c.submit_write(off, buf[:min(CHUNK, nbytes - off)])
        t1 = time.monotonic()
        c.flush()
        t2 = time.monotonic()
        return t2 - t0, t2 - t1


def baseline_pass(paths: list[Path], nbytes: int, buf: bytes) -> float:
    """os.pwrite of the same bytes to each file in 1 MiB pieces, then fsync of each."""
    fds = [os.open(p, os.O_WRONLY) for p in paths]
    try:
        t0 = time.monotonic()
        for off in range(0, nbytes, CHUNK):
            piece = buf[:min(CHUNK, nbytes - off)]
            for fd in fds:
                os.pwrite(fd, piece, off)
        for fd in fds:
            os.fsync(fd)
        return time.monotonic() - t0
    finally:
        for fd in fds:
            os.close(fd)


def bench_writes_one(base: Path, size: int, protocol: str, buf: bytes) -> list[dict[str, Any]]:
    """REPEAT rounds, each: replicated cold, replicated cached, baseline cold, baseline
    cached (baseline on two other files of the same size on the same filesystem), so that
    both sides of a ratio see the same moment of a noisy disk; medians are reported."""
    pair = new_pair(base, f"writes-{label(size)}-{protocol}", size + PAD, protocol)
    try:
        paths = [pair.root / "baseline-1.img", pair.root / "baseline-2.img"]
        for path in [pair.backing("n1"), pair.backing("n2"), *paths]:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, size + PAD)  # allocated, all four alike
            finally:
                os.close(fd)
        initial = start(pair, sync_timeout(size))
        before = counters(pair)
        runs: dict[str, list[tuple[float, float, float]]] = {"cold": [], "cached": []}
        for _ in range(REPEAT):
            repl, flush = {}, {}
            for cache in ("cold", "cached"):
                prepare(cache)
                repl[cache], flush[cache] = replicated_pass(pair, size, buf)
            for cache in ("cold", "cached"):
                prepare(cache)
                runs[cache].append((repl[cache], flush[cache], baseline_pass(paths, size, buf)))
        after = counters(pair)
        rss = {n: vm_status(pair.pid(n)) for n in ("n1", "n2")}
        reconnects = after["connects"] - before["connects"]
        if reconnects:
            note(f"writes {label(size)} {protocol}: the connection dropped {reconnects}x "
                 "during the writes (see the disk logs)")
        stop(pair)
        rows = []
        for cache in ("cold", "cached"):
            ratios = [b / r for r, _, b in runs[cache]]
            r = statistics.median(x[0] for x in runs[cache])
            f = statistics.median(x[1] for x in runs[cache])
            b = statistics.median(x[2] for x in runs[cache])
            rows.append({"size": size, "protocol": protocol, "cache": cache,
                         "replicated_s": round(r, 3), "baseline_s": round(b, 3),
                         "replicated_flush_s": round(f, 3),
                         "replicated_mibs": round(mibs(size, r), 1),
                         "baseline_mibs": round(mibs(size, b), 1),
                         "ratio": round(statistics.median(ratios), 3),
                         "ratios": [round(x, 3) for x in ratios],
                         "aim": AIM_WRITES[protocol],
                         "reconnects": reconnects, "initial_sync_s": round(initial, 2),
                         "rss_mib": {n: round(v["VmRSS"], 1) for n, v in rss.items()},
                         "hwm_mib": {n: round(v["VmHWM"], 1) for n, v in rss.items()}})
        return rows
    finally:
        remove(pair)


def bench_writes(base: Path, sizes: list[int]) -> list[dict[str, Any]]:
    buf = pattern()
    rows: list[dict[str, Any]] = []
    for size in sizes:
        if not fits(base, 4 * (size + PAD), f"writes {label(size)}"):
            continue
        for protocol in ("A", "B", "C"):
            print(f"writes {label(size)} protocol {protocol} ...", flush=True)
            try:
                rows += bench_writes_one(base, size, protocol, buf)
            except Exception as exc:  # noqa: BLE001 - report and go on with the next
                note(f"writes {label(size)} {protocol} failed: {exc!r}"[:2000])
                rows.append({"size": size, "protocol": protocol, "error": repr(exc)[:2000]})
    return rows


# ------------------------------------------------------------------ sync / resync

def fill(path: Path, size: int) -> None:
    """Real (non-sparse) random-ish data: the pattern, each MiB stamped with its index."""
    buf = bytearray(pattern(2))
    fd = os.open(path, os.O_WRONLY)
    try:
        for i, off in enumerate(range(0, size, CHUNK)):
            buf[:8] = i.to_bytes(8, "little")
            os.pwrite(fd, memoryview(buf)[:min(CHUNK, size - off)], off)
        os.fsync(fd)
    finally:
        os.close(fd)


def _receiver(path: str, size: int, ports: Any, done: Any) -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        ports.put(srv.getsockname()[1])
        conn, _ = srv.accept()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    fd = os.open(path, os.O_WRONLY)
    got = 0
    with conn:
        while got < size:
            n = 0
            want = min(CHUNK, size - got)
            while n < want:
                k = conn.recv_into(view[n:want])
                if k == 0:
                    raise SystemExit("sender closed early")
                n += k
            os.write(fd, view[:n])
            got += n
    os.fsync(fd)
    os.close(fd)
    done.put(time.monotonic())


def _sender(path: str, size: int, port: int, go: Any) -> None:
    fd = os.open(path, os.O_RDONLY)
    with socket.create_connection(("127.0.0.1", port)) as s:
        go.wait()
        sent = 0
        while sent < size:
            data = os.read(fd, CHUNK)
            if not data:
                break
            s.sendall(data)
            sent += len(data)
    os.close(fd)


def tcp_copy(src: Path, dst: Path, size: int) -> float:
    """The baseline of a sync: one file copied over TCP between two processes, fsynced."""
    with open(dst, "wb") as fh:
        fh.truncate(size)  # sparse, like a fresh backing file
    ctx = mp.get_context("spawn")
    ports, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    recv = ctx.Process(target=_receiver, args=(str(dst), size, ports, done))
    recv.start()
    send = None
    try:
        port = ports.get(timeout=30)
        send = ctx.Process(target=_sender, args=(str(src), size, port, go))
        send.start()
        time.sleep(0.5)  # both processes up and connected before the clock starts
        prepare("cold")
        t0 = time.monotonic()
        go.set()
        t1 = done.get(timeout=sync_timeout(size))
        return float(t1 - t0)
    finally:
        for p in (send, recv):
            if p is not None:
                p.join(10)
                if p.is_alive():
                    p.kill()
                    p.join()


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def log_times(pair: Pair, node: str, needle: str) -> list[float]:
    out = []
    for line in pair.log(node).splitlines():
        m = LOG_TIME.match(line)
        if m and needle in line:
            out.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return out


def log_sync_seconds(pair: Pair, since: float) -> float | None:
    """From n1's first 'connected ... SyncSource' after ``since`` (wall clock) to n2's
    first 'resync finished' after that (a dropped connection adds later ones)."""
    begin = [t for t in log_times(pair, "n1", "), SyncSource") if t >= since - 0.01]
    if not begin:
        return None
    end = [t for t in log_times(pair, "n2", "resync finished") if t >= begin[0] - 0.01]
    return round(end[0] - begin[0], 3) if end else None


def timed_until_synced(pair: Pair, verb: str, **args: Any) -> float:
    """Issue a control verb on n1; seconds until both sides are synced (50 ms polls)."""
    t0 = time.monotonic()
    with pair.client("n1", timeout=30) as c:
        c.control(verb, **args)
    pair.wait_synced(sync_timeout(pair.size))
    return time.monotonic() - t0


def bench_sync(base: Path, size: int, do_resync: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    if not fits(base, 3 * size, f"sync {label(size)}"):
        return {}, {}
    print(f"sync {label(size)} ...", flush=True)
    pair = new_pair(base, f"sync-{label(size)}", size, "C")
    sync: dict[str, Any] = {"size": size, "cache": "cold"}
    resync: dict[str, Any] = {}
    try:
        fill(pair.backing("n1"), size)
        copy = base / "tcp-copy.img"
        sync["baseline_s"] = round(tcp_copy(pair.backing("n1"), copy, size), 3)
        copy.unlink()
        both(pair, "create-md", "r0")
        both(pair, "up", "r0")
        prepare("cold")
        wall = time.time()
        t = timed_until_synced(pair, "primary", force=True)
        st = counters(pair)
        if st["connects"] != 2:  # the first (no sync), then the one of primary --force
            note(f"sync: the connection was made {st['connects']}x (expected 2): it dropped "
                 f"during the sync; see {LOGS}")
        sync.update({"sync_s": round(t, 3), "sync_log_s": log_sync_seconds(pair, wall),
                     "rs_sent": st["rs_sent"], "connects": st["connects"],
                     "sync_mibs": round(mibs(size, t), 1),
                     "baseline_mibs": round(mibs(size, sync["baseline_s"]), 1),
                     "ratio": round(sync["baseline_s"] / t, 3), "aim": AIM_SYNC})
        if do_resync:
            print(f"resync after {RESYNC_CHANGED} MiB changed ...", flush=True)
            resync = bench_resync(pair, t)
    except Exception as exc:  # noqa: BLE001 - report and go on
        note(f"sync {label(size)} failed: {exc!r}"[:2000])
        sync["error"] = repr(exc)[:2000]
    finally:
        remove(pair)
    return sync, resync


def bench_resync(pair: Pair, full_s: float) -> dict[str, Any]:
    before = counters(pair)
    pair.kembar("n1", "disconnect", "r0")
    blocks = random.Random(3).sample(range(pair.size // CHUNK), RESYNC_CHANGED)
    buf = pattern(4)
    with pair.client("n1", window=WINDOW) as c:
        for b in blocks:
            c.submit_write(b * CHUNK, buf)
        c.flush()
    out_of_sync = pair.st("n1")["out_of_sync"]
    prepare("cold")
    wall = time.time()
    t = timed_until_synced(pair, "connect")
    after = counters(pair)
    if after["connects"] - before["connects"] != 1:
        note(f"resync: {after['connects'] - before['connects']} connects (expected 1)")
    return {"size": pair.size, "changed": RESYNC_CHANGED * MiB, "cache": "cold",
            "out_of_sync_before": out_of_sync,
            "rs_sent": after["rs_sent"] - before["rs_sent"],
            "resync_s": round(t, 3), "resync_log_s": log_sync_seconds(pair, wall),
            "full_sync_s": round(full_s, 3), "ratio": round(t / full_s, 4),
            "aim": AIM_RESYNC}


# ------------------------------------------------------------------ memory

def bare_rss(codes: list[str]) -> list[float]:
    """VmRSS (MiB) of interpreters started the way `kembar disk up` starts a disk process."""
    procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True, close_fds=True) for code in codes]
    try:
        time.sleep(1.5)
        return [round(vm_status(p.pid)["VmRSS"], 1) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def bench_memory(base: Path, size: int, writes: list[dict[str, Any]]) -> dict[str, Any]:
    """RSS of both disk processes after serving ``size`` of writes (protocol C).

    Reuses the protocol C run of the writes section when it wrote at least ``size``
    (it served two passes: cold and cached); otherwise runs one pass on a fresh pair."""
    bare, imported = bare_rss(["import time; time.sleep(5)",
                               "import kembar.disk.daemon, time; time.sleep(5)"])
    out: dict[str, Any] = {"protocol": "C", "bare_python_mib": bare,
                           "python_with_kembar_imported_mib": imported, "aim_mib": AIM_RSS_MIB}
    done = [r for r in writes if r.get("protocol") == "C" and r.get("cache") == "cold"
            and r["size"] >= size]
    if done:
        r = max(done, key=lambda r: r["size"])
        out.update(written=2 * r["size"], source=f"writes {label(r['size'])} C (cold + cached)")
        rss, hwm = r["rss_mib"], r["hwm_mib"]
    else:
        if not fits(base, 2 * (size + PAD), f"memory {label(size)}"):
            return {}
        print(f"memory after {label(size)} of writes ...", flush=True)
        pair = new_pair(base, f"memory-{label(size)}", size + PAD, "C")
        try:
            start(pair, sync_timeout(size))
            replicated_pass(pair, size, pattern())
            vm = {n: vm_status(pair.pid(n)) for n in ("n1", "n2")}
        except Exception as exc:  # noqa: BLE001
            note(f"memory failed: {exc!r}"[:2000])
            out["error"] = repr(exc)[:2000]
            return out
        finally:
            remove(pair)
        out.update(written=size, source="own pair, one pass")
        rss = {n: round(v["VmRSS"], 1) for n, v in vm.items()}
        hwm = {n: round(v["VmHWM"], 1) for n, v in vm.items()}
    out["nodes"] = {n: {"rss_mib": rss[n], "hwm_mib": hwm[n],
                        "ratio": round(rss[n] / bare, 2)} for n in ("n1", "n2")}
    return out


# ------------------------------------------------------------------ report

def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("ok" if ok else "BELOW AIM")


def report(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=140)
    if res.get("writes"):
        t = Table(title="Replicated writes: sequential 1 MiB, window 16, final flush, median of rounds "
                        "(ratio = replicated / baseline MiB/s; baseline = pwrite to 2 files "
                        "+ fsync both)")
        for col in ("size", "proto", "cache", "replicated MiB/s", "(flush s)", "baseline MiB/s", "ratio",
                    "aim", "", "RSS n1/n2 MiB"):
            t.add_column(col, justify="right" if col not in ("", "cache") else "left")
        for r in res["writes"]:
            if "error" in r:
                t.add_row(label(r["size"]), r["protocol"], "", "error", "", "", "", "", "",
                          r["error"][:40])
                continue
            aim = r["aim"]
            t.add_row(label(r["size"]), r["protocol"], r["cache"], f"{r['replicated_mibs']:.1f}",
                      f"{r['replicated_flush_s']:.2f}",
                      f"{r['baseline_mibs']:.1f}", f"{r['ratio']:.2f}",
                      f"≥ {aim}" if aim else "–",
                      verdict(None if aim is None else r["ratio"] >= aim),
                      f"{r['rss_mib']['n1']:.0f}/{r['rss_mib']['n2']:.0f}")
        con.print(t)
    s = res.get("sync") or {}
    if s.get("sync_s"):
        t = Table(title=f"Full sync of {label(s['size'])} of real data (cold; baseline = copy "
                        "over one TCP socket, 2 processes, fsync; ratio = baseline / sync time)")
        for col in ("sync s", "(from log) s", "sync MiB/s", "baseline s", "baseline MiB/s",
                    "ratio", "aim", ""):
            t.add_column(col, justify="right")
        t.add_row(f"{s['sync_s']:.2f}", f"{s['sync_log_s']}", f"{s['sync_mibs']:.1f}",
                  f"{s['baseline_s']:.2f}", f"{s['baseline_mibs']:.1f}", f"{s['ratio']:.2f}",
                  f"≥ {s['aim']}", verdict(s["ratio"] >= s["aim"]))
        con.print(t)
    r = res.get("resync") or {}
    if r.get("resync_s"):
        t = Table(title=f"Resync after {label(r['changed'])} changed on a {label(r['size'])} "
                        "disk (cold; ratio = resync time / full sync time)")
        for col in ("out of sync", "resync bytes sent", "resync s", "(from log) s",
                    "full sync s", "ratio", "aim", ""):
            t.add_column(col, justify="right")
        t.add_row(label(r["out_of_sync_before"]), f"{r['rs_sent']:,}", f"{r['resync_s']:.3f}",
                  f"{r['resync_log_s']}", f"{r['full_sync_s']:.2f}", f"{r['ratio']:.4f}",
                  f"< {r['aim']}", verdict(r["ratio"] < r["aim"]))
        con.print(t)
    m = res.get("memory") or {}
    if m.get("nodes"):
        t = Table(title=f"Memory after serving {label(m['written'])} of writes ({m['source']}; "
                        f"baseline = bare interpreter {m['bare_python_mib']:.1f} MiB; with "
                        f"kembar imported {m['python_with_kembar_imported_mib']:.1f} MiB)")
        for col in ("process", "VmRSS MiB", "VmHWM MiB", "ratio to bare", "aim", ""):
            t.add_column(col, justify="right")
        for n, v in m["nodes"].items():
            t.add_row(n, f"{v['rss_mib']:.1f}", f"{v['hwm_mib']:.1f}", f"{v['ratio']:.1f}",
                      f"< {m['aim_mib']} MiB", verdict(v["rss_mib"] < m["aim_mib"]))
        con.print(t)
    if res.get("fs"):
        fs.report(con, res["fs"])
    if res.get("membership"):
        membership.report(res["membership"])
    if res.get("failover"):
        failover.report(res["failover"])
    if res.get("peers"):
        peers.report(res["peers"])
    for n in res.get("notes", []):
        con.print(f"note: {n}", markup=False)


# ------------------------------------------------------------------ main

def git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).resolve().parent).stdout.strip()
    except OSError:
        return ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: sizes 16M,32M; 32M sync; "
                    "fs 16M,64M, 2 rounds, fio 3 s")
    ap.add_argument("--sizes", help="write sizes, e.g. 100M,500M,1G")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--repeat", type=int, default=None,
                    help="rounds per write figure (default 3, --quick 1); median reported")
    ap.add_argument("--sync-size", type=parse_size, help="disk size of the sync/resync "
                    "and memory runs (default 1G, 32M with --quick)")
    ap.add_argument("--fs-sizes", help="dd sizes of the fs section (default 100M,500M,1G; "
                    "16M,64M with --quick)")
    ap.add_argument("--fs-runs", type=int, help="rounds of the fs section (default 10, "
                    "--quick 2)")
    ap.add_argument("--fs-fio-runs", type=int, help="rounds of the fs section that also run "
                    "fio (default 3, --quick 1)")
    ap.add_argument("--membership-crashes", type=int, help="lab crashes per timing in the "
                    "membership section (default 20, --quick 2)")
    ap.add_argument("--membership-soak", type=float, help="seconds of the 10ms/50ms soak "
                    "under disk load (default 600, --quick 10; 0 skips it)")
    ap.add_argument("--failover-runs", type=int, help="runs (crash + failback, clean stop + "
                    "failback) per timing and group in the failover section (default 10, "
                    "--quick 1)")
    ap.add_argument("--failover-timings", default="paper,fast",
                    help="failover timings: paper (2s/15s), fast (10ms/50ms)")
    ap.add_argument("--failover-groups", default="vip,clone,full",
                    help="failover groups: vip (site + VIP), clone (the site on both nodes, "
                         "only the VIP moves), full (disk, fs, site, VIP)")
    ap.add_argument("--failover-garp-runs", type=int, help="crashes with a client that "
                    "ignores gratuitous ARP, without and with a virtual MAC (default 3, "
                    "--quick 0; about a minute each without)")
    args = ap.parse_args(argv)
    default = "16M,32M" if args.quick else "100M,500M,1G"
    args.size_list = [parse_size(s) for s in (args.sizes or default).split(",") if s]
    args.sections = set((args.only or ",".join(SECTIONS)).split(","))
    bad = args.sections - set(SECTIONS)
    if bad:
        ap.error(f"unknown sections {sorted(bad)}; choose from {','.join(SECTIONS)}")
    if args.sync_size is None:
        args.sync_size = 32 * MiB if args.quick else 1024 * MiB
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    args.fs_size_list = [parse_size(s) for s in
                         (args.fs_sizes or ("16M,64M" if args.quick else "100M,500M,1G"))
                         .split(",") if s]
    if args.fs_runs is None:
        args.fs_runs = 2 if args.quick else 10
    if args.fs_fio_runs is None:
        args.fs_fio_runs = 1 if args.quick else 3
    args.fs_fio_seconds = 3 if args.quick else 10
    if args.membership_crashes is None:
        args.membership_crashes = 2 if args.quick else 20
    if args.membership_soak is None:
        args.membership_soak = 10.0 if args.quick else 600.0
    if args.failover_runs is None:
        args.failover_runs = 1 if args.quick else 10
    if args.failover_garp_runs is None:
        args.failover_garp_runs = 0 if args.quick else 3
    if args.failover_garp_runs < 0:
        ap.error("--failover-garp-runs must be at least 0")
    args.failover_timing_list = [t for t in args.failover_timings.split(",") if t]
    args.failover_group_list = [g for g in args.failover_groups.split(",") if g]
    if set(args.failover_timing_list) - set(failover.TIMINGS) or \
            set(args.failover_group_list) - set(failover.GROUPS) or args.failover_runs < 1:
        ap.error(f"--failover-timings from {','.join(failover.TIMINGS)}, --failover-groups "
                 f"from {','.join(failover.GROUPS)}, --failover-runs at least 1")
    if args.fs_runs < 1 or args.fs_fio_runs < 0:
        ap.error("--fs-runs must be at least 1, --fs-fio-runs at least 0")
    global REPEAT
    REPEAT = args.repeat
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/run.py needs root (drop_caches, the disk processes' socket)", file=sys.stderr)
        return 2
    shutil.rmtree(LOGS, ignore_errors=True)
    base = Path(tempfile.mkdtemp(prefix="kembar-bench-", dir="/var/tmp"))
    started = time.monotonic()
    res: dict[str, Any] = {
        "when": datetime.now().isoformat(timespec="seconds"), "git": git_rev(),
        "argv": sys.argv[1:], "host": platform.node(), "kernel": platform.release(),
        "python": platform.python_version(), "cpus": os.cpu_count(), "dir": str(base),
        "units": "MiB = 2^20 bytes; seconds; ratios are dimensionless",
    }
    main_pid = os.getpid()

    def on_term(*_: Any) -> None:
        # Forked helpers (pyroute2 makes namespaces in child processes and SIGTERMs them)
        # inherit this handler: they must die, not unwind the copied stack into this
        # process's `finally:` clauses (which would tear the lab down under our feet).
        if os.getpid() != main_pid:
            os._exit(143)
        sys.exit(143)

    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        if "writes" in args.sections:
            res["writes"] = bench_writes(base, args.size_list)
        if args.sections & {"sync", "resync"}:
            res["sync"], res["resync"] = bench_sync(base, args.sync_size,
                                                    "resync" in args.sections)
        if "memory" in args.sections:
            res["memory"] = bench_memory(base, args.sync_size, res.get("writes", []))
        if "fs" in args.sections:
            res["fs"] = fs.bench_fs(base, args.fs_size_list, args.fs_runs, args.fs_fio_runs,
                                    args.fs_fio_seconds)
        if "membership" in args.sections:
            res["membership"] = membership.bench_membership(base, args.membership_crashes,
                                                            args.membership_soak)
        if "failover" in args.sections:
            res["failover"] = failover.bench_failover(base, args.failover_runs,
                                                      args.failover_timing_list,
                                                      args.failover_group_list,
                                                      args.failover_garp_runs)
        if "peers" in args.sections:
            res["peers"] = []
            for tm in peers.TIMINGS.values():
                for sc in peers.SCENARIOS:
                    res["peers"].append(peers.measure_heartbeat(tm, args.failover_runs, sc))
            for adv in peers.ADVERTS:
                for sc in peers.SCENARIOS:
                    res["peers"].append(peers.measure_keepalived(adv, args.failover_runs, sc))
    finally:
        for pair in PAIRS:
            pair.cleanup()
        shutil.rmtree(base, ignore_errors=True)
        signal.signal(signal.SIGTERM, old_term)
    res["notes"] = NOTES
    res["seconds"] = round(time.monotonic() - started, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    report(res)
    print(f"{res['seconds']} s; results in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
