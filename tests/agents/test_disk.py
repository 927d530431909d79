"""The ``disk`` agent: no disk process, and one real pair (n1/n2 on 127.0.0.1/127.0.0.2)."""

from __future__ import annotations

import shutil
import threading
from dataclasses import replace
import time
from pathlib import Path
from typing import Iterator

import pytest

from kembar.agents import AgentContext, AgentError, make_agent
from kembar.agents.base import Agent
from kembar.config.groups import DiskResource
from kembar.lab.pair import MiB, Pair


def disk_agent(run_dir: str, disk: str = "r0") -> Agent:
    return make_agent(DiskResource.model_validate(dict(type="disk", disk=disk)),
                      AgentContext(run_dir=run_dir))


def test_no_disk_process(ctx: AgentContext, tmp_path: Path) -> None:
    ctx = replace(ctx, config=str(tmp_path / "kb-agt-none.toml"), node="n1")
    agent = make_agent(DiskResource.model_validate(dict(type="disk", disk="kb-agt-r9")), ctx)
    with pytest.raises(AgentError, match=r"^disk kb-agt-r9: disk kb-agt-r9 is not up on "
                                         r"this node \(no process answers on .*\)"):
        agent.monitor(2)
    # start tries to bring it up (as the OCF drbd agent's start does), and says why not
    with pytest.raises(AgentError, match=r"^disk kb-agt-r9: no disk process ran, and `kembar "
                                         r"disk up` failed: .*kb-agt-none.toml"):
        agent.start(10)
    agent.stop(2)  # nothing can be Primary without its process: stopped


@pytest.fixture
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = Pair(tmp_path_factory.mktemp("kb-agt-pair"), size=8 * MiB)
    try:
        yield p
    finally:
        p.cleanup()
        shutil.rmtree(p.root, ignore_errors=True)


@pytest.mark.slow
def test_promotion_waits_for_the_peer_to_let_go(pair: Pair) -> None:
    pair.start_fresh("n1")
    a1, a2 = disk_agent(pair.run_dir("n1")), disk_agent(pair.run_dir("n2"))
    assert (a1.monitor(5), a2.monitor(5)) == (True, False)
    a1.start(5)  # already Primary

    t0 = time.monotonic()
    with pytest.raises(AgentError, match="disk r0: primary refused: .*n1 is Primary"):
        a2.start(2.5)
    assert 1.5 < time.monotonic() - t0 < 3.5  # retried, within the timeout

    # drbddisk's case: the old Primary lets go a moment later; the retries bridge it.
    errors: list[BaseException] = []

    def demote_later() -> None:
        time.sleep(1.2)
        try:
            a1.stop(10)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    demoter = threading.Thread(target=demote_later)
    demoter.start()
    a2.start(10)
    demoter.join()
    assert errors == []
    assert (a1.monitor(5), a2.monitor(5)) == (False, True)
    assert Path(pair.device("n2")).exists()
    a2.stop(10)
    a2.stop(10)
    assert a2.monitor(5) is False


@pytest.mark.slow
def test_start_brings_a_killed_disk_process_up_again_then_promotes(
        pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """The torture's disk-kill of the owner: the group's restart brings the disk back."""
    pair.start_fresh("n1")
    pair.kill("n1")  # SIGKILL: its FUSE mount and loop device left behind
    monkeypatch.setenv("KEMBAR_DEV_DIR", pair.dev_dir("n1"))
    agent = make_agent(DiskResource.model_validate(dict(type="disk", disk="r0")),
                       AgentContext(run_dir=pair.run_dir("n1"), config=str(pair.configs["n1"]),
                                    node="n1"))
    agent.start(30)
    pair.started.append(pair.pid("n1"))  # the agent's `disk up` started it: killed at the end
    assert agent.monitor(5) is True
    st = pair.st("n1")
    assert st["role"] == "Primary" and st["peer"]["connection"] == "Connected", st
    assert Path(pair.device("n1")).exists()
    agent.stop(10)
