"""Two real disk processes on one host (n1 on 127.0.0.1, n2 on 127.0.0.2), real files.

Used by the tests, the benchmarks and the demo.  Every process a ``Pair`` starts is
recorded by PID and killed by ``cleanup``; everything lives under one directory whose
name the caller chooses (prefix ``kembar-``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from kembar.disk import loopdev
from kembar.disk.client import DiskClient

ADDR = {"n1": "127.0.0.1", "n2": "127.0.0.2"}
MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return int(s.getsockname()[1])


def wait_for(pred: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Poll ``pred`` until it returns something true; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except Exception as exc:  # noqa: BLE001 - keep polling
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: last={last!r}")


class Pair:
    def __init__(self, root: Path, size: int = 16 * MiB, protocol: str = "C",
                 extra: str = "", secrets: tuple[str, str] = ("s3cret", "s3cret"),
                 options: dict[str, str] | None = None,
                 backings: dict[str, str] | None = None) -> None:
        """``backings`` names existing backing stores per node (e.g. the lab's failing
        hardware disks); by default each node gets a fresh file of ``size`` bytes."""
        self.root = root
        self.backings = {node: str(root / node / "backing.img") for node in ("n1", "n2")}
        self.backings.update(backings or {})
        self.size = size
        self.port = free_port()
        self.started: list[int] = []
        self.configs: dict[str, Path] = {}
        settings = {"connect_int": "200ms", "timeout": "3s", "ping_int": "1s",
                    "ping_timeout": "500ms", **(options or {})}
        lines = "\n".join(f'{k} = "{v}"' for k, v in settings.items())
        for node, secret in zip(("n1", "n2"), secrets):
            (root / node).mkdir(exist_ok=True)
            if node not in (backings or {}):
                with open(self.backings[node], "wb") as fh:
                    fh.truncate(size)
            cfg = root / f"cluster-{node}.toml"
            text = f"""
[cluster]
name = "test"
[nodes.n1]
address = "127.0.0.1"
[nodes.n2]
address = "127.0.0.2"
[disks.r0]
protocol = "{protocol}"
port = {self.port}
secret = "{secret}"
{lines}
{extra}
[disks.r0.on.n1]
backing = "{self.backings['n1']}"
meta = "{root}/n1/r0.md"
[disks.r0.on.n2]
backing = "{self.backings['n2']}"
meta = "{root}/n2/r0.md"
"""
            cfg.write_text(text)
            self.configs[node] = cfg

    def run_dir(self, node: str) -> str:
        return str(self.root / node / "run")

    def dev_dir(self, node: str) -> str:
        return str(self.root / node / "dev")

    def device(self, node: str) -> str:
        """The block device link of r0 on ``node`` (exists while it is Primary)."""
        return os.path.join(self.dev_dir(node), "r0")

    def backing(self, node: str) -> Path:
        return Path(self.backings[node])

    def kembar(self, node: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "kembar", "disk", "--config", str(self.configs[node]),
               "--node", node, "--run-dir", self.run_dir(node), "--dev-dir", self.dev_dir(node),
               *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(args)} on {node} failed ({res.returncode}): "
                                 f"{res.stderr}{res.stdout}\n{self.log(node)[-3000:]}")
        if args and args[0] == "up":
            self.started.append(self.pid(node))
        return res

    def pid(self, node: str) -> int:
        return int(Path(self.run_dir(node), "r0.pid").read_text().strip())

    def log(self, node: str) -> str:
        try:
            return Path(self.run_dir(node), "r0.log").read_text()
        except OSError:
            return ""

    def up(self, *nodes: str) -> None:
        for node in nodes or ("n1", "n2"):
            self.kembar(node, "up", "r0")

    def create(self) -> None:
        for node in ("n1", "n2"):
            self.kembar(node, "create-md", "r0")

    def status(self, node: str) -> dict[str, Any]:
        return json.loads(self.kembar(node, "status", "r0", "--json").stdout)

    def client(self, node: str, **kw: Any) -> DiskClient:
        return DiskClient("r0", self.run_dir(node), **kw)

    def st(self, node: str) -> dict[str, Any]:
        with self.client(node, timeout=10) as c:
            return c.status()

    def synced(self) -> bool:
        a, b = self.st("n1"), self.st("n2")
        return all(x["peer"]["connection"] == "Connected"
                   and x["peer"]["replication"] == "Established"
                   and x["disk_state"] == "UpToDate" and x["peer"]["disk_state"] == "UpToDate"
                   and x["out_of_sync"] == 0 for x in (a, b))

    def wait_synced(self, timeout: float = 60) -> None:
        wait_for(self.synced, timeout, "both nodes UpToDate and connected")

    def start_fresh(self, primary: str = "n1") -> None:
        """create-md, up, primary --force, and wait for the initial full sync."""
        self.create()
        self.up()
        self.kembar(primary, "primary", "--force", "r0")
        self.wait_synced()

    def kill(self, node: str, sig: int = signal.SIGKILL) -> None:
        pid = self.pid(node)
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            wait_for(lambda: not alive(pid), 10, f"{node} to die")
            for name in ("r0.pid", "r0.sock"):
                try:
                    os.unlink(Path(self.run_dir(node), name))
                except FileNotFoundError:
                    pass

    def identical(self) -> bool:
        return self.backing("n1").read_bytes() == self.backing("n2").read_bytes()

    def cleanup(self) -> None:
        for pid in self.started:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for pid in self.started:
            wait_for(lambda: not alive(pid), 10, f"pid {pid} to die")
        release_mounts(lambda path: path.startswith(f"{self.root}/"))


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def release_mounts(ours: Callable[[str], bool]) -> list[str]:
    """Unmount (lazily) every mount whose mount point ``ours`` accepts, deepest first, and
    detach every loop device whose backing file it accepts; returns what was done."""
    done = []
    # Loop devices first, while their backing files still have their paths (after a lazy
    # unmount of a FUSE mount, the kernel shows them relative to the detached mount).
    for name in loopdev.loop_devices():
        back = loopdev.backing_file(name)
        if back and ours(back):
            subprocess.run(["losetup", "-d", f"/dev/{name}"], capture_output=True, check=False)
            done.append(f"losetup -d /dev/{name}")
    for m in sorted(loopdev.mounts(), key=lambda m: -len(m.mountpoint)):
        if ours(m.mountpoint):
            subprocess.run(["umount", "-l", m.mountpoint], capture_output=True, check=False)
            done.append(f"umount {m.mountpoint}")
    return done


def _owned_by_live_session(path: str) -> bool:
    m = re.match(r"^(.*/pytest-of-[^/]+/pytest-[0-9]+)/", path)
    if m is None:
        return False
    try:
        pid = int(Path(m.group(1), ".lock").read_text().strip())
    except (OSError, ValueError):
        return False
    return pid != os.getpid() and alive(pid)


def sweep(marker: str = "/kembar-test-") -> list[int]:
    """Kill leftover disk processes of earlier test runs (e.g. after a hard kill of pytest).

    A process is ours only if it runs ``kembar.disk.daemon`` with a config file under a
    directory whose path contains ``marker``, and no other live test session owns it (a
    pytest base directory's ``.lock`` names the PID of the session using it); it is
    killed by PID.
    """
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "kembar.disk.daemon" not in argv or "--config" not in argv:
            continue
        config = argv[argv.index("--config") + 1] if argv.index("--config") + 1 < len(argv) else ""
        if marker in config and not _owned_by_live_session(config):
            try:
                os.kill(int(entry), signal.SIGKILL)
                killed.append(int(entry))
            except ProcessLookupError:
                pass
    for pid in killed:
        wait_for(lambda: not alive(pid), 10, f"pid {pid} to die")
    # not the mounts of a live session: they are its disks' FUSE mounts, in use (found
    # when test sessions ran side by side: one's start unmounted the other's disks)
    release_mounts(lambda path: marker in path and not _owned_by_live_session(path))
    return killed

