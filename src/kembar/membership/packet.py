"""The heartbeat packet: one UDP datagram, compact binary, HMAC-signed.

Layout (network byte order)::

    offset size  field
     0      4    magic b"KBHB"
     4      1    version (1)
     5      1    type (1 heartbeat, 2 shutdown notice)
     6      1    key index (1..15, the authkeys key that made the MAC)
     7      1    flags (reserved, 0)
     8      8    incarnation (u64, grows at every start of the sender)
    16      8    seq (u64)
    24      8    sent_at_ms (u64, the sender's wall clock: informational only)
    32      1+n  cluster name (u8 length + UTF-8, n <= 64)
     .      1+n  node name    (u8 length + UTF-8, n <= 64)
     .      1+n  status       (u8 length + UTF-8, n <= 32, e.g. "up", "shutdown")
     .      2+n  body         (u16 length + bytes, n <= 512; JSON, may be empty)
     .      m    MAC = HMAC(key.secret, every byte above, key.method):
                 m = 16 (md5), 20 (sha1) or 32 (sha256)

Invariants:
- ``decode`` raises nothing but ``BadPacket``, whatever the bytes; its ``reason`` is one
  of ``REASONS`` (the daemon counts dropped packets by reason).
- Only the fixed header and the length bytes are read before the MAC is verified; the
  strings are decoded from authenticated bytes only.  The packet must end exactly at the
  end of the MAC (no trailing bytes).
- Any key in the ring is accepted on input; ``encode`` signs with the ring's sign key.
- Nothing here looks at a clock: replay and freshness are the state machine's job
  (incarnation, seq).
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass
from typing import Literal, get_args

from kembar.errors import PeerProtocolError
from kembar.membership.authkeys import AuthKeys

MAGIC = b"KBHB"
VERSION = 1
HEARTBEAT = 1
SHUTDOWN = 2
TYPES = frozenset({HEARTBEAT, SHUTDOWN})

# magic, version, type, key index, flags, incarnation, seq, sent_at_ms
HEADER = struct.Struct("!4sBBBBQQQ")
HEADER_SIZE = HEADER.size  # 32
_U8 = struct.Struct("!B")
_U16 = struct.Struct("!H")

MAX_NAME = 64  # bytes, cluster and node names
MAX_STATUS = 32  # bytes
MAX_BODY = 1024  # bytes (the packet stays under MAX_PACKET with the longest names)
MAX_PACKET = 1400  # bytes, the whole datagram
MAX_U64 = 2**64 - 1
MAC_SIZES = {"md5": 16, "sha1": 20, "sha256": 32}
MIN_PACKET = HEADER_SIZE + 1 + 1 + 1 + 2 + min(MAC_SIZES.values())

Reason = Literal["short", "magic", "version", "type", "key", "mac", "length", "utf8",
                 "oversize"]
REASONS: frozenset[str] = frozenset(get_args(Reason))


class BadPacket(PeerProtocolError):
    """A datagram that is not an authentic, well-formed heartbeat packet.

    ``reason`` (one of ``REASONS``): ``short`` fewer bytes than the header or the declared
    lengths need; ``magic``; ``version`` an unknown version or reserved flags set;
    ``type`` unknown packet type; ``key`` a key index not in the ring; ``mac`` the MAC does
    not match; ``length`` bytes after the MAC; ``utf8`` a string is not UTF-8;
    ``oversize`` the datagram or a field is over its cap."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        self.reason: Reason = reason
        self.detail = detail
        super().__init__(f"bad heartbeat packet ({reason})" + (f": {detail}" if detail else ""))


@dataclass(frozen=True)
class Packet:
    type: int
    cluster: str
    node: str
    incarnation: int
    seq: int
    status: str
    sent_at_ms: int
    body: bytes = b""


def _text(value: object, what: str, cap: int) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a str, not {type(value).__name__}")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} cannot be encoded as UTF-8") from None
    if len(raw) > cap:
        raise ValueError(f"{what} is {len(raw)} bytes long (at most {cap})")
    return raw


def _u64(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_U64:
        raise ValueError(f"{what} must be an integer from 0 to 2**64-1, not {value!r}")
    return value


def encode(p: Packet, keys: AuthKeys) -> bytes:
    """The signed datagram for ``p``; ``ValueError`` if a field is out of range."""
    if p.type not in TYPES or isinstance(p.type, bool):
        raise ValueError(f"unknown packet type {p.type!r}")
    if not isinstance(p.body, (bytes, bytearray)):
        raise ValueError(f"body must be bytes, not {type(p.body).__name__}")
    if len(p.body) > MAX_BODY:
        raise ValueError(f"body is {len(p.body)} bytes long (at most {MAX_BODY})")
    cluster = _text(p.cluster, "cluster name", MAX_NAME)
    node = _text(p.node, "node name", MAX_NAME)
    status = _text(p.status, "status", MAX_STATUS)
    key = keys.sign_key
    signed = b"".join((
        HEADER.pack(MAGIC, VERSION, p.type, key.index, 0, _u64(p.incarnation, "incarnation"),
                    _u64(p.seq, "seq"), _u64(p.sent_at_ms, "sent_at_ms")),
        _U8.pack(len(cluster)), cluster,
        _U8.pack(len(node)), node,
        _U8.pack(len(status)), status,
        _U16.pack(len(p.body)), bytes(p.body),
    ))
    data = signed + hmac.digest(key.secret, signed, key.method)
    if len(data) > MAX_PACKET:  # cannot happen with the caps above; kept as the rule
        raise ValueError(f"packet is {len(data)} bytes long (at most {MAX_PACKET})")
    return data


def decode(data: bytes | bytearray | memoryview, keys: AuthKeys) -> Packet:
    """Verify and decode one datagram; ``BadPacket`` (and nothing else) if it is not a
    well-formed packet signed by a key of ``keys``."""
    buf = bytes(data)
    size = len(buf)
    if size > MAX_PACKET:
        raise BadPacket("oversize", f"{size} bytes (at most {MAX_PACKET})")
    if size < MIN_PACKET:
        raise BadPacket("short", f"{size} bytes (at least {MIN_PACKET})")
    magic, version, kind, index, flags, incarnation, seq, sent_at_ms = HEADER.unpack_from(buf)
    if magic != MAGIC:
        raise BadPacket("magic")
    if version != VERSION:
        raise BadPacket("version", f"version {version}")
    if flags != 0:
        raise BadPacket("version", f"reserved flags {flags:#x}")
    if kind not in TYPES:
        raise BadPacket("type", f"type {kind}")
    key = keys.keys.get(index)
    if key is None:
        raise BadPacket("key", f"unknown key index {index}")

    # Walk the length fields (not the contents) to find where the MAC starts.
    spans: list[tuple[int, int]] = []
    pos = HEADER_SIZE
    for width, cap in ((1, MAX_NAME), (1, MAX_NAME), (1, MAX_STATUS), (2, MAX_BODY)):
        if pos + width > size:
            raise BadPacket("short", f"{size} bytes")
        length = buf[pos] if width == 1 else _U16.unpack_from(buf, pos)[0]
        if length > cap:
            raise BadPacket("oversize", f"a field of {length} bytes (at most {cap})")
        pos += width
        spans.append((pos, pos + length))
        pos += length
    end = pos + MAC_SIZES[key.method]
    if size < end:
        raise BadPacket("short", f"{size} bytes, {end} declared")
    if size > end:
        raise BadPacket("length", f"{size - end} bytes after the MAC")

    mac = hmac.digest(key.secret, memoryview(buf)[:pos], key.method)
    if not hmac.compare_digest(mac, buf[pos:]):
        raise BadPacket("mac", f"key {index}")

    try:
        cluster, node, status = (buf[a:b].decode("utf-8") for a, b in spans[:3])
    except UnicodeDecodeError:
        raise BadPacket("utf8") from None
    body_from, body_to = spans[3]
    return Packet(kind, cluster, node, incarnation, seq, status, sent_at_ms,
                  buf[body_from:body_to])
