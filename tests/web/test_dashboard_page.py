"""The dashboard page in headless Chromium against a fake daemon on 127.0.0.1 (no lab):
what it shows of a disk in resync and of a disk that does not answer, that the daemon's
texts are shown as text (never run as HTML), and that a new event reaches the open page
without a reload."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from kembar.config.web import WebConfig
from tests.web.servers import FakeDaemon, Served, free_port

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (os.path.exists("/usr/bin/chromium") and os.path.exists("/usr/bin/chromedriver")),
    reason="Debian's chromium and chromium-driver are not installed (make test installs them)")]

BROWSER = str(Path(__file__).with_name("browser.py"))
HOSTILE = '<img src=x onerror="window.kbInjected = 1">'


class LocalBrowser:
    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="kb-chromium-")
        self.proc = subprocess.Popen([sys.executable, BROWSER, "--profile", self.profile],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._reply(60).get("ready")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def _reply(self, timeout: float) -> dict[str, Any]:
        line = self.lines.get(timeout=timeout)
        assert line, "the browser stopped"
        return dict(json.loads(line))

    def do(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        reply = self._reply(60)
        assert reply["ok"], f"{op} {args}: {reply}"
        return reply

    def js(self, script: str) -> Any:
        return self.do("js", script=script)["value"]

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
            self.proc.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(10)
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def page() -> Iterator[tuple[Served, LocalBrowser]]:
    daemon = FakeDaemon()
    daemon.status["events"].append({"time": 1.7e9, "event": "Decision", "text": HOSTILE})
    port = free_port()
    served = Served(WebConfig.model_validate({"listen": [f"127.0.0.1:{port}"]}), daemon)
    browser: LocalBrowser | None = None
    try:
        browser = LocalBrowser()
        browser.do("get", url=f"http://127.0.0.1:{port}/")
        browser.do("wait", js="document.querySelector('#live.live')", timeout=15)
        yield served, browser
    finally:
        if browser is not None:
            browser.close()
        served.stop()


def test_disks_in_resync_and_down(page: tuple[Served, LocalBrowser]) -> None:
    _, b = page
    progress = b.js("const p = document.querySelector('#disk-r0 progress'); "
                    "return p && p.value")
    assert progress == pytest.approx(27.3)
    text = b.js("return document.querySelector('#disk-r0').innerText")
    assert "SyncSource" in text and "4.0 MiB/s" in text and "8.0 MiB left" in text
    assert "Primary" in text and "UpToDate" in text
    down = b.js("return document.querySelector('#disk-r1').innerText")
    assert "not answering" in down and "disk r1 is not up on this node" in down


def test_texts_are_shown_as_text(page: tuple[Served, LocalBrowser]) -> None:
    _, b = page
    events = b.js("return document.querySelector('#events').innerText")
    assert HOSTILE in events
    assert b.js("return window.kbInjected === undefined && "
                "!document.querySelector('#events img')")


def test_a_new_event_reaches_the_open_page(page: tuple[Served, LocalBrowser]) -> None:
    served, b = page
    b.js("window.kbNotReloaded = true; return true")
    assert b.js("return document.querySelector('#node-node2').dataset.state") == "dead"
    node2 = served.daemon.status["nodes"]["node2"]
    node2["state"], node2["reason"] = "up", ""
    served.daemon.status["events"].append({"time": 1.7e9 + 5, "event": "NodeUp",
                                           "text": "node2 is up again"})
    served.daemon.events += 1
    seconds = b.do("wait", js="document.querySelector('#node-node2').dataset.state === 'up'",
                   timeout=10)["seconds"]
    assert seconds < 2
    assert b.js("return window.kbNotReloaded === true")
    assert "node2 is up again" in b.js("return document.querySelector('#events').innerText")
