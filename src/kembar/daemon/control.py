"""The daemon's control socket: one JSON request per line, one JSON reply per line.

Root only: the socket is mode 0600 in a 0700 directory and every connection's peer
credentials are checked.  Requests: ``{"op": "status"}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
from typing import Any, Callable

from kembar.errors import DaemonNotRunning, KembarError

log = logging.getLogger("kembar.daemon.control")

SOCKET_NAME = "kembar.sock"
MAX_LINE = 64 * 1024


def socket_path(run_dir: str) -> str:
    return os.path.join(run_dir, SOCKET_NAME)


class ControlServer:
    def __init__(self, path: str, handlers: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
        self.path = path
        self.handlers = handlers
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        if os.path.exists(self.path):
            os.unlink(self.path)
        old = os.umask(0o077)
        try:
            self.server = await asyncio.start_unix_server(self._client, self.path,
                                                          limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        if struct.unpack("3i", creds)[1] not in (0, os.getuid()):
            writer.close()
            return
        try:
            while line := await reader.readline():
                writer.write(json.dumps(self._answer(line)).encode() + b"\n")
                await writer.drain()
        except (ValueError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            if not isinstance(req, dict) or not isinstance(req.get("op"), str):
                raise ValueError("a request is an object with an op")
        except ValueError as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        handler = self.handlers.get(req["op"])
        if handler is None:
            return {"ok": False, "error": f"unknown op {req['op']!r} "
                                          f"(known: {', '.join(sorted(self.handlers))})"}
        try:
            return {"ok": True, "result": handler(req)}
        except KembarError as exc:
            return {"ok": False, "error": str(exc)}


def request(run_dir: str, req: dict[str, Any], timeout: float = 5.0) -> Any:
    """Ask the running daemon; DaemonNotRunning when none answers."""
    path = socket_path(run_dir)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise DaemonNotRunning(f"the cluster daemon is not running (no {path}); start "
                                   "it with `kembar daemon` or `systemctl start kembar`") \
                from None
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise DaemonNotRunning("the cluster daemon closed the connection")
            buf += chunk
    except socket.timeout:
        raise KembarError(f"the cluster daemon did not answer within {timeout:.0f}s") from None
    finally:
        s.close()
    rep = json.loads(buf)
    if not rep.get("ok"):
        raise KembarError(str(rep.get("error")))
    return rep.get("result")
