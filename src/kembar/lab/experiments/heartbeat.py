"""The original, in the same lab: Debian's Heartbeat 3.0.6 running the same group.

Heartbeat (the ``heartbeat`` package, installed on the host: a node's ``/etc`` is an
overlay of the host's, so it sees the programs and keeps what it writes there to itself)
runs in v1 mode (``haresources``, ``crm no``) on the lab's nodes with the ha.cf timings
kembar was measured with, and the same web server: the lab's demo site behind an LSB
script (``/etc/init.d/apache2``, ``kembar.lab.cluster``'s stand-in).  Groups:

* "vip": ``node1 apache2 IPaddr2::VIP/24/eth0`` — the site's data in each node's own
  ``/srv/data``;
* "full": ``node1 kembardisk::r0 Filesystem::/dev/kembar/r0::/srv/data::ext4 apache2
  IPaddr2::VIP/24/eth0`` — ``kembardisk`` is a resource.d script written here that does for
  a kembar disk what DRBD's ``drbddisk`` does (promote, retried; demote; status).

Lab specifics: the lab's addresses carry their broadcast address only when added with
``brd +`` (Heartbeat's ``bcast`` sends to it), so eth0's address is re-added that way before
Heartbeat starts; Heartbeat needs ``uname -n`` to be the node's name (the lab sets it) and
its own ``/run`` and ``/var/lib/heartbeat`` (each node has them); it cannot mlock() itself
here and logs so.  Its log has 1 s timestamps, so its steps are timed by watching the log
from the host (``LogWatch``), and its outages from the client's side as kembar's.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from kembar.config.units import to_seconds
from kembar.errors import KembarError
from kembar.lab import cluster
from kembar.lab.lab import Lab, fresh_lab
from kembar.lab.names import PREFIXLEN

BINARY = "/usr/libexec/heartbeat/heartbeat"
VERSION = "3.0.6"
LOG = "/run/kembar/heartbeat.log"  # /run/kembar of a node is readable from the host
SITE_PID = "/run/kembar/apache2.pid"  # the LSB stand-in's; /run/kembar survives a crash
PAPER_WARNTIME = {("2s", "15s"): "5s"}  # the paper's ha.cf: keepalive 2, warntime 5, deadtime 15
GROUPS = ("vip", "full")

KEMBARDISK = """#!/bin/sh
# kembar lab: Heartbeat's drbddisk for a kembar disk.  kembardisk DISK start|stop|status
[ $# -eq 2 ] || { echo "usage: $0 DISK start|stop|status" >&2; exit 2; }
DISK=$1
case "$2" in
  start)
    for i in $(seq 20); do
      %(kembar)s disk primary "$DISK" && exit 0
      sleep 1
    done
    exit 1 ;;
  stop)
    exec %(kembar)s disk secondary "$DISK" ;;
  status)
    role=$(%(kembar)s disk status --json "$DISK" 2>/dev/null |
           %(python)s -c 'import json, sys; print(json.load(sys.stdin)["role"])' 2>/dev/null)
    if [ "$role" = Primary ]; then echo running; else echo stopped; fi
    exit 0 ;;
  *) echo "usage: $0 DISK start|stop|status" >&2; exit 2 ;;
esac
"""


def installed() -> bool:
    return os.path.exists(BINARY)


def require() -> None:
    if not installed():
        raise KembarError("Heartbeat is not installed: apt-get install heartbeat "
                          "(`make bench` installs it without starting its service)")


def timing(keepalive: str, deadtime: str) -> tuple[str, str, str]:
    """(keepalive, warntime, deadtime) for ha.cf: the paper's warntime for its timings,
    else 60 % of deadtime and at least two keepalives (pure)."""
    if (keepalive, deadtime) in PAPER_WARNTIME:
        return keepalive, PAPER_WARNTIME[(keepalive, deadtime)], deadtime
    ka, dead = to_seconds(keepalive), to_seconds(deadtime)
    warn = min(max(2 * ka, 0.6 * dead), dead)
    return keepalive, f"{round(warn * 1000)}ms", deadtime


def initdead(dead: float) -> float:
    return max(2 * dead, 10.0)


def ha_cf(tm: tuple[str, str, str]) -> str:
    """The ha.cf of both nodes (pure): v1 haresources mode, broadcast on eth0."""
    ka, warn, dead = (to_seconds(x) for x in tm)

    def ms(x: float) -> str:
        return f"{round(x * 1000)}ms"

    return "\n".join([
        "# kembar lab: Heartbeat 3.0.6 in v1 (haresources) mode",
        f"logfile {LOG}", "logfacility none", "use_logd off",
        f"keepalive {ms(ka)}", f"warntime {ms(warn)}", f"deadtime {ms(dead)}",
        f"initdead {ms(initdead(dead))}", "udpport 694", "bcast eth0", "auto_failback on",
        "node node1", "node node2", "crm no", ""])


def haresources(vip: str, group: str = "vip", order: str = "site-first") -> str:
    """node1's group (pure): "vip" (the web server and the VIP, in ``order``) or "full"
    (the disk, its filesystem, the web server, the VIP)."""
    ip = f"IPaddr2::{vip}/{PREFIXLEN}/eth0"
    if group == "full":
        res = [f"kembardisk::{cluster.DISK}",
               f"Filesystem::/dev/kembar/{cluster.DISK}::{cluster.MOUNT}::ext4", "apache2", ip]
    elif group == "vip":
        res = ["apache2", ip] if order == "site-first" else [ip, "apache2"]
    else:
        raise KembarError(f"Heartbeat runs the groups {' and '.join(GROUPS)}, not {group!r} "
                          "(v1 Heartbeat has no clones)")
    return "node1 " + " ".join(res) + "\n"


def install(lab: Lab, tm: tuple[str, str, str], resources: str) -> None:
    """ha.cf, haresources, authkeys and the kembardisk script on every node."""
    authkeys = f"auth 1\n1 sha1 {secrets.token_hex(20)}\n"
    script = KEMBARDISK % {"kembar": os.path.join(os.path.dirname(sys.executable), "kembar"),
                           "python": sys.executable}
    for n in lab.plan.node_names:
        cluster.sh(lab, n, "cat > /etc/ha.d/ha.cf", input=ha_cf(tm))
        cluster.sh(lab, n, "cat > /etc/ha.d/haresources", input=resources)
        cluster.sh(lab, n, "umask 077; cat > /etc/ha.d/authkeys && chmod 600 "
                           "/etc/ha.d/authkeys", input=authkeys)
        cluster.sh(lab, n, "cat > /etc/ha.d/resource.d/kembardisk && "
                           "chmod 755 /etc/ha.d/resource.d/kembardisk", input=script)


def start(lab: Lab, node: str) -> None:
    """``/etc/init.d/heartbeat start`` on the node (it daemonizes).  First eth0 gets its
    broadcast address (the lab's addresses have none, and Heartbeat's ``bcast`` sends to
    the interface's broadcast address: without one its heartbeats never leave the node),
    as a real server's network configuration would give it (``brd +``; ``ip addr
    replace`` does not change it, so the address is added again)."""
    addr = f"{lab.plan.node(node).addresses['public']}/{PREFIXLEN}"
    cluster.sh(lab, node, f"ip -4 addr show dev eth0 | grep -q ' brd ' || "
                          f"{{ ip addr del {addr} dev eth0 && "
                          f"ip addr add {addr} brd + dev eth0; }}; "
                          "mkdir -p /run/lock/subsys; /etc/init.d/heartbeat start "
                          ">>/run/kembar/heartbeat.out 2>&1 </dev/null", timeout=60)


def stop(lab: Lab, node: str) -> None:
    cluster.sh(lab, node, "/etc/init.d/heartbeat stop >>/run/kembar/heartbeat.out 2>&1 "
                          "</dev/null", timeout=120)


def after_boot(lab: Lab, node: str) -> None:
    """What a real boot would have cleared: the lab keeps /run/kembar across a power cut
    (it is the machine's directory on the host), and a stale site PID file there could
    name a live process of the new boot (PIDs start again at 1)."""
    cluster.sh(lab, node, f"rm -f {SITE_PID}")


def log_counts(lab: Lab) -> dict[str, dict[str, Any]]:
    """Late heartbeats, deaths and errors each node logged (the logs have 1 s timestamps,
    so they count, they do not time); the distinct error messages."""
    out: dict[str, dict[str, Any]] = {}
    for n in lab.plan.node_names:
        try:
            text = (lab.machine_dir(n) / "run" / "heartbeat.log").read_text(errors="replace")
        except OSError:
            text = ""
        lines = text.splitlines()
        errors = [ln for ln in lines if " ERROR: " in ln or " CRIT: " in ln]
        kinds: dict[str, int] = {}
        for ln in errors:
            msg = ln.split(" ERROR: " if " ERROR: " in ln else " CRIT: ", 1)[1].strip()
            msg = re.sub(r"[0-9]+", "N", msg)
            kinds[msg[:90]] = kinds.get(msg[:90], 0) + 1
        out[n] = {"late": text.count("Late heartbeat"),
                  "dead": sum(1 for ln in lines if "is dead" in ln and "node " in ln.lower()),
                  "shutdown_notices": text.count("Received shutdown notice"),
                  "errors": len(errors), "error_kinds": kinds}
    return out


class LogWatch:
    """Notes the moment a line with one of ``patterns`` first appears in a node's log
    (read from the host every 10 ms; Heartbeat writes each line at once), so steps can be
    timed finer than the log's own 1 s timestamps."""

    def __init__(self, path: Path, patterns: dict[str, str]) -> None:
        self.path, self.patterns = path, patterns
        self.seen: dict[str, float] = {}
        self.offset = path.stat().st_size if path.exists() else 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        buf = b""
        while not self.stopped.is_set() and len(self.seen) < len(self.patterns):
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(self.offset)
                    new = fh.read()
            except OSError:
                new = b""
            now = time.time()
            if new:
                self.offset += len(new)
                buf = (buf + new)[-65536:]
                text = buf.decode(errors="replace")
                for name, pat in self.patterns.items():
                    if name not in self.seen and pat in text:
                        self.seen[name] = now
            self.stopped.wait(0.01)

    def stop(self) -> dict[str, float]:
        self.stopped.set()
        self.thread.join(5)
        return self.seen


# ------------------------------------------------------------- the experiment

# What node2's log says during a takeover after node1's crash, and the step's name.
FAILOVER_STEPS = {"node1 declared dead by node2": "node node1: is dead",
                  "takeover begins": "Acquiring resource group: node1",
                  "IP up": "IPaddr2 ",
                  "takeover complete": "mach_down takeover complete for node node1"}
# What node1's log says when it takes its group back, and node2's when it gives it up.
FAILBACK_STEPS_NODE2 = {"node2 releases the group": "Releasing resource group: node1"}
FAILBACK_STEPS_NODE1 = {"node1 acquires the group": "Acquiring resource group: node1"}


def setup(lab_name: str, tm: tuple[str, str, str], group: str) -> Lab:
    """A fresh lab with Heartbeat running ``group`` on node1 (node1 serving)."""
    from kembar.lab.experiments.failover import serving_vip
    require()
    haresources("VIP", group)  # a group Heartbeat cannot run is refused before the lab
    lab = fresh_lab(lab_name, disk_size=64 * 2**20)
    try:
        cluster.install_lsb_stand_ins(lab)
        if group == "full":
            cluster.install(lab)  # the disk up on both nodes; no daemon, no groups
            cluster.prepare_site(lab)
        else:
            for n in lab.plan.node_names:
                cluster.sh(lab, n, f"mkdir -p {cluster.MOUNT}")
        install(lab, tm, haresources(lab.plan.vip, group))
        for n in lab.plan.node_names:
            start(lab, n)
        serving_vip(lab, "node1", initdead(to_seconds(tm[2])) + 120)
    except BaseException:
        lab.down()
        raise
    return lab


def _watch(lab: Lab, node: str, patterns: dict[str, str]) -> LogWatch:
    return LogWatch(lab.machine_dir(node) / "run" / "heartbeat.log", patterns)


def _steps(seen: dict[str, float], t0: float, served: float | None) -> list[dict[str, Any]]:
    out = [{"step": k, "at": round(v - t0, 3)} for k, v in seen.items()]
    if served is not None:
        out.append({"step": "the client is served again", "at": round(served - t0, 3)})
    return sorted(out, key=lambda s: float(s["at"]))


def crash_and_failback(lab: Lab, work: Path, group: str
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """One run: node1's power cut → node2 serves; node1 boots (for "full": its disk back
    in sync first — Heartbeat's drbddisk has no such gate, an operator waits), Heartbeat
    started there → node1 serves again (auto_failback on)."""
    from kembar.lab.experiments.failover import Poll, gap, serving_vip
    poll = Poll(lab, work)
    time.sleep(0.5)
    watch = _watch(lab, "node2", FAILOVER_STEPS)
    t_crash = time.time()
    try:
        lab.crash("node1")
        serving_vip(lab, "node2", 120)
    finally:
        seen = watch.stop()
    outage, end = gap(poll.stop())
    failover = {"outage": round(outage, 3), "steps": _steps(seen, t_crash, end)}
    lab.boot("node1")
    after_boot(lab, "node1")
    if group == "full":
        cluster.wait(lambda: cluster.synced(lab), 300, "node1's disk back in sync")
    poll = Poll(lab, work)
    w2, w1 = _watch(lab, "node2", FAILBACK_STEPS_NODE2), _watch(lab, "node1",
                                                                  FAILBACK_STEPS_NODE1)
    t_start = time.time()
    try:
        start(lab, "node1")
        serving_vip(lab, "node1", 300)
    finally:
        seen = {**w2.stop(), **w1.stop()}
    outage, end = gap(poll.stop())
    failback = {"outage": round(outage, 3), "steps": _steps(seen, t_start, end)}
    return failover, failback


def run(runs: int, keepalive: str, deadtime: str, group: str, lab_name: str, work: Path,
        progress: Callable[[str], None] = lambda _: None
        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """``runs`` crashes and failbacks of Heartbeat: (failover runs, failback runs, notes)."""
    tm = timing(keepalive, deadtime)
    progress(f"lab {lab_name}: up, Heartbeat {VERSION} running the {group} group on node1")
    lab = setup(lab_name, tm, group)
    fo: list[dict[str, Any]] = []
    fb: list[dict[str, Any]] = []
    try:
        for i in range(runs):
            progress(f"Heartbeat: crash and failback, run {i + 1}/{runs}")
            a, b = crash_and_failback(lab, work, group)
            fo.append(a)
            fb.append(b)
        counts = log_counts(lab)
    finally:
        lab.down()
    notes = [f"Heartbeat {VERSION}: ha.cf keepalive {tm[0]}, warntime {tm[1]}, deadtime "
             f"{tm[2]}, auto_failback on; haresources: {haresources('VIP', group).strip()}",
             "Heartbeat's log: " + "; ".join(
                 f"{n} {c['late']} late heartbeats, {c['errors']} ERROR/CRIT lines"
                 for n, c in counts.items())]
    return fo, fb, notes
