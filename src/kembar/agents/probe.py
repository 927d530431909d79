"""``probe``: what clients see — an HTTP GET (say, through the VIP) or any command.

Up = a 2xx/3xx answer (redirects are not followed; proxies from the environment are not
used: the probe must reach the address itself), or a command that exits 0.  Start waits,
probing every 0.1 s, until the probe passes or the timeout is up; stop does nothing;
monitor runs the probe once and reports a failure as an ``AgentError`` ("probe failed:
…"), never as a clean "stopped": a probe has no state of its own to be stopped.
"""

from __future__ import annotations

import http.client
import logging
import urllib.error
import urllib.request
from typing import Any

from kembar.agents.base import Agent, AgentError, Deadline, run_command
from kembar.config.groups import ProbeResource

log = logging.getLogger("kembar.agents.probe")

POLL = 0.1


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx then surfaces as an HTTPError with its code


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


class ProbeAgent(Agent):
    resource: ProbeResource

    def check(self, timeout: float) -> str | None:
        """Probe once: None when up, else why not."""
        if timeout <= 0:
            return "no time left"
        if self.resource.url:
            return self._http(self.resource.url, timeout)
        if self.resource.command:
            try:
                res = run_command(self.resource.command, timeout, "command")
            except AgentError as exc:  # not found, or too slow: a failed probe like any
                return str(exc)
            return None if res.returncode == 0 else f"exit {res.returncode}: {res.reason()}"
        return "nothing to probe (neither url nor command)"

    @staticmethod
    def _http(url: str, timeout: float) -> str | None:
        try:
            with _OPENER.open(url, timeout=timeout) as answer:
                code = int(answer.status)
        except urllib.error.HTTPError as exc:
            code = int(exc.code)
            exc.close()
        except urllib.error.URLError as exc:
            return f"{url}: {exc.reason}"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return f"{url}: {exc or type(exc).__name__}"
        return None if 200 <= code < 400 else f"{url}: HTTP {code}"

    def start(self, timeout: float) -> None:
        deadline = Deadline(timeout)
        while True:
            why = self.check(deadline.left())
            if why is None:
                return
            if deadline.left() <= POLL:
                raise AgentError(f"{self.name}: probe failed for {timeout:.1f}s: {why}")
            deadline.sleep(POLL)

    def stop(self, timeout: float) -> None:
        return None

    def monitor(self, timeout: float) -> bool:
        why = self.check(timeout)
        if why is not None:
            raise AgentError(f"{self.name}: probe failed: {why}")
        return True
