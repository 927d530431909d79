"""A fresh lab per end-to-end test, always torn down, and proof that nothing is left."""

from __future__ import annotations

import itertools
import os
import re
from typing import Callable, Iterator

import pytest

from kembar.lab.lab import Lab, all_labs

_count = itertools.count(1)


def leftovers(lab: Lab) -> list[str]:
    """Whatever of ``lab`` still exists: namespaces, mounts, loop devices, processes, files."""
    from kembar.disk import loopdev
    from kembar.lab import net

    out = [f"netns {n}" for n in net.existing(f"kb-{lab.name}-")]
    out += [f"mount {m.mountpoint}" for m in loopdev.mounts()
            if str(lab.dir) in m.mountpoint or m.fstype == "fuse.kembar-hw"
            and str(lab.dir) in m.mountpoint]
    out += [f"loop /dev/{n}" for n in loopdev.loop_devices()
            if str(lab.dir) in (loopdev.backing_file(n) or "")]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if str(lab.dir).encode() in fh.read():
                        out.append(f"process {entry}")
            except OSError:
                pass
    if lab.dir.exists():
        out.append(f"dir {lab.dir}")
    return out


@pytest.fixture
def make_lab() -> Iterator[Callable[..., Lab]]:
    made: list[Lab] = []

    def make(**kw: object) -> Lab:
        lab = Lab(f"t{os.getpid() % 1000}x{next(_count)}")
        made.append(lab)
        lab.up(**kw)  # type: ignore[arg-type]
        return lab

    yield make
    for lab in made:
        lab.down()
        assert leftovers(lab) == []


@pytest.fixture(scope="session", autouse=True)
def _no_labs_left() -> Iterator[None]:
    """Labs of an earlier, hard-killed test run are removed before and after the session."""
    for name in all_labs():
        if re.match(r"^t[0-9]+x[0-9]+$", name):
            Lab(name).down()
    yield
