"""The torture run: a cluster in the lab under load, faults injected from the schedule,
each one settled, undone and checked (``judge``), a summary and a JSON log at the end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kembar.demo import get
from kembar.drill.run import nft_both_ways
from kembar.errors import KembarError
from kembar.lab import cluster
from kembar.lab.lab import Lab, fresh_lab
from kembar.lab.torture import judge
from kembar.lab.torture.schedule import Fault
from kembar.lab.torture.watch import Watch
from kembar.lab.torture.workload import RECORDS_DIR, Orders, Records

NFT_TABLE = "kembar_torture"  # inet family, in one node's namespace, during a "loss" fault
NIC = {"public": "eth0", "private": "eth1"}
KEEPALIVE, DEADTIME = "200ms", "1s"
SETTLE = 60.0  # seconds for the cluster to settle after a fault
RECOVER = 180.0  # seconds to be whole again after the fault is undone (resync included)
REACT = 3.0  # seconds the cluster is given to notice a fault (deadtime, monitors)
READ_TRIES = 15.0  # seconds the orders page may take to answer again after a fault
LOSS_HOLD = 5.0  # seconds a "loss" fault lasts
FAILURE_TIMEOUT = "20s"  # the group's: a failure of one fault does not add to the next


@dataclass
class Outcome:
    fault: Fault
    steps: list[tuple[float, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    took: float = 0.0
    owner_before: str = ""
    owner_after_fault: str = ""
    split_brain_reported: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"fault": self.fault.to_json(), "text": str(self.fault),
                "steps": [{"t": round(t, 2), "step": s} for t, s in self.steps],
                "problems": self.problems, "took": round(self.took, 2),
                "owner_before": self.owner_before,
                "owner_after_fault": self.owner_after_fault,
                "split_brain_reported": self.split_brain_reported}


def loss_rules(nic: str, percent: int) -> str:
    """nftables: drop ``percent`` % of the packets in and out on ``nic`` (pure)."""
    return nft_both_ways(NFT_TABLE, nic, f"numgen random mod 100 < {percent}")


class Torture:
    def __init__(self, name: str, faults: list[Fault], say: Callable[[str], None] = print,
                 disk_size: int = 64 * 2**20, priority_delay: str | None = None) -> None:
        self.name, self.faults, self.say, self.disk_size = name, faults, say, disk_size
        self.priority_delay = priority_delay
        self.lab: Lab | None = None
        self.orders: Orders | None = None
        self.records: Records | None = None
        self.watch: Watch | None = None
        self.outcomes: list[Outcome] = []
        self.t0 = time.monotonic()
        self.current: Outcome | None = None
        # called once each fault has settled, before it is undone (tests look around)
        self.after_fault: Callable[[Fault, Outcome], None] | None = None

    # ----------------------------------------------------------------- helpers

    @property
    def L(self) -> Lab:  # noqa: N802 - the lab, once built
        assert self.lab is not None
        return self.lab

    def step(self, text: str) -> None:
        t = time.monotonic() - self.t0
        if self.current is not None:
            self.current.steps.append((t, text))
        self.say(f"    {t:7.1f}s {text}")

    def nodes(self) -> list[str]:
        return list(self.L.plan.node_names)

    def powered(self) -> list[str]:
        return [n for n in self.nodes() if self.L.powered(n)]

    def running(self) -> list[str]:
        return cluster.runs_on(self.L)

    def disks(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for n in self.powered():
            try:
                out[n] = cluster.disk_status(self.L, n)
            except KembarError:
                out[n] = {"down": True}
        return out

    def wait(self, pred: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if pred():
                    return True
            except KembarError:
                pass
            time.sleep(0.3)
        return False

    def sh(self, node: str, script: str, timeout: float = 60) -> str:
        return cluster.sh(self.L, node, script, timeout=timeout)

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        self.say(f"building lab {self.name} (two nodes, a private link, fencing on"
                 + (f", priority delay {self.priority_delay}" if self.priority_delay else "")
                 + ")")
        lab = self.lab = fresh_lab(self.name, private=True, disk_size=self.disk_size)
        mt = cluster.membership_toml(lab.plan, "two", keepalive=KEEPALIVE, deadtime=DEADTIME,
                                     initdead="5s")
        gt = cluster.group_toml(lab.plan, restarts=1, fence=True, monitor="1s",
                                failure_timeout=FAILURE_TIMEOUT,
                                priority_delay=self.priority_delay)
        cluster.install(lab, membership=mt, groups=gt, auto_failback=True)
        cluster.prepare_site(lab)
        for n in lab.plan.node_names:
            cluster.start_daemon(lab, n)
        if not self.wait(lambda: self.running() == ["node1"], 60):
            raise KembarError("the group did not start on node1")
        if not self.wait(lambda: get(lab, "/health")[1] == "node1", 20):
            raise KembarError("the site does not answer on the VIP")
        self.orders, self.records, self.watch = Orders(lab), Records(lab), Watch(lab)
        for t in (self.orders, self.records, self.watch):
            t.start()
        time.sleep(1)

    def teardown(self, keep: bool = False) -> None:
        for t in (self.orders, self.records, self.watch):
            if t is not None:
                t.stop()
        if self.lab is not None and not keep:
            self.lab.down()

    # ------------------------------------------------------------------ faults

    def inject(self, f: Fault) -> None:
        lab = self.L
        if f.kind in ("crash", "reboot"):
            self.step(lab.crash(f.node))
            if f.kind == "reboot":
                self.step(lab.boot(f.node))
        elif f.kind == "partition":
            self.step(lab.partition("node1", "node2", f.link))
        elif f.kind == "daemon-kill":
            pid = cluster.daemon_status(lab, f.node)["pid"]
            self.sh(f.node, f"kill -KILL {int(pid)}")
            self.step(f"{f.node}: cluster daemon (pid {pid}) killed")
        elif f.kind == "disk-kill":
            pid = self.sh(f.node, f"cat /run/kembar/{cluster.DISK}.pid").strip()
            self.sh(f.node, f"kill -KILL {int(pid)}")
            self.step(f"{f.node}: disk process (pid {pid}) killed")
        elif f.kind == "disk-fail":
            self.step(lab.disk_fail(f.node))
        elif f.kind == "loss":
            res = lab.run(f.node, ["nft", "-f", "-"], input=loss_rules(NIC[f.link], f.loss))
            if res.returncode != 0:
                raise KembarError(f"nft on {f.node}: {res.stderr.strip()}")
            self.step(f"{f.node}: {f.loss}% of packets dropped on {NIC[f.link]}")
            time.sleep(LOSS_HOLD)
            self.undo_loss(f.node)
        else:
            raise KembarError(f"unknown fault {f.kind}")

    def undo_loss(self, node: str) -> None:
        if self.L.powered(node):
            self.L.run(node, ["nft", "delete", "table", "inet", NFT_TABLE])
            self.step(f"{node}: packet loss ended")

    def undo(self, f: Fault) -> None:
        lab = self.L
        if f.kind == "partition":
            self.step(lab.heal())
        if f.kind == "disk-fail":
            self.step(lab.disk_fail(f.node, fail=False))
        for n in self.nodes():
            if not lab.powered(n):
                self.step(lab.boot(n))
        for n in self.nodes():
            if f.kind == "loss":
                lab.run(n, ["nft", "delete", "table", "inet", NFT_TABLE])  # if left
            self.revive(n)
        if f.kind == "disk-fail" and lab.powered(f.node):
            self.attach(f.node)

    def attach(self, node: str) -> None:
        """The repaired disk attached again; a Diskless Primary cannot be (its data is in
        use): the group is moved off it first (standby), as an operator would."""
        lab = self.L
        res = lab.run(node, ["kembar", "disk", "attach", cluster.DISK])
        self.step(f"{node}: kembar disk attach: exit {res.returncode} "
                  f"{(res.stdout + res.stderr).strip()[:200]}")
        if res.returncode == 0 or node not in self.running():
            return
        self.sh(node, "kembar standby --wait 60", timeout=90)
        self.step(f"{node}: standby (the group moved off it)")
        res = lab.run(node, ["kembar", "disk", "attach", cluster.DISK])
        self.step(f"{node}: kembar disk attach: exit {res.returncode} "
                  f"{(res.stdout + res.stderr).strip()[:200]}")
        self.sh(node, "kembar online")
        self.step(f"{node}: online")

    def revive(self, n: str) -> None:
        """A powered node whose disk process or daemon is gone gets them back (as its
        service manager would restart them)."""
        lab = self.L
        if lab.run(n, ["kembar", "disk", "status", cluster.DISK]).returncode != 0:
            res = lab.run(n, ["kembar", "disk", "up", cluster.DISK])
            self.step(f"{n}: kembar disk up: exit {res.returncode} "
                      f"{(res.stdout + res.stderr).strip()[:200]}")
        if lab.run(n, ["kembar", "status", "--json"]).returncode != 0:
            cluster.start_daemon(lab, n)
            self.step(f"{n}: cluster daemon started")

    # ------------------------------------------------------------------ checks

    def settled_one(self) -> list[str]:
        """Waits until the group runs on exactly one node and answers on the VIP."""
        def ok() -> bool:
            run = self.running()
            return len(run) == 1 and get(self.L, "/health")[1] == run[0]
        if self.wait(ok, SETTLE):
            return []
        return judge.group_problems(self.running()) or [
            f"the site does not answer on the VIP within {SETTLE:.0f}s"]

    def whole(self) -> bool:
        if self.powered() != self.nodes() or self.running() != ["node1"]:
            return False
        return not judge.disk_problems(self.disks()) and \
            get(self.L, "/health")[1] == "node1"

    def check_data(self, out: Outcome) -> None:
        assert self.orders is not None and self.records is not None
        acked_orders = self.orders.acked()
        acked_records = self.records.snapshot()
        stored: dict[int, str] | None = None
        deadline = time.monotonic() + READ_TRIES
        while stored is None:
            try:  # (the site may be restarting: an error page is not a lost order)
                body, _ = get(self.L, "/orders.json")
                stored = {int(o["id"]): o["customer"] for o in json.loads(body)["orders"]}
            except (KembarError, ValueError, KeyError, TypeError) as exc:
                if time.monotonic() > deadline:
                    out.problems.append(f"the orders could not be read for {READ_TRIES:.0f}"
                                        f" s: {exc}")
                    break
                time.sleep(0.5)
        if stored is not None:
            lost = judge.lost_orders(acked_orders, stored)
            if lost:
                out.problems.append(f"{len(lost)} acknowledged orders missing: {lost[:10]}")
        deadline = time.monotonic() + READ_TRIES
        while True:  # the filesystem may be remounting: read again, as for the orders
            owner = self.running()
            if len(owner) == 1:
                res = self.L.run(owner[0], [sys.executable, "-m", "kembar.lab.torture.writer",
                                            "dump", "--dir", RECORDS_DIR], timeout=60)
                if res.returncode == 0:
                    break
                why = res.stderr.strip()[-300:]
            else:
                why = f"the group runs on {owner or 'no node'}"
            if time.monotonic() > deadline:
                out.problems.append(f"the records could not be read for {READ_TRIES:.0f} s: "
                                    f"{why}")
                return
            time.sleep(0.5)
        present, _torn = judge.parse_records(res.stdout)
        lost_r = judge.lost_records(acked_records, present)
        if lost_r:
            out.problems.append("acknowledged records missing: " + "; ".join(
                f"{w}: {len(m)} ({m[:5]})" for w, m in sorted(lost_r.items())))
        self.step(f"checked {len(acked_orders)} orders, {sum(acked_records.values())} "
                  f"records from {len(acked_records)} writers")

    def check_disks(self, out: Outcome) -> None:
        """Filesystem frozen on the owner (nothing in flight): online verify finds no
        block out of sync, and the peer's copy passes ``e2fsck -fn``."""
        lab = self.L
        owner = self.running()[0]
        peer = next(n for n in self.nodes() if n != owner)
        self.sh(owner, f"fsfreeze -f {cluster.MOUNT}")
        try:
            res = lab.run(owner, ["kembar", "disk", "verify", cluster.DISK], timeout=120)
            text = (res.stdout + res.stderr).strip()
            if res.returncode != 0 or " 0 blocks" not in text:
                out.problems.append(f"online verify: {text[-300:]}")
            fsck = subprocess.run(["e2fsck", "-fn", str(lab.image(peer))],
                                  capture_output=True, text=True, timeout=120)
            if fsck.returncode != 0:
                out.problems.append(f"e2fsck -fn on {peer}'s disk: exit {fsck.returncode}: "
                                    f"{(fsck.stdout + fsck.stderr).strip()[-400:]}")
        finally:
            self.sh(owner, f"fsfreeze -u {cluster.MOUNT}")
        self.step(f"disks compared (online verify) and {peer}'s filesystem checked")

    def check_overlaps(self, out: Outcome) -> None:
        assert self.watch is not None
        most_vip, most_dev, seen = self.watch.take()
        disks = self.disks()
        out.split_brain_reported = out.split_brain_reported or judge.reported_split_brain(disks)
        out.problems += judge.overlap_problems(most_vip, most_dev, out.split_brain_reported)
        if seen:
            self.step(f"overlaps seen: {seen[:3]}")

    def resolve_split_brain(self, out: Outcome) -> None:
        """A reported split brain stops the disks from connecting: resolved here with
        the node running the group as survivor (the torture counts it as a problem)."""
        disks = self.disks()
        if not judge.reported_split_brain(disks):
            return
        out.split_brain_reported = True
        out.problems.append("split brain reported: " + "; ".join(
            f"{n}: {d.get('last_error')}" for n, d in sorted(disks.items())))
        run = self.running()
        survivor = run[0] if run else "node1"
        for n in sorted(self.nodes(), key=lambda x: x == survivor):
            res = self.L.run(n, ["kembar", "disk", "resolve", cluster.DISK,
                                 "--survivor", survivor])
            self.step(f"{n}: kembar disk resolve --survivor {survivor}: exit {res.returncode}")

    # -------------------------------------------------------------------- run

    def iteration(self, f: Fault) -> Outcome:
        out = self.current = Outcome(f)
        start = time.monotonic()
        run = self.running()
        out.owner_before = run[0] if run else ""
        self.say(f"[{f.i}/{len(self.faults)}] {f}  (group on {out.owner_before or 'nothing'})")
        self.inject(f)
        time.sleep(REACT)
        out.problems += self.settled_one()
        run = self.running()
        out.owner_after_fault = ",".join(run)
        self.step(f"settled: group on {out.owner_after_fault or 'nothing'}")
        self.check_overlaps(out)
        self.check_data(out)
        if self.after_fault is not None:
            self.after_fault(f, out)
        self.undo(f)
        if not self.wait(self.whole, 20):
            self.resolve_split_brain(out)
        if not self.wait(self.whole, RECOVER):
            out.problems.append("not whole again within "
                                f"{RECOVER:.0f}s: powered {self.powered()}, running "
                                f"{self.running()}, disks {judge.disk_problems(self.disks())}")
            out.took = time.monotonic() - start
            return out
        self.step("whole again: both nodes up and in sync, the group on node1")
        self.check_overlaps(out)
        self.check_data(out)
        self.check_disks(out)
        out.took = time.monotonic() - start
        return out

    def run(self, keep: bool = False) -> list[Outcome]:
        self.t0 = time.monotonic()
        try:
            self.setup()
            for f in self.faults:
                out = self.iteration(f)
                self.outcomes.append(out)
                for p in out.problems:
                    self.say(f"    PROBLEM: {p}")
                if out.problems and not self.wait(self.whole, 1):
                    self.say("    the cluster is not whole again: the run stops here")
                    break
        finally:
            self.current = None
            self.teardown(keep)
        return self.outcomes

    def totals(self) -> dict[str, Any]:
        orders = len(self.orders.acked()) if self.orders else 0
        records = sum(self.records.snapshot().values()) if self.records else 0
        lost = sum(1 for o in self.outcomes for p in o.problems if "missing" in p)
        undetected = sum(1 for o in self.outcomes for p in o.problems
                         if "no split brain was reported" in p)
        return {"iterations": len(self.faults), "done": len(self.outcomes),
                "with_problems": sum(1 for o in self.outcomes if o.problems),
                "acked_orders": orders, "acked_records": records,
                "checks_with_lost_writes": lost, "undetected_split_brains": undetected,
                "split_brains_reported": sum(o.split_brain_reported for o in self.outcomes),
                "seconds": round(time.monotonic() - self.t0, 1)}


def write_log(path: Path, seed: int, kinds: list[str], t: Torture) -> None:
    doc = {"kind": "kembar-torture", "version": 1, "seed": seed, "kinds": kinds,
           "priority_delay": t.priority_delay, "schedule": [f.to_json() for f in t.faults],
           "results": [o.to_json() for o in t.outcomes], "totals": t.totals()}
    path.write_text(json.dumps(doc, indent=1) + "\n")
