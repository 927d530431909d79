"""The kernel side of a disk: FUSE file + loop device + ``/dev/kembar/<disk>`` link.

While the disk process runs, its data is a FUSE file ``<run_dir>/<disk>.fuse/data``; while
the disk is Primary a loop device is attached to that file and ``<dev_dir>/<disk>`` points
at it.  Demotion and ``down`` are refused while the device is mounted or open.

``cleanup_stale`` removes what a killed disk process left behind (its dead FUSE mount, the
loop device bound to its file, a dangling link) and touches nothing else: a loop device is
ours only if ``<run_dir>/<disk>.loop`` names it and it is still the same attachment
(the kernel's ``diskseq``), a mount only if it is exactly our mount point with our FUSE type.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from typing import Any

from kembar.disk import loopdev
from kembar.disk.fusefs import FILE_NAME, BlockFile, FuseMount
from kembar.disk.states import Role
from kembar.errors import KembarError, StateError

log = logging.getLogger("kembar.disk.device")

DEFAULT_DEV_DIR = "/dev/kembar"
RELEASE_TIMEOUT = 10.0
# Queued asynchronous FUSE requests (the loop device's direct I/O): the kernel's default
# is 12; 32 measured about 15 % faster for sequential writes (see bench/fs.py).  Set through
# fusectl (/sys/fs/fuse/connections), which systemd mounts at boot; left alone without it.
FUSE_MAX_BACKGROUND = 32


def mountpoint(run_dir: str, disk: str) -> str:
    return os.path.join(run_dir, f"{disk}.fuse")


def data_file(run_dir: str, disk: str) -> str:
    return os.path.join(mountpoint(run_dir, disk), FILE_NAME.decode())


def fuse_type() -> str:
    return "fuse.kembar"


def loop_record(run_dir: str, disk: str) -> str:
    """Where the disk process notes the loop device it attached (a crash leaves it)."""
    return os.path.join(run_dir, f"{disk}.loop")


def read_loop_record(run_dir: str, disk: str) -> dict[str, Any] | None:
    try:
        with open(loop_record(run_dir, disk)) as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("dev"), str):
        return None
    return rec


def recorded_loops(run_dir: str) -> dict[str, str]:
    """disk -> loop device, for every record in ``run_dir`` whose loop device is still the
    same attachment (same ``diskseq``): what a dead disk process left bound."""
    out = {}
    for name in sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else []:
        if not name.endswith(".loop"):
            continue
        disk = name.removesuffix(".loop")
        rec = read_loop_record(run_dir, disk)
        if rec is not None and rec.get("diskseq") == loopdev.diskseq(
                os.path.basename(str(rec["dev"]))):
            out[disk] = str(rec["dev"])
    return out


def cleanup_stale(disk: str, run_dir: str, dev_dir: str) -> list[str]:
    """Undo what a dead disk process of ``disk`` left behind; returns what was done.

    Call only when no disk process of ``disk`` runs on this node (``up`` and ``down``
    check that first): it detaches even loop devices still in use.  A loop device is
    detached only if this node's record names it and it is still the same attachment
    (the kernel's ``diskseq``, and the path or its tail): several nodes on one kernel (the
    lab, containers) use the same paths, and another node's device is left alone.
    """
    done: list[str] = []
    path = data_file(run_dir, disk)
    mp = mountpoint(run_dir, disk)
    rec = read_loop_record(run_dir, disk)
    if rec is not None:
        dev = str(rec["dev"])
        name = os.path.basename(dev)
        shown = loopdev.backing_file(name)
        # Seen from a mount namespace that cannot reach the file's mount (the node was
        # restarted: its old namespace is gone), the kernel shows only the path inside that
        # mount ("/data"); the recorded attach sequence number decides then.
        same = shown is not None and (shown == path or path.endswith(shown))
        if same and rec.get("diskseq") == loopdev.diskseq(name):
            where = loopdev.mounted_at(dev)
            subprocess.run([loopdev.LOSETUP, "-d", dev], capture_output=True, check=False)
            note = f"detached {dev} (left bound to {path})"
            if where:
                note += f"; it is still mounted on {', '.join(where)}: unmount that"
            done.append(note)
        try:
            os.unlink(loop_record(run_dir, disk))
        except FileNotFoundError:
            pass
    for m in loopdev.mounts():
        if m.mountpoint == mp and m.fstype == fuse_type():
            res = subprocess.run(["umount", "-l", mp], capture_output=True, text=True)
            if res.returncode == 0:
                done.append(f"unmounted the dead FUSE mount {mp}")
            else:
                done.append(f"could not unmount {mp}: {res.stderr.strip()}")
    link = os.path.join(dev_dir, disk)
    if os.path.islink(link):
        target = os.path.realpath(link)
        name = os.path.basename(target)
        if loopdev.backing_file(name) != path or rec is None:
            os.unlink(link)
            done.append(f"removed the stale link {link} -> {target}")
    return done


class EngineStore:
    """The engine as the FUSE file sees it."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.size = int(engine.size)

    @property
    def writable(self) -> bool:
        return bool(self.engine.role == Role.PRIMARY)

    async def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        await self.engine.write(offset, data)

    async def read(self, offset: int, length: int) -> bytes:
        return bytes(await self.engine.read(offset, length))

    async def flush(self) -> None:
        await self.engine.flush()


class Device:
    """Promotion, demotion and shutdown with the block device in the picture."""

    def __init__(self, engine: Any, run_dir: str, dev_dir: str = DEFAULT_DEV_DIR,
                 direct_io: bool = True) -> None:
        self.engine = engine
        self.disk = str(engine.disk)
        self.run_dir = run_dir
        self.dev_dir = dev_dir
        self.direct_io = direct_io
        self.ops = BlockFile(EngineStore(engine), self.disk)
        self.fuse = FuseMount(self.ops, mountpoint(run_dir, self.disk))
        self.loop_dev: str | None = None
        self._loop_fh: int | None = None
        self._lock = asyncio.Lock()

    @property
    def link(self) -> str:
        return os.path.join(self.dev_dir, self.disk)

    @property
    def path(self) -> str:
        return data_file(self.run_dir, self.disk)

    async def start(self) -> None:
        for line in await asyncio.to_thread(cleanup_stale, self.disk, self.run_dir,
                                            self.dev_dir):
            log.warning("%s: cleanup after a crash: %s", self.disk, line)
        await self.fuse.start()
        try:
            bg = int(os.environ.get("KEMBAR_FUSE_MAX_BACKGROUND", FUSE_MAX_BACKGROUND))
        except ValueError:
            log.warning("%s: KEMBAR_FUSE_MAX_BACKGROUND is not a number; using %d",
                        self.disk, FUSE_MAX_BACKGROUND)
            bg = FUSE_MAX_BACKGROUND
        if bg > 0:
            ok = await asyncio.to_thread(self.fuse.set_max_background, bg)
            log.info("%s: FUSE max_background %s", self.disk,
                     bg if ok else "12 (kernel default: fusectl is not mounted)")
        if self.engine.role == Role.PRIMARY:
            await self._attach()

    async def stop(self, force: bool = False) -> None:
        """Detach the loop device (refused while in use unless ``force``), unmount FUSE;
        the engine's own ``stop`` demotes and saves the metadata afterwards."""
        async with self._lock:
            if self.loop_dev is not None:
                await self._detach(force)
        await self.fuse.stop()

    # ------------------------------------------------------------- verbs

    async def promote(self, force: bool = False) -> str:
        async with self._lock:
            msg = str(await self.engine.promote(force=force))
            if self.loop_dev is None:
                try:
                    await self._attach()
                except KembarError:
                    await self.engine.demote()
                    raise
            return f"{msg} ({self.link} -> {self.loop_dev})"

    async def demote(self) -> str:
        async with self._lock:
            if self.loop_dev is not None:
                await self._detach(force=False)
            return str(await self.engine.demote())

    async def check_down(self, force: bool) -> None:
        """Refuse ``down`` while the device is in use, unless forced."""
        if self.loop_dev is None or force:
            return
        busy = await self.in_use()
        if busy:
            raise StateError(self._busy_message(busy, "stop", "or use `down --force`"))

    async def in_use(self) -> list[str]:
        if self.loop_dev is None:
            return []
        busy = await asyncio.to_thread(loopdev.holders, self.loop_dev, {os.getpid()})
        extra = [f"{self.path} open by pid {h.pid}" for fh, h in self.ops.handles.items()
                 if fh != self._loop_fh]
        return busy + extra

    def status(self) -> dict[str, Any]:
        return {"device": self.link if self.loop_dev else None, "loop": self.loop_dev,
                "file": self.path, "open": len(self.ops.handles),
                "io": dict(self.ops.counters)}

    # ----------------------------------------------------------- helpers

    def _busy_message(self, busy: list[str], what: str, hint: str = "") -> str:
        tail = f" ({hint})" if hint else ""
        return (f"{self.disk}: refusing to {what}: {self.link} is in use: "
                f"{'; '.join(busy)}; unmount or close it first{tail}")

    async def _attach(self) -> None:
        before = set(self.ops.handles)
        dev = await loopdev.attach(self.path, direct_io=self.direct_io)
        new = set(self.ops.handles) - before
        self._loop_fh = min(new) if new else None
        self.loop_dev = dev
        try:
            await asyncio.to_thread(self._write_record, dev)
            await asyncio.to_thread(self._make_link, dev)
        except OSError as exc:
            await self._detach(force=True)
            raise KembarError(f"{self.disk}: cannot make the device link {self.link}: "
                              f"{exc.strerror or exc}") from None
        log.info("%s: block device %s -> %s (direct I/O %s)", self.disk, self.link, dev,
                 "on" if self.direct_io else "off")

    def _write_record(self, dev: str) -> None:
        rec = {"dev": dev, "diskseq": loopdev.diskseq(os.path.basename(dev)),
               "file": self.path}
        tmp = loop_record(self.run_dir, self.disk) + ".new"
        with open(tmp, "w") as fh:
            json.dump(rec, fh)
        os.replace(tmp, loop_record(self.run_dir, self.disk))

    def _make_link(self, dev: str) -> None:
        os.makedirs(self.dev_dir, mode=0o755, exist_ok=True)
        tmp = f"{self.link}.new"
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(dev, tmp)
        os.replace(tmp, self.link)

    def _remove_link(self) -> None:
        try:
            if os.path.realpath(self.link) == self.loop_dev or not os.path.exists(self.link):
                os.unlink(self.link)
        except FileNotFoundError:
            pass

    async def _detach(self, force: bool) -> None:
        assert self.loop_dev is not None
        dev = self.loop_dev
        if not force:
            busy = await self.in_use()
            if busy:
                raise StateError(self._busy_message(busy, "demote"))
        self.ops.closing = True
        try:
            await loopdev.detach(dev)
            try:
                # Forced, a mounted device never lets go: do not wait long for it.
                await asyncio.wait_for(self.ops.released.wait(),
                                       2.0 if force else RELEASE_TIMEOUT)
            except asyncio.TimeoutError:
                if not force:
                    raise StateError(
                        f"{self.disk}: {dev} was opened while detaching; it detaches at "
                        "its last close; retry the demotion then") from None
                log.warning("%s: %s still open; forced on", self.disk, dev)
        finally:
            self.ops.closing = False
        await asyncio.to_thread(self._remove_link)
        try:
            os.unlink(loop_record(self.run_dir, self.disk))
        except FileNotFoundError:
            pass
        self.loop_dev = None
        self._loop_fh = None
        log.info("%s: block device %s detached", self.disk, dev)
