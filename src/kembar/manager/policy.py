"""Where each resource group runs: a pure function of what the cluster knows.

``decide(view)`` takes a snapshot — members, their connectivity scores, where each group
runs or failed, each node's disk state, fencing results, manual requests — and returns the
actions to take next, each with one sentence saying what and why.  The daemon carries out
the first actions and asks again when anything changes; nothing here has I/O or a clock.

Rules (Heartbeat's haresources behaviour, and what users lost data to without them):

* a group never runs on two nodes: found so (a partition healed), it is stopped everywhere
  but on the node it prefers (else the first in name order);
* a group that runs on a live node where it has not failed stays there, unless
  ``auto_failback`` brings it home: the preferred node is alive, its disk is UpToDate and in
  sync (a returning node is never handed the group mid-resync — Heartbeat's
  ``auto_failback on`` with ``drbddisk`` has no such gate), and its connectivity is no worse;
  the move is an orderly stop first, the start in a later round; a group an operator
  pulled to a node (``takeover``) stays there (no failback) until pulled elsewhere;
* a group that runs nowhere starts on the best eligible node: alive, not in standby, the
  group not failed there, its disk promotable (UpToDate, or Consistent while the peer is
  dead; never Outdated, Inconsistent or Diskless, never while the disk's peer is Primary;
  a disk that is not connected only if every live peer reports the same generation and is
  not Primary — a live peer that wrote alone since the disks parted has newer data: DRBD's
  resource-level fencing, done with the reports instead of an outdate-peer handler),
  the best connectivity score; the preferred node on a tie; when no node can, a live node
  whose disk process is gone (``Down``) starts it, its disk agent bringing the disk up
  (the disk refuses a promotion its data does not allow);
* before a takeover from a node that is dead (not cleanly stopped), that node is fenced when
  fencing is on; the start waits until fencing succeeded;
* with priority fencing (Pacemaker's ``priority-fencing-delay``), a node that runs a group
  also fences every peer declared dead (not cleanly stopped) at once, while the fencing
  of a group's dead owner is marked to wait the delay first (the daemon waits it): when
  the two nodes only lost each other (every link cut), the owner shoots first and keeps
  the group, instead of being shot and the group moved;
* a node whose connectivity is worse than a live peer's gives its groups away (ipfail);
* ``standby`` of a node moves its groups off it; ``takeover`` pulls a group to a node: both
  as an orderly stop, then a start;
* a resource whose monitor fails is restarted while its restarts last, then the group fails
  on that node (and so moves); a failure no restart can repair (the group's disk went
  Diskless under ``on_io_error = "failover"``) fails the group at once
  (``after_monitor_failure``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

PROMOTABLE_ALONE = ("UpToDate", "Consistent")


@dataclass(frozen=True)
class Node:
    name: str
    alive: bool
    ping: int = 0  # connectivity score (ping nodes answering)
    standby: bool = False
    disk: str = "UpToDate"  # this node's disk state for the group's disk
    disk_synced: bool = True  # connected to its peer and nothing out of sync
    peer_primary: bool = False  # the disk's peer is Primary (then never promote here)
    primary: bool = False  # the group's disk is Primary on this node (its own word)
    clean_stop: bool = False  # dead after a shutdown notice (no fencing needed)
    fenced: bool = False  # fencing of this (dead) node succeeded
    ready: bool = True  # the group's clones run here (a failback need not start them)
    disk_connected: bool = True  # the group's disks are connected to their peers
    disk_gen: str = ""  # the disks' current generation identifiers, as reported


@dataclass(frozen=True)
class Group:
    name: str
    preferred: str
    auto_failback: bool = False
    running_on: tuple[str, ...] = ()
    failed_on: tuple[str, ...] = ()  # nodes where it failed for good (restarts used up)
    takeover_to: str | None = None  # a manual `takeover` to this node


@dataclass(frozen=True)
class View:
    nodes: tuple[Node, ...]
    groups: tuple[Group, ...]
    fencing: bool = False
    priority_fencing: bool = False  # owners fence lost peers at once; others wait a delay

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)


@dataclass(frozen=True)
class Action:
    kind: Literal["start", "stop", "fence", "wait"]
    group: str
    node: str
    why: str
    delayed: bool = False  # a fence under priority fencing that waits its delay first
    keeps: str = ""  # a fence by the node running the group, which keeps it there

    def __str__(self) -> str:
        verb = {"start": "start", "stop": "stop", "fence": "fence", "wait": "wait for"}
        if self.kind != "fence":
            return f"{verb[self.kind]} {self.group} on {self.node}: {self.why}"
        if self.keeps:
            return f"fence {self.node} so that {self.group} stays on {self.keeps}: {self.why}"
        later = " (after the priority fencing delay)" if self.delayed else ""
        return f"fence {self.node}{later} before {self.group} moves: {self.why}"


@dataclass
class _Plan:
    actions: list[Action] = field(default_factory=list)

    def add(self, kind: Literal["start", "stop", "fence", "wait"], g: Group, node: str,
            why: str, delayed: bool = False, keeps: str = "") -> None:
        self.actions.append(Action(kind, g.name, node, why, delayed, keeps))


def eligible(v: View, g: Group, n: Node, handover: bool = False,
             down_ok: bool = False) -> str | None:
    """Why ``n`` cannot run ``g`` now (None: it can).  With ``handover`` the group runs on
    another live node that will stop it first (demoting its disk): that the disk's peer is
    Primary there does not count yet — the start waits for it in a later round.  With
    ``down_ok`` a disk that no process serves (``Down``) does not count: the disk agent's
    start brings it up, and the disk itself refuses a promotion its data does not allow."""
    if not n.alive:
        return f"{n.name} is dead"
    if n.standby:
        return f"{n.name} is in standby"
    if n.name in g.failed_on:
        return f"{g.name} failed on {n.name}"
    if n.peer_primary and not handover and any(o.primary for o in v.nodes if o is not n):
        # (a live peer's own report that it is not Primary wins over this node's older
        # view of it; a dead peer's last report counts: it may have died Primary)
        return f"the disk's peer of {n.name} is Primary"
    peer_alive = any(o.alive for o in v.nodes if o.name != n.name)
    live_peers = [o for o in v.nodes if o.name != n.name and o.alive]
    apart = not n.disk_connected or any(not o.disk_connected for o in live_peers)
    if apart and (n.disk in PROMOTABLE_ALONE or n.disk == "Down" and down_ok):
        for o in live_peers:
            # DRBD's resource-level fencing, from the reports: a live peer may have written
            # alone since the disks parted (it then started a new generation); promoting
            # here would split the data in two.  (Either side saying it is not connected
            # counts: the other's view may be a moment old.)
            if o.primary and not handover:
                return f"the disk on {n.name} is not connected and {o.name} is Primary"
            if o.disk in ("Inconsistent", "Outdated"):
                continue  # not Primary: it cannot have written since (it never could)
            if not ahead_or_same(n.disk_gen, o.disk_gen):
                return (f"the disk on {n.name} is not connected to {o.name}, which is alive "
                        "and may have newer data (" + (
                            "its disk is down" if not o.disk_gen else
                            "it started a new generation") + ")")
    if n.disk == "UpToDate" or n.disk == "Down" and down_ok:
        return None
    if n.disk == "Consistent" and not peer_alive:
        return None
    return f"the disk on {n.name} is {n.disk}"


def _gens(text: str) -> list[tuple[int, int]] | None:
    try:
        out = [(int(c, 16), int(b, 16) & ~1) for c, b in (p.split(":") for p in text.split(","))]
    except ValueError:
        return None
    return out or None


def ahead_or_same(mine: str, theirs: str) -> bool:
    """Whether data with generations ``mine`` ("CURRENT:BITMAP" per disk) holds everything
    data with ``theirs`` holds: the same current generation, or mine began (my bitmap
    generation) where theirs still is — I wrote alone since we parted, they did not."""
    a, b = _gens(mine), _gens(theirs)
    if a is None or b is None or len(a) != len(b):
        return False
    return all(mc == tc or (mb and mb == tc & ~1) for (mc, mb), (tc, _tb) in zip(a, b))


def _best(v: View, g: Group, candidates: list[Node]) -> Node | None:
    ok = [n for n in candidates if eligible(v, g, n) is None]
    if not ok:
        # last resort: a live node whose disk process is gone (killed, crashed) starts the
        # group, its disk agent bringing the disk up; without this the group would wait
        # for a person, as the other node's disk cannot know what the lost one held
        ok = [n for n in candidates if n.disk == "Down" and eligible(v, g, n,
                                                                      down_ok=True) is None]
    if not ok:
        return None
    top = max(n.ping for n in ok)
    ok = [n for n in ok if n.ping == top]
    return next((n for n in ok if n.name == g.preferred), sorted(ok, key=lambda n: n.name)[0])


def decide(v: View) -> list[Action]:
    plan = _Plan()
    for g in v.groups:
        _decide_group(v, g, plan)
    return plan.actions


def _decide_group(v: View, g: Group, plan: _Plan) -> None:
    live_runs = [n for n in g.running_on if (v.node(n) or Node(n, False)).alive]
    # 1. never on two nodes
    if len(live_runs) > 1:
        keep = g.preferred if g.preferred in live_runs else sorted(live_runs)[0]
        for n in live_runs:
            if n != keep:
                plan.add("stop", g, n, f"it runs on {', '.join(sorted(live_runs))} at once; "
                                       f"{keep} keeps it")
        return
    if live_runs:
        here = v.node(live_runs[0])
        assert here is not None
        _keep_or_move(v, g, here, plan)
        return
    # 3. runs nowhere: the dead owners first (fencing), then the best node
    dead_owners = [v.node(n) for n in g.running_on]
    for d in dead_owners:
        if d is None or d.clean_stop or not v.fencing:
            continue
        if not d.fenced:
            plan.add("fence", g, d.name, f"{d.name} died while running {g.name} and "
                                         "fencing is on", delayed=v.priority_fencing)
            return
    target = None
    if g.takeover_to:
        to = v.node(g.takeover_to)
        if to is not None and eligible(v, g, to) is None:
            target = to
    target = target or _best(v, g, list(v.nodes))
    if target is None:
        reasons = "; ".join(filter(None, (eligible(v, g, n) for n in v.nodes)))
        plan.add("wait", g, g.preferred, f"no node can run {g.name}: {reasons}")
        return
    why = "it runs nowhere"
    if g.running_on:
        why = f"{', '.join(g.running_on)} is dead"
    if g.takeover_to == target.name:
        why = f"takeover to {target.name} was asked for"
    elif target.name != g.preferred:
        pref = v.node(g.preferred)
        why += f"; the preferred node {g.preferred} cannot: " + (
            eligible(v, g, pref) or "it is less connected" if pref else "it is unknown")
    plan.add("start", g, target.name, why)


def _keep_or_move(v: View, g: Group, here: Node, plan: _Plan) -> None:
    if v.fencing and v.priority_fencing:
        for d in v.nodes:
            if not d.alive and not d.clean_stop and not d.fenced:
                plan.add("fence", g, d.name, f"{d.name} was declared dead without a clean "
                                             "stop; priority fencing shoots it before it "
                                             f"can shoot {here.name}", keeps=here.name)
    if here.name in g.failed_on:
        plan.add("stop", g, here.name, f"{g.name} failed on {here.name} (restarts used up); "
                                       "it moves")
        return
    if here.standby:
        plan.add("stop", g, here.name, f"{here.name} is in standby; {g.name} moves")
        return
    if g.takeover_to and g.takeover_to != here.name:
        to = v.node(g.takeover_to)
        why = eligible(v, g, to, True) if to is not None else f"{g.takeover_to} is unknown"
        if why is None:
            plan.add("stop", g, here.name, f"takeover to {g.takeover_to} was asked for: an "
                                           "orderly stop here first")
        else:
            plan.add("wait", g, g.takeover_to, f"takeover refused: {why}")
        return
    better = [n for n in v.nodes if n.alive and n.name != here.name and n.ping > here.ping
              and eligible(v, g, n, True) is None]
    if better:
        plan.add("stop", g, here.name, f"{here.name} reaches {here.ping} ping node(s), "
                                       f"{better[0].name} reaches {better[0].ping}: the better "
                                       "connected node takes it")
        return
    if g.auto_failback and here.name != g.preferred and g.takeover_to != here.name:
        pref = v.node(g.preferred)
        if pref is None or not pref.alive:
            return
        block = eligible(v, g, pref, True)
        if block is None and not pref.disk_synced:
            block = f"the disk on {pref.name} is still resyncing"
        if block is None and not pref.ready:
            block = f"the clones of {g.name} are not running on {pref.name} yet"
        if block is None and pref.ping < here.ping:
            block = f"{pref.name} is less connected ({pref.ping} < {here.ping})"
        if block is None:
            plan.add("stop", g, here.name, f"auto_failback: {g.preferred} is back and in "
                                           "sync; an orderly handover")
        else:
            plan.add("wait", g, g.preferred, f"auto_failback waits: {block}")


def after_monitor_failure(failures: int, restarts: int,
                          restart_helps: bool = True) -> Literal["restart", "fail"]:
    """What the node running a group does when a resource's monitor failed for the
    ``failures``-th time: ``restart`` it while ``restarts`` allows, else ``fail`` the group
    here (the policy then moves it).  A failure a restart cannot repair (a Diskless disk
    whose configuration says ``on_io_error = "failover"``) fails it at once."""
    if restart_helps and failures <= restarts:
        return "restart"
    return "fail"


def failure_expired(failed_at: float, now: float, timeout: float) -> bool:
    """Whether a failure at ``failed_at`` is forgotten at ``now`` (Pacemaker's
    failure-timeout; 0: never, until an operator's cleanup)."""
    return timeout > 0 and now - failed_at >= timeout
