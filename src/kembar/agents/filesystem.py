"""``filesystem``: mount a device on a directory; on stop, unmount, killing its users.

Heartbeat's ``Filesystem::device::directory::fstype::options``.  Whether it is mounted is
read from ``/proc/self/mountinfo``: the mount at the directory is ours when its source or
its device number is the configured device's (``/dev/kembar/r0`` is a link to the disk's
loop device, so links are resolved).  No fsck is run before mounting.

Stop unmounts; when the filesystem is busy, the processes holding it are found by
*device number* — their cwd, root, executable, open files and mapped files — in
``/proc/*`` (not by path prefix and not with ``fuser -m``, which also names users of
the parent filesystem when the mount is gone: resource-agents issues #1304 and #1944),
sent SIGTERM, then SIGKILL after a short grace, and the unmount is tried again.  kembar's
own process is never signalled.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from kembar.agents.base import Agent, AgentContext, AgentError, Deadline, alive, run_command
from kembar.config.groups import FilesystemResource
from kembar.disk.loopdev import Mount, mounts

log = logging.getLogger("kembar.agents.filesystem")

TERM_GRACE = 2.0  # seconds between SIGTERM and SIGKILL to the holders (at most)


def holders(dev: int, exclude: set[int]) -> list[tuple[int, str]]:
    """(pid, what) of every process using a file on device ``dev`` (an ``st_dev``)."""
    major, minor = os.major(dev), os.minor(dev)
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        why = _uses(f"/proc/{entry}", dev, major, minor)
        if why:
            out.append((int(entry), why))
    return out


def _uses(proc: str, dev: int, major: int, minor: int) -> str:
    for what in ("cwd", "root", "exe"):
        if _on(f"{proc}/{what}", dev):
            return what
    try:
        fds = os.listdir(f"{proc}/fd")
    except OSError:
        fds = []
    for fd in fds:
        if _on(f"{proc}/fd/{fd}", dev):
            return f"open file (fd {fd})"
    try:
        with open(f"{proc}/maps") as fh:
            for line in fh:
                f = line.split(maxsplit=5)
                if len(f) >= 5 and f[4] != "0" and ":" in f[3]:
                    hi, lo = f[3].split(":")
                    if int(hi, 16) == major and int(lo, 16) == minor:
                        return "mapped file"
    except (OSError, ValueError):
        pass
    return ""


def _on(path: str, dev: int) -> bool:
    try:
        return os.stat(path).st_dev == dev
    except OSError:
        return False


class FilesystemAgent(Agent):
    resource: FilesystemResource

    def __init__(self, resource: FilesystemResource, ctx: AgentContext) -> None:
        super().__init__(resource, ctx)
        self.device = resource.device
        self.directory = resource.directory

    # -- reading

    def _ours(self, m: Mount) -> bool:
        if m.source in (self.device, os.path.realpath(self.device)):
            return True
        try:
            rdev = os.stat(self.device).st_rdev
        except OSError:
            # The device link is gone (the disk process died, say): a mount of the same
            # type on our directory is taken to be ours rather than be left mounted.
            return m.fstype == self.resource.fstype
        return rdev != 0 and m.majmin == f"{os.major(rdev)}:{os.minor(rdev)}"

    def _mounted(self) -> Mount | None:
        """Our mount at the directory; None when nothing is mounted there; AgentError when
        something else is."""
        target = os.path.realpath(self.directory)
        at = [m for m in mounts() if m.mountpoint == target]
        if not at:
            return None
        top = at[-1]  # the last one mounted is the one visible
        if self._ours(top):
            return top
        raise AgentError(f"{self.name}: {top.source} ({top.fstype}) is mounted on "
                         f"{self.directory}, not {self.device}")

    # -- the contract

    def start(self, timeout: float) -> None:
        deadline = Deadline(timeout)
        if self._mounted():
            return
        if not os.path.exists(self.device):
            raise AgentError(f"{self.name}: {self.device} does not exist (is its disk "
                             "Primary here?)")
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as exc:
            raise AgentError(f"{self.name}: cannot create {self.directory}: "
                             f"{exc.strerror}") from None
        cmd = ["mount", "-t", self.resource.fstype]
        if self.resource.options:
            cmd += ["-o", self.resource.options]
        res = run_command([*cmd, self.device, self.directory], deadline.left(), self.name)
        if res.returncode != 0:
            raise AgentError(f"{self.name}: mount failed: {res.reason()}")
        log.info("%s: mounted", self.name)

    def stop(self, timeout: float) -> None:
        deadline = Deadline(timeout)
        mount = self._mounted()
        if mount is None:
            return
        first = self._umount(deadline)
        if first is None:
            return
        try:
            dev = os.stat(self.directory).st_dev
        except OSError as exc:
            raise AgentError(f"{self.name}: umount failed ({first}) and "
                             f"{self.directory} cannot be read: {exc.strerror}") from None
        self._kill_holders(dev, deadline)
        again = self._umount(deadline)
        if again is not None:
            left = holders(dev, exclude=set())
            who = ", ".join(f"{pid} ({why})" for pid, why in left[:5])
            if any(pid == os.getpid() for pid, _ in left):
                who += " — kembar itself"
            raise AgentError(f"{self.name}: umount failed: {again}"
                             + (f"; still held by {who}" if who else ""))

    def _umount(self, deadline: Deadline) -> str | None:
        """Unmount; None when done, else the reason it failed."""
        res = run_command(["umount", self.directory], deadline.left(), self.name)
        if res.returncode == 0:
            log.info("%s: unmounted", self.name)
            return None
        if self._mounted() is None:
            return None  # someone else unmounted it meanwhile
        return res.reason()

    def _kill_holders(self, dev: int, deadline: Deadline) -> None:
        me = {os.getpid()}
        found = holders(dev, exclude=me)
        if not found:
            return
        log.warning("%s: busy; SIGTERM to %s", self.name,
                    ", ".join(f"{pid} ({why})" for pid, why in found))
        pids = [pid for pid, _ in found]
        self._signal(pids, signal.SIGTERM)
        grace = min(TERM_GRACE, deadline.left() / 3)
        self._wait_gone(pids, time.monotonic() + grace)
        # Ask again: a process may have opened a file there meanwhile.
        stubborn = [pid for pid, _ in holders(dev, exclude=me)]
        if stubborn:
            log.warning("%s: SIGKILL to %s", self.name, ", ".join(map(str, stubborn)))
            self._signal(stubborn, signal.SIGKILL)
            self._wait_gone(stubborn, time.monotonic() + min(2.0, deadline.left() / 2))

    @staticmethod
    def _signal(pids: list[int], sig: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    @staticmethod
    def _wait_gone(pids: list[int], until: float) -> None:
        while any(alive(pid) for pid in pids) and time.monotonic() < until:
            time.sleep(0.05)

    def monitor(self, timeout: float) -> bool:
        return self._mounted() is not None
