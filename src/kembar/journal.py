"""A logging handler that writes to the systemd journal through its native protocol.

The protocol (systemd's "Native Journal Protocol" documentation): one datagram per entry
on the Unix socket ``/run/systemd/journal/socket``; each field is ``NAME=value\\n``, or,
when the value holds a newline, ``NAME\\n``, the value's length as a 64-bit little-endian
number, the value and ``\\n``.  Names are upper-case letters, digits and ``_``, not
starting with ``_`` (those are the journal's own, trusted fields).  An entry too large for
one datagram goes in a sealed memfd whose descriptor is passed with ``SCM_RIGHTS``.

No library is needed (``systemd-python`` builds against libsystemd); the socket path is a
parameter, so tests can read the datagrams.  Sending happens in the logging queue's
thread (``kembar.logsetup``): a journal that does not read makes that thread wait up to
``SEND_TIMEOUT``, never the daemon's loop.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Mapping

DEFAULT_SOCKET = "/run/systemd/journal/socket"
SEND_TIMEOUT = 1.0
ERROR_EVERY = 60.0  # seconds between two complaints on stderr that the journal fails

_NAME_RE = re.compile(r"[A-Z0-9][A-Z0-9_]{0,63}")
_SEALS = (getattr(fcntl, "F_SEAL_SHRINK", 2) | getattr(fcntl, "F_SEAL_GROW", 4)
          | getattr(fcntl, "F_SEAL_WRITE", 8) | getattr(fcntl, "F_SEAL_SEAL", 1))
_F_ADD_SEALS = getattr(fcntl, "F_ADD_SEALS", 1033)

# logging level -> syslog priority (journal field PRIORITY)
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
             logging.DEBUG: 7}


def priority(levelno: int) -> int:
    """The syslog priority of a logging level (a level between two takes the lower one's)."""
    for level, prio in sorted(_PRIORITY.items(), reverse=True):
        if levelno >= level:
            return prio
    return 7


def encode(fields: Mapping[str, str | bytes]) -> bytes:
    """One journal entry in the native format; ValueError on a bad field name."""
    out = bytearray()
    for name, value in fields.items():
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"not a journal field name: {name!r}")
        data = value.encode("utf-8", "replace") if isinstance(value, str) else value
        if b"\n" in data:
            out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


def decode(data: bytes) -> dict[str, bytes]:
    """The fields of an entry in the native format (the reverse of :func:`encode`)."""
    out: dict[str, bytes] = {}
    i = 0
    while i < len(data):
        end = data.index(b"\n", i)
        line = data[i:end]
        if b"=" in line:
            name, _, value = line.partition(b"=")
            out[name.decode()] = value
            i = end + 1
        else:
            (size,) = struct.unpack("<Q", data[end + 1:end + 9])
            out[line.decode()] = data[end + 9:end + 9 + size]
            i = end + 9 + size + 1
    return out


class JournalHandler(logging.Handler):
    """Each record as one journal entry: ``MESSAGE`` (the formatted record), ``PRIORITY``,
    ``SYSLOG_IDENTIFIER``, ``SYSLOG_FACILITY``, ``LOGGER``, ``THREAD_NAME``, ``CODE_FILE``,
    ``CODE_LINE``, ``CODE_FUNC`` and the fixed ``extra`` fields (e.g. ``KEMBAR_NODE``)."""

    def __init__(self, path: str = DEFAULT_SOCKET, identifier: str = "kembar",
                 facility: int = 3, extra: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.path = path
        self.identifier = identifier
        self.facility = facility
        self.extra = dict(extra or {})
        for name in self.extra:
            if not _NAME_RE.fullmatch(name):
                raise ValueError(f"not a journal field name: {name!r}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.settimeout(SEND_TIMEOUT)
        self._complained = 0.0
        self._lock_send = threading.Lock()

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        return {
            "MESSAGE": self.format(record),
            "PRIORITY": str(priority(record.levelno)),
            "SYSLOG_IDENTIFIER": self.identifier,
            "SYSLOG_FACILITY": str(self.facility),
            "LOGGER": record.name,
            "THREAD_NAME": record.threadName or "",
            "CODE_FILE": record.pathname,
            "CODE_LINE": str(record.lineno),
            "CODE_FUNC": record.funcName,
            **self.extra,
        }

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.send(encode(self.fields(record)))
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)

    def send(self, data: bytes) -> None:
        with self._lock_send:
            try:
                self.sock.sendto(data, self.path)
            except OSError as exc:
                if exc.errno not in (90, 105):  # EMSGSIZE, ENOBUFS: too large a datagram
                    raise
                self._send_memfd(data)

    def _send_memfd(self, data: bytes) -> None:
        fd = os.memfd_create("kembar-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            fcntl.fcntl(fd, _F_ADD_SEALS, _SEALS)
            self.sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                    struct.pack("i", fd))], 0, self.path)
        finally:
            os.close(fd)

    def handleError(self, record: logging.LogRecord) -> None:
        """One line on stderr at most every minute (not a traceback per record)."""
        now = time.monotonic()
        if now - self._complained >= ERROR_EVERY or not self._complained:
            self._complained = now
            exc = sys.exc_info()[1]
            print(f"kembar: cannot log to the journal at {self.path}: {exc}; lines are lost "
                  "until it answers", file=sys.stderr)

    def close(self) -> None:
        self.sock.close()
        super().close()
