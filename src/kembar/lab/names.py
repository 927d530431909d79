"""What a lab is made of, by name and address: a pure plan, no I/O.

Every namespace is ``kb-<lab>-<machine>`` (``kb-web-node1``, ``kb-web-sw``); interfaces live
only inside the lab's namespaces; every file is under ``<root>/kembar-lab-<lab>/``.
Addresses come from 198.18.0.0/15 (RFC 2544, benchmarking): the public network
198.18.0.0/24 (node *i* at .i, the client at .50, the VIP .100 reserved, the power switch
.254) and the optional
private replication link 198.18.1.0/24.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kembar.errors import ConfigError

NS_PREFIX = "kb-"
DIR_PREFIX = "kembar-lab-"
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
MAX_NODES = 8
PUBLIC_NET = "198.18.0"
PRIVATE_NET = "198.18.1"
PREFIXLEN = 24
CLIENT = "client"
CLIENT_HOST = 50
VIP_HOST = 100
POWER_HOST = 254  # the lab's network power switch (fencing), on the switch itself
POWER_ADDRESS = f"{PUBLIC_NET}.{POWER_HOST}"
LINKS = ("public", "private")
BRIDGE = {"public": "br-pub", "private": "br-priv"}
BRIDGE_MAC = {"public": "02:00:c6:12:00:fe", "private": "02:00:c6:12:01:fe"}  # local admin
NIC = {"public": "eth0", "private": "eth1"}
DISK_IN_NODE = "/mnt/vdb"  # a node's second disk, as the node sees it


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ConfigError(f"lab name {name!r}: use 1 to 8 lower-case letters and digits, "
                          "starting with a letter")
    return name


def ns_name(lab: str, machine: str) -> str:
    return f"{NS_PREFIX}{lab}-{machine}"


def lab_of_ns(ns: str) -> str | None:
    """The lab a namespace name belongs to (``kb-web-node1`` -> ``web``), or None."""
    m = re.match(r"^kb-([a-z][a-z0-9]{0,7})-(sw|client|node[0-9]+)$", ns)
    return m.group(1) if m else None


def port_name(machine: str, link: str) -> str:
    """The switch-side end of a machine's cable (in the switch namespace only)."""
    return f"{machine}-{'pub' if link == 'public' else 'priv'}"


@dataclass(frozen=True)
class Machine:
    name: str
    is_node: bool
    addresses: dict[str, str] = field(default_factory=dict)  # link -> address


@dataclass(frozen=True)
class Plan:
    lab: str
    nodes: int = 2
    private: bool = False

    def __post_init__(self) -> None:
        check_name(self.lab)
        if not 1 <= self.nodes <= MAX_NODES:
            raise ConfigError(f"--nodes {self.nodes}: a lab has 1 to {MAX_NODES} nodes")

    @property
    def node_names(self) -> list[str]:
        return [f"node{i}" for i in range(1, self.nodes + 1)]

    @property
    def links(self) -> list[str]:
        return ["public", "private"] if self.private else ["public"]

    @property
    def machines(self) -> list[Machine]:
        out = []
        for i, n in enumerate(self.node_names, start=1):
            addrs = {"public": f"{PUBLIC_NET}.{i}"}
            if self.private:
                addrs["private"] = f"{PRIVATE_NET}.{i}"
            out.append(Machine(n, True, addrs))
        out.append(Machine(CLIENT, False, {"public": f"{PUBLIC_NET}.{CLIENT_HOST}"}))
        return out

    def machine(self, name: str) -> Machine:
        for m in self.machines:
            if m.name == name:
                return m
        raise ConfigError(f"lab {self.lab}: no machine {name!r} "
                          f"(it has {', '.join(m.name for m in self.machines)})")

    def node(self, name: str) -> Machine:
        m = self.machine(name)
        if not m.is_node:
            raise ConfigError(f"lab {self.lab}: {name} is the client, not a node")
        return m

    @property
    def switch_ns(self) -> str:
        return ns_name(self.lab, "sw")

    def ns(self, machine: str) -> str:
        return ns_name(self.lab, machine)

    @property
    def namespaces(self) -> list[str]:
        return [self.switch_ns] + [self.ns(m.name) for m in self.machines]

    @property
    def vip(self) -> str:
        return f"{PUBLIC_NET}.{VIP_HOST}"

    def to_json(self) -> dict[str, object]:
        return {"lab": self.lab, "nodes": self.nodes, "private": self.private}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> "Plan":
        return cls(str(data["lab"]), int(str(data["nodes"])), bool(data["private"]))


# ----------------------------------------------------------------- partitions

Cut = tuple[str, str, str]  # (machine a, machine b, link); a < b


def cut(a: str, b: str, link: str) -> Cut:
    if link not in LINKS:
        raise ConfigError(f"link {link!r}: use public, private or all")
    if a == b:
        raise ConfigError(f"cannot partition {a} from itself")
    x, y = sorted((a, b))
    return (x, y, link)


def ruleset(cuts: list[Cut]) -> str:
    """The switch's nftables ruleset (bridge family) that drops frames between the two
    ports of every cut, both ways.  Loaded with ``nft -f`` in the switch namespace only."""
    lines = ["table bridge kembar", "delete table bridge kembar",
             "table bridge kembar {",
             "  chain cut {",
             "    type filter hook forward priority 0; policy accept;"]
    for a, b, link in sorted(set(cuts)):
        pa, pb = port_name(a, link), port_name(b, link)
        lines.append(f'    iifname "{pa}" oifname "{pb}" drop')
        lines.append(f'    iifname "{pb}" oifname "{pa}" drop')
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"
