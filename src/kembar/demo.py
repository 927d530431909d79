"""``make demo``: the paper's cluster in the lab; node1 dies, node2 serves the same orders.

The lab (``kembar lab``) gives two nodes and a client, each its own machine of namespaces.
kembar's replicated disk keeps ``/srv/data`` (ext4: the company site's catalogue and its
SQLite orders) on both nodes; the site answers on the VIP 198.18.0.100.  A shopper on the
client places orders through the VIP all along; node1 loses power; node2 takes the disk,
the filesystem, the VIP and the site over; every order the shopper saw acknowledged is
still there; node1 boots, catches up, and takes the site back (``auto_failback on``).

The cluster daemon runs on both nodes: its membership declares node1 dead by its heartbeats
and its resource manager moves group ``web`` (disk, filesystem, site, VIP) to node2, then
back to node1 once node1 has caught up.  This script only causes the faults and watches.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from rich.console import Console
from rich.table import Table

from kembar.errors import KembarError
from kembar.lab import cluster
from kembar.lab.lab import Lab

LAB = "demo"
ORDERS_BEFORE = 15
KEEPALIVE, DEADTIME = "200ms", "1s"
console = Console(highlight=False, width=110)


@dataclass
class Shopper:
    """Places orders through the VIP from the client, one at a time, and remembers every
    order whose reply said it was stored (HTTP 201 with its id)."""

    lab: Lab
    acked: dict[int, str] = field(default_factory=dict)  # id -> customer
    failed: int = 0
    last_ok: float = 0.0
    outage_start: float | None = None
    outages: list[float] = field(default_factory=list)
    served_by: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    n: int = 0

    def order(self) -> bool:
        self.n += 1
        customer = f"customer {self.n:04d}"
        res = self.lab.run("client", [
            "curl", "-s", "-m", "2", "-o", "-", "-w", "\n%{http_code}",
            "-H", "Accept: application/json",
            "--data-urlencode", f"customer={customer}", "-d", f"product={1 + self.n % 5}",
            "-d", "quantity=1", f"http://{self.lab.plan.vip}/order"])
        body, _, code = res.stdout.rpartition("\n")
        now = time.monotonic()
        if res.returncode == 0 and code == "201":
            reply = json.loads(body)
            self.acked[int(reply["id"])] = customer
            self.served_by[reply["node"]] = self.served_by.get(reply["node"], 0) + 1
            if self.outage_start is not None:
                self.outages.append(now - self.outage_start)
                self.outage_start = None
            self.last_ok = now
            return True
        self.failed += 1
        if self.outage_start is None:
            self.outage_start = self.last_ok or now
        return False

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.order():
                time.sleep(0.05)


def get(lab: Lab, path: str) -> tuple[str, str]:
    """GET through the VIP from the client: (body, node that served it)."""
    res = lab.run("client", ["curl", "-s", "-m", "3", "-D", "/dev/stderr",
                             f"http://{lab.plan.vip}{path}"])
    if res.returncode != 0:
        neigh = lab.run("client", ["ip", "neigh"]).stdout.strip()
        raise KembarError(f"GET {path} through the VIP failed (curl exit {res.returncode}); "
                          f"the client's ARP table: {neigh}")
    node = ""
    for line in res.stderr.splitlines():
        if line.lower().startswith("x-served-by:"):
            node = line.split(":", 1)[1].strip()
    return res.stdout, node


class Steps:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, str]] = []
        self.n = 0

    def __call__(self, title: str, fn: Callable[[], Any]) -> Any:
        self.n += 1
        t0 = time.monotonic()
        with console.status(f"[bold]{self.n}. {title}…"):
            result = fn()
        took = time.monotonic() - t0
        note = result if isinstance(result, str) else ""
        console.print(f"[green]✓[/] {self.n:2}. {title} [dim]({took:.1f} s)[/]"
                      + (f" — {note}" if note else ""))
        self.rows.append((title, took, note))
        return result


def demo() -> dict[str, Any]:
    lab = Lab(LAB)
    step = Steps()
    facts: dict[str, Any] = {}
    if lab.exists():
        step("remove the lab an earlier demo left", lambda: lab.down() and "")
    step("build the lab: a switch, node1, node2 and a client (namespaces)",
         lambda: lab.up(disk_size=128 * 2**20) and "198.18.0.1, .2, client .50")
    membership = cluster.membership_toml(lab.plan, "bcast", keepalive=KEEPALIVE,
                                         deadtime=DEADTIME, initdead="10s")
    groups = cluster.group_toml(lab.plan, monitor="2s")
    step("install kembar on both nodes: cluster file (group web: disk r0, /srv/data, site, "
         "VIP), keys, metadata, disk up",
         lambda: cluster.install(lab, membership=membership, groups=groups))
    step("first sync of r0; ext4 on it with the site's catalogue and database",
         lambda: cluster.prepare_site(lab))

    def daemons() -> str:
        for n in lab.plan.node_names:
            cluster.start_daemon(lab, n)
        cluster.wait(lambda: cluster.runs_on(lab) == ["node1"], 60,
                     "the group to start on its preferred node")
        return (f"heartbeats every {KEEPALIVE} (deadtime {DEADTIME}); node1 promoted r0, "
                "mounted /srv/data, started the site, brought up the VIP")
    step("start the cluster daemon on both nodes: group web starts on node1", daemons)

    def first_look() -> str:
        cluster.wait(lambda: get(lab, "/")[1] == "node1", 20, "the site on the VIP")
        page, node = get(lab, "/")
        assert "served by node1" in page, page[-300:]
        return f"GET http://{lab.plan.vip}/ from the client: served by {node}"
    step("the client opens the site through the VIP", first_look)

    shopper = Shopper(lab)

    def before() -> str:
        for _ in range(ORDERS_BEFORE):
            if not shopper.order():
                raise KembarError("an order failed before any fault")
        return f"{len(shopper.acked)} orders acknowledged by node1"
    step("the client places orders", before)

    thread = threading.Thread(target=shopper.run, daemon=True)
    thread.start()
    time.sleep(1.0)
    crash_at = time.monotonic()
    crash_wall = time.time()
    step("node1 loses power (its cables go dead, every process of it killed at once)",
         lambda: lab.crash("node1"))

    def takeover() -> str:
        cluster.wait(lambda: cluster.runs_on(lab) == ["node2"], 60, "node2 to take over")
        st = cluster.daemon_status(lab, "node2")
        dead = [e for e in st["events"] if e["event"] == "NodeDead"][-1]
        started = [e for e in st["events"] if e["event"] == "GroupStarted"][-1]
        facts["detection"] = dead["time"] - crash_wall
        facts["timeline"] = started["timeline"]
        facts["start_took"] = started["took"]
        return (f"{dead['text']}, {facts['detection']:.2f} s after the power cut; "
                f"group web started on node2 in {started['took']:.2f} s")
    step("node2's daemon declares node1 dead and takes the group over", takeover)

    def serving() -> str:
        deadline = time.monotonic() + 30
        while shopper.served_by.get("node2", 0) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        shopper.stop.set()
        thread.join(10)
        body, node = get(lab, "/orders.json")
        data = json.loads(body)
        stored = {o["id"]: o["customer"] for o in data["orders"]}
        lost = [i for i, c in shopper.acked.items() if stored.get(i) != c]
        facts.update(node=node, acked=len(shopper.acked), stored=len(stored), lost=len(lost),
                     failed=shopper.failed,
                     outage=max(shopper.outages) if shopper.outages else 0.0,
                     served_by=dict(shopper.served_by))
        if node != "node2" or lost:
            raise KembarError(f"served by {node}; acknowledged orders lost: {lost[:10]}")
        return (f"served by {node}: {len(stored)} orders stored, all {len(shopper.acked)} "
                f"acknowledged ones among them")
    step("node2 serves the same site and every acknowledged order", serving)
    facts["crash_to_takeover"] = time.monotonic() - crash_at

    step("node1 boots (kembar's disk and daemon start as at boot)",
         lambda: lab.boot("node1"))

    def failback() -> str:
        cluster.wait(lambda: cluster.runs_on(lab) == ["node1"], 180,
                     "node1 to catch up and take the group back")
        st = cluster.disk_status(lab, "node1")
        facts["resync_bytes"] = int(st["counters"].get("rs_received", 0))
        cluster.wait(lambda: get(lab, "/")[1] == "node1", 20, "node1 on the VIP")
        body, node = get(lab, "/orders.json")
        stored = {o["id"]: o["customer"] for o in json.loads(body)["orders"]}
        lost = [i for i, c in shopper.acked.items() if stored.get(i) != c]
        facts["failback_lost"] = len(lost)
        if node != "node1" or lost:
            raise KembarError(f"served by {node}; lost after failback: {lost[:10]}")
        return (f"{facts['resync_bytes'] // 1024} KiB resynced to node1 first; then node2 "
                f"stopped the group and node1 started it; all {len(stored)} orders there")
    step("failback: node1 resyncs, then takes the group back (auto_failback on)", failback)

    def fsck() -> str:
        for n in ("node2", "node1"):  # the owner last: its group is stopped in order
            pid = cluster.daemon_status(lab, n)["pid"]
            cluster.sh(lab, n, f"kill -TERM {pid}; while kill -0 {pid} 2>/dev/null; "
                               "do sleep 0.1; done")
        cluster.sh(lab, "node1", "kembar disk primary r0 >/dev/null && "
                                 "fsck.ext4 -n /dev/kembar/r0 >/dev/null 2>&1; "
                                 "rc=$?; kembar disk secondary r0 >/dev/null; exit $rc")
        facts["fsck"] = "clean"
        return "fsck.ext4 -n: clean"
    step("both daemons stop (node1's group in reverse order); fsck.ext4 -n on the disk", fsck)
    facts["steps"] = step.rows
    facts["lab"] = lab
    return facts


def summary(facts: dict[str, Any]) -> None:
    t = Table(title="kembar demo: what happened")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("orders acknowledged to the client", str(facts["acked"]))
    t.add_row("orders stored after node1's crash", str(facts["stored"]))
    t.add_row("acknowledged orders lost", str(facts["lost"]))
    t.add_row("orders refused or timed out during the takeover", str(facts["failed"]))
    t.add_row("node1 declared dead by node2's heartbeat daemon after",
              f"{facts['detection']:.2f} s (deadtime {DEADTIME})")
    t.add_row("group web started on node2 in", f"{facts['start_took']:.2f} s")
    t.add_row("client-visible outage (last good → first good reply)",
              f"{facts['outage']:.1f} s")
    t.add_row("orders served by node", ", ".join(f"{k}: {v}" for k, v in
                                                sorted(facts["served_by"].items())))
    t.add_row("resynced to node1 after its boot", f"{facts['resync_bytes'] // 1024} KiB")
    t.add_row("fsck.ext4 -n after the crash and resync", facts.get("fsck", "?"))
    t.add_row("acknowledged orders lost after failback", str(facts["failback_lost"]))
    console.print(t)
    steps = facts.get("timeline") or []
    if steps:
        tl = Table(title="the failover on node2, step by step (kembar status --history)")
        tl.add_column("+ s", justify="right")
        tl.add_column("step")
        for s in steps:
            tl.add_row(f"{s['time'] - steps[0]['time']:.3f}", s["step"])
        console.print(tl)


def main() -> int:
    console.rule("kembar demo: the company website survives a crash of node1")
    facts: dict[str, Any] = {}
    code = 1
    try:
        facts = demo()
        summary(facts)
        console.print(f"lost: {facts['lost']}; lost after failback: {facts['failback_lost']}; "
                      f"fsck.ext4 -n: {facts['fsck']}")
        console.print("[bold green]the site and its orders survived the crash intact[/]")
        code = 0
    except (KembarError, AssertionError) as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
    finally:
        if os.environ.get("KEMBAR_DEMO_KEEP"):
            console.print(f"KEMBAR_DEMO_KEEP is set: the lab stays (`kembar lab status "
                          f"--name {LAB}`, `kembar lab down --name {LAB}`)")
            return code
        with console.status("removing the lab…"):
            done = Lab(LAB).down()
        console.print(f"lab removed ({len(done)} things: namespaces, processes, loop "
                      "devices, mounts, files)")
    return code


if __name__ == "__main__":
    sys.exit(main())
