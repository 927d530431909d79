"""The operators' view served by each node's cluster daemon: a live dashboard and
Prometheus' ``/metrics`` (``[web]`` in the cluster file; off when absent).

``auth`` (password, sessions, CSRF), ``snapshot`` (what is shown, gathered from the daemon
and the local disks), ``metrics`` (a snapshot as Prometheus text), ``pages`` (the HTML,
script and style sheet shipped as package data), ``server`` (the aiohttp routes).
"""

from __future__ import annotations

from typing import Any

from kembar.web.server import WebServer
from kembar.web.snapshot import Backend

__all__ = ["Backend", "WebServer", "for_daemon"]


def for_daemon(daemon: Any) -> WebServer:
    """The web server of a cluster daemon (``kembar.daemon.main.Daemon``) whose config has
    a ``[web]`` table: it binds the listen addresses that are this node's, and acts through
    the same handlers as the control socket (``kembar status``, ``standby``, ``takeover``)."""
    cfg, me = daemon.cfg, daemon.me
    assert cfg.web is not None
    handlers = daemon.control.handlers
    backend = Backend(
        node=me, run_dir=daemon.run_dir,
        disks=sorted(name for name, disk in cfg.disks.items() if me in disk.on),
        status=lambda: handlers["status"]({}),
        version=lambda: sum(daemon.counts.values()),
        standby=lambda on: handlers["standby"]({"on": on}),
        takeover=lambda groups: handlers["takeover"]({"groups": groups}))
    return WebServer(cfg.web, cfg.web.binds_for(cfg.addresses_of(me)), backend,
                     cfg.cluster.name)
