"""`make demo` is one of the README's two commands: it must run and end well."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kembar.lab.lab import Lab
from tests.labtools import leftovers


@pytest.mark.slow
def test_demo_runs_keeps_every_order_and_leaves_nothing() -> None:
    res = subprocess.run([sys.executable, "-m", "kembar.demo"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = " ".join(res.stdout.split())  # rich wraps long lines
    assert "the site and its orders survived the crash intact" in out
    assert "lost: 0; lost after failback: 0; fsck.ext4 -n: clean" in out
    assert "served by node1" in out and "served by node2" in out
    assert leftovers(Lab("demo")) == []
