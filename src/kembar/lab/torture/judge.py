"""What the torture checks after each fault (pure): every acknowledged order and record is
there, the group runs on exactly one node, the disks agree, split brain is reported
whenever both sides wrote."""

from __future__ import annotations

import re
from typing import Any, Mapping

RECORD = re.compile(r"^(\d{1,9}) ([0-9a-z-]{1,40})$")
SPLIT_BRAIN = re.compile(r"split[- ]brain", re.I)


def parse_records(text: str) -> tuple[dict[str, set[int]], int]:
    """The output of ``writer.dump`` (``== NAME`` then one ``SEQ NAME`` line per record)
    -> ({writer: seqs present}, torn or foreign lines).  A record belongs to the file it
    is in only if it names that writer."""
    out: dict[str, set[int]] = {}
    bad = 0
    current = ""
    for line in text.splitlines():
        if line.startswith("== "):
            current = line[3:].strip()
            out.setdefault(current, set())
            continue
        m = RECORD.match(line)
        if m and m.group(2) == current:
            out[current].add(int(m.group(1)))
        elif line:
            bad += 1
    return out, bad


def lost_records(acked: Mapping[str, int], present: Mapping[str, set[int]]) -> dict[str, list[int]]:
    """Per writer, the acknowledged records (1..acked[w]) that are missing."""
    lost = {}
    for w, top in acked.items():
        have = present.get(w, set())
        missing = [i for i in range(1, top + 1) if i not in have]
        if missing:
            lost[w] = missing
    return lost


def lost_orders(acked: Mapping[int, str], stored: Mapping[int, str]) -> list[int]:
    """Acknowledged order ids that are missing or now hold another customer's order."""
    return sorted(i for i, c in acked.items() if stored.get(i) != c)


def group_problems(running: list[str]) -> list[str]:
    if len(running) == 1:
        return []
    if not running:
        return ["the group runs nowhere"]
    return [f"the group runs on {len(running)} nodes at once: {', '.join(running)}"]


def reported_split_brain(disks: Mapping[str, Mapping[str, Any]]) -> bool:
    return any(SPLIT_BRAIN.search(str(d.get("last_error") or "")) for d in disks.values())


def disk_problems(disks: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """After a recovery: every node's disk connected, both UpToDate, one Primary."""
    out = []
    for node, d in sorted(disks.items()):
        if d.get("down"):
            out.append(f"{node}: disk not up")
            continue
        peer = d.get("peer", {})
        if peer.get("connection") != "Connected":
            out.append(f"{node}: disk {peer.get('connection')}"
                       + (f" ({d['last_error']})" if d.get("last_error") else ""))
        elif d.get("disk_state") != "UpToDate" or peer.get("disk_state") != "UpToDate":
            out.append(f"{node}: disk {d.get('disk_state')}/{peer.get('disk_state')}")
    primaries = [n for n, d in disks.items() if d.get("role") == "Primary"]
    if len(primaries) > 1:
        out.append(f"both disks Primary: {', '.join(sorted(primaries))}")
    return out


def overlap_problems(most_vip: int, most_primary: int, split_reported: bool) -> list[str]:
    """From the watcher: the VIP or the disk's device on two nodes at once.  With fencing
    on that is a fault of kembar's; if both sides wrote, split brain must be reported."""
    out = []
    if most_vip > 1:
        out.append(f"the VIP was up on {most_vip} nodes at once")
    if most_primary > 1:
        out.append(f"the disk was Primary (device present) on {most_primary} nodes at once"
                   + ("" if split_reported else "; and no split brain was reported"))
    return out
