"""One replication connection: framed send/receive and the authentication handshake.

``recv`` returns only frames whose header, length and crc32c are right and whose body
decodes strictly; anything else raises ``PeerProtocolError`` before a byte is applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import socket
from typing import Any, Callable, Coroutine

from kembar.disk import wire
from kembar.disk.wire import Msg
from kembar.errors import AuthError, PeerProtocolError
from kembar.disk.stream import Listener, Stream, tcp_listener

PROTO = 1


def auth_mac(secret: bytes, challenge: bytes, sender: str, disk: str) -> bytes:
    msg = b"kembar-auth-v1\0" + challenge + sender.encode() + b"\0" + disk.encode()
    return hmac.new(secret, msg, hashlib.sha256).digest()


class Link(Stream):
    """A replication connection: strict wire frames over a Stream."""

    async def recv(self) -> tuple[Msg, int, wire.Body]:
        raw = await self.read_exact(wire.HEADER_SIZE, 0)
        head = wire.decode_header(bytes(raw))
        payload = await self.read_exact(head.length, len(raw)) if head.length else b""
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


async def dial(host: str, port: int, local_host: str) -> Link:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.bind((local_host, 0))
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return Link(sock)


def listen(host: str, port: int, handler: Callable[[Link], Coroutine[Any, Any, None]]) -> Listener:
    return tcp_listener(host, port, Link, handler)


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
