"""One contract for every agent cheap enough to run here (ClusterLabs' ocf-tester idea):
stop when stopped succeeds, start is idempotent, monitor follows, all within the timeout.

The ``ip``, ``filesystem`` and ``disk`` agents keep the same contract in their own tests
(they need namespaces, a loop device, a disk pair).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from kembar.agents import AgentContext, make_agent
from kembar.agents.base import Agent
from kembar.config.groups import ScriptResource, ServiceResource
from tests.agents.conftest import HB_SCRIPT, LSB_SCRIPT, OCF_SCRIPT, write_script


def command_service(ctx: AgentContext, root: Path) -> Agent:
    return make_agent(ServiceResource.model_validate(dict(
        type="service", name="kb-agt-sleep",
        command=[sys.executable, "-c", "import time; time.sleep(60)"])), ctx)


def lsb_service(ctx: AgentContext, root: Path) -> Agent:
    write_script(Path(ctx.init_dir) / "kb-agt-lsb", LSB_SCRIPT)
    return make_agent(ServiceResource.model_validate(dict(type="service", name="kb-agt-lsb")), ctx)


def heartbeat_script(ctx: AgentContext, root: Path) -> Agent:
    script = write_script(root / "kb-agt-hb", HB_SCRIPT)
    return make_agent(ScriptResource.model_validate(dict(
        type="script", path=str(script), args=[str(root / "kb-agt-hb-state"), "a"])), ctx)


def ocf_script(ctx: AgentContext, root: Path) -> Agent:
    script = write_script(root / "kb-agt-ocf", OCF_SCRIPT)
    return make_agent(ScriptResource.model_validate(dict(
        type="script", path=str(script), ocf=True,
        args=[f"state={root / 'kb-agt-ocf-state'}"])), ctx)


@pytest.mark.parametrize("build", [command_service, lsb_service, heartbeat_script, ocf_script])
def test_contract(build: Callable[[AgentContext, Path], Agent], ctx: AgentContext,
                  kbdir: Path) -> None:
    agent = build(ctx, kbdir)
    t0 = time.monotonic()
    try:
        assert agent.monitor(5) is False
        agent.stop(5)
        agent.start(5)
        assert agent.monitor(5) is True
        agent.start(5)
        assert agent.monitor(5) is True
        agent.stop(5)
        assert agent.monitor(5) is False
        agent.stop(5)
        assert agent.monitor(5) is False
    finally:
        agent.stop(5)
    assert time.monotonic() - t0 < 10
