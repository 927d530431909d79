"""The drill's actions on this node: it asks its own cluster daemon (the control socket),
kills the service by its pid file, cuts a heartbeat link with nftables — and watches the
site through its poller all along.  Scenario choice and verdicts: ``scenarios``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from typing import Any, Callable

from kembar.config.model import ClusterConfig
from kembar.daemon.control import request
from kembar.drill.poller import Poller, outages
from kembar.drill.scenarios import Result, judge, link_target, service_target
from kembar.errors import KembarError

NFT_TABLE = "kembar_drill"  # inet family, on this node only, removed after the scenario
SETTLE = 1.0  # seconds of polling after a move, to catch a late outage
SLOW = 0.25  # seconds: a reply slower than this is part of an outage (the user waited)
LOOKBACK = 2.0  # seconds before a scenario in which its outage's last good reply may lie


def nft_both_ways(table: str, nic: str, match: str) -> str:
    """An inet table dropping what ``match`` selects on ``nic``, in and out (pure)."""
    return (f"table inet {table} {{\n"
            "  chain input {\n    type filter hook input priority -10; policy accept;\n"
            f"    iifname \"{nic}\" {match} drop\n  }}\n"
            "  chain output {\n    type filter hook output priority -10; policy accept;\n"
            f"    oifname \"{nic}\" {match} drop\n  }}\n}}\n")


def nft_rules(link: str, port: int) -> str:
    """Heartbeats on ``link`` dropped both ways (pure)."""
    return nft_both_ways(NFT_TABLE, link, f"udp dport {port}")


class Drill:
    def __init__(self, cfg: ClusterConfig, me: str, group: str, url: str, run_dir: str,
                 timeout: float, max_outage: float | None,
                 say: Callable[[str], None] = lambda _: None) -> None:
        self.cfg, self.me, self.group, self.run_dir = cfg, me, group, run_dir
        self.timeout, self.max_outage, self.say = timeout, max_outage, say
        self.poller = Poller(url)

    # ------------------------------------------------------------------ helpers

    def status(self) -> dict[str, Any]:
        return dict(request(self.run_dir, {"op": "status"}, timeout=10))

    def gstatus(self) -> dict[str, Any]:
        return dict(self.status()["manager"]["groups"][self.group])

    def _wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if pred(self.status()):
                    return True
            except KembarError:
                pass
            time.sleep(0.1)
        return False

    def _runs_on(self, node: str) -> Callable[[dict[str, Any]], bool]:
        def pred(st: dict[str, Any]) -> bool:
            g = st["manager"]["groups"][self.group]
            return bool(g["running_on"] == [node] and
                        (g["here"] == "running") == (node == self.me))
        return pred

    def _outage(self, since: float) -> float:
        """The longest client-visible outage that ended after ``since`` (0 if none): from
        the last good reply before it, which may be a little earlier."""
        time.sleep(SETTLE)
        gaps = outages(self.poller.snapshot(since - LOOKBACK), slow=SLOW)
        return max((float(g["seconds"]) for g in gaps if g["end"] >= since), default=0.0)

    def _served(self, since: float, node: str | None = None, timeout: float = 0.0) -> bool:
        """Whether the site answered (from ``node``, when given) since ``since``, waiting
        up to ``timeout`` for it.  A site that does not say which node served it (no
        X-Served-By header: most do not) answers for ``node`` with a good reply sent after
        this call: every caller asks once its daemon has said that the group runs on
        ``node``, so the VIP is there by then."""
        confirmed = time.time()
        deadline = time.monotonic() + timeout
        while True:
            if any(r["ok"] and (node is None or r["node"] == node
                                or not r["node"] and r["t"] >= confirmed)
                   for r in self.poller.snapshot(since)):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def ready(self, timeout: float = 10.0) -> bool:
        """The site answers from this node, and has for a moment (so that the first
        scenario's outage has a good reply before it)."""
        t0 = time.time()
        if not self._served(t0, self.me, timeout):
            return False
        time.sleep(0.5)
        return True

    # ---------------------------------------------------------------- scenarios

    def switchover(self) -> list[Result]:
        peer = next((n for n in self.cfg.nodes if n != self.me), None)
        if peer is None:
            return [Result("switchover", "SKIP", None, "a cluster of one node")]
        spec = self.gstatus()
        out = []
        self.say(f"switchover: {self.group} to {peer} (this node in standby)")
        t0 = time.time()
        request(self.run_dir, {"op": "standby", "on": True})
        try:
            ok = self._wait(self._runs_on(peer), self.timeout)
            ok = ok and self._served(t0, peer, self.timeout)
            out.append(judge(ok, f"switchover to {peer}",
                             self._outage(t0), self.max_outage))
        finally:  # never leave this node in standby, whatever happened
            self.say(f"switchover: {self.group} back to {self.me}")
            t0 = time.time()
            request(self.run_dir, {"op": "standby", "on": False})
        if not spec["auto_failback"] or spec["preferred"] != self.me:
            request(self.run_dir, {"op": "takeover", "groups": [self.group]})
        ok = self._wait(self._runs_on(self.me), self.timeout)
        ok = ok and self._served(t0, self.me, self.timeout)
        out.append(judge(ok, f"switchover back to {self.me}",
                         self._outage(t0), self.max_outage))
        return out

    def service(self) -> Result:
        g = self.gstatus()
        res, why = service_target(self.cfg, self.group, g["fail_counts"])
        if res is None:
            return Result("service killed", "SKIP", None, why)
        name = res.describe()
        pidfile = os.path.join(self.run_dir, f"{self.group}-{res.name}.pid")
        try:
            with open(pidfile) as fh:
                pid = int(fh.read().strip())
        except (OSError, ValueError):
            return Result(f"{name} killed", "FAIL", None, f"no pid in {pidfile}")
        before = g["fail_counts"].get(name, 0)
        self.say(f"service: SIGKILL to {name} (pid {pid}); its monitor must restart it here")
        t0 = time.time()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return Result(f"{name} killed", "FAIL", None, f"pid {pid} is not running")

        def restarted(st: dict[str, Any]) -> bool:
            gs = st["manager"]["groups"][self.group]
            state = {r["resource"]: r for r in gs["resource_states"]}.get(name, {})
            return bool(gs["here"] == "running" and gs["running_on"] == [self.me]
                        and state.get("fail_count", 0) > before
                        and state.get("state") in ("started", "running"))

        ok = self._wait(restarted, self.timeout)
        ok = ok and self._served(time.time(), self.me, self.timeout)
        result = judge(ok, f"{name} killed", self._outage(t0),
                       self.max_outage)
        if ok:
            request(self.run_dir, {"op": "cleanup", "groups": [self.group]})
            result.detail = "restarted here; its fail count reset (`kembar cleanup`)"
        return result

    def link(self, wanted: str | None, seconds: float) -> Result:
        st = self.status()
        link, why = link_target(list(st["links"]), wanted)
        if link is None:
            return Result("heartbeat link cut", "SKIP", None, why)
        what = f"heartbeat link {link} cut"
        nft = shutil.which("nft")
        if nft is None:
            return Result(what, "SKIP", None, "nft not found (apt-get install nftables)")
        port = self.cfg.membership.port if self.cfg.membership else 694
        peers = [n for n in st["nodes"]]
        dead_before = st["event_counts"].get("NodeDead", 0)
        self.say(f"link: heartbeats on {link} dropped for {seconds:g} s; the peer must stay up")
        t0 = time.time()
        res = subprocess.run([nft, "-f", "-"], input=nft_rules(link, port), text=True,
                             capture_output=True)
        if res.returncode != 0:
            return Result(what, "FAIL", None, f"nft: {res.stderr.strip()}")
        try:
            def cut(s: dict[str, Any]) -> bool:
                return all(s["nodes"][n]["links"].get(link, {}).get("state")
                           not in (None, "up") for n in peers)
            noticed = self._wait(cut, seconds)
            time.sleep(max(0.0, seconds - (time.time() - t0)))
        finally:
            subprocess.run([nft, "delete", "table", "inet", NFT_TABLE], capture_output=True)

        def healed(s: dict[str, Any]) -> bool:
            return all(s["nodes"][n]["links"].get(link, {}).get("state") == "up"
                       for n in peers)
        back = self._wait(healed, self.timeout)
        st = self.status()
        moved = st["manager"]["groups"][self.group]["running_on"] != [self.me]
        dead = st["event_counts"].get("NodeDead", 0) - dead_before
        outage = self._outage(t0)
        if not noticed:
            return Result(what, "FAIL", outage, f"the link was never seen down ({link})")
        if dead or moved:
            return Result(what, "FAIL", outage, f"{dead} node(s) declared dead; the group "
                                                f"{'moved' if moved else 'stayed'}")
        if not back:
            return Result(what, "FAIL", outage, "the link did not come back after the cut")
        result = judge(True, what, outage, self.max_outage)
        result.detail = "the peer stayed up over the other link(s); nothing moved"
        return result
