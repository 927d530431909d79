"""The clone wrapper: the group's stop leaves a clone running; one call at a time."""

from __future__ import annotations

import threading
import time

from kembar.agents.base import Agent, AgentContext
from kembar.config.groups import ServiceResource
from kembar.manager.clone import Clone
from kembar.manager.group import start_group, stop_group


class Fake(Agent):
    def __init__(self) -> None:
        super().__init__(ServiceResource(type="service", name="site", clone=True),
                         AgentContext())
        self.running = False
        self.calls: list[str] = []
        self.inside = 0
        self.overlap = False

    def _enter(self, what: str) -> None:
        self.inside += 1
        self.overlap |= self.inside > 1
        self.calls.append(what)
        time.sleep(0.01)
        self.inside -= 1

    def start(self, timeout: float) -> None:
        self._enter("start")
        self.running = True

    def stop(self, timeout: float) -> None:
        self._enter("stop")
        self.running = False

    def monitor(self, timeout: float) -> bool:
        self._enter("monitor")
        return self.running


def test_the_group_stop_leaves_a_clone_running_and_stop_here_stops_it() -> None:
    fake = Fake()
    clone = Clone(fake)
    assert clone.name == "service site" and clone.timeout == 60.0
    start_group([clone], lambda *a: None)
    assert fake.running and clone.up
    stop_group([clone], lambda *a: None)
    assert fake.running and clone.up and fake.calls == ["start"]
    clone.stop_here(1.0)
    assert not fake.running and not clone.up and fake.calls == ["start", "stop"]


def test_calls_from_two_threads_do_not_overlap() -> None:
    fake = Fake()
    clone = Clone(fake)
    threads = [threading.Thread(target=f, args=(1.0,))
               for f in (clone.start, clone.monitor, clone.start, clone.stop_here)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not fake.overlap and len(fake.calls) == 4
