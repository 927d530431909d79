"""The dashboard in headless Chromium, on the lab: the page loads after the login, shows
the lab's state (both nodes alive, the web group on node1 with its resources, the disk
Primary and connected), moves the group with the Standby button after its confirmation,
and — without a reload — shows node2 dead within a few seconds of its crash.

The browser runs on the lab's client machine (``tests/web/browser.py``, driven over its
stdin/stdout), where node1's address is; its profile lives in the lab's directory, so the
lab's own check for leftovers also finds a Chromium that outlived the test.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from kembar.lab import cluster
from kembar.lab.lab import Lab
from kembar.lab.machine import env_for_machine

pytestmark = pytest.mark.slow

BROWSER = str(Path(__file__).with_name("browser.py"))
CHROMIUM_MISSING = not (os.path.exists("/usr/bin/chromium") and
                        os.path.exists("/usr/bin/chromedriver"))


class Browser:
    """``browser.py`` on the lab's client machine, one command at a time."""

    def __init__(self, lab: Lab, profile: Path, log: Path) -> None:
        self.profile = profile
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            lab.exec_argv("client", [sys.executable, BROWSER, "--profile", str(profile)]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
            env=env_for_machine())
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, name="kb-browser-out", daemon=True).start()
        first = self._reply(60)
        assert first.get("ready"), first

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def _reply(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the browser did not answer within {timeout:.0f} s") from None
        if not line:
            raise AssertionError(f"the browser stopped: {self.stderr()}")
        return dict(json.loads(line))

    def stderr(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def do(self, op: str, timeout: float = 30, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        reply = self._reply(timeout + 30)
        assert reply["ok"], f"{op} {args}: {reply}"
        return reply

    def js(self, script: str) -> Any:
        return self.do("js", script=script)["value"]

    def wait(self, js: str, timeout: float) -> float:
        return float(self.do("wait", js=js, timeout=timeout)["seconds"])

    def close(self) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:  # nsenter; what runs inside goes with the lab
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def browser_on() -> Iterator[Callable[[Lab], Browser]]:
    made: list[Browser] = []

    def make(lab: Lab) -> Browser:
        profile = lab.dir / "kb-chromium-profile"
        profile.mkdir()
        b = Browser(lab, profile, lab.dir / "kb-browser.log")
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def web_lab(make_lab: Callable[..., Lab], password: str) -> Lab:
    """The full web group (disk, filesystem, site, VIP, probe) on node1, node1's daemon
    serving the dashboard on its address with a password."""
    lab = make_lab(disk_size=16 * 2**20)
    mt = cluster.membership_toml(lab.plan, "bcast", keepalive="100ms", deadtime="500ms",
                                 initdead="3s")
    gt = cluster.group_toml(lab.plan, monitor="1s")
    cluster.install(lab, membership=mt, groups=gt, auto_failback=False,
                    web=cluster.web_toml(lab.plan, ("node1",)), web_password=password)
    cluster.prepare_site(lab)
    for n in lab.plan.node_names:
        cluster.start_daemon(lab, n)
    cluster.wait(lambda: cluster.runs_on(lab) == ["node1"], 60, "the group to start on node1")
    return lab


def node_state(name: str) -> str:
    return f"(document.querySelector('#node-{name}') || {{dataset: {{}}}}).dataset.state"


GROUP_ON = "(document.querySelector('#group-web') || {dataset: {}}).dataset.runningOn"


@pytest.mark.skipif(CHROMIUM_MISSING, reason="Debian's chromium and chromium-driver are "
                                             "not installed (make test installs them)")
def test_dashboard_in_headless_chromium_follows_the_lab(
        make_lab: Callable[..., Lab], browser_on: Callable[[Lab], Browser]) -> None:
    password = "kb-" + secrets.token_urlsafe(18)
    lab = web_lab(make_lab, password)
    url = f"http://{lab.plan.machine('node1').addresses['public']}:{cluster.WEB_PORT}/"
    b = browser_on(lab)
    # the login first; a wrong password is refused
    assert b.do("get", url=url)["url"].endswith("/login")
    b.do("type", css="#password", text="not-the-password")
    b.do("click", css="#submit")
    b.wait("document.querySelector('#error') && !document.querySelector('#error').hidden", 10)
    b.do("type", css="#password", text=password)
    b.do("click", css="#submit")
    b.wait("location.pathname === '/' && document.querySelector('#nodes')", 15)
    # the lab's state: both nodes alive, the group on node1 with its five resources
    b.wait(f"{node_state('node1')} === 'up' && {node_state('node2')} === 'up' && "
           f"{GROUP_ON} === 'node1' && document.querySelector('#live.live')", 15)
    resources = b.js("return [...document.querySelectorAll('#group-web tr[data-resource]')]"
                     ".map(r => [r.dataset.resource, r.dataset.state])")
    assert [r[0].split()[0] for r in resources] == \
        ["disk", "filesystem", "service", "ip", "probe"], resources
    assert all(state in ("started", "watching") for _, state in resources), resources
    disk = b.js("const d = document.querySelector('#disk-r0'); "
                "return d && [d.dataset.role, d.dataset.diskState, d.dataset.connection]")
    assert disk == ["Primary", "UpToDate", "Connected"], disk
    assert password not in b.js("return document.documentElement.outerHTML")
    # Standby asks first; Cancel does nothing, Confirm moves the group to node2
    b.do("click", css="#standby")
    b.wait("document.querySelector('#confirm').open", 5)
    b.do("click", css="#confirm-cancel")
    b.wait("!document.querySelector('#confirm').open", 5)
    b.do("click", css="#standby")
    b.wait("document.querySelector('#confirm').open", 5)
    b.do("click", css="#confirm-ok")
    b.wait("document.querySelector('#message').textContent.includes('standby on')", 10)
    b.wait(f"{GROUP_ON} === 'node2'", 60)
    assert cluster.runs_on(lab) == ["node2"]
    # a crash of node2: the page, not reloaded, shows it dead within a few seconds
    b.js("window.kbNotReloaded = true; return true")
    lab.crash("node2")
    seconds = b.wait(f"{node_state('node2')} === 'dead'", 15)
    assert seconds < 5, seconds
    assert b.js("return window.kbNotReloaded === true")
    b.wait(f"{GROUP_ON} === ''", 10)  # node1 is in standby: the group runs nowhere
    events = b.js("return [...document.querySelectorAll('#events li')].map(e => e.dataset.event)")
    assert "NodeDead" in events, events
