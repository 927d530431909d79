from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kembar.disk import meta as meta_mod
from kembar.disk.bitmap import BLOCK_SIZE
from kembar.disk.meta import Metadata, MetaStore, decode, describe, encode
from kembar.errors import MetadataError


def sample(size: int = 10 * BLOCK_SIZE + 17) -> Metadata:
    md = Metadata.new("r0", "alpha", size)
    md.current = 0x1234_5678_9ABC_DEF1
    md.bitmap_uuid = 0xFFFF_FFFF_FFFF_FFFF
    md.history = (5, 6)
    md.consistent = True
    md.primary_ind = True
    md.bitmap.set_range(BLOCK_SIZE, 3 * BLOCK_SIZE)
    md.bitmap.set_bits(md.bitmap.nbits - 1, 1)
    return md


def test_roundtrip(tmp_path: Path) -> None:
    store = MetaStore(tmp_path / "r0.md")
    assert not store.exists()
    md = sample()
    store.save(md)
    assert store.exists()
    got = store.load(expect_disk="r0", expect_node="alpha", expect_size=md.size)
    assert got == md
    assert got.bitmap.count() == 4
    assert not os.path.exists(store.tmp_path)
    got.was_up_to_date = True
    got.peer_outdated = True
    got.primary_ind = False
    store.save(got)
    assert store.load() == got


def test_new_defaults() -> None:
    md = Metadata.new("r0", "a", 5 * BLOCK_SIZE)
    assert md.bitmap.nbits == 5 and md.bitmap.count() == 0
    assert (md.current, md.bitmap_uuid, md.history) == (0, 0, (0, 0))
    assert not (md.consistent or md.was_up_to_date or md.primary_ind or md.peer_outdated)
    with pytest.raises(ValueError):
        Metadata("r0", "a", 5 * BLOCK_SIZE, bitmap=Metadata.new("r0", "a", BLOCK_SIZE).bitmap)


def test_describe() -> None:
    md = sample()
    d = describe(md)
    assert d["current"] == "123456789ABCDEF1"
    assert d["bitmap_uuid"] == "FFFFFFFFFFFFFFFF"
    assert d["history"] == ["0000000000000005", "0000000000000006"]
    assert d["out_of_sync_blocks"] == 4
    assert d["out_of_sync_bytes"] == 3 * BLOCK_SIZE + 17
    assert MetaStore.describe(md) == d


def test_create_refuses_overwrite(tmp_path: Path) -> None:
    store = MetaStore(tmp_path / "r0.md")
    md = store.create("r0", "alpha", 1 << 20)
    assert store.load() == md
    with pytest.raises(MetadataError, match="already exists.*--force"):
        store.create("r0", "alpha", 1 << 20)
    md2 = store.create("r1", "alpha", 1 << 21, force=True)
    assert store.load() == md2
    # garbage is not worth protecting
    (tmp_path / "r0.md").write_bytes(b"junk")
    store.create("r0", "alpha", 1 << 20)


def test_load_errors(tmp_path: Path) -> None:
    path = tmp_path / "r0.md"
    store = MetaStore(path)
    with pytest.raises(MetadataError, match=f"no metadata at {path}.*create-md"):
        store.load()
    store.save(sample())
    with pytest.raises(MetadataError, match="disk"):
        store.load(expect_disk="r1")
    with pytest.raises(MetadataError, match="node"):
        store.load(expect_node="beta")
    with pytest.raises(MetadataError, match="size mismatch"):
        store.load(expect_size=1)
    good = path.read_bytes()
    path.write_bytes(b"XXXXXXXX" + good[8:])
    with pytest.raises(MetadataError, match="magic"):
        store.load()
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(MetadataError, match="checksum"):
        store.load()
    # torn file: truncated mid-way
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(MetadataError, match=str(path)):
        store.load()
    path.write_bytes(b"")
    with pytest.raises(MetadataError, match="truncated"):
        store.load()


def test_save_validates() -> None:
    md = sample()
    md.current = 1 << 64
    with pytest.raises(ValueError):
        encode(md)
    md = sample()
    md.node = ""
    with pytest.raises(ValueError):
        encode(md)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutations_rejected(data: st.DataObject) -> None:
    good = encode(sample())
    buf = bytearray(good)
    kind = data.draw(st.sampled_from(["flip", "truncate", "extend", "splice"]))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        del buf[data.draw(st.integers(0, len(buf) - 1)) :]
    elif kind == "extend":
        buf += data.draw(st.binary(min_size=1, max_size=20))
    else:
        i = data.draw(st.integers(0, len(buf)))
        j = data.draw(st.integers(i, len(buf)))
        buf[i:j] = data.draw(st.binary(max_size=40))
    try:
        got = decode(bytes(buf))
    except MetadataError:
        return
    assert bytes(buf) == good and got == sample()


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_rejected(blob: bytes) -> None:
    with pytest.raises(MetadataError):
        decode(blob)
    with pytest.raises(MetadataError):
        decode(meta_mod.MAGIC + blob)


def _save_and_die(path: str, step: str) -> None:
    store = MetaStore(path)
    old = store.load()

    def hook(s: str) -> None:
        if s == step:
            os._exit(0)

    store._crash_hook = hook
    new = old
    new.current = 99
    new.bitmap.set_all()
    store.save(new)
    os._exit(3)


@pytest.mark.parametrize("step", ["written", "synced", "renamed"])
def test_crash_at_each_step(tmp_path: Path, step: str) -> None:
    path = str(tmp_path / "r0.md")
    store = MetaStore(path)
    old = sample()
    store.save(old)
    pid = os.fork()
    if pid == 0:
        try:
            _save_and_die(path, step)
        finally:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    new = sample()
    new.current = 99
    new.bitmap.set_all()
    got = store.load()
    assert got in (old, new)
    if step == "renamed":
        assert got == new
    else:
        assert got == old
        assert os.path.exists(store.tmp_path)  # leftover from the crash
        # the leftover is ignored and replaced by the next save
        store.save(new)
        assert store.load() == new
        assert not os.path.exists(store.tmp_path)


def test_module_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[str] = []
    monkeypatch.setattr(meta_mod, "_crash_hook", steps.append)
    MetaStore(tmp_path / "x.md").save(sample())
    assert steps == ["written", "synced", "renamed"]


def test_leftover_tmp_ignored(tmp_path: Path) -> None:
    store = MetaStore(tmp_path / "r0.md")
    store.save(sample())
    Path(store.tmp_path).write_bytes(b"half-written garbage")
    assert store.load() == sample()
    md = sample()
    md.current = 7
    store.save(md)
    assert store.load() == md
    assert not os.path.exists(store.tmp_path)
