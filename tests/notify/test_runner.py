"""Hooks run as real processes: environment, exit status and output logged, failures
counted, a hook that hangs killed at its timeout, and the caller never kept waiting."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import pytest

from kembar.config import parse_cluster
from kembar.lab.pair import alive, wait_for
from kembar.notify.events import Invocation, Notice
from kembar.notify.runner import HookRunner, Notifier
from tests.notify.hooks import HOOK, read_env

def _inv(argv: list[str], timeout: float = 10.0, event: str = "node_dead",
         env: dict[str, str] | None = None) -> Invocation:
    return Invocation(event, event, tuple(argv), {"PATH": os.environ["PATH"], **(env or {})},
                      timeout)


def _settled(runner: HookRunner, total: int, timeout: float = 20) -> dict[str, object]:
    def done() -> dict[str, object] | None:
        st = runner.stats()
        finished = sum(int(st[k]) for k in ("ok", "failed", "timed_out", "not_started",
                                            "dropped"))
        return st if finished >= total and st["running"] == 0 else None
    return wait_for(done, timeout, f"{total} hooks to finish")


def test_a_hook_gets_its_environment(tmp_path: Path) -> None:
    hook = tmp_path / "hook.py"
    hook.write_text(HOOK)
    cfg = parse_cluster(f"""
[cluster]
name = "web"
[nodes.node1]
[nodes.node2]
[notify]
node_dead = ["{sys.executable}", "{hook}", "{tmp_path}"]
""").notify
    notifier = Notifier(cfg, "web", "node2", {"PATH": "/usr/bin:/bin", "SECRET": "x"})
    assert notifier.check() == []
    notifier.notify(Notice("node_dead", "node1 is dead: no heartbeat for 2.000 s",
                           node="node1", time=100.0))
    env_file = tmp_path / "node2-node_dead-node_dead.env"
    wait_for(env_file.exists, 10, "the hook's output")
    env = read_env(env_file)
    assert env["KEMBAR_EVENT"] == "node_dead" and env["KEMBAR_NODE"] == "node1"
    assert env["KEMBAR_LOCAL_NODE"] == "node2" and env["KEMBAR_CLUSTER"] == "web"
    assert env["KEMBAR_TEXT"] == "node1 is dead: no heartbeat for 2.000 s"
    assert env["PATH"] == "/usr/bin:/bin" and "SECRET" not in env
    st = _settled(notifier.runner, 1)
    assert st["ok"] == 1 and st["failed"] == 0
    assert notifier.stats()["configured"] == ["node_dead"]
    notifier.close()


def test_a_missing_program_is_reported_at_start() -> None:
    cfg = parse_cluster('[cluster]\nname = "web"\n[nodes.a]\n[notify]\n'
                        'failover = "/nonexistent/kb-page --now"\n'
                        'any = "kb-no-such-program"\n').notify
    warnings = Notifier(cfg, "web", "a", {"PATH": "/usr/bin"}).check()
    assert warnings == [
        "notify.failover: /nonexistent/kb-page is not an executable program on this node: "
        "the hook will fail",
        "notify.any: kb-no-such-program is not an executable program on this node: the hook "
        "will fail"]


def test_failures_are_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kembar.notify")
    runner = HookRunner()
    runner.submit([
        _inv(["sh", "-c", "echo all is well; exit 0"]),
        _inv(["sh", "-c", "echo the pager is down >&2; exit 3"], event="failover"),
        _inv(["/nonexistent/kb-hook"], event="split_brain"),
        _inv(["sh", "-c", "kill -KILL $$"], event="node_up"),
    ])
    st = _settled(runner, 4)
    assert (st["ok"], st["failed"], st["not_started"]) == (1, 2, 1)
    assert st["by_event"] == {"node_dead": {"ok": 1}, "failover": {"failed": 1},
                              "split_brain": {"not_started": 1}, "node_up": {"failed": 1}}
    text = caplog.text
    assert "notify node_dead: sh -c echo all is well; exit 0: exit status 0 after" in text
    assert "output: all is well" in text
    assert "notify failover: sh -c echo the pager is down >&2; exit 3: exit status 3 after" \
        in text and "output: the pager is down" in text
    assert "notify split_brain: /nonexistent/kb-hook: cannot run it: No such file or " \
           "directory" in text
    assert "killed by SIGKILL" in text
    levels = {r.getMessage().split(":")[0]: r.levelname for r in caplog.records}
    assert levels["notify failover"] == "WARNING" and levels["notify split_brain"] == "ERROR"
    runner.close()


def test_a_hanging_hook_is_killed_with_its_children(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kembar.notify")
    pids = tmp_path / "pids"
    # the hook starts a child that ignores SIGTERM, then waits for it forever
    script = f"trap '' TERM; sleep 600 & echo $$ $! > {pids}; echo waiting; wait"
    runner = HookRunner(kill_grace=0.5)
    t0 = time.monotonic()
    runner.submit([_inv(["sh", "-c", script], timeout=1.0)])
    assert time.monotonic() - t0 < 0.5  # submit never waits for the hook
    wait_for(lambda: pids.exists() and pids.read_text().strip(), 10, "the hook to start")
    hook_pid, child_pid = map(int, pids.read_text().split())
    st = _settled(runner, 1)
    took = time.monotonic() - t0
    assert st["timed_out"] == 1 and 1.0 <= took < 8, took
    assert not alive(hook_pid) and not alive(child_pid)
    assert "still running after its timeout of 1 s: killed; output: waiting" in caplog.text
    assert "still running after its timeout" in str(st["last_failure"])
    runner.close()


def test_hooks_run_side_by_side_and_in_order(tmp_path: Path) -> None:
    """A hung hook does not hold the next ones back (up to max_running at once)."""
    order = tmp_path / "order"
    runner = HookRunner(max_running=2)
    runner.submit([_inv(["sleep", "3"], timeout=10)] +
                  [_inv(["sh", "-c", f"echo {i} >> {order}"]) for i in range(5)])
    wait_for(lambda: order.exists() and len(order.read_text().split()) == 5, 2.5,
             "the quick hooks, beside the slow one")
    assert order.read_text().split() == ["0", "1", "2", "3", "4"]
    st = _settled(runner, 6)
    assert st["ok"] == 6
    runner.close()


def test_a_full_queue_drops_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    runner = HookRunner(max_running=1, queue_size=2)
    t0 = time.monotonic()
    runner.submit([_inv(["sleep", "1"], timeout=5) for _ in range(10)])
    assert time.monotonic() - t0 < 0.5
    st = _settled(runner, 10)
    assert st["ok"] + st["dropped"] == 10 and st["dropped"] >= 7  # type: ignore[operator]
    assert "hooks already wait their turn" in caplog.text
    runner.close()


def test_close_refuses_new_hooks() -> None:
    runner = HookRunner()
    runner.close(0.1)
    runner.submit([_inv(["true"])])
    assert runner.stats()["dropped"] == 1
