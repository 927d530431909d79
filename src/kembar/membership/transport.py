"""Heartbeat media: UDP sockets for broadcast, multicast and unicast, all at once.

One socket per (interface, port), bound to the port and to the interface
(``SO_BINDTODEVICE``), so a datagram's link is the interface it came in on; the media of
that interface send through it (source port = the heartbeat port, as Heartbeat).  A
``ucast`` medium whose peer is one of this node's own addresses is skipped, so one file
serves both nodes.  Only configured interfaces and addresses are used.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from dataclasses import dataclass, field
from typing import Callable

from pyroute2 import IPRoute

from kembar.config.membership import Medium
from kembar.errors import ConfigError

log = logging.getLogger("kembar.membership.transport")

MAX_DATAGRAM = 2048


@dataclass
class Interface:
    name: str
    index: int
    addresses: list[str]
    broadcasts: list[str]


def interfaces() -> dict[str, Interface]:
    """This network namespace's interfaces with their IPv4 addresses (netlink)."""
    out: dict[str, Interface] = {}
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            out[name] = Interface(name, link["index"], [], [])
        by_index = {i.index: i for i in out.values()}
        for addr in ipr.get_addr(family=socket.AF_INET):
            itf = by_index.get(addr["index"])
            if itf is None:
                continue
            itf.addresses.append(addr.get_attr("IFA_ADDRESS"))
            if addr.get_attr("IFA_BROADCAST"):
                itf.broadcasts.append(addr.get_attr("IFA_BROADCAST"))
    return out


@dataclass
class Target:
    medium: Medium
    address: tuple[str, int]


@dataclass
class Channel:
    """One socket: an interface and a port, and where its media send."""

    interface: Interface
    port: int
    targets: list[Target] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    sock: socket.socket | None = None


def plan_channels(media: list[Medium], default_port: int,
                  itfs: dict[str, Interface]) -> tuple[list[Channel], list[str]]:
    """Group media into sockets; returns the channels and notes on skipped media."""
    channels: dict[tuple[str, int], Channel] = {}
    notes: list[str] = []
    own = {a for i in itfs.values() for a in i.addresses}
    for m in media:
        itf = itfs.get(m.interface)
        if itf is None:
            raise ConfigError(f"membership.media: no interface {m.interface} on this node "
                              f"(it has {', '.join(sorted(itfs))})")
        port = m.port or default_port
        if m.type == "ucast" and m.peer in own:
            notes.append(f"ucast to {m.peer} skipped: that is this node's own address")
            continue
        ch = channels.setdefault((itf.name, port), Channel(itf, port))
        if m.type == "bcast":
            dest = itf.broadcasts[0] if itf.broadcasts else "255.255.255.255"
        elif m.type == "mcast":
            assert m.group is not None
            dest = m.group
            ch.groups.append(m.group)
        else:
            assert m.peer is not None
            dest = m.peer
        ch.targets.append(Target(m, (dest, port)))
    return list(channels.values()), notes


def open_channel(ch: Channel) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ch.interface.name.encode())
        mreqn = struct.pack("=4s4si", socket.inet_aton("0.0.0.0"),
                            socket.inet_aton("0.0.0.0"), ch.interface.index)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
        ttls = [t.medium.ttl for t in ch.targets if t.medium.type == "mcast"]
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, max(ttls or [1]))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        s.bind(("0.0.0.0", ch.port))
        for group in ch.groups:
            req = struct.pack("=4s4si", socket.inet_aton(group), socket.inet_aton("0.0.0.0"),
                              ch.interface.index)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, req)
        s.setblocking(False)
    except OSError as exc:
        s.close()
        raise ConfigError(f"cannot open the heartbeat socket on {ch.interface.name} port "
                          f"{ch.port}: {exc.strerror or exc}") from None
    return s


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, link: str, on_packet: Callable[[bytes, str, tuple[str, int]], None]
                 ) -> None:
        self.link = link
        self.on_packet = on_packet

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_packet(data, self.link, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("%s: %s", self.link, exc)


class Transport:
    """Sends a datagram on every medium; calls ``on_packet(data, link, addr)`` for each
    one received (the link is the interface's name)."""

    def __init__(self, channels: list[Channel],
                 on_packet: Callable[[bytes, str, tuple[str, int]], None]) -> None:
        self.channels = channels
        self.on_packet = on_packet
        self.transports: list[asyncio.DatagramTransport] = []
        self.send_errors = 0

    @property
    def links(self) -> list[str]:
        return sorted({ch.interface.name for ch in self.channels})

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for ch in self.channels:
            ch.sock = open_channel(ch)
            tr, _ = await loop.create_datagram_endpoint(
                lambda ch=ch: _Proto(ch.interface.name, self.on_packet),  # type: ignore[misc]
                sock=ch.sock)
            self.transports.append(tr)

    def send(self, data: bytes) -> None:
        for ch in self.channels:
            assert ch.sock is not None
            for t in ch.targets:
                try:
                    ch.sock.sendto(data, t.address)
                except OSError as exc:  # a link down: counted, the other media carry on
                    self.send_errors += 1
                    log.debug("send on %s to %s: %s", ch.interface.name, t.address, exc)

    def close(self) -> None:
        for tr in self.transports:
            tr.close()
        self.transports.clear()
