"""The resource manager inside the cluster daemon: the timer and worker layer around the
pure policy (``kembar.manager.policy``).

Every round (on a membership event, a finished operation, a control request, and at least
every ``ROUND`` seconds) it reads the local disks, builds each group's snapshot from the
membership and every node's latest report (``kembar.manager.view``), asks the policy what
to do and carries out what is addressed to this node: start or stop a group (resources
in order, rollback on a failed start, in a worker thread), fence a dead node (the fencing
command), or wait.  Each decision is logged once, as the sentence the policy wrote.  A
change of this node's state is announced at once with an extra heartbeat, so the peers
act on it without waiting for the next keepalive.

Running groups are monitored: a failed monitor restarts the resource (and those after it)
up to its ``restarts`` count, then the group is marked failed here and moves.  Every start
and stop is recorded as a timeline (declared dead, fenced, each resource) for
``kembar status --history``.

Clones (``clone = true``, ``kembar.manager.clone``) are kept running here by a keeper task
while this node is online and the group is not failed here, whether the group runs here or
not; the daemon stops them after its shutdown notice (``stop_clones``), so that a clean
stop hands the group over without waiting for them.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from kembar.agents import AgentContext, AgentError, make_agent
from kembar.agents.base import Agent, FailoverNow
from kembar.config.model import ClusterConfig
from kembar.disk.client import DiskClient
from kembar.disk.meta import MetaStore
from kembar.errors import KembarError
from kembar.manager.clone import Clone
from kembar.manager.group import GroupStartFailed, GroupStopFailed, start_group, stop_group
from kembar.manager.policy import Action, after_monitor_failure, decide, failure_expired
from kembar.manager.report import DiskReport, Report, decode
from kembar.manager.view import GroupSpec, Member, fencer, group_view, newest_wish
from kembar.membership.state import Membership

log = logging.getLogger("kembar.manager")

ROUND = 1.0  # seconds between decision rounds when nothing happens
DISK_POLL = 0.5  # seconds between reads of the local disks' states
CHECK_PEER_EVERY = 2.0  # seconds between two `check-peer` of one disk
KEEP_FENCE_RETRY = 30.0  # seconds before an owner's failed shot at a lost peer is retried


def _gen(uuids: Any) -> str:
    """A disk status's generation identifiers as a report carries them ("" unknown)."""
    try:
        return f"{int(uuids['current'], 16):016X}:{int(uuids['bitmap'], 16):016X}"
    except (TypeError, KeyError, ValueError):
        return ""


@dataclass
class Local:
    """One group on this node."""

    state: str = "stopped"  # stopped | starting | running | stopping
    failed: str = ""  # why it failed here ("" = not failed)
    failed_at: float = 0.0  # monotonic time of the failure
    fail_counts: dict[str, int] = field(default_factory=dict)
    last_failure: dict[str, float] = field(default_factory=dict)  # resource -> monotonic
    busy: bool = False  # an operation (start, stop, restart) runs in a worker
    last_error: str = ""
    since: float = field(default_factory=time.time)
    agents: list[Agent] = field(default_factory=list)
    resources: dict[str, str] = field(default_factory=dict)  # each one's last known state
    # each resource's starts and stops here: "start", "start_failed", "stop", "stop_failed"
    transitions: dict[str, dict[str, int]] = field(default_factory=dict)


class Manager:
    def __init__(self, cfg: ClusterConfig, me: str, run_dir: str, state_dir: str,
                 announce: Callable[[], None], record: Callable[[dict[str, Any]], None]
                 ) -> None:
        self.cfg = cfg
        self.me = me
        self.run_dir = run_dir
        self.ctx_base = dict(run_dir=run_dir, state_dir=state_dir,
                             config=str(cfg.source or ""), node=me)
        self.announce = announce
        self.record = record
        self.specs = [GroupSpec(name, g.preferred, cfg.auto_failback(name),
                                tuple(r.disk for r in g.resources if r.type == "disk"))
                      for name, g in cfg.groups.items()]
        self.disk_names = sorted({d for s in self.specs for d in s.disks})
        self.local = {s.name: Local() for s in self.specs}
        self.clones: dict[str, list[Clone]] = {}
        self.standby = False
        self.wishes: dict[str, int] = {}
        self.fenced: dict[str, int] = {}
        self.fencing_now: set[str] = set()
        self._fenced_at: dict[str, float] = {}
        self.disks: dict[str, DiskReport] = {d: DiskReport() for d in self.disk_names}
        self.disk_peer: dict[str, str] = {d: cfg.disk(d).peer_of(me)[0]
                                          for d in self.disk_names if me in cfg.disk(d).on}
        self.checked_at: dict[str, float] = {}
        self.decisions: dict[str, list[str]] = {}
        self.dead_at: dict[str, float] = {}
        # where each group was last seen running on another node (a start here is then a
        # failover or a failback: kembar.notify)
        self.seen_on: dict[str, str] = {}
        self.membership: Membership | None = None
        # how long a disk waits for a ping answer from a peer the cluster declared dead:
        # two keepalives (the LAN's round trip is far shorter), at least 0.1 s
        ms = cfg.membership
        self.check_timeout = max(0.1, 2 * ms.keepalive) if ms is not None else 0.5
        self.my_ping: Callable[[], int] = lambda: 0
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    # ------------------------------------------------------------------ inputs

    def wake(self) -> None:
        self._wake.set()

    def heard(self, node: str) -> None:
        """A peer's report changed: note where it runs groups now, not at the next round —
        a peer handing a group back may report it stopping and stopped before that, and a
        start here would then not know it ran there (a failback or failover, for the
        hooks: found when a rebooted preferred node missed its failback)."""
        n = self.membership.nodes.get(node) if self.membership is not None else None
        rep = decode(n.report) if n is not None and n.report is not None else None
        for name, state in (rep.groups.items() if rep is not None else ()):
            if state in ("running", "stopping"):
                self.seen_on[name] = node

    def node_dead(self, node: str) -> None:
        self.dead_at[node] = time.time()
        if any(p == node for p in self.disk_peer.values()):
            self._spawn(self._check_dead_peers())  # now, not at the next disk poll
        self.wake()

    def report(self) -> Report:
        return Report(groups={n: l.state for n, l in self.local.items() if l.state != "stopped"},
                      failed=tuple(sorted(n for n, l in self.local.items() if l.failed)),
                      standby=self.standby, takeover=dict(self.wishes),
                      disks=dict(self.disks), fenced=dict(self.fenced),
                      unready=tuple(sorted(s.name for s in self.specs
                                           if not self._clones_up(s.name))))

    def _clones_up(self, group: str) -> bool:
        """Whether every clone of the group runs here (True for a group without clones)."""
        if not self.cfg.groups[group].clone_count:
            return True
        clones = self.clones.get(group)
        return clones is not None and len(clones) > 0 and all(c.up for c in clones)

    def members(self) -> dict[str, Member] | None:
        """Everyone's membership, or None while a peer is still unknown (initdead)."""
        m = self.membership
        if m is None:
            return None
        out = {self.me: Member(self.me, True, self.my_ping(), False, None)}
        for name, n in m.nodes.items():
            if n.state == "unknown":
                return None
            out[name] = Member(name, n.state == "up", n.ping[0] if n.ping else 0,
                               n.reason == "shutdown notice", n.incarnation)
        return out

    def reports(self) -> dict[str, Report]:
        out = {self.me: self.report()}
        if self.membership is not None:
            for name, n in self.membership.nodes.items():
                rep = decode(n.report) if n.report is not None else None
                if rep is not None:
                    out[name] = rep
        return out

    # ------------------------------------------------------------------- loop

    async def run(self) -> None:
        if not self.specs:
            return
        log.info("manager: %d group(s): %s", len(self.specs), ", ".join(
            f"{s.name} (preferred {s.preferred}, auto_failback "
            f"{'on' if s.auto_failback else 'off'})" for s in self.specs))
        for spec in self.specs:
            await self._probe(spec.name)
            if self.cfg.groups[spec.name].clone_count:
                self._spawn(self._keep_clones(spec.name))
        poll = asyncio.create_task(self._poll_disks())
        try:
            while not self._stopping:
                try:
                    await asyncio.wait_for(self._wake.wait(), ROUND)
                except asyncio.TimeoutError:
                    pass
                self._wake.clear()
                if not self._stopping:
                    await self._refresh_disks()
                    self._expire_failures()
                    self._round()
        finally:
            poll.cancel()

    def _expire_failures(self) -> None:
        """Failures older than the group's ``failure_timeout`` are forgotten."""
        now = time.monotonic()
        for group, loc in self.local.items():
            timeout = self.cfg.groups[group].failure_timeout
            for name, at in list(loc.last_failure.items()):
                if failure_expired(at, now, timeout):
                    loc.fail_counts.pop(name, None)
                    del loc.last_failure[name]
            if loc.failed and loc.failed_at and failure_expired(loc.failed_at, now, timeout):
                text = (f"{group}: the failure on {self.me} expired after "
                        f"{timeout:g} s (failure_timeout): {loc.failed}")
                log.info("%s", text)
                self.record({"event": "FailureExpired", "group": group, "text": text})
                loc.failed = ""
                self.announce()

    async def _refresh_disks(self) -> bool:
        """Read the local disks now; announce a change.  True if something changed."""
        if not self.disk_names:
            return False
        fresh = await asyncio.to_thread(self._read_disks)
        if fresh == self.disks:
            return False
        self.disks = fresh
        self.announce()
        return True

    async def _poll_disks(self) -> None:
        while True:
            if await self._refresh_disks():
                self.wake()
            await self._check_dead_peers()
            await asyncio.sleep(DISK_POLL)

    def _stored_gen(self, disk: str) -> str:
        """The generation identifiers in the metadata of a disk that no process serves
        ("" if unreadable): what the peer needs to know whether it holds everything this
        disk held (a killed disk process answers nothing, its metadata still tells)."""
        try:
            md = MetaStore(self.cfg.disk(disk).local(self.me).meta).load(
                expect_disk=disk, expect_node=self.me)
        except (KembarError, OSError, ValueError):
            return ""
        return f"{md.current:016X}:{md.bitmap_uuid:016X}" if md.current else ""

    def _read_disks(self) -> dict[str, DiskReport]:
        out = {}
        for d in self.disk_names:
            try:
                with DiskClient(d, self.run_dir, timeout=2.0) as c:
                    st = c.status()
            except (KembarError, OSError) as exc:
                log.debug("disk %s: %s", d, exc)
                out[d] = DiskReport("Down", gen=self._stored_gen(d))
                continue
            peer = st.get("peer", {})
            connected = peer.get("connection") == "Connected"
            out[d] = DiskReport(
                str(st.get("disk_state", "DUnknown")),
                connected and peer.get("disk_state") == "UpToDate" and st.get("out_of_sync") == 0
                and st.get("disk_state") == "UpToDate",
                connected and peer.get("role") == "Primary", st.get("role") == "Primary",
                connected, _gen(st.get("uuids")))
        return out

    async def _check_dead_peers(self) -> None:
        """A disk still connected to a peer the membership declared dead: ask it now
        (`check-peer`) instead of waiting for the disk's own ping interval — a Primary
        peer's role must go before this node may be promoted, and a Primary here must not
        hold its writes for the disk's whole timeout (6 s) waiting for a dead Secondary
        (found by the torture: the site stalled after every crash of the Secondary)."""
        members = self.members() or {}
        for d, rep in self.disks.items():
            peer = self.disk_peer.get(d)
            if not rep.connected or peer is None or members.get(peer, Member(peer, True)).alive:
                continue
            now = time.monotonic()
            if now - self.checked_at.get(d, -CHECK_PEER_EVERY) < CHECK_PEER_EVERY:
                continue
            self.checked_at[d] = now
            try:
                answer = await asyncio.to_thread(self._check_peer, d)
                log.info("%s is dead for the cluster but disk %s is still connected to it: "
                         "%s", peer, d, answer)
            except (KembarError, OSError) as exc:
                log.warning("disk %s: check-peer failed: %s", d, exc)
            await self._refresh_disks()
            self.wake()

    def _check_peer(self, disk: str) -> str:
        with DiskClient(disk, self.run_dir, timeout=10.0) as c:
            return str(c.control("check-peer", timeout=self.check_timeout))

    async def _probe(self, group: str) -> None:
        """At start, ask every resource of the group whether it runs here (a daemon that
        was killed leaves its group running): all of them → the group is adopted and
        monitored; some → they are stopped, so that the group starts clean wherever the
        policy puts it; none → stopped, as expected."""
        loc = self.local[group]
        agents = self._agents(group)
        found, owned = [], 0
        for agent, r in zip(agents, self.cfg.groups[group].resources):
            if r.type == "probe" or isinstance(agent, Clone):
                # a probe sees what clients see (possibly the other node's group); a clone
                # runs on every node (the keeper adopts it)
                continue
            owned += 1
            try:
                running = await asyncio.to_thread(agent.monitor, r.timeout)
            except (AgentError, KembarError) as exc:
                running = True  # unknown state: treat as running (it gets stopped)
                log.warning("%s: probe of %s: %s", group, agent.name, exc)
            if running:
                found.append(agent.name)
        if not found:
            return
        loc.agents = agents
        if len(found) == owned:
            log.warning("%s: found running here at start (all its resources): adopted", group)
            loc.state = "running"
            self.record({"event": "GroupAdopted", "group": group,
                         "text": f"{group} found running at start: adopted"})
            self._spawn(self._monitor(group))
            return
        log.warning("%s: partly running at start (%s): stopping it first", group,
                    ", ".join(found))
        loc.state = "running"
        await self._stop(group, f"found partly running at start ({', '.join(found)})")

    def _round(self) -> None:
        members = self.members()
        if members is None:
            return  # initdead: a peer is still unknown, decide nothing (as Heartbeat)
        reports = self.reports()
        for node, rep in reports.items():
            if node != self.me and node in members and members[node].alive:
                for name, state in rep.groups.items():
                    if state in ("running", "stopping"):
                        self.seen_on[name] = node
        for name in list(self.wishes):  # a newer wish elsewhere replaces ours
            spec = next((s for s in self.specs if s.name == name), None)
            if spec is not None and newest_wish(name, members, reports) != self.me:
                del self.wishes[name]
                self.announce()
        for spec in self.specs:
            fc = self.cfg.fencing
            view = group_view(spec, members, reports, fc is not None,
                              fc is not None and fc.priority_delay > 0)
            actions = decide(view)
            self._log_decisions(spec.name, actions)
            for a in actions:
                self._act(a, members)

    def _log_decisions(self, group: str, actions: list[Action]) -> None:
        text = [str(a) for a in actions]
        if text != self.decisions.get(group):
            self.decisions[group] = text
            for t in text:
                log.info("decision: %s", t)
                self.record({"event": "Decision", "group": group, "text": f"decision: {t}"})

    def _act(self, a: Action, members: dict[str, Member]) -> None:
        if a.kind == "fence":
            if fencer(members) == self.me and a.node not in self.fencing_now:
                delay = self.cfg.fencing.priority_delay if (
                    a.delayed and self.cfg.fencing is not None) else 0.0
                self._spawn(self._fence(a.node, members[a.node].incarnation or 0, delay,
                                        retry=KEEP_FENCE_RETRY if a.keeps else 1.0))
            return
        if a.node != self.me or a.kind == "wait":
            return
        loc = self.local[a.group]
        if loc.busy:
            return
        if a.kind == "start" and loc.state == "stopped":
            self._spawn(self._start(a))
        elif a.kind == "stop" and loc.state == "running":
            self._spawn(self._stop(a.group, a.why))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------- operations

    def _agents(self, group: str) -> list[Agent]:
        """Fresh agents for the group's resources; its clones are made once and shared."""
        ctx = AgentContext(group=group, **self.ctx_base)
        resources = self.cfg.groups[group].resources
        n = self.cfg.groups[group].clone_count
        if group not in self.clones:
            self.clones[group] = [Clone(make_agent(r, ctx)) for r in resources[:n]]
        return [*self.clones[group], *(make_agent(r, ctx) for r in resources[n:])]

    def _set(self, group: str, state: str) -> None:
        loc = self.local[group]
        loc.state, loc.since = state, time.time()
        self.announce()
        self.wake()

    async def _start(self, a: Action) -> None:
        group, loc = a.group, self.local[a.group]
        loc.busy = True
        timeline: list[dict[str, Any]] = []
        for node, t in self.dead_at.items():
            if node in a.why:
                timeline.append({"time": t, "step": f"{node} declared dead"})
                if node in self.fenced:
                    timeline.append({"time": self._fenced_at.get(node, t),
                                     "step": f"{node} fenced"})
        t0 = time.time()
        timeline.append({"time": t0, "step": f"start of {group} decided: {a.why}"})
        self._set(group, "starting")
        try:
            loc.agents = self._agents(group)
            await asyncio.to_thread(start_group, loc.agents, self._stepper(timeline, loc))
        except (GroupStartFailed, AgentError, KembarError) as exc:
            loc.failed = loc.last_error = f"start failed: {exc}"
            loc.failed_at = time.monotonic()
            log.error("%s could not start on %s: %s (what had started was stopped again)",
                      group, self.me, exc)
            await self._refresh_disks()
            self._set(group, "stopped")
            self._history("GroupStartFailed", group, a.why, timeline, t0, str(exc))
        else:
            loc.fail_counts.clear()
            await self._refresh_disks()
            self._set(group, "running")
            log.info("%s runs on %s (started in %.3f s)", group, self.me, time.time() - t0)
            self._history("GroupStarted", group, a.why, timeline, t0,
                          previous=self.seen_on.get(group))
            self.seen_on[group] = self.me
            self._spawn(self._monitor(group))
        finally:
            loc.busy = False
            self.wake()

    async def _stop(self, group: str, why: str) -> bool:
        loc = self.local[group]
        loc.busy = True
        timeline: list[dict[str, Any]] = []
        t0 = time.time()
        timeline.append({"time": t0, "step": f"stop of {group} decided: {why}"})
        self._set(group, "stopping")
        try:
            agents = loc.agents or self._agents(group)
            await asyncio.to_thread(stop_group, agents, self._stepper(timeline, loc))
        except (GroupStopFailed, AgentError, KembarError) as exc:
            loc.last_error = f"stop failed: {exc}"
            log.critical("%s could not be stopped on %s: %s; it stays here (running) until "
                         "an operator resolves it", group, self.me, exc)
            self._set(group, "running")
            self._history("GroupStopFailed", group, why, timeline, t0, str(exc))
            return False
        else:
            await self._refresh_disks()
            self._set(group, "stopped")
            self._history("GroupStopped", group, why, timeline, t0)
            return True
        finally:
            loc.busy = False
            self.wake()

    def _stepper(self, timeline: list[dict[str, Any]], loc: Local) -> Callable[..., None]:
        def step(resource: str, action: str, ok: bool, seconds: float, message: str) -> None:
            loc.resources[resource] = (("started" if action == "start" else "stopped")
                                       if ok else f"{action} FAILED")
            counts = loc.transitions.setdefault(resource, {})
            key = action if ok else f"{action}_failed"
            counts[key] = counts.get(key, 0) + 1
            what = f"{resource}: {action} " + ("done" if ok else "FAILED") + \
                   (f" ({message})" if message else "")
            timeline.append({"time": time.time(), "step": what, "seconds": round(seconds, 3)})
            (log.info if ok else log.warning)("%s in %.3f s", what, seconds)
        return step

    def _history(self, kind: str, group: str, why: str, timeline: list[dict[str, Any]],
                 t0: float, error: str = "", previous: str | None = None) -> None:
        took = time.time() - t0
        text = f"{group} on {self.me}: {kind} in {took:.3f} s ({why})" + \
            (f": {error}" if error else "")
        entry = {"event": kind, "group": group, "node": self.me, "why": why,
                 "took": round(took, 3), "error": error, "timeline": timeline, "text": text}
        if kind == "GroupStarted":
            entry["from"] = previous  # where it ran before (None: nowhere, or here)
        self.record(entry)

    async def _fence(self, node: str, incarnation: int, delay: float = 0.0,
                     retry: float = 1.0) -> None:
        assert self.cfg.fencing is not None
        fc = self.cfg.fencing
        argv = [part.replace("{node}", node) for part in fc.command]
        self.fencing_now.add(node)
        if delay > 0:
            # Priority fencing: the node that runs the group fences at once; this side
            # waits, so that when both only lost each other the owner shoots first.
            log.warning("fencing %s in %.1f s (priority fencing: it ran a group, so its "
                        "side fences first if it is alive)", node, delay)
            await asyncio.sleep(delay)
            now = (self.members() or {}).get(node)
            if now is not None and now.alive:
                self.fencing_now.discard(node)
                log.warning("not fencing %s: it is alive again after the priority fencing "
                            "delay", node)
                self.wake()
                return
        t0 = time.time()
        log.warning("fencing %s: %s", node, " ".join(argv))
        try:
            res = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True,
                                          timeout=fc.timeout)
            ok, out = res.returncode == 0, (res.stdout + res.stderr).strip()[-300:]
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, out = False, str(exc)
        finally:
            self.fencing_now.discard(node)
        if ok:
            self.fenced[node] = incarnation
            self._fenced_at[node] = time.time()
            log.warning("fenced %s in %.3f s%s", node, time.time() - t0, f": {out}" if out else "")
            self.record({"event": "Fenced", "node": node, "took": round(time.time() - t0, 3),
                         "text": f"fenced {node} ({out or 'ok'})"})
        else:
            log.error("fencing %s failed (%s); its groups wait until fencing succeeds", node,
                      out or "no output")
            self.record({"event": "FenceFailed", "node": node, "text":
                         f"fencing {node} failed: {out}"})
            # Do not hammer the power switch: a takeover waits for this shot, so it is
            # tried again after a second; an owner's shot at a lost peer (priority
            # fencing) blocks nothing here, so it is tried again only after ``retry``.
            await asyncio.sleep(retry)
        self.announce()
        self.wake()

    # -------------------------------------------------------------- monitoring

    async def _monitor(self, group: str) -> None:
        loc = self.local[group]
        resources = self.cfg.groups[group].resources
        due = {i: time.monotonic() + r.monitor_interval for i, r in enumerate(resources)
               if r.monitor_interval > 0}
        while loc.state == "running" and due and not self._stopping:
            i = min(due, key=lambda k: due[k])
            await asyncio.sleep(max(0.0, due[i] - time.monotonic()))
            if loc.failed:
                # the group failed here (a restart that failed stopped what follows): no
                # more restarts of later resources on top of what is not running (found by
                # the torture: the site restarted on an unmounted /srv/data)
                return
            if loc.state != "running" or loc.busy or self._stopping:
                continue
            r, agent = resources[i], loc.agents[i]
            due[i] = time.monotonic() + r.monitor_interval
            problem, restart_helps = await self._check(agent, r.timeout)
            if loc.failed:
                return
            if not problem or loc.state != "running" or loc.busy:
                continue
            root = await self._root_cause(loc, resources, i)
            if root is not None:
                # an earlier resource failed too (a probe saw the site fail because the disk
                # under it died): restarting the later one alone cannot help, and would
                # use up its restarts; the restart begins where the failure is.  (Found by
                # the torture: the disk's own monitor, at its default 10 s, came too late.)
                j, problem, restart_helps = root
                log.warning("%s: monitor of %s failed; %s, before it in the group, fails "
                            "too: the restart begins there", group, agent.name,
                            loc.agents[j].name)
                i, r, agent = j, resources[j], loc.agents[j]
                due[i] = time.monotonic() + r.monitor_interval
            name = agent.name
            count = loc.fail_counts[name] = loc.fail_counts.get(name, 0) + 1
            loc.last_failure[name] = time.monotonic()
            self.record({"event": "MonitorFailed", "group": group, "resource": name,
                         "count": count, "text": f"{group}: monitor of {name} failed "
                                                 f"({problem}), failure {count} of "
                                                 f"{r.restarts} allowed"})
            log.warning("%s: monitor of %s failed: %s (failure %d, %d restart(s) allowed)",
                        group, name, problem, count, r.restarts)
            if after_monitor_failure(count, r.restarts, restart_helps) == "restart":
                await self._restart(group, i)
            else:
                loc.failed = f"monitor of {name} failed {count} times: {problem}"
                loc.last_error, loc.failed_at = loc.failed, time.monotonic()
                log.error("%s: %s; the group leaves %s", group, loc.failed, self.me)
                self.announce()
                self.wake()
                return

    @staticmethod
    async def _check(agent: Agent, timeout: float) -> tuple[str, bool]:
        """One monitor call: (the problem, "" if none; whether a restart can help)."""
        try:
            ok = await asyncio.to_thread(agent.monitor, timeout)
            return ("" if ok else "it is not running"), True
        except FailoverNow as exc:
            return str(exc), False
        except (AgentError, KembarError) as exc:
            return str(exc), True

    async def _root_cause(self, loc: Local, resources: list[Any], failed: int
                          ) -> tuple[int, str, bool] | None:
        """The first resource before ``failed`` whose monitor fails now (each one that is
        monitored at all, whatever its interval): (its index, its problem, whether a
        restart can help); None when they all run."""
        for j in range(failed):
            if resources[j].monitor_interval <= 0:
                continue
            problem, helps = await self._check(loc.agents[j], resources[j].timeout)
            if problem:
                return j, problem, helps
        return None

    async def _keep_clones(self, group: str) -> None:
        """Keep the group's clones running here while the group is stopped here (while it
        runs, its own monitor watches them); stop them in standby or once the group has
        failed here.  A clone that dies is restarted up to its ``restarts`` count; past it,
        the group is failed here (it will not come here) until ``kembar cleanup``."""
        loc = self.local[group]
        resources = self.cfg.groups[group].resources
        self._agents(group)  # makes the clones, once
        clones = self.clones[group]
        interval = min((r.monitor_interval for r in resources[:len(clones)]
                        if r.monitor_interval > 0), default=ROUND)
        while not self._stopping:
            if not loc.busy and loc.state == "stopped":
                if self.standby or loc.failed:
                    await self._stop_clones_of(group, "standby" if self.standby else
                                               f"{group} failed here")
                else:
                    await self._ensure_clones(group, loc, clones, resources)
            await asyncio.sleep(min(interval, ROUND))

    async def _ensure_clones(self, group: str, loc: Local, clones: list[Clone],
                             resources: list[Any]) -> None:
        for clone, r in zip(clones, resources):
            if self._stopping or loc.busy or loc.state != "stopped" or loc.failed:
                return
            try:
                if await asyncio.to_thread(clone.monitor, r.timeout):
                    clone.up = True
                    continue
                problem = "it is not running"
            except (AgentError, KembarError) as exc:
                problem = str(exc)
            if clone.up:  # it ran and died: a failure, as the group's monitor counts it
                count = loc.fail_counts[clone.name] = loc.fail_counts.get(clone.name, 0) + 1
                self.record({"event": "MonitorFailed", "group": group, "resource": clone.name,
                             "count": count, "text": f"{group}: clone {clone.name} failed "
                             f"({problem}), failure {count} of {r.restarts} allowed"})
                log.warning("%s: clone %s failed: %s (failure %d, %d restart(s) allowed)",
                            group, clone.name, problem, count, r.restarts)
                if count > r.restarts:
                    loc.failed = loc.last_error = \
                        f"clone {clone.name} failed {count} times: {problem}"
                    loc.failed_at = 0.0  # its keeper stops here: only a cleanup restarts it
                    self.announce()
                    self.wake()
                    return
            try:
                await asyncio.to_thread(clone.start, r.timeout)
                log.info("%s: clone %s started here", group, clone.name)
            except (AgentError, KembarError) as exc:
                count = loc.fail_counts[clone.name] = loc.fail_counts.get(clone.name, 0) + 1
                loc.last_error = f"start of clone {clone.name} failed: {exc}"
                log.error("%s: %s (failure %d)", group, loc.last_error, count)
                if count > r.restarts:
                    loc.failed, loc.failed_at = loc.last_error, 0.0
                    self.announce()
                    self.wake()
                return

    async def _stop_clones_of(self, group: str, why: str) -> None:
        for clone in reversed(self.clones.get(group, [])):
            if not clone.up:
                continue
            try:
                await asyncio.to_thread(clone.stop_here, clone.timeout)
                log.info("%s: clone %s stopped here (%s)", group, clone.name, why)
            except (AgentError, KembarError) as exc:
                loc = self.local[group]
                loc.last_error = f"stop of clone {clone.name} failed: {exc}"
                log.error("%s: %s", group, loc.last_error)

    async def stop_clones(self) -> None:
        """After the shutdown notice: stop every clone this daemon runs, last first."""
        for spec in reversed(self.specs):
            await self._stop_clones_of(spec.name, "this node's daemon is stopping")

    async def _restart(self, group: str, index: int) -> None:
        """Restart resource ``index`` and those after it (they depend on it)."""
        loc = self.local[group]
        loc.busy = True
        timeline: list[dict[str, Any]] = []
        t0 = time.time()
        tail = loc.agents[index:]
        try:
            await asyncio.to_thread(stop_group, tail, self._stepper(timeline, loc))
            await asyncio.to_thread(start_group, tail, self._stepper(timeline, loc))
            self._history("ResourceRestarted", group, f"monitor of {tail[0].name} failed",
                          timeline, t0)
        except (GroupStartFailed, GroupStopFailed, AgentError, KembarError) as exc:
            loc.failed = loc.last_error = f"restart of {tail[0].name} failed: {exc}"
            loc.failed_at = time.monotonic()
            self._history("ResourceRestartFailed", group, "monitor failed", timeline, t0,
                          str(exc))
        finally:
            loc.busy = False
            self.announce()
            self.wake()

    # ----------------------------------------------------------------- control

    def set_standby(self, on: bool) -> str:
        self.standby = on
        if on:
            self.wishes.clear()
        self.announce()
        self.wake()
        return f"{self.me}: standby {'on: its groups move away' if on else 'off (online)'}"

    def take_over(self, groups: list[str]) -> str:
        names = groups or [s.name for s in self.specs]
        unknown = [g for g in names if g not in self.local]
        if unknown:
            raise KembarError(f"no group {', '.join(unknown)} (known: "
                              f"{', '.join(self.local) or 'none'})")
        if self.standby:
            raise KembarError(f"{self.me} is in standby; `kembar online` first")
        stamp = int(time.time() * 1000)
        for g in names:
            self.wishes[g] = stamp
        self.announce()
        self.wake()
        return f"{self.me} takes over {', '.join(names)} (an orderly stop on its owner first)"

    def cleanup(self, groups: list[str]) -> str:
        names = groups or list(self.local)
        for g in names:
            if g not in self.local:
                raise KembarError(f"no group {g} (known: {', '.join(self.local)})")
            loc = self.local[g]
            loc.failed, loc.last_error = "", ""
            loc.fail_counts.clear()
        self.announce()
        self.wake()
        return f"{self.me}: failures of {', '.join(names)} forgotten"

    def status(self) -> dict[str, Any]:
        members = self.members()
        reports = self.reports()
        out: dict[str, Any] = {}
        for spec in self.specs:
            loc = self.local[spec.name]
            where = sorted(n for n, r in reports.items()
                           if r.groups.get(spec.name) and (members is None or n in members
                                                           and members[n].alive))
            out[spec.name] = {
                "preferred": spec.preferred, "auto_failback": spec.auto_failback,
                "running_on": where, "here": loc.state, "failed_here": loc.failed,
                "fail_counts": dict(loc.fail_counts), "last_error": loc.last_error,
                "since": loc.since, "decisions": self.decisions.get(spec.name, []),
                "failed_on": sorted(n for n, r in reports.items() if spec.name in r.failed),
                "resources": [r.describe() for r in self.cfg.groups[spec.name].resources],
                "clones": {c.name: "running" if c.up else "stopped"
                           for c in self.clones.get(spec.name, [])},
                "resource_states": self._resource_states(spec.name),
                "transitions": {r: dict(c) for r, c in dict(loc.transitions).items()},
            }
        return {"groups": out, "standby": self.standby, "wishes": dict(self.wishes),
                "disks": {d: vars(r) for d, r in self.disks.items()},
                "fenced": dict(self.fenced), "deciding": members is not None}

    def _resource_states(self, group: str) -> list[dict[str, Any]]:
        """Each resource of the group on this node: its state, fail count, clone or not."""
        loc = self.local[group]
        clones = {c.name: c for c in self.clones.get(group, [])}
        out = []
        for r in self.cfg.groups[group].resources:
            name = r.describe()
            clone = clones.get(name)
            if clone is not None:
                state = "running (clone)" if clone.up else "stopped (clone)"
            elif r.type == "probe":
                state = "watching" if loc.state == "running" else "-"
            else:
                state = loc.resources.get(name, "stopped")
                if loc.state == "running" and state == "stopped":
                    state = "started"  # adopted at start
            out.append({"resource": name, "state": state,
                        "fail_count": loc.fail_counts.get(name, 0)})
        return out

    # ---------------------------------------------------------------- shutdown

    async def shutdown(self) -> None:
        """Stop every group running here, last configured first (before the shutdown
        notice, so the peers take over at once, from a clean state)."""
        self._stopping = True
        for spec in reversed(self.specs):
            loc = self.local[spec.name]
            while loc.busy:
                await asyncio.sleep(0.05)
            if loc.state == "running":
                await self._stop(spec.name, "this node's daemon is stopping")
        for task in list(self._tasks):
            task.cancel()
