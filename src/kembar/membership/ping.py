"""Ping nodes: a node's connectivity score (how many of the configured addresses answer),
as Heartbeat's ``ping`` directive with ``ipfail``.  The score travels in every heartbeat,
so each node knows the other's; the resource manager gives the group to the better
connected node.

``Reachability`` is the pure part (replies + a clock in, score and events out); ``Pinger``
sends ICMP echo requests through a raw socket and feeds it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("kembar.membership.ping")

ECHO_REQUEST, ECHO_REPLY = 8, 0
MIN_INTERVAL = 0.1


@dataclass(frozen=True)
class PingChange:
    address: str
    reachable: bool
    silent_for: float

    def __str__(self) -> str:
        if self.reachable:
            return f"ping node {self.address} answers again"
        return f"ping node {self.address} is unreachable (no reply for {self.silent_for:.3f} s)"


class Reachability:
    """Each address is reachable while it answered within ``deadping``."""

    def __init__(self, addresses: list[str], deadping: float, now: float) -> None:
        self.deadping = deadping
        self.started = now
        self.last: dict[str, float | None] = {a: None for a in addresses}
        self.up: dict[str, bool] = {a: False for a in addresses}

    def reply(self, address: str, now: float) -> list[PingChange]:
        if address not in self.last:
            return []
        self.last[address] = now
        if not self.up[address]:
            self.up[address] = True
            return [PingChange(address, True, 0.0)]
        return []

    def tick(self, now: float) -> list[PingChange]:
        out = []
        for a, t in self.last.items():
            silent = now - (t if t is not None else self.started)
            if self.up[a] and silent > self.deadping:
                self.up[a] = False
                out.append(PingChange(a, False, silent))
        return out

    @property
    def score(self) -> int:
        return sum(self.up.values())

    @property
    def total(self) -> int:
        return len(self.up)


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes = b"kembar-ping") -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    csum = checksum(header + payload)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, csum, ident, seq) + payload


def parse_reply(packet: bytes, ident: int) -> bool:
    """Is this raw IPv4 packet an echo reply to us?  Never raises."""
    if len(packet) < 20:
        return False
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl:ihl + 8]
    if len(icmp) < 8:
        return False
    kind, _code, _csum, rid, _seq = struct.unpack("!BBHHH", icmp)
    return kind == ECHO_REPLY and rid == ident


class Pinger:
    """Echo requests to every address each ``interval``; replies go to ``on_reply``."""

    def __init__(self, addresses: list[str], interval: float,
                 on_reply: Callable[[str], None]) -> None:
        self.addresses = addresses
        self.interval = max(interval, MIN_INTERVAL)
        self.on_reply = on_reply
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0
        self.sock: socket.socket | None = None

    async def run(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.setblocking(False)
        loop = asyncio.get_running_loop()
        loop.add_reader(self.sock.fileno(), self._readable)
        try:
            while True:
                self.seq = (self.seq + 1) & 0xFFFF
                for a in self.addresses:
                    try:
                        self.sock.sendto(echo_request(self.ident, self.seq), (a, 0))
                    except OSError as exc:  # unreachable network: no reply, that is all
                        log.debug("ping %s: %s", a, exc)
                await asyncio.sleep(self.interval)
        finally:
            loop.remove_reader(self.sock.fileno())
            self.sock.close()

    def _readable(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data, (addr, _) = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if addr in self.addresses and parse_reply(data, self.ident):
                self.on_reply(addr)
