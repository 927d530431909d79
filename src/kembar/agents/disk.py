"""``disk``: promote/demote a kembar disk (Heartbeat's ``drbddisk``).

Start asks the disk process for ``primary`` and, when refused (the peer is still Primary
for a moment, say, because the deadtime was shorter than the disk's own timeouts),
retries once a second up to six times like drbddisk, within the timeout; then it raises
with the disk's own words.  Stop asks for ``secondary``, retried three times (the device
may still be closing).  Monitor reads the role: Primary → running, Secondary → stopped.

No disk process on this node: start and monitor fail; stop succeeds, because a disk
without its process is served by nobody (nothing here can be Primary).
"""

from __future__ import annotations

import logging
from typing import Any

from kembar.agents.base import Agent, AgentContext, AgentError, Deadline
from kembar.config.groups import DiskResource
from kembar.disk.client import DiskClient
from kembar.errors import DaemonNotRunning, KembarError, StateError

log = logging.getLogger("kembar.agents.disk")

PROMOTE_TRIES = 6
DEMOTE_TRIES = 3
RETRY_INTERVAL = 1.0


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
        try:
            self._retrying("primary", PROMOTE_TRIES, timeout)
        except DaemonNotRunning as exc:
            raise AgentError(f"{self.name}: {exc}") from None

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
        if role == "Primary":
            return True
        if role == "Secondary":
            return False
        raise AgentError(f"{self.name}: unexpected role {role!r}")
