"""The Python API to a running disk process: control verbs and data I/O.

``DiskClient`` talks to the disk process of this node over its Unix socket.  Writes are
pipelined: ``submit_write`` returns at once while up to ``window`` writes are in flight;
``wait`` collects them; ``write`` and ``flush`` wait for completion.  This is the only path
by which data is written (the FUSE layer uses it too).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from typing import Any

from kembar.disk.control import socket_path
from kembar.disk.ctlproto import OK, REP, REQ, Op
from kembar.errors import DaemonNotRunning, KembarError, StateError

ALREADY_UP = 3  # the disk process's exit status: another one runs this disk here


def take_lock(run_dir: str, disk: str) -> int | None:
    """The disk's lock on this node (``RUN_DIR/DISK.lock``, exclusive, held by its disk
    process for its life and by `down` while it cleans up after a dead one): the open
    file descriptor, or None while someone else holds it.  The kernel releases it when
    its holder dies."""
    fd = os.open(os.path.join(run_dir, f"{disk}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd

PIECE = 1024 * 1024


def default_run_dir() -> str:
    return os.environ.get("KEMBAR_RUN_DIR", "/run/kembar")


class DiskClient:
    def __init__(self, disk: str, run_dir: str | None = None, timeout: float | None = None,
                 window: int = 16) -> None:
        self.disk = disk
        self.path = socket_path(run_dir or default_run_dir(), disk)
        self.window = window
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError):
            self.sock.close()
            raise DaemonNotRunning(f"disk {disk} is not up on this node (no process answers "
                                   f"on {self.path}); run `kembar disk up {disk}`") from None
        self._tag = 0
        self._outstanding: set[int] = set()
        self._done: dict[int, tuple[int, bytes]] = {}
        self._errors: list[str] = []

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> DiskClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- framing

    def _send(self, op: Op, offset: int = 0, payload: bytes | memoryview = b"",
              length: int | None = None) -> int:
        self._tag = (self._tag + 1) & 0xFFFFFFFF
        n = len(payload) if length is None else length
        self.sock.sendall(REQ.pack(op, self._tag, offset, n))
        if payload:
            self.sock.sendall(payload)
        self._outstanding.add(self._tag)
        return self._tag

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if k == 0:
                raise DaemonNotRunning(f"disk process of {self.disk} closed the connection")
            got += k
        return bytes(buf)

    def _recv_one(self) -> None:
        status, tag, length = REP.unpack(self._recv_exact(REP.size))
        data = self._recv_exact(length) if length else b""
        self._outstanding.discard(tag)
        self._done[tag] = (status, data)

    def _result(self, tag: int) -> bytes:
        while tag not in self._done:
            self._recv_one()
        status, data = self._done.pop(tag)
        if status != OK:
            raise StateError(data.decode("utf-8", "replace"))
        return data

    # -- data

    def submit_write(self, offset: int, data: bytes | memoryview) -> None:
        """Queue writes of ``data`` at ``offset`` (split into 1 MiB pieces); errors surface
        in ``wait``/``flush``."""
        view = memoryview(data)
        for pos in range(0, len(view), PIECE):
            while len(self._outstanding) >= self.window:
                self._collect_one()
            self._send(Op.WRITE, offset + pos, view[pos:pos + PIECE])

    def _collect_one(self) -> None:
        self._recv_one()
        for tag in list(self._done):
            status, data = self._done.pop(tag)
            if status != OK:
                self._errors.append(data.decode("utf-8", "replace"))

    def wait(self) -> None:
        """Wait for every submitted write; raise the first error, if any."""
        while self._outstanding:
            self._collect_one()
        if self._errors:
            first, self._errors = self._errors[0], []
            raise StateError(first)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        self.submit_write(offset, data)
        self.wait()

    def read(self, offset: int, length: int) -> bytes:
        self.wait()
        out = []
        for pos in range(0, length, PIECE):
            n = min(PIECE, length - pos)
            out.append(self._result(self._send(Op.READ, offset + pos, length=n)))
        return b"".join(out)

    def flush(self) -> None:
        self.wait()
        self._result(self._send(Op.FLUSH))

    # -- control

    def control(self, verb: str, **args: Any) -> Any:
        self.wait()
        payload = json.dumps({"verb": verb, **args}).encode()
        return json.loads(self._result(self._send(Op.CONTROL, payload=payload)))

    def status(self) -> dict[str, Any]:
        result = self.control("status")
        if not isinstance(result, dict):
            raise KembarError("malformed status reply")
        return result
