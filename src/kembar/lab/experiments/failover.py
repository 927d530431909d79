"""The paper's failover and failback experiment in the lab: what a client sees.

A fresh lab runs the cluster daemons with a resource group preferring node1
(``auto_failback`` on); a client polls the VIP over HTTP every 50 ms
(``kembar.lab.poll``).  One run: node1 loses power (``lab crash``); the failover's outage is
the client's last good reply before → first good reply after (node2 serving); node1 boots,
resyncs and takes the group back: the failback's outage is measured the same way.  Each
outage comes with its steps, from the daemons' own timelines, in seconds after the fault
(the power cut; the boot): declared dead, fenced, each resource started or stopped, and
the client served again.

Groups: "full" (disk r0, ext4 on /srv/data, the demo site, the VIP, a probe), "vip" (the
site on each node's own disk + the VIP) and "clone" (the same, the site running on both
nodes).  Timings: "paper" (keepalive 2 s, deadtime 15 s: the paper's ha.cf), "fast"
(10 ms / 50 ms) or KEEPALIVE/DEADTIME (e.g. 100ms/500ms).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from kembar.config.units import to_seconds
from kembar.demo import get
from kembar.errors import KembarError
from kembar.lab import cluster
from kembar.lab.experiments import heartbeat
from kembar.lab.lab import Lab, fresh_lab
from kembar.lab.poll import ClientPoller, outages

TIMINGS = {"paper": ("2s", "15s"), "fast": ("10ms", "50ms")}
GROUPS = ("vip", "clone", "full")
Progress = Callable[[str], None]


def parse_timings(text: str) -> tuple[str, str]:
    """"paper", "fast" or KEEPALIVE/DEADTIME → (keepalive, deadtime) as the config takes
    them; KembarError when the text is none of these or deadtime ≤ keepalive."""
    if text in TIMINGS:
        return TIMINGS[text]
    parts = text.split("/")
    try:
        if len(parts) != 2:
            raise ValueError("two parts")
        ka, dt = to_seconds(parts[0]), to_seconds(parts[1])
    except ValueError:
        raise KembarError(f"--timings {text!r}: paper, fast or KEEPALIVE/DEADTIME "
                          "(e.g. 100ms/500ms)") from None
    if not 0 < ka < dt <= 600:
        raise KembarError(f"--timings {text!r}: 0 < keepalive < deadtime ≤ 600 s")
    return parts[0], parts[1]


class Poll(ClientPoller):
    """The client's poller, into a file of its own per outage."""

    _n = 0

    def __init__(self, lab: Lab, work: Path) -> None:
        Poll._n += 1
        super().__init__(lab, work / f"kembar-poll-{lab.name}-{Poll._n}.jsonl")

    def stop(self) -> list[dict[str, Any]]:
        time.sleep(0.3)  # a few good polls after the first one
        try:
            return super().stop()
        finally:
            self.out.unlink(missing_ok=True)


def gap(recs: list[dict[str, Any]]) -> tuple[float, float | None]:
    """(the longest client-visible outage, when it ended) — (0, None) if none failed."""
    gaps = outages(recs)
    if not gaps:
        return 0.0, None
    g = max(gaps, key=lambda x: x["seconds"])
    return float(g["seconds"]), float(g["end"])


def serving_vip(lab: Lab, node: str, timeout: float) -> None:
    """Until ``node`` answers through the VIP."""
    cluster.wait(lambda: get(lab, "/health")[1] == node, timeout, f"{node} on the VIP")


def serving(lab: Lab, node: str, timeout: float) -> None:
    cluster.wait(lambda: cluster.runs_on(lab) == [node], timeout, f"the group on {node}")
    serving_vip(lab, node, max(30.0, timeout))


def last_event(lab: Lab, node: str, kind: str) -> dict[str, Any] | None:
    ev = [e for e in cluster.daemon_status(lab, node)["events"] if e["event"] == kind]
    return ev[-1] if ev else None


def setup(lab_name: str, keepalive: str, deadtime: str, group: str, vmac: bool = False
          ) -> Lab:
    """A fresh lab running ``group`` on node1 at these timings (``vmac``: the VIP with a
    virtual MAC)."""
    if group not in GROUPS:
        raise KembarError(f"group {group!r}: one of {', '.join(GROUPS)}")
    lab = fresh_lab(lab_name, disk_size=64 * 2**20)
    try:
        mt = cluster.membership_toml(lab.plan, "bcast", keepalive=keepalive,
                                     deadtime=deadtime,
                                     initdead=max(deadtime, "3s", key=to_seconds))
        full = group == "full"
        gt = cluster.group_toml(lab.plan, disk=full, probe=full, monitor="2s",
                                clone=group == "clone", vmac=vmac)
        cluster.install(lab, membership=mt, groups=gt, disk=full)
        if full:
            cluster.prepare_site(lab)
        else:
            cluster.prepare_local_site(lab)
        for n in lab.plan.node_names:
            cluster.start_daemon(lab, n)
        serving(lab, "node1", 120)
    except BaseException:
        lab.down()
        raise
    return lab


def _steps(events: list[dict[str, Any] | None], t0: float, served: float | None
           ) -> list[dict[str, Any]]:
    out = []
    for ev in events:
        for s in (ev or {}).get("timeline", []):
            if s["time"] >= t0 - 1:
                out.append({"step": s["step"], "at": round(s["time"] - t0, 3)})
    if served is not None:
        out.append({"step": "the client is served again", "at": round(served - t0, 3)})
    return sorted(out, key=lambda s: s["at"])


def crash_and_failback(lab: Lab, work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """One run: node1's power cut → node2 serves; node1 boots → node1 serves again."""
    poll = Poll(lab, work)
    time.sleep(0.5)
    t_crash = time.time()
    lab.crash("node1")
    serving(lab, "node2", 120)
    outage, end = gap(poll.stop())
    dead = last_event(lab, "node2", "NodeDead")
    events = [last_event(lab, "node2", "GroupStarted")]
    failover = {"outage": round(outage, 3),
                "steps": ([{"step": "node1 declared dead by node2",
                            "at": round(dead["time"] - t_crash, 3)}] if dead else []) +
                [s for s in _steps(events, t_crash, end) if "declared dead" not in s["step"]]}
    poll = Poll(lab, work)
    t_boot = time.time()
    lab.boot("node1")
    serving(lab, "node1", 300)
    outage, end = gap(poll.stop())
    events = [last_event(lab, "node2", "GroupStopped"), last_event(lab, "node1", "GroupStarted")]
    failback = {"outage": round(outage, 3), "steps": _steps(events, t_boot, end)}
    return failover, failback


AGAINST = ("heartbeat",)


def check_against(against: str | None, group: str) -> None:
    """KembarError when the original cannot run this group (pure)."""
    if against is None:
        return
    if against not in AGAINST:
        raise KembarError(f"--against {against!r}: {', '.join(AGAINST)}")
    if group not in heartbeat.GROUPS:
        raise KembarError(f"--against heartbeat: Heartbeat runs the groups "
                          f"{' and '.join(heartbeat.GROUPS)}, not {group!r} (v1 Heartbeat "
                          "has no clones)")


def run_failover(runs: int, timings: str = "paper", group: str = "full",
                 lab_name: str = "exp", work: Path = Path("/var/tmp"),
                 progress: Progress = lambda _: None, against: str | None = None
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``runs`` crashes and failbacks: the results' "failover" and "failback" parts; with
    ``against="heartbeat"``, then as many of Heartbeat 3.0.6 running the same group at the
    same timings in a fresh lab of the same name (system "heartbeat" beside "kembar")."""
    keepalive, deadtime = parse_timings(timings)
    if runs < 1:
        raise KembarError("runs: at least 1")
    check_against(against, group)
    if against:
        heartbeat.require()
    head = {"timing": timings, "keepalive": to_seconds(keepalive),
            "deadtime": to_seconds(deadtime), "group": group}
    fo: dict[str, Any] = {**head, "systems": {"kembar": []}}
    fb: dict[str, Any] = {**head, "systems": {"kembar": []}}
    progress(f"lab {lab_name}: up, the {group} group on node1")
    lab = setup(lab_name, keepalive, deadtime, group)
    try:
        for i in range(runs):
            progress(f"crash and failback, run {i + 1}/{runs}")
            a, b = crash_and_failback(lab, work)
            fo["systems"]["kembar"].append(a)
            fb["systems"]["kembar"].append(b)
    finally:
        lab.down()
    if against == "heartbeat":
        hfo, hfb, notes = heartbeat.run(runs, keepalive, deadtime, group, lab_name, work,
                                        progress)
        fo["systems"]["heartbeat"], fb["systems"]["heartbeat"] = hfo, hfb
        fo["notes"] = fb["notes"] = notes
    return fo, fb
