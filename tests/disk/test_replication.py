"""Two real disk processes on loopback: replication, roles, protocols."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Callable

import pytest

from kembar.lab.pair import MiB, Pair, wait_for


def test_initial_sync_then_writes_replicate(make_pair: Callable[..., Pair]) -> None:
    p = make_pair()
    p.start_fresh()
    with p.client("n1") as c:
        c.write(0, b"a" * MiB)
        c.write(5 * MiB + 512, os.urandom(3 * MiB))
        c.flush()
        assert c.read(0, 4) == b"aaaa"
    assert p.identical()
    st = p.status("n2")
    assert st["role"] == "Secondary" and st["peer"]["role"] == "Primary"
    assert st["counters"]["received"] == 4 * MiB
