"""One replication connection: framed send/receive and the authentication handshake.

``recv`` returns only frames whose header, length and crc32c are right and whose body
decodes strictly; anything else raises ``PeerProtocolError`` before a byte is applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os

from kembar.disk import wire
from kembar.disk.wire import Msg
from kembar.errors import AuthError, PeerProtocolError

PROTO = 1


def auth_mac(secret: bytes, challenge: bytes, sender: str, disk: str) -> bytes:
    msg = b"kembar-auth-v1\0" + challenge + sender.encode() + b"\0" + disk.encode()
    return hmac.new(secret, msg, hashlib.sha256).digest()


class Link:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.bytes_in = 0
        self.bytes_out = 0
        writer.transport.set_write_buffer_limits(high=4 * 1024 * 1024)
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"

    async def recv(self) -> tuple[Msg, int, wire.Body]:
        try:
            raw = await self.reader.readexactly(wire.HEADER_SIZE)
            head = wire.decode_header(raw)
            payload = await self.reader.readexactly(head.length) if head.length else b""
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise PeerProtocolError(
                    f"peer vanished in the middle of a frame ({len(exc.partial)} bytes)") from None
            raise ConnectionResetError("connection closed by peer") from None
        wire.check_payload(head, payload)
        self.bytes_in += wire.HEADER_SIZE + head.length
        return head.kind, head.seq, wire.decode_body(head.kind, payload)

    async def expect(self, kind: Msg) -> tuple[int, wire.Body]:
        got, seq, body = await self.recv()
        if got != kind:
            raise PeerProtocolError(f"expected {kind.name}, got {got.name}")
        return seq, body

    def send(self, kind: Msg, body: wire.Body, seq: int = 0) -> None:
        self.send_parts(wire.encode_body(kind, seq, body))

    def send_parts(self, parts: list[bytes | memoryview]) -> None:
        self.bytes_out += sum(len(p) for p in parts)
        self.writer.writelines(parts)

    def buffered(self) -> int:
        return self.writer.transport.get_write_buffer_size()

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - closing a broken socket
            pass


async def authenticate(link: Link, secret: bytes, me: str, peer: str, disk: str) -> None:
    """HELLO both ways, then an HMAC over the other side's challenge both ways."""
    challenge = os.urandom(wire.CHALLENGE_SIZE)
    link.send(Msg.HELLO, wire.Hello(PROTO, challenge, me, disk))
    _, hello = await link.expect(Msg.HELLO)
    assert isinstance(hello, wire.Hello)
    if hello.proto != PROTO:
        raise PeerProtocolError(f"peer speaks protocol {hello.proto}, we speak {PROTO}")
    if hello.disk != disk:
        raise AuthError(f"peer offers disk {hello.disk!r}, expected {disk!r}")
    if hello.node != peer:
        raise AuthError(f"peer calls itself {hello.node!r}, expected {peer!r}")
    if hmac.compare_digest(hello.challenge, challenge):
        raise AuthError("peer reflected our challenge")
    link.send(Msg.AUTH, wire.Auth(auth_mac(secret, hello.challenge, me, disk)))
    _, auth = await link.expect(Msg.AUTH)
    assert isinstance(auth, wire.Auth)
    if not hmac.compare_digest(auth.mac, auth_mac(secret, challenge, peer, disk)):
        raise AuthError("authentication failed: the peer does not know the shared secret")
