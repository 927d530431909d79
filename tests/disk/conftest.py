from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from kembar.lab.hw import hw_request
from kembar.lab.pair import Pair, wait_for


@pytest.fixture
def make_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Pair]]:
    """Build two-node disk pairs; every process started is killed by PID afterwards."""
    pairs: list[Pair] = []

    def make(**kw: object) -> Pair:
        root: Path = tmp_path_factory.mktemp("kembar-test-")
        pair = Pair(root, **kw)  # type: ignore[arg-type]
        pairs.append(pair)
        return pair

    yield make
    for pair in pairs:
        pair.cleanup()
        shutil.rmtree(pair.root, ignore_errors=True)


class HwDisks:
    """The lab's failing hardware disks (``kembar.lab.hw``, real FUSE) for n1 and n2."""

    def __init__(self, root: Path, size: int) -> None:
        self.root = root
        self.mount = root / "kbf-hw"
        self.mount.mkdir()
        self.control = str(root / "kbf-hw.sock")
        self.images = {n: root / f"kbf-{n}.img" for n in ("n1", "n2")}
        for img in self.images.values():
            with open(img, "wb") as fh:
                fh.truncate(size)
        pid_file = root / "kbf-hw.pid"
        with open(root / "kbf-hw.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kembar.lab.hw", "--mount", str(self.mount),
                 "--control", self.control, "--pid-file", str(pid_file),
                 *[a for n, p in self.images.items() for a in ("--disk", f"{n}={p}")]],
                stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: pid_file.exists() or self.proc.poll() is not None, 15,
                 "the hardware disks")
        assert self.proc.poll() is None, (root / "kbf-hw.log").read_text()

    def path(self, node: str) -> str:
        return str(self.mount / node)

    def fail(self, node: str) -> None:
        assert hw_request(self.control, {"op": "fail", "disk": node})["ok"]

    def repair(self, node: str) -> None:
        assert hw_request(self.control, {"op": "repair", "disk": node})["ok"]

    def image(self, node: str) -> bytes:
        return self.images[node].read_bytes()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        with open("/proc/self/mountinfo") as fh:
            if any(line.split()[4] == str(self.mount) for line in fh):
                subprocess.run(["umount", "-l", str(self.mount)], check=False)


HW_SIZE = 16 * 1024 * 1024


@contextlib.contextmanager
def hw_pair_in(root: Path, extra: str = "") -> Iterator[tuple[Pair, HwDisks]]:
    """A disk pair whose backing stores are failing hardware disks, under ``root`` (a
    ``kbf-`` directory: not ``kembar-test-``, which a concurrent test session's ``sweep``
    would take for leftovers), ``extra`` added to its cluster file.  Torn down in order,
    also when the test failed: the disk processes first, then the hardware disks, then
    ``root``."""
    hw = HwDisks(root, HW_SIZE)
    pair: Pair | None = None
    try:
        (root / "pair").mkdir()
        pair = Pair(root / "pair", size=HW_SIZE,
                    backings={n: hw.path(n) for n in ("n1", "n2")}, extra=extra)
        yield pair, hw
        for node in ("n1", "n2"):  # shown by pytest when the test failed
            print(f"--- {node} log (warnings and errors) ---")
            print("\n".join(ln for ln in pair.log(node).splitlines()[-400:]
                            if " INFO: " not in ln))
    finally:
        try:
            if pair is not None:
                pair.cleanup()
        finally:
            hw.stop()
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def hw_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pair, HwDisks]]:
    """A disk pair whose backing stores are failing hardware disks (``hw_pair_in``)."""
    with hw_pair_in(tmp_path_factory.mktemp("kbf-hw-")) as pair_hw:
        yield pair_hw
