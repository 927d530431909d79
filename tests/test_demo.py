"""`make demo` is one of the README's two commands: it must run and end well."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kembar.disk import loopdev


@pytest.mark.slow
def test_demo_runs_and_keeps_every_order() -> None:
    res = subprocess.run([sys.executable, "-m", "kembar.demo"], capture_output=True,
                         text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "the site and its orders survived the crash intact" in res.stdout
    assert "lost: 0" in res.stdout and "fsck.ext4 -n: clean" in res.stdout
    # and it leaves nothing behind
    assert not [m for m in loopdev.mounts() if "kembar-demo-" in m.mountpoint]
    assert not [n for n in loopdev.loop_devices()
                if "kembar-demo-" in (loopdev.backing_file(n) or "")]
