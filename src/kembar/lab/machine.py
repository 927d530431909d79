"""A lab machine's life: power on (start its PID 1), power off (kill it), run commands on it.

A machine is a named network namespace (``/run/netns/kb-<lab>-<machine>``, made by
``net.py``) plus, while it is powered on, a PID 1 (``kembar.lab.init``) in its own mount,
PID and UTS namespaces.  Its PID 1 is found by the ``unshare`` process the lab started
(recorded by PID with its start time, so a recycled PID is never mistaken for it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kembar.errors import KembarError

NETNS_DIR = "/run/netns"
INIT_MODULE = "kembar.lab.init"
# Variables that would point a node's kembar at the host's files instead of its own.
HOST_ONLY_ENV = ("KEMBAR_RUN_DIR", "KEMBAR_DEV_DIR", "KEMBAR_CONFIG")


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int  # clock ticks since boot (/proc/PID/stat field 22)

    def alive(self) -> bool:
        return start_time(self.pid) == self.start


def start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def proc(pid: int) -> Proc | None:
    st = start_time(pid)
    return Proc(pid, st) if st is not None else None


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


def ns_inode(pid: int | str, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def netns_inode(ns: str) -> int | None:
    try:
        return os.stat(os.path.join(NETNS_DIR, ns)).st_ino
    except OSError:
        return None


def pids_in_netns(inodes: set[int]) -> list[int]:
    """Every process whose network namespace is one of ``inodes``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and ns_inode(entry, "net") in inodes:
            out.append(int(entry))
    return out


def env_for_machine() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in HOST_ONLY_ENV}
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = f"{bindir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def power_on(name: str, ns: str, root: Path, hw_disk: str | None, hw_mount: str,
             timeout: float = 20.0) -> tuple[Proc, Proc]:
    """Start the machine's PID 1; returns (the unshare process, PID 1) once it is ready."""
    root.mkdir(parents=True, exist_ok=True)
    ready = root / "ready"
    ready.unlink(missing_ok=True)
    cmd = ["nsenter", f"--net={os.path.join(NETNS_DIR, ns)}", "--",
           "unshare", "--mount", "--pid", "--uts", "--fork", "--propagation", "private",
           "--mount-proc", "--",
           sys.executable, "-m", INIT_MODULE, "--name", name, "--root", str(root),
           "--hw-mount", hw_mount, "--ready", str(ready)]
    if hw_disk:
        cmd[cmd.index("--ready"):cmd.index("--ready")] = ["--hw-disk", hw_disk]
    with open(root / "console.log", "ab") as console:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=console, stderr=console,
                             start_new_session=True, env=env_for_machine())
    outer = proc(p.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = ready.read_text() if ready.exists() else ""
        if text.startswith("ready"):
            init = find_init(p.pid)
            if init is not None and outer is not None:
                return outer, init
        if text.startswith("failed") or p.poll() is not None:
            break
        time.sleep(0.02)
    if p.poll() is None:
        init = find_init(p.pid)
        if init is not None:
            os.kill(init.pid, signal.SIGKILL)
        p.kill()
    p.wait(5)
    log = (root / "console.log").read_text(errors="replace").strip().splitlines()
    why = ready.read_text().strip() if ready.exists() else (log[-1] if log else "no output")
    raise KembarError(f"{name} did not start: {why}")


def find_init(unshare_pid: int) -> Proc | None:
    """The machine's PID 1: the child of ``unshare --fork`` (nsenter execs unshare)."""
    for c in children(unshare_pid):
        p = proc(c)
        if p is not None:
            return p
    return None


def power_off(init: Proc, timeout: float = 5.0) -> bool:
    """SIGKILL the machine's PID 1: the kernel kills every process in its PID namespace.
    Returns False if it was not running."""
    if not init.alive():
        return False
    try:
        os.kill(init.pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while init.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    return True


def enter_argv(init: Proc, argv: list[str]) -> list[str]:
    """The command line that runs ``argv`` on the machine, in all of its namespaces."""
    return ["nsenter", f"--target={init.pid}", "--net", "--mount", "--uts", "--pid",
            "--", *argv]


def run(init: Proc, argv: list[str], *, check: bool = False, timeout: float | None = None,
        input: str | None = None, capture: bool = True) -> subprocess.CompletedProcess[str]:
    if not init.alive():
        raise KembarError("the machine is powered off")
    return subprocess.run(enter_argv(init, argv), capture_output=capture, text=True,
                          check=check, timeout=timeout, input=input,
                          env=env_for_machine())
