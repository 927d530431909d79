"""The manager's handling of a disk process that died under a running group (found by the
200-iteration torture: SIGKILL of the owner's disk process; the probe's monitor noticed
first, its restart alone failed, the group left node1 and went nowhere):

* a failed monitor restarts from the first failing resource before it;
* a disk that no process serves is reported with the generations in its metadata (the
  peer's policy needs them to know whether it holds everything that disk held)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from kembar.config.model import parse_cluster
from kembar.daemon.manager import Manager
from kembar.disk.meta import MetaStore
from kembar.manager.report import DiskReport


def manager(tmp_path: Path) -> Manager:
    (tmp_path / "b1").write_bytes(b"\0" * 2**20)
    cfg = parse_cluster(f"""
[cluster]
name = "t"
[nodes.alpha]
address = "127.0.0.1"
[nodes.beta]
address = "127.0.0.2"
[disks.r0]
secret = "s3cret-s3cret"
[disks.r0.on.alpha]
backing = "{tmp_path}/b1"
meta = "{tmp_path}/m1"
[disks.r0.on.beta]
backing = "{tmp_path}/b2"
[groups.web]
preferred = "alpha"
[[groups.web.resources]]
type = "disk"
disk = "r0"
[[groups.web.resources]]
type = "probe"
command = ["/bin/true"]
monitor_interval = "50ms"
""")
    run = tmp_path / "run"
    run.mkdir()
    return Manager(cfg, "alpha", str(run), str(tmp_path), lambda: None, lambda e: None)


def test_a_down_disk_reports_the_generations_of_its_metadata(tmp_path: Path) -> None:
    m = manager(tmp_path)
    assert m._read_disks() == {"r0": DiskReport("Down", gen="")}  # no metadata yet
    store = MetaStore(str(tmp_path / "m1"))
    md = store.create("r0", "alpha", 2**20)
    md.current, md.bitmap_uuid = 0xAB12, 0xCD35
    store.save(md)
    assert m._read_disks() == {"r0": DiskReport("Down", gen=f"{0xAB12:016X}:{0xCD35:016X}")}
    (tmp_path / "m1").write_bytes(b"garbage")  # unreadable: unknown, never a guess
    assert m._read_disks() == {"r0": DiskReport("Down", gen="")}


class Fake:
    def __init__(self, name: str, ok: bool) -> None:
        self.name, self.ok, self.calls = name, ok, 0

    def monitor(self, timeout: float) -> bool:
        self.calls += 1
        return self.ok


def test_a_failed_monitor_restarts_from_the_first_failing_resource(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    m = manager(tmp_path)
    disk, probe = Fake("disk r0", False), Fake("probe /bin/true", False)
    loc = m.local["web"]
    loc.state, loc.agents = "running", [disk, probe]  # type: ignore[list-item]
    restarted: list[int] = []

    async def restart(group: str, index: int) -> None:
        restarted.append(index)
        loc.failed = "stop here"  # ends the monitor loop

    m._restart = restart  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, "kembar.manager"):
        asyncio.run(asyncio.wait_for(m._monitor("web"), 5))
    # the probe (every 50 ms) failed first; the disk (every 10 s) was asked at once
    assert restarted == [0] and probe.calls == 1 and disk.calls == 1
    assert "disk r0, before it in the group, fails too: the restart begins there" \
        in caplog.text
    assert loc.fail_counts == {"disk r0": 1}

    # everything before it runs: the failed one restarts alone
    disk.ok, loc.failed, restarted[:] = True, "", []
    loc.fail_counts.clear()
    asyncio.run(asyncio.wait_for(m._monitor("web"), 5))
    assert restarted == [1] and loc.fail_counts == {"probe /bin/true": 1}


def test_a_delayed_fence_is_called_off_when_the_node_is_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Priority fencing: the side that does not run the group waits its delay, then fences
    only if the node is still dead (a healed link brought it back: no shot)."""
    from kembar.manager.view import Member

    from kembar.config.groups import FencingConfig

    m = manager(tmp_path)
    marker = tmp_path / "shot"
    fencing = FencingConfig.model_validate(
        {"command": ["/bin/sh", "-c", f"echo {{node}} >> {marker}"], "priority_delay": "50ms"})
    m.cfg = m.cfg.model_copy(update={"fencing": fencing})
    beta = {"alive": True}
    monkeypatch.setattr(m, "members", lambda: {
        "alpha": Member("alpha", True), "beta": Member("beta", beta["alive"], incarnation=7)})
    monkeypatch.setattr(m, "announce", lambda: None)
    asyncio.run(m._fence("beta", 7, delay=0.05))  # back within the delay: not shot
    assert not marker.exists() and "beta" not in m.fenced and "beta" not in m.fencing_now
    beta["alive"] = False
    asyncio.run(m._fence("beta", 7, delay=0.05))  # still dead after the delay: shot
    assert marker.read_text() == "beta\n" and m.fenced["beta"] == 7
