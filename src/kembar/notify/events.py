"""What a notify hook runs for an event, and with which environment (pure).

The cluster daemon's history entries (membership events, the manager's records) become
:class:`Notice` objects with :func:`from_history`; a disk process makes its own with
:func:`disk_notice`.  :func:`invocations` turns a notice into the commands to run: the
event's own hook, then the catch-all ``any``, each with the same environment:

=====================  ===============================================================
``KEMBAR_EVENT``       the event (``node_dead``, ``failover``, ``split_brain`` …)
``KEMBAR_HOOK``        the configuration key that named this command (the event or any)
``KEMBAR_CLUSTER``     the cluster's name
``KEMBAR_LOCAL_NODE``  the node running the hook
``KEMBAR_NODE``        the node the event is about (the dead one; else this one)
``KEMBAR_FROM_NODE``   failover and failback: the node the group ran on before
``KEMBAR_GROUP``       the resource group, if any
``KEMBAR_RESOURCE``    the resource, if any (resource_failed)
``KEMBAR_DISK``        the disk, if any (also as ``DRBD_RESOURCE``, which DRBD's
                       handler scripts read)
``KEMBAR_TEXT``        one line saying what happened, as the log says it
``KEMBAR_TIME``        when, in seconds since the epoch
=====================  ===============================================================

Keys that do not apply are set empty (scripts with ``set -u`` need not test them).  The
hook inherits nothing else from kembar's environment but ``PATH``, ``LANG``, ``LC_ALL``
and ``TZ``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kembar.config.notify import CATCH_ALL, EVENTS, NotifyConfig

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INHERITED = ("PATH", "LANG", "LC_ALL", "TZ")
MAX_TEXT = 1000  # characters of KEMBAR_TEXT

# the resource manager's records that are a resource failing here
_FAILURES = {"MonitorFailed": "monitor", "GroupStartFailed": "start",
             "ResourceRestartFailed": "restart", "GroupStopFailed": "stop"}


@dataclass(frozen=True)
class Notice:
    """One event worth a hook: what happened and to what."""

    event: str
    text: str
    node: str = ""  # the node it is about ("": the local node)
    group: str = ""
    resource: str = ""
    disk: str = ""
    from_node: str = ""
    time: float = 0.0

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"unknown notify event {self.event!r}")


@dataclass(frozen=True)
class Invocation:
    """One command to run: for which notice, named by which key, how, for how long."""

    event: str
    key: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    timeout: float

    def describe(self) -> str:
        what = self.event if self.key == self.event else f"{self.event} (hook {self.key})"
        return f"{what}: {' '.join(self.argv)}"


def moved(me: str, previous: str | None, preferred: str) -> str | None:
    """A group just started on ``me``: ``failback`` if it came home to its preferred
    node from another one, ``failover`` if it came from another node elsewhere, None if it
    ran nowhere before (a first start) or here."""
    if not previous or previous == me:
        return None
    return "failback" if me == preferred else "failover"


def from_history(entry: Mapping[str, Any], me: str, preferred: Mapping[str, str]
                 ) -> Notice | None:
    """The notice for one entry of the cluster daemon's history (None: no hook event).

    ``preferred`` maps each group to its preferred node (failover or failback)."""
    kind = str(entry.get("event", ""))
    text = str(entry.get("text", kind))
    at = float(entry.get("time") or 0.0)
    group = str(entry.get("group") or "")
    if kind == "NodeDead":
        return Notice("node_dead", text, node=str(entry.get("node", "")), time=at)
    if kind == "NodeUp":
        return Notice("node_up", text, node=str(entry.get("node", "")), time=at)
    if kind == "GroupStarted":
        previous = entry.get("from")
        how = moved(me, str(previous) if previous else None, preferred.get(group, ""))
        if how is None:
            return None
        return Notice(how, text, group=group, from_node=str(previous), time=at)
    if kind in _FAILURES:
        resource = str(entry.get("resource") or "")
        return Notice("resource_failed", text, group=group, resource=resource, time=at)
    if kind == "FenceFailed":
        return Notice("fence_failed", text, node=str(entry.get("node", "")), time=at)
    return None


def disk_notice(event: str, disk: str, text: str, now: float) -> Notice:
    """A disk process's notice (split brain, detached) about its own disk."""
    return Notice(event, text, disk=disk, time=now)


def environment(notice: Notice, key: str, cluster: str, me: str,
                parent: Mapping[str, str]) -> dict[str, str]:
    """The hook's whole environment (see the module's table)."""
    env = {name: parent[name] for name in INHERITED if name in parent}
    env.setdefault("PATH", DEFAULT_PATH)
    text = " ".join(notice.text.split())
    env.update({
        "KEMBAR_EVENT": notice.event,
        "KEMBAR_HOOK": key,
        "KEMBAR_CLUSTER": cluster,
        "KEMBAR_LOCAL_NODE": me,
        "KEMBAR_NODE": notice.node or me,
        "KEMBAR_FROM_NODE": notice.from_node,
        "KEMBAR_GROUP": notice.group,
        "KEMBAR_RESOURCE": notice.resource,
        "KEMBAR_DISK": notice.disk,
        "KEMBAR_TEXT": text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 3] + "...",
        "KEMBAR_TIME": f"{notice.time:.3f}",
    })
    if notice.disk:
        env["DRBD_RESOURCE"] = notice.disk
    return {k: v.replace("\0", "") for k, v in env.items()}


def invocations(cfg: NotifyConfig | None, notice: Notice, cluster: str, me: str,
                parent: Mapping[str, str]) -> list[Invocation]:
    """The commands to run for ``notice``: its event's hook, then ``any``."""
    if cfg is None:
        return []
    out = []
    for key in (notice.event, CATCH_ALL):
        argv = cfg.command(key)
        if argv is not None:
            out.append(Invocation(notice.event, key, argv,
                                  environment(notice, key, cluster, me, parent), cfg.timeout))
    return out
