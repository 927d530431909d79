"""Loop devices and who holds them: losetup, sysfs, /proc/*/mountinfo and /proc/*/fd.

The parsers are pure (``parse_mountinfo``); the rest reads the running system.  Nothing
here may run on the disk process's event-loop thread while the device's file is served by
that same thread: ``device.py`` calls these through a worker thread or a subprocess.
"""

from __future__ import annotations

import asyncio
import errno
import glob
import os
import re
from dataclasses import dataclass

from kembar.errors import KembarError

LOSETUP = "losetup"


@dataclass(frozen=True)
class Mount:
    majmin: str
    mountpoint: str
    fstype: str
    source: str


_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """``/proc/PID/mountinfo`` lines → mounts; malformed lines are skipped."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        f = left.split()
        r = right.split()
        if len(f) < 5 or len(r) < 2:
            continue
        out.append(Mount(majmin=f[2], mountpoint=_unescape(f[4]), fstype=r[0],
                         source=_unescape(r[1])))
    return out


def mounts(pid: str = "self") -> list[Mount]:
    try:
        with open(f"/proc/{pid}/mountinfo") as fh:
            return parse_mountinfo(fh.read())
    except OSError:
        return []


def loop_devices() -> list[str]:
    return sorted(os.path.basename(p) for p in glob.glob("/sys/block/loop*"))


def backing_file(name: str) -> str | None:
    """The file behind loop device ``name`` (e.g. ``loop3``), or None when unbound."""
    try:
        with open(f"/sys/block/{name}/loop/backing_file") as fh:
            path = fh.read().rstrip("\n")
    except OSError:
        return None
    return path.removesuffix(" (deleted)")


def backed_by(path: str) -> list[str]:
    """Every loop device (``/dev/loopN``) bound to ``path``."""
    return [f"/dev/{n}" for n in loop_devices() if backing_file(n) == path]


def diskseq(name: str) -> int | None:
    """The kernel's sequence number of what is attached to ``name`` (e.g. ``loop3``): it
    changes at every attach, so it tells one binding of a loop device from a later one.
    Read from sysfs, it touches no file (safe while the backing FUSE mount is dead)."""
    try:
        with open(f"/sys/block/{name}/diskseq") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def majmin(dev: str) -> str:
    st = os.stat(dev)
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def mounted_at(dev: str) -> list[str]:
    """Mount points of ``dev`` seen from any process's namespace (deduplicated)."""
    mm = majmin(dev)
    seen: list[str] = []
    namespaces: set[str] = set()
    for pid in ["self", *(p for p in os.listdir("/proc") if p.isdigit())]:
        try:
            ns = os.readlink(f"/proc/{pid}/ns/mnt")
        except OSError:
            continue
        if ns in namespaces:
            continue
        namespaces.add(ns)
        for m in mounts(pid):
            if m.majmin == mm and m.mountpoint not in seen:
                seen.append(m.mountpoint)
    return seen


def openers(dev: str, exclude: set[int] | None = None) -> list[tuple[int, str]]:
    """Processes with ``dev`` open, as (pid, command name), like ``fuser``."""
    rdev = os.stat(dev).st_rdev
    skip = exclude or set()
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        if int(pid) in skip:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if st.st_rdev == rdev and (st.st_mode & 0o170000) == 0o060000:
                try:
                    with open(f"/proc/{pid}/comm") as fh:
                        comm = fh.read().strip()
                except OSError:
                    comm = "?"
                found.append((int(pid), comm))
                break
    return found


def claimed(dev: str) -> bool:
    """True when someone holds ``dev`` exclusively (a mounted filesystem does)."""
    try:
        fd = os.open(dev, os.O_RDONLY | os.O_EXCL)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            return True
        raise
    os.close(fd)
    return False


def holders(dev: str, exclude: set[int] | None = None) -> list[str]:
    """Why ``dev`` is in use, one phrase each; empty when it is free."""
    out = [f"mounted on {mp}" for mp in mounted_at(dev)]
    out += [f"open by pid {pid} ({comm})" for pid, comm in openers(dev, exclude)]
    if not out and claimed(dev):
        out.append("held exclusively (mounted in another namespace, or by a device mapper)")
    return out


async def _run(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise KembarError(f"{' '.join(args)}: {err.decode(errors='replace').strip()}")
    return out.decode().strip()


async def attach(path: str, direct_io: bool = True) -> str:
    """Bind a free loop device to ``path``; returns ``/dev/loopN``."""
    args = [LOSETUP, "--find", "--show"]
    if direct_io:
        args.append("--direct-io=on")
    return await _run(*args, path)


async def detach(dev: str) -> None:
    """``losetup -d``; on a device still open the kernel detaches at the last close."""
    await _run(LOSETUP, "-d", dev)
