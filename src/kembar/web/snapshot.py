"""What the dashboard and ``/metrics`` show: the daemon's status and each local disk's.

A snapshot is one JSON-able dict::

    {"time": <wall clock>, "node": "node1", "status": <the daemon's status>,
     "disks": {"r0": <the disk process's status> | None}, "disk_errors": {"r0": "..."}}

The disks are asked over their control sockets (``DiskClient``) in worker threads, each
with a short timeout: a disk that is down has no figures (``None`` and a reason), and
never holds the daemon's loop.  Snapshots are shared: one is made at most every
``max_age`` seconds, whoever asks (the live page of every browser, a Prometheus scrape),
and concurrent askers wait for the same one; a new event in the daemon (its version) or
an action (``invalidate``) makes the next one new at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable

from kembar.disk.client import DiskClient
from kembar.errors import KembarError

DISK_TIMEOUT = 1.0  # seconds a disk process has to answer its status


@dataclass
class Backend:
    """What the web server needs of the cluster daemon."""

    node: str
    run_dir: str
    disks: list[str]  # the disks configured on this node
    status: Callable[[], dict[str, Any]]  # the daemon's status, as `kembar status --json`
    version: Callable[[], int]  # grows at every recorded event
    standby: Callable[[bool], str]
    takeover: Callable[[list[str]], str]


def ask_disk(disk: str, run_dir: str, timeout: float = DISK_TIMEOUT) -> dict[str, Any]:
    """One disk's status (blocking; KembarError or OSError when it does not answer)."""
    with DiskClient(disk, run_dir, timeout=timeout) as client:
        return client.status()


class Snapshots:
    def __init__(self, backend: Backend, max_age: float = 0.2,
                 ask: Callable[[str, str], dict[str, Any]] = ask_disk) -> None:
        self.backend = backend
        self.max_age = max_age
        self._ask = ask
        self._last: dict[str, Any] | None = None
        self._made = 0.0
        self._version = -1
        self._pending: asyncio.Future[dict[str, Any]] | None = None

    def invalidate(self) -> None:
        """The next ``get`` makes a new snapshot (after an action changed the state)."""
        self._last = None

    async def get(self) -> dict[str, Any]:
        if self._last is not None and time.monotonic() - self._made < self.max_age and \
                self.backend.version() == self._version:
            return self._last
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._make())
        pending = self._pending
        try:
            return await asyncio.shield(pending)
        finally:
            if pending.done() and self._pending is pending:
                self._pending = None

    async def _make(self) -> dict[str, Any]:
        disks: dict[str, Any] = {}
        errors: dict[str, str] = {}
        version = self.backend.version()
        results = await asyncio.gather(*(self._disk(d) for d in self.backend.disks))
        for name, (st, err) in zip(self.backend.disks, results):
            disks[name] = st
            if err:
                errors[name] = err
        snap = {"time": time.time(), "node": self.backend.node,
                "status": self.backend.status(), "disks": disks, "disk_errors": errors}
        self._last, self._made, self._version = snap, time.monotonic(), version
        return snap

    async def _disk(self, name: str) -> tuple[dict[str, Any] | None, str]:
        try:
            st = await asyncio.wait_for(
                asyncio.to_thread(self._ask, name, self.backend.run_dir), DISK_TIMEOUT * 2)
            return st, ""
        except asyncio.TimeoutError:
            return None, f"no answer within {DISK_TIMEOUT * 2:.0f} s"
        except (KembarError, OSError, ValueError) as exc:
            return None, str(exc) or type(exc).__name__
