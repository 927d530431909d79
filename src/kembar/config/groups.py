"""``[groups.<name>]``: resource groups — a preferred node and resources started in order.

```toml
[groups.web]
preferred = "node1"
auto_failback = true          # default: [cluster] auto_failback
[[groups.web.resources]]
type = "disk"                 # promote/demote a kembar disk
disk = "r0"
[[groups.web.resources]]
type = "filesystem"
device = "/dev/kembar/r0"
directory = "/srv/data"
fstype = "ext4"
[[groups.web.resources]]
type = "service"              # a systemd unit, an LSB init script, or a command
name = "apache2"
[[groups.web.resources]]
type = "ip"
address = "198.18.0.100/24"
interface = "eth0"
```

Resources start in the order written and stop in reverse (haresources' rule).

A ``service`` or ``script`` with ``clone = true`` runs on every node that is online (not in
standby), whether or not the group runs there — Pacemaker's clone, keepalived's usual
setup: the web server is up on both nodes and only what follows it (the VIP) moves, so a
failover does not wait for the web server to start.  Clones come first in a group (what a
clone needs must be on every node too), and a group needs something that moves.
"""

from __future__ import annotations

import ipaddress
import re
import signal
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, \
    field_validator, model_validator

from kembar.config.units import to_seconds

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Common(_Frozen):
    timeout: float = 60.0  # seconds for a start or stop
    monitor_interval: float = 10.0  # 0: no monitor
    restarts: StrictInt = Field(3, ge=0, le=100)  # monitor failures restarted before moving

    @field_validator("timeout", "monitor_interval", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return to_seconds(value)


class DiskResource(_Common):
    type: Literal["disk"]
    disk: StrictStr

    def describe(self) -> str:
        return f"disk {self.disk}"


class FilesystemResource(_Common):
    type: Literal["filesystem"]
    device: StrictStr
    directory: StrictStr
    fstype: StrictStr = "ext4"
    options: StrictStr = ""

    @field_validator("device", "directory")
    @classmethod
    def _abs(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must be an absolute path, got {value!r}")
        return value

    def describe(self) -> str:
        return f"filesystem {self.device} on {self.directory} ({self.fstype})"


class IpResource(_Common):
    type: Literal["ip"]
    address: StrictStr  # address/prefix
    interface: StrictStr | None = None  # default: the interface whose subnet holds it
    arp_count: StrictInt = Field(5, ge=0, le=100)
    arp_interval: float = 0.2
    # a virtual MAC that moves with the address (keepalived's use_vmac): "auto" (02:6b and
    # the four bytes of the IPv4 address: the same on every node, locally administered) or
    # a unicast MAC.  Clients that ignore gratuitous ARP keep working after a failover.
    vmac: StrictStr | None = None

    @field_validator("address")
    @classmethod
    def _addr(cls, value: str) -> str:
        try:
            ipaddress.ip_interface(value if "/" in value else f"{value}/32")
        except ValueError:
            raise ValueError(f"not an address/prefix: {value!r}") from None
        return value

    @field_validator("arp_interval", mode="before")
    @classmethod
    def _interval(cls, value: object) -> float:
        return to_seconds(value)

    @field_validator("vmac")
    @classmethod
    def _vmac(cls, value: str | None) -> str | None:
        if value is None or value == "auto":
            return value
        if not _MAC_RE.fullmatch(value) or int(value[:2], 16) & 1:
            raise ValueError(f"not a unicast MAC address (or \"auto\"): {value!r}")
        return value.lower()

    @model_validator(mode="after")
    def _vmac_needs(self) -> "IpResource":
        if self.vmac is not None:
            if self.interface is None:
                raise ValueError("vmac needs interface = … (the virtual MAC's parent)")
            if ipaddress.ip_interface(self.address if "/" in self.address
                                      else f"{self.address}/32").version != 4:
                raise ValueError("vmac is for IPv4 addresses (ARP)")
        return self

    def mac(self) -> str | None:
        """The virtual MAC, "auto" worked out; None without ``vmac``."""
        if self.vmac != "auto":
            return self.vmac
        ip = ipaddress.ip_interface(self.address if "/" in self.address
                                    else f"{self.address}/32").ip.packed
        return ":".join(f"{b:02x}" for b in (0x02, 0x6B, *ip))

    def describe(self) -> str:
        return f"ip {self.address}" + (f" on {self.interface}" if self.interface else "")


class ServiceResource(_Common):
    type: Literal["service"]
    name: StrictStr  # a systemd unit or an /etc/init.d script
    command: list[StrictStr] | None = None  # or a command kembar starts and supervises
    # for a command: the signal that stops it (e.g. SIGQUIT: gunicorn's quick shutdown —
    # the VIP is gone before a service stops, no client is left to be served gracefully)
    stop_signal: StrictStr = "SIGTERM"
    # for a command: its start is done only once a socket listens on this TCP port (so the
    # VIP that follows is never up before the service answers: no "connection refused")
    listen: StrictInt | None = Field(None, ge=1, le=65535)
    clone: StrictBool = False  # runs on every online node, not only the group's owner

    @field_validator("stop_signal")
    @classmethod
    def _signal(cls, value: str) -> str:
        name = value.upper() if value.upper().startswith("SIG") else f"SIG{value.upper()}"
        if name not in signal.Signals.__members__ or name in ("SIGKILL", "SIGSTOP"):
            raise ValueError(f"not a signal that stops a service: {value!r}")
        return name

    def describe(self) -> str:
        return f"service {self.name}"


class ScriptResource(_Common):
    type: Literal["script"]
    path: StrictStr  # a Heartbeat resource.d script or an OCF agent
    args: list[StrictStr] = Field(default_factory=list)
    ocf: StrictBool = False
    clone: StrictBool = False  # runs on every online node, not only the group's owner

    def describe(self) -> str:
        return f"script {self.path}" + ("::" + "::".join(self.args) if self.args else "")


class ProbeResource(_Common):
    """A monitor of what clients see: an HTTP GET (through the VIP) or any command."""

    type: Literal["probe"]
    url: StrictStr | None = None
    command: list[StrictStr] | None = None

    def describe(self) -> str:
        return f"probe {self.url or ' '.join(self.command or [])}"


Resource = Annotated[Union[DiskResource, FilesystemResource, IpResource, ServiceResource,
                           ScriptResource, ProbeResource], Field(discriminator="type")]


class GroupConfig(_Frozen):
    preferred: StrictStr
    auto_failback: StrictBool | None = None  # None: [cluster] auto_failback
    # Pacemaker's failure-timeout: seconds after which a failure here is forgotten (the
    # fail counts, and the group's failed mark on this node); 0: until `kembar cleanup`
    failure_timeout: float = Field(0.0, ge=0)
    resources: list[Resource] = Field(default_factory=list)

    @field_validator("failure_timeout", mode="before")
    @classmethod
    def _timeout(cls, value: object) -> float:
        return to_seconds(value)

    @field_validator("resources")
    @classmethod
    def _some(cls, value: list[Resource]) -> list[Resource]:
        if not value:
            raise ValueError("a group needs at least one resource")
        clones = [clone_of(r) for r in value]
        first_moving = clones.index(False) if False in clones else len(clones)
        if first_moving == len(clones):
            raise ValueError("every resource is a clone: a group needs one that moves "
                             "(e.g. the VIP)")
        if any(clones[first_moving:]):
            late = clones.index(True, first_moving)
            raise ValueError(f"resource {late + 1} ({value[late].describe()}) is a clone after "
                             f"one that is not ({value[first_moving].describe()}): clones "
                             "come first, as what a clone needs must run on every node too")
        return value

    @property
    def clone_count(self) -> int:
        """How many resources at the head of the group are clones."""
        n = 0
        while n < len(self.resources) and clone_of(self.resources[n]):
            n += 1
        return n


def clone_of(resource: object) -> bool:
    """Whether a resource runs on every online node (``clone = true``)."""
    return bool(getattr(resource, "clone", False))


def check_group_name(name: str) -> str | None:
    """A problem with a group's name, or None."""
    if not _NAME_RE.fullmatch(name):
        return "invalid group name (use [a-z0-9][a-z0-9_-]{0,31})"
    return None


class FencingConfig(_Frozen):
    """``[fencing]``: a node declared dead is fenced before anyone takes its groups over.

    ``command`` runs with ``{node}`` replaced by the victim's name and must exit 0 (the node
    is off) within ``timeout``; until it does, the group waits.  Without this table fencing
    is off: a takeover follows the death at once (Heartbeat's haresources behaviour).

    ``priority_delay`` (Pacemaker's ``priority-fencing-delay``; 0, the default, is off): a
    node that runs a group fences a peer declared dead at once, and a node that would take
    a dead owner's group over waits this long before it fences the owner.  When the nodes
    only lost each other (every link cut), the owner wins the race and keeps the group,
    instead of being shot and the group moved; the price is this delay on the takeover
    after a real crash of the owner.  A node that never came up after initdead is fenced
    too (Pacemaker's startup-fencing).
    """

    command: list[StrictStr] = Field(min_length=1)
    timeout: float = 30.0
    priority_delay: float = Field(0.0, ge=0, le=300)

    @field_validator("timeout", "priority_delay", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return to_seconds(value)
