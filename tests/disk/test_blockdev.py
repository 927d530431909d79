"""The replicated disk as a Linux block device: real FUSE, real loop devices, real ext4."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from kembar.disk import loopdev
from kembar.disk.device import data_file, mountpoint
from kembar.lab.pair import MiB, Pair, wait_for

pytestmark = pytest.mark.slow


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({res.returncode}): "
                             f"{res.stdout}{res.stderr}")
    return res


def mount(dev: str, where: Path) -> None:
    where.mkdir(exist_ok=True)
    sh("mount", "-t", "ext4", dev, str(where))


def umount(where: Path) -> None:
    sh("umount", str(where))


def fresh_fs(p: Pair, node: str = "n1") -> str:
    """start_fresh + mkfs.ext4 on the Primary's device; returns the device link."""
    p.start_fresh(node)
    dev = p.device(node)
    assert os.path.realpath(dev).startswith("/dev/loop")
    sh("mkfs.ext4", "-q", "-F", dev)
    return dev


def switch_over(p: Pair, old: str, new: str) -> str:
    p.kembar(old, "secondary", "r0")
    p.kembar(new, "primary", "r0")
    return p.device(new)


def tree_sums(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "lost+found" not in path.parts:
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_ext4_tree_moves_to_the_peer(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(size=64 * MiB)
    dev = fresh_fs(p)
    m1 = p.root / "m1"
    mount(dev, m1)
    rng = random.Random(7)
    for i in range(40):
        d = m1 / f"site{i % 4}" / f"dir{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f"file{i}.bin", "wb") as fh:
            fh.write(rng.randbytes(rng.randrange(1, 300_000)))
            fh.flush()
            os.fsync(fh.fileno())
    # An fsync on the filesystem becomes a flush on both nodes (protocol C).
    before1, before2 = p.st("n1")["counters"], p.st("n2")["counters"]
    with open(m1 / "index.html", "w") as fh:
        fh.write("<h1>kembar</h1>\n")
        fh.flush()
        os.fsync(fh.fileno())
    after1, after2 = p.st("n1")["counters"], p.st("n2")["counters"]
    assert after1["flushes"] > before1["flushes"]
    assert after2["peer_flushes"] > before2["peer_flushes"]
    text = p.kembar("n1", "status", "r0").stdout
    assert f"device:{dev} -> {os.path.realpath(dev)} open:1" in text
    want = tree_sums(m1)
    assert len(want) == 41
    umount(m1)
    dev2 = switch_over(p, "n1", "n2")
    assert not os.path.lexists(p.device("n1"))
    sh("fsck.ext4", "-n", "-f", dev2)
    m2 = p.root / "m2"
    mount(dev2, m2)
    try:
        assert tree_sums(m2) == want
    finally:
        umount(m2)


WRITER = r"""
import hashlib, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
n = 0
while True:
    body = f"{n:08d} {hashlib.sha256(str(n).encode()).hexdigest()}".ljust(127) + "\n"
    os.write(fd, body.encode())
    os.fsync(fd)
    print(n, flush=True)
    n += 1
"""


def record(n: int) -> bytes:
    return (f"{n:08d} {hashlib.sha256(str(n).encode()).hexdigest()}".ljust(127) + "\n").encode()


def test_crash_of_the_primary_loses_no_fsynced_record(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(size=64 * MiB)
    dev = fresh_fs(p)
    m1 = p.root / "m1"
    mount(dev, m1)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(m1 / "records")],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    acked: list[int] = []
    try:
        assert writer.stdout is not None
        while len(acked) < 300:
            line = writer.stdout.readline()
            assert line, "the writer stopped early"
            acked.append(int(line))
        p.kill("n1")  # the disk process, its FUSE mount and the device's data path die
        time.sleep(0.5)
    finally:
        writer.kill()
        out, _ = writer.communicate()
    acked += [int(x) for x in out.split()]
    path = data_file(p.run_dir("n1"), "r0")
    stale_loops = loopdev.backed_by(path)
    assert stale_loops, "the crashed process left its loop device bound"
    sh("umount", "-l", str(m1))

    wait_for(lambda: p.st("n2")["peer"]["connection"] != "Connected", 20, "n2 to notice")
    p.kembar("n2", "primary", "r0")
    dev2 = p.device("n2")
    m2 = p.root / "m2"
    mount(dev2, m2)  # replays the journal
    data = (m2 / "records").read_bytes()
    umount(m2)
    for n in acked:
        assert data[n * 128:(n + 1) * 128] == record(n), f"record {n} lost or damaged"
    assert len(data) % 128 == 0 or len(data) // 128 > max(acked)
    sh("fsck.ext4", "-n", "-f", dev2)

    # The next `up` on n1 removes what the crash left behind, and n1 catches up.
    mp = mountpoint(p.run_dir("n1"), "r0")
    assert [m for m in loopdev.mounts() if m.mountpoint == mp]
    p.kembar("n1", "up", "r0")
    assert "cleanup after a crash" in p.log("n1")
    assert loopdev.backed_by(path) == []
    assert len([m for m in loopdev.mounts() if m.mountpoint == mp]) == 1  # the new one
    p.wait_synced()
    assert p.identical()


FIO = ["fio", "--ioengine=psync", "--verify=crc32c", "--verify_fatal=1", "--group_reporting",
       "--verify_state_save=0"]  # else fio leaves local-*-verify.state in the working directory


def fio(where: Path, name: str, *args: str) -> None:
    res = sh(*FIO, f"--name={name}", f"--filename={where / name}", *args, check=False)
    assert res.returncode == 0 and "err= 0" in res.stdout, res.stdout + res.stderr


def test_fio_verifies_on_the_mounted_disk_and_after_switchover(
        make_pair: Callable[..., Pair]) -> None:
    p = make_pair(size=96 * MiB)
    dev = fresh_fs(p)
    m1 = p.root / "m1"
    mount(dev, m1)
    seq = ("--rw=write", "--bs=256k", "--size=24M", "--end_fsync=1")
    rnd = ("--rw=randwrite", "--bs=4k", "--size=8M", "--fsync=64", "--randseed=42")
    fio(m1, "seq", *seq)
    fio(m1, "rnd", *rnd)
    umount(m1)
    dev2 = switch_over(p, "n1", "n2")
    m2 = p.root / "m2"
    mount(dev2, m2)
    try:
        fio(m2, "seq", *seq, "--verify_only")
        fio(m2, "rnd", *rnd, "--verify_only")
    finally:
        umount(m2)


def test_demotion_and_down_refused_while_in_use(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(size=32 * MiB)
    dev = fresh_fs(p)
    m1 = p.root / "m1"
    mount(dev, m1)
    (m1 / "order.txt").write_text("order 1\n")
    res = p.kembar("n1", "secondary", "r0", check=False)
    assert res.returncode == 1
    assert "refusing to demote" in res.stderr and f"mounted on {m1}" in res.stderr
    res = p.kembar("n1", "down", "r0", check=False)
    assert res.returncode == 1 and "in use" in res.stderr and "--force" in res.stderr
    assert p.st("n1")["role"] == "Primary"
    # Nothing was lost by the refusals: the filesystem still works and keeps its data.
    with open(m1 / "order.txt", "a") as fh:
        fh.write("order 2\n")
        fh.flush()
        os.fsync(fh.fileno())
    umount(m1)

    fd = os.open(dev, os.O_RDONLY)  # an open device (not mounted) is in use too
    try:
        res = p.kembar("n1", "secondary", "r0", check=False)
        assert res.returncode == 1 and f"open by pid {os.getpid()}" in res.stderr
    finally:
        os.close(fd)
    dev2 = switch_over(p, "n1", "n2")
    m2 = p.root / "m2"
    mount(dev2, m2)
    try:
        assert (m2 / "order.txt").read_text() == "order 1\norder 2\n"
    finally:
        umount(m2)


def test_secondary_data_cannot_be_opened(make_pair: Callable[..., Pair]) -> None:
    p = make_pair()
    p.start_fresh()
    assert not os.path.lexists(p.device("n2"))
    path = data_file(p.run_dir("n2"), "r0")
    for mode, code in ((os.O_RDWR, errno.EROFS), (os.O_WRONLY, errno.EROFS),
                       (os.O_RDONLY, errno.EMEDIUMTYPE)):
        with pytest.raises(OSError) as exc:
            os.close(os.open(path, mode))
        assert exc.value.errno == code
    assert os.stat(path).st_size == p.size


def test_down_force_and_cleanup_by_down(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(size=32 * MiB)
    dev = fresh_fs(p)
    loop = os.path.realpath(dev)
    m1 = p.root / "m1"
    mount(dev, m1)
    pid = p.pid("n1")
    res = p.kembar("n1", "down", "--force", "r0")
    assert "down" in res.stdout
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10, "the disk process to exit")
    sh("umount", "-l", str(m1))
    # The forced down detached the loop device at its last close; `down` again finds
    # nothing of ours left, or removes it.
    res = p.kembar("n1", "down", "r0")
    assert "no disk process was running" in res.stdout
    path = data_file(p.run_dir("n1"), "r0")
    # the lazy unmount releases the device asynchronously; the kernel then detaches it
    wait_for(lambda: loopdev.backed_by(path) == [], 10, "the loop device to be released")
    assert loopdev.backing_file(os.path.basename(loop)) != path
    assert not os.path.lexists(dev)


def test_down_after_a_crash_cleans_only_what_is_ours(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(size=32 * MiB)
    p.start_fresh()
    loop = os.path.realpath(p.device("n1"))
    # A decoy that is not the disk's: another loop device, over a file of this test.
    decoy_file = p.root / "decoy.img"
    with open(decoy_file, "wb") as fh:
        fh.truncate(8 * MiB)
    decoy = sh("losetup", "--find", "--show", str(decoy_file)).stdout.strip()
    try:
        p.kill("n1")
        path = data_file(p.run_dir("n1"), "r0")
        mp = mountpoint(p.run_dir("n1"), "r0")
        assert loopdev.backed_by(path) == [loop]
        assert [m for m in loopdev.mounts() if m.mountpoint == mp]
        with pytest.raises(OSError) as exc:
            os.stat(path)
        assert exc.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)  # dead FUSE mount
        res = p.kembar("n1", "down", "r0")
        assert f"detached {loop}" in res.stdout and f"dead FUSE mount {mp}" in res.stdout
        assert "removed the stale link" in res.stdout
        assert loopdev.backed_by(path) == []
        assert not [m for m in loopdev.mounts() if m.mountpoint == mp]
        assert not os.path.lexists(p.device("n1"))
        assert loopdev.backing_file(os.path.basename(decoy)) == str(decoy_file)
        # and a second `down` has nothing left to do
        res = p.kembar("n1", "down", "r0")
        assert res.stdout == "r0: down (no disk process was running)\n"
    finally:
        sh("losetup", "-d", decoy, check=False)


def test_a_recorded_loop_device_reused_by_someone_else_is_left_alone(
        make_pair: Callable[..., Pair]) -> None:
    """The crashed disk's loop device was detached and bound again, by another mount
    namespace (another lab node), to a file the kernel shows by the same tail ("/data"):
    the record's attach sequence number no longer matches, so ``down`` leaves it alone."""
    p = make_pair(size=32 * MiB)
    p.start_fresh()
    loop = os.path.realpath(p.device("n1"))
    p.kill("n1")
    sh("losetup", "-d", loop)
    other = p.root / "other"
    other.mkdir()
    sh("unshare", "-m", "--propagation", "private", "sh", "-c",
       f"mount -t tmpfs kembar-test {other} && truncate -s 8M {other}/data && "
       f"losetup {loop} {other}/data")
    try:
        assert loopdev.backing_file(os.path.basename(loop)) == "/data"
        res = p.kembar("n1", "down", "r0")
        assert "detached" not in res.stdout, res.stdout
        assert loopdev.backing_file(os.path.basename(loop)) == "/data"
    finally:
        sh("losetup", "-d", loop, check=False)


def test_two_ups_at_once_run_one_disk_process(make_pair: Callable[..., Pair]) -> None:
    """Found by the torture: the cluster daemon's disk agent and a service manager both
    ran `up` after the disk process died, and two processes fought over one disk."""
    p = make_pair(size=16 * MiB)
    p.create()
    argv = [sys.executable, "-m", "kembar", "disk", "--config", str(p.configs["n1"]), "--node",
            "n1", "--run-dir", p.run_dir("n1"), "--dev-dir", p.dev_dir("n1"), "up", "r0"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [(pr.wait(60), *pr.communicate()) for pr in procs]
    p.started.append(p.pid("n1"))
    ok = [r for r in results if r[0] == 0]
    assert len(ok) == 1, results
    for rc, out, err in results:
        assert rc == 0 or "r0 is already up on n1" in err, (rc, out, err)
    daemons = [pid for pid in os.listdir("/proc") if pid.isdigit() and _is_disk_of(pid, p)]
    assert daemons == [str(p.pid("n1"))], daemons
    assert p.st("n1")["disk"] == "r0"
    # and `down` waits its turn: no cleanup under a disk process that is starting
    from kembar.disk.client import take_lock
    os.makedirs(p.run_dir("n2"), exist_ok=True)
    fd = take_lock(p.run_dir("n2"), "r0")
    try:
        res = p.kembar("n2", "down", "r0", check=False)
        assert res.returncode != 0 and "is starting" in res.stderr, res.stderr
    finally:
        assert fd is not None
        os.close(fd)


def _is_disk_of(pid: str, p: Pair) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().decode(errors="replace").split("\0")
    except OSError:
        return False
    return "kembar.disk.daemon" in argv and str(p.configs["n1"]) in argv
