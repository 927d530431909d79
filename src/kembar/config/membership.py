"""``[membership]``: the heartbeat's timers, media, keys and ping nodes (ha.cf's job).

Heartbeat's rules hold (``heartbeat/config.c``): ``deadtime`` must exceed twice the
``keepalive``; ``warntime`` defaults to half the ``deadtime``; ``initdead`` defaults to the
``deadtime`` when that is above 10 s, to 12 s when it is below 6 s, else to twice the
``deadtime``, and is never below the ``deadtime``; ``deadping`` defaults to the
``deadtime``.  Durations accept ``2``, ``1.5``, ``"2s"``, ``"100ms"``.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator, \
    model_validator

from kembar.config.units import format_duration, to_seconds

DEFAULT_PORT = 694  # IANA ha-cluster
DEFAULT_AUTHKEYS = "/etc/kembar/authkeys"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Medium(_Frozen):
    """``[[membership.media]]``: one way heartbeats travel (several run at once).

    ``bcast`` (UDP broadcast on ``interface``), ``mcast`` (``group`` on ``interface``,
    ``ttl``), ``ucast`` (to ``peer`` through ``interface``; a ``peer`` that is this node's
    own address is ignored, so one file serves both nodes)."""

    type: Literal["bcast", "mcast", "ucast"]
    interface: StrictStr
    port: StrictInt | None = Field(None, ge=1, le=65535)
    group: StrictStr | None = None
    ttl: StrictInt = Field(1, ge=0, le=255)
    peer: StrictStr | None = None

    @field_validator("interface")
    @classmethod
    def _ifname(cls, value: str) -> str:
        if not 1 <= len(value) <= 15 or "/" in value or value.strip() != value:
            raise ValueError(f"not an interface name: {value!r}")
        return value

    @model_validator(mode="after")
    def _check(self) -> Medium:
        if self.type == "mcast":
            try:
                ok = self.group is not None and ipaddress.ip_address(self.group).is_multicast
            except ValueError:
                ok = False
            if not ok:
                raise ValueError("mcast needs group = a multicast address (e.g. 239.192.0.1)")
        elif self.group is not None:
            raise ValueError(f"group is only for mcast, not {self.type}")
        if self.type == "ucast":
            try:
                ipaddress.ip_address(self.peer or "")
            except ValueError:
                raise ValueError("ucast needs peer = the other node's address") from None
        elif self.peer is not None:
            raise ValueError(f"peer is only for ucast, not {self.type}")
        return self

    def describe(self, default_port: int) -> str:
        port = self.port or default_port
        if self.type == "bcast":
            return f"bcast {self.interface}:{port}"
        if self.type == "mcast":
            return f"mcast {self.group}:{port} on {self.interface}"
        return f"ucast {self.peer}:{port} via {self.interface}"


class MembershipConfig(_Frozen):
    keepalive: float = 1.0
    deadtime: float = 30.0
    warntime: float | None = None
    initdead: float | None = None
    deadping: float | None = None
    port: StrictInt = Field(DEFAULT_PORT, ge=1, le=65535)
    authkeys: StrictStr = DEFAULT_AUTHKEYS
    media: list[Medium] = Field(default_factory=list)
    ping: list[StrictStr] = Field(default_factory=list)
    # Run the daemon with a real-time scheduling class (as Heartbeat's ``realtime on``,
    # its default), so a busy machine does not delay heartbeats into false deaths.
    realtime: bool = True

    @field_validator("keepalive", "deadtime", "warntime", "initdead", "deadping", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float | None:
        return None if value is None else to_seconds(value)

    @field_validator("ping")
    @classmethod
    def _ping(cls, value: list[str]) -> list[str]:
        for addr in value:
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                raise ValueError(f"ping: not an address: {addr!r}") from None
        return value

    @model_validator(mode="after")
    def _rules(self) -> MembershipConfig:
        d = format_duration
        if self.keepalive <= 0:
            raise ValueError("keepalive must be above 0")
        if self.deadtime <= 2 * self.keepalive:
            raise ValueError(f"deadtime ({d(self.deadtime)}) must exceed twice the keepalive "
                             f"({d(self.keepalive)})")
        if not self.keepalive < self.warn < self.deadtime:
            raise ValueError(f"warntime ({d(self.warn)}) must lie between the keepalive "
                             f"({d(self.keepalive)}) and the deadtime ({d(self.deadtime)})")
        if self.init_dead < self.deadtime:
            raise ValueError(f"initdead ({d(self.init_dead)}) must be at least the deadtime "
                             f"({d(self.deadtime)})")
        if self.dead_ping <= 2 * self.keepalive:
            raise ValueError(f"deadping ({d(self.dead_ping)}) must exceed twice the keepalive")
        if not self.media:
            raise ValueError("at least one [[membership.media]] (bcast, mcast or ucast) is "
                             "required")
        return self

    @property
    def warn(self) -> float:
        return self.warntime if self.warntime is not None else self.deadtime / 2

    @property
    def init_dead(self) -> float:
        if self.initdead is not None:
            return self.initdead
        return initdead_default(self.deadtime)

    @property
    def dead_ping(self) -> float:
        return self.deadping if self.deadping is not None else self.deadtime


def initdead_default(deadtime: float) -> float:
    """Heartbeat's ``initdead`` when none is written (config.c)."""
    if deadtime > 10:
        return deadtime
    if deadtime < 6:
        return 12.0
    return 2 * deadtime
