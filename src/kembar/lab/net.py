"""The lab's wiring, through netlink (pyroute2): namespaces, the switch, cables, addresses.

Everything is made inside the lab's own network namespaces: the bridges and the switch
ends of the cables in ``kb-<lab>-sw``, the machine ends (``eth0`` public, ``eth1``
private) directly in each machine's namespace.  The root namespace's links, addresses,
routes and firewall are never touched.  Partitions are nftables rules (bridge family) in
the switch namespace.
"""

from __future__ import annotations

import os
import subprocess

from pyroute2 import NetNS, netns

from kembar.errors import KembarError
from kembar.lab.machine import NETNS_DIR
from kembar.lab.names import BRIDGE, NIC, PREFIXLEN, Cut, Plan, port_name, ruleset


def existing(prefix: str) -> list[str]:
    """Named network namespaces whose name starts with ``prefix``."""
    return sorted(n for n in netns.listnetns() if n.startswith(prefix))


def wire(plan: Plan) -> None:
    """Create the namespaces, the switch and every cable; all links up."""
    for ns in plan.namespaces:
        netns.create(ns)
    with NetNS(plan.switch_ns) as sw:
        sw.link("set", index=sw.link_lookup(ifname="lo")[0], state="up")
        for link in plan.links:
            sw.link("add", ifname=BRIDGE[link], kind="bridge")
            br = sw.link_lookup(ifname=BRIDGE[link])[0]
            sw.link("set", index=br, state="up")
        for m in plan.machines:
            for link, address in m.addresses.items():
                port = port_name(m.name, link)
                sw.link("add", ifname=port, kind="veth",
                        peer={"ifname": NIC[link], "net_ns_fd": plan.ns(m.name)})
                idx = sw.link_lookup(ifname=port)[0]
                sw.link("set", index=idx, master=sw.link_lookup(ifname=BRIDGE[link])[0],
                        state="up")
                with NetNS(plan.ns(m.name)) as mns:
                    nic = mns.link_lookup(ifname=NIC[link])[0]
                    mns.addr("add", index=nic, address=address, prefixlen=PREFIXLEN)
                    mns.link("set", index=nic, state="up")
    apply_cuts(plan, [])


def set_cables(plan: Plan, machine: str, up: bool) -> None:
    """Plug (``up``) or unplug every cable of ``machine``, at both ends."""
    state = "up" if up else "down"
    m = plan.machine(machine)
    with NetNS(plan.switch_ns) as sw:
        for link in m.addresses:
            for idx in sw.link_lookup(ifname=port_name(machine, link)):
                sw.link("set", index=idx, state=state)
    with NetNS(plan.ns(machine)) as mns:
        for link in m.addresses:
            for idx in mns.link_lookup(ifname=NIC[link]):
                mns.link("set", index=idx, state=state)


def cables(plan: Plan) -> dict[str, dict[str, str]]:
    """machine -> link -> 'up' | 'down' (the switch end's administrative state)."""
    out: dict[str, dict[str, str]] = {}
    with NetNS(plan.switch_ns) as sw:
        states = {ln.get("ifname"): ln.get("state") for ln in sw.get_links()}
    for m in plan.machines:
        out[m.name] = {link: str(states.get(port_name(m.name, link), "missing"))
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
