"""Samples, all along the torture, which nodes hold the VIP and the disk's device (the
disk is Primary there): the group must never hold either on two nodes at once.

A sample reads node1 then node2; a handover between the two reads could look like an
overlap, so an overlap counts only if a second sample, read in the other order at once,
shows it too.  Overlaps shorter than a sample are not seen; the daemons' own histories
are the finer record."""

from __future__ import annotations

import threading
import time
from typing import Any

from kembar.errors import KembarError

PROBE = ("ip -o -4 addr show dev eth0 | grep -q ' {vip}/' && echo vip; "
         "[ -e /dev/kembar/{disk} ] && echo dev; true")


class Watch(threading.Thread):
    def __init__(self, lab: Any, disk: str = "r0", interval: float = 0.2) -> None:
        super().__init__(daemon=True, name="torture-watch")
        self.lab, self.disk, self.interval = lab, disk, interval
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.most = {"vip": 0, "dev": 0}
        self.seen: list[dict[str, Any]] = []  # overlaps: time, what, nodes
        self.samples = 0

    def _held(self, node: str) -> set[str]:
        try:
            if not self.lab.powered(node):
                return set()
            res = self.lab.run(node, ["sh", "-c", PROBE.format(vip=self.lab.plan.vip,
                                                               disk=self.disk)], timeout=5)
        except (KembarError, OSError, ValueError):
            return set()
        except Exception:  # noqa: BLE001 - a sample lost (timeout): not an overlap
            return set()
        return set(res.stdout.split())

    def sample(self, nodes: list[str]) -> dict[str, list[str]]:
        held = {n: self._held(n) for n in nodes}
        return {what: [n for n in nodes if what in held[n]] for what in ("vip", "dev")}

    def run(self) -> None:
        nodes = list(self.lab.plan.node_names)
        while not self.stop_event.wait(self.interval):
            first = self.sample(nodes)
            self.samples += 1
            if all(len(v) <= 1 for v in first.values()):
                continue
            again = self.sample(list(reversed(nodes)))
            with self.lock:
                for what in ("vip", "dev"):
                    both = sorted(set(first[what]) & set(again[what]))
                    if len(both) > 1:
                        self.most[what] = max(self.most[what], len(both))
                        self.seen.append({"t": time.time(), "what": what, "nodes": both})

    def take(self) -> tuple[int, int, list[dict[str, Any]]]:
        """The most nodes seen holding the VIP / the device at once since the last take."""
        with self.lock:
            out = (self.most["vip"], self.most["dev"], list(self.seen))
            self.most = {"vip": 0, "dev": 0}
            self.seen = []
        return out

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=10)
