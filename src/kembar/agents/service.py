"""``service``: a command kembar supervises itself, a systemd unit, or an LSB init script.

With ``command``: started in its own session, output appended to
``<run_dir>/<group>-<name>.log``, its pid in ``<run_dir>/<group>-<name>.pid``.  It must
stay in the foreground: one that exits within the first moments fails the start.  Running
= our child has not exited.  Stop sends SIGTERM to its process group, waits on the child
object, and after the grace (the timeout less a margin) sends SIGKILL to the group; the
group gets a SIGKILL in any case once the child has gone, for stragglers it left behind.
A pid file left by an earlier kembar whose process still runs the same command line is
adopted: monitored, and stopped the same way (polling /proc, as it is not our child).

Without ``command``: ``systemctl start|stop|is-active NAME`` when systemd runs (its
``/run/systemd/system`` exists), else ``/etc/init.d/NAME start|stop|status`` (status exit
0 running, 3 stopped, anything else a failure).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time

from kembar.agents.base import Agent, AgentContext, AgentError, Deadline, alive, \
    last_line, run_command
from kembar.config.groups import ServiceResource

log = logging.getLogger("kembar.agents.service")

SETTLE = 0.2  # a supervised command that exits within this time failed to start


def kill_margin(timeout: float) -> float:
    """What a stop keeps after the SIGTERM grace for the SIGKILL and its reaping."""
    return min(2.0, timeout * 0.2)


def make_service_agent(resource: ServiceResource, ctx: AgentContext) -> Agent:
    if resource.command:
        return CommandService(resource, ctx)
    if os.path.isdir(ctx.systemd_dir):
        return SystemdService(resource, ctx)
    return LsbService(resource, ctx)


class CommandService(Agent):
    resource: ServiceResource

    def __init__(self, resource: ServiceResource, ctx: AgentContext) -> None:
        super().__init__(resource, ctx)
        assert resource.command
        self.command = list(resource.command)
        base = f"{ctx.group}-{resource.name}" if ctx.group else resource.name
        self.logfile = os.path.join(ctx.run_dir, f"{base}.log")
        self.pidfile = os.path.join(ctx.run_dir, f"{base}.pid")
        self.child: subprocess.Popen[bytes] | None = None
        self.stop_signal = signal.Signals[resource.stop_signal]

    # -- who is running

    def _adoptable(self) -> int | None:
        """The pid in the pid file, when that process is alive and runs our command."""
        try:
            with open(self.pidfile) as fh:
                pid = int(fh.read().strip())
        except (OSError, ValueError):
            return None
        if self.child is not None and pid == self.child.pid:
            return None
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().decode(errors="replace").split("\0")[:-1]
        except OSError:
            return None
        return pid if argv == self.command and alive(pid) else None

    def _running(self) -> bool:
        if self.child is not None and self.child.poll() is None:
            return True
        return self._adoptable() is not None

    # -- the contract

    def start(self, timeout: float) -> None:
        deadline = Deadline(timeout)
        if self._running():
            return
        self._end_stragglers(deadline)
        port = self.resource.listen
        others = listening_sockets(port) if port is not None else set()
        try:
            os.makedirs(self.ctx.run_dir, mode=0o700, exist_ok=True)
            with open(self.logfile, "ab") as out:
                self.child = subprocess.Popen(
                    self.command, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                    start_new_session=True, close_fds=True)
        except FileNotFoundError:
            raise AgentError(f"{self.name}: {self.command[0]} not found") from None
        except PermissionError:
            raise AgentError(f"{self.name}: {self.command[0]} is not executable") from None
        except OSError as exc:
            raise AgentError(f"{self.name}: cannot start {self.command[0]}: "
                             f"{exc.strerror or exc}") from None
        self._write_pidfile(self.child.pid)
        if port is not None:
            # Listening is the sign of a started server: no settling time to sit out
            # (it was most of a web server's start, and of every takeover's outage).
            self._wait_listening(port, others, deadline)
            log.info("%s: started (pid %d), listening on port %d", self.name,
                     self.child.pid, port)
            return
        try:
            rc = self.child.wait(min(SETTLE, deadline.left() / 4))
        except subprocess.TimeoutExpired:
            log.info("%s: started (pid %d)", self.name, self.child.pid)
            return
        self._remove_pidfile()
        raise AgentError(f"{self.name}: exited at once (status {rc}; a supervised command "
                         f"must stay in the foreground): {self._log_tail()}")

    def _wait_listening(self, port: int, others: set[int], deadline: Deadline) -> None:
        """Until a new TCP socket listens on ``port`` here while the child runs, or the
        child dies, or time is up.  ``others``: the sockets that listened on the port
        before the child started (another program's, on another address): not the
        child's, so no sign of its start."""
        child = self.child
        assert child is not None
        if others:
            log.warning("%s: port %d already has %d listening socket(s) of another "
                        "program; waiting for the service's own", self.name, port,
                        len(others))
        while True:
            ready = bool(listening_sockets(port) - others)
            if child.poll() is not None:  # checked after the port: a server that
                self._remove_pidfile()    # listened and died is no start either
                what = "after listening" if ready else f"before listening on port {port}"
                raise AgentError(f"{self.name}: exited (status {child.returncode}) {what}: "
                                 f"{self._log_tail()}")
            if ready:
                return
            if deadline.left() <= 0.05:
                held = " (another program's socket listens there)" if others else ""
                raise AgentError(f"{self.name}: it does not listen on port {port} yet{held} "
                                 "(start timed out)")
            time.sleep(0.005)

    def stop(self, timeout: float) -> None:
        deadline = Deadline(timeout)
        grace = max(0.0, timeout - kill_margin(timeout))
        child = self.child
        if child is not None:
            self._stop_child(child, deadline, grace)
            self.child = None
        pid = self._adoptable()
        if pid is not None:
            self._stop_adopted(pid, deadline, grace)
        self._end_stragglers(deadline)
        self._remove_pidfile()

    def monitor(self, timeout: float) -> bool:
        return self._running()

    # -- stopping

    def _stop_child(self, child: subprocess.Popen[bytes], deadline: Deadline,
                    grace: float) -> None:
        if child.poll() is None:
            _killpg(child.pid, self.stop_signal)
            try:
                child.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("%s: still running %.1fs after %s; SIGKILL", self.name, grace,
                            self.stop_signal.name)
        _killpg(child.pid, signal.SIGKILL)  # the child, or stragglers in its group
        try:
            child.wait(max(deadline.left(), 0.01))
        except subprocess.TimeoutExpired:
            raise AgentError(f"{self.name}: pid {child.pid} survived SIGKILL") from None
        log.info("%s: stopped (status %s)", self.name, child.returncode)

    def _end_stragglers(self, deadline: Deadline) -> None:
        """SIGKILL what is left of the process group of the pid file's service when its
        leader is gone: a server's workers outlive a SIGKILLed master (gunicorn's, for
        seconds) and keep its port, so that the next start could not listen.  The group
        is the service's own: we started it as a session and group leader (its pid is the
        group's and the session's id), and the kernel reuses no pid that still names a
        process group."""
        try:
            with open(self.pidfile) as fh:
                pgid = int(fh.read().strip())
        except (OSError, ValueError):
            return
        if pgid <= 1 or alive(pgid):
            return  # the leader runs (adopted or stopped above), or no such group
        left = group_members(pgid)
        if not left:
            return
        log.warning("%s: SIGKILL to %s, left of pid %d's process group", self.name,
                    ", ".join(map(str, left)), pgid)
        _killpg(pgid, signal.SIGKILL)
        until = time.monotonic() + min(5.0, max(deadline.left(), 0.1))
        while group_members(pgid) and time.monotonic() < until:
            time.sleep(0.01)
        if group_members(pgid):
            raise AgentError(f"{self.name}: processes of pid {pgid}'s group survived SIGKILL")

    def _stop_adopted(self, pid: int, deadline: Deadline, grace: float) -> None:
        group = _pgid(pid) == pid
        kill = _killpg if group else os.kill
        try:
            kill(pid, self.stop_signal)
        except ProcessLookupError:
            return
        until = time.monotonic() + grace
        while alive(pid) and time.monotonic() < until:
            time.sleep(0.05)
        try:
            kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while alive(pid) and deadline.left() > 0:
            time.sleep(0.05)
        if alive(pid):
            raise AgentError(f"{self.name}: adopted pid {pid} survived SIGKILL")
        log.info("%s: stopped the adopted pid %d", self.name, pid)

    # -- files

    def _write_pidfile(self, pid: int) -> None:
        tmp = self.pidfile + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(f"{pid}\n")
        os.replace(tmp, self.pidfile)

    def _remove_pidfile(self) -> None:
        try:
            os.unlink(self.pidfile)
        except FileNotFoundError:
            pass

    def _log_tail(self) -> str:
        try:
            with open(self.logfile, "rb") as fh:
                fh.seek(max(0, os.path.getsize(self.logfile) - 4096))
                return last_line(fh.read().decode(errors="replace")) or "(no output)"
        except OSError:
            return "(no log)"


def listening(port: int) -> bool:
    """Whether a TCP socket (IPv4 or IPv6) listens on ``port`` in this network namespace."""
    return bool(listening_sockets(port))


def listening_sockets(port: int) -> set[int]:
    """The inodes of the TCP sockets (IPv4 or IPv6) that listen on ``port`` in this
    network namespace (each a socket of its own, whatever address it is bound to)."""
    want = f":{port:04X}"
    found: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh, None)
                for line in fh:
                    parts = line.split()
                    if len(parts) > 9 and parts[3] == "0A" and parts[1].endswith(want):
                        found.add(int(parts[9]))
        except (OSError, ValueError):
            continue
    return found


def group_members(pgid: int) -> list[int]:
    """The live processes (not zombies) whose process group and session are ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # after the command: state, ppid, pgrp, session, ...
        if len(fields) > 3 and fields[0] != "Z" and fields[2] == fields[3] == str(pgid):
            found.append(int(entry))
    return found


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return -1


class SystemdService(Agent):
    resource: ServiceResource

    def _systemctl(self, verb: str, timeout: float) -> tuple[int, str]:
        res = run_command(["systemctl", verb, self.resource.name], timeout, self.name)
        return res.returncode, (res.stdout.strip() if verb == "is-active" else res.reason())

    def start(self, timeout: float) -> None:
        rc, why = self._systemctl("start", timeout)
        if rc != 0:
            raise AgentError(f"{self.name}: systemctl start failed: {why}")

    def stop(self, timeout: float) -> None:
        rc, why = self._systemctl("stop", timeout)
        if rc != 0:
            raise AgentError(f"{self.name}: systemctl stop failed: {why}")

    def monitor(self, timeout: float) -> bool:
        _rc, state = self._systemctl("is-active", timeout)
        if state in ("active", "reloading", "activating"):
            return True
        if state in ("inactive", "deactivating"):
            return False
        raise AgentError(f"{self.name}: unit is {state or 'unknown'}")


class LsbService(Agent):
    resource: ServiceResource

    def __init__(self, resource: ServiceResource, ctx: AgentContext) -> None:
        super().__init__(resource, ctx)
        self.script = os.path.join(ctx.init_dir, resource.name)

    def _run(self, action: str, timeout: float) -> tuple[int, str]:
        if not os.path.exists(self.script):
            raise AgentError(f"{self.name}: no init script {self.script} (and no systemd "
                             "on this node)")
        res = run_command([self.script, action], timeout, self.name)
        return res.returncode, res.reason()

    def start(self, timeout: float) -> None:
        deadline = Deadline(timeout)
        if self.monitor(deadline.left()):
            return
        rc, why = self._run("start", deadline.left())
        if rc != 0:
            raise AgentError(f"{self.name}: {self.script} start exited {rc}: {why}")

    def stop(self, timeout: float) -> None:
        deadline = Deadline(timeout)
        rc, why = self._run("stop", deadline.left())
        if rc != 0 and self.monitor(deadline.left()):
            raise AgentError(f"{self.name}: {self.script} stop exited {rc}: {why}")

    def monitor(self, timeout: float) -> bool:
        rc, why = self._run("status", timeout)
        if rc == 0:
            return True
        if rc == 3:
            return False
        raise AgentError(f"{self.name}: {self.script} status exited {rc}: {why}")
