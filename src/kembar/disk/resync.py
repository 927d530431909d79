"""Resync and online verify: both sides of them, as a mixin of the engine.

SyncSource: walks the bitmap in linear order, reads runs of marked blocks through the
disk's FIFO I/O thread and sends them (or, with ``csums_alg``, their digests first); a
run is cleared only when the peer acknowledges it.  A read that an application write
overlapped while it was in flight is dropped and retried, so resync data and application
writes reach the peer in the order they happened here.  SyncTarget: applies, acknowledges,
and adopts the source's generation when told the sync is done.  Verify: digests of every
block compared with the peer's; differences are marked in both bitmaps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from kembar.disk import digest, gi, wire
from kembar.disk.backing import Backing
from kembar.disk.detach import IO_ERRORS, DiskIOError
from kembar.disk.bitmap import BLOCK_SIZE, Bitmap
from kembar.disk.meta import Metadata
from kembar.disk.session import SEND_HIGH_WATER, Counters, Session, Token
from kembar.disk.states import ConnState, DiskState, Repl, Role
from kembar.disk.wire import Msg
from kembar.errors import StateError

log = logging.getLogger("kembar.disk")

RS_RUN_BITS = 256  # one resync request: up to 1 MiB
RS_WINDOW = 8  # resync requests in flight
OV_CHUNK = 1024 * 1024
PERSIST_EVERY = 2.0  # seconds between bitmap saves on a SyncSource


class ResyncMixin:
    """Needs the engine's state (declared here for the type checker)."""

    cfg: Any
    disk: str
    size: int
    md: Metadata
    bitmap: Bitmap
    backing: Backing
    counters: Counters
    session: Session | None
    role: Role
    conn: ConnState
    disk_state: DiskState
    crashed_primary: bool
    verify_result: dict[str, Any] | None
    _rs_tokens: list[Token]
    _rs_clock: float

    async def _persist(self) -> None:
        raise NotImplementedError

    async def _io_failed(self, what: str, offset: int, length: int, exc: BaseException,
                         mark: bool = False) -> DiskIOError:
        raise NotImplementedError

    async def _checked_read(self, what: str, offset: int, length: int) -> bytes:
        """A read for the peer's sake (resync, verify): an I/O error detaches and raises
        (the resync is aborted with the link)."""
        try:
            return await self.backing.read(offset, length)
        except IO_ERRORS as exc:
            raise await self._io_failed(what, offset, length, exc) from None

    def _state_body(self) -> wire.State:
        raise NotImplementedError

    def _send_state(self) -> None:
        raise NotImplementedError

    @property
    def repl(self) -> Repl:
        raise NotImplementedError

    async def _on_rs_data(self, s: Session, offset: int, length: int,
                          written: asyncio.Future[None]) -> None:
        try:
            await written
        except IO_ERRORS as exc:
            raise await self._io_failed("resync write", offset, length, exc,
                                        mark=True) from None
        self.bitmap.clear_range_full(offset, length)
        s.link.send(Msg.RS_ACK, wire.Range(offset, length))

    async def _on_rs_csum(self, s: Session, body: wire.Range) -> None:
        data = await self._checked_read("resync read", body.offset, body.length)
        n = (body.length + BLOCK_SIZE - 1) // BLOCK_SIZE
        differ = digest.differing_blocks(self.cfg.csums_alg, data, body.tail)
        if differ:
            s.link.send(Msg.RS_WANT, wire.Range(body.offset, body.length,
                                                 digest.encode_mask(differ, n)))
        else:
            self.bitmap.clear_range_full(body.offset, body.length)
            s.link.send(Msg.RS_IN_SYNC, wire.Range(body.offset, body.length))

    async def _sync_done_target(self, s: Session, body: wire.State) -> None:
        try:
            await self.backing.flush()
        except IO_ERRORS as exc:
            raise await self._io_failed("flush at the end of a resync", 0, 0, exc) from None
        old = self.md.current
        self.md.current = body.current
        self.md.bitmap_uuid = 0
        if old and old != body.current:
            self.md.history = (old, self.md.history[0])
        self.md.consistent = True
        self.md.was_up_to_date = True
        self.md.disk_failed = False
        self.bitmap.clear_all()
        self.disk_state = DiskState.UP_TO_DATE
        await self._persist()
        s.repl = Repl.ESTABLISHED
        log.info("%s: resync finished as SyncTarget: UpToDate", self.disk)
        self._send_state()

    async def _on_ov_req(self, s: Session, body: wire.Range) -> None:
        data = await self._checked_read("verify read", body.offset, body.length)
        n = (body.length + BLOCK_SIZE - 1) // BLOCK_SIZE
        differ = digest.differing_blocks(self.cfg.verify_alg, data, body.tail)
        first = body.offset // BLOCK_SIZE
        for i in differ:
            self.bitmap.set_bits(first + i, 1)
        s.link.send(Msg.OV_REPLY, wire.Range(body.offset, body.length,
                                              digest.encode_mask(differ, n)))

    # ------------------------------------------------------- source: resync

    async def _throttle(self, nbytes: int) -> None:
        rate = self.cfg.resync_rate
        if not rate:
            return
        now = time.monotonic()
        self._rs_clock = max(self._rs_clock, now) + nbytes / rate
        ahead = self._rs_clock - now - nbytes / rate
        if ahead > 0:
            await asyncio.sleep(ahead)

    def _stale_guard(self, start: int, end: int) -> Token:
        token = Token(start, end)
        self._rs_tokens.append(token)
        return token

    def _mark_stale(self, start: int, end: int) -> None:
        for token in self._rs_tokens:
            if token.start < end and start < token.end:
                token.stale = True

    async def _guarded_read(self, offset: int, length: int) -> bytes | None:
        """Read for resync/verify; None if an application write overlapped meanwhile."""
        token = self._stale_guard(offset, offset + length)
        try:
            data = await self._checked_read("resync read", offset, length)
        finally:
            self._rs_tokens.remove(token)
        return None if token.stale else data

    async def _resync_source(self, s: Session) -> None:
        window = asyncio.Semaphore(RS_WINDOW)
        inflight: set[asyncio.Task[None]] = set()
        use_csums = bool(self.cfg.csums_alg)

        async def one(first: int, nbits: int, csums: bool) -> None:
            try:
                offset = first * BLOCK_SIZE
                length = min(nbits * BLOCK_SIZE, self.size - offset)
                data = await self._guarded_read(offset, length)
                if data is None:
                    return  # an application write overlapped: retried in the next pass
                fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                s.rs_waiting[offset] = fut
                if csums:
                    s.link.send(Msg.RS_CSUM, wire.Range(
                        offset, length, digest.block_digests(self.cfg.csums_alg, data)))
                else:
                    s.link.send_parts(wire.encode_data(Msg.RS_DATA, 0, offset, data))
                    self.counters.rs_sent += length
                if s.link.buffered() > SEND_HIGH_WATER:
                    await s.link.drain()
                await fut
            finally:
                window.release()

        passes = 0
        persisted = time.monotonic()
        while True:
            pos = 0
            while True:
                nxt = next(self.bitmap.runs(pos, RS_RUN_BITS), None)
                if nxt is None:
                    break
                first, nbits = nxt
                pos = first + nbits
                if time.monotonic() - persisted > PERSIST_EVERY:
                    # Progress on disk (bits are only ever cleared lazily): an
                    # interrupted full sync resumes from here, not from the start.
                    persisted = time.monotonic()
                    await self._persist()
                await window.acquire()
                await self._throttle(nbits * BLOCK_SIZE)
                task = asyncio.create_task(one(first, nbits, use_csums and passes == 0))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            if inflight:
                await asyncio.gather(*inflight)
            passes += 1
            if self.bitmap.count() == 0 and not self._rs_tokens:
                break
            await asyncio.sleep(0.01)
        try:
            await self.backing.flush()
        except IO_ERRORS as exc:
            raise await self._io_failed("flush at the end of a resync", 0, 0, exc) from None
        if self.md.bitmap_uuid:
            self.md.history = (self.md.bitmap_uuid & gi.MASK, self.md.history[0])
            self.md.bitmap_uuid = 0
        self.crashed_primary = False
        if self.role != Role.PRIMARY:
            self.md.primary_ind = False
        await self._persist()
        s.link.send(Msg.SYNC_DONE, self._state_body())
        s.repl = Repl.ESTABLISHED
        log.info("%s: resync finished as SyncSource", self.disk)

    # ---------------------------------------------------------- verification

    async def verify(self) -> dict[str, Any]:
        s = self.session
        if s is None or s.repl != Repl.ESTABLISHED:
            raise StateError(f"{self.disk}: verify needs an established connection with no "
                             f"resync running (now {self.conn.value}/{self.repl.value})")
        s.repl = Repl.VERIFY_S
        found = 0
        started = time.monotonic()
        try:
            pos = 0
            window = asyncio.Semaphore(RS_WINDOW)
            tasks = []

            async def one(offset: int, length: int) -> None:
                nonlocal found
                try:
                    while True:
                        data = await self._guarded_read(offset, length)
                        if data is None:
                            continue
                        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
                        s.ov_waiting[offset] = fut
                        s.link.send(Msg.OV_REQ, wire.Range(
                            offset, length, digest.block_digests(self.cfg.verify_alg, data)))
                        mask = await fut
                        n = (length + BLOCK_SIZE - 1) // BLOCK_SIZE
                        for i in digest.decode_mask(mask, n):
                            found += self.bitmap.set_bits(offset // BLOCK_SIZE + i, 1) or 0
                            log.warning("%s: online verify: out of sync at sector %d",
                                        self.disk, (offset + i * BLOCK_SIZE) // 512)
                        return
                finally:
                    window.release()

            while pos < self.size:
                length = min(OV_CHUNK, self.size - pos)
                await window.acquire()
                await self._throttle(length)
                tasks.append(asyncio.create_task(one(pos, length)))
                pos += length
            await asyncio.gather(*tasks)
            s.link.send(Msg.OV_DONE, wire.Status(0))
        finally:
            if s.repl == Repl.VERIFY_S:
                s.repl = Repl.ESTABLISHED
        await self._persist()
        self.verify_result = {"out_of_sync_blocks": found,
                              "out_of_sync_bytes": found * BLOCK_SIZE,
                              "seconds": round(time.monotonic() - started, 3)}
        log.info("%s: online verify done: %d blocks (%d KiB) out of sync", self.disk, found,
                 found * 4)
        return self.verify_result

    # -------------------------------------------------------------- the API
