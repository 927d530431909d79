from __future__ import annotations

import os
import struct
from pathlib import Path

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kembar.disk.al import EXTENT_SIZE, AlChange, AlFile, AlState, extents_for


def test_extents_for() -> None:
    assert extents_for(0, 0) == range(0, 0)
    assert list(extents_for(0, 1)) == [0]
    assert list(extents_for(0, EXTENT_SIZE)) == [0]
    assert list(extents_for(EXTENT_SIZE - 1, 2)) == [0, 1]
    assert list(extents_for(3 * EXTENT_SIZE, 2 * EXTENT_SIZE + 1)) == [3, 4, 5]
    with pytest.raises(ValueError):
        extents_for(-1, 5)


class ModelLru:
    """Reference: a plain list, least recently used first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: list[int] = []

    def touch(self, extents: list[int]) -> tuple[list[int], list[int]] | None:
        want = []
        for e in extents:
            if e not in want:
                want.append(e)
        add = [e for e in want if e not in self.items]
        evicted: list[int] = []
        if add:
            others = [e for e in self.items if e not in want]
            while len(others) + len(want) > self.capacity:
                evicted.append(others.pop(0))
        for e in want:
            if e in self.items:
                self.items.remove(e)
            self.items.append(e)
        for e in evicted:
            self.items.remove(e)
        return (add, evicted) if add else None


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 6),
    st.lists(st.lists(st.integers(0, 12), min_size=0, max_size=7), max_size=40),
)
def test_lru_against_model(capacity: int, requests: list[list[int]]) -> None:
    state = AlState(capacity)
    model = ModelLru(capacity)
    for req in requests:
        if len(set(req)) > capacity:
            with pytest.raises(ValueError):
                state.plan(req)
            continue
        before = state.active()
        change = state.plan(req)
        expected = model.touch(req)
        if expected is None:
            assert change is None
        else:
            assert change is not None
            assert state.active() == before  # plan does not mutate
            assert (change.add, change.evict) == expected
            assert change.active_after == model.items
            state.apply(change)
        assert state.active() == model.items
        assert len(state) <= capacity
        for e in req:
            assert e in state


def test_stale_change_rejected() -> None:
    state = AlState(2)
    c1 = state.plan([1])
    c2 = state.plan([2])
    assert c1 is not None and c2 is not None
    state.apply(c1)
    with pytest.raises(ValueError):
        state.apply(c2)
    with pytest.raises(ValueError):
        state.apply(AlChange(add=[], evict=[9], active_after=[1]))
    assert state.active() == [1]
    with pytest.raises(ValueError):
        AlState(0)


def test_alfile_roundtrip_and_alternation(tmp_path: Path) -> None:
    path = tmp_path / "r0.al"
    al = AlFile(path, 8)
    assert al.load() == []
    assert not path.exists()
    al.commit([3, 1, 2])
    assert path.stat().st_size == 2 * al.slot_size
    assert al.slot_size % 512 == 0
    assert al.load() == [3, 1, 2]
    assert AlFile(path, 8).load() == [3, 1, 2]
    raw = path.read_bytes()
    assert raw[:8] == b"KMBRAL01" and raw[al.slot_size :] == bytes(al.slot_size)
    al.commit([4])
    raw = path.read_bytes()
    assert raw[al.slot_size : al.slot_size + 8] == b"KMBRAL01"
    assert AlFile(path, 8).load() == [4]
    al.commit([5, 6, 7, 8, 9, 10, 11, 12])
    assert AlFile(path, 8).load() == [5, 6, 7, 8, 9, 10, 11, 12]
    al.commit([])
    assert AlFile(path, 8).load() == []
    with pytest.raises(ValueError):
        al.commit(list(range(9)))
    with pytest.raises(ValueError):
        al.commit([1 << 32])
    al.close()
    al.close()
    # a new instance continues the sequence without loading first
    with AlFile(path, 8) as al2:
        al2.commit([42])
    assert AlFile(path, 8).load() == [42]


@pytest.mark.parametrize("cut", [1, 8, 20, 100])
def test_torn_slot_keeps_older(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "r0.al"
    al = AlFile(path, 64)
    al.commit([1, 2])  # slot 0, seq 1
    al.commit([3, 4])  # slot 1, seq 2
    al.close()
    # the next commit would go to slot 0 with seq 3: tear it by hand
    rec = al.encode_slot(3, [5, 6, 7])
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, rec[: cut], 0)
    finally:
        os.close(fd)
    al2 = AlFile(path, 64)
    assert al2.load() == [3, 4]
    # recovery continues: the next commit overwrites the torn slot, the good one stays
    al2.commit([9])
    assert AlFile(path, 64).load() == [9]
    raw = path.read_bytes()
    assert AlFile(path, 64)._decode_slot(raw[al2.slot_size :]) == (2, [3, 4])


def test_torn_newer_slot_half(tmp_path: Path) -> None:
    path = tmp_path / "r0.al"
    al = AlFile(path, 200)
    al.commit(list(range(100)))
    al.close()
    rec = al.encode_slot(2, list(range(100, 200)))
    data = bytearray(path.read_bytes())
    half = len(rec) // 2
    data[al.slot_size : al.slot_size + half] = rec[:half]
    path.write_bytes(bytes(data))
    assert AlFile(path, 200).load() == list(range(100))


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=2000))
def test_garbage_file(tmp_path_factory: pytest.TempPathFactory, blob: bytes) -> None:
    path = tmp_path_factory.mktemp("kembar-test-al") / "r0.al"
    path.write_bytes(blob)
    al = AlFile(path, 16)
    assert al.load() == []
    al.commit([7, 8])
    al.close()
    assert path.stat().st_size == 2 * al.slot_size
    assert AlFile(path, 16).load() == [7, 8]


def test_wrong_capacity_reads_empty(tmp_path: Path) -> None:
    path = tmp_path / "r0.al"
    with AlFile(path, 1000) as al:
        al.commit([1])
    assert AlFile(path, 1000).load() == [1]
    assert AlFile(path, 10).load() == []


def test_bad_count_rejected(tmp_path: Path) -> None:
    path = tmp_path / "r0.al"
    al = AlFile(path, 4)
    body = b"KMBRAL01" + struct.pack("!QI", 1, 5) + struct.pack("!4I", 1, 2, 3, 4)
    rec = body + struct.pack("!I", crc32c.crc32c(body))
    path.write_bytes(rec.ljust(2 * al.slot_size, b"\0"))
    assert al.load() == []
