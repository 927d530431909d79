"""The group runner with fake agents: order, reverse stop, rollback, the step records."""

from __future__ import annotations

from typing import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kembar.agents.base import AgentError
from kembar.manager.group import GroupStartFailed, GroupStopFailed, Step, rollback_order, \
    start_group, stop_group, stop_order


class Fake:
    def __init__(self, name: str, log: list[tuple[str, str]], timeout: float = 5.0,
                 fail_start: bool = False, fail_stop: bool = False,
                 crash: bool = False) -> None:
        self.name = name
        self.log = log
        self._timeout = timeout
        self.fail_start = fail_start
        self.fail_stop = fail_stop
        self.crash = crash
        self.running = False
        self.timeouts: list[float] = []

    @property
    def timeout(self) -> float:
        return self._timeout

    def start(self, timeout: float) -> None:
        self.log.append((self.name, "start"))
        self.timeouts.append(timeout)
        if self.crash:
            raise RuntimeError("oops")
        if self.fail_start:
            raise AgentError(f"{self.name} would not start")
        self.running = True

    def stop(self, timeout: float) -> None:
        self.log.append((self.name, "stop"))
        self.timeouts.append(timeout)
        if self.fail_stop:
            raise AgentError(f"{self.name} would not stop")
        self.running = False


Record = tuple[str, str, bool, float, str]


def recorder() -> tuple[list[Record], Step]:
    steps: list[Record] = []

    def step(resource: str, action: str, ok: bool, seconds: float, message: str) -> None:
        steps.append((resource, action, ok, seconds, message))

    return steps, step


def fakes(n: int, log: list[tuple[str, str]], **kw: dict[int, bool]) -> list[Fake]:
    return [Fake(f"r{i}", log, timeout=10.0 + i,
                 **{k: v.get(i, False) for k, v in kw.items()})
            for i in range(n)]


def clock() -> Callable[[], float]:
    t = iter(range(0, 10_000, 2))
    return lambda: float(next(t))


def test_orders_are_pure() -> None:
    assert stop_order([1, 2, 3]) == [3, 2, 1]
    assert rollback_order([1, 2, 3, 4], 2) == [3, 2, 1]
    assert rollback_order([1, 2, 3], 0) == [1]


def test_start_in_order_with_each_resources_timeout_and_steps() -> None:
    log: list[tuple[str, str]] = []
    agents = fakes(3, log)
    steps, step = recorder()
    start_group(agents, step, clock=clock())
    assert log == [("r0", "start"), ("r1", "start"), ("r2", "start")]
    assert [a.timeouts for a in agents] == [[10.0], [11.0], [12.0]]
    assert steps == [("r0", "start", True, 2.0, ""), ("r1", "start", True, 2.0, ""),
                     ("r2", "start", True, 2.0, "")]


def test_stop_in_reverse() -> None:
    log: list[tuple[str, str]] = []
    steps, step = recorder()
    stop_group(fakes(3, log), step)
    assert log == [("r2", "stop"), ("r1", "stop"), ("r0", "stop")]
    assert [(s[0], s[1], s[2]) for s in steps] == [("r2", "stop", True), ("r1", "stop", True),
                                                   ("r0", "stop", True)]


def test_failed_start_rolls_back_what_started_and_the_failed_one() -> None:
    log: list[tuple[str, str]] = []
    agents = fakes(4, log, fail_start={2: True})
    steps, step = recorder()
    with pytest.raises(GroupStartFailed) as info:
        start_group(agents, step)
    assert log == [("r0", "start"), ("r1", "start"), ("r2", "start"),
                   ("r2", "stop"), ("r1", "stop"), ("r0", "stop")]
    assert info.value.resource == "r2" and "would not start" in info.value.reason
    assert info.value.unstopped == []
    assert [(s[0], s[1], s[2]) for s in steps] == [
        ("r0", "start", True), ("r1", "start", True), ("r2", "start", False),
        ("r2", "rollback", True), ("r1", "rollback", True), ("r0", "rollback", True)]
    assert steps[2][4] == "r2 would not start"
    assert not any(a.running for a in agents)


def test_rollback_failures_are_noted_and_do_not_stop_the_rollback() -> None:
    log: list[tuple[str, str]] = []
    agents = fakes(3, log, fail_start={2: True}, fail_stop={1: True})
    steps, step = recorder()
    with pytest.raises(GroupStartFailed) as info:
        start_group(agents, step)
    assert log[-3:] == [("r2", "stop"), ("r1", "stop"), ("r0", "stop")]
    assert info.value.unstopped == [("r1", "r1 would not stop")]
    assert "rollback failed: r1: r1 would not stop" in str(info.value)


def test_stop_continues_after_a_failure_and_lists_all() -> None:
    log: list[tuple[str, str]] = []
    agents = fakes(4, log, fail_stop={1: True, 3: True})
    steps, step = recorder()
    with pytest.raises(GroupStopFailed) as info:
        stop_group(agents, step)
    assert log == [("r3", "stop"), ("r2", "stop"), ("r1", "stop"), ("r0", "stop")]
    assert info.value.failures == [("r3", "r3 would not stop"), ("r1", "r1 would not stop")]
    assert [s[2] for s in steps] == [False, True, False, True]


def test_an_agent_bug_is_a_failure_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    log: list[tuple[str, str]] = []
    agents = fakes(2, log, crash={1: True})
    steps, step = recorder()
    with pytest.raises(GroupStartFailed) as info:
        start_group(agents, step)
    assert "RuntimeError: oops" in info.value.reason
    assert "BUG:" in caplog.text
    assert log[-2:] == [("r1", "stop"), ("r0", "stop")]


def test_a_broken_step_callback_does_not_break_the_group() -> None:
    log: list[tuple[str, str]] = []

    def step(*_: object) -> None:
        raise ValueError("recorder broke")

    start_group(fakes(2, log), step)
    assert log == [("r0", "start"), ("r1", "start")]


@given(n=st.integers(1, 8), data=st.data())
def test_any_failure_pattern(n: int, data: st.DataObject) -> None:
    fail_start = data.draw(st.none() | st.integers(0, n - 1), label="fail_start")
    fail_stop = data.draw(st.sets(st.integers(0, n - 1)), label="fail_stop")
    log: list[tuple[str, str]] = []
    agents = fakes(n, log, fail_start={fail_start: True} if fail_start is not None else {},
                   fail_stop={i: True for i in fail_stop})
    steps, step = recorder()
    if fail_start is None:
        start_group(agents, step)
        assert all(a.running for a in agents)
        assert log == [(f"r{i}", "start") for i in range(n)]
    else:
        with pytest.raises(GroupStartFailed) as info:
            start_group(agents, step)
        k = fail_start
        assert log == ([(f"r{i}", "start") for i in range(k + 1)]
                       + [(f"r{i}", "stop") for i in range(k, -1, -1)])
        assert info.value.resource == f"r{k}"
        assert info.value.unstopped == [(f"r{i}", f"r{i} would not stop")
                                        for i in range(k, -1, -1) if i in fail_stop]
        # Nothing after the failed one was touched; what could be stopped is stopped.
        assert all(not a.running for a in agents[k + 1:])
        assert {i for i, a in enumerate(agents) if a.running} == \
            {i for i in fail_stop if i < k}
    # Each call is recorded once, in the order made.
    assert [(s[0], "start" if s[1] == "start" else "stop") for s in steps] == log
    assert all(s[2] == (s[4] == "") for s in steps)

    log.clear()
    steps.clear()
    if fail_stop:
        with pytest.raises(GroupStopFailed) as stop_info:
            stop_group(agents, step)
        assert [r for r, _ in stop_info.value.failures] == \
            [f"r{i}" for i in sorted(fail_stop, reverse=True)]
    else:
        stop_group(agents, step)
    assert log == [(f"r{i}", "stop") for i in range(n - 1, -1, -1)]
