"""A real cluster daemon runs its hooks: node_up and node_dead of a peer (played by a UDP
socket on the loopback interface), with a hook that hangs and one that fails beside them —
logged, counted, and the daemon's heartbeat timing and control socket unaffected."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kembar.cli.main import cli
from kembar.config.model import parse_cluster
from kembar.daemon import control
from kembar.daemon.main import Daemon
from kembar.lab.pair import alive
from kembar.membership.authkeys import parse_authkeys
from kembar.membership.packet import Packet, encode
from tests.lomembership import authkeys_file, free_udp_port, lo_membership
from tests.notify.hooks import HOOK, read_env

KEYS_TEXT = "auth 1\n1 sha256 kb-notify-test-secret\n"
KEYS = parse_authkeys(KEYS_TEXT)
DEADTIME = 1.0




def _config(tmp: Path, port: int) -> Any:
    keys = authkeys_file(tmp, KEYS_TEXT)
    hook = tmp / "hook.py"
    hook.write_text(HOOK)
    hang = tmp / "hang.sh"
    hang.write_text(f"#!/bin/sh\necho $$ > {tmp}/hang.pid\nexec sleep 600\n")
    hang.chmod(0o755)
    return parse_cluster(f"""
[cluster]
name = "web"
[nodes.node1]
[nodes.node2]
{lo_membership(port, keys, deadtime=f"{DEADTIME}s", initdead="2s")}
[notify]
timeout = "1500ms"
node_dead = ["{sys.executable}", "{hook}", "{tmp}"]
node_up = "{hang}"
any = ["/bin/sh", "-c", "echo no pager configured >&2; exit 7"]
""", "notify.toml")


def _heartbeat(seq: int) -> bytes:
    return encode(Packet(1, "web", "node2", 9, seq, "up", 0), KEYS)


async def _scenario(daemon: Daemon, port: int, run_dir: str, tmp: Path) -> dict[str, Any]:
    task = asyncio.create_task(daemon.run())
    for _ in range(200):
        if daemon.running:
            break
        await asyncio.sleep(0.01)
    assert daemon.running

    async def status() -> tuple[dict[str, Any], float]:
        t0 = time.monotonic()
        st = await asyncio.to_thread(control.request, run_dir, {"op": "status"})
        return st, time.monotonic() - t0

    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for seq in range(1, 6):  # node2 is up for half a second: node_up (its hook hangs)
            out.sendto(_heartbeat(seq), ("127.0.0.1", port))
            await asyncio.sleep(0.1)
        last_beat = time.time()
        for _ in range(100):  # while the node_up hook hangs, the daemon answers at once
            if (tmp / "hang.pid").exists():
                break
            await asyncio.sleep(0.05)
        st, took = await status()
        assert took < 0.5 and st["notify"]["running"] >= 1, (took, st["notify"])
        for _ in range(200):  # silence: node_dead after the deadtime; all hooks finish
            st, took = await status()
            assert took < 0.5
            n = st["notify"]
            if n["ok"] + n["failed"] + n["timed_out"] >= 4 and n["running"] == 0:
                break
            await asyncio.sleep(0.05)
        st["last_beat"] = last_beat
        shown = await asyncio.to_thread(CliRunner().invoke, cli, ["status", "--run-dir", run_dir],
                                        prog_name="kembar")
        st["shown"] = shown.output
        return st
    finally:
        out.close()
        daemon.stop()
        await asyncio.wait_for(task, 15)


@pytest.mark.skipif(not hasattr(socket, "SO_BINDTODEVICE"), reason="Linux only")
def test_node_up_and_node_dead_hooks_of_a_real_daemon(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    port = free_udp_port()
    cfg = _config(tmp_path, port)
    run_dir, state_dir = str(tmp_path / "run"), str(tmp_path / "state")
    Path(state_dir).mkdir()
    caplog.set_level("INFO")
    st = asyncio.run(_scenario(Daemon(cfg, "node1", run_dir, state_dir), port, run_dir,
                               tmp_path))

    # node_dead ran with the event in its environment
    env = read_env(tmp_path / "node1-node_dead-node_dead.env")
    assert env["KEMBAR_EVENT"] == "node_dead" and env["KEMBAR_NODE"] == "node2"
    assert env["KEMBAR_LOCAL_NODE"] == "node1" and env["KEMBAR_CLUSTER"] == "web"
    assert env["KEMBAR_TEXT"].startswith("node2 is dead: no heartbeat for")
    # the death was declared on time although a hook hung meanwhile
    dead = [e for e in st["events"] if e["event"] == "NodeDead"]
    assert len(dead) == 1 and dead[0]["time"] - st["last_beat"] <= DEADTIME + 0.4, dead
    # counted: node_dead ok; node_up killed at its timeout; `any` failed twice
    n = st["notify"]
    assert (n["ok"], n["failed"], n["timed_out"], n["not_started"], n["dropped"]) == \
        (1, 2, 1, 0, 0), n
    assert n["by_event"] == {"node_up": {"timed_out": 1, "failed": 1},
                             "node_dead": {"ok": 1, "failed": 1}}
    assert n["configured"] == ["any", "node_dead", "node_up"]
    assert not alive(int((tmp_path / "hang.pid").read_text()))
    assert "notify hooks (any, node_dead, node_up): 1 ok, 2 failed, 1 timed out, 0 not " \
           "started, 0 dropped; last failure: " in st["shown"]
    text = caplog.text
    assert "notify node_up: " in text and "still running after its timeout of 1.5 s: killed" \
        in text
    assert "notify node_dead (hook any): /bin/sh -c echo no pager configured >&2; exit 7: " \
           "exit status 7" in text and "output: no pager configured" in text
    assert "BUG:" not in text
