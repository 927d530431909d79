"""Which hook runs for which event, with which environment (pure)."""

from __future__ import annotations

import pytest

from kembar.config import parse_cluster
from kembar.config.notify import NotifyConfig
from kembar.notify.events import (
    DEFAULT_PATH,
    Notice,
    disk_notice,
    environment,
    from_history,
    invocations,
    moved,
)

PREFERRED = {"web": "node1", "db": "node2"}


def _notify(text: str) -> NotifyConfig:
    cfg = parse_cluster('[cluster]\nname = "web"\n[nodes.node1]\n[nodes.node2]\n[notify]\n'
                        + text).notify
    assert cfg is not None
    return cfg


@pytest.mark.parametrize("me, previous, preferred, expected", [
    ("node2", "node1", "node1", "failover"),  # the preferred node died: node2 takes over
    ("node1", "node2", "node1", "failback"),  # it comes home
    ("node1", None, "node1", None),  # a first start
    ("node2", None, "node1", None),  # a first start elsewhere (node1 cannot run it)
    ("node1", "node1", "node1", None),  # a restart in place
    ("node3", "node2", "node1", "failover"),  # between two nodes it does not prefer
])
def test_moved(me: str, previous: str | None, preferred: str, expected: str | None) -> None:
    assert moved(me, previous, preferred) == expected


def test_membership_entries() -> None:
    dead = from_history({"event": "NodeDead", "node": "node1", "reason": "deadtime",
                         "text": "node1 is dead: no heartbeat for 2.000 s", "time": 10.5},
                        "node2", PREFERRED)
    assert dead == Notice("node_dead", "node1 is dead: no heartbeat for 2.000 s",
                          node="node1", time=10.5)
    up = from_history({"event": "NodeUp", "node": "node1", "text": "node1 is back"}, "node2",
                      PREFERRED)
    assert up is not None and (up.event, up.node) == ("node_up", "node1")
    for quiet in ("LateHeartbeat", "Silent", "LinkDown", "Decision", "GroupStopped",
                  "GroupAdopted", "Fenced", "FailureExpired", "PingChange"):
        assert from_history({"event": quiet, "text": "x"}, "node2", PREFERRED) is None


def test_group_started_is_failover_or_failback() -> None:
    entry = {"event": "GroupStarted", "group": "web", "from": "node1",
             "text": "web on node2: GroupStarted in 1.2 s (node1 is dead)"}
    notice = from_history(entry, "node2", PREFERRED)
    assert notice is not None and (notice.event, notice.group, notice.from_node) == \
        ("failover", "web", "node1")
    back = from_history({**entry, "from": "node2"}, "node1", PREFERRED)
    assert back is not None and back.event == "failback" and back.from_node == "node2"
    assert from_history({**entry, "from": None}, "node1", PREFERRED) is None
    assert from_history({**entry, "from": "node2"}, "node2", PREFERRED) is None


@pytest.mark.parametrize("kind, resource", [
    ("MonitorFailed", "ip 198.18.0.100/24"), ("GroupStartFailed", ""),
    ("ResourceRestartFailed", ""), ("GroupStopFailed", ""),
])
def test_failures(kind: str, resource: str) -> None:
    notice = from_history({"event": kind, "group": "web", "resource": resource or None,
                           "text": f"web: {kind}"}, "node1", PREFERRED)
    assert notice is not None
    assert (notice.event, notice.group, notice.resource) == ("resource_failed", "web", resource)


def test_fence_failed() -> None:
    notice = from_history({"event": "FenceFailed", "node": "node1",
                           "text": "fencing node1 failed: timeout"}, "node2", PREFERRED)
    assert notice is not None and (notice.event, notice.node) == ("fence_failed", "node1")


def test_unknown_event_is_a_bug() -> None:
    with pytest.raises(ValueError):
        Notice("node_died", "x")


def test_environment() -> None:
    parent = {"PATH": "/opt/bin:/usr/bin", "LANG": "C.UTF-8", "KEMBAR_CONFIG": "/secret",
              "HOME": "/root", "SSH_AUTH_SOCK": "/tmp/agent"}
    notice = Notice("node_dead", "node1 is dead:\n no heartbeat", node="node1", time=12.25)
    env = environment(notice, "any", "web", "node2", parent)
    assert env == {
        "PATH": "/opt/bin:/usr/bin", "LANG": "C.UTF-8",
        "KEMBAR_EVENT": "node_dead", "KEMBAR_HOOK": "any", "KEMBAR_CLUSTER": "web",
        "KEMBAR_LOCAL_NODE": "node2", "KEMBAR_NODE": "node1", "KEMBAR_FROM_NODE": "",
        "KEMBAR_GROUP": "", "KEMBAR_RESOURCE": "", "KEMBAR_DISK": "",
        "KEMBAR_TEXT": "node1 is dead: no heartbeat", "KEMBAR_TIME": "12.250",
    }


def test_disk_environment_speaks_drbd_too() -> None:
    env = environment(disk_notice("split_brain", "r0", "Split-Brain detected", 1.0),
                      "split_brain", "web", "node1", {})
    assert env["PATH"] == DEFAULT_PATH
    assert (env["KEMBAR_DISK"], env["DRBD_RESOURCE"], env["KEMBAR_NODE"]) == \
        ("r0", "r0", "node1")


def test_long_text_is_cut() -> None:
    env = environment(Notice("node_up", "x" * 5000), "node_up", "web", "n", {})
    assert len(env["KEMBAR_TEXT"]) == 1000 and env["KEMBAR_TEXT"].endswith("...")


def test_invocations_own_hook_then_any() -> None:
    cfg = _notify('timeout = "7s"\nnode_dead = ["/bin/page", "-u"]\nany = "logger -t kb"\n')
    notice = Notice("node_dead", "node1 is dead", node="node1")
    todo = invocations(cfg, notice, "web", "node2", {})
    assert [(i.key, i.argv, i.timeout) for i in todo] == [
        ("node_dead", ("/bin/page", "-u"), 7.0), ("any", ("logger", "-t", "kb"), 7.0)]
    assert todo[1].env["KEMBAR_HOOK"] == "any" and todo[1].env["KEMBAR_EVENT"] == "node_dead"
    assert todo[0].describe() == "node_dead: /bin/page -u"
    assert todo[1].describe() == "node_dead (hook any): logger -t kb"
    # only the catch-all for another event; nothing without a table
    assert [i.key for i in invocations(cfg, Notice("node_up", "x"), "web", "n", {})] == ["any"]
    assert invocations(None, notice, "web", "node2", {}) == []
