"""``make demo``: two nodes replicate a disk holding a site, the Primary crashes, the site
and its database survive on the other node.

For now this is the replicated-disk demo (the virtual IP, membership and services come with
later issues): two disk processes on this host, n1 on 127.0.0.1 and n2 on 127.0.0.2, each
with its own backing file under /tmp/kembar-demo-*.  The Primary's block device carries a
real ext4 with the site's page and an SQLite database of orders, as the paper's /srv/data.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from kembar.lab.pair import MiB, Pair, wait_for

SITE = """<!doctype html><title>example.com</title>
<h1>Welcome to example.com</h1><p>Served from a kembar replicated disk.</p>
"""


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def show(p: Pair, node: str) -> None:
    print(p.kembar(node, "status", "r0").stdout.rstrip())


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def place_order(db: Path, i: int) -> None:
    con = sqlite3.connect(db, timeout=5)
    # FULL (the default) leaves the commit's last step, deleting the rollback journal,
    # unsynced: a crash right after COMMIT can roll that transaction back. EXTRA syncs it.
    con.execute("PRAGMA synchronous=EXTRA")
    try:
        with con:  # one transaction, committed (fsync) when the block ends
            con.execute("INSERT INTO orders VALUES (?, ?)", (i, f"order {i:05d}"))
    finally:
        con.close()


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="kembar-demo-"))
    p = Pair(root, size=64 * MiB, protocol="C")
    mounts: list[Path] = []
    try:
        step("1. create metadata and start the disk r0 on both nodes (n1, n2)")
        p.create()
        p.up()
        show(p, "n1")

        step("2. n1 becomes Primary with --force: the initial full sync starts")
        t0 = time.monotonic()
        p.kembar("n1", "primary", "--force", "r0")
        p.wait_synced()
        print(f"full sync of 64 MiB done in {time.monotonic() - t0:.2f}s")
        show(p, "n1")

        step("3. mkfs.ext4 on n1's block device, mounted as the site's /srv/data")
        dev = p.device("n1")
        sh("mkfs.ext4", "-q", dev)
        data1 = root / "n1-srv-data"
        data1.mkdir()
        sh("mount", dev, str(data1))
        mounts.append(data1)
        print(f"{dev} -> {Path(dev).resolve()} mounted on {data1}")
        with open(data1 / "index.html", "w") as fh:  # what was not fsynced may be lost
            fh.write(SITE)
            fh.flush()
            os.fsync(fh.fileno())
        db1 = data1 / "shop.db"
        con = sqlite3.connect(db1)
        with con:
            con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
        con.close()
        for i in range(200):
            place_order(db1, i)
        print("index.html and 200 orders in SQLite (each commit fsynced on both disks)")

        step("4. orders keep coming in ... and n1 crashes (SIGKILL) in the middle of them")
        acked: list[int] = list(range(200))
        stop = threading.Event()

        def shop() -> None:
            i = 200
            try:
                while not stop.is_set():
                    place_order(db1, i)
                    acked.append(i)
                    i += 1
            except Exception:  # noqa: BLE001 - n1 dies under us: that is the point
                pass

        t = threading.Thread(target=shop, daemon=True)
        t.start()
        wait_for(lambda: len(acked) > 300, 30, "orders")
        pid = p.pid("n1")
        p.kill("n1", signal.SIGKILL)
        stop.set()
        t.join(10)
        print(f"killed n1's disk process (pid {pid}) after {len(acked)} acknowledged orders")
        subprocess.run(["umount", "-l", str(data1)], capture_output=True)
        mounts.remove(data1)

        step("5. failover: n2 notices, is promoted, mounts the filesystem and serves the site")
        t0 = time.monotonic()
        wait_for(lambda: p.st("n2")["peer"]["connection"] != "Connected", 20, "n2 to notice")
        p.kembar("n2", "primary", "r0")
        data2 = root / "n2-srv-data"
        data2.mkdir()
        sh("mount", p.device("n2"), str(data2))  # replays the journal
        mounts.append(data2)
        print(f"n2 Primary and mounted {time.monotonic() - t0:.2f}s after the crash")
        show(p, "n2")
        page = (data2 / "index.html").read_text()
        con = sqlite3.connect(data2 / "shop.db")
        have = {row[0] for row in con.execute("SELECT id FROM orders")}
        check = con.execute("PRAGMA integrity_check").fetchone()[0]
        con.close()
        lost = [i for i in acked if i not in have]
        print("page served by n2:", page.splitlines()[1])
        print(f"database integrity: {check}; acknowledged orders: {len(acked)}, found: "
              f"{len(have)}, lost: {len(lost)}")
        sh("umount", str(data2))
        mounts.remove(data2)
        fsck = subprocess.run(["fsck.ext4", "-n", "-f", p.device("n2")], capture_output=True,
                              text=True)
        print(f"fsck.ext4 -n: {'clean' if fsck.returncode == 0 else fsck.stdout}")

        step("6. n1 comes back: `up` clears what the crash left, n1 resyncs from n2")
        p.up("n1")
        p.wait_synced()
        show(p, "n1")
        same = p.identical()
        print(f"backing stores byte-identical: {same}")
        ok = page == SITE and not lost and check == "ok" and fsck.returncode == 0 and same
        step("result: " + ("the site and its orders survived the crash intact" if ok
                           else "DATA LOST"))
        return 0 if ok else 1
    finally:
        for m in mounts:
            subprocess.run(["umount", "-l", str(m)], capture_output=True)
        for node in ("n1", "n2"):
            try:
                p.kembar(node, "down", "--force", "r0", check=False)
            except Exception:  # noqa: BLE001 - best effort, then kill by PID
                pass
        p.cleanup()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
