"""The lab's wiring, through netlink (pyroute2): namespaces, the switch, cables, addresses.

Everything is made inside the lab's own network namespaces: the bridges and the switch
ends of the cables in ``kb-<lab>-sw``, the machine ends (``eth0`` public, ``eth1``
private) directly in each machine's namespace.  The root namespace's links, addresses,
routes and firewall are never touched.  Partitions are nftables rules (bridge family) in
the switch namespace.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess

from pyroute2 import NetNS, netns

from kembar.errors import KembarError
from kembar.lab.machine import NETNS_DIR
from kembar.lab.names import (BRIDGE, BRIDGE_MAC, NIC, POWER_ADDRESS, PREFIXLEN, Cut, Plan,
                              port_name, ruleset)


def existing(prefix: str) -> list[str]:
    """Named network namespaces whose name starts with ``prefix``."""
    return sorted(n for n in netns.listnetns() if n.startswith(prefix))


def create_ns(ns: str) -> None:
    """A named network namespace, checked: pyroute2 makes it in a child process, which was
    seen once to return without the name in place on a loaded machine; try again then."""
    for attempt in range(3):
        if os.path.exists(os.path.join(NETNS_DIR, ns)):
            return
        try:
            netns.create(ns)
        except FileExistsError:
            pass
    if not os.path.exists(os.path.join(NETNS_DIR, ns)):
        raise KembarError(f"could not create the network namespace {ns}")


def wire(plan: Plan) -> None:
    """Create the namespaces, the switch and every machine's cables; all links up."""
    create_ns(plan.switch_ns)
    with NetNS(plan.switch_ns) as sw:
        sw.link("set", index=sw.link_lookup(ifname="lo")[0], state="up")
        for link in plan.links:
            # A fixed MAC: a bridge otherwise takes its ports' lowest one, which changes
            # when a machine's cable is unplugged — and the power switch's address on the
            # bridge would then be unreachable until the others' ARP entries expire.
            sw.link("add", ifname=BRIDGE[link], kind="bridge",
                    address=BRIDGE_MAC[link])
            br = sw.link_lookup(ifname=BRIDGE[link])[0]
            sw.link("set", index=br, state="up")
            if link == "public":  # the power switch's address (kembar.lab.power)
                sw.addr("add", index=br, address=POWER_ADDRESS, prefixlen=PREFIXLEN)
    apply_cuts(plan, [])
    for m in plan.machines:
        plug(plan, m.name)


def plug(plan: Plan, machine: str) -> None:
    """A machine's fresh network stack (its namespace) and its cables into the switch,
    with the lab's addresses: what a machine has after power-on."""
    m = plan.machine(machine)
    ns = plan.ns(machine)
    create_ns(ns)
    with NetNS(plan.switch_ns) as sw:
        for link, address in m.addresses.items():
            port = port_name(m.name, link)
            sw.link("add", ifname=port, kind="veth",
                    peer={"ifname": NIC[link], "net_ns_fd": ns})
            idx = sw.link_lookup(ifname=port)[0]
            sw.link("set", index=idx, master=sw.link_lookup(ifname=BRIDGE[link])[0],
                    state="up")
    with NetNS(ns) as mns:
        for link, address in m.addresses.items():
            nic = mns.link_lookup(ifname=NIC[link])[0]
            brd = str(ipaddress.ip_interface(f"{address}/{PREFIXLEN}").network.broadcast_address)
            mns.addr("add", index=nic, address=address, prefixlen=PREFIXLEN, broadcast=brd)
            mns.link("set", index=nic, state="up")


def cut_ports(plan: Plan, machine: str) -> None:
    """The switch-side ends of a machine's cables go down (a power cut's first moment)."""
    with NetNS(plan.switch_ns) as sw:
        for link in plan.machine(machine).addresses:
            idx = sw.link_lookup(ifname=port_name(machine, link))
            if idx:
                sw.link("set", index=idx[0], state="down")


def unplug(plan: Plan, machine: str) -> list[str]:
    """Power off a machine's network: its cables (veth pairs) are deleted from the switch
    side, then its namespace goes, with every address, route and rule set on it.  (The
    kernel keeps a deleted namespace alive while sockets of its dead processes linger —
    a FIN that could not leave — so the cables are not left to its going.)"""
    done = []
    with NetNS(plan.switch_ns) as sw:
        for link in plan.machine(machine).addresses:
            idx = sw.link_lookup(ifname=port_name(machine, link))
            if idx:
                sw.link("del", index=idx[0])
                done.append(f"unplugged {port_name(machine, link)}")
    return done + unwire([plan.ns(machine)])


def cables(plan: Plan) -> dict[str, dict[str, str]]:
    """machine -> link -> 'up' | 'down' | 'unplugged' (the switch end)."""
    out: dict[str, dict[str, str]] = {}
    with NetNS(plan.switch_ns) as sw:
        states = {ln.get("ifname"): ln.get("state") for ln in sw.get_links()}
    for m in plan.machines:
        out[m.name] = {link: str(states.get(port_name(m.name, link), "unplugged"))
                       for link in m.addresses}
    return out


def apply_cuts(plan: Plan, cuts: list[Cut]) -> None:
    """Make the switch drop exactly the cut links (and nothing else), atomically."""
    res = subprocess.run(["nsenter", f"--net={os.path.join(NETNS_DIR, plan.switch_ns)}",
                          "--", "nft", "-f", "-"], input=ruleset(cuts), text=True,
                         capture_output=True)
    if res.returncode != 0:
        raise KembarError(f"nft in {plan.switch_ns}: {res.stderr.strip()}")


def unwire(namespaces: list[str]) -> list[str]:
    """Delete the named namespaces (their links and rules go with them)."""
    done = []
    present = set(netns.listnetns())
    for ns in namespaces:
        if ns in present:
            netns.remove(ns)
            done.append(f"removed network namespace {ns}")
    return done
