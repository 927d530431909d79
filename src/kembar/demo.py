"""``make demo``: two nodes replicate a disk, the Primary crashes, the data survives.

For now this is the replicated-disk demo (the block device, virtual IP and services come
with later issues): two disk processes on this host, n1 on 127.0.0.1 and n2 on
127.0.0.2, each with its own backing file under /tmp/kembar-demo-*.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from kembar.lab.pair import MiB, Pair, wait_for

SITE = b"""<!doctype html><title>example.com</title>
<h1>Welcome to example.com</h1><p>Served from a kembar replicated disk.</p>
"""


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def show(p: Pair, node: str) -> None:
    print(p.kembar(node, "status", "r0").stdout.rstrip())


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="kembar-demo-"))
    p = Pair(root, size=64 * MiB, protocol="C")
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

        step("3. the site's page and its 'database' (2000 records) are written on n1")
        records: dict[int, bytes] = {}
        with p.client("n1") as c:
            c.write(0, SITE)
            for i in range(2000):
                rec = f"order {i:05d}: {hashlib.sha256(str(i).encode()).hexdigest()}\n".encode()
                records[i] = rec.ljust(512, b" ")
                c.submit_write(MiB + i * 512, records[i])
            c.flush()
        print("2000 records written and flushed under protocol C (on both disks)")

        step("4. orders keep coming in ... and n1 crashes (SIGKILL) in the middle of writes")
        acked: dict[int, bytes] = {}
        stop = threading.Event()

        def shop() -> None:
            try:
                with p.client("n1") as c:
                    i = 2000
                    while not stop.is_set():
                        rec = f"order {i:05d}: late order\n".encode().ljust(512, b" ")
                        c.write(MiB + i * 512, rec)
                        acked[i] = rec
                        i += 1
            except Exception:  # noqa: BLE001 - n1 dies under us: that is the point
                pass

        t = threading.Thread(target=shop, daemon=True)
        t.start()
        wait_for(lambda: len(acked) > 100, 20, "orders")
        pid = p.pid("n1")
        p.kill("n1", signal.SIGKILL)
        stop.set()
        t.join(5)
        print(f"killed n1 (pid {pid}) after {len(acked)} more acknowledged orders")

        step("5. failover: n2 notices, is promoted, and serves the data")
        t0 = time.monotonic()
        wait_for(lambda: p.st("n2")["peer"]["connection"] != "Connected", 20, "n2 to notice")
        p.kembar("n2", "primary", "r0")
        print(f"n2 Primary {time.monotonic() - t0:.2f}s after the crash")
        show(p, "n2")
        with p.client("n2") as c:
            page = c.read(0, len(SITE))
            lost = [i for i, rec in {**records, **acked}.items()
                    if c.read(MiB + i * 512, 512) != rec]
        print("page served by n2:", page.decode().splitlines()[1])
        print(f"acknowledged orders checked: {len(records) + len(acked)}, lost: {len(lost)}")

        step("6. n1 comes back: it was a crashed Primary, n2 moved on; n1 resyncs from n2")
        p.up("n1")
        p.wait_synced()
        show(p, "n1")
        same = p.identical()
        print(f"backing stores byte-identical: {same}")
        ok = page == SITE and not lost and same
        step("result: " + ("the data survived the crash intact" if ok else "DATA LOST"))
        return 0 if ok else 1
    finally:
        for node in ("n1", "n2"):
            try:
                p.kembar(node, "down", "r0", check=False)
            except Exception:  # noqa: BLE001 - best effort, then kill by PID
                pass
        p.cleanup()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
