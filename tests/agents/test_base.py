"""The bounded command runner every agent uses, and ``make_agent``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kembar.agents import AgentContext, AgentError, make_agent
from kembar.agents.base import run_command
from kembar.agents.disk import DiskAgent
from kembar.agents.filesystem import FilesystemAgent
from kembar.agents.ip import IpAgent
from kembar.agents.probe import ProbeAgent
from kembar.agents.script import ScriptAgent
from kembar.agents.service import CommandService
from kembar.config.groups import GroupConfig
from kembar.lab.pair import wait_for
from tests.agents.conftest import alive, kill_quietly


def test_make_agent_covers_every_resource_type() -> None:
    group = GroupConfig.model_validate({"preferred": "n1", "resources": [
        {"type": "disk", "disk": "r0"},
        {"type": "filesystem", "device": "/dev/kembar/r0", "directory": "/srv/data"},
        {"type": "ip", "address": "198.18.0.100/24", "interface": "eth0"},
        {"type": "service", "name": "web", "command": ["true"]},
        {"type": "script", "path": "/bin/true"},
        {"type": "probe", "url": "http://198.18.0.100/"},
    ]})
    agents = [make_agent(r, AgentContext(group="web")) for r in group.resources]
    assert [type(a) for a in agents] == [DiskAgent, FilesystemAgent, IpAgent, CommandService,
                                         ScriptAgent, ProbeAgent]
    assert [a.name for a in agents] == [r.describe() for r in group.resources]
    assert agents[2].name == "ip 198.18.0.100/24 on eth0"
    assert [a.timeout for a in agents] == [60.0] * 6


def test_output_and_exit_status() -> None:
    res = run_command(["sh", "-c", "echo out; echo err >&2; exit 4"], 5, "t")
    assert (res.returncode, res.stdout, res.stderr, res.reason()) == (4, "out\n", "err\n", "err")


def test_a_daemon_left_behind_does_not_stall_the_runner(kbdir: Path) -> None:
    pidfile = kbdir / "kb-agt-bg.pid"
    t0 = time.monotonic()
    res = run_command(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; echo started"], 5, "t")
    try:
        assert res.stdout == "started\n" and time.monotonic() - t0 < 2
    finally:
        kill_quietly(int(pidfile.read_text()))


def test_expiry_kills_the_whole_session(kbdir: Path) -> None:
    pidfile = kbdir / "kb-agt-bg.pid"
    t0 = time.monotonic()
    with pytest.raises(AgentError, match=r"^t: `sh -c .*` did not finish within 0\.5s"):
        run_command(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"], 0.5, "t")
    assert time.monotonic() - t0 < 2.0
    pid = int(pidfile.read_text())
    try:
        wait_for(lambda: not alive(pid), 5, "the background child to die")
    finally:
        kill_quietly(pid)


def test_programs_that_cannot_run(kbdir: Path) -> None:
    with pytest.raises(AgentError, match="t: /nonexistent/kb-agt-x not found"):
        run_command(["/nonexistent/kb-agt-x"], 5, "t")
    plain = kbdir / "kb-agt-plain"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(AgentError, match="kb-agt-plain is not executable"):
        run_command([str(plain)], 5, "t")
    with pytest.raises(AgentError, match="no time left"):
        run_command(["true"], 0, "t")
