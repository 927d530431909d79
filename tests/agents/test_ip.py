"""The ``ip`` agent in network namespaces of its own: address, gratuitous ARP, removal.

Two namespaces ``kb-agt-<pid>`` (the node, ``kb-agt-a`` 198.18.200.1/24) and
``kb-agt-<pid>-peer`` (a neighbour, ``kb-agt-b`` 198.18.200.2/24) joined by a veth pair
created directly inside them: the root namespace is never touched.  The agent runs in a
subprocess under ``ip netns exec``; the neighbour captures ARP with an AF_PACKET socket.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from kembar.agents.ip import garp_frames, parse_arp

VIP = "198.18.200.100"

DRIVER = r"""
import json, sys, time
from kembar.agents import AgentContext, make_agent
from kembar.agents.base import AgentError
from kembar.config.groups import IpResource
spec, actions = json.loads(sys.argv[1]), sys.argv[2:]
agent = make_agent(IpResource(type="ip", **spec), AgentContext())
out = []
for action in actions:
    t0 = time.monotonic()
    try:
        result = getattr(agent, action)(5.0)
    except AgentError as exc:
        result = "AgentError: " + str(exc)
    out.append([action, result, time.monotonic() - t0])
announced = agent.wait_announced(10)
print(json.dumps({"results": out, "announced": announced}))
"""

CAPTURE = r"""
import json, socket, sys, time
from kembar.agents.ip import parse_arp
ifname, vip, want, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((ifname, 0x0806))
s.settimeout(0.2)
print("ready", flush=True)
seen, end = [], time.monotonic() + limit
while time.monotonic() < end and len(seen) < want:
    try:
        frame = s.recv(2048)
    except socket.timeout:
        continue
    arp = parse_arp(frame)
    if arp and arp[2] == vip:
        seen.append([arp[0], arp[1].hex(), arp[2], arp[3], time.monotonic()])
print(json.dumps(seen), flush=True)
"""


def sh(*args: str) -> str:
    res = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {res.stderr}")
    return res.stdout


@dataclass
class Net:
    ns: str
    peer: str

    def run_agent(self, spec: dict[str, Any], *actions: str) -> dict[str, Any]:
        out = subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, "-c", DRIVER,
                              json.dumps(spec), *actions],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def addrs(self, ifname: str = "kb-agt-a") -> list[str]:
        data = json.loads(sh("ip", "-4", "-n", self.ns, "-j", "addr", "show", "dev", ifname))
        return [f"{a['local']}/{a['prefixlen']}" for d in data for a in d["addr_info"]]

    def mac(self) -> str:
        data = json.loads(sh("ip", "-n", self.ns, "-j", "link", "show", "dev", "kb-agt-a"))
        return str(data[0]["address"]).replace(":", "")


@pytest.fixture
def net() -> Iterator[Net]:
    n = Net(f"kb-agt-{os.getpid()}", f"kb-agt-{os.getpid()}-peer")
    try:
        for ns in (n.ns, n.peer):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", n.ns, "link", "add", "kb-agt-a", "type", "veth", "peer", "name",
           "kb-agt-b", "netns", n.peer)
        sh("ip", "-n", n.ns, "addr", "add", "198.18.200.1/24", "dev", "kb-agt-a")
        sh("ip", "-n", n.peer, "addr", "add", "198.18.200.2/24", "dev", "kb-agt-b")
        sh("ip", "-n", n.ns, "link", "set", "kb-agt-a", "up")
        sh("ip", "-n", n.peer, "link", "set", "kb-agt-b", "up")
        yield n
    finally:
        for ns in (n.ns, n.peer):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
    assert not [x for x in sh("ip", "netns", "list").split() if x.startswith(n.ns)]


class Capture:
    """ARP frames about ``vip`` seen in the peer namespace, collected in a subprocess."""

    def __init__(self, net: Net, vip: str, want: int, limit: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", net.peer, sys.executable, "-c", CAPTURE, "kb-agt-b", vip,
             str(want), str(limit)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        out = self.proc.stdout
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(out.readline()))
        reader.start()
        reader.join(30)
        assert ready == ["ready\n"], ready

    def frames(self) -> list[list[Any]]:
        try:
            out, _ = self.proc.communicate(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        frames: list[list[Any]] = json.loads(out)
        return frames


def test_frames_are_a_request_and_a_reply_about_the_address_itself() -> None:
    mac = bytes.fromhex("02aabbccddee")
    req, rep = garp_frames(mac, ipaddress.IPv4Address(VIP))
    assert req.hex() == ("ffffffffffff" "02aabbccddee" "0806" "0001" "0800" "06" "04" "0001"
                         "02aabbccddee" "c612c864" "000000000000" "c612c864")
    assert rep.hex() == ("ffffffffffff" "02aabbccddee" "0806" "0001" "0800" "06" "04" "0002"
                         "02aabbccddee" "c612c864" "ffffffffffff" "c612c864")
    assert parse_arp(req) == (1, mac, VIP, VIP)
    assert parse_arp(rep) == (2, mac, VIP, VIP)
    assert parse_arp(req[:30]) is None
    assert parse_arp(req[:12] + b"\x08\x00" + req[14:]) is None


def test_start_adds_and_announces_then_stop_removes(net: Net) -> None:
    spec = {"address": f"{VIP}/24", "interface": "kb-agt-a", "arp_count": 3,
            "arp_interval": 0.5}
    cap = Capture(net, VIP, want=6)
    run = net.run_agent(spec, "monitor", "start", "monitor", "start")
    (_, before, _), (_, started, start_s), (_, after, _), (_, again, _) = run["results"]
    assert (before, started, after, again) == (False, None, True, None)
    assert start_s < 0.5, "start waits for the ARP rounds (they belong in the background)"
    assert run["announced"]
    assert f"{VIP}/24" in net.addrs()

    frames = cap.frames()
    assert sorted(f[0] for f in frames) == [1, 1, 1, 2, 2, 2]  # 3 rounds: request + reply
    assert {f[1] for f in frames} == {net.mac()}
    assert all(f[2] == f[3] == VIP for f in frames)
    gaps = [b[4] - a[4] for a, b in zip(frames[::2], frames[2::2])]
    assert all(0.35 < g < 1.5 for g in gaps), gaps

    run = net.run_agent(spec, "stop", "stop", "monitor")
    assert [r[1] for r in run["results"]] == [None, None, False]
    assert net.addrs() == ["198.18.200.1/24"]


def test_interface_and_prefix_come_from_the_matching_subnet(net: Net) -> None:
    run = net.run_agent({"address": VIP, "arp_count": 0}, "start", "monitor")
    assert [r[1] for r in run["results"]] == [None, True]
    assert f"{VIP}/24" in net.addrs()
    run = net.run_agent({"address": VIP}, "stop", "monitor")
    assert [r[1] for r in run["results"]] == [None, False]
    assert net.addrs() == ["198.18.200.1/24"]


def test_no_matching_subnet_or_interface_is_an_agent_error(net: Net) -> None:
    run = net.run_agent({"address": "198.19.7.7/24"}, "start", "monitor", "stop")
    start, monitor, stop = (r[1] for r in run["results"])
    assert "no interface has a subnet containing 198.19.7.7" in start
    assert (monitor, stop) == (False, None)
    run = net.run_agent({"address": f"{VIP}/24", "interface": "kb-agt-nope"},
                        "start", "monitor", "stop")
    start, monitor, stop = (r[1] for r in run["results"])
    assert "interface kb-agt-nope does not exist" in start
    assert "interface kb-agt-nope does not exist" in monitor
    assert stop is None  # nothing to remove


def test_an_address_held_by_another_interface_is_refused(net: Net) -> None:
    sh("ip", "-n", net.ns, "addr", "add", f"{VIP}/32", "dev", "lo")
    run = net.run_agent({"address": f"{VIP}/24", "interface": "kb-agt-a"}, "start", "monitor")
    start, monitor = (r[1] for r in run["results"])
    assert "already on lo" in start and monitor is False


def test_a_virtual_mac_moves_with_the_address(net: Net) -> None:
    """``vmac``: the address on a macvlan with the virtual MAC; the announcements and the
    answers to ARP come from that MAC only; stop removes the macvlan."""
    vmac = "02:6b:c6:12:c8:64"  # "auto" for 198.18.200.100
    spec = {"address": f"{VIP}/24", "interface": "kb-agt-a", "vmac": "auto",
            "arp_count": 2, "arp_interval": 0.2}
    cap = Capture(net, VIP, want=4)
    run = net.run_agent(spec, "monitor", "start", "monitor", "start")
    assert [r[1] for r in run["results"]] == [False, None, True, None]
    vname = "kbvc612c864"
    link = json.loads(sh("ip", "-n", net.ns, "-j", "-d", "link", "show", "dev", vname))[0]
    assert link["address"] == vmac and link["linkinfo"]["info_kind"] == "macvlan"
    assert net.addrs(vname) == [f"{VIP}/24"] and net.addrs() == ["198.18.200.1/24"]
    frames = cap.frames()
    assert len(frames) == 4 and {f[1] for f in frames} == {vmac.replace(":", "")}
    for key, want in (("kb-agt-a/arp_ignore", "1"), ("kb-agt-a/arp_announce", "2"),
                      (f"{vname}/arp_ignore", "1"), (f"{vname}/rp_filter", "0")):
        got = sh("ip", "netns", "exec", net.ns, "cat", f"/proc/sys/net/ipv4/conf/{key}")
        assert got.strip() == want, key
    # the peer asks who has the address: only the virtual MAC answers
    sh("ip", "-n", net.peer, "neigh", "flush", "all")
    sh("ip", "netns", "exec", net.peer, "ping", "-c", "1", "-W", "2", VIP)
    neigh = json.loads(sh("ip", "-n", net.peer, "-j", "neigh", "show", VIP))
    assert [n["lladdr"] for n in neigh] == [vmac]
    run = net.run_agent(spec, "stop", "stop", "monitor")
    assert [r[1] for r in run["results"]] == [None, None, False]
    assert vname not in sh("ip", "-n", net.ns, "link", "show")


def test_a_foreign_interface_with_the_macvlan_name_is_refused(net: Net) -> None:
    sh("ip", "-n", net.ns, "link", "add", "kbvc612c864", "link", "kb-agt-a", "type",
       "macvlan", "mode", "bridge")
    run = net.run_agent({"address": f"{VIP}/24", "interface": "kb-agt-a", "vmac": "auto"},
                        "start", "monitor")
    start, monitor = (r[1] for r in run["results"])
    assert "kbvc612c864 exists with MAC" in start and monitor is False
    assert net.addrs("kbvc612c864") == []
