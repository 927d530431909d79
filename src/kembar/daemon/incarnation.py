"""The node's incarnation: a number that grows at every start of the daemon, persisted
(fsynced) before the first heartbeat, so peers tell a restart from a replay."""

from __future__ import annotations

import os
import time


def next_incarnation(path: str) -> int:
    """Read, increment, write back atomically; never smaller than the wall clock's
    seconds, so a lost file (a new disk) still gives a greater number than before."""
    try:
        with open(path) as fh:
            old = int(fh.read().strip() or 0)
    except FileNotFoundError:
        old = 0
    except ValueError:
        old = 0
    new = max(old + 1, int(time.time()))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.new"
    with open(tmp, "w") as fh:
        fh.write(f"{new}\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return new
