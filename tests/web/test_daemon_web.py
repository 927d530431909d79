"""The dashboard and /metrics of a real cluster daemon (``kembar daemon``, a process of its
own) on the loopback interface, beside a real disk pair: scraped over HTTP and parsed
with prometheus-client's parser, the password enforced, standby posted from the page's
form of a request (with its CSRF token) moving the group off the node.

node1 of the cluster is ``n1`` of the disk pair (127.0.0.1); its peer ``n2`` is played by a
thread that sends n2's signed heartbeats (as in the hostile heartbeat test), while n2's
disk process is real.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kembar.daemon import control
from kembar.lab.pair import Pair, alive, wait_for
from kembar.manager.report import DiskReport, Report
from kembar.membership.authkeys import parse_authkeys
from kembar.membership.packet import Packet, encode
from tests.lomembership import authkeys_file, free_udp_port, lo_membership
from tests.web.servers import Client, basic, csrf_of, free_port

pytestmark = pytest.mark.slow

KEYS_TEXT = "auth 1\n1 sha256 kb-web-test-heartbeat-key\n"
PASSWORD = "kb-web-test-password-4567"
MiB = 2**20




class FakePeer:
    """n2's heartbeats to the daemon, every 100 ms, until stopped, with the report n2's
    manager would send: its real disk's state, no group."""

    def __init__(self, port: int, pair: Pair) -> None:
        self.port = port
        self.pair = pair
        self.keys = parse_authkeys(KEYS_TEXT)
        self.stopping = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.thread = threading.Thread(target=self._run, name="kb-fake-n2", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        seq = 0
        while not self.stopping.wait(0.1):
            seq += 1
            body = json.dumps({"m": self._report().encode()}).encode()
            pkt = Packet(1, "test", "n2", 11, seq, "up", int(time.time() * 1000), body)
            self.sock.sendto(encode(pkt, self.keys), ("127.0.0.1", self.port))

    def _report(self) -> Report:
        try:
            st = self.pair.st("n2")
        except Exception:  # noqa: BLE001 - its disk is down: say so
            return Report(disks={"r0": DiskReport("Down")})
        peer = st["peer"]
        connected = peer["connection"] == "Connected"
        uuids = st["uuids"]
        return Report(disks={"r0": DiskReport(
            st["disk_state"], connected and st["out_of_sync"] == 0 and
            st["disk_state"] == peer["disk_state"] == "UpToDate",
            connected and peer["role"] == "Primary", st["role"] == "Primary", connected,
            f"{int(uuids['current'], 16):016X}:{int(uuids['bitmap'], 16):016X}")})

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


class Node1:
    """The pair, n2's heartbeats and node1's cluster daemon, all stopped by ``stop``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hb_port = free_udp_port()
        self.web_port = free_port()
        keys = authkeys_file(root, KEYS_TEXT)
        pw = root / "kb-web.password"
        pw.write_text(PASSWORD + "\n")
        pw.chmod(0o600)
        extra = lo_membership(self.hb_port, keys, deadtime="1s", initdead="2s") + f"""
[groups.web]
preferred = "n1"
[[groups.web.resources]]
type = "disk"
disk = "r0"
monitor_interval = "1s"

[web]
listen = ["127.0.0.1:{self.web_port}"]
password_file = "{pw}"
"""
        self.pair = Pair(root, size=16 * MiB, extra=extra)
        self.peer: FakePeer | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self.log = root / "daemon.log"
        self.run_dir = self.pair.run_dir("n1")

    def start(self) -> None:
        self.pair.start_fresh()
        self.pair.kembar("n1", "secondary", "r0")  # the daemon's group promotes it
        self.peer = FakePeer(self.hb_port, self.pair)
        state = self.root / "state"
        state.mkdir()
        with open(self.log, "wb") as log:
            self.daemon = subprocess.Popen(
                [sys.executable, "-m", "kembar", "daemon", "--config",
                 str(self.pair.configs["n1"]), "--node", "n1", "--run-dir", self.run_dir,
                 "--state-dir", str(state)], stdout=log, stderr=subprocess.STDOUT)

    def status(self) -> Any:
        return control.request(self.run_dir, {"op": "status"})

    def stop(self) -> None:
        try:
            if self.daemon is not None and self.daemon.poll() is None:
                os.kill(self.daemon.pid, signal.SIGTERM)
                try:
                    self.daemon.wait(20)
                except subprocess.TimeoutExpired:
                    os.kill(self.daemon.pid, signal.SIGKILL)
                    self.daemon.wait(10)
        finally:
            if self.peer is not None:
                self.peer.stop()
            self.pair.cleanup()


@pytest.fixture
def node1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node1]:
    # kb-, not kembar-test-: a concurrent test session's sweep unmounts the FUSE files of
    # every kembar-test- directory (see tests/disk/conftest.py's hw_pair)
    n = Node1(tmp_path_factory.mktemp("kb-web-daemon-"))
    try:
        n.start()
        yield n
    finally:
        n.stop()
        print("--- node1's daemon log ---\n" + n.log.read_text()[-6000:])
        shutil.rmtree(n.root, ignore_errors=True)


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_metrics_and_standby_from_the_dashboard_of_a_real_daemon(node1: Node1) -> None:
    wait_for(lambda: node1.status()["manager"]["groups"]["web"]["here"] == "running", 60,
             "the group to start on n1")
    assert node1.pair.st("n1")["role"] == "Primary"
    with node1.pair.client("n1", timeout=20) as disk:
        disk.write(0, os.urandom(MiB))
        disk.flush()
    c = Client("127.0.0.1", node1.web_port)
    # the password guards /metrics: none or a wrong one is 401, the right one 200
    assert c.get("/metrics")[0] == 401
    assert c.get("/metrics", headers=basic("wrong-password"))[0] == 401
    status, headers, body = c.get("/metrics", headers=basic(PASSWORD))
    assert status == 200, body
    text = body.decode()
    m = metrics(text)
    assert m[("kembar_node_up", (("node", "n1"),))] == 1
    assert m[("kembar_node_up", (("node", "n2"),))] == 1
    assert m[("kembar_link_up", (("link", "lo"), ("node", "n2")))] == 1
    assert m[("kembar_group_running", (("group", "web"), ("node", "n1")))] == 1
    assert m[("kembar_resource_transitions_total", (("action", "start"), ("group", "web"),
                                                    ("resource", "disk r0"),
                                                    ("result", "ok")))] == 1
    assert m[("kembar_disk_status_ok", (("disk", "r0"),))] == 1
    assert m[("kembar_disk_role", (("disk", "r0"), ("role", "Primary")))] == 1
    assert m[("kembar_disk_connection", (("disk", "r0"), ("state", "Connected")))] == 1
    assert m[("kembar_disk_sent_bytes_total", (("disk", "r0"),))] >= MiB
    assert m[("kembar_disk_out_of_sync_bytes", (("disk", "r0"),))] == 0
    assert m[("kembar_disk_write_latency_seconds_count", (("disk", "r0"),
                                                          ("protocol", "C")))] >= 1
    assert m[("kembar_dropped_packets_total", (("reason", "own"),))] >= 1
    assert PASSWORD not in text and "kb-web-test-heartbeat-key" not in text
    # standby from the page: log in, take the page's CSRF token, post
    assert c.login("wrong-password") == 401
    assert c.login(PASSWORD) == 303
    status, _, page = c.get("/")
    assert status == 200 and PASSWORD.encode() not in page
    assert c.post_json("/api/standby", {"on": True}, None)[0] == 403
    status, doc = c.post_json("/api/standby", {"on": True}, csrf_of(page))
    assert status == 200 and doc["ok"], doc
    wait_for(lambda: node1.status()["manager"]["groups"]["web"]["here"] == "stopped", 30,
             "the group to leave n1")
    assert node1.pair.st("n1")["role"] == "Secondary"
    m = metrics(c.get("/metrics", headers=basic(PASSWORD))[2].decode())
    assert m[("kembar_standby", ())] == 1
    assert m[("kembar_group_running", (("group", "web"), ("node", "n1")))] == 0
    assert m[("kembar_resource_transitions_total", (("action", "stop"), ("group", "web"),
                                                    ("resource", "disk r0"),
                                                    ("result", "ok")))] == 1
    # a clean stop closes the port; nothing secret or unexpected was logged
    assert node1.daemon is not None
    os.kill(node1.daemon.pid, signal.SIGTERM)
    assert node1.daemon.wait(30) == 0
    wait_for(lambda: not alive(node1.daemon.pid) if node1.daemon else True, 10, "exit")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", node1.web_port), timeout=2).close()
    log = node1.log.read_text()
    assert f"web: dashboard and /metrics on http://127.0.0.1:{node1.web_port}/" in log
    assert "login from 127.0.0.1 refused (wrong password)" in log
    assert PASSWORD not in log and "BUG:" not in log and "Traceback" not in log
