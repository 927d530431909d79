"""The paper's "synchronisation speed" experiment in the lab, with its baselines.

In a fresh lab (its own name, its disk sized for the largest write): disk r0 under the
chosen protocol, the first sync, ext4 on node1's ``/srv/data``.  Then, on node1:

* each size, ``runs`` times: ``dd if=/dev/zero bs=1M count=N conv=fsync`` into a file on
  the replicated filesystem (caches dropped before each run); MB/s from dd's own bytes and
  seconds;
* the same writes on ext4 over a plain loop device (``losetup --direct-io=on``) on a file
  of node1's own: no FUSE, no replication;
* catch-up: node1 disconnects, writes the size, reconnects; the resync's duration until
  both sides are UpToDate with nothing out of sync;
* node-to-node TCP: 256 MB from node1 to node2 over the replication link;
* memory vs disk read (the paper's 4,398 vs 211 MB/s): the written file read again from the
  page cache, and node1's backing disk read with the caches dropped.

Everything the lab makes is removed at the end (``lab.down``; the loop device, its mount
and its file by name, ``kembar-exp-``).
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

from kembar.errors import KembarError
from kembar.lab import cluster
from kembar.lab.lab import Lab, fresh_lab
from kembar.lab.names import DISK_IN_NODE

MiB = 2**20
MB = 1_000_000
TCP_PORT = 7791
TCP_BYTES = 256 * MiB
_DD = re.compile(r"^(\d+) bytes .* copied, ([0-9.]+) s", re.M)

Progress = Callable[[str], None]


def size_name(n: int) -> str:
    for unit, k in (("G", 2**30), ("M", MiB), ("K", 1024)):
        if n % k == 0:
            return f"{n // k}{unit}"
    return str(n)


def dd_rate(output: str) -> tuple[int, float]:
    """(bytes, seconds) from dd's last summary line; KembarError if there is none."""
    found = _DD.findall(output)
    if not found:
        raise KembarError(f"no summary in dd's output: {output.strip()[-200:]!r}")
    n, secs = found[-1]
    return int(n), max(float(secs), 1e-6)


def _dd_write(lab: Lab, path: str, size: int) -> float:
    """MB/s of one fsynced write of ``size`` bytes to ``path`` on node1."""
    out = cluster.sh(lab, "node1", f"rm -f {path} && sync && echo 3 > /proc/sys/vm/drop_caches "
                                   f"&& dd if=/dev/zero of={path} bs=1M count={size // MiB} "
                                   "conv=fsync 2>&1", timeout=1800)
    n, secs = dd_rate(out)
    return n / MB / secs


CATCH_UP = """
import subprocess, sys, time
from kembar.disk.client import DiskClient
disk, timeout = sys.argv[1], float(sys.argv[2])
subprocess.run(["kembar", "disk", "connect", disk], check=True, capture_output=True)
t0 = time.monotonic()
while time.monotonic() - t0 < timeout:
    with DiskClient(disk, "/run/kembar") as c:
        st = c.status()
    peer = st.get("peer", {})
    if st.get("disk_state") == peer.get("disk_state") == "UpToDate" and \
            peer.get("connection") == "Connected" and st.get("out_of_sync") == 0:
        print(time.monotonic() - t0)
        sys.exit(0)
    time.sleep(0.02)
sys.exit("the resync did not finish in time")
"""


def _reconnect_and_time_resync(lab: Lab, timeout: float) -> float:
    """Reconnect node1's disk and time, on node1, the resync until both sides are
    UpToDate with nothing out of sync (its status polled every 20 ms)."""
    import sys
    out = cluster.sh(lab, "node1", f"{sys.executable} -c '{CATCH_UP}' {cluster.DISK} {timeout}",
                     timeout=timeout + 60)
    return float(out.strip().splitlines()[-1])


def run_sync(sizes: list[int], runs: int, protocol: str = "C", lab_name: str = "exp",
             progress: Progress = lambda _: None, catchup_runs: int | None = None
             ) -> dict[str, Any]:
    if not sizes or any(s < MiB or s % MiB for s in sizes) or runs < 1:
        raise KembarError("sizes: whole MiB, at least 1M each; runs: at least 1")
    if protocol not in ("A", "B", "C"):
        raise KembarError(f"protocol {protocol!r}: A, B or C")
    catchup_runs = min(runs, 3) if catchup_runs is None else catchup_runs
    biggest = max(sizes)
    disk = (biggest * 5 // 4 + 64 * MiB + MiB - 1) // MiB * MiB
    progress(f"lab {lab_name}: up with {size_name(disk)} disks")
    lab = fresh_lab(lab_name, disk_size=disk)
    local_img = f"/var/tmp/kembar-exp-{lab_name}-local.img"
    local_mnt = f"/var/tmp/kembar-exp-{lab_name}-local"
    res: dict[str, Any] = {"protocol": protocol, "runs": [], "local_ext4": [], "catchup": []}
    try:
        cluster.install(lab, protocol=protocol)
        progress("first sync of disk r0")
        cluster.first_primary(lab, "node1", timeout=1800)
        cluster.sh(lab, "node1", f"mkfs.ext4 -q -F /dev/kembar/{cluster.DISK} && "
                                 f"mkdir -p {cluster.MOUNT} && "
                                 f"mount /dev/kembar/{cluster.DISK} {cluster.MOUNT}")
        target = f"{cluster.MOUNT}/kembar-exp.dat"
        for size in sizes:
            row: dict[str, Any] = {"size": size_name(size), "bytes": size, "mbs": []}
            for i in range(runs):
                progress(f"replicated write {size_name(size)}, run {i + 1}/{runs}")
                row["mbs"].append(round(_dd_write(lab, target, size), 2))
            res["runs"].append(row)
        # memory read: the file just written, again from the page cache
        out = cluster.sh(lab, "node1", f"cat {target} > /dev/null; "
                                       f"dd if={target} of=/dev/null bs=1M 2>&1")
        n, secs = dd_rate(out)
        res["memory_read_mbs"] = round(n / MB / secs, 1)
        cluster.sh(lab, "node1", f"rm -f {target}")
        # catch-up after a disconnection
        for size in sizes:
            row = {"size": size_name(size), "bytes": size, "seconds": []}
            for i in range(catchup_runs):
                progress(f"catch-up {size_name(size)}, run {i + 1}/{catchup_runs}")
                cluster.sh(lab, "node1", f"kembar disk disconnect {cluster.DISK}")
                _dd_write(lab, target, size)
                row["seconds"].append(round(_reconnect_and_time_resync(lab, 1800), 3))
                cluster.sh(lab, "node1", f"rm -f {target}")
            if row["seconds"]:
                res["catchup"].append(row)
        # disk read: node1's own backing disk, caches dropped
        progress("disk read")
        out = cluster.sh(lab, "node1", f"sync; echo 3 > /proc/sys/vm/drop_caches; "
                                       f"dd if={DISK_IN_NODE} of=/dev/null bs=1M "
                                       f"count={min(disk, 256 * MiB) // MiB} 2>&1")
        n, secs = dd_rate(out)
        res["disk_read_mbs"] = round(n / MB / secs, 1)
        # node-to-node TCP over the replication link
        progress("node-to-node TCP")
        res["tcp_mbs"] = round(_tcp(lab), 1)
        # the baseline: ext4 on a plain loop device over a local file
        cluster.sh(lab, "node1", f"umount {cluster.MOUNT}")
        cluster.sh(lab, "node1", f"rm -f {local_img} && truncate -s {disk} {local_img} && "
                                 f"mkfs.ext4 -q -F {local_img} && mkdir -p {local_mnt} && "
                                 f"dev=$(losetup --direct-io=on -f --show {local_img}) && "
                                 f"mount $dev {local_mnt}")
        for size in sizes:
            row = {"size": size_name(size), "bytes": size, "mbs": []}
            for i in range(runs):
                progress(f"local ext4 write {size_name(size)}, run {i + 1}/{runs}")
                row["mbs"].append(round(_dd_write(lab, f"{local_mnt}/kembar-exp.dat", size), 2))
            res["local_ext4"].append(row)
    finally:
        lab.run("node1", ["sh", "-c", f"umount {local_mnt} 2>/dev/null; "
                                      f"for d in $(losetup -j {local_img} -O NAME -n); do "
                                      f"losetup -d $d; done; rm -f {local_img}; "
                                      f"rmdir {local_mnt} 2>/dev/null; true"])
        lab.down()
    return res


RECEIVER = ("import socket, sys, time\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(60)\n"
            "print('ready', flush=True)\n"
            "c, _ = s.accept(); n = 0; t = None\n"
            "while True:\n"
            "    b = c.recv(1 << 20)\n"
            "    if t is None: t = time.monotonic()\n"
            "    if not b: break\n"
            "    n += len(b)\n"
            "print(n, time.monotonic() - t, flush=True)\n")
SENDER = ("import socket, sys\n"
          "c = socket.create_connection((sys.argv[1], int(sys.argv[2])), 30)\n"
          "buf = bytes(1 << 20)\n"
          "for _ in range(int(sys.argv[3]) >> 20): c.sendall(buf)\n"
          "c.close()\n")


def _tcp(lab: Lab) -> float:
    """MB/s of TCP_BYTES from node1 to node2 over the link the disk replicates on."""
    import subprocess
    import sys
    m2 = lab.plan.machine("node2")
    addr = m2.addresses.get("private") or m2.addresses["public"]
    recv = subprocess.Popen(lab.exec_argv("node2", [sys.executable, "-c", RECEIVER, addr,
                                                    str(TCP_PORT)]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert recv.stdout is not None
        if recv.stdout.readline().strip() != "ready":
            raise KembarError("the TCP receiver on node2 did not start")
        lab.run("node1", [sys.executable, "-c", SENDER, addr, str(TCP_PORT), str(TCP_BYTES)],
                timeout=300)
        out, err = recv.communicate(timeout=120)
        n, secs = out.split()
        if int(n) != TCP_BYTES:
            raise KembarError(f"TCP: {n} bytes arrived of {TCP_BYTES}: {err.strip()}")
        return int(n) / MB / max(float(secs), 1e-6)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
