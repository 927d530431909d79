"""The lab's client poller: one poll per interval even while earlier polls hang, and the
outages computed from the polls' send times."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from kembar.lab.poll import outages


def rec(t: float, ok: bool, node: str = "node1") -> dict[str, Any]:
    return {"t": t, "ok": ok, "node": node if ok else "", "error": "" if ok else "timeout"}


def test_outages_are_judged_in_send_order_whatever_the_completion_order() -> None:
    # polls complete out of order (a hung one is written last); the outage runs from the
    # last good poll sent before the failures to the first good one sent after
    lines = [rec(1.0, True), rec(1.1, False), rec(1.3, True, "node2"), rec(1.05, True),
             rec(1.2, False), rec(1.4, True, "node2")]
    gaps = outages(lines)
    assert len(gaps) == 1
    g = gaps[0]
    assert (g["start"], g["end"], g["failed"], g["before"], g["after"]) == \
        (1.05, 1.3, 2, "node1", "node2")
    assert outages([rec(1.0, True), rec(1.1, True)]) == []
    assert outages([rec(1.0, False), rec(1.1, True)]) == []  # no good poll before: no gap


class _Site(http.server.BaseHTTPRequestHandler):
    hang = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.hang.is_set():
            time.sleep(1.0)
        self.send_response(200)
        self.send_header("X-Served-By", "node1")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv.server_address[1]
    _Site.hang.clear()
    srv.shutdown()
    srv.server_close()


def test_polls_go_on_every_interval_while_earlier_ones_hang(site: int, tmp_path: Path) -> None:
    out = tmp_path / "poll.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "kembar.lab.poll",
                             f"http://127.0.0.1:{site}/health", str(out),
                             "--interval", "0.05", "--timeout", "0.3"])
    try:
        time.sleep(0.5)
        t_hang = time.time()
        _Site.hang.set()  # every answer now takes 1 s: the polls time out
        time.sleep(1.0)
        _Site.hang.clear()
        t_back = time.time()
        time.sleep(0.5)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
    recs = sorted((json.loads(line) for line in out.read_text().splitlines()),
                  key=lambda r: r["t"])
    during = [r for r in recs if t_hang + 0.05 < r["t"] < t_back - 0.35]
    # a serial poller would have sent 2 or 3 polls in this window; one per interval here
    assert len(during) >= 10 and not any(r["ok"] for r in during), during
    gaps = outages(recs)
    assert len(gaps) == 1, gaps
    # the outage ends with the first poll sent after the hang: to the interval, not the
    # timeout (a poll sent just before the end of the hang may still succeed)
    assert t_hang - 0.3 <= gaps[0]["start"] <= t_hang + 0.1
    assert t_back - 0.7 <= gaps[0]["end"] <= t_back + 0.1, (gaps, t_back)
