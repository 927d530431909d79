"""The handshake after authentication: parameters, the sync decision, bitmaps.

Both sides send PARAMS (size, generation identifiers, role, disk state, flags, protocol,
bitmap weight), each computes the decision with the pure ``gi.decide``, they exchange
DECISION codes and drop the link unless the codes mirror each other.  A split brain,
unrelated data or a refused resync ends in ``Refuse`` (StandAlone, operator needed).
Before a resync both bitmaps are exchanged and merged; a SyncTarget is Inconsistent on
disk before the first resync write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kembar.disk import gi, wire
from kembar.disk.bitmap import Bitmap
from kembar.disk.meta import Metadata
from kembar.disk.session import Counters, Refuse, Session, SyncProgress
from kembar.disk.states import DISK_BY_CODE, ConnState, DiskState, Repl, Role
from kembar.disk.wire import Msg
from kembar.errors import PeerProtocolError

log = logging.getLogger("kembar.disk")


class HandshakeMixin:
    """Needs the engine's state (declared here for the type checker)."""

    cfg: Any
    disk: str
    node: str
    peer_name: str
    size: int
    md: Metadata
    bitmap: Bitmap
    counters: Counters
    role: Role
    conn: ConnState
    disk_state: DiskState
    crashed_primary: bool
    discard_my_data: bool
    last_error: str
    progress: SyncProgress
    on_event: Callable[[str, str], None]  # (notify event, text): the disk process's hooks

    async def _persist(self) -> None:
        raise NotImplementedError

    async def _on_peer_diskless(self, s: Session) -> None:
        raise NotImplementedError

    def _params(self) -> wire.Params:
        raise NotImplementedError

    async def _negotiate(self, s: Session) -> None:
        link = s.link
        link.send(Msg.PARAMS, self._params())
        _, body = await link.expect(Msg.PARAMS)
        assert isinstance(body, wire.Params)
        peer = body
        if peer.size != self.size:
            raise Refuse(f"backing store sizes differ (mine {self.size}, peer {peer.size} bytes)")
        if chr(peer.protocol) != self.cfg.protocol:
            raise Refuse(f"protocol mismatch (mine {self.cfg.protocol}, peer {chr(peer.protocol)})")
        if peer.role == 1 and self.role == Role.PRIMARY:
            raise Refuse("both nodes are Primary")
        s.peer_role = Role.PRIMARY if peer.role else Role.SECONDARY
        s.peer_disk = DISK_BY_CODE.get(peer.disk_state, DiskState.DUNKNOWN)
        me = gi.Side(self.node, self.md.current, self.md.bitmap_uuid, self.md.history,
                     self.bitmap.count(), self.role == Role.PRIMARY, self.crashed_primary,
                     self.discard_my_data, self.disk_state != DiskState.INCONSISTENT,
                     self.disk_state == DiskState.DISKLESS)
        them = gi.Side(self.peer_name, peer.current, peer.bitmap_uuid,
                       (peer.history0, peer.history1), peer.bitmap_weight, bool(peer.role),
                       bool(peer.flags & wire.F_CRASHED_PRIMARY),
                       bool(peer.flags & wire.F_DISCARD_MY_DATA),
                       s.peer_disk != DiskState.INCONSISTENT,
                       s.peer_disk == DiskState.DISKLESS)
        policy = gi.Policy(self.cfg.after_sb_0pri, self.cfg.after_sb_1pri, self.cfg.after_sb_2pri)
        verdict = gi.decide(me, them, policy)
        log.info("%s: sync handshake: self %016x:%016x:%016x:%016x bits:%d, peer "
                 "%016x:%016x:%016x:%016x bits:%d: %s", self.disk, me.current, me.bitmap,
                 *me.history, me.weight, them.current, them.bitmap, *them.history,
                 them.weight, verdict)
        link.send(Msg.DECISION, wire.Decision(int(verdict.code)))
        _, dec = await link.expect(Msg.DECISION)
        assert isinstance(dec, wire.Decision)
        if dec.code != int(verdict.code.mirror()):
            raise PeerProtocolError(f"peer decided {dec.code}, we decided {int(verdict.code)}")
        code = verdict.code
        if gi.compare(me, them).code == gi.Code.SPLIT_BRAIN:  # DRBD's initial-split-brain
            how = "not resolved: the disk stays StandAlone" if code == gi.Code.SPLIT_BRAIN \
                else f"resolved: {verdict}"
            self.on_event("initial_split_brain", f"{self.disk}: split brain with "
                                                 f"{self.peer_name} detected, {how}")
        if code == gi.Code.SPLIT_BRAIN:
            text = (f"Split-Brain detected ({verdict.rule}), dropping connection; "
                    f"resolve with `kembar disk resolve {self.disk} --survivor NODE` "
                    "on both nodes")
            self.on_event("split_brain", f"{self.disk}: {text}")
            raise Refuse(text)
        if code == gi.Code.UNRELATED:
            raise Refuse("unrelated data: the peer's generation identifiers share no history "
                          "with ours; refusing to connect")
        if code == gi.Code.REFUSED:
            raise Refuse(f"sync refused: {verdict.rule}")
        self.discard_my_data = False
        if (code == gi.Code.NO_SYNC and self.disk_state == DiskState.OUTDATED
                and s.peer_disk == DiskState.UP_TO_DATE):
            # Same generation as an UpToDate peer: nothing is missing any more.
            self.disk_state = DiskState.UP_TO_DATE
            self.md.was_up_to_date = True
            await self._persist()
        if s.peer_disk == DiskState.DISKLESS:
            await self._on_peer_diskless(s)
        if code.is_sync:
            await self._exchange_bitmaps(s, code, peer.current,
                                        verdict.rule == "resume-full-sync")
        self.conn = ConnState.CONNECTED
        self.counters.connects += 1
        self.last_error = ""
        if code in (gi.Code.SOURCE, gi.Code.SOURCE_FULL):
            s.repl = Repl.SYNC_SOURCE
        elif code in (gi.Code.TARGET, gi.Code.TARGET_FULL):
            s.repl = Repl.SYNC_TARGET
        log.info("%s: connected to %s (%s), %s", self.disk, self.peer_name, link.peer, s.repl.value)

    async def _exchange_bitmaps(self, s: Session, code: gi.Code, peer_current: int,
                                resume: bool) -> None:
        source = code in (gi.Code.SOURCE, gi.Code.SOURCE_FULL)
        if code.full and source:
            self.bitmap.set_all()
        if not source:
            # Inconsistent from the first resync write on, on disk before that write.
            self.disk_state = DiskState.INCONSISTENT
            self.md.consistent = False
            self.md.was_up_to_date = False
            if code.full:
                self.bitmap.set_all()
                if self.md.current == 0:
                    self.md.bitmap_uuid = peer_current & gi.MASK  # resumable: see gi
            elif resume:
                # What is still missing here is what the source still has marked.
                self.bitmap.clear_all()
            await self._persist()
        raw = self.bitmap.to_bytes()
        step = wire.MAX_DATA
        for pos in range(0, max(len(raw), 1), step):
            last = int(pos + step >= len(raw))
            s.link.send(Msg.BITMAP, wire.BitmapChunk(pos, last, raw[pos:pos + step]))
        await s.link.drain()
        got = bytearray()
        while True:
            _, body = await s.link.expect(Msg.BITMAP)
            assert isinstance(body, wire.BitmapChunk)
            if body.offset != len(got) or len(got) + len(body.data) > len(raw):
                raise PeerProtocolError("BITMAP chunks out of order or too long")
            got += body.data
            if body.last:
                break
        if len(got) != len(raw):
            raise PeerProtocolError(f"peer bitmap has {len(got)} bytes, expected {len(raw)}")
        self.bitmap.union_update(bytes(got))
        self.progress = SyncProgress(self.bitmap.count(), time.monotonic())
        if source:
            await self._persist()
