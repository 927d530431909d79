"""PID 1 of a lab machine: make the machine's own view of the world, then reap orphans.

Started by ``machine.start`` inside fresh network (entered), mount, PID and UTS namespaces
(``unshare --mount --pid --uts --propagation private``).  Before anything runs on the
machine it

* drops the copies of mounts that belong to others (other labs' and tests' FUSE and
  loop-backed filesystems, other lab directories): a copy would keep them alive and make
  their owners' ``losetup -d`` and unmount hang;
* gives the machine its own ``/etc``, ``/var/lib``, ``/srv`` and ``/mnt`` (overlays over
  the host's: it sees the host's files, its writes go to the machine's directory; the
  host's programs, kembar's venv included, stay where they are wherever they live),
  ``/run`` (an empty tmpfs with ``/run/kembar`` bound from the machine's directory, so the
  host can reach its sockets and logs), ``/etc/kembar`` and ``/var/lib/kembar`` (empty at
  first, bound from the machine's directory), ``/dev/kembar`` and, on nodes, its second disk at
  ``/mnt/vdb``; ``/tmp`` stays the host's (the lab's own directory is there);
* sets the host name, mounts a sysfs of its own network namespace and brings up ``lo``.

Then it writes ``ready`` into the file given and waits for children forever.  Killing it
(from outside, SIGKILL) kills every process of the machine at once: a power cut.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from kembar.disk import loopdev


def sh(*args: str) -> None:
    res = subprocess.run(args, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"kembar-lab-init: {' '.join(args)}: {res.stderr.strip()}")


def foreign(m: loopdev.Mount, own_dir: str, hw_mount: str) -> bool:
    """Is this (copied) mount someone else's, to be dropped from the machine's view?
    Kept: the lab's own disk layer.  Dropped: kembar disks' FUSE files, filesystems on
    loop devices, and anything under another ``kembar-*`` directory (tests, other labs)."""
    if m.mountpoint == hw_mount:
        return False
    if m.fstype.startswith("fuse.kembar") or m.source.startswith("/dev/loop"):
        return True
    in_kembar_dir = any(p.startswith("kembar-") for p in m.mountpoint.split("/"))
    return in_kembar_dir and not m.mountpoint.startswith(own_dir + "/")


def drop_foreign_mounts(own_dir: str, hw_mount: str) -> None:
    todo = [m for m in loopdev.mounts() if foreign(m, own_dir, hw_mount)]
    for m in sorted(todo, key=lambda m: m.mountpoint.count("/"), reverse=True):
        subprocess.run(["umount", "-l", m.mountpoint], capture_output=True)


def overlay(target: str, upper: Path, work: Path) -> None:
    upper.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    sh("mount", "-t", "overlay", "kembar-lab", "-o",
       f"lowerdir={target},upperdir={upper},workdir={work}", target)


def bind(src: str, target: str) -> None:
    sh("mount", "--bind", src, target)


def setup(name: str, root: Path, hw_disk: str | None, hw_mount: str) -> None:
    drop_foreign_mounts(str(root.parent.parent), hw_mount)
    socket.sethostname(name)
    for d in ("run", "dev", "ovl", "etc-kembar", "lib-kembar"):
        (root / d).mkdir(parents=True, exist_ok=True)
    sh("mount", "-t", "sysfs", "sysfs", "/sys")
    overlay("/etc", root / "ovl" / "etc", root / "ovl" / "etc.work")
    overlay("/var/lib", root / "ovl" / "var-lib", root / "ovl" / "var-lib.work")
    Path("/etc/hostname").write_text(name + "\n")
    # kembar's own directories start empty (not the host's), and the host can read them
    for target, src in (("/etc/kembar", "etc-kembar"), ("/var/lib/kembar", "lib-kembar")):
        os.makedirs(target, exist_ok=True)
        bind(str(root / src), target)
    if not os.path.realpath(sys.executable).startswith("/run/"):  # never hide our python
        sh("mount", "-t", "tmpfs", "-o", "mode=0755,size=64m", "kembar-lab-run", "/run")
    os.makedirs("/run/kembar", mode=0o755, exist_ok=True)
    bind(str(root / "run"), "/run/kembar")
    for top in ("/srv", "/mnt"):
        os.makedirs(top, exist_ok=True)
        overlay(top, root / "ovl" / top[1:], root / "ovl" / f"{top[1:]}.work")
    # kembar's own device directory: volatile, as /dev is on a machine that boots (what a
    # power cut left there, a link to a loop device the cut released, is gone)
    for entry in (root / "dev").iterdir():
        if entry.is_symlink() or entry.is_file():
            entry.unlink()
    os.makedirs("/dev/kembar", mode=0o755, exist_ok=True)
    bind(str(root / "dev"), "/dev/kembar")
    if hw_disk is not None:
        Path("/mnt/vdb").touch(mode=0o600)
        bind(hw_disk, "/mnt/vdb")
    sh("ip", "link", "set", "lo", "up")


def reap_forever() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            signal.pause()  # woken by SIGCHLD when a child appears and exits
        except InterruptedError:
            pass


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="kembar-lab-init")
    ap.add_argument("--name", required=True)
    ap.add_argument("--root", required=True, type=Path, help="the machine's directory")
    ap.add_argument("--hw-disk", help="the machine's second disk on the host")
    ap.add_argument("--hw-mount", default="", help="the lab's disk FUSE mount (kept)")
    ap.add_argument("--ready", required=True, type=Path)
    args = ap.parse_args(argv)
    ready = os.open(args.ready, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        setup(args.name, args.root, args.hw_disk, args.hw_mount)
    except (SystemExit, OSError) as exc:
        os.write(ready, f"failed: {exc}\n".encode())
        return 1
    signal.signal(signal.SIGCHLD, lambda *_: None)
    os.write(ready, b"ready\n")
    os.close(ready)
    reap_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
