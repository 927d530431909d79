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

from kembar.config.units import to_seconds as seconds
from kembar.errors import KembarError
from kembar.lab import cluster
from kembar.lab.experiments.failover import GROUPS, TIMINGS, Poll, gap, last_event, \
    serving, setup

LAB = "benchfo"


def _gap(recs: list[dict[str, Any]]) -> float:
    return gap(recs)[0]


def measure(timing: str, group: str, runs: int, work: Path) -> dict[str, Any]:
    keepalive, deadtime = TIMINGS[timing]
    res: dict[str, Any] = {"timing": timing, "keepalive": seconds(keepalive),
                           "deadtime": seconds(deadtime), "group": group, "runs": runs,
                           "crash": [], "crash_failback": [], "clean": [],
                           "clean_failback": [], "detection": [], "start": []}
    lab = setup(LAB, keepalive, deadtime, group)
    try:
        for i in range(runs):
            # crash
            poll = Poll(lab, work)
            time.sleep(0.5)
            t0 = time.time()
            lab.crash("node1")
            serving(lab, "node2", 120)
            res["crash"].append(_gap(poll.stop()))
            dead = last_event(lab, "node2", "NodeDead")
            started = last_event(lab, "node2", "GroupStarted")
            if dead is not None:
                res["detection"].append(dead["time"] - t0)
            if started is not None:
                res["start"].append(started["took"])
            poll = Poll(lab, work)
            lab.boot("node1")
            serving(lab, "node1", 300)
            res["crash_failback"].append(_gap(poll.stop()))
            # clean stop
            poll = Poll(lab, work)
            time.sleep(0.5)
            pid = cluster.daemon_status(lab, "node1")["pid"]
            cluster.sh(lab, "node1", f"kill -TERM {pid}")
            serving(lab, "node2", 120)
            res["clean"].append(_gap(poll.stop()))
            poll = Poll(lab, work)
            cluster.start_daemon(lab, "node1")
            serving(lab, "node1", 300)
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
    res: dict[str, Any] = {"vmac": vmac, "runs": runs, "crash": [], "crash_failback": []}
    lab = setup(LAB, *TIMINGS["fast"], "clone", vmac=vmac)
    try:
        cluster.client_ignores_garp(lab)
        for i in range(runs):
            poll = Poll(lab, work)
            time.sleep(0.5)
            lab.crash("node1")
            serving(lab, "node2", 180)
            res["crash"].append(_gap(poll.stop()))
            poll = Poll(lab, work)
            lab.boot("node1")
            serving(lab, "node1", 180)
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
    """Every measurement; one that fails is reported (its error kept in the results) and
    the others go on, so that an hour of figures is not lost to the last one."""
    out: dict[str, Any] = {"groups": [], "garp": [], "errors": []}

    def attempt(what: str, f: Any, *args: Any) -> dict[str, Any] | None:
        try:
            return dict(f(*args))
        except KembarError as exc:
            print(f"  {what} FAILED: {exc}", flush=True)
            out["errors"].append(f"{what}: {exc}")
            return None

    for timing in timings or list(TIMINGS):
        for group in groups or list(GROUPS):
            r = attempt(f"{timing} {group}", measure, timing, group, runs, base)
            if r is not None:
                out["groups"].append(r)
    if garp_runs > 0:
        for vmac in (False, True):
            r = attempt(f"gratuitous ARP ignored, vmac {vmac}", measure_garp, vmac, garp_runs,
                        base)
            if r is not None:
                out["garp"].append(r)
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
    for e in res.get("errors", []):
        print(f"FAILED: {e}")
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
