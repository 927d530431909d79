"""The contract every resource agent keeps, and the bounded subprocess runner they share.

Invariants:
- ``start``, ``stop`` and ``monitor`` return or raise within the timeout they are given;
  every child process they run is killed (with its whole session) when that time is up.
- ``start`` of a running resource and ``stop`` of a stopped one succeed without acting.
- Runtime problems surface as ``AgentError`` with a one-line reason naming the resource;
  never as another exception type (the group runner reports anything else as a bug).
"""

from __future__ import annotations

import abc
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Sequence

from kembar.errors import KembarError


class AgentError(KembarError):
    """A resource could not be started, stopped or checked; the message says which and why."""


class FailoverNow(AgentError):
    """A monitor found a failure no restart on this node can repair (the disk's backing
    store failed and its policy is ``on_io_error = "failover"``): move the group now."""


@dataclass
class AgentContext:
    run_dir: str = "/run/kembar"
    state_dir: str = "/var/lib/kembar"
    group: str = ""
    config: str = ""  # the cluster file the daemon runs with ("" = the default)
    node: str = ""  # this node's name in it ("" = from the hostname)
    # Where scripts are looked up (configurable so that tests need not touch the system).
    init_dir: str = "/etc/init.d"
    systemd_dir: str = "/run/systemd/system"  # exists ⇔ systemd is the init system
    ha_resource_dir: str = "/etc/ha.d/resource.d"
    ocf_root: str = "/usr/lib/ocf"


class Agent(abc.ABC):
    """One resource on this node.  Synchronous: the daemon calls it from worker threads."""

    def __init__(self, resource: Any, ctx: AgentContext) -> None:
        self.resource = resource
        self.ctx = ctx
        self.name: str = resource.describe()

    @property
    def timeout(self) -> float:
        """Seconds allowed for one start or stop (the resource's ``timeout``)."""
        return float(self.resource.timeout)

    @abc.abstractmethod
    def start(self, timeout: float) -> None:
        """Bring the resource up; return at once when it already is."""

    @abc.abstractmethod
    def stop(self, timeout: float) -> None:
        """Take the resource down; return at once when it already is."""

    @abc.abstractmethod
    def monitor(self, timeout: float) -> bool:
        """True: running; False: cleanly stopped; AgentError: failed or unknown."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class Deadline:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.end = time.monotonic() + timeout

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, self.left()))


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str

    def reason(self) -> str:
        """The last non-empty line of stderr (else stdout): what a message quotes."""
        return last_line(self.stderr) or last_line(self.stdout) or "(no output)"


def last_line(text: str, limit: int = 200) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:limit] if lines else ""


def run_command(argv: Sequence[str], timeout: float, what: str,
                env: dict[str, str] | None = None) -> Completed:
    """Run ``argv`` in its own session, output to temporary files (not pipes: a daemon the
    command leaves behind would hold a pipe open and stall us).  On expiry the session is
    killed and ``AgentError`` says so; so it is when the program cannot be run."""
    if timeout <= 0:
        raise AgentError(f"{what}: no time left to run {argv[0]}")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, start_new_session=True, close_fds=True,
                                    env=None if env is None else {**os.environ, **env})
        except FileNotFoundError:
            raise AgentError(f"{what}: {argv[0]} not found") from None
        except PermissionError:
            raise AgentError(f"{what}: {argv[0]} is not executable") from None
        except OSError as exc:
            raise AgentError(f"{what}: cannot run {argv[0]}: {exc.strerror or exc}") from None
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_session(proc)
            raise AgentError(f"{what}: `{' '.join(argv)}` did not finish within "
                             f"{timeout:.1f}s (killed)") from None
        out.seek(0)
        err.seek(0)
        return Completed(rc, out.read().decode(errors="replace"),
                         err.read().decode(errors="replace"))


def kill_session(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the process group led by ``proc`` and reap ``proc`` (briefly: a process in
    uninterruptible sleep is left to the kernel rather than waited for)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(1.0)
    except subprocess.TimeoutExpired:
        pass


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie holds no files and serves nobody)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(") ")[2][:1] not in ("Z", "X", "")
    except OSError:
        return False
