"""The ``disk`` agent's monitor on a Diskless Primary: keep serving, or fail over at once."""

from __future__ import annotations

from typing import Any

import pytest

from kembar.agents import AgentContext, make_agent
from kembar.agents.base import Agent, FailoverNow
from kembar.config.groups import DiskResource


class FakeClient:
    status: dict[str, Any] = {}

    def __init__(self, *args: object, **kw: object) -> None:
        pass

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def control(self, verb: str) -> Any:
        assert verb == "status"
        return self.status


def agent(ctx: AgentContext, monkeypatch: pytest.MonkeyPatch, **status: Any) -> Agent:
    monkeypatch.setattr("kembar.agents.disk.DiskClient", FakeClient)
    monkeypatch.setattr(FakeClient, "status", status)
    return make_agent(DiskResource.model_validate(dict(type="disk", disk="r0")), ctx)


def test_diskless_primary_under_detach_keeps_running(ctx: AgentContext,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    a = agent(ctx, monkeypatch, role="Primary", disk_state="Diskless", on_io_error="detach",
              diskless_reason="write of 4096 bytes at offset 0 failed")
    assert a.monitor(5) is True


def test_diskless_primary_under_failover_fails_over_now(ctx: AgentContext,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    a = agent(ctx, monkeypatch, role="Primary", disk_state="Diskless", on_io_error="failover",
              diskless_reason="read of 4096 bytes at offset 0 failed")
    with pytest.raises(FailoverNow, match="Diskless .*read of 4096.*failover"):
        a.monitor(5)


@pytest.mark.parametrize("status, running", [
    (dict(role="Primary", disk_state="UpToDate", on_io_error="failover"), True),
    (dict(role="Secondary", disk_state="Diskless", on_io_error="failover"), False),
])
def test_other_states_are_unchanged(ctx: AgentContext, monkeypatch: pytest.MonkeyPatch,
                                    status: dict[str, Any], running: bool) -> None:
    assert agent(ctx, monkeypatch, **status).monitor(5) is running
