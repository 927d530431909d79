"""Local disk failures: detach on an I/O error (DRBD's ``on-io-error detach``), serve
through the peer while Diskless, track what a Diskless peer misses, re-attach.

Rules (the engine calls these; the decisions they need are small and local):
- Any ``OSError`` of the backing store detaches: the disk state becomes Diskless, the store
  is closed, the error is logged once at ERROR (op, offset, length) and counted in
  ``io_errors``; the metadata (a separate file) records ``disk_failed`` so that a
  restarted process comes back Inconsistent and resyncs, never UpToDate.
- The node that detaches marks in its own bitmap what may be missing on its disk: the
  write that failed and, on a Primary, every extent of its activity log (written but
  perhaps not flushed when the device died).  A resync running at that moment is aborted
  (the link is dropped; the handshake afterwards sees a Diskless side and syncs nothing).
- The node that keeps a good (UpToDate) disk and sees its peer Diskless starts a new data
  generation, as on a disconnection (bitmap UUID = current, new current), marks its own
  activity-log extents when Primary, and from then on marks every write it applies in its
  bitmap: a later re-attach compares generations and resyncs those blocks.
- A Diskless Primary reads from and writes to its peer only while the peer is connected
  and UpToDate; otherwise the caller gets ``DiskIOError`` (EIO), never data it is not
  sure of.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from kembar.disk import gi, wire
from kembar.disk.al import EXTENT_SIZE, AlState
from kembar.disk.backing import Backing, Detached
from kembar.disk.bitmap import Bitmap
from kembar.disk.meta import Metadata
from kembar.disk.session import Counters, Session
from kembar.disk.states import ConnState, DiskState, Repl, Role
from kembar.disk.wire import Msg
from kembar.errors import KembarError, PeerProtocolError, StateError

log = logging.getLogger("kembar.disk")

PROBE_SIZE = 4096


class DiskIOError(KembarError):
    """The data cannot be read or written: the local disk failed (or is detached) and no
    connected UpToDate peer can serve it.  The FUSE layer turns it into EIO."""


IO_ERRORS = (OSError, Detached)


def probe(fd: int, size: int) -> None:
    """Read the first and last block and write the first one back (same bytes), then
    flush: a store that fails any of these is not attached.  Runs in the I/O thread."""
    first = os.pread(fd, PROBE_SIZE, 0)
    if len(first) != min(PROBE_SIZE, size):
        raise OSError(5, "short read while probing the backing store")
    if size > PROBE_SIZE:
        os.pread(fd, PROBE_SIZE, size - PROBE_SIZE)
    os.pwrite(fd, first, 0)
    os.fdatasync(fd)


class DetachMixin:
    """Needs the engine's state (declared here for the type checker)."""

    cfg: Any
    disk: str
    node: str
    peer_name: str
    size: int
    md: Metadata
    bitmap: Bitmap
    backing: Backing
    al: AlState
    counters: Counters
    session: Session | None
    role: Role
    conn: ConnState
    disk_state: DiskState
    last_error: str
    detach_reason: str
    on_event: Callable[[str, str], None]  # (notify event, text): the disk process's hooks
    _bits_lock: asyncio.Lock
    _bits_marked: int
    _bits_saved: int

    async def _persist(self) -> None:
        raise NotImplementedError

    def _send_state(self) -> None:
        raise NotImplementedError

    def _next_seq(self) -> int:
        raise NotImplementedError

    def _attach_state(self) -> DiskState:
        raise NotImplementedError

    async def _drop(self, s: Session, reason: str) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------- detaching

    @property
    def diskless(self) -> bool:
        return self.disk_state == DiskState.DISKLESS

    async def _io_failed(self, what: str, offset: int, length: int, exc: BaseException,
                         mark: bool = False) -> DiskIOError:
        """An I/O call on the backing store raised ``exc``: detach (once), mark the range
        when it is a write the disk may have missed, and return the error for the caller."""
        if mark:
            self.bitmap.set_range(offset, length)
        if isinstance(exc, Detached):
            if mark:
                await self._save_quietly()
            return DiskIOError(f"{self.disk}: {what} at offset {offset}: the local disk is "
                               "detached (Diskless)")
        await self._detach(what, offset, length, exc)
        return DiskIOError(f"{self.disk}: {what} of {length} bytes at offset {offset} "
                           f"failed on the local disk: {exc}")

    async def _detach(self, what: str, offset: int, length: int, exc: BaseException) -> None:
        self.counters.io_errors += 1
        if self.diskless:
            log.debug("%s: %s at %d failed after detaching: %s", self.disk, what, offset, exc)
            await self._save_quietly()
            return
        reason = f"{what} of {length} bytes at offset {offset} failed: {exc}"
        self.disk_state = DiskState.DISKLESS
        self.detach_reason = reason
        self.last_error = f"local disk detached: {reason}"
        self.backing.detach()
        log.error("%s: I/O error on the backing store %s: %s; detaching (on-io-error "
                  "detach): the disk is Diskless now", self.disk, self.backing.path, reason)
        self.on_event("disk_detached", f"{self.disk}: I/O error on the backing store "
                                       f"{self.backing.path}: {reason}; detached (Diskless)")
        if self.role == Role.PRIMARY:
            # Written here but maybe never flushed to the dead device.
            for ext in self.al.active():
                start = ext * EXTENT_SIZE
                if start < self.size:
                    self.bitmap.set_range(start, min(EXTENT_SIZE, self.size - start))
        self.md.disk_failed = True
        self.md.was_up_to_date = False
        await self._save_quietly()
        s = self.session
        if s is None:
            return
        if s.repl in (Repl.SYNC_SOURCE, Repl.SYNC_TARGET, Repl.VERIFY_S, Repl.VERIFY_T):
            log.warning("%s: aborting %s: the local disk is detached", self.disk, s.repl.value)
            s.link.close()  # the receive loop ends, the session is torn down, we reconnect
        else:
            self._send_state()

    async def _save_quietly(self) -> None:
        try:
            await self._persist()
        except (OSError, KembarError) as exc:
            log.error("%s: cannot save the metadata after a disk failure: %s", self.disk, exc)

    # ------------------------------------------------ the peer is Diskless

    async def _on_peer_diskless(self, s: Session) -> None:
        """The peer has no disk: from now on this node's bitmap tracks what it misses."""
        if self.disk_state != DiskState.UP_TO_DATE:
            return  # no good data here either: nothing to track against
        if self.md.bitmap_uuid == 0:
            primary = self.role == Role.PRIMARY
            self.md.bitmap_uuid = self.md.current | (1 if primary else 0)
            self.md.current = gi.new_uuid()
        if self.role == Role.PRIMARY:
            for ext in self.al.active():
                start = ext * EXTENT_SIZE
                if start < self.size:
                    self.bitmap.set_range(start, min(EXTENT_SIZE, self.size - start))
        await self._persist()
        log.warning("%s: %s is Diskless; tracking its missing writes (new generation "
                    "%016X)", self.disk, self.peer_name, self.md.current)

    def _tracking(self, s: Session) -> bool:
        return s.peer_disk == DiskState.DISKLESS and self.disk_state == DiskState.UP_TO_DATE

    async def _commit_bits(self) -> None:
        """Persist the bitmap with every bit marked so far (concurrent callers share one
        save): a Secondary tracking for a Diskless Primary has no activity log."""
        want = self._bits_marked
        async with self._bits_lock:
            if self._bits_saved >= want:
                return
            target = self._bits_marked
            await self._persist()
            self._bits_saved = target

    # --------------------------------------------------- serving via the peer

    def _peer_serves(self, s: Session | None) -> bool:
        return (s is not None and self.conn == ConnState.CONNECTED
                and s.peer_role == Role.SECONDARY and s.peer_disk == DiskState.UP_TO_DATE
                and s.repl == Repl.ESTABLISHED)

    def _no_data(self, what: str, offset: int, length: int) -> DiskIOError:
        s = self.session
        why = ("not connected" if s is None or self.conn != ConnState.CONNECTED else
               f"peer is {s.peer_disk.value}")
        return DiskIOError(f"{self.disk}: {what} of {length} bytes at offset {offset}: local "
                           f"disk Diskless and no UpToDate peer to serve it ({why})")

    async def _read_from_peer(self, offset: int, length: int) -> bytes:
        s = self.session
        if s is None or not self._peer_serves(s):
            raise self._no_data("read", offset, length)
        seq = self._next_seq()
        fut: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        s.reads[seq] = (offset, length, fut)
        s.link.send(Msg.READ_REQ, wire.ReadReq(offset, length), seq)
        data = await fut
        if data is None:
            raise self._no_data("read", offset, length)
        self.counters.peer_reads += 1
        return data

    def _on_read_reply(self, s: Session, seq: int, body: wire.ReadReply) -> None:
        entry = s.reads.pop(seq, None)
        if entry is None:
            raise PeerProtocolError(f"READ_REPLY for unknown read {seq}")
        offset, length, fut = entry
        if body.status == wire.READ_OK and (body.offset != offset or len(body.data) != length):
            fut.set_result(None)
            raise PeerProtocolError(f"READ_REPLY {seq}: {len(body.data)} bytes at "
                                    f"{body.offset}, asked for {length} at {offset}")
        if not fut.done():
            fut.set_result(bytes(body.data) if body.status == wire.READ_OK else None)

    async def _on_read_req(self, s: Session, seq: int, body: wire.ReadReq) -> None:
        """The Primary's disk cannot serve a read: serve it from here if this disk is
        UpToDate (the read follows every write that arrived before it: same FIFO)."""
        data: bytes | None = None
        if self.disk_state == DiskState.UP_TO_DATE:
            try:
                data = await self.backing.read(body.offset, body.length)
            except IO_ERRORS as exc:
                await self._io_failed("read for the peer", body.offset, body.length, exc)
        if data is None:
            s.link.send(Msg.READ_REPLY, wire.ReadReply(body.offset, wire.READ_FAILED), seq)
        else:
            s.link.send_parts(wire.encode_frame(
                Msg.READ_REPLY, seq, wire.ReadReply.FIXED.pack(body.offset, wire.READ_OK),
                data))

    # -------------------------------------------------------------- attach

    async def attach(self) -> str:
        """Open the backing store again after a repair; resync from the peer follows."""
        if not self.diskless:
            raise StateError(f"{self.disk}: a disk is attached already "
                             f"({self.disk_state.value})")
        if self.role == Role.PRIMARY:
            raise StateError(f"{self.disk}: Diskless Primary on {self.node}: attaching would "
                             "resync the disk under the data in use; move the group away or "
                             "demote first (`kembar disk secondary`), then attach")
        path = self.backing.path
        try:
            fresh = Backing(path, self.size)
        except KembarError as exc:
            raise StateError(f"{self.disk}: cannot attach: {exc}; still Diskless") from None
        try:
            await fresh.run(probe, fresh.fd, self.size)
        except OSError as exc:
            fresh.close()
            raise StateError(f"{self.disk}: cannot attach {path}: the backing store still "
                             f"fails ({exc.strerror or exc}); still Diskless") from None
        old, self.backing = self.backing, fresh
        old.close()
        self.disk_state = self._attach_state()
        self.detach_reason = ""
        self.last_error = ""
        log.info("%s: attached %s (%s)", self.disk, path, self.disk_state.value)
        if self.session is not None:
            await self._drop(self.session, "the peer attached its disk: renegotiating")
        return f"{self.disk}: attached {path}, {self.disk_state.value}"

    async def _probe_at_start(self) -> None:
        try:
            await self.backing.run(probe, self.backing.fd, self.size)
        except OSError as exc:
            await self._detach("probe at start", 0, PROBE_SIZE, exc)
