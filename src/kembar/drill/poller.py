"""What a user of the site sees: an HTTP GET every interval, each on a fresh connection.

``poll_once`` is one GET; ``Poller`` runs them in this process (a thread per poll, one
started every ``interval`` whether or not the earlier ones answered, so an outage is
measured to the interval, not to the timeout); ``outages`` (pure) turns the records into
the client-visible outages: last good reply → first good reply, for every gap with failed
polls in between.  Records: ``{"t": wall-clock seconds when sent, "ok": bool, "node": the
X-Served-By header or "", "error": "...", "rtt": seconds until the reply}``.  The lab's client runs the same polls from its
own namespace (``kembar.lab.poll``).
"""

from __future__ import annotations

import http.client
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from kembar.errors import KembarError

MAX_IN_FLIGHT = 64


def poll_once(host: str, port: int, path: str, timeout: float) -> tuple[bool, str, str]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        rep = conn.getresponse()
        rep.read()
        ok = 200 <= rep.status < 400
        return ok, rep.getheader("X-Served-By", "") or "", "" if ok else f"HTTP {rep.status}"
    except (OSError, http.client.HTTPException) as exc:
        return False, "", type(exc).__name__ + (f": {exc}" if str(exc) else "")
    finally:
        conn.close()


def outages(lines: list[dict[str, Any]], slow: float | None = None) -> list[dict[str, Any]]:
    """Every outage: {"start": last good reply, "end": first good reply after failures,
    "seconds", "failed": failed polls, "before": node, "after": node}.  With ``slow``, a
    reply that took longer than that (a poll held in ARP resolution or a listen queue until
    the other node took over) counts as failed: the user waited for it."""
    out: list[dict[str, Any]] = []
    last_ok: dict[str, Any] | None = None
    failed = 0
    for rec in sorted(lines, key=lambda r: float(r["t"])):
        if not rec["ok"] or slow is not None and float(rec.get("rtt", 0.0)) > slow:
            failed += 1
            continue
        if failed and last_ok is not None:
            out.append({"start": last_ok["t"], "end": rec["t"],
                        "seconds": rec["t"] - last_ok["t"], "failed": failed,
                        "before": last_ok["node"], "after": rec["node"]})
        last_ok, failed = rec, 0
    return out


def parse_url(url: str) -> tuple[str, int, str]:
    """``http://host[:port]/path`` → (host, port, path); KembarError otherwise (pure)."""
    u = urlsplit(url)
    try:
        port = u.port or 80
    except ValueError:
        raise KembarError(f"URL {url!r}: a bad port") from None
    if u.scheme != "http" or not u.hostname:
        raise KembarError(f"URL {url!r}: http://HOST[:PORT]/PATH")
    return u.hostname, port, (u.path or "/") + (f"?{u.query}" if u.query else "")


class Poller:
    """Polls ``url`` every ``interval`` in background threads until ``stop``."""

    def __init__(self, url: str, interval: float = 0.05, timeout: float = 0.5) -> None:
        self.host, self.port, self.path = parse_url(url)
        self.interval, self.timeout = interval, timeout
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._main = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Poller":
        self._main.start()
        return self

    def _one(self, t: float) -> None:
        try:
            t1 = time.monotonic()
            ok, node, err = poll_once(self.host, self.port, self.path, self.timeout)
            rtt = round(time.monotonic() - t1, 4)
            with self._lock:
                self.records.append({"t": t, "ok": ok, "node": node, "error": err,
                                     "rtt": rtt})
        finally:
            self._slots.release()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._slots.acquire()
            th = threading.Thread(target=self._one, args=(time.time(),), daemon=True)
            th.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [th]
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))
            if next_at < time.monotonic():
                next_at = time.monotonic()

    def snapshot(self, since: float = 0.0) -> list[dict[str, Any]]:
        with self._lock:
            return sorted((r for r in self.records if r["t"] >= since), key=lambda r: r["t"])

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._main.join(self.interval + 1)
        for th in list(self._threads):
            th.join(self.timeout + 1)
        return self.snapshot()
