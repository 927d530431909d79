"""Hooks of two real cluster daemons in the lab (each node its own namespaces): node1 runs
a group (the VIP) and is powered off; node2's node_dead and failover hooks run; node1 boots
and takes the group back: its failback hook runs."""

from __future__ import annotations

from typing import Callable

import pytest

from kembar.errors import KembarError
from kembar.lab import cluster
from kembar.lab.lab import Lab
from kembar.lab.names import PREFIXLEN

pytestmark = pytest.mark.slow

HOOK = """#!/bin/sh
# a kembar hook for the test: its environment, one file per event
mkdir -p /run/kembar/hooks
env | grep -E '^(KEMBAR_|PATH=)' | sort > /run/kembar/hooks/$KEMBAR_EVENT.tmp
mv /run/kembar/hooks/$KEMBAR_EVENT.tmp /run/kembar/hooks/$KEMBAR_EVENT.env
"""

NOTIFY = """
[notify]
timeout = "10s"
node_dead = "/etc/kembar/hook.sh"
failover = ["/etc/kembar/hook.sh"]
failback = ["/etc/kembar/hook.sh"]
resource_failed = ["/etc/kembar/hook.sh"]
"""


def _hook_env(lab: Lab, node: str, event: str) -> dict[str, str] | None:
    res = lab.run(node, ["cat", f"/run/kembar/hooks/{event}.env"])
    if res.returncode != 0:
        return None
    return dict(line.split("=", 1) for line in res.stdout.splitlines())


def _wait_hook(lab: Lab, node: str, event: str) -> dict[str, str]:
    found: list[dict[str, str]] = []

    def ran() -> bool:
        env = _hook_env(lab, node, event)
        if env is not None:
            found.append(env)
        return env is not None
    try:
        cluster.wait(ran, 30, f"the {event} hook on {node}")
    except KembarError:
        for n in lab.plan.node_names:  # what the daemons did, shown by pytest
            print(f"--- {n}: daemon log (tail) ---")
            print(lab.run(n, ["tail", "-n", "60", "/run/kembar/daemon.log"]).stdout)
        raise
    return found[-1]


def test_node_dead_failover_and_failback_hooks(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(disk_size=16 * 2**20)
    mt = cluster.membership_toml(lab.plan, "bcast", keepalive="100ms", deadtime="500ms",
                                 initdead="3s")
    gt = (f'[groups.vip]\npreferred = "node1"\n[[groups.vip.resources]]\ntype = "ip"\n'
          f'address = "{lab.plan.vip}/{PREFIXLEN}"\ninterface = "eth0"\n'
          'monitor_interval = "1s"\n')
    cluster.install(lab, disk=False, membership=mt + NOTIFY, groups=gt, auto_failback=True)
    for node in lab.plan.node_names:
        cluster.sh(lab, node, "cat > /etc/kembar/hook.sh && chmod 755 /etc/kembar/hook.sh",
                   input=HOOK)
        cluster.start_daemon(lab, node)
    cluster.wait(lambda: cluster.runs_on(lab, "vip") == ["node1"], 60,
                 "the group to start on node1")
    assert _hook_env(lab, "node1", "failover") is None  # a first start is no failover

    lab.crash("node1")
    dead = _wait_hook(lab, "node2", "node_dead")
    assert (dead["KEMBAR_EVENT"], dead["KEMBAR_NODE"], dead["KEMBAR_LOCAL_NODE"]) == \
        ("node_dead", "node1", "node2")
    assert dead["KEMBAR_CLUSTER"] == lab.plan.lab
    assert dead["KEMBAR_TEXT"].startswith("node1 is dead: no heartbeat for")
    over = _wait_hook(lab, "node2", "failover")
    assert (over["KEMBAR_GROUP"], over["KEMBAR_FROM_NODE"], over["KEMBAR_NODE"]) == \
        ("vip", "node1", "node2")
    assert over["KEMBAR_TEXT"].startswith("vip on node2: GroupStarted in")
    st = cluster.daemon_status(lab, "node2")["notify"]
    assert st["ok"] >= 2 and st["failed"] == st["timed_out"] == 0, st

    lab.boot("node1")  # kembar starts at boot; auto_failback brings the group home
    back = _wait_hook(lab, "node1", "failback")
    assert (back["KEMBAR_GROUP"], back["KEMBAR_FROM_NODE"], back["KEMBAR_LOCAL_NODE"]) == \
        ("vip", "node2", "node1")
    assert cluster.runs_on(lab, "vip") == ["node1"]
    assert _hook_env(lab, "node2", "resource_failed") is None
