"""A clone: a resource (``clone = true``) that runs on every online node, not only on the
group's owner (Pacemaker's clone; keepalived's usual web server on both nodes).

In the group it stands where it is configured: the group's start starts it if it is not
running (the agent's start is idempotent), the group's stop leaves it running (``stop`` is
a no-op), and while the group runs here the group's monitor watches it as any resource.
Where the group does not run, the manager keeps it up itself (``keep``) and stops it for
good only with ``stop_here`` (standby, the daemon stopping).  One lock serialises the
calls, as the group's worker and the keeper may reach it from two threads.
"""

from __future__ import annotations

import logging
import threading

from kembar.agents.base import Agent

log = logging.getLogger("kembar.manager.clone")


class Clone(Agent):
    def __init__(self, agent: Agent) -> None:
        super().__init__(agent.resource, agent.ctx)
        self.agent = agent
        self._lock = threading.Lock()
        self.up = False  # started (or found running) by us and not stopped since

    def start(self, timeout: float) -> None:
        with self._lock:
            self.agent.start(timeout)
            self.up = True

    def stop(self, timeout: float) -> None:
        """The group leaves: a clone stays (it runs on every online node)."""
        log.debug("%s: left running (a clone)", self.name)

    def monitor(self, timeout: float) -> bool:
        with self._lock:
            return self.agent.monitor(timeout)

    def stop_here(self, timeout: float) -> None:
        with self._lock:
            self.agent.stop(timeout)
            self.up = False

    def __repr__(self) -> str:
        return f"<Clone {self.name}>"
