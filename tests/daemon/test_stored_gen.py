"""A disk that no process serves is reported with the generations in its metadata (the
peer's policy needs them to know whether it holds everything that disk held; found by the
torture: SIGKILL of the owner's disk process left the group nowhere)."""

from __future__ import annotations

from pathlib import Path

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
