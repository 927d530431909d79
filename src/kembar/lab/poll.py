"""A client that polls the site through the VIP and records every answer (run it on the
lab's client): what users see during a failover.

    python -m kembar.lab.poll URL OUT [--interval 0.05] [--timeout 0.5]

Every ``interval`` a poll starts, whether the earlier ones have answered or not (each in
its own thread, at most ``MAX_IN_FLIGHT`` at once): one HTTP GET on a fresh connection,
failed after ``timeout``.  So a poll that hangs on an address nobody holds any more does
not hide the moment the service is back: the record has one poll per interval, and an
outage is measured to the interval, not to the timeout.  One JSON line per poll goes to
OUT as it completes: ``{"t": wall-clock seconds when sent, "ok": bool, "node": "node1" |
"", "error": "..."}``.  SIGTERM ends it (after the polls in flight).  ``outages(lines)`` (pure) turns the record into the client-visible outages:
last good reply → first good reply, for every gap with failed polls in between.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kembar.drill.poller import MAX_IN_FLIGHT, outages, poll_once  # noqa: F401 - the lab's API too

if TYPE_CHECKING:
    from kembar.lab.lab import Lab


class ClientPoller:
    """This poller, run on the lab's client from the host, into ``out`` (a file the
    client sees as the host does: /tmp and /var/tmp are shared); ``stop`` ends it by its
    own PID (nsenter does not pass signals on to the program it runs)."""

    def __init__(self, lab: Lab, out: Path, path: str = "/health", interval: float = 0.05,
                 timeout: float = 0.5) -> None:
        self.out = out
        out.unlink(missing_ok=True)
        self.proc = subprocess.Popen(lab.exec_argv("client", [
            sys.executable, "-m", "kembar.lab.poll", f"http://{lab.plan.vip}{path}", str(out),
            "--interval", str(interval), "--timeout", str(timeout)]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.records() and time.monotonic() < deadline:
            time.sleep(0.02)

    def records(self) -> list[dict[str, Any]]:
        out = []
        try:
            text = self.out.read_text()
        except FileNotFoundError:
            return []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # the line being written
                pass
        return sorted(out, key=lambda r: float(r["t"]))

    def stop(self) -> list[dict[str, Any]]:
        from kembar.lab.machine import children
        if self.proc.poll() is None:
            kids = children(self.proc.pid)
            for pid in kids:
                os.kill(pid, signal.SIGTERM)
            if not kids:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                for pid in children(self.proc.pid):
                    os.kill(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(10)
        return self.records()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kembar.lab.poll")
    ap.add_argument("url")
    ap.add_argument("out")
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--timeout", type=float, default=0.5)
    args = ap.parse_args(argv)
    u = urlsplit(args.url)
    host, port, path = u.hostname or "127.0.0.1", u.port or 80, u.path or "/"
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    lock = threading.Lock()
    slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
    with open(args.out, "a", buffering=1) as fh:

        def one(t: float) -> None:
            try:
                ok, node, err = poll_once(host, port, path, args.timeout)
                with lock:
                    fh.write(json.dumps({"t": t, "ok": ok, "node": node, "error": err}) + "\n")
            finally:
                slots.release()

        threads: list[threading.Thread] = []
        next_at = time.monotonic()
        while running:
            slots.acquire()
            th = threading.Thread(target=one, args=(time.time(),), daemon=True)
            th.start()
            threads = [x for x in threads if x.is_alive()] + [th]
            next_at += args.interval
            time.sleep(max(0.0, next_at - time.monotonic()))
            if next_at < time.monotonic():
                next_at = time.monotonic()
        for th in threads:
            th.join(args.timeout + 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
