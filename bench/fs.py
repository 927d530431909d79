"""The `fs` section of bench/run.py: the paper's experiment on a mounted filesystem.

Three configurations, each an ext4 on a device of the same size, backing files in the
bench directory (one host filesystem):

  a  plain    a loop device (`losetup --direct-io=on`) over a local file: no FUSE, no
              replication;
  b  local    the kembar disk of a pair, n1 Primary, while disconnected from its peer:
              FUSE + loop, no replication;
  c  C        the same disk and filesystem, connected, protocol C.

b and c are one pair: `disconnect` turns c into b, `connect` (and the bitmap resync, waited
for until both are UpToDate with nothing out of sync) turns b back into c.  Every round
runs a at each size, then b and c, in the order b, c on even rounds and c, b on odd ones,
so that each round switches once and drift hits all three alike.  A run: drop caches,
`dd if=/dev/zero of=MNT/file bs=1M count=N conv=fsync` timed around the subprocess, then
rm and sync.  The first --fs-fio-runs rounds also run fio: 4 KiB random writes, fsync
after each (IOPS).  MB/s = 10^6 bytes per second, as in the paper; the sizes are 2^20 bytes
(100M = 100 MiB written).

The choices of the block device can be measured by running this section again with the
disk processes' tuning variables in the environment: KEMBAR_LOOP_DIRECT_IO=off (loop
device without direct I/O; default on) and KEMBAR_FUSE_MAX_BACKGROUND=N (queued FUSE
requests, set through fusectl when it is mounted; default 32, kernel default 12).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import run  # bench/run.py: the same module object when run.py is the script (see there)
from kembar.disk import loopdev
from kembar.lab.pair import Pair, release_mounts

MB = 1000 * 1000
PAPER_MBS = {"100M": 50.7, "500M": 34.2, "1G": 31.0}  # the paper's means, protocol C
AIM_VS_LOCAL = 0.8  # c / b, at least
AIM_VS_PLAIN = 0.45  # c / a, at least
AIM_VS_PAPER = 4.0  # c / the paper's mean, at least
CONFIGS = ("plain", "local", "C")  # a, b, c
LETTER = {"plain": "a", "local": "b", "C": "c"}
NAMES = {"plain": "a plain loop", "local": "b kembar disconnected", "C": "c kembar C"}
MKFS = ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard"]
FIO_SIZE = "64M"


# ------------------------------------------------------------------ helpers

def sh(*args: str, timeout: float = 600) -> str:
    res = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({res.returncode}): "
                           f"{res.stderr.strip()}{res.stdout.strip()}"[:2000])
    return res.stdout


def allocate(path: Path, size: int) -> None:
    """A backing file of ``size`` bytes, allocated (all three configurations alike)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)


def loop_info(dev: str) -> dict[str, Any]:
    """What `losetup --list` says of ``dev`` (direct I/O on or off, sector size, file)."""
    out = json.loads(sh("losetup", "--list", "--json", "-O", "NAME,DIO,LOG-SEC,BACK-FILE",
                        dev))
    row = dict(out["loopdevices"][0])
    row["dio"] = str(row.get("dio")).lower() in ("1", "true")
    return row


def make_fs(dev: str, mnt: Path) -> None:
    sh(*MKFS, dev)
    mnt.mkdir(exist_ok=True)
    sh("mount", "-t", "ext4", dev, str(mnt))


def unmount(mnt: Path) -> None:
    if any(m.mountpoint == str(mnt) for m in loopdev.mounts()):
        sh("umount", str(mnt))


def dd_run(mnt: Path, size: int) -> float:
    """MB/s of one cold `dd bs=1M conv=fsync` of ``size`` bytes into a new file."""
    target = mnt / "file"
    run.drop_caches()
    t0 = time.monotonic()
    sh("dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={size // run.MiB}",
       "conv=fsync", "status=none", timeout=max(600.0, size / MB))
    seconds = time.monotonic() - t0
    target.unlink()
    os.sync()
    return size / MB / seconds


def fio_run(mnt: Path, seconds: int) -> dict[str, float]:
    """4 KiB random writes, fsync after each: IOPS (fio's own figure) and mean latencies."""
    target = mnt / "fio.dat"
    run.drop_caches()
    out = sh("fio", "--name=rw", f"--filename={target}", "--rw=randwrite", "--bs=4k",
             f"--size={FIO_SIZE}", "--fsync=1", "--ioengine=psync", f"--runtime={seconds}",
             "--time_based", "--output-format=json", timeout=seconds + 300)
    job = json.loads(out[out.index("{"):])["jobs"][0]
    target.unlink()
    os.sync()
    write = job["write"]
    return {"iops": round(float(write["iops"]), 1),
            "write_lat_us": round(float(write["lat_ns"]["mean"]) / 1000, 1),
            "sync_lat_us": round(float(job.get("sync", {}).get("lat_ns", {}).get("mean", 0))
                                 / 1000, 1)}


def set_connected(pair: Pair, connected: bool) -> float:
    """Disconnect, or connect and wait until both are UpToDate; returns the seconds taken."""
    t0 = time.monotonic()
    if connected:
        pair.kembar("n1", "connect", "r0")
        pair.wait_synced(run.sync_timeout(pair.size))
    else:
        pair.kembar("n1", "disconnect", "r0")
    return time.monotonic() - t0


def disk_size(sizes: list[int]) -> int:
    """The largest write plus room for ext4 (half of it, at least 64 MiB), whole MiB."""
    top = max(sizes)
    return top + max(top // 2 // run.MiB * run.MiB, 64 * run.MiB)


# ------------------------------------------------------------------ the section

def bench_fs(base: Path, sizes: list[int], runs: int, fio_runs: int,
             fio_seconds: int) -> dict[str, Any]:
    size = disk_size(sizes)
    out: dict[str, Any] = {
        "units": "MB/s = 10^6 bytes/s; sizes in bytes (100M = 100 x 2^20); IOPS",
        "disk_size": size, "sizes": sizes, "runs": runs, "fio_runs": fio_runs,
        "fio_seconds": fio_seconds, "mkfs": " ".join(MKFS), "mount": "ext4, defaults",
        "dd_cmd": "dd if=/dev/zero of=MNT/file bs=1M count=N conv=fsync (cold: caches dropped)",
        "fio_cmd": (f"fio --rw=randwrite --bs=4k --size={FIO_SIZE} --fsync=1 --ioengine=psync "
                    f"--runtime={fio_seconds} --time_based"),
        "pairs": "one pair for b and c: disconnect -> b, connect + wait synced -> c",
        "aims": {"c/b": AIM_VS_LOCAL, "c/a": AIM_VS_PLAIN, "c/paper": AIM_VS_PAPER},
        "paper_mbs": PAPER_MBS,
        "dd_mbs": {c: {run.label(s): [] for s in sizes} for c in CONFIGS},
        "fio": {c: [] for c in CONFIGS}, "switches": [],
    }
    if not run.fits(base, 3 * size, f"fs ({run.label(size)} disks)"):
        return {}
    run.note("fs: both nodes' backing files share one host disk here, so a connected write "
             "hits that disk twice (a lab artefact, not a property of kembar)")
    plain_file = base / "kembar-bench-plain.img"
    plain_mnt = base / "kembar-bench-mnt-plain"
    plain_dev = ""
    pair = run.new_pair(base, "kembar-bench-fs", size, "C")
    kembar_mnt = pair.root / "mnt"
    try:
        print(f"fs: plain loop device and a kembar pair of {run.label(size)} ...", flush=True)
        allocate(plain_file, size)
        plain_dev = sh("losetup", "--find", "--show", "--direct-io=on", str(plain_file)).strip()
        make_fs(plain_dev, plain_mnt)
        for node in ("n1", "n2"):
            allocate(pair.backing(node), size)
        out["initial_sync_s"] = round(run.start(pair, run.sync_timeout(size)), 2)
        dev = os.path.realpath(pair.device("n1"))
        make_fs(dev, kembar_mnt)
        out["loop"] = {"plain": loop_info(plain_dev), "kembar": loop_info(dev)}
        mnts = {"plain": plain_mnt, "local": kembar_mnt, "C": kembar_mnt}
        before = pair.st("n1")["counters"]["connects"]
        connected = True
        for r in range(runs):
            order = ["local", "C"] if r % 2 == 0 else ["C", "local"]
            for config in ["plain", *order]:
                if config != "plain" and connected != (config == "C"):
                    connected = config == "C"
                    out["switches"].append({"round": r, "to": config,
                                            "s": round(set_connected(pair, connected), 2)})
                line = []
                for s in sizes:
                    mbs = dd_run(mnts[config], s)
                    out["dd_mbs"][config][run.label(s)].append(round(mbs, 1))
                    line.append(f"{run.label(s)} {mbs:.1f}")
                if r < fio_runs:
                    f = fio_run(mnts[config], fio_seconds)
                    out["fio"][config].append(f)
                    line.append(f"fio {f['iops']:.0f} IOPS")
                print(f"fs round {r + 1}/{runs} {NAMES[config]}: {', '.join(line)}", flush=True)
        st = pair.st("n1")
        out["block_io"] = st["block"]["io"]
        out["reconnects"] = st["counters"]["connects"] - before - sum(
            1 for s in out["switches"] if s["to"] == "C")
        if out["reconnects"]:
            run.note(f"fs: the connection dropped {out['reconnects']}x during the runs "
                     "(see the disk logs)")
        unmount(kembar_mnt)
        run.stop(pair)
    except Exception as exc:  # noqa: BLE001 - report and go on with the next section
        run.note(f"fs failed: {exc!r}"[:2000])
        out["error"] = repr(exc)[:2000]
    finally:
        for mnt in (kembar_mnt, plain_mnt):
            try:
                unmount(mnt)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                run.note(f"fs: {exc}"[:500])
        if plain_dev:
            subprocess.run(["losetup", "-d", plain_dev], capture_output=True, check=False)
        release_mounts(lambda path: path.startswith(f"{base}/kembar-bench-"))
        run.remove(pair)
    summarize(out)
    return out


def summarize(out: dict[str, Any]) -> None:
    """Means, spreads, ratios and verdicts into ``out["summary"]``."""
    rows = []
    for s in out["sizes"]:
        key = run.label(s)
        runs = {c: out["dd_mbs"][c][key] for c in CONFIGS}
        if not all(runs.values()):
            continue
        mean = {c: statistics.fmean(v) for c, v in runs.items()}
        paper = PAPER_MBS.get(key)
        row = {"size": s, "runs": len(runs["C"]), **{f"{c}_mbs": round(m, 1)
                                                      for c, m in mean.items()},
               "C_min": min(runs["C"]), "C_max": max(runs["C"]),
               "C_stdev": round(statistics.stdev(runs["C"]), 1) if len(runs["C"]) > 1 else 0.0,
               "c/b": round(mean["C"] / mean["local"], 3),
               "c/a": round(mean["C"] / mean["plain"], 3),
               "paper_mbs": paper, "c/paper": round(mean["C"] / paper, 2) if paper else None}
        row["ok"] = (row["c/b"] >= AIM_VS_LOCAL and row["c/a"] >= AIM_VS_PLAIN
                     and (paper is None or row["c/paper"] >= AIM_VS_PAPER))
        rows.append(row)
    fio = None
    if all(out["fio"][c] for c in CONFIGS):
        mean = {c: statistics.fmean(f["iops"] for f in out["fio"][c]) for c in CONFIGS}
        fio = {**{f"{c}_iops": round(m, 1) for c, m in mean.items()},
               "runs": len(out["fio"]["C"]),
               "c/b": round(mean["C"] / mean["local"], 3),
               "c/a": round(mean["C"] / mean["plain"], 3)}
        fio["ok"] = fio["c/b"] >= AIM_VS_LOCAL and fio["c/a"] >= AIM_VS_PLAIN
    out["summary"] = {"dd": rows, "fio": fio}


# ------------------------------------------------------------------ report

def report(con: Any, res: dict[str, Any]) -> None:
    from rich.table import Table

    summary = res.get("summary") or {}
    if summary.get("dd"):
        n = max(r["runs"] for r in summary["dd"])
        t = Table(title=f"Filesystem: ext4, dd bs=1M conv=fsync, cold, mean of {n} runs, MB/s = "
                        "10^6 bytes/s (a = plain loop over a local file, b = kembar "
                        "disconnected, c = kembar connected, protocol C)")
        for col in ("size", "a MB/s", "b MB/s", "c MB/s", "c min–max", "c/b ≥ 0.8",
                    "c/a ≥ 0.45", "paper MB/s", "c/paper ≥ 4", ""):
            t.add_column(col, justify="left" if col == "" else "right")
        for r in summary["dd"]:
            t.add_row(run.label(r["size"]), f"{r['plain_mbs']:.1f}", f"{r['local_mbs']:.1f}",
                      f"{r['C_mbs']:.1f}", f"{r['C_min']:.1f}–{r['C_max']:.1f}",
                      f"{r['c/b']:.2f}", f"{r['c/a']:.2f}",
                      f"{r['paper_mbs']}" if r["paper_mbs"] else "–",
                      f"{r['c/paper']:.1f}" if r["c/paper"] else "–", run.verdict(r["ok"]))
        con.print(t)
        for r in summary["dd"]:
            key = run.label(r["size"])
            per = "; ".join(f"{LETTER[c]} " + " ".join(f"{x:.0f}" for x in res["dd_mbs"][c][key])
                            for c in CONFIGS)
            con.print(f"  per run {key} MB/s: {per}", markup=False)
    fio = summary.get("fio")
    if fio:
        t = Table(title=f"Filesystem: 4 KiB random writes, fsync after each (fio psync, "
                        f"{FIO_SIZE} file, {res['fio_seconds']} s), IOPS, mean of {fio['runs']} "
                        "runs")
        for col in ("a IOPS", "b IOPS", "c IOPS", "c/b ≥ 0.8", "c/a ≥ 0.45", ""):
            t.add_column(col, justify="left" if col == "" else "right")
        t.add_row(f"{fio['plain_iops']:.0f}", f"{fio['local_iops']:.0f}",
                  f"{fio['C_iops']:.0f}", f"{fio['c/b']:.2f}", f"{fio['c/a']:.2f}",
                  run.verdict(fio["ok"]))
        con.print(t)
    if res.get("loop"):
        con.print("  loop devices: " + "; ".join(
            f"{k} {v.get('name')} direct-io {'on' if v['dio'] else 'off'}, "
            f"{v.get('log-sec')}-byte sectors" for k, v in res["loop"].items()), markup=False)
    io = res.get("block_io")
    if io:
        con.print(f"  kembar n1 FUSE file: {io['writes']:,} writes, {io['written_bytes']:,} "
                  f"bytes, largest {io['max_write']:,} bytes, {io['fsyncs']:,} fsyncs",
                  markup=False)
