"""Heartbeat 3.0.6 and keepalived 2.2.7, measured in the lab the way kembar is (issue 6).

The peers of issue 6's benchmark run on the lab's nodes (Debian's ``heartbeat`` and
``keepalived`` packages, installed on the host: a node's ``/etc`` is an overlay of the
host's, so it sees their programs and files and keeps what it writes there to itself),
serving the lab's demo site (``/etc/init.d/apache2``, the LSB stand-in of
``kembar.lab.cluster``, data in each node's own ``/srv/data``) through the VIP
198.18.0.100, while the client polls ``http://VIP/health`` every 50 ms with
``kembar.lab.poll`` (0.2 s timeout, a fresh connection per poll), exactly as
bench/failover.py measures kembar.  An outage is what the client sees: last good reply →
first good reply (``kembar.lab.poll.outages``).

API (each call builds a fresh lab named ``peers`` and removes it before returning)::

    measure_heartbeat(timing, runs, scenario, order="site-first", logs=None) -> dict
        timing: (keepalive, warntime, deadtime) as ha.cf takes them ("2s", "10ms", ...),
        e.g. TIMINGS["paper"]; scenario: "crash" | "clean"; order: "site-first"
        (haresources ``node1 apache2 IPaddr2::198.18.0.100/24/eth0``) or "vip-first";
        logs: a directory to copy the nodes' logs into (optional).
    measure_keepalived(advert_int, runs, scenario, logs=None) -> dict
        advert_int: "0.1", "1", ...; scenario: "crash" | "clean".
    report(results) -> None        # a rich table of a list of such dicts (or of one)

Scenarios, ``runs`` times each, node1 the preferred node (Heartbeat: ``auto_failback
on``; keepalived: higher priority, preempt):

* crash: node1 loses power (``lab.crash``); failover = the outage until node2 answers.
  Then node1 boots (``lab.boot``; no cluster file, so kembar's boot services start
  nothing) and the peer is started on it again (Heartbeat; keepalived after the site):
  failback = the outage until node1 answers again (0.0 when no poll failed).
* clean: Heartbeat: ``/etc/init.d/heartbeat stop`` on node1 (it gives its group up and
  sends its shutdown notice); keepalived: SIGTERM (it sends a priority-0 advert).  Then
  started again: failback as above.

The returned dict::

    {"system": "heartbeat" | "keepalived", "version", "scenario", "setting" (label),
     "timing" | "advert_int", "order" and "site" (web server start/stop s; Heartbeat),
     "runs": [per run:
        {"failover": s, "failover_failed": polls, "takeover": s from the fault to node2's
         first answer, "fault_took": s the crash / stop command took, "steps": {name: s
         after the fault when node2's log showed it, e.g. "detected"}, "failback": s,
         "failback_failed": polls, "switchback": s from the restart command to node1's
         first answer, "outages": [...]}],
     "failover", "failback", "detected", "fault_took": {"values", "median", "max"},
     "issue": figures quoted in issue 6 for this case (or {}), "notes": [str, ...]}

Lab specifics (see the notes of each result): the lab's addresses have no broadcast
address, which Heartbeat's ``bcast`` needs, so eth0's address is re-added with ``brd +``
on each node before Heartbeat starts; Heartbeat cannot mlock() itself here (memlock
limit, no CAP_SYS_RESOURCE) and logs so; keepalived uses VRRPv3 for a sub-second
advert_int (VRRPv2 rounds 0.1 up to 1 s).

Command line: ``.venv/bin/python bench/peers.py --runs 2 [--only heartbeat|keepalived]
[--timings paper,fast,200ms] [--adverts 0.1,1] [--scenarios crash,clean]
[--order site-first|vip-first] [--json OUT] [--logs DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from kembar.errors import KembarError
from kembar.lab import cluster, machine
from kembar.lab.lab import Lab, fresh_lab
from kembar.lab.names import PREFIXLEN
from kembar.lab.experiments.heartbeat import LogWatch, ha_cf
from kembar.lab.experiments.heartbeat import after_boot as _after_boot
from kembar.lab.experiments.heartbeat import install as hb_install_text
from kembar.lab.experiments.heartbeat import log_counts as hb_log_counts
from kembar.lab.experiments.heartbeat import start as hb_start
from kembar.lab.experiments.heartbeat import stop as hb_stop
from kembar.lab.experiments.heartbeat import haresources as _haresources
from kembar.lab.poll import ClientPoller, outages

LAB = "peers"
TIMINGS: dict[str, tuple[str, str, str]] = {
    "paper": ("2s", "5s", "15s"),          # the paper's ha.cf (initdead 30 s here)
    "fast": ("10ms", "30ms", "50ms"),      # Heartbeat's fastest stable setting (issue 6)
    "200ms": ("200ms", "500ms", "1s"),
}
ADVERTS = ("0.1", "1")
SCENARIOS = ("crash", "clean")
ORDERS = ("site-first", "vip-first")
SETTLE = 1.0  # seconds of polling after the target node answers (to catch a late outage)
KA_CONF = "/etc/keepalived/kembar-lab.conf"
# Figures quoted in issue 6 (measured earlier, VIP + web server), to check against.
ISSUE: dict[tuple[str, str, str], dict[str, float]] = {
    ("heartbeat", "paper", "crash"): {"failover": 15.1, "detection": 14.8, "failback": 0.60},
    ("heartbeat", "paper", "clean"): {"failover": 0.60, "failback": 0.60},
    ("heartbeat", "fast", "crash"): {"failover": 0.43, "failback": 0.35},
    ("heartbeat", "fast", "clean"): {"failover": 0.43, "failback": 0.35},
    ("heartbeat", "200ms", "crash"): {"failover": 1.36},
    ("keepalived", "0.1", "crash"): {"failover": 0.33, "failback": 0.0},
    ("keepalived", "0.1", "clean"): {"failover": 0.33, "failback": 0.0},
}


def seconds(text: str) -> float:
    """``"10ms"`` → 0.01, ``"2s"`` / ``"2"`` → 2.0."""
    t = text.strip()
    if t.endswith("ms"):
        return float(t[:-2]) / 1000
    return float(t[:-1] if t.endswith("s") else t)


def _label(timing: tuple[str, str, str]) -> str:
    for name, t in TIMINGS.items():
        if tuple(seconds(x) for x in t) == tuple(seconds(x) for x in timing):
            return name
    return "/".join(timing)


def _stats(xs: list[float]) -> dict[str, Any]:
    return {"values": [round(x, 3) for x in xs],
            "median": statistics.median(xs) if xs else None,
            "max": max(xs) if xs else None}


# ------------------------------------------------------------------ the client

class Poll(ClientPoller):
    """The client's poller (``kembar.lab.poll.ClientPoller``), and when a node served."""

    def served(self, node: str, since: float, timeout: float, what: str) -> float:
        """The time of the first good reply from ``node`` at or after ``since``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for r in self.records():
                if r["t"] >= since and r["ok"] and r["node"] == node:
                    return float(r["t"])
            if self.proc.poll() is not None:
                raise KembarError("the client's poller died")
            time.sleep(0.05)
        last = (self.records() or [{}])[-1]
        raise KembarError(f"timed out after {timeout:.0f} s waiting for {what} "
                          f"(last poll: {last})")


def _run_once(lab: Lab, poll_file: Path, fault: Callable[[], None],
              recover: Callable[[], None], takeover_timeout: float,
              back_timeout: float, watch: tuple[Path, dict[str, str]] | None = None
              ) -> dict[str, Any]:
    """One run: node1 serves; ``fault``; node2 serves; ``recover``; node1 serves again.
    ``watch``: a log of node2 and patterns whose first appearance after the fault is
    timed (seconds after the fault, in the run's ``steps``)."""
    poll = Poll(lab, poll_file)
    steps: dict[str, float] = {}
    try:
        poll.served("node1", 0, 30, "node1 to answer through the VIP before the run")
        time.sleep(0.5)
        lw = LogWatch(*watch) if watch else None
        t_fault = time.time()
        try:
            fault()
            fault_took = time.time() - t_fault
            t_take = poll.served("node2", t_fault, takeover_timeout, "node2 to take over")
        finally:
            if lw is not None:
                steps = {k: round(v - t_fault, 3) for k, v in lw.stop().items()}
        time.sleep(SETTLE)
        t_rec = time.time()
        recover()
        t_back = poll.served("node1", t_rec, back_timeout, "node1 to take the VIP back")
        time.sleep(SETTLE)
    finally:
        recs = poll.stop()
    before = outages([r for r in recs if r["t"] < t_rec])
    after = outages([r for r in recs if r["t"] >= t_take])
    fo = max(before, key=lambda o: o["seconds"], default=None)
    fb = max(after, key=lambda o: o["seconds"], default=None)
    return {"failover": fo["seconds"] if fo else 0.0,
            "failover_failed": sum(o["failed"] for o in before),
            "takeover": t_take - t_fault,
            "failback": fb["seconds"] if fb else 0.0,
            "failback_failed": sum(o["failed"] for o in after),
            "switchback": t_back - t_rec, "steps": steps, "fault_took": fault_took,
            "outages": [{k: (round(v, 3) if isinstance(v, float) else v)
                         for k, v in o.items()} for o in before + after]}


def _load_note() -> str:
    """The machine's load when a measurement starts (other labs may be running)."""
    one, five, _ = os.getloadavg()
    others = sorted({ns.split("-")[1] for ns in os.listdir(machine.NETNS_DIR)
                     if ns.startswith("kb-") and not ns.startswith(f"kb-{LAB}-")}) \
        if os.path.isdir(machine.NETNS_DIR) else []
    return (f"load average {one:.2f} / {five:.2f} (1 / 5 min) at the start"
            + (f"; other labs running: {', '.join(others)}" if others else ""))


def _fresh_lab() -> Lab:
    return fresh_lab(LAB, disk_size=16 * 2**20)


def _site(lab: Lab) -> None:
    """The web server of every node: the lab's LSB stand-in for apache2, data in the
    node's own /srv/data (no replicated disk: the VIP + web server group)."""
    cluster.install_lsb_stand_ins(lab)
    for n in lab.plan.node_names:
        cluster.sh(lab, n, "mkdir -p /srv/data")


def site_times(lab: Lab, node: str = "node2", rounds: int = 3) -> dict[str, float]:
    """How long the web server's LSB script takes to start (until /health answers on the
    node itself) and to stop, median of ``rounds``: the part of Heartbeat's outages that
    is the web server's, not Heartbeat's."""
    starts, stops = [], []
    for _ in range(rounds):
        t = time.monotonic()
        cluster.sh(lab, node, "/etc/init.d/apache2 start", timeout=60)
        starts.append(time.monotonic() - t)
        t = time.monotonic()
        cluster.sh(lab, node, "/etc/init.d/apache2 stop", timeout=60)
        stops.append(time.monotonic() - t)
    return {"start": statistics.median(starts), "stop": statistics.median(stops)}


def keep_logs(lab: Lab, dest: Path | None, tag: str) -> None:
    """Copy the nodes' logs (heartbeat, keepalived, web server) to ``dest``."""
    if dest is None:
        return
    dest.mkdir(parents=True, exist_ok=True)
    for n in lab.plan.node_names:
        for name in ("heartbeat.log", "heartbeat.out", "keepalived.log", "apache2.log"):
            src = lab.machine_dir(n) / "run" / name
            if src.exists():
                (dest / f"{tag}-{n}-{name}").write_bytes(src.read_bytes())


def _summary(out: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    out["runs"] = runs
    out["failover"] = _stats([r["failover"] for r in runs])
    out["failback"] = _stats([r["failback"] for r in runs])
    out["fault_took"] = _stats([r["fault_took"] for r in runs])
    out["detected"] = _stats([r["steps"]["detected"] for r in runs
                              if "detected" in r.get("steps", {})])
    return out


def _print_run(what: str, i: int, n: int, r: dict[str, Any]) -> None:
    print(f"  {what} run {i + 1}/{n}: failover {r['failover']:.3f} s "
          f"({r['failover_failed']} failed polls, node2 answered {r['takeover']:.3f} s after "
          f"the fault, which took {r['fault_took']:.3f} s); failback {r['failback']:.3f} s ({r['failback_failed']} failed polls, "
          f"node1 answered {r['switchback']:.3f} s after the restart)"
          + (f"; node2's log, s after the fault: "
             + ", ".join(f"{k} {v:.3f}" for k, v in r["steps"].items())
             if r.get("steps") else ""), flush=True)


# ------------------------------------------------------------------ Heartbeat
# (ha.cf, haresources, start/stop and the log watch are the package's:
# kembar.lab.experiments.heartbeat, which `kembar lab experiment failover --against
# heartbeat` runs)

def haresources(vip: str, order: str) -> str:
    return _haresources(vip, "vip", order)


def hb_install(lab: Lab, timing: tuple[str, str, str], order: str) -> None:
    hb_install_text(lab, timing, haresources(lab.plan.vip, order))



def measure_heartbeat(timing: tuple[str, str, str], runs: int, scenario: str,
                      order: str = "site-first", logs: Path | None = None) -> dict[str, Any]:
    """Heartbeat 3.0.6 (v1 haresources, group = web server + VIP) in a fresh lab: the
    client-visible failover and failback outage per run, median and max."""
    if scenario not in SCENARIOS or order not in ORDERS:
        raise KembarError(f"scenario {scenario!r} / order {order!r}: use "
                          f"{'|'.join(SCENARIOS)} / {'|'.join(ORDERS)}")
    if not os.path.exists("/usr/libexec/heartbeat/heartbeat"):
        raise KembarError("heartbeat is not installed (apt-get install heartbeat)")
    label = _label(timing)
    dead = seconds(timing[2])
    res: dict[str, Any] = {
        "system": "heartbeat", "version": "3.0.6", "scenario": scenario, "setting": label,
        "timing": {"keepalive": timing[0], "warntime": timing[1], "deadtime": timing[2],
                   "initdead": f"{max(2 * dead, 10.0):g}s"},
        "order": order, "issue": ISSUE.get(("heartbeat", label, scenario), {}),
        "notes": [_load_note()]}
    lab = _fresh_lab()
    try:
        _site(lab)
        res["site"] = site_times(lab)
        res["notes"].append(f"web server (LSB script) start {res['site']['start']:.2f} s, "
                            f"stop {res['site']['stop']:.2f} s (median of 3, on node2)")
        hb_install(lab, timing, order)
        res["haresources"] = haresources(lab.plan.vip, order).strip()
        t0 = time.time()
        for n in lab.plan.node_names:
            hb_start(lab, n)
        warm = Poll(lab, lab.dir / "poll-start.jsonl")
        try:
            ready = warm.served("node1", t0, 2 * dead + 120, "Heartbeat's first start")
        finally:
            warm.stop()
        res["notes"].append(f"cold start: node1 served through the VIP {ready - t0:.1f} s "
                            "after heartbeat was started on both nodes")

        def fault() -> None:
            if scenario == "crash":
                lab.crash("node1")
            else:
                hb_stop(lab, "node1")

        def recover() -> None:
            if scenario == "crash":
                lab.boot("node1")
                _after_boot(lab, "node1")
            hb_start(lab, "node1")

        watch = (lab.machine_dir("node2") / "run" / "heartbeat.log",
                 {"detected": "node node1: is dead" if scenario == "crash"
                  else "Received shutdown notice from 'node1'",
                  "acquiring": "Acquiring resource group: node1",
                  "ip_start": "IPaddr2 198.18.0.100/24/eth0 start",
                  "acquired": "mach_down takeover complete for node node1"})
        out = []
        for i in range(runs):
            r = _run_once(lab, lab.dir / "poll.jsonl", fault, recover, dead + 60, 180, watch)
            out.append(r)
            _print_run(f"heartbeat {label} {scenario}", i, runs, r)
        counts = hb_log_counts(lab)
        res["log_counts"] = counts
        res["notes"].append("log: " + "; ".join(
            f"{n} {c['late']} late heartbeats, {c['dead']} 'is dead' lines, "
            f"{c['shutdown_notices']} shutdown notices received, {c['errors']} ERROR/CRIT "
            f"lines" + (" (" + ", ".join(f"{k!r} x{v}" for k, v in c["error_kinds"].items())
                        + ")" if c["error_kinds"] else "")
            for n, c in counts.items()))
        return _summary(res, out)
    finally:
        try:
            keep_logs(lab, logs, f"heartbeat-{label.replace('/', '_')}-{scenario}")
        finally:
            lab.down()


# ------------------------------------------------------------------ keepalived

def keepalived_conf(node: str, advert_int: str, vip: str, me: str, peer: str) -> str:
    """keepalived.conf of one node (pure): one VRRP instance on eth0, unicast to the
    peer, node1 priority 150 and node2 100 (preempt, the default: failback)."""
    prio = 150 if node == "node1" else 100
    # VRRPv2 carries the advert interval in whole seconds; v3 in centiseconds
    version = 3 if seconds(advert_int) < 1 else 2
    return f"""# kembar lab: keepalived 2.2.7, VRRP only
global_defs {{
    router_id {node}
    vrrp_version {version}
}}
vrrp_instance kembar_lab {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {prio}
    advert_int {advert_int}
    unicast_src_ip {me}
    unicast_peer {{
        {peer}
    }}
    virtual_ipaddress {{
        {vip}/{PREFIXLEN} dev eth0
    }}
}}
"""


class Keepalived:
    """keepalived in the foreground (``-n``) on a node, started through nsenter; stopped by
    SIGTERM to its own PID (the host's view of it)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, node: str) -> None:
        argv = ["keepalived", "-n", "-l", "-D", "-G", "-P", "-f", KA_CONF,
                "-p", "/run/keepalived.pid", "-r", "/run/keepalived-vrrp.pid"]
        log = open(self.lab.machine_dir(node) / "run" / "keepalived.log", "ab")
        with log:
            self.procs[node] = subprocess.Popen(self.lab.exec_argv(node, argv),
                                                stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=log, start_new_session=True)
        deadline = time.monotonic() + 10
        while not machine.children(self.procs[node].pid):
            if self.procs[node].poll() is not None or time.monotonic() > deadline:
                raise KembarError(f"keepalived did not start on {node}: see "
                                  f"{self.lab.machine_dir(node) / 'run' / 'keepalived.log'}")
            time.sleep(0.01)

    def stop(self, node: str, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        p = self.procs.pop(node, None)
        if p is None:
            return
        if p.poll() is None:
            for pid in machine.children(p.pid):  # keepalived's parent process
                os.kill(pid, sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in machine.children(p.pid):
                    os.kill(pid, signal.SIGKILL)
                p.kill()
                p.wait(10)

    def crashed(self, node: str) -> None:
        """The node lost power: its keepalived is gone; reap the nsenter."""
        p = self.procs.pop(node, None)
        if p is not None:
            p.wait(10)

    def stop_all(self) -> None:
        for n in list(self.procs):
            self.stop(n)


def measure_keepalived(advert_int: str, runs: int, scenario: str,
                       logs: Path | None = None) -> dict[str, Any]:
    """keepalived 2.2.7 (VRRP moves the VIP; the web server runs on both nodes all the
    time) in a fresh lab: client-visible failover and failback per run, median, max."""
    if scenario not in SCENARIOS:
        raise KembarError(f"scenario {scenario!r}: use {'|'.join(SCENARIOS)}")
    adv = seconds(advert_int)
    res: dict[str, Any] = {
        "system": "keepalived", "version": "2.2.7", "scenario": scenario,
        "setting": f"{adv:g}", "advert_int": adv,
        "issue": ISSUE.get(("keepalived", f"{adv:g}", scenario), {}),
        "notes": [_load_note()]}
    lab = _fresh_lab()
    ka = Keepalived(lab)
    try:
        _site(lab)
        plan = lab.plan
        addr = {m.name: m.addresses["public"] for m in plan.machines if m.is_node}
        for n in plan.node_names:
            peer = [a for m, a in addr.items() if m != n][0]
            cluster.sh(lab, n, f"mkdir -p /etc/keepalived && cat > {KA_CONF}",
                       input=keepalived_conf(n, advert_int, plan.vip, addr[n], peer))
            cluster.sh(lab, n, "/etc/init.d/apache2 start", timeout=60)
        t0 = time.time()
        for n in plan.node_names:
            ka.start(n)
        warm = Poll(lab, lab.dir / "poll-start.jsonl")
        try:
            ready = warm.served("node1", t0, 60, "keepalived's first MASTER")
        finally:
            warm.stop()
        res["notes"].append(f"cold start: node1 served through the VIP {ready - t0:.1f} s "
                            "after keepalived was started on both nodes")
        res["notes"].append("VRRPv3 (sub-second advert_int)" if adv < 1 else "VRRPv2")

        def fault() -> None:
            if scenario == "crash":
                lab.crash("node1")
                ka.crashed("node1")
            else:
                ka.stop("node1")

        def recover() -> None:
            if scenario == "crash":
                lab.boot("node1")
                _after_boot(lab, "node1")
                cluster.sh(lab, "node1", "/etc/init.d/apache2 start", timeout=60)
            ka.start("node1")

        watch = (lab.machine_dir("node2") / "run" / "keepalived.log",
                 {"detected": "Entering MASTER STATE"})
        out = []
        for i in range(runs):
            r = _run_once(lab, lab.dir / "poll.jsonl", fault, recover, 60, 120, watch)
            out.append(r)
            _print_run(f"keepalived advert_int {adv:g} {scenario}", i, runs, r)
        return _summary(res, out)
    finally:
        try:
            ka.stop_all()
            keep_logs(lab, logs, f"keepalived-{adv:g}-{scenario}")
        finally:
            lab.down()


# ------------------------------------------------------------------ report

def report(results: list[dict[str, Any]] | dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    rs = [results] if isinstance(results, dict) else list(results)
    t = Table(title="Heartbeat 3.0.6 and keepalived 2.2.7 in the lab (VIP + web server): "
                    "client-visible outage through the VIP, polled every 50 ms, seconds")
    for col in ("system", "setting", "scenario", "runs", "failover per run",
                "failover median / max", "detected median / max", "failback per run",
                "failback median / max", "issue 6 quoted"):
        t.add_column(col, justify="right")

    def mm(s: dict[str, Any]) -> str:
        return "-" if s["median"] is None else f"{s['median']:.3f} / {s['max']:.3f}"

    for r in rs:
        setting = r["setting"]
        if r["system"] == "heartbeat":
            tm = r["timing"]
            setting = f"{setting} ({tm['keepalive']}/{tm['warntime']}/{tm['deadtime']})"
        else:
            setting = f"advert_int {setting}"
        issue = ", ".join(f"{k} {v:g}" for k, v in r.get("issue", {}).items()) or "-"
        t.add_row(r["system"], setting, r["scenario"], str(len(r["runs"])),
                  " ".join(f"{x:.2f}" for x in r["failover"]["values"]), mm(r["failover"]),
                  mm(r["detected"]) if r.get("detected") else "-",
                  " ".join(f"{x:.2f}" for x in r["failback"]["values"]), mm(r["failback"]),
                  issue)
    Console(width=190).print(t)
    print("failover: last good reply before the fault -> first good reply after it (node2); "
          "detected: node2's log shows it saw the fault (Heartbeat: 'node1: is dead' / "
          "'shutdown notice'; keepalived: 'Entering MASTER STATE'), s after the fault; "
          "failback: the same outage when node1 takes the VIP back (0 = no failed poll)")
    for r in rs:
        extra = f", haresources: {r['haresources']}" if r.get("haresources") else ""
        print(f"{r['system']} {r['setting']} {r['scenario']}{extra}: "
              + "; ".join(r.get("notes", [])))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/peers.py", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--only", choices=("heartbeat", "keepalived"))
    ap.add_argument("--timings", default=",".join(TIMINGS),
                    help=f"Heartbeat timings from {','.join(TIMINGS)} or KA/WARN/DEAD")
    ap.add_argument("--adverts", default=",".join(ADVERTS), help="keepalived advert_int")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--order", choices=ORDERS, default="site-first",
                    help="Heartbeat's group order (default: web server, then VIP)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--logs", type=Path, help="copy the nodes' logs into this directory")
    args = ap.parse_args(argv)
    scenarios = [s for s in args.scenarios.split(",") if s]
    if args.runs < 1 or set(scenarios) - set(SCENARIOS):
        ap.error(f"--runs >= 1, --scenarios from {','.join(SCENARIOS)}")
    timings: list[tuple[str, str, str]] = []
    for name in (x for x in args.timings.split(",") if x):
        if name in TIMINGS:
            timings.append(TIMINGS[name])
        elif name.count("/") == 2:
            a, b, c = name.split("/")
            timings.append((a, b, c))
        else:
            ap.error(f"--timings: {name!r}: use {','.join(TIMINGS)} or KA/WARN/DEAD")
    results: list[dict[str, Any]] = []
    try:
        if args.only in (None, "heartbeat"):
            for tm in timings:
                for sc in scenarios:
                    results.append(measure_heartbeat(tm, args.runs, sc, args.order,
                                                     args.logs))
        if args.only in (None, "keepalived"):
            for adv in (x for x in args.adverts.split(",") if x):
                for sc in scenarios:
                    results.append(measure_keepalived(adv, args.runs, sc, args.logs))
    finally:
        if results:
            report(results)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
