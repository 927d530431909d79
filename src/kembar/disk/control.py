"""The disk process's Unix socket: control verbs (JSON) and data I/O, root only."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
from typing import Any, Awaitable, Callable

from kembar.disk.ctlproto import ERROR, MAX_REQUEST, OK, REP, REQ, Op
from kembar.disk.device import Device
from kembar.disk.engine import Engine
from kembar.disk.stream import Listener, Stream
from kembar.errors import KembarError, PeerProtocolError

log = logging.getLogger("kembar.disk.control")


def socket_path(run_dir: str, disk: str) -> str:
    return os.path.join(run_dir, f"{disk}.sock")


class ControlServer:
    def __init__(self, engine: Engine, path: str, on_down: Callable[[], None],
                 device: Device | None = None) -> None:
        self.engine = engine
        self.device = device
        self.path = path
        self.on_down = on_down
        self.server: Listener | None = None

    async def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o077)
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(16)
        self.server = Listener(sock, Stream, self._client)

    def close(self) -> None:
        if self.server:
            self.server.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    async def _client(self, st: Stream) -> None:
        creds = st.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        if uid not in (0, os.getuid()):
            st.close()
            return
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    head = await st.read_exact(REQ.size)
                except (ConnectionError, PeerProtocolError, OSError):
                    break
                op, tag, offset, length = REQ.unpack(head)
                if length > MAX_REQUEST:
                    self._reply(st, ERROR, tag, f"request of {length} bytes is too large".encode())
                    break
                carries = op in (Op.WRITE, Op.CONTROL)
                try:
                    payload = await st.read_exact(length, REQ.size) if length and carries else b""
                except (ConnectionError, PeerProtocolError, OSError):
                    break
                task = asyncio.create_task(self._handle(st, op, tag, offset, length, payload))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            await st.drain()
            st.close()

    def _reply(self, st: Stream, status: int, tag: int, data: bytes) -> None:
        st.send_parts([REP.pack(status, tag, len(data)), data])

    async def _handle(self, writer: Stream, op: int, tag: int, offset: int,
                      length: int, payload: bytes | bytearray) -> None:
        try:
            if op == Op.WRITE:
                await self.engine.write(offset, payload)
                data = b""
            elif op == Op.READ:
                data = await self.engine.read(offset, length)
            elif op == Op.FLUSH:
                await self.engine.flush()
                data = b""
            elif op == Op.CONTROL:
                data = json.dumps(await self._control(json.loads(payload))).encode()
            else:
                raise KembarError(f"unknown request type {op}")
        except (KembarError, ValueError) as exc:
            self._reply(writer, ERROR, tag, str(exc).encode())
            return
        except Exception as exc:  # noqa: BLE001 - report, never die on one request
            log.exception("BUG: request %s failed", op)
            self._reply(writer, ERROR, tag, f"internal error: {exc}".encode())
            return
        self._reply(writer, OK, tag, data)
        if op == Op.READ and length != len(data):
            log.error("BUG: short read")

    async def _control(self, req: dict[str, Any]) -> Any:
        verb = req.get("verb")
        e = self.engine
        roles: Any = self.device or e  # with a block device, roles go through it
        handlers: dict[str, Callable[[], Awaitable[Any]]] = {
            "status": self._status,
            "primary": lambda: roles.promote(force=bool(req.get("force"))),
            "secondary": roles.demote,
            "connect": lambda: e.connect(discard_my_data=bool(req.get("discard_my_data"))),
            "disconnect": e.disconnect,
            "check-peer": lambda: e.check_peer(_seconds(req.get("timeout"))),
            "outdate": e.outdate,
            "attach": e.attach,
            "save-recovery": lambda: e.save_recovery(_text(req.get("path")),
                                                     bool(req.get("blocks_only"))),
            "verify": e.verify,
            "down": lambda: self._down(bool(req.get("force"))),
        }
        handler = handlers.get(str(verb))
        if handler is None:
            raise KembarError(f"unknown verb {verb!r}")
        return await handler()

    async def _status(self) -> Any:
        st = self.engine.status()
        if self.device is not None:
            st["block"] = self.device.status()
        return st

    async def _down(self, force: bool) -> str:
        if self.device is not None:
            await self.device.check_down(force)
        asyncio.get_running_loop().call_soon(self.on_down)
        return f"{self.engine.disk}: going down"


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 4096 or "\0" in value:
        raise KembarError(f"path: a file name, got {value!r}")
    return value


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 60:
        raise KembarError(f"timeout: a number of seconds in (0, 60], got {value!r}")
    return float(value)
