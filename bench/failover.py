"""Failover benchmark (section "failover" of bench/run.py): what the client sees.

In a fresh lab per (timing, group), the cluster daemons run a resource group preferring
node1 (``auto_failback`` on) and a client polls the VIP over HTTP every 50 ms
(``kembar.lab.poll``, 0.2 s timeout per request, a fresh connection each).  Each run:

* crash: node1 loses power (``lab crash``); the outage is the client's last good reply
  before → first good reply after (node2 serving); then node1 boots, resyncs, and takes
  the group back: the failback gap is measured the same way;
* clean: node1's daemon gets SIGTERM (it stops its group in order and sends its shutdown
  notice); outage until node2 serves; the daemon is started again → failback gap.

Groups: "full" (disk r0 + ext4 on /srv/data + the demo site + VIP + probe), "vip"
(the demo site on local data + VIP: the site starts on the node that takes over) and
"clone" (the same with the site a clone, running on both nodes: only the VIP moves, as
keepalived's usual setup).  Timings: "paper" (keepalive 2 s, deadtime 15 s, as
the paper's ha.cf) and "fast" (10 ms / 50 ms).  Each figure is reported with the
detection time (the daemon's own "node dead" event, for crashes) and the group's start
time on the survivor, so the outage can be read as detection + start + the client's
next poll.  Aims (issue 6): crash failover within deadtime + 0.5 s at the paper's timings;
clean-stop failover and failback gap under 0.5 s; at fast timings under 0.35 s for the
VIP group and under 1 s for the full group.

Then a client that ignores gratuitous ARP (``measure_garp``: fast timings, the clone
group; the lab's client drops the announcements): without a virtual MAC it keeps sending
to the old owner's MAC until its ARP entry goes stale; with ``vmac = "auto"`` on the VIP
the MAC moves with it.  Crash and failback, ``--failover-garp-runs`` each.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from kembar.demo import get
from kembar.lab import cluster
from kembar.lab.lab import Lab
from kembar.lab.poll import ClientPoller, outages

LAB = "benchfo"
TIMINGS = {"paper": ("2s", "15s"), "fast": ("10ms", "50ms")}
GROUPS = ("vip", "clone", "full")


def seconds(text: str) -> float:
    from kembar.config.units import to_seconds
    return to_seconds(text)


class Poll(ClientPoller):
    _n = 0

    def __init__(self, lab: Lab, work: Path) -> None:
        Poll._n += 1  # a file of its own per poll
        super().__init__(lab, work / f"poll-{Poll._n}.jsonl")

    def stop(self) -> list[dict[str, Any]]:
        time.sleep(0.3)  # a few good polls after the first one
        return super().stop()


def _gap(recs: list[dict[str, Any]]) -> float:
    """The client-visible outage of one event: the longest gap (0 if none failed)."""
    gaps = outages(recs)
    return max((g["seconds"] for g in gaps), default=0.0)


def _serving(lab: Lab, node: str, timeout: float) -> None:
    cluster.wait(lambda: cluster.runs_on(lab) == [node], timeout, f"the group on {node}")
    cluster.wait(lambda: get(lab, "/health")[1] == node, 30, f"{node} on the VIP")


def _last(lab: Lab, node: str, kind: str) -> dict[str, Any] | None:
    ev = [e for e in cluster.daemon_status(lab, node)["events"] if e["event"] == kind]
    return ev[-1] if ev else None


def _setup(timing: str, group: str) -> Lab:
    keepalive, deadtime = TIMINGS[timing]
    lab = Lab(LAB)
    if lab.exists():
        lab.down()
    lab.up(disk_size=64 * 2**20)
    mt = cluster.membership_toml(lab.plan, "bcast", keepalive=keepalive, deadtime=deadtime,
                                 initdead=max(deadtime, "3s", key=seconds))
    full = group == "full"
    gt = cluster.group_toml(lab.plan, disk=full, probe=full, monitor="2s",
                            clone=group == "clone")
    cluster.install(lab, membership=mt, groups=gt, disk=full)
    if full:
        cluster.prepare_site(lab)
    else:
        cluster.prepare_local_site(lab)
    for n in lab.plan.node_names:
        cluster.start_daemon(lab, n)
    _serving(lab, "node1", 120)
    return lab


def measure(timing: str, group: str, runs: int, work: Path) -> dict[str, Any]:
    keepalive, deadtime = TIMINGS[timing]
    res: dict[str, Any] = {"timing": timing, "keepalive": seconds(keepalive),
                           "deadtime": seconds(deadtime), "group": group, "runs": runs,
                           "crash": [], "crash_failback": [], "clean": [],
                           "clean_failback": [], "detection": [], "start": []}
    lab = _setup(timing, group)
    try:
        for i in range(runs):
            # crash
            poll = Poll(lab, work)
            time.sleep(0.5)
            t0 = time.time()
            lab.crash("node1")
            _serving(lab, "node2", 120)
            res["crash"].append(_gap(poll.stop()))
            dead, started = _last(lab, "node2", "NodeDead"), _last(lab, "node2", "GroupStarted")
            if dead is not None:
                res["detection"].append(dead["time"] - t0)
            if started is not None:
                res["start"].append(started["took"])
            poll = Poll(lab, work)
            lab.boot("node1")
            _serving(lab, "node1", 300)
            res["crash_failback"].append(_gap(poll.stop()))
            # clean stop
            poll = Poll(lab, work)
            time.sleep(0.5)
            pid = cluster.daemon_status(lab, "node1")["pid"]
            cluster.sh(lab, "node1", f"kill -TERM {pid}")
            _serving(lab, "node2", 120)
            res["clean"].append(_gap(poll.stop()))
            poll = Poll(lab, work)
            cluster.start_daemon(lab, "node1")
            _serving(lab, "node1", 300)
            res["clean_failback"].append(_gap(poll.stop()))
            print(f"  {timing} {group} run {i + 1}/{runs}: crash {res['crash'][-1]:.3f} s, "
                  f"failback {res['crash_failback'][-1]:.3f} s; clean stop "
                  f"{res['clean'][-1]:.3f} s, failback {res['clean_failback'][-1]:.3f} s",
                  flush=True)
    finally:
        lab.down()
    for key in ("crash", "crash_failback", "clean", "clean_failback", "detection", "start"):
        xs = res[key]
        res[f"{key}_median"] = statistics.median(xs) if xs else None
        res[f"{key}_max"] = max(xs) if xs else None
    return res


def measure_garp(vmac: bool, runs: int, work: Path) -> dict[str, Any]:
    """Crash + failback outages for a client that ignores gratuitous ARP."""
    keepalive, deadtime = TIMINGS["fast"]
    res: dict[str, Any] = {"vmac": vmac, "runs": runs, "crash": [], "crash_failback": []}
    lab = Lab(LAB)
    if lab.exists():
        lab.down()
    lab.up(disk_size=16 * 2**20)
    try:
        mt = cluster.membership_toml(lab.plan, "bcast", keepalive=keepalive,
                                     deadtime=deadtime, initdead="3s")
        gt = cluster.group_toml(lab.plan, disk=False, probe=False, monitor="2s", clone=True,
                                vmac=vmac)
        cluster.install(lab, membership=mt, groups=gt, disk=False)
        cluster.prepare_local_site(lab)
        cluster.client_ignores_garp(lab)
        for n in lab.plan.node_names:
            cluster.start_daemon(lab, n)
        _serving(lab, "node1", 120)
        for i in range(runs):
            poll = Poll(lab, work)
            time.sleep(0.5)
            lab.crash("node1")
            _serving(lab, "node2", 180)
            res["crash"].append(_gap(poll.stop()))
            poll = Poll(lab, work)
            lab.boot("node1")
            _serving(lab, "node1", 180)
            res["crash_failback"].append(_gap(poll.stop()))
            print(f"  client ignoring gratuitous ARP, vmac {'on' if vmac else 'off'}, run "
                  f"{i + 1}/{runs}: crash {res['crash'][-1]:.3f} s, failback "
                  f"{res['crash_failback'][-1]:.3f} s", flush=True)
    finally:
        lab.down()
    for key in ("crash", "crash_failback"):
        res[f"{key}_median"] = statistics.median(res[key])
        res[f"{key}_max"] = max(res[key])
    return res


def bench_failover(base: Path, runs: int, timings: list[str] | None = None,
                   groups: list[str] | None = None, garp_runs: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"groups": [], "garp": []}
    for timing in timings or list(TIMINGS):
        for group in groups or list(GROUPS):
            out["groups"].append(measure(timing, group, runs, base))
    if garp_runs > 0:
        for vmac in (False, True):
            out["garp"].append(measure_garp(vmac, garp_runs, base))
    return out


def aims(r: dict[str, Any]) -> dict[str, float]:
    if r["timing"] == "paper":
        return {"crash": r["deadtime"] + 0.5, "clean": 0.5, "failback": 0.5}
    bound = 1.0 if r["group"] == "full" else 0.35
    return {"crash": bound, "clean": bound, "failback": bound}


def report(res: dict[str, Any]) -> None:
    results = res["groups"]
    from rich.console import Console
    from rich.table import Table
    t = Table(title="failover: client-visible outage through the VIP (polled every 50 ms), "
                    "median / max over the runs, seconds")
    for col in ("timing", "group", "runs", "crash", "aim", "detect", "start",
                "failback after crash", "clean stop", "failback after restart", "aim"):
        t.add_column(col, justify="right")

    def mm(r: dict[str, Any], key: str) -> str:
        if r[f"{key}_median"] is None:
            return "-"
        return f"{r[f'{key}_median']:.3f} / {r[f'{key}_max']:.3f}"

    for r in results:
        a = aims(r)
        t.add_row(f"{r['timing']} ({r['keepalive']:g}/{r['deadtime']:g})", r["group"],
                  str(r["runs"]), mm(r, "crash"), f"{a['crash']:g}", mm(r, "detection"),
                  mm(r, "start"), mm(r, "crash_failback"), mm(r, "clean"),
                  mm(r, "clean_failback"), f"{a['clean']:g}")
    Console(width=160).print(t)
    for g in res.get("garp", []):
        print(f"client ignoring gratuitous ARP (fast timings, clone group), vmac "
              f"{'on ' if g['vmac'] else 'off'}: crash {g['crash_median']:.3f} / "
              f"{g['crash_max']:.3f} s, failback {g['crash_failback_median']:.3f} / "
              f"{g['crash_failback_max']:.3f} s (median / max of {g['runs']}; Heartbeat's "
              "IPaddr2 has no virtual MAC: about 52 s)")
    print("Heartbeat 3.0.6 / keepalived 2.2.7 measured for the issue (VIP + web server): "
          "paper timings crash 15.1 s, clean stop 0.60 s, failback gap 0.60 s; Heartbeat "
          "10ms/30ms/50ms failover 0.43 s, failback 0.35 s; keepalived advert_int 0.1 "
          "0.33 s")
