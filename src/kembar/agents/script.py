"""``script``: Heartbeat ``resource.d`` scripts and OCF resource agents, run as they are.

Heartbeat style (``ocf = false``): ``PATH ARG… start|stop|status``.  Whether it runs is
read from the *output* of ``status``, as Heartbeat's ResourceManager does
(``we_own_resource``): "not running" or "stopped" → stopped, else "running" or "OK" →
running, else stopped; the exit status of ``status`` is ignored.  A bare name is looked
up in ``/etc/ha.d/resource.d`` then ``/etc/init.d`` (ResourceManager's ``scriptpath``).
Start is skipped when status already says running; a failed stop is forgiven when status
then says stopped.

OCF (``ocf = true``): ``PATH start|stop|monitor`` with ``OCF_ROOT``,
``OCF_RESOURCE_INSTANCE``, ``OCF_RESOURCE_TYPE`` and each ``name=value`` argument as
``OCF_RESKEY_name=value`` in the environment; exit 0 = success/running, 7 = not running,
anything else = an error.  A bare ``provider/type`` is looked up under
``$OCF_ROOT/resource.d``.
"""

from __future__ import annotations

import logging
import os
import re

from kembar.agents.base import Agent, AgentContext, AgentError, Completed, Deadline, \
    run_command
from kembar.config.groups import ScriptResource

log = logging.getLogger("kembar.agents.script")

_NOT_RUNNING = re.compile(r"[Nn]ot [Rr]unning|[Ss]topped")
_RUNNING = re.compile(r"[Rr]unning|OK")
_RESKEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

OCF_SUCCESS = 0
OCF_NOT_RUNNING = 7
OCF_CODES = {1: "generic error", 2: "invalid arguments", 3: "unimplemented action",
             4: "insufficient privileges", 5: "not installed", 6: "not configured",
             8: "running as master", 9: "failed as master"}


def says_running(status_output: str) -> bool:
    """Heartbeat's reading of a resource script's ``status`` output."""
    if _NOT_RUNNING.search(status_output):
        return False
    return bool(_RUNNING.search(status_output))


def ocf_environment(args: list[str], instance: str, rtype: str, ocf_root: str,
                    timeout: float) -> dict[str, str]:
    """The environment of an OCF agent; ValueError for an argument not ``name=value``."""
    env = {"OCF_ROOT": ocf_root, "OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": "0",
           "OCF_RESOURCE_INSTANCE": instance, "OCF_RESOURCE_TYPE": rtype,
           "OCF_RESKEY_CRM_meta_timeout": str(int(timeout * 1000))}
    for arg in args:
        name, sep, value = arg.partition("=")
        if not sep or not _RESKEY.fullmatch(name):
            raise ValueError(f"OCF agent argument {arg!r} is not name=value")
        env[f"OCF_RESKEY_{name}"] = value
    return env


class ScriptAgent(Agent):
    resource: ScriptResource

    def __init__(self, resource: ScriptResource, ctx: AgentContext) -> None:
        super().__init__(resource, ctx)
        self.path = self._locate(resource.path)
        self.rtype = os.path.basename(resource.path)
        self.instance = f"{ctx.group}-{self.rtype}" if ctx.group else self.rtype

    def _locate(self, path: str) -> str:
        if path.startswith("/"):
            return path
        if self.resource.ocf:
            return os.path.join(self.ctx.ocf_root, "resource.d", path)
        for where in (self.ctx.ha_resource_dir, self.ctx.init_dir):
            candidate = os.path.join(where, path)
            if os.path.exists(candidate):
                return candidate
        return os.path.join(self.ctx.ha_resource_dir, path)

    def _run(self, action: str, timeout: float) -> Completed:
        if not os.path.exists(self.path):
            raise AgentError(f"{self.name}: no such script {self.path}")
        if self.resource.ocf:
            try:
                env = ocf_environment(self.resource.args, self.instance, self.rtype,
                                      self.ctx.ocf_root, timeout)
            except ValueError as exc:
                raise AgentError(f"{self.name}: {exc}") from None
            return run_command([self.path, action], timeout, self.name, env=env)
        return run_command([self.path, *self.resource.args, action], timeout, self.name)

    def _failed(self, action: str, res: Completed) -> AgentError:
        what = f" ({OCF_CODES[res.returncode]})" if (
            self.resource.ocf and res.returncode in OCF_CODES) else ""
        return AgentError(f"{self.name}: {action} exited {res.returncode}{what}: "
                          f"{res.reason()}")

    def start(self, timeout: float) -> None:
        deadline = Deadline(timeout)
        if not self.resource.ocf and self.monitor(deadline.left()):
            return
        res = self._run("start", deadline.left())
        if res.returncode != 0:
            raise self._failed("start", res)

    def stop(self, timeout: float) -> None:
        deadline = Deadline(timeout)
        res = self._run("stop", deadline.left())
        if res.returncode == 0:
            return
        if not self.resource.ocf and not self.monitor(deadline.left()):
            log.warning("%s: stop exited %d but status says stopped", self.name,
                        res.returncode)
            return
        raise self._failed("stop", res)

    def monitor(self, timeout: float) -> bool:
        if not self.resource.ocf:
            return says_running(self._run("status", timeout).stdout)
        res = self._run("monitor", timeout)
        if res.returncode == OCF_SUCCESS:
            return True
        if res.returncode == OCF_NOT_RUNNING:
            return False
        raise self._failed("monitor", res)
