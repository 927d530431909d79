"""The replication engine of one disk: roles, the write path, the connection, resync.

One asyncio loop per disk process.  Decisions that can be pure live elsewhere (``gi`` for
the sync direction, ``bitmap``/``al`` for bookkeeping, ``wire`` for framing); this module
orchestrates them with sockets, timers and the backing store.

Write path on the Primary (``write``):
  1. the extents the write touches are made active in the on-disk activity log;
  2. connected: the DATA frame is queued on the socket; otherwise the blocks are marked in
     the bitmap;
  3. the local pwrite is submitted to the disk's single I/O thread (same order as the send);
  4. the write completes per protocol: A once local and queued, B once the peer has
     received it (RECV_ACK), C once the peer has written it (WRITE_ACK).
  If the connection drops, every write the peer has not acknowledged is marked in the
  bitmap, then completed: nothing acknowledged is ever only in memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from kembar.disk import digest, gi, recovery, wire
from kembar.disk.al import EXTENT_SIZE, AlFile, AlState, extents_for
from kembar.disk.backing import Backing
from kembar.disk.detach import IO_ERRORS, DetachMixin, DiskIOError
from kembar.disk.latency import NOT_REPLICATED, WriteLatency
from kembar.disk.bitmap import BLOCK_SIZE, Bitmap
from kembar.disk.link import Link, authenticate, dial, listen
from kembar.disk.meta import Metadata, MetaStore
from kembar.disk.handshake import HandshakeMixin
from kembar.disk.resync import ResyncMixin
from kembar.disk.session import (
    SEND_HIGH_WATER,
    Counters,
    Pending,
    Refuse,
    Session,
    SyncProgress,
    Token,
)
from kembar.disk.states import DISK_BY_CODE, DISK_CODES, ConnState, DiskState, Repl, Role
from kembar.disk.stream import Listener
from kembar.disk.wire import Msg
from kembar.errors import AuthError, KembarError, PeerProtocolError, StateError
from kembar.ratelimit import LogLimiter, held_note

log = logging.getLogger("kembar.disk")

AL_PREFETCH = 7  # extents activated ahead of a sequential writer


LOG_EVERY = 10.0  # seconds: at most one log line per handshake failure message


def _no_event(event: str, text: str) -> None:
    """No hooks: the engine without a disk process around it (tests, tools)."""

class Engine(DetachMixin, HandshakeMixin, ResyncMixin):
    def __init__(self, cfg: Any, node: str) -> None:
        self.cfg = cfg
        self.node = node
        self.disk = cfg.name
        self.local = cfg.local(node)
        self.peer_name, self.peer_host = cfg.peer_of(node)
        self.store = MetaStore(self.local.meta)
        self.md: Metadata = self.store.load(expect_disk=self.disk, expect_node=node)
        self.size = self.md.size
        self.backing = Backing(self.local.backing, self.size)
        self._log_limit = LogLimiter(LOG_EVERY)  # a failing peer is counted, not flooding
        self.alfile = AlFile(self.local.meta + ".al", cfg.al_extents)
        self.al = AlState(cfg.al_extents)
        self.bitmap: Bitmap = self.md.bitmap
        self.crashed_primary = self.md.primary_ind
        if self.crashed_primary:
            al_path = self.local.meta + ".al"
            readable = (not os.path.exists(al_path)
                        or os.path.getsize(al_path) == 2 * self.alfile.slot_size)
            extents = self.alfile.load() if readable else []
            if not readable:
                # Written with another al_extents: the crash regions are unknown, so
                # every block is treated as possibly different.
                self.bitmap.set_all()
                log.warning("%s: activity log %s does not match al_extents=%d; the whole "
                            "disk is marked for resync", self.disk, al_path, cfg.al_extents)
            for ext in extents:
                start = ext * EXTENT_SIZE
                if start < self.size:
                    self.bitmap.set_range(start, min(EXTENT_SIZE, self.size - start))
            # On disk before the activity log is reused: a second crash keeps the marks.
            self.store.save(self.md)
            log.warning("%s: the last Primary of this node crashed; %d activity-log extents "
                        "marked for resync", self.disk, len(extents))
        self.role = Role.SECONDARY
        self.disk_state = self._attach_state()
        self.conn = ConnState.STANDALONE
        self.session: Session | None = None
        self.want_connect = False
        self.discard_my_data = False
        self.last_error = ""
        self.detach_reason = ""
        self.on_event: Callable[[str, str], None] = _no_event  # set by the disk process
        self._bits_lock = asyncio.Lock()
        self._bits_marked = 0
        self._bits_saved = 0
        self.counters = Counters()
        self.latency = WriteLatency()
        self.progress = SyncProgress()
        self.verify_result: dict[str, Any] | None = None
        self._seq = 0
        self._al_lock = asyncio.Lock()
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._rs_tokens: list[Token] = []
        self._conn_task: asyncio.Task[None] | None = None
        self._server: Listener | None = None
        self._kick = asyncio.Event()
        self._promoting = False
        self._rs_clock = 0.0
        self._stopping = False

    # ------------------------------------------------------------------ state

    def _attach_state(self) -> DiskState:
        if self.md.disk_failed:
            return DiskState.INCONSISTENT  # it failed: writes may be missing, resync first
        if self.md.consistent and self.md.was_up_to_date:
            return DiskState.UP_TO_DATE
        if self.md.consistent:
            return DiskState.OUTDATED
        return DiskState.INCONSISTENT

    @property
    def repl(self) -> Repl:
        return self.session.repl if self.session else Repl.OFF

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def _persist(self) -> None:
        md = self.md
        md.bitmap = self.bitmap
        await self.backing.run(self.store.save, md)

    def _params(self) -> wire.Params:
        flags = 0
        if self.crashed_primary:
            flags |= wire.F_CRASHED_PRIMARY
        if self.discard_my_data:
            flags |= wire.F_DISCARD_MY_DATA
        return wire.Params(self.size, self.md.current, self.md.bitmap_uuid, self.md.history[0],
                           self.md.history[1], int(self.role == Role.PRIMARY),
                           DISK_CODES[self.disk_state], flags, ord(self.cfg.protocol),
                           self.bitmap.count())

    def _state_body(self) -> wire.State:
        return wire.State(int(self.role == Role.PRIMARY), DISK_CODES[self.disk_state],
                          self.md.current, self.md.bitmap_uuid, *self.md.history)

    def _send_state(self) -> None:
        if self.session:
            self.session.link.send(Msg.STATE, self._state_body())

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Listen for the peer (the node with the larger name accepts) and connect."""
        await self._probe_at_start()
        self.want_connect = True
        self.conn = ConnState.CONNECTING
        self._ensure_listener()
        self._conn_task = asyncio.create_task(self._conn_loop())

    def _ensure_listener(self) -> None:
        """The node with the larger name accepts; the other dials."""
        if self._server is None and self.node > self.peer_name:
            self._server = listen(self.local.address, self.cfg.port, self._on_incoming)

    async def _drain_writes(self) -> None:
        """Until every local write is done and the peer acknowledged every replicated one."""
        while self._inflight or (self.session and self.session.pending):
            await asyncio.sleep(0.001)

    async def stop(self) -> None:
        self._stopping = True
        if self.role == Role.PRIMARY:
            await self.demote()
        await self.disconnect(reason="going down")
        if self._server:
            self._server.close()
        if self._conn_task:
            self._conn_task.cancel()
        await self._persist()
        self.alfile.close()
        self.backing.close()

    async def _conn_loop(self) -> None:
        """The active side dials; the passive side just waits for ``_on_incoming``."""
        while True:
            if self.want_connect and self.session is None and self.node < self.peer_name:
                try:
                    link = await asyncio.wait_for(
                        dial(self.peer_host.address, self.cfg.port, self.local.address),
                        timeout=self.cfg.timeout)
                except (OSError, asyncio.TimeoutError) as exc:
                    log.debug("connect to %s failed: %s", self.peer_name, exc)
                else:
                    await self._run_link(link)
            self._kick.clear()
            try:
                await asyncio.wait_for(self._kick.wait(), timeout=self.cfg.connect_int)
            except asyncio.TimeoutError:
                pass

    async def _on_incoming(self, link: Link) -> None:
        source = link.peer_host
        if source != self.peer_host.address:
            log.warning("%s: refused connection from %s (expected %s)", self.disk, source,
                        self.peer_host.address)
            link.close()
            return
        if not self.want_connect or self.session is not None:
            link.close()
            return
        await self._run_link(link)

    # ------------------------------------------------------------ handshake

    async def _run_link(self, link: Link) -> None:
        try:
            await asyncio.wait_for(
                authenticate(link, self.cfg.secret_bytes(), self.node, self.peer_name, self.disk),
                timeout=self.cfg.timeout)
            if self.session is not None or not self.want_connect:
                link.close()
                return
            session = Session(link)
            self.session = session
            await asyncio.wait_for(self._negotiate(session), timeout=self.cfg.timeout * 4)
        except AuthError as exc:
            self.counters.auth_failures += 1
            self._note_error(link, str(exc))
            held = self._log_limit.check(f"auth {str(exc)[:80]}", time.monotonic())
            if held is not None:
                log.error("%s: %s (from %s); dropping connection%s", self.disk, exc,
                          link.peer, held_note(held))
            link.close()
            if self.session and self.session.link is link:
                await self._lost(self.session)
            return
        except (PeerProtocolError, ConnectionError, asyncio.TimeoutError, OSError) as exc:
            if isinstance(exc, PeerProtocolError):
                self.counters.protocol_errors += 1
            if isinstance(exc, asyncio.TimeoutError):
                text = f"handshake timed out after {self.cfg.timeout:g}s"
            else:
                text = str(exc) or type(exc).__name__
            self._note_error(link, text)
            held = self._log_limit.check(f"handshake {text[:80]}", time.monotonic())
            if held is not None:
                log.error("%s: handshake with %s failed: %s%s", self.disk, link.peer, text,
                          held_note(held))
            link.close()
            if self.session and self.session.link is link:
                await self._lost(self.session)
            return
        except Refuse as exc:
            self.last_error = str(exc)
            log.error("%s: %s; dropping connection", self.disk, exc)
            link.send(Msg.BYE, wire.Bye(str(exc)[:200]))
            link.close()
            self.want_connect = False
            if self.session and self.session.link is link:
                await self._lost(self.session, standalone=True)
            return
        await self._serve(session)

    def _note_error(self, link: Link, text: str) -> None:
        """A failed handshake shows in status unless another connection is live."""
        if self.session is None or self.session.link is link:
            self.last_error = text

    # --------------------------------------------------------- running link

    async def _serve(self, s: Session) -> None:
        s.tasks.append(asyncio.create_task(self._monitor(s)))
        if s.repl == Repl.SYNC_SOURCE:
            s.tasks.append(asyncio.create_task(self._resync_source(s)))
        self._send_state()
        try:
            while True:
                kind, seq, body = await s.link.recv()
                s.last_rx = time.monotonic()
                await self._dispatch(s, kind, seq, body)
        except PeerProtocolError as exc:
            self.counters.protocol_errors += 1
            self.last_error = str(exc)
            log.error("%s: protocol error from %s: %s; dropping connection", self.disk,
                      self.peer_name, exc)
        except Refuse as exc:
            self.last_error = str(exc)
            log.error("%s: %s", self.disk, exc)
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
            self.last_error = f"connection lost: {exc}"
            log.warning("%s: connection to %s lost: %s", self.disk, self.peer_name, exc)
        except asyncio.CancelledError:
            pass
        finally:
            await self._lost(s)

    async def _monitor(self, s: Session) -> None:
        """Ping when idle; drop the link if the peer stops answering or acknowledging."""
        cfg = self.cfg
        pinged_at = 0.0
        while True:
            await asyncio.sleep(min(cfg.ping_timeout, 0.25))
            now = time.monotonic()
            oldest = min((p.sent_at for p in s.pending.values()), default=now)
            if now - oldest > cfg.timeout:
                self.last_error = f"peer did not acknowledge a write within {cfg.timeout:g}s"
                break
            if s.busy:
                pinged_at = 0.0  # our own disk holds the receive loop: not the peer's fault
            elif pinged_at and s.last_rx < pinged_at and now - pinged_at > cfg.ping_timeout:
                self.last_error = f"no PING_ACK within {cfg.ping_timeout:g}s"
                break
            if s.last_rx >= pinged_at:
                pinged_at = 0.0
            if not pinged_at and now - s.last_rx > cfg.ping_int:
                s.link.send(Msg.PING, wire.Empty())
                pinged_at = now
        log.warning("%s: %s; dropping connection", self.disk, self.last_error)
        s.link.close()

    async def _lost(self, s: Session, standalone: bool = False) -> None:
        """Tear down a session: every unacknowledged write is marked, then completed."""
        if self.session is not s:
            return
        self.session = None
        s.link.close()
        for task in s.tasks:
            task.cancel()
        marked = 0
        for p in s.pending.values():
            marked += self.bitmap.set_range(p.offset, p.length)
        # (A Diskless Primary writes nothing here: its generation stays what its disk has.)
        new_gen = self.role == Role.PRIMARY and self.md.bitmap_uuid == 0 and not self.diskless
        if new_gen:
            self.md.bitmap_uuid = self.md.current | 1
            self.md.current = gi.new_uuid()
        if marked or new_gen:
            await self._persist()
        for p in s.pending.values():
            for fut in (p.received, p.written):
                if not fut.done():
                    fut.set_result(None)
        for ffut in s.flushes.values():
            if not ffut.done():
                ffut.set_result(-1)
        for _, _, rfut in s.reads.values():
            if not rfut.done():
                rfut.set_result(None)
        s.reads.clear()
        for wfut in list(s.rs_waiting.values()) + list(s.ov_waiting.values()):
            if not wfut.done():
                wfut.cancel()
        if s.role_reply and not s.role_reply.done():
            s.role_reply.set_result(0)
        s.pending.clear()
        if standalone or not self.want_connect:
            self.want_connect = False
            self.conn = ConnState.STANDALONE
        else:
            self.conn = ConnState.CONNECTING
        s.closed.set()
        log.info("%s: disconnected from %s (%s)", self.disk, self.peer_name, self.conn.value)

    async def _dispatch(self, s: Session, kind: Msg, seq: int, body: wire.Body) -> None:
        if kind == Msg.DATA:
            assert isinstance(body, wire.DataBlock)
            await self._on_data(s, seq, body)
        elif kind in (Msg.RECV_ACK, Msg.WRITE_ACK):
            p = s.pending.get(seq)
            if p is None:
                raise PeerProtocolError(f"{kind.name} for unknown write {seq}")
            if not p.received.done():
                p.received.set_result(None)
            if kind == Msg.WRITE_ACK:
                assert isinstance(body, wire.Status)
                if body.code == 0:
                    p.peer_ok = True
                else:
                    # The peer's disk failed this write: it is missing there.
                    self.bitmap.set_range(p.offset, p.length)
                if not p.written.done():
                    p.written.set_result(None)
                del s.pending[seq]
        elif kind == Msg.FLUSH:
            self._spawn(s, self._on_flush(s, seq))
        elif kind == Msg.FLUSH_ACK:
            assert isinstance(body, wire.Status)
            fut = s.flushes.pop(seq, None)
            if fut is None:
                raise PeerProtocolError(f"FLUSH_ACK for unknown flush {seq}")
            fut.set_result(body.code)
        elif kind == Msg.RS_DATA:
            assert isinstance(body, wire.DataBlock)
            if s.repl != Repl.SYNC_TARGET:
                raise PeerProtocolError("RS_DATA while not SyncTarget")
            self._check_range(body.offset, len(body.data))
            self.counters.rs_received += len(body.data)
            await self._throttle_incoming(s)
            written = self._submit_write(body.offset, body.data, from_peer=True)
            self._spawn(s, self._on_rs_data(s, body.offset, len(body.data), written))
        elif kind in (Msg.RS_ACK, Msg.RS_IN_SYNC, Msg.RS_WANT):
            assert isinstance(body, wire.Range)
            rfut = s.rs_waiting.pop(body.offset, None)
            if rfut is None or s.repl != Repl.SYNC_SOURCE:
                raise PeerProtocolError(f"{kind.name} for a range we did not send")
            if kind == Msg.RS_WANT:
                n = (body.length + BLOCK_SIZE - 1) // BLOCK_SIZE
                rfut.set_result(-1)
                equal = set(range(n)) - set(digest.decode_mask(body.tail, n))
                first = body.offset // BLOCK_SIZE
                for i in equal:
                    self.bitmap.clear_bits(first + i, 1)
            else:
                rfut.set_result(1)
                self.bitmap.clear_bits(body.offset // BLOCK_SIZE,
                                       (body.length + BLOCK_SIZE - 1) // BLOCK_SIZE)
        elif kind == Msg.RS_CSUM:
            assert isinstance(body, wire.Range)
            if s.repl != Repl.SYNC_TARGET:
                raise PeerProtocolError("RS_CSUM while not SyncTarget")
            self._check_range(body.offset, body.length)
            self._spawn(s, self._on_rs_csum(s, body))
        elif kind == Msg.SYNC_DONE:
            assert isinstance(body, wire.State)
            if s.repl != Repl.SYNC_TARGET:
                raise PeerProtocolError("SYNC_DONE while not SyncTarget")
            self._spawn(s, self._sync_done_target(s, body))
        elif kind == Msg.OV_REQ:
            assert isinstance(body, wire.Range)
            if s.repl not in (Repl.ESTABLISHED, Repl.VERIFY_T):
                raise PeerProtocolError("OV_REQ during a resync")
            self._check_range(body.offset, body.length)
            s.repl = Repl.VERIFY_T
            self._spawn(s, self._on_ov_req(s, body))
        elif kind == Msg.OV_REPLY:
            assert isinstance(body, wire.Range)
            ofut = s.ov_waiting.pop(body.offset, None)
            if ofut is None:
                raise PeerProtocolError("OV_REPLY for a range we did not ask about")
            ofut.set_result(body.tail)
        elif kind == Msg.OV_DONE:
            if s.repl == Repl.VERIFY_T:
                s.repl = Repl.ESTABLISHED
        elif kind == Msg.PING:
            s.link.send(Msg.PING_ACK, wire.Empty())
        elif kind == Msg.PING_ACK:
            pass
        elif kind == Msg.STATE:
            assert isinstance(body, wire.State)
            s.peer_role = Role.PRIMARY if body.role else Role.SECONDARY
            was = s.peer_disk
            s.peer_disk = DISK_BY_CODE.get(body.disk_state, DiskState.DUNKNOWN)
            if s.peer_role == Role.PRIMARY and self.role == Role.PRIMARY:
                raise Refuse("peer claims Primary while we are Primary")
            if s.peer_disk == DiskState.DISKLESS and was != DiskState.DISKLESS:
                await self._on_peer_diskless(s)
        elif kind == Msg.READ_REQ:
            assert isinstance(body, wire.ReadReq)
            if self.role == Role.PRIMARY:
                raise PeerProtocolError("READ_REQ from the peer while we are Primary")
            self._check_range(body.offset, body.length)
            self._spawn(s, self._on_read_req(s, seq, body))
        elif kind == Msg.READ_REPLY:
            assert isinstance(body, wire.ReadReply)
            self._on_read_reply(s, seq, body)
        elif kind == Msg.ROLE_REQ:
            ok = self.role != Role.PRIMARY and not self._promoting
            if ok:
                s.peer_role = Role.PRIMARY
            s.link.send(Msg.ROLE_REPLY, wire.Status(0 if ok else 1), seq)
        elif kind == Msg.ROLE_REPLY:
            assert isinstance(body, wire.Status)
            if s.role_reply is None or s.role_reply.done():
                raise PeerProtocolError("unexpected ROLE_REPLY")
            s.role_reply.set_result(1 if body.code == 0 else -1)
        elif kind == Msg.BYE:
            assert isinstance(body, wire.Bye)
            raise ConnectionResetError(f"peer said goodbye: {body.reason}")
        else:
            raise PeerProtocolError(f"unexpected {kind.name} on an established connection")

    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length <= 0 or offset + length > self.size:
            raise PeerProtocolError(f"range {offset}+{length} outside the disk")

    def _spawn(self, s: Session, coro: Any) -> None:
        task = asyncio.create_task(coro)
        s.tasks.append(task)
        task.add_done_callback(lambda t: self._task_done(s, t))

    def _task_done(self, s: Session, task: asyncio.Task[Any]) -> None:
        if task in s.tasks:
            s.tasks.remove(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s: %s; dropping connection", self.disk, exc)
            self.last_error = str(exc)
            s.link.close()

    async def _throttle_incoming(self, s: Session) -> None:
        """Keep the receiver from queueing unbounded writes behind a slow disk."""
        while self._inflight > 16:
            s.busy = True
            self._idle.clear()
            await self._idle.wait()
            s.last_rx = time.monotonic()
        s.busy = False

    # ------------------------------------------------- secondary: applying

    async def _on_data(self, s: Session, seq: int, body: wire.DataBlock) -> None:
        if self.role == Role.PRIMARY:
            raise PeerProtocolError("DATA from the peer while we are Primary")
        self._check_range(body.offset, len(body.data))
        self._mark_stale(body.offset, body.offset + len(body.data))  # a verify read here
        self.counters.received += len(body.data)
        if self.cfg.protocol == "B":
            s.link.send(Msg.RECV_ACK, wire.Empty(), seq)
        if self.diskless:
            s.link.send(Msg.WRITE_ACK, wire.Status(1), seq)  # not written: no disk here
            return
        if self._tracking(s):
            self.bitmap.set_range(body.offset, len(body.data))  # the Primary's disk lacks it
            self._bits_marked += 1
        await self._throttle_incoming(s)
        written = self._submit_write(body.offset, body.data, from_peer=True)
        self._spawn(s, self._apply_data(s, seq, body.offset, len(body.data), written))

    def _submit_write(self, offset: int, data: bytes | bytearray | memoryview,
                      from_peer: bool = False) -> asyncio.Future[None]:
        """Queue a write on the backing store now: its place in the FIFO is the order of
        the calls (arrival order on the Secondary, send order on the Primary)."""
        self._inflight += 1
        try:
            written = self.backing.write_now(offset, data, writeback=from_peer)
        except IO_ERRORS as exc:
            written = asyncio.get_running_loop().create_future()
            written.set_exception(exc)
        written.add_done_callback(lambda _: self._io_done())
        return written

    async def _apply_data(self, s: Session, seq: int, offset: int, length: int,
                          written: asyncio.Future[None]) -> None:
        try:
            await written
        except IO_ERRORS as exc:
            await self._io_failed("write from the peer", offset, length, exc, mark=True)
            s.link.send(Msg.WRITE_ACK, wire.Status(1), seq)
            return
        if s.repl == Repl.SYNC_TARGET:
            self.bitmap.clear_range_full(offset, length)
        if self._bits_saved < self._bits_marked:
            await self._commit_bits()
        s.link.send(Msg.WRITE_ACK, wire.Status(0), seq)

    async def _on_flush(self, s: Session, seq: int) -> None:
        code = 0
        if self.diskless:
            code = 1
        else:
            try:
                await self.backing.flush()
            except IO_ERRORS as exc:
                await self._io_failed("flush for the peer", 0, 0, exc)
                code = 1
        self.counters.peer_flushes += 1
        s.link.send(Msg.FLUSH_ACK, wire.Status(code), seq)

    def _io_done(self) -> None:
        self._inflight -= 1
        if self._inflight <= 16:
            self._idle.set()

    def _require_primary(self) -> None:
        if self.role != Role.PRIMARY:
            raise StateError(f"{self.disk} is Secondary on {self.node}; only the Primary "
                             "reads and writes data")

    async def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write on the Primary; returns when complete under the configured protocol."""
        t0 = time.monotonic()
        self._require_primary()
        self.backing.check_range(offset, len(data))
        if len(data) > wire.MAX_DATA:
            raise KembarError(f"write of {len(data)} bytes exceeds {wire.MAX_DATA}")
        extents = extents_for(offset, len(data))
        if not self.diskless:
            await self._al_activate(extents)
        while self.session is not None and self.conn != ConnState.CONNECTED:
            # A handshake is under way: the write waits for its outcome, so that it is
            # either replicated or marked after the bitmaps were compared, never lost
            # between the two.
            await asyncio.sleep(0.005)
        self._require_primary()
        self._mark_stale(offset, offset + len(data))
        s = self.session
        pending: Pending | None = None
        diskless = self.diskless
        if diskless and not self._peer_serves(s):
            raise self._no_data("write", offset, len(data))
        if (s is not None and s.peer_role == Role.SECONDARY and self.conn == ConnState.CONNECTED
                and s.peer_disk != DiskState.DISKLESS):
            seq = self._next_seq()
            loop = asyncio.get_running_loop()
            pending = Pending(offset, len(data), extents, loop.create_future(),
                              loop.create_future(), time.monotonic())
            s.pending[seq] = pending
            s.link.send_parts(wire.encode_data(Msg.DATA, seq, offset, data))
            self.counters.sent += len(data)
        else:
            self.bitmap.set_range(offset, len(data))
        # Same order as the send above; none on a Diskless Primary.
        local = None if diskless else self._submit_write(offset, data)
        if s is not None and pending is not None and s.link.buffered() > SEND_HIGH_WATER:
            await s.link.drain()
        failed: DiskIOError | None = None
        if local is not None:
            try:
                await local
            except IO_ERRORS as exc:
                failed = await self._io_failed("write", offset, len(data), exc, mark=True)
        if pending is not None:
            proto = self.cfg.protocol
            if local is None or failed is not None:
                await pending.written  # only the peer's copy exists: it must be written
            elif proto == "B":
                await pending.received
            elif proto == "C":
                await pending.written
        if local is None or failed is not None:
            if pending is None or not pending.peer_ok:
                raise failed or self._no_data("write", offset, len(data))
        self.latency.observe(self.cfg.protocol if pending is not None else NOT_REPLICATED,
                             time.monotonic() - t0)

    async def read(self, offset: int, length: int) -> bytes:
        self._require_primary()
        self.backing.check_range(offset, length)
        if not self.diskless:
            try:
                return await self.backing.read(offset, length)
            except IO_ERRORS as exc:
                await self._io_failed("read", offset, length, exc)
        return await self._read_from_peer(offset, length)

    async def flush(self) -> None:
        """Flush: local fsync after all earlier writes; under B/C the peer's too."""
        self._require_primary()
        s = self.session
        diskless = self.diskless
        if diskless and not self._peer_serves(s):
            raise self._no_data("flush", 0, 0)
        fut: asyncio.Future[int] | None = None
        if (s is not None and (self.cfg.protocol in "BC" or diskless)
                and self.conn == ConnState.CONNECTED and s.peer_disk != DiskState.DISKLESS):
            seq = self._next_seq()
            fut = asyncio.get_running_loop().create_future()
            s.flushes[seq] = fut
            s.link.send(Msg.FLUSH, wire.Empty(), seq)
        failed: DiskIOError | None = None
        if not diskless:
            try:
                await self.backing.flush()
            except IO_ERRORS as exc:
                failed = await self._io_failed("flush", 0, 0, exc)
        code = await fut if fut is not None else -1
        if (diskless or failed is not None) and code != 0:
            raise failed or self._no_data("flush", 0, 0)
        self.counters.flushes += 1

    async def _al_activate(self, extents: range) -> None:
        if self.al.plan(extents) is None:
            return
        async with self._al_lock:
            if self.al.plan(extents) is None:
                return
            # Sequential writers would pay one activity-log commit per 4 MiB: activate
            # a few following extents with the same commit (costs a larger resync of
            # those regions after a crash of the Primary, nothing else).
            last_extent = (self.size - 1) // EXTENT_SIZE
            ahead = min(AL_PREFETCH, self.cfg.al_extents // 4)
            more = range(extents.stop, min(extents.stop + ahead, last_extent + 1))
            change = self.al.plan([*extents, *more])
            if change is None:
                return
            if change.evict:
                # Writes in an evicted extent must be on both sides first, and their
                # bits on disk: the activity log stops covering them.
                await self._drain_writes()
                await self._persist()
            await self.backing.run(self.alfile.commit, change.active_after)
            self.al.apply(change)
            self.counters.al_writes += 1

    # ------------------------------------------------------------- roles

    async def promote(self, force: bool = False) -> str:
        if self.role == Role.PRIMARY:
            return f"{self.disk} is already Primary"
        s = self.session
        if s is not None and s.peer_role == Role.PRIMARY:
            raise StateError(f"{self.disk}: the peer {self.peer_name} is Primary; "
                             "demote it first (never two primaries)")
        if self.diskless:
            raise StateError(f"{self.disk}: Diskless on {self.node} ({self.detach_reason}); "
                             "never promoted: repair the disk and `kembar disk attach` it")
        if self.disk_state != DiskState.UP_TO_DATE and not force:
            raise StateError(f"{self.disk}: refusing to promote {self.disk_state.value} data "
                             "(use `primary --force` only on the node whose data is good)")
        if force and s is not None and s.repl == Repl.SYNC_TARGET:
            raise StateError(f"{self.disk}: resync from the peer in progress; refusing --force")
        self._promoting = True
        try:
            if s is not None:
                loop = asyncio.get_running_loop()
                s.role_reply = loop.create_future()
                s.link.send(Msg.ROLE_REQ, wire.Empty(), self._next_seq())
                try:
                    answer = await asyncio.wait_for(s.role_reply, timeout=self.cfg.timeout)
                except asyncio.TimeoutError:
                    answer = 0
                if answer < 0:
                    raise StateError(f"{self.disk}: the peer refused: it is Primary or "
                                     "promoting itself")
            renegotiate = False
            if force and self.disk_state != DiskState.UP_TO_DATE:
                if self.md.current:
                    self.md.history = (self.md.current, self.md.history[0])
                self.md.current = gi.new_uuid()
                self.md.bitmap_uuid = 0
                self.md.consistent = True
                self.md.was_up_to_date = True
                self.md.disk_failed = False
                self.bitmap.set_all()
                self.disk_state = DiskState.UP_TO_DATE
                renegotiate = self.session is not None
            elif self.session is None and self.md.bitmap_uuid == 0:
                self.md.bitmap_uuid = self.md.current
                self.md.current = gi.new_uuid()
            self.md.primary_ind = True
            self.role = Role.PRIMARY
            await self._persist()
        finally:
            self._promoting = False
        if renegotiate and self.session is not None:
            # The new generation starts a full sync: renegotiate on a fresh connection.
            await self._drop(self.session, "new data generation (primary --force)")
        else:
            self._send_state()
        log.info("%s: role Primary%s", self.disk, " (forced)" if force else "")
        return f"{self.disk}: Primary"

    async def demote(self) -> str:
        if self.role != Role.PRIMARY:
            return f"{self.disk} is already Secondary"
        await self._drain_writes()
        try:
            await self.flush()
        except DiskIOError as exc:
            if not self.diskless:
                raise
            # Nothing to flush here; what the peer acknowledged is its to keep.
            log.warning("%s: demoting a Diskless Primary without a flush: %s", self.disk, exc)
        self.role = Role.SECONDARY
        self.md.primary_ind = False
        await self._persist()
        self._send_state()
        log.info("%s: role Secondary", self.disk)
        return f"{self.disk}: Secondary"

    async def _drop(self, s: Session, reason: str) -> None:
        try:
            s.link.send(Msg.BYE, wire.Bye(reason))
        except Exception:  # noqa: BLE001 - the link may be broken already
            pass
        await self._lost(s)
        self._kick.set()

    async def connect(self, discard_my_data: bool = False) -> str:
        if discard_my_data and self.role == Role.PRIMARY:
            raise StateError(f"{self.disk}: --discard-my-data on a Primary; demote it first")
        self.discard_my_data = discard_my_data
        if self.session is not None:
            return f"{self.disk}: already connected"
        self.want_connect = True
        self.conn = ConnState.CONNECTING
        self._ensure_listener()
        self._kick.set()
        return f"{self.disk}: connecting to {self.peer_name}"

    async def save_recovery(self, base: str, blocks_only: bool = False) -> dict[str, Any]:
        """The victim's side of a split-brain resolution, before it discards its data:
        its disk (or only its diverging blocks) into ``base.img`` and what diverges into
        ``base.json`` (``kembar.disk.recovery``).  Only on a StandAlone Secondary: nothing
        may change the data while it is copied."""
        if self.role == Role.PRIMARY:
            raise StateError(f"{self.disk}: Primary on {self.node}; demote it before its "
                             "data is saved and discarded")
        if self.conn != ConnState.STANDALONE:
            raise StateError(f"{self.disk}: {self.conn.value}; disconnect first (a resync "
                             "could change the data while it is copied)")
        if self.disk_state == DiskState.DISKLESS:
            raise StateError(f"{self.disk}: Diskless on {self.node}; no data to save")
        diverging = recovery.extents(self.bitmap, self.size)
        meta = recovery.manifest(
            self.disk, self.node, self.size,
            {"current": f"{self.md.current:016X}", "bitmap": f"{self.md.bitmap_uuid:016X}",
             "history": [f"{h:016X}" for h in self.md.history]},
            diverging, blocks_only, base + ".img")
        doc = await recovery.save(self.backing.read, self.size, diverging, blocks_only, base,
                                  meta)
        log.warning("%s: saved %s to %s.img before discarding it (%d bytes diverge)",
                    self.disk, meta["contents"], base, meta["diverging_bytes"])
        return doc

    async def outdate(self) -> str:
        """Mark this node's data Outdated (a fencing handler does this to the peer of a
        Primary that lost its connection): it can no longer be promoted by mistake."""
        if self.role == Role.PRIMARY:
            raise StateError(f"{self.disk}: refusing to outdate the data of the Primary")
        if self.session is not None:
            raise StateError(f"{self.disk}: connected to {self.peer_name}; outdate applies "
                             "to a disconnected Secondary")
        if self.disk_state == DiskState.UP_TO_DATE:
            self.md.was_up_to_date = False
            self.disk_state = DiskState.OUTDATED
            await self._persist()
            log.info("%s: disk UpToDate -> Outdated", self.disk)
        return f"{self.disk}: {self.disk_state.value}"

    async def check_peer(self, timeout: float | None = None) -> str:
        """The cluster declared the peer dead: ask it now instead of waiting for the next
        idle ping.  A peer that does not answer within ``ping_timeout`` is dropped (its
        Primary role with it), so that this node may be promoted; one that answers is
        alive on the replication link, and stays (then a promotion is still refused).
        ``timeout`` (at most ``ping_timeout``) shortens the wait."""
        s = self.session
        wait = min(timeout, self.cfg.ping_timeout) if timeout else self.cfg.ping_timeout
        if s is None:
            return f"{self.disk}: not connected to {self.peer_name}"
        sent = time.monotonic()
        s.link.send(Msg.PING, wire.Empty())
        while time.monotonic() - sent < wait:
            if self.session is not s:
                return f"{self.disk}: {self.peer_name} is gone"
            if s.last_rx > sent:
                return f"{self.disk}: {self.peer_name} answers (connected, peer " \
                       f"{s.peer_role.value})"
            await asyncio.sleep(0.01)
        self.last_error = (f"the cluster declared {self.peer_name} dead and it did not "
                           f"answer a ping within {wait:g}s")
        log.warning("%s: %s; dropping connection", self.disk, self.last_error)
        await self._lost(s)
        self._kick.set()
        return f"{self.disk}: {self.peer_name} did not answer; disconnected"

    async def disconnect(self, reason: str = "disconnect by the operator") -> str:
        self.want_connect = False
        if self.session is not None:
            await self._drop(self.session, reason)
        if self._server is not None:
            self._server.close()
            self._server = None
        self.conn = ConnState.STANDALONE
        return f"{self.disk}: StandAlone"

    # ------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        s = self.session
        out_bits = self.bitmap.count()
        status: dict[str, Any] = {
            "disk": self.disk, "node": self.node, "role": self.role.value,
            "disk_state": self.disk_state.value, "size": self.size,
            "protocol": self.cfg.protocol,
            "peer": {
                "node": self.peer_name,
                "connection": self.conn.value,
                "role": (s.peer_role.value if s else Role.UNKNOWN.value),
                "disk_state": (s.peer_disk.value if s else DiskState.DUNKNOWN.value),
                "replication": self.repl.value,
            },
            "out_of_sync": out_bits * BLOCK_SIZE,
            "uuids": {"current": f"{self.md.current:016X}",
                      "bitmap": f"{self.md.bitmap_uuid:016X}",
                      "history": [f"{h:016X}" for h in self.md.history]},
            "counters": vars(self.counters).copy(),
            "write_latency": self.latency.status(),
            "last_error": self.last_error,
            "verify": self.verify_result,
            "crashed_primary": self.crashed_primary,
            "on_io_error": getattr(self.cfg, "on_io_error", "detach"),
            "disk_failed": self.md.disk_failed,
            "diskless_reason": self.detach_reason,
        }
        if s is not None and s.repl in (Repl.SYNC_SOURCE, Repl.SYNC_TARGET):
            status["sync"] = self._sync_figures(out_bits)
        return status

    def _sync_figures(self, out_bits: int) -> dict[str, Any]:
        p = self.progress
        now = time.monotonic()
        p.samples.append((now, out_bits))
        p.samples = [x for x in p.samples if now - x[0] <= 10][-50:]
        total = max(p.total_bits, out_bits, 1)
        done = 100.0 * (total - out_bits) / total
        t0, b0 = p.samples[0]
        rate = (b0 - out_bits) * BLOCK_SIZE / (now - t0) if now - t0 > 0.2 else 0.0
        if rate <= 0 and now - p.started > 0.2:
            rate = (total - out_bits) * BLOCK_SIZE / (now - p.started)
        eta = out_bits * BLOCK_SIZE / rate if rate > 0 else None
        return {"done_percent": round(done, 1), "rate": round(rate),
                "eta_seconds": (round(eta, 1) if eta is not None else None),
                "remaining": out_bits * BLOCK_SIZE}
