"""The replication wire format: strict frames, a registry of message types.

Invariants:
- Every frame is one fixed header (``HEADER``) followed by exactly ``length`` payload
  bytes; the crc32c covers the header (with the crc field zero) and the payload.
- Nothing is decoded from a frame whose magic, version, type, length cap, reserved
  flags or checksum is wrong, and a payload must have exactly the size its message
  type declares (no trailing bytes): every violation is a ``PeerProtocolError``.
- No pickle, no native byte order, no unbounded lengths.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

import crc32c as _crc

from kembar.errors import PeerProtocolError

MAGIC = b"KMBR"
VERSION = 1
# magic, version, type, flags (reserved, 0), payload length, sequence, crc32c
HEADER = struct.Struct("!4sBBHIQI")
HEADER_SIZE = HEADER.size
MAX_DATA = 1024 * 1024  # largest data block in one DATA/RS_DATA message
MAX_PAYLOAD = MAX_DATA + 4096  # hard cap on any payload
CHALLENGE_SIZE = 32
MAC_SIZE = 32


class Msg(IntEnum):
    HELLO = 1
    AUTH = 2
    PARAMS = 3
    DECISION = 4
    BITMAP = 5
    DATA = 6
    RECV_ACK = 7
    WRITE_ACK = 8
    FLUSH = 9
    FLUSH_ACK = 10
    RS_DATA = 11
    RS_ACK = 12
    RS_CSUM = 13
    RS_IN_SYNC = 14
    RS_WANT = 15
    SYNC_DONE = 16
    OV_REQ = 17
    OV_REPLY = 18
    OV_DONE = 19
    PING = 20
    PING_ACK = 21
    STATE = 22
    ROLE_REQ = 23
    ROLE_REPLY = 24
    BYE = 25
    READ_REQ = 26
    READ_REPLY = 27


def _crc_of(header_zero_crc: bytes, parts: list[bytes | bytearray | memoryview]) -> int:
    crc = _crc.crc32c(header_zero_crc)
    for part in parts:
        crc = _crc.crc32c(part, crc)
    return int(crc)


def encode_frame(kind: Msg, seq: int,
                 *parts: bytes | bytearray | memoryview) -> list[bytes | bytearray | memoryview]:
    """Frame a payload given in pieces; returns pieces for ``writelines`` (no copy)."""
    length = sum(len(p) for p in parts)
    if length > MAX_PAYLOAD:
        raise ValueError(f"payload of {length} bytes exceeds the cap of {MAX_PAYLOAD}")
    head0 = HEADER.pack(MAGIC, VERSION, int(kind), 0, length, seq, 0)
    crc = _crc_of(head0, list(parts))
    return [HEADER.pack(MAGIC, VERSION, int(kind), 0, length, seq, crc), *parts]


def encode_body(kind: Msg, seq: int, body: "Body") -> list[bytes | bytearray | memoryview]:
    return encode_frame(kind, seq, body.encode())  # type: ignore[attr-defined]


def encode_data(kind: Msg, seq: int, offset: int,
                data: bytes | bytearray | memoryview) -> list[bytes | bytearray | memoryview]:
    """DATA / RS_DATA without copying the data."""
    return encode_frame(kind, seq, DataBlock.FIXED.pack(offset), data)


@dataclass(frozen=True)
class FrameHeader:
    kind: Msg
    length: int
    seq: int
    crc: int
    raw: bytes


def decode_header(raw: bytes) -> FrameHeader:
    """Check everything the header alone can tell; the crc is checked with the payload."""
    if len(raw) != HEADER_SIZE:
        raise PeerProtocolError(f"short frame header ({len(raw)} bytes)")
    magic, version, kind, flags, length, seq, crc = HEADER.unpack(raw)
    if magic != MAGIC:
        raise PeerProtocolError(f"bad magic {magic!r}")
    if version != VERSION:
        raise PeerProtocolError(f"unsupported protocol version {version}")
    if flags != 0:
        raise PeerProtocolError(f"reserved flags set ({flags:#x})")
    try:
        msg = Msg(kind)
    except ValueError:
        raise PeerProtocolError(f"unknown message type {kind}") from None
    if length > MAX_PAYLOAD:
        raise PeerProtocolError(f"oversized frame: {length} bytes (cap {MAX_PAYLOAD})")
    return FrameHeader(msg, length, seq, crc, raw)


def check_payload(head: FrameHeader, payload: bytes | bytearray) -> None:
    head0 = head.raw[: HEADER_SIZE - 4] + b"\0\0\0\0"
    if _crc_of(head0, [payload]) != head.crc:
        raise PeerProtocolError(f"bad checksum on {head.kind.name} frame seq {head.seq}")


def decode_frame(raw: bytes) -> tuple[FrameHeader, bytes]:
    """Decode one complete frame from bytes (used by tests and fuzzers)."""
    head = decode_header(raw[:HEADER_SIZE])
    payload = raw[HEADER_SIZE:]
    if len(payload) != head.length:
        raise PeerProtocolError(f"frame length {head.length} but {len(payload)} payload bytes")
    check_payload(head, payload)
    return head, payload


# ---------------------------------------------------------------------------
# Payload bodies. Each class declares a fixed struct and, optionally, a tail.


class Body:
    """A message body: a fixed struct, optionally followed by a variable tail."""

    FIXED: ClassVar[struct.Struct]
    TAIL: ClassVar[bool] = False  # True: bytes after the fixed part belong to the body
    KIND: ClassVar[Msg]

    @classmethod
    def _split(cls, payload: bytes | memoryview) -> tuple[tuple[int, ...], memoryview]:
        n = cls.FIXED.size
        if len(payload) < n or (not cls.TAIL and len(payload) != n):
            raise PeerProtocolError(
                f"{cls.KIND.name} payload has {len(payload)} bytes, expected "
                f"{'at least ' if cls.TAIL else ''}{n}")
        return cls.FIXED.unpack_from(payload, 0), memoryview(payload)[n:]


def _names(tail: memoryview, count: int, what: str) -> list[str]:
    parts = bytes(tail).split(b"\0")
    if len(parts) != count:
        raise PeerProtocolError(f"{what}: expected {count} names")
    try:
        names = [p.decode("utf-8") for p in parts]
    except UnicodeDecodeError:
        raise PeerProtocolError(f"{what}: names are not UTF-8") from None
    if any(not n or len(n) > 64 for n in names):
        raise PeerProtocolError(f"{what}: empty or overlong name")
    return names


@dataclass(frozen=True)
class Hello(Body):
    proto: int
    challenge: bytes
    node: str
    disk: str
    FIXED: ClassVar[struct.Struct] = struct.Struct(f"!H{CHALLENGE_SIZE}s")
    TAIL: ClassVar[bool] = True
    KIND: ClassVar[Msg] = Msg.HELLO

    def encode(self) -> bytes:
        return self.FIXED.pack(self.proto, self.challenge) + f"{self.node}\0{self.disk}".encode()

    @classmethod
    def decode(cls, payload: bytes) -> Hello:
        (proto, challenge), tail = cls._split(payload)
        node, disk = _names(tail, 2, "HELLO")
        return cls(proto, bytes(challenge), node, disk)


@dataclass(frozen=True)
class Auth(Body):
    mac: bytes
    FIXED: ClassVar[struct.Struct] = struct.Struct(f"!{MAC_SIZE}s")
    KIND: ClassVar[Msg] = Msg.AUTH

    def encode(self) -> bytes:
        return self.FIXED.pack(self.mac)

    @classmethod
    def decode(cls, payload: bytes) -> Auth:
        (mac,), _ = cls._split(payload)
        return cls(bytes(mac))


# PARAMS flags
F_CRASHED_PRIMARY = 1
F_DISCARD_MY_DATA = 2
F_PEER_OUTDATED = 4


@dataclass(frozen=True)
class Params(Body):
    size: int
    current: int
    bitmap_uuid: int
    history0: int
    history1: int
    role: int  # 0 Secondary, 1 Primary
    disk_state: int
    flags: int
    protocol: int  # ord('A'|'B'|'C')
    bitmap_weight: int
    FIXED: ClassVar[struct.Struct] = struct.Struct("!QQQQQBBBBQ")
    KIND: ClassVar[Msg] = Msg.PARAMS

    def encode(self) -> bytes:
        return self.FIXED.pack(self.size, self.current, self.bitmap_uuid, self.history0,
                               self.history1, self.role, self.disk_state, self.flags,
                               self.protocol, self.bitmap_weight)

    @classmethod
    def decode(cls, payload: bytes) -> Params:
        vals, _ = cls._split(payload)
        p = cls(*vals)
        if p.role not in (0, 1):
            raise PeerProtocolError(f"PARAMS: bad role {p.role}")
        if p.protocol not in (ord("A"), ord("B"), ord("C")):
            raise PeerProtocolError(f"PARAMS: bad protocol {p.protocol}")
        if p.flags & ~(F_CRASHED_PRIMARY | F_DISCARD_MY_DATA | F_PEER_OUTDATED):
            raise PeerProtocolError(f"PARAMS: unknown flags {p.flags:#x}")
        return p


@dataclass(frozen=True)
class Decision(Body):
    """The sync decision as the sender sees it (code from its own point of view)."""

    code: int
    FIXED: ClassVar[struct.Struct] = struct.Struct("!h")
    KIND: ClassVar[Msg] = Msg.DECISION

    def encode(self) -> bytes:
        return self.FIXED.pack(self.code)

    @classmethod
    def decode(cls, payload: bytes) -> Decision:
        (code,), _ = cls._split(payload)
        return cls(code)


@dataclass(frozen=True)
class BitmapChunk(Body):
    offset: int  # byte offset into the bitmap
    last: int
    data: bytes
    FIXED: ClassVar[struct.Struct] = struct.Struct("!QB")
    TAIL: ClassVar[bool] = True
    KIND: ClassVar[Msg] = Msg.BITMAP

    def encode(self) -> bytes:
        return self.FIXED.pack(self.offset, self.last) + self.data

    @classmethod
    def decode(cls, payload: bytes) -> BitmapChunk:
        (offset, last), tail = cls._split(payload)
        if last not in (0, 1):
            raise PeerProtocolError("BITMAP: bad last flag")
        return cls(offset, last, bytes(tail))


@dataclass(frozen=True)
class DataBlock(Body):
    """DATA and RS_DATA: an offset and the bytes to write there."""

    offset: int
    data: bytes | memoryview
    FIXED: ClassVar[struct.Struct] = struct.Struct("!Q")
    TAIL: ClassVar[bool] = True
    KIND: ClassVar[Msg] = Msg.DATA

    def encode(self) -> bytes:
        return self.FIXED.pack(self.offset) + bytes(self.data)

    @classmethod
    def decode(cls, payload: bytes) -> DataBlock:
        (offset,), tail = cls._split(payload)
        if len(tail) == 0 or len(tail) > MAX_DATA:
            raise PeerProtocolError(f"data block of {len(tail)} bytes")
        return cls(offset, tail)


@dataclass(frozen=True)
class Range(Body):
    """RS_ACK, RS_IN_SYNC, RS_WANT: a byte range; RS_CSUM and OV_REQ/OV_REPLY add a tail."""

    offset: int
    length: int
    tail: bytes = b""
    FIXED: ClassVar[struct.Struct] = struct.Struct("!QI")
    TAIL: ClassVar[bool] = True
    KIND: ClassVar[Msg] = Msg.RS_ACK

    def encode(self) -> bytes:
        return self.FIXED.pack(self.offset, self.length) + self.tail

    @classmethod
    def decode(cls, payload: bytes) -> Range:
        (offset, length), tail = cls._split(payload)
        if length == 0 or length > MAX_DATA:
            raise PeerProtocolError(f"range of {length} bytes")
        return cls(offset, length, bytes(tail))


@dataclass(frozen=True)
class Status(Body):
    """WRITE_ACK, FLUSH_ACK, ROLE_REPLY, OV_DONE: a result code (0 = ok)."""

    code: int
    FIXED: ClassVar[struct.Struct] = struct.Struct("!B")
    KIND: ClassVar[Msg] = Msg.WRITE_ACK

    def encode(self) -> bytes:
        return self.FIXED.pack(self.code)

    @classmethod
    def decode(cls, payload: bytes) -> Status:
        (code,), _ = cls._split(payload)
        return cls(code)


@dataclass(frozen=True)
class State(Body):
    """STATE: the sender's role and disk state changed; SYNC_DONE carries uuids too."""

    role: int
    disk_state: int
    current: int
    bitmap_uuid: int
    history0: int
    history1: int
    FIXED: ClassVar[struct.Struct] = struct.Struct("!BBQQQQ")
    KIND: ClassVar[Msg] = Msg.STATE

    def encode(self) -> bytes:
        return self.FIXED.pack(self.role, self.disk_state, self.current, self.bitmap_uuid,
                               self.history0, self.history1)

    @classmethod
    def decode(cls, payload: bytes) -> State:
        vals, _ = cls._split(payload)
        s = cls(*vals)
        if s.role not in (0, 1):
            raise PeerProtocolError(f"STATE: bad role {s.role}")
        return s


@dataclass(frozen=True)
class Empty(Body):
    """PING, PING_ACK, RECV_ACK, FLUSH, ROLE_REQ: no payload."""

    FIXED: ClassVar[struct.Struct] = struct.Struct("!")
    KIND: ClassVar[Msg] = Msg.PING

    def encode(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, payload: bytes) -> Empty:
        cls._split(payload)
        return cls()


@dataclass(frozen=True)
class Bye(Body):
    reason: str
    FIXED: ClassVar[struct.Struct] = struct.Struct("!")
    TAIL: ClassVar[bool] = True
    KIND: ClassVar[Msg] = Msg.BYE

    def encode(self) -> bytes:
        return self.reason.encode()[:200]

    @classmethod
    def decode(cls, payload: bytes) -> Bye:
        _, tail = cls._split(payload)
        if len(tail) > 200:
            raise PeerProtocolError("BYE: reason too long")
        return cls(bytes(tail).decode("utf-8", "replace"))


@dataclass(frozen=True)
class ReadReq(Body):
    """READ_REQ: a Primary whose own disk cannot serve a read asks the peer for a range.

    The reply (READ_REPLY) carries the request's sequence number."""

    offset: int
    length: int
    FIXED: ClassVar[struct.Struct] = struct.Struct("!QI")
    KIND: ClassVar[Msg] = Msg.READ_REQ

    def encode(self) -> bytes:
        return self.FIXED.pack(self.offset, self.length)

    @classmethod
    def decode(cls, payload: bytes) -> ReadReq:
        (offset, length), _ = cls._split(payload)
        if length == 0 or length > MAX_DATA:
            raise PeerProtocolError(f"READ_REQ: range of {length} bytes")
        return cls(offset, length)


READ_OK = 0
READ_FAILED = 1  # the peer's disk could not serve it (I/O error, Diskless, not UpToDate)


@dataclass(frozen=True)
class ReadReply(Body):
    """READ_REPLY: the offset asked for, a status, and the data (status 0) or nothing."""

    offset: int
    status: int
    data: bytes | memoryview = b""
    FIXED: ClassVar[struct.Struct] = struct.Struct("!QB")
    TAIL: ClassVar[bool] = True
    KIND: ClassVar[Msg] = Msg.READ_REPLY

    def encode(self) -> bytes:
        return self.FIXED.pack(self.offset, self.status) + bytes(self.data)

    @classmethod
    def decode(cls, payload: bytes) -> ReadReply:
        (offset, status), tail = cls._split(payload)
        if status == READ_OK:
            if len(tail) == 0 or len(tail) > MAX_DATA:
                raise PeerProtocolError(f"READ_REPLY: data of {len(tail)} bytes")
        elif status == READ_FAILED:
            if len(tail):
                raise PeerProtocolError("READ_REPLY: data with a failure status")
        else:
            raise PeerProtocolError(f"READ_REPLY: bad status {status}")
        return cls(offset, status, bytes(tail))


BODIES: dict[Msg, type[Body]] = {
    Msg.HELLO: Hello,
    Msg.AUTH: Auth,
    Msg.PARAMS: Params,
    Msg.DECISION: Decision,
    Msg.BITMAP: BitmapChunk,
    Msg.DATA: DataBlock,
    Msg.RECV_ACK: Empty,
    Msg.WRITE_ACK: Status,
    Msg.FLUSH: Empty,
    Msg.FLUSH_ACK: Status,
    Msg.RS_DATA: DataBlock,
    Msg.RS_ACK: Range,
    Msg.RS_CSUM: Range,
    Msg.RS_IN_SYNC: Range,
    Msg.RS_WANT: Range,
    Msg.SYNC_DONE: State,
    Msg.OV_REQ: Range,
    Msg.OV_REPLY: Range,
    Msg.OV_DONE: Status,
    Msg.PING: Empty,
    Msg.PING_ACK: Empty,
    Msg.STATE: State,
    Msg.ROLE_REQ: Empty,
    Msg.ROLE_REPLY: Status,
    Msg.BYE: Bye,
    Msg.READ_REQ: ReadReq,
    Msg.READ_REPLY: ReadReply,
}


def decode_body(kind: Msg, payload: bytes | bytearray) -> Body:
    """Decode a payload for its message type; PeerProtocolError on any mismatch."""
    body_cls = BODIES[kind]
    try:
        return body_cls.decode(payload)  # type: ignore[attr-defined]
    except PeerProtocolError:
        raise
    except (struct.error, ValueError, TypeError) as exc:
        raise PeerProtocolError(f"malformed {kind.name} payload: {exc}") from None


def body_bytes(body: Body) -> bytes:
    return body.encode()  # type: ignore[attr-defined]
