"""The ``script`` agent: Heartbeat resource.d scripts and OCF agents, written by the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from kembar.agents import AgentContext, AgentError, make_agent
from kembar.agents.base import Agent
from kembar.agents.script import says_running
from kembar.config.groups import ScriptResource
from tests.agents.conftest import HB_SCRIPT, OCF_SCRIPT, write_script


def agent(ctx: AgentContext, path: str, *args: str, ocf: bool = False) -> Agent:
    res = ScriptResource.model_validate(dict(type="script", path=path, args=list(args), ocf=ocf))
    return make_agent(res, ctx)


@pytest.mark.parametrize("output, running", [
    ("resource is running", True), ("Running", True), ("OK", True), ("status: OK\n", True),
    ("resource is not running", False), ("Not Running", False), ("stopped", False),
    ("Stopped (was running)", False), ("", False), ("unknown", False), ("ok", False),
])
def test_status_output_is_read_as_heartbeat_does(output: str, running: bool) -> None:
    assert says_running(output) is running


def test_heartbeat_script_args_and_status(ctx: AgentContext, kbdir: Path) -> None:
    script = write_script(kbdir / "kb-agt-hb", HB_SCRIPT)
    state = kbdir / "kb-agt-hb-state"
    a = agent(ctx, str(script), str(state), "198.18.0.100")
    assert a.name == f"script {script}::{state}::198.18.0.100"
    assert a.monitor(5) is False
    a.start(5)
    assert state.read_text() == "198.18.0.100\n"
    assert a.monitor(5) is True
    a.start(5)  # status says running: no second start
    a.stop(5)
    assert a.monitor(5) is False
    a.stop(5)
    calls = Path(f"{state}.log").read_text().splitlines()
    assert [c.split()[-1] for c in calls] == ["status", "status", "start", "status", "status",
                                              "stop", "status", "stop"]
    assert calls[2] == f"{state} 198.18.0.100 start"


def test_heartbeat_script_failures(ctx: AgentContext, kbdir: Path) -> None:
    script = write_script(kbdir / "kb-agt-hb", HB_SCRIPT)
    state = kbdir / "kb-agt-hb-state"
    a = agent(ctx, str(script), str(state), "x")
    Path(f"{state}.fail-start").touch()
    with pytest.raises(AgentError, match="start exited 1: no luck"):
        a.start(5)
    Path(f"{state}.fail-start").unlink()
    a.start(5)
    Path(f"{state}.fail-stop").touch()
    with pytest.raises(AgentError, match="stop exited 1: stuck"):
        a.stop(5)  # and status still says running
    state.unlink()
    a.stop(5)  # stop fails, but status says stopped: forgiven, as Heartbeat would


def test_heartbeat_script_found_by_name(ctx: AgentContext, kbdir: Path) -> None:
    write_script(Path(ctx.ha_resource_dir) / "kb-agt-named", HB_SCRIPT)
    state = kbdir / "kb-agt-named-state"
    a = agent(ctx, "kb-agt-named", str(state), "y")
    a.start(5)
    assert a.monitor(5) is True
    a.stop(5)
    with pytest.raises(AgentError, match="no such script .*kb-agt-absent"):
        agent(ctx, "kb-agt-absent").start(5)


def test_a_hanging_script_is_killed_at_the_timeout(ctx: AgentContext, kbdir: Path) -> None:
    script = write_script(kbdir / "kb-agt-hang", "#!/bin/sh\nsleep 60\n")
    with pytest.raises(AgentError, match=r"did not finish within 0\.5s \(killed\)"):
        agent(ctx, str(script)).monitor(0.5)


def test_ocf_agent(ctx: AgentContext, kbdir: Path) -> None:
    script = write_script(kbdir / "kb-agt-ocf-ra", OCF_SCRIPT)
    state = kbdir / "kb-agt-ocf-state"
    a = agent(ctx, str(script), f"state={state}", "ip=198.18.0.100", ocf=True)
    assert a.monitor(5) is False
    a.start(5)
    assert a.monitor(5) is True
    env = dict(line.split("=", 1) for line in Path(f"{state}.env").read_text().splitlines())
    assert env["OCF_ROOT"] == ctx.ocf_root
    assert env["OCF_RESOURCE_INSTANCE"] == "kb-agt-g-kb-agt-ocf-ra"
    assert env["OCF_RESOURCE_TYPE"] == "kb-agt-ocf-ra"
    assert env["OCF_RESKEY_ip"] == "198.18.0.100"
    assert env["OCF_RESKEY_CRM_meta_timeout"] == "5000"
    a.stop(5)
    assert a.monitor(5) is False
    a.stop(5)
    Path(f"{state}.broken").touch()
    with pytest.raises(AgentError, match=r"monitor exited 1 \(generic error\): confused"):
        a.monitor(5)


def test_ocf_exit_codes_and_bad_arguments(ctx: AgentContext, kbdir: Path) -> None:
    write_script(Path(ctx.ocf_root) / "resource.d" / "kb-agt" / "Thing", OCF_SCRIPT)
    state = kbdir / "kb-agt-ocf-state"
    a = agent(ctx, "kb-agt/Thing", f"state={state}", "start_rc=5", ocf=True)
    with pytest.raises(AgentError, match=r"start exited 5 \(not installed\)"):
        a.start(5)
    with pytest.raises(AgentError, match="argument 'loose' is not name=value"):
        agent(ctx, "kb-agt/Thing", "loose", ocf=True).start(5)
