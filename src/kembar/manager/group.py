"""The group runner: start a resource group in order, stop it in reverse (haresources).

Invariants:
- A start runs the agents first to last and stops at the first failure; it then stops,
  last to first, the failed agent (it may be half up: a spawned service, a mount whose
  caller timed out) and every agent it had started, then raises ``GroupStartFailed``.
  A stop that fails during this rollback is recorded in the exception (``unstopped``):
  the group may then still hold resources here and must not be started elsewhere.
- A stop runs the agents last to first and goes on after a failure (a stuck service must
  not keep the address here); ``GroupStopFailed`` lists every failure at the end.
- Each agent call gets its resource's timeout and is reported once through ``step``
  (``resource, action, ok, seconds, message``), action being "start", "stop" or
  "rollback" (a stop undoing a failed start).  An exception other than ``AgentError``
  counts as a failure and is logged with the "BUG:" marker.

The orders are pure functions (``start_order``, ``rollback_order``, ``stop_order``);
``start_group``/``stop_group`` only call agents in those orders.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Protocol, Sequence, TypeVar

from kembar.agents.base import AgentError
from kembar.errors import KembarError

log = logging.getLogger("kembar.manager.group")

Step = Callable[[str, str, bool, float, str], None]
T = TypeVar("T")


class Runnable(Protocol):
    """What the runner needs of an agent (``kembar.agents.base.Agent`` has it)."""

    name: str

    @property
    def timeout(self) -> float: ...

    def start(self, timeout: float) -> None: ...

    def stop(self, timeout: float) -> None: ...


class GroupStartFailed(KembarError):
    def __init__(self, resource: str, reason: str,
                 unstopped: Sequence[tuple[str, str]] = ()) -> None:
        self.resource = resource
        self.reason = reason
        self.unstopped = list(unstopped)
        msg = f"{resource} failed to start: {reason}"
        if self.unstopped:
            msg += "; rollback failed: " + "; ".join(f"{r}: {why}" for r, why in self.unstopped)
        super().__init__(msg)


class GroupStopFailed(KembarError):
    def __init__(self, failures: Sequence[tuple[str, str]]) -> None:
        self.failures = list(failures)
        super().__init__("stop failed: " + "; ".join(f"{r}: {why}" for r, why in failures))


# -- pure: the orders

def start_order(agents: Sequence[T]) -> list[T]:
    return list(agents)


def stop_order(agents: Sequence[T]) -> list[T]:
    return list(reversed(agents))


def rollback_order(agents: Sequence[T], failed: int) -> list[T]:
    """After ``agents[failed]`` failed to start: it and those before it, last first."""
    return list(reversed(agents[:failed + 1]))


# -- running

def _call(agent: Runnable, action: str, step: Step,
          clock: Callable[[], float]) -> str | None:
    """Run one agent action; its failure reason, or None."""
    t0 = clock()
    why: str | None = None
    try:
        if action == "start":
            agent.start(agent.timeout)
        else:
            agent.stop(agent.timeout)
    except AgentError as exc:
        why = str(exc)
    except Exception as exc:  # noqa: BLE001 - an agent bug must not wreck the group
        log.exception("BUG: %s of %s raised", action, agent.name)
        why = f"BUG: {type(exc).__name__}: {exc}"
    try:
        step(agent.name, action, why is None, clock() - t0, why or "")
    except Exception:  # noqa: BLE001 - a recorder's bug must not wreck the group
        log.exception("BUG: step callback failed")
    return why


def start_group(agents: Sequence[Runnable], step: Step,
                clock: Callable[[], float] = time.monotonic) -> None:
    """Start every agent in order; on a failure roll back and raise GroupStartFailed."""
    for index, agent in enumerate(start_order(agents)):
        why = _call(agent, "start", step, clock)
        if why is None:
            continue
        unstopped = []
        for back in rollback_order(agents, index):
            failed = _call(back, "rollback", step, clock)
            if failed is not None:
                unstopped.append((back.name, failed))
        raise GroupStartFailed(resource=agent.name, reason=why, unstopped=unstopped)


def stop_group(agents: Sequence[Runnable], step: Step,
               clock: Callable[[], float] = time.monotonic) -> None:
    """Stop every agent in reverse order, all of them; GroupStopFailed lists failures."""
    failures = []
    for agent in stop_order(agents):
        why = _call(agent, "stop", step, clock)
        if why is not None:
            failures.append((agent.name, why))
    if failures:
        raise GroupStopFailed(failures)
