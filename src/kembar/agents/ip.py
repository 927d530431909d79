"""``ip``: a virtual address, added through netlink and announced by gratuitous ARP.

Like Heartbeat's IPaddr2: without an interface the address goes to the interface whose
existing subnet contains it (and takes that subnet's prefix when none is given).  After
adding an IPv4 address, ``arp_count`` rounds ``arp_interval`` apart each broadcast one
unsolicited ARP request and one ARP reply (sender = target = the address), from a
background thread so that ``start`` returns as soon as the address is up (IPaddr2's
``arp_bg``).  The frames are built here and sent through an AF_PACKET socket: no
``arping``/``send_arp`` binary to depend on, and no subprocess per frame.

With ``vmac`` (keepalived's ``use_vmac``) the address lives on a macvlan interface of its
own, ``kbv<address in hex>``, whose MAC moves with the address: a client that ignores
gratuitous ARP (or a switch that drops them) keeps sending to the same MAC, and the
switch learns its new port from the announcement's source address.  As keepalived does,
the macvlan answers ARP only for its own address (``arp_ignore=1``, ``rp_filter=0``,
``accept_local=1``) and the parent neither answers for it (``arp_ignore=1``) nor uses it
as the sender of its own ARP requests (``arp_announce=2``).  Stop deletes the macvlan.

IPv6 addresses are added without any announcement: unsolicited neighbour advertisements
are not done (yet); the kernel's DAD still runs, so the address may be "tentative" for a
moment after ``start``.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import struct
import threading
from dataclasses import dataclass

from pyroute2 import IPRoute, NetlinkError

from kembar.agents.base import Agent, AgentContext, AgentError
from kembar.config.groups import IpResource

log = logging.getLogger("kembar.agents.ip")

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
BROADCAST = b"\xff" * 6
_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")  # htype ptype hlen plen op sha spa tha tpa


def garp_frames(mac: bytes, addr: ipaddress.IPv4Address) -> tuple[bytes, bytes]:
    """The two Ethernet frames of one announcement round: an unsolicited ARP request
    (target hardware address zero, as RFC 5227 has it) and an ARP reply to broadcast."""
    ip = addr.packed
    head = _ETH.pack(BROADCAST, mac, ETH_P_ARP)
    request = head + _ARP.pack(ARPHRD_ETHER, ETH_P_IP, 6, 4, 1, mac, ip, b"\0" * 6, ip)
    reply = head + _ARP.pack(ARPHRD_ETHER, ETH_P_IP, 6, 4, 2, mac, ip, BROADCAST, ip)
    return request, reply


def parse_arp(frame: bytes) -> tuple[int, bytes, str, str] | None:
    """An Ethernet ARP frame → (op, sender MAC, sender IP, target IP); None otherwise."""
    if len(frame) < _ETH.size + _ARP.size:
        return None
    _dst, _src, etype = _ETH.unpack_from(frame)
    if etype != ETH_P_ARP:
        return None
    _ht, _pt, _hl, _pl, op, sha, spa, _tha, tpa = _ARP.unpack_from(frame, _ETH.size)
    return op, sha, socket.inet_ntoa(spa), socket.inet_ntoa(tpa)


def send_garp(ifname: str, addr: ipaddress.IPv4Address, count: int, interval: float,
              cancel: threading.Event) -> int:
    """Send ``count`` announcement rounds on ``ifname``; returns the frames sent.  Stops
    early when ``cancel`` is set (the address was removed meanwhile)."""
    sent = 0
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.bind((ifname, ETH_P_ARP))
        _name, _proto, _pkttype, hatype, mac = sock.getsockname()
        if hatype != ARPHRD_ETHER or len(mac) != 6:
            log.info("%s: no ARP on %s (not Ethernet)", addr, ifname)
            return 0
        frames = garp_frames(mac, addr)
        for i in range(count):
            if cancel.is_set():
                break
            for frame in frames:
                sock.send(frame)
                sent += 1
            if i + 1 < count and cancel.wait(interval):
                break
    return sent


def _sysctl(key: str, value: str) -> None:
    try:
        with open(f"/proc/sys/{key}", "w") as fh:
            fh.write(value)
    except OSError as exc:
        raise AgentError(f"cannot set {key.replace('/', '.')} = {value}: "
                         f"{exc.strerror or exc}") from None


@dataclass(frozen=True)
class _Held:
    index: int
    prefixlen: int


class IpAgent(Agent):
    resource: IpResource

    def __init__(self, resource: IpResource, ctx: AgentContext) -> None:
        super().__init__(resource, ctx)
        text = resource.address
        self.addr = ipaddress.ip_interface(text).ip
        self.prefixlen: int | None = (ipaddress.ip_interface(text).network.prefixlen
                                      if "/" in text else None)
        self.family = socket.AF_INET if self.addr.version == 4 else socket.AF_INET6
        self._cancel = threading.Event()
        self._arp: threading.Thread | None = None
        self.vmac = resource.mac()
        self.vname = f"kbv{self.addr.packed.hex()}" if self.vmac else ""

    # -- netlink reading

    def _addresses(self, ipr: IPRoute) -> list[tuple[int, str, int]]:
        """(interface index, address, prefixlen) of every address of our family."""
        out = []
        for msg in ipr.get_addr(family=self.family):
            local = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            if local:
                out.append((int(msg["index"]), str(local), int(msg["prefixlen"])))
        return out

    def _configured_index(self, ipr: IPRoute) -> int:
        name = self.resource.interface
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise AgentError(f"{self.name}: interface {name} does not exist")
        return int(found[0])

    def _held(self, ipr: IPRoute) -> list[_Held]:
        """Where the address is now (on the configured interface only, when one is set;
        on the macvlan, with ``vmac``)."""
        if self.vmac:
            found = ipr.link_lookup(ifname=self.vname)
            if not found:
                return []
            return [_Held(i, p) for i, a, p in self._addresses(ipr)
                    if ipaddress.ip_address(a) == self.addr and i == found[0]]
        only = self._configured_index(ipr) if self.resource.interface else None
        return [_Held(i, p) for i, a, p in self._addresses(ipr)
                if ipaddress.ip_address(a) == self.addr and only in (None, i)]

    def _target(self, ipr: IPRoute) -> tuple[int, int]:
        """(interface index, prefixlen) the address is to be added with."""
        fixed = self._configured_index(ipr) if self.resource.interface else None
        for index, a, p in self._addresses(ipr):
            if fixed not in (None, index) or ipaddress.ip_address(a) == self.addr:
                continue
            net = ipaddress.ip_interface(f"{a}/{p}").network
            if self.addr in net and net.prefixlen < net.max_prefixlen:
                return index, self.prefixlen if self.prefixlen is not None else p
        if fixed is None:
            raise AgentError(f"{self.name}: no interface has a subnet containing "
                             f"{self.addr}; set interface = …")
        return fixed, self.prefixlen if self.prefixlen is not None else self.addr.max_prefixlen

    @staticmethod
    def _ifname(ipr: IPRoute, index: int) -> str:
        links = ipr.get_links(index)
        return str(links[0].get_attr("IFLA_IFNAME")) if links else str(index)

    # -- the contract

    def start(self, timeout: float) -> None:
        # Netlink answers at once: nothing here waits, so the timeout is not consulted.
        try:
            with IPRoute() as ipr:
                if self._held(ipr):
                    return
                index, prefixlen = self._target(ipr)
                others = [i for i, a, _p in self._addresses(ipr)
                          if ipaddress.ip_address(a) == self.addr]
                if others:
                    raise AgentError(f"{self.name}: {self.addr} is already on "
                                     f"{self._ifname(ipr, others[0])}")
                if self.vmac:
                    index = self._ensure_vmac(ipr, index)
                args: dict[str, object] = {"index": index, "address": str(self.addr),
                                           "prefixlen": prefixlen}
                if self.addr.version == 4 and prefixlen < 31:
                    net = ipaddress.ip_interface(f"{self.addr}/{prefixlen}").network
                    args["broadcast"] = str(net.broadcast_address)
                try:
                    ipr.addr("add", **args)
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:
                        raise
                ifname = self._ifname(ipr, index)
        except NetlinkError as exc:
            raise AgentError(f"{self.name}: netlink refused: {exc}") from None
        except OSError as exc:
            raise AgentError(f"{self.name}: netlink: {exc}") from None
        log.info("%s: added on %s", self.addr, ifname)
        if self.addr.version == 4 and self.resource.arp_count > 0:
            self._announce(ifname)

    def _ensure_vmac(self, ipr: IPRoute, parent: int) -> int:
        """The macvlan with the virtual MAC on ``parent``, made if missing, up; its index."""
        assert self.vmac
        found = ipr.link_lookup(ifname=self.vname)
        if found:
            link = ipr.get_links(found[0])[0]
            mac = str(link.get_attr("IFLA_ADDRESS"))
            if mac != self.vmac:
                raise AgentError(f"{self.name}: {self.vname} exists with MAC {mac}, not "
                                 f"{self.vmac}")
        else:
            ipr.link("add", ifname=self.vname, kind="macvlan", link=parent,
                     macvlan_mode="bridge", address=self.vmac)
            found = ipr.link_lookup(ifname=self.vname)
            if not found:
                raise AgentError(f"{self.name}: {self.vname} vanished after being made")
        parent_name = self._ifname(ipr, parent)
        for ifname, key, value in ((self.vname, "arp_ignore", "1"),
                                   (self.vname, "rp_filter", "0"),
                                   (self.vname, "accept_local", "1"),
                                   (parent_name, "arp_ignore", "1"),
                                   (parent_name, "arp_announce", "2")):
            _sysctl(f"net/ipv4/conf/{ifname}/{key}", value)
        ipr.link("set", index=found[0], state="up")
        return int(found[0])

    def _announce(self, ifname: str) -> None:
        self._cancel_arp(0.5)
        self._cancel = threading.Event()
        cancel = self._cancel
        addr = self.addr
        assert isinstance(addr, ipaddress.IPv4Address)

        def run() -> None:
            try:
                n = send_garp(ifname, addr, self.resource.arp_count,
                              self.resource.arp_interval, cancel)
                log.info("%s: %d gratuitous ARP frames sent on %s", addr, n, ifname)
            except OSError as exc:
                log.warning("%s: gratuitous ARP on %s failed: %s", addr, ifname, exc)

        self._arp = threading.Thread(target=run, name=f"garp-{addr}", daemon=True)
        self._arp.start()

    def wait_announced(self, timeout: float) -> bool:
        """Wait for the background announcement to finish (tests; an orderly exit)."""
        if self._arp is not None:
            self._arp.join(timeout)
            return not self._arp.is_alive()
        return True

    def _cancel_arp(self, timeout: float) -> None:
        self._cancel.set()
        if self._arp is not None:
            self._arp.join(timeout)

    def stop(self, timeout: float) -> None:
        self._cancel_arp(min(0.5, timeout / 4))
        try:
            with IPRoute() as ipr:
                if self.vmac:
                    found = ipr.link_lookup(ifname=self.vname)
                    if found:  # the address goes with it
                        try:
                            ipr.link("del", index=found[0])
                        except NetlinkError as exc:
                            if exc.code != errno.ENODEV:
                                raise
                        log.info("%s: removed with %s", self.addr, self.vname)
                    return
                if self.resource.interface and not ipr.link_lookup(
                        ifname=self.resource.interface):
                    return  # the interface is gone, and the address with it
                for h in self._held(ipr):
                    try:
                        ipr.addr("del", index=h.index, address=str(self.addr),
                                 prefixlen=h.prefixlen)
                    except NetlinkError as exc:
                        if exc.code not in (errno.EADDRNOTAVAIL, errno.ENODEV):
                            raise
                    log.info("%s: removed from %s", self.addr, self._ifname(ipr, h.index))
        except NetlinkError as exc:
            raise AgentError(f"{self.name}: netlink refused the removal: {exc}") from None
        except OSError as exc:
            raise AgentError(f"{self.name}: netlink: {exc}") from None

    def monitor(self, timeout: float) -> bool:
        try:
            with IPRoute() as ipr:
                return bool(self._held(ipr))
        except NetlinkError as exc:
            raise AgentError(f"{self.name}: netlink: {exc}") from None
        except OSError as exc:
            raise AgentError(f"{self.name}: netlink: {exc}") from None
