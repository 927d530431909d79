"""Who is alive: the membership state machine (authenticated packets + a clock in, events out).

Pure logic: no sockets, no timers, no wall clock.  ``now`` is a monotonic time in seconds
given by the caller (a fake clock in tests).  The sender's wall-clock stamp in a packet is
never used for a decision, so a clock step on either node changes nothing.

Rules (Heartbeat's, plus what it lacks):

* a node is **up** while any link carries its heartbeats; it is declared **dead** when
  none has been heard for ``deadtime`` (``initdead`` for a node not yet heard since this
  daemon started), or at once on its **shutdown notice**;
* a heartbeat that arrives more than ``warntime`` after the previous one is **late**
  (counted and reported with how late); a silence longer than ``warntime`` is reported
  once, before the node is declared dead;
* every packet carries (incarnation, sequence number); the incarnation grows at every
  start of the sender.  On each link a packet must be newer than the last one accepted on
  that link, so a replayed packet never refreshes anything; a greater incarnation while
  the node is up is a **restart** (it came back faster than the deadtime);
* each (node, link) pair is up while heartbeats arrive on it within ``deadtime``: losing
  one of two links is a link event, not a node event;
* if this daemon's own loop was stalled (the process paused, the machine suspended) for
  longer than ``warntime``, the silence it saw is not the peers' fault: they get a fresh
  ``deadtime`` from now instead of being declared dead at once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Union

HEARTBEAT = 1
SHUTDOWN = 2


@dataclass(frozen=True)
class Timing:
    keepalive: float
    deadtime: float
    warntime: float
    initdead: float


@dataclass(frozen=True)
class Heard:
    """What the state machine needs of an authenticated packet."""

    type: int
    cluster: str
    node: str
    incarnation: int
    seq: int
    ping: tuple[int, int] | None = None  # the sender's connectivity score (up, of total)
    report: dict[str, Any] | None = None  # the sender's resource manager report (unchecked)


# ------------------------------------------------------------------- events

@dataclass(frozen=True)
class NodeUp:
    node: str
    incarnation: int
    link: str
    returning: bool  # it had been declared dead before (a partition healed, a reboot)

    def __str__(self) -> str:
        how = "is back" if self.returning else "is up"
        return f"{self.node} {how} (incarnation {self.incarnation}, heard on {self.link})"


@dataclass(frozen=True)
class NodeDead:
    node: str
    reason: str  # "deadtime" | "initdead" | "shutdown notice"
    silent_for: float

    def __str__(self) -> str:
        if self.reason == "shutdown notice":
            return f"{self.node} is dead: it sent a shutdown notice"
        return (f"{self.node} is dead: no heartbeat for {self.silent_for:.3f} s "
                f"({self.reason})")


@dataclass(frozen=True)
class NodeRestarted:
    node: str
    old: int
    new: int

    def __str__(self) -> str:
        return (f"{self.node} restarted within the deadtime (incarnation {self.old} -> "
                f"{self.new})")


@dataclass(frozen=True)
class LateHeartbeat:
    node: str
    link: str
    gap: float
    warntime: float

    def __str__(self) -> str:
        return (f"late heartbeat from {self.node} on {self.link}: {self.gap:.3f} s after the "
                f"last one (warntime {self.warntime:.3f} s)")


@dataclass(frozen=True)
class Silent:
    node: str
    silent_for: float

    def __str__(self) -> str:
        return f"{self.node}: no heartbeat for {self.silent_for:.3f} s (past the warntime)"


@dataclass(frozen=True)
class LinkUp:
    node: str
    link: str

    def __str__(self) -> str:
        return f"link {self.link} to {self.node} is up"


@dataclass(frozen=True)
class LinkDown:
    node: str
    link: str
    silent_for: float

    def __str__(self) -> str:
        return f"link {self.link} to {self.node} is dead (silent {self.silent_for:.3f} s)"


@dataclass(frozen=True)
class Stalled:
    gap: float

    def __str__(self) -> str:
        return (f"this daemon was stalled for {self.gap:.3f} s; peers get a fresh deadtime "
                "instead of being declared dead for a silence it did not watch")


Event = Union[NodeUp, NodeDead, NodeRestarted, LateHeartbeat, Silent, LinkUp, LinkDown, Stalled]


# -------------------------------------------------------------------- state

@dataclass
class LinkState:
    state: str = "unknown"  # unknown | up | dead
    last_heard: float | None = None
    last_key: tuple[int, int] | None = None


@dataclass
class NodeState:
    name: str
    state: str = "unknown"  # unknown | up | dead
    reason: str = ""
    incarnation: int | None = None
    key: tuple[int, int] | None = None
    last_heard: float | None = None
    since: float = 0.0
    late: int = 0
    warned: bool = False
    shutdown_incarnation: int | None = None
    ping: tuple[int, int] | None = None
    report: dict[str, Any] | None = None  # the latest report of its resource manager
    links: dict[str, LinkState] = field(default_factory=dict)


class Membership:
    def __init__(self, cluster: str, me: str, nodes: list[str], links: list[str],
                 timing: Timing, now: float) -> None:
        self.cluster = cluster
        self.me = me
        self.timing = timing
        self.started = now
        self.last_tick = now
        self.links = list(links)
        self.nodes = {n: NodeState(n, since=now, links={ln: LinkState() for ln in links})
                      for n in nodes if n != me}
        self.dropped: Counter[str] = Counter()
        self.accepted = 0

    # ---------------------------------------------------------------- input

    def receive(self, p: Heard, link: str, now: float) -> list[Event]:
        """An authenticated packet arrived on ``link``; what follows from it."""
        if p.cluster != self.cluster:
            self.dropped["cluster"] += 1
            return []
        if p.node == self.me:
            self.dropped["own"] += 1  # our own broadcast, looped back
            return []
        n = self.nodes.get(p.node)
        if n is None:
            self.dropped["unknown-node"] += 1
            return []
        ls = n.links.get(link)
        if ls is None:
            self.dropped["unknown-link"] += 1
            return []
        key = (p.incarnation, p.seq)
        if ls.last_key is not None and key <= ls.last_key:
            self.dropped["replay"] += 1
            return []
        if n.shutdown_incarnation is not None and p.incarnation <= n.shutdown_incarnation:
            self.dropped["after-shutdown"] += 1  # a straggler of a node that said goodbye
            return []
        self.accepted += 1
        events: list[Event] = []
        ls.last_key = key
        ls.last_heard = now
        if ls.state != "up":
            ls.state = "up"
            events.append(LinkUp(n.name, link))
        if n.key is not None and key <= n.key:
            return events  # the same heartbeat over another link: liveness of the link only
        if p.type == SHUTDOWN:
            n.key = key
            n.incarnation = p.incarnation
            n.shutdown_incarnation = p.incarnation
            if n.state != "dead":
                silent = now - n.last_heard if n.last_heard is not None else 0.0
                events.append(self._dead(n, "shutdown notice", silent, now))
            for other in n.links.values():
                other.state = "dead"
            return events
        if n.state == "up" and n.incarnation is not None and p.incarnation > n.incarnation:
            events.append(NodeRestarted(n.name, n.incarnation, p.incarnation))
        if n.state == "up" and n.last_heard is not None:
            gap = now - n.last_heard
            if gap > self.timing.warntime:
                n.late += 1
                events.append(LateHeartbeat(n.name, link, gap, self.timing.warntime))
        if n.state != "up":
            events.append(NodeUp(n.name, p.incarnation, link, returning=n.state == "dead"))
            n.state, n.reason, n.since = "up", "", now
        n.key = key
        n.incarnation = p.incarnation
        n.last_heard = now
        n.warned = False
        n.ping = p.ping
        n.report = p.report
        return events

    def drop(self, reason: str) -> None:
        """A packet that did not even authenticate (counted by the caller's reason)."""
        self.dropped[reason] += 1

    # ---------------------------------------------------------------- clock

    def tick(self, now: float) -> list[Event]:
        events: list[Event] = []
        gap = now - self.last_tick
        self.last_tick = now
        if gap > self.timing.warntime:
            events.append(Stalled(gap))
            fresh = now - self.timing.keepalive
            for n in self.nodes.values():
                if n.last_heard is not None:
                    n.last_heard = max(n.last_heard, fresh)
                for ls in n.links.values():
                    if ls.last_heard is not None:
                        ls.last_heard = max(ls.last_heard, fresh)
            self.started = max(self.started, fresh)
        for n in self.nodes.values():
            for name, ls in n.links.items():
                if ls.state == "up" and ls.last_heard is not None and \
                        now - ls.last_heard > self.timing.deadtime:
                    ls.state = "dead"
                    events.append(LinkDown(n.name, name, now - ls.last_heard))
            if n.state == "dead":
                continue
            if n.last_heard is None:
                if now - self.started > self.timing.initdead:
                    events.append(self._dead(n, "initdead", now - self.started, now))
                continue
            silent = now - n.last_heard
            if silent > self.timing.deadtime:
                events.append(self._dead(n, "deadtime", silent, now))
            elif silent > self.timing.warntime and not n.warned:
                n.warned = True
                events.append(Silent(n.name, silent))
        return events

    def next_deadline(self, now: float) -> float:
        """When ``tick`` has something to decide next (for the timer layer)."""
        return now + min(self.timing.keepalive, self.timing.warntime / 2) / 2

    # --------------------------------------------------------------- helpers

    def _dead(self, n: NodeState, reason: str, silent: float, now: float) -> NodeDead:
        n.state, n.reason, n.since = "dead", reason, now
        return NodeDead(n.name, reason, silent)

    def alive(self) -> list[str]:
        return sorted([self.me] + [n.name for n in self.nodes.values() if n.state == "up"])

    def view(self, now: float) -> dict[str, Any]:
        """Everything ``kembar status`` shows, ages relative to ``now``."""
        def age(t: float | None) -> float | None:
            return None if t is None else round(now - t, 3)
        return {
            "nodes": {n.name: {
                "state": n.state, "reason": n.reason, "incarnation": n.incarnation,
                "last_heard": age(n.last_heard), "since": age(n.since), "late": n.late,
                "ping": list(n.ping) if n.ping is not None else None,
                "links": {ln: {"state": ls.state, "last_heard": age(ls.last_heard)}
                          for ln, ls in n.links.items()}}
                for n in self.nodes.values()},
            "dropped": dict(self.dropped), "accepted": self.accepted,
        }
