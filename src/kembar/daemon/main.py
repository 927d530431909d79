"""``kembar daemon``: heartbeats out every keepalive, heartbeats in from every medium, the
membership state machine in between, events logged, status on the control socket.

The timer and socket layer only: what a packet or a silence means is decided in
``kembar.membership.state``.  SIGTERM/SIGINT send a shutdown notice on every medium (the
peers act at once, as with Heartbeat) and stop.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import gc
import json
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from kembar.config.model import ClusterConfig
from kembar.daemon.control import ControlServer, socket_path
from kembar.daemon.manager import Manager
from kembar.daemon.incarnation import next_incarnation
from kembar.errors import ConfigError, KembarError
from kembar.membership.authkeys import AuthKeys, load_authkeys
from kembar.membership.packet import MAX_BODY, Packet, encode
from kembar.membership.ping import PingChange, Pinger, Reachability
from kembar.membership.receive import receive
from kembar.membership.state import (
    SHUTDOWN,
    Event,
    LateHeartbeat,
    Membership,
    NodeDead,
    NodeUp,
    Silent,
    Timing,
)
from kembar.membership.transport import Transport, interfaces, plan_channels
from kembar.notify import Notifier, from_history
from kembar.ratelimit import LogLimiter, held_note

log = logging.getLogger("kembar.daemon")

HISTORY = 500
DROP_LOG_EVERY = 10.0  # at most one log line per reason per 10 s


class Daemon:
    def __init__(self, cfg: ClusterConfig, me: str, run_dir: str, state_dir: str) -> None:
        if cfg.membership is None:
            raise ConfigError(f"{cfg.source}: no [membership] table: the daemon needs "
                              "its timers and media")
        self.cfg = cfg
        self.mcfg = cfg.membership
        self.me = me
        self.run_dir = run_dir
        self.state_dir = state_dir
        self.keys: AuthKeys = load_authkeys(self.mcfg.authkeys)
        self.timing = Timing(self.mcfg.keepalive, self.mcfg.deadtime, self.mcfg.warn,
                             self.mcfg.init_dead)
        channels, self.notes = plan_channels(self.mcfg.media, self.mcfg.port, interfaces())
        if not channels:
            raise ConfigError("membership.media: no medium is usable on this node")
        self.transport = Transport(channels, self._received)
        self.incarnation = 0
        self.seq = 0
        self.membership: Membership | None = None
        self.reach = Reachability(list(self.mcfg.ping), self.mcfg.dead_ping, time.monotonic())
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY)
        self.started_wall = time.time()
        self._drop_log = LogLimiter(DROP_LOG_EVERY)
        self.counts: collections.Counter[str] = collections.Counter()
        self._stop = asyncio.Event()
        self.notifier = Notifier(cfg.notify, cfg.cluster.name, me)
        self._preferred = {name: g.preferred for name, g in cfg.groups.items()}
        self.manager = Manager(cfg, me, run_dir, state_dir, self._announce, self._entry)
        self._bodies: dict[str, bytes] = {}
        self.running = False
        self.control = ControlServer(socket_path(run_dir), {
            "status": self._status,
            "standby": lambda req: self.manager.set_standby(bool(req.get("on", True))),
            "takeover": lambda req: self.manager.take_over(_names(req.get("groups"))),
            "cleanup": lambda req: self.manager.cleanup(_names(req.get("groups"))),
        })
        self.realtime = "off"
        self.web: Any = None
        if cfg.web is not None:  # the dashboard and /metrics (kembar.web), off by default
            from kembar.web import for_daemon
            self.web = for_daemon(self)

    # ------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        self.realtime = self._go_realtime() if self.mcfg.realtime else "off (configured)"
        self.incarnation = next_incarnation(os.path.join(self.state_dir, "incarnation"))
        now = time.monotonic()
        self.membership = Membership(self.cfg.cluster.name, self.me, list(self.cfg.nodes),
                                     self.transport.links, self.timing, now)
        self.manager.membership = self.membership
        self.manager.my_ping = lambda: self.reach.score
        loop = asyncio.get_running_loop()
        threading.stack_size(2 * 2**20)  # worker threads: small stacks (memory is locked)
        loop.set_default_executor(ThreadPoolExecutor(max_workers=8,
                                                     thread_name_prefix="kembar-worker"))
        await self.transport.start()
        await self.control.start()
        if self.web is not None:
            await self.web.start()
        for note in self.notes:
            log.info("%s", note)
        for warning in self.notifier.check():
            log.warning("%s", warning)
        media = ", ".join(t.medium.describe(self.mcfg.port)
                          for ch in self.transport.channels for t in ch.targets)
        log.info("%s: up as incarnation %d in cluster %s; keepalive %gs, warntime %gs, "
                 "deadtime %gs, initdead %gs; media: %s", self.me, self.incarnation,
                 self.cfg.cluster.name, self.timing.keepalive, self.timing.warntime,
                 self.timing.deadtime, self.timing.initdead, media)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self.running = True
        tasks = [asyncio.create_task(self._beat()), asyncio.create_task(self._watch()),
                 asyncio.create_task(self.manager.run())]
        if self.mcfg.ping:
            pinger = Pinger(list(self.mcfg.ping), self.timing.keepalive, self._pong)
            tasks.append(asyncio.create_task(pinger.run()))
        try:
            await self._stop.wait()
            await self.manager.shutdown()
        finally:
            for t in tasks:
                t.cancel()
            self.running = False
            self._send(SHUTDOWN, "shutdown")
            self._send(SHUTDOWN, "shutdown")  # a second copy, in case one is lost
            log.info("%s: shutdown notice sent; stopping", self.me)
            try:
                await self.manager.stop_clones()  # after the notice: peers need not wait
            finally:
                self.transport.close()
                self.control.close()
                await asyncio.to_thread(self.notifier.close, 5.0)
                if self.web is not None:
                    await self.web.stop()

    def _go_realtime(self) -> str:
        """SCHED_RR at a middling priority, memory locked, the garbage collector's
        long-lived objects frozen: what Heartbeat's ``realtime on`` does, in Python."""
        gc.collect()
        gc.freeze()
        try:
            prio = (os.sched_get_priority_min(os.SCHED_RR) +
                    os.sched_get_priority_max(os.SCHED_RR)) // 2
            # reset on fork: worker threads and every process the resource agents start
            # (mount, the web server, ...) run with the normal policy, only this thread
            # with real-time priority.
            os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK,
                                  os.sched_param(prio))
        except (OSError, AttributeError) as exc:
            log.warning("could not run with real-time priority (%s); heartbeats may be "
                        "delayed on a busy machine", exc)
            return "off (refused by the system)"
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            locked = libc.mlockall(3) == 0  # MCL_CURRENT | MCL_FUTURE
        except OSError:
            locked = False
        return f"SCHED_RR {prio}" + (", memory locked" if locked else "")

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------- heartbeats

    def _send(self, kind: int, status: str) -> None:
        self.seq += 1
        doc: dict[str, Any] = {}
        if self.reach.total:
            doc["ping"] = [self.reach.score, self.reach.total]
        report = self.manager.report().encode() if self.cfg.groups else {}
        if report:
            doc["m"] = report
        body = json.dumps(doc, separators=(",", ":")).encode() if doc else b""
        if len(body) > MAX_BODY:
            log.error("the manager's report is %d bytes, over the %d a heartbeat carries; "
                      "sent without it", len(body), MAX_BODY)
            body = b""
        pkt = Packet(type=kind, cluster=self.cfg.cluster.name, node=self.me,
                     incarnation=self.incarnation, seq=self.seq, status=status,
                     sent_at_ms=int(time.time() * 1000), body=body)
        self.transport.send(encode(pkt, self.keys))

    async def _beat(self) -> None:
        next_at = time.monotonic()
        while True:
            self._send(1, "up")
            next_at += self.timing.keepalive
            delay = next_at - time.monotonic()
            if delay < 0:  # we were late ourselves: do not burst to catch up
                next_at = time.monotonic()
                delay = 0
            await asyncio.sleep(delay)

    async def _watch(self) -> None:
        assert self.membership is not None
        period = min(self.timing.keepalive, self.timing.warntime) / 4
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            self._record(self.membership.tick(now))
            self._record(self.reach.tick(now))

    def _announce(self) -> None:
        """An extra heartbeat now: this node's report changed (peers act on it at once)."""
        if self.running:
            self._send(1, "up")

    def _entry(self, entry: dict[str, Any]) -> None:
        entry.setdefault("time", time.time())
        self.counts[entry["event"]] += 1
        self.history.append(entry)
        self._hook(entry)

    def _hook(self, entry: dict[str, Any]) -> None:
        """The notify hook of a history entry, if it is an event with one (only queued)."""
        notice = from_history(entry, self.me, self._preferred)
        if notice is not None:
            self.notifier.notify(notice)

    def _pong(self, address: str) -> None:
        self._record(self.reach.reply(address, time.monotonic()))

    def _received(self, data: bytes, link: str, addr: tuple[str, int]) -> None:
        if self.membership is None:
            return
        events, pkt, dropped = receive(data, link, time.monotonic(), self.keys,
                                       self.membership)
        self._record(events)
        if pkt is not None and dropped is None and self._bodies.get(pkt.node) != pkt.body:
            self._bodies[pkt.node] = pkt.body
            self.manager.heard(pkt.node)
            self.manager.wake()
        if dropped is not None and dropped != "own":
            who = f"{pkt.node}@{pkt.cluster} " if pkt is not None else ""
            self._log_drop(dropped, f"{who}from {addr[0]} on {link}")

    def _log_drop(self, reason: str, what: str) -> None:
        held = self._drop_log.check(reason, time.monotonic())
        if held is not None:
            log.warning("dropped a packet (%s) %s%s", reason, what, held_note(held))

    def _record(self, events: Sequence[Event | PingChange]) -> None:
        for ev in events:
            level = logging.WARNING if isinstance(ev, (NodeDead, LateHeartbeat, Silent)) or \
                isinstance(ev, PingChange) and not ev.reachable else logging.INFO
            log.log(level, "%s", ev)
            self.counts[type(ev).__name__] += 1
            entry = {"time": time.time(), "event": type(ev).__name__, "text": str(ev)}
            entry.update({k: v for k, v in vars(ev).items()})
            self.history.append(entry)
            self._hook(entry)
            if isinstance(ev, NodeDead):
                self.manager.node_dead(ev.node)
            elif isinstance(ev, (NodeUp, PingChange)):
                self.manager.wake()
            if isinstance(ev, (NodeUp, NodeDead)):
                log.info("members now: %s", ", ".join(self.membership.alive()
                                                      if self.membership else []))

    # ----------------------------------------------------------------- status

    def _status(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.membership is not None
        view = self.membership.view(time.monotonic())
        return {
            "node": self.me, "cluster": self.cfg.cluster.name, "pid": os.getpid(),
            "incarnation": self.incarnation, "started": self.started_wall,
            "timing": vars(self.timing), "links": self.transport.links,
            "media": [t.medium.describe(self.mcfg.port)
                      for ch in self.transport.channels for t in ch.targets],
            "send_errors": self.transport.send_errors,
            "members": self.membership.alive(), **view,
            "ping": {"score": self.reach.score, "total": self.reach.total,
                     "nodes": dict(self.reach.up)},
            "events": list(self.history)[-50:], "event_counts": dict(self.counts),
            "realtime": self.realtime, "manager": self.manager.status(),
            "notify": self.notifier.stats(),
        }


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise KembarError("groups: a list of group names")
    return list(value)


def run_daemon(cfg: ClusterConfig, me: str, run_dir: str, state_dir: str) -> None:
    daemon = Daemon(cfg, me, run_dir, state_dir)
    asyncio.run(daemon.run())
