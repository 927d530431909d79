"""The backing store: one file or block device, driven by one I/O thread.

All reads, writes and flushes of a disk go through a single worker thread, so they reach
the backing store in the order they were submitted: a resync read submitted after an
application write sees that write, and the peer applies writes in arrival order.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import queue
import stat
import threading
from typing import Any, Callable, TypeVar

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


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    """``sync_file_range(SYNC_FILE_RANGE_WRITE)``: start writeback of what was just
    written, so that dirty data does not pile up for one long fsync (Linux only)."""
    if os.environ.get("KEMBAR_NO_EARLY_WRITEBACK"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]

    def start_writeback(fd: int, offset: int, length: int) -> None:
        fn(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE; errors only cost speed

    return start_writeback


_start_writeback = _load_sync_file_range()


def _pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int,
                writeback: bool = False) -> None:
    view = memoryview(data)
    start = offset
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n
    if writeback and _start_writeback is not None:
        _start_writeback(fd, start, offset - start)


INLINE_WRITE = 64 * 1024  # writes up to this size skip the I/O thread when it is idle


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        # The store shrank under us or the device misbehaves: an I/O error like any other.
        raise OSError(errno.EIO, f"short read at {offset}: {len(data)} of {length} bytes")
    return data


class IoThread:
    """One worker thread, FIFO; completions reach the loop in batches (one wake-up for
    all that finished meanwhile, where ``run_in_executor`` pays one per call)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._q: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...],
                                         asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._lock = threading.Lock()
        self._queued = 0  # submitted and not yet run to the end (under _lock)
        self._thread = threading.Thread(target=self._run, name="kembar-io", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        fut: asyncio.Future[T] = self._loop.create_future()
        with self._lock:
            self._queued += 1
        self._q.put((fn, args, fut))
        return fut

    def idle(self) -> bool:
        """Nothing submitted is still queued or running: a call made now on the loop's
        thread keeps the FIFO order."""
        with self._lock:
            return self._queued == 0

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, args, fut = item
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                error = exc
            with self._lock:
                self._queued -= 1
                first = not self._done
                self._done.append((fut, result, error))
            if first:
                try:
                    self._loop.call_soon_threadsafe(self._complete)
                except RuntimeError:
                    return  # the loop is closed: nobody waits any more

    def _complete(self) -> None:
        with self._lock:
            done, self._done = self._done, []
        for fut, result, error in done:
            if fut.cancelled():
                continue
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result)

    def shutdown(self) -> None:
        self._q.put(None)
        self._thread.join()


class Detached(KembarError):
    """The backing store was detached after an I/O error: nothing is read or written."""


class Backing:
    """The data I/O of one backing store.

    ``detach`` (after an I/O error) closes the store for good: the close is queued behind
    what was already submitted (those calls still see the old descriptor and fail or
    finish), and every data call after it raises ``Detached`` at once.  ``run`` keeps
    working (the metadata is a separate file and goes through the same thread)."""

    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self.size = size
        self.detached = False
        try:
            self.fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise KembarError(f"cannot open backing store {path}: {exc.strerror}") from None
        self._io = IoThread(asyncio.get_running_loop())

    def _check_attached(self) -> None:
        if self.detached:
            raise Detached(f"backing store {self.path} is detached")

    def detach(self) -> None:
        if self.detached:
            return
        self.detached = True
        fd, self.fd = self.fd, -1
        self._io.submit(_close_quietly, fd)

    def check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length <= 0 or offset + length > self.size:
            raise KembarError(f"range {offset}+{length} outside the disk (size {self.size})")

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run any blocking call in order with the data I/O (used for metadata too)."""
        return await self._io.submit(fn, *args)

    def write_now(self, offset: int, data: bytes | bytearray | memoryview,
                  writeback: bool = False) -> asyncio.Future[None]:
        """Queue a write at once (its place in the FIFO is taken now); await the result.

        ``writeback`` starts writing the range to the device at once: for data nobody
        reads here (the peer's writes on a Secondary), so that it does not wait in the
        page cache for one long flush."""
        self._check_attached()
        if len(data) <= INLINE_WRITE and self._io.idle():
            # A small write into the page cache takes microseconds; the hand-off to the
            # I/O thread and back costs more, and a filesystem's fsync waits for several
            # such writes in a row (data, journal, commit block).
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            try:
                _pwrite_all(self.fd, data, offset, writeback)
            except OSError as exc:
                fut.set_exception(exc)
            else:
                fut.set_result(None)
            return fut
        return self._io.submit(_pwrite_all, self.fd, data, offset, writeback)

    async def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        await self.write_now(offset, data)

    async def read(self, offset: int, length: int) -> bytes:
        self._check_attached()
        return await self.run(_pread_all, self.fd, length, offset)

    async def flush(self) -> None:
        self._check_attached()
        await self.run(os.fdatasync, self.fd)

    def close(self) -> None:
        self._io.shutdown()
        if not self.detached:
            _close_quietly(self.fd)
            self.detached = True
            self.fd = -1


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass  # a failed device may fail the close too: the descriptor is gone either way
