"""Logging of the long-running processes (the cluster daemon, the disk processes) as the
cluster file's ``[logging]`` table says: stderr, a file, syslog, the journal.

Every record goes through a queue to one thread that writes it (``QueueListener``): a log
file on a disk busy with writeback, a syslog daemon or a journal that is slow to read, may
make a write wait, and heartbeats and disk I/O must not wait with it.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Mapping
from logging.handlers import QueueHandler, QueueListener, SysLogHandler, WatchedFileHandler
from queue import Queue
from typing import TextIO

from kembar.config.logs import LoggingConfig, syslog_target
from kembar.errors import ConfigError
from kembar.journal import JournalHandler

ERROR_EVERY = 60.0

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class _Syslog(SysLogHandler):
    """SysLogHandler that complains on stderr at most once a minute (not a traceback per
    record) while the syslog daemon does not answer; it reconnects at each record."""

    _complained = 0.0

    def handleError(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        if not self._complained or now - self._complained >= ERROR_EVERY:
            self._complained = now
            print(f"kembar: cannot log to syslog at {self.address}: {sys.exc_info()[1]}; "
                  "lines are lost until it answers", file=sys.stderr)


def make_handlers(cfg: LoggingConfig | None, node: str, identifier: str,
                  fields: Mapping[str, str] | None = None,
                  stderr: TextIO | None = None) -> list[logging.Handler]:
    """The handlers ``cfg`` names (stderr without a table); ConfigError if the log file
    cannot be opened.  ``fields`` go to the journal with each entry (``KEMBAR_DISK``)."""
    cfg = cfg or LoggingConfig()
    full = logging.Formatter(f"%(asctime)s {node} %(name)s %(levelname)s: %(message)s")
    out: list[logging.Handler] = []
    for target in cfg.targets:
        handler: logging.Handler
        if target == "stderr":
            handler = logging.StreamHandler(stderr or sys.stderr)
            handler.setFormatter(full)
        elif target == "file":
            assert cfg.file is not None
            try:
                handler = WatchedFileHandler(cfg.file, encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"logging.file: cannot open {cfg.file}: "
                                  f"{exc.strerror or exc}") from None
            handler.setFormatter(full)
        elif target == "syslog":
            facility = SysLogHandler.facility_names[cfg.syslog_facility]
            handler = _Syslog(syslog_target(cfg.syslog_address), facility, socket.SOCK_DGRAM)
            handler.ident = f"{identifier}[{os.getpid()}]: "
            handler.append_nul = False
            handler.setFormatter(logging.Formatter(
                f"{node} %(name)s %(levelname)s: %(message)s"))
        else:
            facility = SysLogHandler.facility_names[cfg.syslog_facility]
            handler = JournalHandler(cfg.journal_socket, identifier, facility,
                                     {"KEMBAR_NODE": node, **(fields or {})})
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        out.append(handler)
    return out


def setup_logging(cfg: LoggingConfig | None, node: str, identifier: str, debug: bool = False,
                  fields: Mapping[str, str] | None = None,
                  stderr: TextIO | None = None) -> QueueListener:
    """Route the root logger through a queue to ``cfg``'s targets; returns the started
    listener (``stop()`` it at the end: it writes what is still queued)."""
    handlers = make_handlers(cfg, node, identifier, fields, stderr)
    level = logging.DEBUG if debug else _LEVELS[(cfg or LoggingConfig()).level]
    queue: Queue[logging.LogRecord] = Queue()
    to_queue = QueueHandler(queue)
    to_queue.setFormatter(logging.Formatter("%(message)s"))  # each handler formats
    logging.basicConfig(level=level, handlers=[to_queue], force=True)
    listener = QueueListener(queue, *handlers)
    listener.start()
    return listener
