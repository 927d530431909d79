from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kembar.disk.bitmap import BLOCK_SIZE, Bitmap
from kembar.errors import MetadataError


def model_runs(bits: set[int], start: int, max_bits: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for b in sorted(x for x in bits if x >= start):
        if out and out[-1][0] + out[-1][1] == b and out[-1][1] < max_bits:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((b, 1))
    return out


def check(bm: Bitmap, model: set[int]) -> None:
    assert bm.count() == len(model)
    expect = bytearray(bm.to_bytes().__len__())
    for b in model:
        expect[b >> 3] |= 1 << (b & 7)
    assert bm.to_bytes() == bytes(expect)


@st.composite
def scenario(draw: st.DrawFn) -> tuple[int, list[tuple[str, int, int]]]:
    nbits = draw(st.integers(0, 200))
    ops: list[tuple[str, int, int]] = []
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(
            st.sampled_from(
                ["set", "clear", "set_range", "clear_range", "set_all", "clear_all", "union"]
            )
        )
        if kind in ("set", "clear"):
            first = draw(st.integers(0, nbits))
            n = draw(st.integers(0, nbits - first))
        elif kind in ("set_range", "clear_range"):
            total = nbits * BLOCK_SIZE
            first = draw(st.integers(0, total))
            n = draw(st.integers(0, total - first))
        else:
            first = draw(st.integers(0, 2**32))  # seed for union
            n = 0
        ops.append((kind, first, n))
    return nbits, ops


@settings(max_examples=100, deadline=None)
@given(scenario())
def test_against_model(sc: tuple[int, list[tuple[str, int, int]]]) -> None:
    nbits, ops = sc
    bm = Bitmap(nbits)
    model: set[int] = set()
    for kind, a, n in ops:
        if kind == "set":
            new = set(range(a, a + n))
            assert bm.set_bits(a, n) == len(new - model)
            model |= new
        elif kind == "clear":
            new = set(range(a, a + n))
            assert bm.clear_bits(a, n) == len(new & model)
            model -= new
        elif kind == "set_range":
            new = {
                b for b in range(nbits) if n and b * BLOCK_SIZE < a + n and (b + 1) * BLOCK_SIZE > a
            }
            assert bm.set_range(a, n) == len(new - model)
            model |= new
        elif kind == "clear_range":
            new = {
                b for b in range(nbits) if b * BLOCK_SIZE >= a and (b + 1) * BLOCK_SIZE <= a + n
            }
            assert bm.clear_range_full(a, n) == len(new & model)
            model -= new
        elif kind == "set_all":
            assert bm.set_all() == nbits - len(model)
            model = set(range(nbits))
        elif kind == "clear_all":
            assert bm.clear_all() == len(model)
            model = set()
        else:
            other = Bitmap(nbits)
            extra = {b for b in range(nbits) if (a >> (b % 32)) & 1 and b % 3 == 0}
            for b in extra:
                other.set_bits(b, 1)
            if a & 1:
                assert bm.union_update(other) == len(extra - model)
            else:
                assert bm.union_update(other.to_bytes()) == len(extra - model)
            model |= extra
        check(bm, model)
    # queries
    for b in range(nbits):
        assert bm.test(b) == (b in model)
    for start in range(0, nbits + 2, 7):
        nxt = min((b for b in model if b >= start), default=-1)
        assert bm.next_set(start) == nxt
        for mx in (1, 3, 8, 256):
            assert list(bm.runs(start, mx)) == model_runs(model, start, mx)
    for first in range(0, nbits + 1, 5):
        for n in (0, 1, 9, 70):
            if first + n <= nbits:
                assert bm.bits_in_range(first, n) == len(model & set(range(first, first + n)))
    again = Bitmap.from_bytes(nbits, bm.to_bytes())
    assert again == bm and again.count() == bm.count()
    cp = bm.copy()
    assert cp == bm
    if nbits:
        cp.set_all()
        cp.clear_bits(0, 1)
        assert cp.count() == nbits - 1


def test_for_size_and_partial_last_block() -> None:
    bm = Bitmap.for_size(3 * BLOCK_SIZE + 100)
    assert bm.nbits == 4
    assert Bitmap.for_size(0).nbits == 0
    assert Bitmap.for_size(BLOCK_SIZE).nbits == 1
    bm.set_all()
    # a write that reaches the end of the disk covers the partial last block completely
    assert bm.clear_range_full(3 * BLOCK_SIZE, 100) == 1
    assert bm.clear_range_full(BLOCK_SIZE + 1, BLOCK_SIZE) == 0
    assert bm.count() == 3
    with pytest.raises(ValueError):
        bm.set_range(3 * BLOCK_SIZE, BLOCK_SIZE + 1)


def test_bounds_and_errors() -> None:
    bm = Bitmap(10)
    with pytest.raises(ValueError):
        bm.set_bits(5, 6)
    with pytest.raises(ValueError):
        bm.clear_bits(-1, 1)
    with pytest.raises(IndexError):
        bm.test(10)
    with pytest.raises(ValueError):
        bm.union_update(Bitmap(11))
    with pytest.raises(ValueError):
        bm.union_update(b"\x00")
    with pytest.raises(MetadataError):
        Bitmap.from_bytes(10, b"\x00")
    assert bm.next_set(0) == -1
    assert bm.next_set(100) == -1
    assert list(bm.runs()) == []
    with pytest.raises(ValueError):
        Bitmap(-1)


def test_padding_bits_ignored() -> None:
    bm = Bitmap.from_bytes(10, b"\xff\xff")
    assert bm.count() == 10
    assert bm.to_bytes() == b"\xff\x03"
    bm2 = Bitmap(10)
    bm2.union_update(b"\x00\xff")
    assert bm2.count() == 2
    assert bm2.next_clear(0) == 0
    bm.set_all()
    assert bm.next_clear(0) == 10


def test_equality() -> None:
    a, b = Bitmap(20), Bitmap(20)
    assert a == b
    a.set_bits(3, 1)
    assert a != b
    assert Bitmap(8) != Bitmap(9)
    assert a != "x"


def test_runs_tolerate_clearing_during_iteration() -> None:
    bm = Bitmap(100_000)
    for first in range(0, 100_000, 1000):
        bm.set_bits(first, 10)
    seen = []
    for first, n in bm.runs(max_bits=4):
        seen.append((first, n))
        # clear this piece and the next run ahead of the iterator
        bm.clear_bits(first, n)
        nxt = first - first % 1000 + 1000
        if nxt < 100_000:
            bm.clear_bits(nxt, 10)
    assert bm.count() == 0
    assert seen[:3] == [(0, 4), (4, 4), (8, 2)]
    assert all(f % 2000 < 10 for f, _ in seen)


def test_one_tib() -> None:
    size = 1 << 40
    bm = Bitmap.for_size(size)
    assert bm.nbits == 1 << 28
    assert bm.set_range(0, size) == 1 << 28
    assert bm.count() == 1 << 28
    assert bm.clear_range_full(BLOCK_SIZE // 2, size - BLOCK_SIZE) == (1 << 28) - 2
    assert bm.count() == 2
    assert list(bm.runs()) == [(0, 1), ((1 << 28) - 1, 1)]
    assert bm.next_set(1) == (1 << 28) - 1
    assert bm.set_range(size // 2, 1 << 30) == 1 << 18
    runs = list(bm.runs(1, max_bits=1 << 16))
    assert runs[0] == ((1 << 27), 1 << 16) and len(runs) == 5
    assert bm.bits_in_range(0, bm.nbits) == bm.count() == 2 + (1 << 18)
    other = Bitmap.for_size(size)
    other.set_bits(12345, 1)
    assert bm.union_update(other) == 1
    assert Bitmap.from_bytes(bm.nbits, bm.to_bytes()).count() == bm.count()
    assert list(itertools.islice(bm.runs(0, 8), 3)) == [(0, 1), (12345, 1), (1 << 27, 8)]
    assert bm.clear_all() == 3 + (1 << 18)
    assert bm.count() == 0
    bm.set_all()
    assert bm.count() == bm.nbits and bm.next_clear(0) == bm.nbits



def test_multi_chunk_against_int_model() -> None:
    import random

    rnd = random.Random(7)
    nbits = 8 * (3 << 20) + 13  # spans several 1 MiB scan / popcount chunks
    nbytes = (nbits + 7) // 8
    bm, other = Bitmap(nbits), Bitmap(nbits)
    model = 0  # reference: a Python int used as a bit set
    omodel = 0
    for _ in range(60):
        first = rnd.randrange(nbits)
        n = rnd.randrange(min(nbits - first, 20_000) + 1)
        mask = ((1 << n) - 1) << first
        assert bm.set_bits(first, n) == (mask & ~model).bit_count()
        model |= mask
        b = rnd.randrange(nbits)
        other.set_bits(b, 1)
        omodel |= 1 << b
    # an all-ones 1 MiB chunk
    mask = ((1 << (8 << 20)) - 1) << (8 << 20)
    assert bm.set_bits(8 << 20, 8 << 20) == (mask & ~model).bit_count()
    model |= mask
    assert bm.count() == model.bit_count()
    assert bm.to_bytes() == model.to_bytes(nbytes, "little")
    assert bm.bits_in_range(0, nbits) == model.bit_count()
    inner = (model >> 100) & ((1 << (nbits - 200)) - 1)
    assert bm.bits_in_range(100, nbits - 200) == inner.bit_count()
    raw = bytearray(other.to_bytes())
    raw[-1] |= 0xE0  # padding bits must be ignored
    assert bm.union_update(bytes(raw)) == (omodel & ~model).bit_count()
    model |= omodel
    assert bm.count() == model.bit_count()
    assert bm.to_bytes() == model.to_bytes(nbytes, "little")
    assert Bitmap.from_bytes(nbits, bm.to_bytes()).count() == model.bit_count()
    runs = list(bm.runs(0, 1 << 30))
    rebuilt = 0
    for i, (first, n) in enumerate(runs):
        rebuilt |= ((1 << n) - 1) << first
        if i:
            prev_end = runs[i - 1][0] + runs[i - 1][1]
            assert first > prev_end  # maximal: separated by at least one clear bit
    assert rebuilt == model
    for start in (0, 12345, 8 << 20, (16 << 20) + 1, nbits - 5):
        rest = model >> start
        expect = start + (rest & -rest).bit_length() - 1 if rest else -1
        assert bm.next_set(start) == expect
    for first, n in runs[:50]:
        assert bm.clear_bits(first, n) == n
        model &= ~(((1 << n) - 1) << first)
    assert bm.count() == model.bit_count()
