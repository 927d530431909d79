"""The bookkeeping of one connection: pending writes, acknowledgements, counters."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from kembar.disk.link import Link
from kembar.disk.states import DiskState, Repl, Role

SEND_HIGH_WATER = 8 * 1024 * 1024  # queued bytes on the link before a writer waits


@dataclass
class Pending:
    """A replicated write the peer has not acknowledged yet."""

    offset: int
    length: int
    extents: range
    received: asyncio.Future[None]
    written: asyncio.Future[None]
    sent_at: float
    peer_ok: bool = False  # the peer wrote it (WRITE_ACK with status 0)


@dataclass
class Counters:
    sent: int = 0  # application bytes sent to the peer
    received: int = 0  # application bytes received from the peer
    rs_sent: int = 0  # resync bytes sent
    rs_received: int = 0
    al_writes: int = 0
    flushes: int = 0  # flushes completed on this node (local fsync; on B/C the peer's too)
    peer_flushes: int = 0  # flushes done on behalf of the peer (as Secondary)
    protocol_errors: int = 0
    auth_failures: int = 0
    connects: int = 0
    io_errors: int = 0  # I/O errors of the local backing store
    peer_reads: int = 0  # reads served by the peer because the local disk could not


@dataclass
class SyncProgress:
    total_bits: int = 0
    started: float = 0.0
    samples: list[tuple[float, int]] = field(default_factory=list)


@dataclass
class Token:
    start: int
    end: int
    stale: bool = False


class Session:
    """One authenticated connection and its bookkeeping."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.peer_role = Role.SECONDARY
        self.peer_disk = DiskState.DUNKNOWN
        self.repl = Repl.ESTABLISHED
        self.pending: dict[int, Pending] = {}
        self.flushes: dict[int, asyncio.Future[int]] = {}  # FLUSH seq -> status (-1 lost)
        self.rs_waiting: dict[int, asyncio.Future[int]] = {}  # resync offset -> ack
        self.ov_waiting: dict[int, asyncio.Future[bytes]] = {}
        # READ_REQ seq -> (offset, length, data or None when the peer could not serve it)
        self.reads: dict[int, tuple[int, int, asyncio.Future[bytes | None]]] = {}
        self.role_reply: asyncio.Future[int] | None = None
        self.last_rx = time.monotonic()
        self.busy = False  # the receive loop waits for local I/O, not for the peer
        self.tasks: list[asyncio.Task[Any]] = []
        self.closed = asyncio.Event()


class Refuse(Exception):
    """The handshake ended in a refusal that needs the operator (split brain, …)."""
