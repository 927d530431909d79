"""``disk``: promote/demote a kembar disk (Heartbeat's ``drbddisk``).

Start asks the disk process for ``primary`` and, when refused (the peer is still Primary
for a moment, say, because the deadtime was shorter than the disk's own timeouts),
retries once a second up to six times like drbddisk, within the timeout; then it raises
with the disk's own words.  Stop asks for ``secondary``, retried three times (the device
may still be closing).  Monitor reads the role: Primary → running, Secondary → stopped.  A Primary whose own disk
is Diskless (its backing store failed) keeps running through its peer under
``on_io_error = "detach"``; under ``"failover"`` the monitor raises ``FailoverNow``, and
the manager moves the group without trying a restart.

No disk process on this node: start brings it up first (``kembar disk up``, as the OCF
``drbd`` agent's start runs ``drbdadm up``), gives it a moment to connect, then promotes —
so a disk process that died under a running group is restarted with the group instead of
leaving it nowhere (found by the torture: SIGKILL of the owner's disk process, and the
peer rightly refusing to promote beside a live node whose disk state nobody knew); monitor
fails; stop succeeds, because a disk without its process is served by nobody (nothing
here can be Primary).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

from kembar.agents.base import Agent, AgentContext, AgentError, Deadline, FailoverNow
from kembar.config.groups import DiskResource
from kembar.disk.client import DiskClient
from kembar.errors import DaemonNotRunning, KembarError, StateError

log = logging.getLogger("kembar.agents.disk")

PROMOTE_TRIES = 6
DEMOTE_TRIES = 3
RETRY_INTERVAL = 1.0
CONNECT_WAIT = 5.0  # seconds a disk just brought up is given to connect before promoting


class DiskAgent(Agent):
    resource: DiskResource

    def __init__(self, resource: DiskResource, ctx: AgentContext) -> None:
        super().__init__(resource, ctx)
        self.disk = resource.disk

    def _call(self, verb: str, deadline: Deadline) -> Any:
        """One control verb; ``StateError`` (a refusal) and ``DaemonNotRunning`` pass
        through, every other problem becomes an ``AgentError``."""
        left = deadline.left()
        if left <= 0:
            raise AgentError(f"{self.name}: no time left for `{verb}`")
        try:
            with DiskClient(self.disk, self.ctx.run_dir or None, timeout=left) as client:
                return client.control(verb)
        except (StateError, DaemonNotRunning):
            raise
        except TimeoutError:
            raise AgentError(f"{self.name}: the disk process did not answer `{verb}` "
                             f"within {left:.1f}s") from None
        except KembarError as exc:
            raise AgentError(f"{self.name}: {verb}: {exc}") from None
        except (OSError, ValueError) as exc:
            raise AgentError(f"{self.name}: {verb}: {exc}") from None

    def _retrying(self, verb: str, tries: int, timeout: float) -> None:
        deadline = Deadline(timeout)
        for attempt in range(tries):
            try:
                answer = self._call(verb, deadline)
                log.info("%s: %s", self.name, answer)
                return
            except StateError as exc:
                refused = str(exc)
            if attempt + 1 == tries or deadline.left() <= RETRY_INTERVAL:
                break
            log.info("%s: %s refused (%s); retrying", self.name, verb, refused)
            deadline.sleep(RETRY_INTERVAL)
        raise AgentError(f"{self.name}: {verb} refused: {refused}")

    def start(self, timeout: float) -> None:
        deadline = Deadline(timeout)
        try:
            self._call("status", deadline)
        except DaemonNotRunning:
            self._up(deadline)
        except StateError:
            pass
        try:
            self._retrying("primary", PROMOTE_TRIES, deadline.left())
        except DaemonNotRunning as exc:
            raise AgentError(f"{self.name}: {exc}") from None

    def _up(self, deadline: Deadline) -> None:
        """``kembar disk up``, then up to ``CONNECT_WAIT`` for the peer (a crashed
        Primary's activity log resyncs first; promoting alone would start a new
        generation that the peer must then take from us)."""
        argv = [sys.executable, "-m", "kembar", "disk", "--run-dir",
                self.ctx.run_dir or "/run/kembar"]
        if self.ctx.config:
            argv += ["--config", self.ctx.config]
        if self.ctx.node:
            argv += ["--node", self.ctx.node]
        try:
            res = subprocess.run([*argv, "up", self.disk], capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL, timeout=max(1.0, deadline.left()))
        except subprocess.TimeoutExpired:
            raise AgentError(f"{self.name}: `kembar disk up {self.disk}` did not finish "
                             "in time") from None
        text = (res.stdout + res.stderr).strip()
        if res.returncode != 0 and "is already up" in text:
            log.info("%s: %s (started meanwhile by someone else)", self.name, text)
        elif res.returncode != 0:
            raise AgentError(f"{self.name}: no disk process ran, and `kembar disk up` "
                             f"failed: {text}")
        log.warning("%s: no disk process ran here; brought it up: %s", self.name, text)
        wait = Deadline(min(CONNECT_WAIT, max(0.0, deadline.left() - RETRY_INTERVAL)))
        while wait.left() > 0:
            try:
                st = self._call("status", deadline)
            except (StateError, DaemonNotRunning):
                st = {}
            if isinstance(st, dict) and st.get("peer", {}).get("connection") == "Connected" \
                    and st.get("peer", {}).get("replication") == "Established":
                return
            wait.sleep(0.1)

    def stop(self, timeout: float) -> None:
        try:
            self._retrying("secondary", DEMOTE_TRIES, timeout)
        except DaemonNotRunning:
            log.info("%s: no disk process runs: nothing is Primary here", self.name)

    def monitor(self, timeout: float) -> bool:
        try:
            status = self._call("status", Deadline(timeout))
        except DaemonNotRunning as exc:
            raise AgentError(f"{self.name}: {exc}") from None
        except StateError as exc:
            raise AgentError(f"{self.name}: status: {exc}") from None
        role = status.get("role") if isinstance(status, dict) else None
        if role == "Primary" and status.get("disk_state") == "Diskless":
            why = status.get("diskless_reason") or "its backing store failed"
            if status.get("on_io_error") == "failover":
                raise FailoverNow(f"{self.name}: local disk Diskless ({why}); on_io_error = "
                                  "failover: the group moves to the peer")
            log.warning("%s: local disk Diskless (%s); serving through the peer "
                        "(on_io_error = detach)", self.name, why)
        if role == "Primary":
            return True
        if role == "Secondary":
            return False
        raise AgentError(f"{self.name}: unexpected role {role!r}")
