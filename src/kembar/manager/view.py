"""From what membership and the reports say to the policy's snapshot of one group (pure).

Each node decides with the same inputs (its membership view and every node's latest
report, its own included), so the nodes agree on where a group goes without a vote; each
node carries out only the actions addressed to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from kembar.manager.policy import Group, Node, View
from kembar.manager.report import GROUP_STATES, DiskReport, Report


@dataclass(frozen=True)
class Member:
    name: str
    alive: bool
    ping: int = 0  # connectivity score (ping nodes answering)
    clean_stop: bool = False  # dead after a shutdown notice
    incarnation: int | None = None


@dataclass(frozen=True)
class GroupSpec:
    name: str
    preferred: str
    auto_failback: bool
    disks: tuple[str, ...] = ()


def _disk(report: Report | None, disks: tuple[str, ...]) -> DiskReport:
    """The node's disk situation for a group: the worst of the group's disks."""
    if not disks:
        return DiskReport("UpToDate", True, False, connected=True)
    found = [report.disks.get(d, DiskReport()) if report else DiskReport() for d in disks]
    worst = next((d.state for d in found if d.state != "UpToDate"), "UpToDate")
    gen = ",".join(d.gen for d in found) if all(d.gen for d in found) else ""
    return DiskReport(worst, all(d.synced for d in found), any(d.peer_primary for d in found),
                      any(d.primary for d in found), all(d.connected for d in found), gen)


def fenced(node: Member, members: dict[str, Member], reports: dict[str, Report]) -> bool:
    """Whether a live node reports having fenced ``node`` since its last known start."""
    for who, rep in reports.items():
        m = members.get(who)
        if m is None or not m.alive or node.name not in rep.fenced:
            continue
        if node.incarnation is None or rep.fenced[node.name] >= node.incarnation:
            return True
    return False


def group_view(spec: GroupSpec, members: dict[str, Member], reports: dict[str, Report],
               fencing: bool, priority_fencing: bool = False) -> View:
    nodes = []
    for name in sorted(members):
        m = members[name]
        rep = reports.get(name)
        d = _disk(rep, spec.disks)
        nodes.append(Node(name=name, alive=m.alive, ping=m.ping,
                          standby=bool(rep and rep.standby), disk=d.state,
                          disk_synced=d.synced, peer_primary=d.peer_primary,
                          primary=d.primary, disk_connected=d.connected, disk_gen=d.gen,
                          clean_stop=m.clean_stop, fenced=fenced(m, members, reports),
                          ready=not (rep and spec.name in rep.unready)))
    running = tuple(n for n in sorted(reports)
                    if n in members and reports[n].groups.get(spec.name) in GROUP_STATES)
    failed = tuple(n for n in sorted(reports) if n in members and spec.name in reports[n].failed)
    group = Group(name=spec.name, preferred=spec.preferred, auto_failback=spec.auto_failback,
                  running_on=running, failed_on=failed,
                  takeover_to=newest_wish(spec.name, members, reports))
    return View(nodes=tuple(nodes), groups=(group,), fencing=fencing,
                priority_fencing=fencing and priority_fencing)


def newest_wish(spec: str, members: dict[str, Member], reports: dict[str, Report]
                ) -> str | None:
    """The live node whose `takeover` of group ``spec`` is the newest (None: no wish)."""
    wishes = sorted((r.takeover[spec], n) for n, r in reports.items()
                    if members.get(n, Member(n, False)).alive and spec in r.takeover)
    return wishes[-1][1] if wishes else None


def fencer(members: dict[str, Member]) -> str | None:
    """Which live node carries out a fence action (the first by name): one node fences."""
    alive = sorted(n for n, m in members.items() if m.alive)
    return alive[0] if alive else None
