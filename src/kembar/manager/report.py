"""What each node's manager tells the others, inside its signed heartbeats (pure).

A report travels as the ``"m"`` object of the heartbeat body (JSON, the body is capped at
512 bytes, so keys are short)::

    {"g": {"web": "running"},          # groups not stopped here: starting|running|stopping
     "x": ["db"],                      # groups that failed here (restarts used up, or a
                                       #   start failed): not to be started here again
     "sb": 1,                          # this node is in standby
     "to": {"web": 1764210000123},     # groups this node asks for (`kembar takeover`), with
                                       #   when it asked (ms): the newest wish wins
     "d": {"r0": ["UpToDate", 1, 0, 1]},  # disk: [disk state, in sync with its peer,
                                       #   the disk's peer is Primary, it is Primary here]
     "f": {"node1": 7}}                # nodes this node fenced, with their incarnation

A peer's report is authenticated (it came in a signed heartbeat) but still checked: a
malformed report is ignored as a whole, never half-applied.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

GROUP_STATES = ("starting", "running", "stopping")
DISK_STATES = ("UpToDate", "Consistent", "Outdated", "Inconsistent", "Diskless", "DUnknown",
               "Attaching", "Failed", "Down")
_MAX_ITEMS = 32


GEN = re.compile(r"(?:[0-9A-F]{16}:[0-9A-F]{16})?")


@dataclass(frozen=True)
class DiskReport:
    state: str = "Down"  # the local disk state; Down: no disk process answers
    synced: bool = False  # connected, peer UpToDate, nothing out of sync
    peer_primary: bool = False  # connected to a peer that is Primary
    primary: bool = False  # Primary here
    connected: bool = False  # connected to its peer (always, when synced)
    gen: str = ""  # generation identifiers "CURRENT:BITMAP" (16 hex digits each; "" unknown)

    def __post_init__(self) -> None:
        if self.synced and not self.connected:
            object.__setattr__(self, "connected", True)


@dataclass(frozen=True)
class Report:
    groups: dict[str, str] = field(default_factory=dict)
    failed: tuple[str, ...] = ()
    standby: bool = False
    takeover: dict[str, int] = field(default_factory=dict)
    disks: dict[str, DiskReport] = field(default_factory=dict)
    fenced: dict[str, int] = field(default_factory=dict)
    unready: tuple[str, ...] = ()  # groups whose clones do not all run here yet

    def encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.groups:
            out["g"] = dict(self.groups)
        if self.failed:
            out["x"] = list(self.failed)
        if self.standby:
            out["sb"] = 1
        if self.takeover:
            out["to"] = dict(self.takeover)
        if self.disks:
            out["d"] = {k: [d.state, int(d.synced), int(d.peer_primary), int(d.primary),
                            int(d.connected), d.gen] for k, d in self.disks.items()}
        if self.fenced:
            out["f"] = dict(self.fenced)
        if self.unready:
            out["u"] = list(self.unready)
        return out

    def size(self) -> int:
        return len(json.dumps(self.encode(), separators=(",", ":")))


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > _MAX_ITEMS or \
            not all(isinstance(v, str) and 0 < len(v) <= 64 for v in value):
        raise ValueError("a list of names")
    return tuple(value)


def _stamps(value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or len(value) > _MAX_ITEMS or not all(
            isinstance(k, str) and 0 < len(k) <= 64 and type(v) is int and 0 <= v < 2**63
            for k, v in value.items()):
        raise ValueError("a table of names to numbers")
    return dict(value)


def decode(doc: Any) -> Report | None:
    """A peer's report, or None when anything in it is malformed."""
    if not isinstance(doc, dict) or set(doc) - {"g", "x", "sb", "to", "d", "f", "u"}:
        return None
    try:
        groups = doc.get("g", {})
        if not isinstance(groups, dict) or len(groups) > _MAX_ITEMS or not all(
                isinstance(k, str) and v in GROUP_STATES for k, v in groups.items()):
            raise ValueError("groups")
        disks: dict[str, DiskReport] = {}
        raw = doc.get("d", {})
        if not isinstance(raw, dict) or len(raw) > _MAX_ITEMS:
            raise ValueError("disks")
        for name, d in raw.items():
            if not (isinstance(d, list) and len(d) in (4, 6) and d[0] in DISK_STATES
                    and all(x in (0, 1) and not isinstance(x, bool) for x in d[1:5])
                    and (len(d) == 4 or isinstance(d[5], str) and GEN.fullmatch(d[5]))):
                raise ValueError("disk")
            extra = (bool(d[4]), str(d[5])) if len(d) == 6 else (False, "")
            disks[str(name)] = DiskReport(d[0], bool(d[1]), bool(d[2]), bool(d[3]), *extra)
        fenced, wishes = _stamps(doc.get("f", {})), _stamps(doc.get("to", {}))
        sb = doc.get("sb", 0)
        if sb not in (0, 1) or isinstance(sb, bool):
            raise ValueError("standby")
        return Report(groups=dict(groups), failed=_names(doc.get("x", [])),
                      standby=bool(sb), takeover=wishes, disks=disks,
                      fenced=dict(fenced), unready=_names(doc.get("u", [])))
    except (ValueError, TypeError, IndexError):
        return None
