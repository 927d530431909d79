"""Two cluster daemons in the lab: real UDP heartbeats between real namespaces."""

from __future__ import annotations

import time
from typing import Callable

import pytest

from kembar.lab import cluster
from kembar.lab.lab import Lab

pytestmark = pytest.mark.slow
KEEPALIVE, DEADTIME = 0.1, 0.5


def start(lab: Lab, media: str) -> None:
    mt = cluster.membership_toml(lab.plan, media, keepalive="100ms", deadtime="500ms",
                                 initdead="2s")
    cluster.install(lab, disk=False, membership=mt)
    for n in lab.plan.node_names:
        cluster.start_daemon(lab, n)
    for a, b in (("node1", "node2"), ("node2", "node1")):
        cluster.wait(lambda: cluster.daemon_status(lab, a)["nodes"][b]["state"] == "up", 10,
                     f"{a} to see {b}")


def node_state(lab: Lab, on: str, node: str) -> dict:  # type: ignore[type-arg]
    return cluster.daemon_status(lab, on)["nodes"][node]  # type: ignore[no-any-return]


def events(lab: Lab, on: str, kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in cluster.daemon_status(lab, on)["events"] if e["event"] == kind]


@pytest.mark.parametrize("media", ["bcast", "ucast"])
def test_a_crashed_node_is_declared_dead_within_deadtime_plus_one_keepalive(
        make_lab: Callable[..., Lab], media: str) -> None:
    lab = make_lab(disk_size=16 * 2**20)
    start(lab, media)
    t0 = time.time()
    lab.crash("node1")
    cluster.wait(lambda: node_state(lab, "node2", "node1")["state"] == "dead", 10, "death")
    dead = events(lab, "node2", "NodeDead")
    assert len(dead) == 1 and dead[0]["reason"] == "deadtime"
    assert dead[0]["time"] - t0 <= DEADTIME + KEEPALIVE, dead
    # and power on: kembar starts at boot, node2 sees node1 back with a new incarnation
    old = node_state(lab, "node2", "node1")["incarnation"]
    lab.boot("node1")
    cluster.wait(lambda: node_state(lab, "node2", "node1")["state"] == "up", 10, "return")
    assert node_state(lab, "node2", "node1")["incarnation"] > old
    assert events(lab, "node2", "NodeUp")[-1]["returning"] is True


def test_two_links_one_cut_the_node_stays_up(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(disk_size=16 * 2**20, private=True)
    start(lab, "two")
    lab.partition("node1", "node2", "public")
    cluster.wait(lambda: node_state(lab, "node2", "node1")["links"]["eth0"]["state"] == "dead",
                 10, "the public link to die")
    time.sleep(4 * DEADTIME)
    n = node_state(lab, "node2", "node1")
    assert n["state"] == "up" and n["links"]["eth1"]["state"] == "up"
    assert events(lab, "node2", "NodeDead") == []
    lab.heal()
    cluster.wait(lambda: node_state(lab, "node2", "node1")["links"]["eth0"]["state"] == "up",
                 10, "the public link to come back")
    # both links cut: now it is a partition, and each side declares the other dead
    lab.partition("node1", "node2", "all")
    cluster.wait(lambda: node_state(lab, "node2", "node1")["state"] == "dead", 10, "death")
    cluster.wait(lambda: node_state(lab, "node1", "node2")["state"] == "dead", 10, "death")


def test_shutdown_notice_is_acted_on_at_once(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(disk_size=16 * 2**20)
    start(lab, "bcast")
    pid = cluster.daemon_status(lab, "node1")["pid"]
    t0 = time.time()
    cluster.sh(lab, "node1", f"kill -TERM {pid}")
    cluster.wait(lambda: node_state(lab, "node2", "node1")["state"] == "dead", 5, "death")
    dead = events(lab, "node2", "NodeDead")[-1]
    assert dead["reason"] == "shutdown notice"
    assert dead["time"] - t0 < DEADTIME  # not the deadtime: at once
    cluster.start_daemon(lab, "node1")
    cluster.wait(lambda: node_state(lab, "node2", "node1")["state"] == "up", 10, "return")


FORGER = r'''
import hashlib, hmac, os, socket, struct, sys, time
from kembar.membership.authkeys import parse_authkeys
from kembar.membership.packet import Packet, encode
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.bind(("0.0.0.0", 694))
s.settimeout(5)
while True:                         # a real heartbeat of node1, broadcast on the switch
    real, src = s.recvfrom(2048)    # (node2 drops its own as "own", not as a replay)
    if src[0] == "198.18.0.1":
        break
wrong = parse_authkeys("auth 1\n1 sha256 not-the-cluster-key\n")
forged = encode(Packet(1, "%(lab)s", "node1", 2**62, 1, "up", 0), wrong)
for target in ("198.18.0.2", "198.18.0.255"):
    for pkt in (forged, b"garbage", real, real[:-1] + bytes([real[-1] ^ 1]), b"\0" * 1500):
        s.sendto(pkt, (target, 694))
print("sent")
'''


def test_forged_garbage_and_replayed_packets_from_the_client_change_nothing(
        make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(disk_size=16 * 2**20)
    start(lab, "bcast")
    before = cluster.daemon_status(lab, "node2")
    res = lab.run("client", ["python", "-c", FORGER % {"lab": lab.name}], timeout=30)
    assert res.returncode == 0 and "sent" in res.stdout, res.stderr
    time.sleep(3 * KEEPALIVE)
    after = cluster.daemon_status(lab, "node2")
    dropped = after["dropped"]
    assert dropped.get("mac", 0) >= 4  # the forged one and the flipped copy, twice each
    assert dropped.get("replay", 0) >= 1
    assert sum(v for k, v in dropped.items() if k not in ("own",)) >= 10
    assert after["nodes"]["node1"]["state"] == "up"
    assert after["nodes"]["node1"]["incarnation"] == before["nodes"]["node1"]["incarnation"]
    assert [e["event"] for e in after["events"]] == [e["event"] for e in before["events"]]
    assert after["pid"] == before["pid"]  # still the same process, still serving


def test_ping_nodes_give_each_node_a_score_its_peer_sees(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(disk_size=16 * 2**20, private=True)
    mt = cluster.membership_toml(lab.plan, "two", keepalive="100ms", deadtime="500ms",
                                 initdead="2s", ping=["198.18.0.50"])  # the client
    cluster.install(lab, disk=False, membership=mt)
    for n in lab.plan.node_names:
        cluster.start_daemon(lab, n)
    cluster.wait(lambda: node_state(lab, "node2", "node1")["ping"] == [1, 1], 10,
                 "node2 to see node1's score 1/1")
    lab.partition("node1", "client")  # node1 loses the outside world, not node2
    cluster.wait(lambda: node_state(lab, "node2", "node1")["ping"] == [0, 1], 10,
                 "node2 to see node1's score drop")
    st1 = cluster.daemon_status(lab, "node1")
    assert st1["ping"]["score"] == 0 and cluster.daemon_status(lab, "node2")["ping"]["score"] == 1
    assert any(e["event"] == "PingChange" for e in st1["events"])
    assert node_state(lab, "node2", "node1")["state"] == "up"  # still a member
    lab.heal()
    cluster.wait(lambda: node_state(lab, "node2", "node1")["ping"] == [1, 1], 10, "recovery")
