"""The ``service`` agent: a supervised command, an LSB init script, systemctl."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from kembar.agents import AgentContext, AgentError, make_agent
from kembar.agents.service import CommandService, LsbService, SystemdService
from kembar.config.groups import ServiceResource
from kembar.lab.pair import wait_for
from tests.agents.conftest import LSB_SCRIPT, alive, kill_quietly, write_script

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]
STUBBORN = [sys.executable, "-c",
            "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\ntime.sleep(60)"]


def service(ctx: AgentContext, command: list[str] | None = None, name: str = "kb-agt-svc",
            timeout: float = 5.0) -> CommandService:
    res = ServiceResource.model_validate(dict(type="service", name=name, command=command,
                                              timeout=timeout))
    agent = make_agent(res, ctx)
    assert isinstance(agent, CommandService) == (command is not None)
    return agent  # type: ignore[return-value]


@pytest.fixture
def started() -> Iterator[list[int]]:
    """Pids a test started through an agent: killed afterwards if still there."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        kill_quietly(pid)


def test_command_start_monitor_crash_stop(ctx: AgentContext, started: list[int]) -> None:
    agent = service(ctx, SLEEPER)
    assert agent.monitor(1) is False
    agent.stop(5)
    agent.start(5)
    assert agent.child is not None
    child = agent.child
    started.append(child.pid)
    pidfile = Path(ctx.run_dir, "kb-agt-g-kb-agt-svc.pid")
    assert pidfile.read_text().strip() == str(child.pid)
    assert os.getpgid(child.pid) == child.pid  # its own session and group
    assert agent.monitor(1) is True
    agent.start(5)
    assert agent.child is child  # already running: nothing new
    wait_for(lambda: "up" in Path(ctx.run_dir, "kb-agt-g-kb-agt-svc.log").read_text(), 10)

    os.kill(child.pid, signal.SIGKILL)
    wait_for(lambda: agent.monitor(1) is False, 10, "monitor to see the crash")
    agent.stop(5)
    agent.stop(5)
    assert not pidfile.exists()


def test_a_command_that_exits_at_once_fails_to_start(ctx: AgentContext) -> None:
    agent = service(ctx, [sys.executable, "-c", "import sys; print('no config'); sys.exit(3)"])
    with pytest.raises(AgentError, match=r"exited at once \(status 3.*no config"):
        agent.start(5)
    assert agent.monitor(1) is False
    agent.stop(1)


def test_missing_command_is_an_agent_error(ctx: AgentContext) -> None:
    with pytest.raises(AgentError, match="kb-agt-no-such-binary not found"):
        service(ctx, ["/nonexistent/kb-agt-no-such-binary"]).start(5)


def test_sigterm_ends_a_polite_command_quickly(ctx: AgentContext, started: list[int]) -> None:
    agent = service(ctx, SLEEPER, timeout=10)
    agent.start(5)
    assert agent.child is not None
    child = agent.child
    started.append(child.pid)
    t0 = time.monotonic()
    agent.stop(10)
    assert time.monotonic() - t0 < 2
    assert child.returncode == -signal.SIGTERM


def test_a_command_ignoring_sigterm_is_killed_within_the_timeout(
        ctx: AgentContext, started: list[int]) -> None:
    agent = service(ctx, STUBBORN)
    agent.start(5)
    assert agent.child is not None
    child = agent.child
    started.append(child.pid)
    log = Path(ctx.run_dir, "kb-agt-g-kb-agt-svc.log")
    wait_for(lambda: "ready" in log.read_text(), 10, "the handler to be installed")
    t0 = time.monotonic()
    agent.stop(3)
    took = time.monotonic() - t0
    assert 2.0 < took < 3.5, took  # the grace (timeout less the kill margin), then SIGKILL
    assert child.returncode == -signal.SIGKILL


def test_a_process_of_an_earlier_daemon_is_adopted(ctx: AgentContext,
                                                   started: list[int]) -> None:
    first = service(ctx, SLEEPER)
    first.start(5)
    assert first.child is not None
    child = first.child
    started.append(child.pid)
    later = service(ctx, SLEEPER)  # a restarted daemon: same resource, new agent
    assert later.monitor(1) is True
    later.start(5)
    assert later.child is None  # adopted, not started twice
    later.stop(5)
    assert child.wait(5) == -signal.SIGTERM
    assert later.monitor(1) is False


def test_a_stale_pid_file_naming_another_process_is_left_alone(ctx: AgentContext) -> None:
    agent = service(ctx, SLEEPER)
    os.makedirs(ctx.run_dir, exist_ok=True)
    Path(agent.pidfile).write_text(f"{os.getpid()}\n")  # alive, but not our command
    assert agent.monitor(1) is False
    agent.stop(2)
    assert alive(os.getpid()) and not Path(agent.pidfile).exists()


def test_lsb_script(ctx: AgentContext) -> None:
    script = write_script(Path(ctx.init_dir) / "kb-agt-web", LSB_SCRIPT)
    agent = make_agent(ServiceResource.model_validate(dict(type="service", name="kb-agt-web")),
                       ctx)
    assert isinstance(agent, LsbService)
    assert agent.monitor(5) is False
    agent.stop(5)
    agent.start(5)
    assert agent.monitor(5) is True
    agent.start(5)
    assert Path(f"{script}.kb-agt-state.log").read_text() == "start\n"  # started once
    agent.stop(5)
    assert agent.monitor(5) is False
    Path(f"{script}.kb-agt-broken").touch()
    with pytest.raises(AgentError, match="status exited 4: cannot tell"):
        agent.monitor(5)


def test_lsb_script_missing(ctx: AgentContext) -> None:
    res = ServiceResource.model_validate(dict(type="service", name="kb-agt-nothing"))
    agent = make_agent(res, ctx)
    for action in (agent.start, agent.stop, agent.monitor):
        with pytest.raises(AgentError, match=r"no init script .*kb-agt-nothing"):
            action(5)


def test_systemd_when_it_runs(ctx: AgentContext, kbdir: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in ``systemctl`` on PATH: the verbs and the reading of is-active."""
    os.makedirs(ctx.systemd_dir)
    bin_dir = kbdir / "kb-agt-bin"
    write_script(bin_dir / "systemctl", f"""#!/bin/sh
echo "$@" >> {bin_dir}/calls
case "$1" in
  is-active) cat {bin_dir}/state 2>/dev/null || echo inactive; exit 3 ;;
  start) echo active > {bin_dir}/state ;;
  stop) echo inactive > {bin_dir}/state ;;
esac
""")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    agent = make_agent(ServiceResource.model_validate(dict(type="service", name="kb-agt-web")),
                       ctx)
    assert isinstance(agent, SystemdService)
    assert agent.monitor(5) is False
    agent.start(5)
    assert agent.monitor(5) is True
    agent.stop(5)
    (bin_dir / "state").write_text("failed\n")
    with pytest.raises(AgentError, match="unit is failed"):
        agent.monitor(5)
    assert (bin_dir / "calls").read_text().split("\n")[:3] == [
        "is-active kb-agt-web", "start kb-agt-web", "is-active kb-agt-web"]


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _started_server(ctx: AgentContext, started: list[int], name: str, command: list[str],
                    port: int, timeout: float = 5.0) -> CommandService:
    """A supervised server with ``listen = port``, started (its pid noted for cleanup)."""
    res = ServiceResource.model_validate(dict(type="service", name=name, command=command,
                                              listen=port, timeout=timeout))
    agent = make_agent(res, ctx)
    agent.start(timeout)
    assert isinstance(agent, CommandService) and agent.child is not None
    started.append(agent.child.pid)
    return agent


def test_start_waits_until_the_command_listens(ctx: AgentContext, started: list[int]) -> None:
    """With `listen`, start returns only once the port listens (the VIP after it is never
    up before the service): here the server binds 0.6 s after it started."""
    port = _free_port()
    late = [sys.executable, "-c", "import socket, time; time.sleep(0.6); s = socket.socket(); "
            f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)"]
    t0 = time.monotonic()
    agent = _started_server(ctx, started, "kb-agt-late", late, port)
    from kembar.agents.service import listening
    assert time.monotonic() - t0 >= 0.5 and listening(port)
    agent.stop(5)
    # a command that dies before it listens fails its start, with its output
    dies = [sys.executable, "-c", "import time, sys; time.sleep(0.4); print('no db'); "
            "sys.exit(3)"]
    res = ServiceResource.model_validate(dict(type="service", name="kb-agt-dies",
                                              command=dies, listen=_free_port()))
    with pytest.raises(AgentError, match=r"exited \(status 3\) before listening.*no db"):
        make_agent(res, ctx).start(5)


def test_a_server_that_listens_is_started_without_a_settling_time(
        ctx: AgentContext, started: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """With `listen`, the port listening is the start: the agent does not first sit out
    the settling time that catches commands which exit at once (that wait was most of a
    web server's start in every takeover).  The settling time is made 30 s here: start
    would take 15 s (a quarter of its timeout) if it were waited for."""
    import kembar.agents.service as service_mod
    monkeypatch.setattr(service_mod, "SETTLE", 30.0)
    port = _free_port()
    quick = [sys.executable, "-c", "import socket, time; s = socket.socket(); "
             f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)"]
    t0 = time.monotonic()
    agent = _started_server(ctx, started, "kb-agt-quick", quick, port, timeout=60)
    assert time.monotonic() - t0 < 10 and service_mod.listening(port)
    assert agent.monitor(5)
    agent.stop(5)
    # a server that listens and dies at once is no start, whichever the agent saw first
    port = _free_port()
    flaky = [sys.executable, "-c", "import socket, sys, time; s = socket.socket(); "
             f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(0.2); print('crash'); "
             "sys.exit(4)"]
    res = ServiceResource.model_validate(dict(type="service", name="kb-agt-flaky",
                                              command=flaky, listen=port))
    agent = make_agent(res, ctx)
    try:
        agent.start(5)
    except AgentError as exc:
        assert "exited (status 4)" in str(exc) and "crash" in str(exc)
    else:  # it listened and was seen running: its first monitor finds it gone
        assert isinstance(agent, CommandService) and agent.child is not None
        started.append(agent.child.pid)
        wait_for(lambda: not agent.monitor(5), 10, "the flaky server's monitor to fail")


def test_another_programs_socket_on_the_port_is_no_start(ctx: AgentContext,
                                                         started: list[int]) -> None:
    """A socket that listened on the port before the service started (another program's,
    on another address) is not taken for the service's: start waits for the service's own
    socket, and fails, saying so, when it never comes."""
    import socket
    port = _free_port()
    with socket.socket() as foreign:
        foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        foreign.bind(("127.0.0.1", port))
        foreign.listen()
        late = [sys.executable, "-c", "import socket, time; time.sleep(0.6); "
                "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                f"s.bind(('127.0.0.2', {port})); s.listen(); time.sleep(60)"]
        t0 = time.monotonic()
        agent = _started_server(ctx, started, "kb-agt-own", late, port, timeout=10)
        assert time.monotonic() - t0 >= 0.5
        agent.stop(5)
        never = [sys.executable, "-c", "import time; time.sleep(60)"]
        res = ServiceResource.model_validate(dict(type="service", name="kb-agt-never",
                                                  command=never, listen=port))
        agent = make_agent(res, ctx)
        try:
            with pytest.raises(AgentError, match=rf"does not listen on port {port} yet "
                                                 r"\(another program's socket"):
                agent.start(1.5)
        finally:
            if isinstance(agent, CommandService) and agent.child is not None:
                started.append(agent.child.pid)
                agent.stop(5)


def test_workers_left_by_a_killed_server_are_ended_before_the_next_start(
        ctx: AgentContext, started: list[int]) -> None:
    """A server whose master is SIGKILLed leaves its workers (gunicorn's live on for
    seconds) holding the listening socket: the next start — by a new agent, as after a
    daemon restart — ends them first, else the new server could not listen."""
    from kembar.agents.service import group_members, listening
    port = _free_port()
    server = [sys.executable, "-c",
              "import os, socket, time; s = socket.socket(); "
              "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
              f"s.bind(('127.0.0.1', {port})); s.listen(); "
              "os.fork() or time.sleep(60); time.sleep(60)"]
    first = _started_server(ctx, started, "kb-agt-workers", server, port, timeout=10)
    assert first.child is not None
    master = first.child.pid
    wait_for(lambda: len(group_members(master)) == 2, 10, "the worker")
    worker = next(p for p in group_members(master) if p != master)
    started.append(worker)
    os.kill(master, signal.SIGKILL)
    first.child.wait(10)
    assert listening(port) and group_members(master) == [worker]  # the worker holds it
    second = _started_server(ctx, started, "kb-agt-workers", server, port, timeout=10)
    assert second.child is not None
    again = second.child.pid
    assert not alive(worker) and second.monitor(5) and listening(port)
    second.stop(5)
    assert not listening(port) and not group_members(again)


def test_stop_signal(ctx: AgentContext, started: list[int]) -> None:
    """A command that shuts down slowly on SIGTERM but at once on SIGQUIT (gunicorn)."""
    slow = [sys.executable, "-c", "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: time.sleep(3) or sys.exit(0))\n"
            "signal.signal(signal.SIGQUIT, lambda *a: sys.exit(0))\n"
            "print('ready', flush=True)\ntime.sleep(60)"]
    res = ServiceResource.model_validate(dict(type="service", name="kb-agt-quit",
                                              command=slow, stop_signal="quit"))
    assert res.stop_signal == "SIGQUIT"
    agent = make_agent(res, ctx)
    agent.start(5)
    assert isinstance(agent, CommandService) and agent.child is not None
    started.append(agent.child.pid)
    wait_for(lambda: "ready" in Path(ctx.run_dir, "kb-agt-g-kb-agt-quit.log").read_text(), 10)
    t0 = time.monotonic()
    agent.stop(10)
    assert time.monotonic() - t0 < 1.0
    for bad in ("SIGKILL", "SIGWHATEVER", "stop"):
        with pytest.raises(Exception, match="not a signal"):
            ServiceResource.model_validate(dict(type="service", name="x", stop_signal=bad))
