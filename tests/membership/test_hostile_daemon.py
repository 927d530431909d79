"""Hostile heartbeats against a real cluster daemon (issue 8): rejected, logged, counted.

The daemon runs in this process on the loopback interface (a ucast medium on ``lo``, a
free UDP port); a plain UDP socket plays the attacker.  Each kind of hostile datagram
must leave membership as it was, produce a ``dropped a packet (<reason>)`` warning, and
be counted under its reason in ``dropped`` of the daemon's status (read through the real
control socket, as ``kembar status`` does).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from kembar.config.model import parse_cluster
from kembar.daemon import control
from kembar.daemon.main import Daemon
from kembar.membership.authkeys import parse_authkeys
from kembar.membership.packet import MAX_PACKET, Packet, encode
from tests.lomembership import authkeys_file, free_udp_port, lo_membership

KEYS_TEXT = "auth 1\n1 sha256 the-cluster-secret\n"
KEYS = parse_authkeys(KEYS_TEXT)
WRONG = parse_authkeys("auth 1\n1 sha256 a-guess\n")




def _config(tmp: Path, port: int) -> Any:
    keys = authkeys_file(tmp, KEYS_TEXT)
    return parse_cluster(f"""
[cluster]
name = "web"
[nodes.node1]
[nodes.node2]
{lo_membership(port, keys)}""", "hostile.toml")


def hb(node: str, seq: int, keys: Any = KEYS, cluster: str = "web", inc: int = 7) -> bytes:
    return encode(Packet(1, cluster, node, inc, seq, "up", 0), keys)


async def _scenario(daemon: Daemon, port: int, run_dir: str
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    task = asyncio.create_task(daemon.run())
    for _ in range(200):
        if daemon.running:
            break
        await asyncio.sleep(0.01)
    assert daemon.running
    status = lambda: asyncio.to_thread(control.request, run_dir, {"op": "status"})  # noqa: E731
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        def send(data: bytes) -> None:
            out.sendto(data, ("127.0.0.1", port))

        send(hb("node2", 5))  # the real peer, once: node2 is up at (7, 5)
        await asyncio.sleep(0.2)
        before = await status()
        send(hb("mallory", 1))  # (a) a host that is not in the node list
        send(hb("node2", 5))  # (b) a replay: the same packet again ...
        send(hb("node2", 4))  # ... and an older one
        send(hb("node2", 6, keys=WRONG))  # (c) a wrong digest (another secret)
        good = bytearray(hb("node2", 7))
        good[-1] ^= 1
        send(bytes(good))  # (c) a digest flipped in transit
        send(b"\0" * (MAX_PACKET + 1))  # (d) oversized
        send(hb("node2", 8)[:-1] + b"\0" * 2000)  # (d) oversized, a real packet padded
        send(hb("node2", 9, cluster="other"))  # another cluster on the same port
        for _ in range(100):
            after = await status()
            if sum(n - before["dropped"].get(r, 0) for r, n in after["dropped"].items()
                   if r != "own") >= 8:
                break
            await asyncio.sleep(0.05)
        return before, after
    finally:
        out.close()
        daemon.stop()
        await asyncio.wait_for(task, 10)


@pytest.mark.skipif(not hasattr(socket, "SO_BINDTODEVICE"), reason="Linux only")
def test_hostile_heartbeats_are_rejected_logged_and_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_udp_port()
    cfg = _config(tmp_path, port)
    run_dir, state_dir = str(tmp_path / "run"), str(tmp_path / "state")
    Path(state_dir).mkdir()
    daemon = Daemon(cfg, "node1", run_dir, state_dir)
    caplog.set_level(logging.WARNING, logger="kembar.daemon")
    before, after = asyncio.run(_scenario(daemon, port, run_dir))

    grown = {r: n - before["dropped"].get(r, 0) for r, n in after["dropped"].items()
             if n != before["dropped"].get(r, 0) and r != "own"}  # own: our looped-back beats
    assert grown == {"unknown-node": 1, "replay": 2, "mac": 2, "oversize": 2, "cluster": 1}, \
        after["dropped"]
    # rejected: node2 is as it was, nobody else joined, nothing was accepted
    assert after["accepted"] == before["accepted"]
    assert set(after["nodes"]) == {"node2"}
    fixed = ("state", "reason", "incarnation", "late", "ping")
    assert [after["nodes"]["node2"][k] for k in fixed] == \
        [before["nodes"]["node2"][k] for k in fixed]
    assert after["nodes"]["node2"]["state"] == "up" and after["members"] == ["node1", "node2"]
    assert after["nodes"]["node2"]["incarnation"] == 7
    # logged: one warning per reason (rate-limited), naming the sender's address
    warnings = [r.getMessage() for r in caplog.records if r.name == "kembar.daemon"
                and r.levelno == logging.WARNING]
    for reason in grown:
        lines = [w for w in warnings if w.startswith(f"dropped a packet ({reason}) ")]
        assert len(lines) == 1, (reason, warnings)
        assert "from 127.0.0.1 on lo" in lines[0]
    assert any("mallory@web" in w for w in warnings)  # authenticated: the name is shown
    assert "the-cluster-secret" not in caplog.text and "a-guess" not in caplog.text
