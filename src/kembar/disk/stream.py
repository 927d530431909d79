"""Non-blocking stream sockets on the asyncio loop, with few copies.

Sends go out with ``sendmsg`` straight from the callers' buffers (no joining, no
user-space buffer that is shifted on every partial send) and keep the order of the calls;
large reads land with ``recv_into`` in a buffer of their own.  The replication link and
the local control socket both use it (asyncio's streams copy every 1 MiB block 3–4 times).
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from itertools import islice
from typing import Any, Callable, Coroutine

from kembar.errors import PeerProtocolError


class Stream:
    """A non-blocking stream socket (TCP or Unix) driven by the running asyncio loop.

    Sends go out with ``sendmsg`` straight from the caller's buffers (no joining, no
    user-space send buffer to shift); frames keep the order of ``send`` calls.  Large
    payloads are received with ``recv_into`` into their own buffer.
    """

    RBUF = 256 * 1024
    LOW_WATER = 1024 * 1024

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = asyncio.get_running_loop()
        self.bytes_in = 0
        self.bytes_out = 0
        try:
            host, port = sock.getpeername()[:2]
            self.peer = f"{host}:{port}"
            self.peer_host = str(host)
        except (OSError, ValueError):
            self.peer, self.peer_host = "local", "local"
        self._rbuf = bytearray(self.RBUF)
        self._rstart = 0
        self._rend = 0
        self._out: deque[memoryview] = deque()
        self._queued = 0
        self._writing = False
        self._drained = asyncio.Event()
        self._drained.set()
        self._closing = False

    # ---------------------------------------------------------------- receive

    async def _fill(self) -> None:
        if self._rstart == self._rend:
            self._rstart = self._rend = 0
        elif self.RBUF - self._rend < 4096:
            n = self._rend - self._rstart
            self._rbuf[:n] = self._rbuf[self._rstart:self._rend]
            self._rstart, self._rend = 0, n
        got = await self.loop.sock_recv_into(self.sock, memoryview(self._rbuf)[self._rend:])
        if got == 0:
            raise asyncio.IncompleteReadError(b"", None)
        self._rend += got

    async def read_exact(self, n: int, partial: int = 0) -> bytes | bytearray:
        """``n`` bytes; ``partial`` counts bytes of the frame already read (for errors).

        The end of the stream between frames is a ``ConnectionResetError``; inside a
        frame a ``PeerProtocolError`` that says how much of the frame came.
        """
        got = 0
        try:
            while self._rend - self._rstart < n and n <= self.RBUF // 2:
                await self._fill()
            have = self._rend - self._rstart
            if have >= n:
                data = bytes(self._rbuf[self._rstart:self._rstart + n])
                self._rstart += n
                return data
            out = bytearray(n)
            out[:have] = self._rbuf[self._rstart:self._rend]
            self._rstart = self._rend = 0
            view = memoryview(out)
            got = have
            while got < n:
                k = await self.loop.sock_recv_into(self.sock, view[got:])
                if k == 0:
                    raise asyncio.IncompleteReadError(b"", None)
                got += k
            return out
        except asyncio.IncompleteReadError:
            came = partial + max(got, self._rend - self._rstart)
            if came:
                raise PeerProtocolError(
                    f"peer vanished in the middle of a frame ({came} bytes)") from None
            raise ConnectionResetError("connection closed by peer") from None

    # ------------------------------------------------------------------- send

    def send_parts(self, parts: list[bytes | bytearray | memoryview]) -> None:
        if self._closing:
            return
        for part in parts:
            if len(part):
                self._out.append(memoryview(part).cast("B"))
                self._queued += len(part)
        if not self._writing:
            self._flush_out()

    def _flush_out(self) -> None:
        """Send what the socket takes now; wait for writability for the rest."""
        while self._out:
            batch = list(islice(self._out, 64))
            total = sum(len(b) for b in batch)
            try:
                sent = self.sock.sendmsg(batch)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._out.clear()
                self._queued = 0
                self.close()
                return
            self.bytes_out += sent
            self._queued -= sent
            n = sent
            while n:
                head = self._out[0]
                if len(head) <= n:
                    n -= len(head)
                    self._out.popleft()
                else:
                    self._out[0] = head[n:]
                    n = 0
            if sent < total:  # the socket buffer is full
                if not self._writing:
                    self._writing = True
                    self.loop.add_writer(self.fd, self._on_writable)
                break
        else:
            if self._writing:
                self._writing = False
                self.loop.remove_writer(self.fd)
        if self._queued <= self.LOW_WATER:
            self._drained.set()

    def _on_writable(self) -> None:
        if self._closing:
            return
        self._flush_out()

    def buffered(self) -> int:
        return self._queued

    async def drain(self) -> None:
        while self._queued > self.LOW_WATER and not self._closing:
            self._drained.clear()
            await self._drained.wait()

    def close(self) -> None:
        """Shut the connection down; a pending receive sees the end at once."""
        if self._closing:
            return
        self._closing = True
        self._drained.set()
        if self._writing:
            self._writing = False
            self.loop.remove_writer(self.fd)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.loop.call_later(1.0, self.sock.close)



class Listener:
    """Accepts connections on a bound, listening socket; hands each, wrapped by ``wrap``,
    to ``handler``."""

    def __init__(self, sock: socket.socket, wrap: Callable[[socket.socket], Any],
                 handler: Callable[[Any], Coroutine[Any, Any, None]]) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.wrap = wrap
        self.handler = handler
        self.tasks: set[asyncio.Task[None]] = set()
        self.task = asyncio.get_running_loop().create_task(self._accept_loop())

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self.sock)
            task = loop.create_task(self.handler(self.wrap(conn)))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def close(self) -> None:
        self.task.cancel()
        asyncio.get_running_loop().call_soon(self.sock.close)


def tcp_listener(host: str, port: int, wrap: Callable[[socket.socket], Any],
                 handler: Callable[[Any], Coroutine[Any, Any, None]]) -> Listener:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(8)
    except OSError:
        sock.close()
        raise
    return Listener(sock, wrap, handler)
