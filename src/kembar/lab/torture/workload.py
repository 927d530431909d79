"""The torture's workload, driven from the host: orders through the VIP (the client, HTTP)
and numbered, fsynced records written on whichever node has the filesystem mounted."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

from kembar.demo import Shopper
from kembar.errors import KembarError

RECORDS_DIR = "/srv/data/torture"


class Orders(threading.Thread):
    """Places an order through the VIP every ``pause`` seconds; ``shopper.acked`` holds
    every order the site said it stored."""

    def __init__(self, lab: Any, pause: float = 0.1) -> None:
        super().__init__(daemon=True, name="torture-orders")
        self.shopper = Shopper(lab)
        self.pause = pause
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                with self.lock:
                    self.shopper.order()
            except Exception:  # noqa: BLE001 - the client itself cannot run: try again
                pass
            self.stop_event.wait(self.pause)

    def acked(self) -> dict[int, str]:
        with self.lock:
            return dict(self.shopper.acked)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=10)


class Records(threading.Thread):
    """Keeps one writer running on the node that has /srv/data mounted (a new writer,
    with a new file, each time the filesystem moved); ``acked[writer]`` is the highest
    record number the writer reported fsynced."""

    def __init__(self, lab: Any, rate: float = 20.0) -> None:
        super().__init__(daemon=True, name="torture-records")
        self.lab, self.rate = lab, rate
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.acked: dict[str, int] = {}
        self.proc: subprocess.Popen[str] | None = None
        self.writer: tuple[str, str] | None = None  # (node, pid there)
        self.k = 0

    def _mounted_on(self) -> str | None:
        for n in self.lab.plan.node_names:
            try:
                if self.lab.powered(n) and self.lab.run(
                        n, ["mountpoint", "-q", "/srv/data"], timeout=5).returncode == 0:
                    return n
            except Exception:  # noqa: BLE001 - powered off meanwhile
                continue
        return None

    def run(self) -> None:
        while not self.stop_event.is_set():
            node = self._mounted_on()
            if node is None:
                self.stop_event.wait(0.2)
                continue
            self.k += 1
            name = f"w{self.k:04d}-{node}"
            try:
                argv = self.lab.exec_argv(node, [
                    sys.executable, "-m", "kembar.lab.torture.writer", "write",
                    "--dir", RECORDS_DIR, "--name", name, "--rate", str(self.rate)])
            except KembarError:
                continue
            with self.lock:
                self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                             stderr=subprocess.DEVNULL, text=True)
                self.acked[name] = 0
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.startswith("pid "):
                    with self.lock:
                        self.writer = (node, line.split()[1])
                elif line.strip().isdigit():
                    with self.lock:
                        self.acked[name] = int(line)
            self.proc.wait()
            with self.lock:
                self.proc, self.writer = None, None
            self.stop_event.wait(0.2)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {k: v for k, v in self.acked.items() if v}

    def stop(self) -> None:
        self.stop_event.set()
        with self.lock:
            writer = self.writer
        if writer is not None:
            try:  # the writer we started, by its PID on its node
                self.lab.run(writer[0], ["kill", writer[1]], timeout=5)
            except Exception:  # noqa: BLE001 - its node is gone: so is the writer
                pass
        self.join(timeout=10)
