"""The lab helpers: the sweep kills only leftover test disk processes, by PID."""

from __future__ import annotations

import subprocess
import sys

from kembar.lab.pair import sweep, wait_for


def _sleeper(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *argv])


def test_sweep_kills_only_processes_of_test_pairs() -> None:
    ours = _sleeper("kembar.disk.daemon", "--config", "/tmp/kembar-test-sweep/cluster.toml")
    other = _sleeper("kembar.disk.daemon", "--config", "/etc/kembar/cluster.toml")
    try:
        wait_for(lambda: open(f"/proc/{ours.pid}/cmdline", "rb").read().count(b"--config"), 5)
        killed = sweep()
        assert ours.pid in killed and other.pid not in killed
        assert ours.wait(5) != 0
        assert other.poll() is None
    finally:
        for proc in (ours, other):
            proc.kill()
            proc.wait()
