"""The disk's data as one file, served to the kernel through FUSE (pyfuse3, asyncio mode).

The mount holds a single regular file, ``data``, exactly the disk's size.  Every read,
write and fsync on it goes through the engine, so the loop device attached to it (see
``device.py``) replicates like DRBD's ``/dev/drbdN``.  The engine decides nothing here;
this module only translates FUSE requests and counts who has the file open.

Nothing in this process may touch the mount point from the event-loop thread (a stat or
an open there would wait for a FUSE reply that only this thread can send).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import time
from dataclasses import dataclass
from typing import Any, Protocol

import pyfuse3
import pyfuse3.asyncio

from kembar.errors import KembarError

log = logging.getLogger("kembar.disk.fuse")

pyfuse3.asyncio.enable()

FILE_NAME = b"data"
FILE_INODE = pyfuse3.ROOT_INODE + 1


class Store(Protocol):
    """What the file needs from the engine."""

    size: int

    @property
    def writable(self) -> bool: ...

    async def write(self, offset: int, data: bytes | bytearray | memoryview) -> None: ...

    async def read(self, offset: int, length: int) -> bytes: ...

    async def flush(self) -> None: ...


def attributes(inode: int, mode: int, size: int, stamp_ns: int) -> pyfuse3.EntryAttributes:
    """A root-owned directory or file, never cached by the kernel (sizes and modes of
    these files change with the disk's role or the lab's switch)."""
    a = pyfuse3.EntryAttributes()
    a.st_ino = inode
    a.st_mode = mode
    a.st_nlink = 2 if stat.S_ISDIR(mode) else 1
    a.st_size = size
    a.st_uid = a.st_gid = 0
    a.st_blksize = 4096
    a.st_blocks = (size + 511) // 512
    a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = stamp_ns
    a.attr_timeout = 0
    a.entry_timeout = 0
    return a


@dataclass
class Handle:
    pid: int
    write: bool


class BlockFile(pyfuse3.Operations):
    """One file, ``data``; opened only while the store is writable (the disk is Primary)."""

    def __init__(self, store: Store, disk: str) -> None:
        super().__init__()
        self.store = store
        self.disk = disk
        self.handles: dict[int, Handle] = {}
        self._next_fh = 1
        self.closing = False  # demotion under way: no new opens
        self.released = asyncio.Event()
        self.released.set()
        self.started = time.time_ns()
        self.counters = {"reads": 0, "writes": 0, "fsyncs": 0, "errors": 0,
                         "read_bytes": 0, "written_bytes": 0, "max_write": 0}

    # ------------------------------------------------------------ metadata

    def _attr(self, inode: int) -> pyfuse3.EntryAttributes:
        if inode == pyfuse3.ROOT_INODE:
            return attributes(inode, stat.S_IFDIR | 0o700, 0, self.started)
        mode = 0o600 if self.store.writable else 0o400
        return attributes(inode, stat.S_IFREG | mode, self.store.size, self.started)

    async def getattr(self, inode: int, ctx: Any = None) -> pyfuse3.EntryAttributes:
        if inode not in (pyfuse3.ROOT_INODE, FILE_INODE):
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(inode)

    async def lookup(self, parent: int, name: bytes, ctx: Any = None) -> pyfuse3.EntryAttributes:
        if parent != pyfuse3.ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        if name == FILE_NAME:
            return self._attr(FILE_INODE)
        if name in (b".", b".."):
            return self._attr(pyfuse3.ROOT_INODE)
        raise pyfuse3.FUSEError(errno.ENOENT)

    async def setattr(self, inode: int, attr: Any, fields: Any, fh: Any,
                      ctx: Any) -> pyfuse3.EntryAttributes:
        if inode != FILE_INODE:
            raise pyfuse3.FUSEError(errno.EPERM)
        if fields.update_size and attr.st_size != self.store.size:
            raise pyfuse3.FUSEError(errno.EPERM)  # a disk does not change size by truncate
        if fields.update_mode or fields.update_uid or fields.update_gid:
            raise pyfuse3.FUSEError(errno.EPERM)
        return self._attr(inode)  # times: accepted and forgotten

    async def opendir(self, inode: int, ctx: Any) -> int:
        if inode != pyfuse3.ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        if start_id == 0:
            pyfuse3.readdir_reply(token, FILE_NAME, self._attr(FILE_INODE), 1)

    async def releasedir(self, fh: int) -> None:
        return None

    async def statfs(self, ctx: Any) -> pyfuse3.StatvfsData:
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_blocks = self.store.size // 4096
        s.f_bfree = s.f_bavail = 0
        s.f_files = 1
        s.f_ffree = s.f_favail = 0
        s.f_namemax = 255
        return s

    # --------------------------------------------------------------- data

    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        if inode != FILE_INODE:
            raise pyfuse3.FUSEError(errno.EISDIR)
        wants_write = (flags & os.O_ACCMODE) != os.O_RDONLY
        if self.closing:
            raise pyfuse3.FUSEError(errno.EBUSY)
        if not self.store.writable:
            # As DRBD: a Secondary can be neither written nor read by applications.
            raise pyfuse3.FUSEError(errno.EROFS if wants_write else errno.EMEDIUMTYPE)
        fh = self._next_fh
        self._next_fh += 1
        self.handles[fh] = Handle(pid=int(getattr(ctx, "pid", 0)), write=wants_write)
        self.released.clear()
        # direct_io: no page cache for this file; the filesystem above caches.
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        if fh not in self.handles:
            raise pyfuse3.FUSEError(errno.EBADF)
        end = min(off + size, self.store.size)
        if end <= off:
            return b""
        try:
            data = await self.store.read(off, end - off)
        except KembarError as exc:
            self._failed("read", off, end - off, exc)
        self.counters["reads"] += 1
        self.counters["read_bytes"] += len(data)
        return data

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        h = self.handles.get(fh)
        if h is None or not h.write:
            raise pyfuse3.FUSEError(errno.EBADF)
        if off + len(buf) > self.store.size:
            raise pyfuse3.FUSEError(errno.ENOSPC)
        try:
            await self.store.write(off, buf)
        except KembarError as exc:
            self._failed("write", off, len(buf), exc)
        c = self.counters
        c["writes"] += 1
        c["written_bytes"] += len(buf)
        c["max_write"] = max(c["max_write"], len(buf))
        return len(buf)

    async def fsync(self, fh: int, datasync: bool) -> None:
        try:
            await self.store.flush()
        except KembarError as exc:
            self._failed("flush", 0, 0, exc)
        self.counters["fsyncs"] += 1

    async def flush(self, fh: int) -> None:
        return None  # close(2): nothing to make durable here, fsync does that

    async def release(self, fh: int) -> None:
        self.handles.pop(fh, None)
        if not self.handles:
            self.released.set()

    def _failed(self, what: str, off: int, length: int, exc: Exception) -> None:
        self.counters["errors"] += 1
        log.error("%s: %s of %d bytes at %d failed: %s", self.disk, what, length, off, exc)
        raise pyfuse3.FUSEError(errno.EIO) from exc


class FuseMount:
    """pyfuse3's session for one ``BlockFile`` at ``mountpoint`` (one per process)."""

    def __init__(self, ops: BlockFile, mountpoint: str) -> None:
        self.ops = ops
        self.mountpoint = mountpoint
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        os.makedirs(self.mountpoint, mode=0o700, exist_ok=True)
        options = {f"fsname=kembar-{self.ops.disk}", "subtype=kembar", "default_permissions"}
        pyfuse3.init(self.ops, self.mountpoint, options)
        self._task = asyncio.create_task(pyfuse3.main(min_tasks=2, max_tasks=64))

    def set_max_background(self, requests: int) -> bool:
        """Raise the kernel's limit of queued asynchronous requests on this connection
        (default 12); needs fusectl at /sys/fs/fuse/connections.  Blocking: call from a
        worker thread (it stats the mount point)."""
        conn = f"/sys/fs/fuse/connections/{os.minor(os.stat(self.mountpoint).st_dev)}"
        if not os.path.isdir(conn):
            return False
        with open(f"{conn}/max_background", "w") as fh:
            fh.write(str(requests))
        with open(f"{conn}/congestion_threshold", "w") as fh:
            fh.write(str(requests * 3 // 4))
        return True

    async def stop(self) -> None:
        if self._task is None:
            return
        pyfuse3.terminate()
        try:
            await asyncio.wait_for(self._task, timeout=5)
        except (asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - still unmount
            log.warning("%s: FUSE loop did not end cleanly: %r", self.ops.disk, exc)
            self._task.cancel()
        self._task = None
        pyfuse3.close(unmount=True)  # libfuse unmounts lazily (MNT_DETACH)
        try:
            os.rmdir(self.mountpoint)
        except OSError:
            pass
