"""The backing store: one file or block device, driven by one I/O thread.

All reads, writes and flushes of a disk go through a single worker thread, so they reach
the backing store in the order they were submitted: a resync read submitted after an
application write sees that write, and the peer applies writes in arrival order.
"""

from __future__ import annotations

import asyncio
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from kembar.errors import KembarError

T = TypeVar("T")


def backing_size(path: str) -> int:
    """Size in bytes of a file or block device."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise KembarError(f"cannot open backing store {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise KembarError(f"backing store {path} is neither a file nor a block device")
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def _pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise KembarError(f"short read at {offset}: {len(data)} of {length} bytes")
    return data


class Backing:
    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self.size = size
        try:
            self.fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise KembarError(f"cannot open backing store {path}: {exc.strerror}") from None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kembar-io")

    def check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length <= 0 or offset + length > self.size:
            raise KembarError(f"range {offset}+{length} outside the disk (size {self.size})")

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run any blocking call in order with the data I/O (used for metadata too)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        await self.run(_pwrite_all, self.fd, data, offset)

    async def read(self, offset: int, length: int) -> bytes:
        return await self.run(_pread_all, self.fd, length, offset)

    async def flush(self) -> None:
        await self.run(os.fsync, self.fd)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        os.close(self.fd)
