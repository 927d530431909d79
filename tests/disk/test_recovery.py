"""The split-brain recovery copy's pure parts: the diverging extents of a bitmap."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kembar.disk.bitmap import BLOCK_SIZE, Bitmap
from kembar.disk.recovery import check_path, extents, manifest

import pytest

from kembar.errors import KembarError


@given(size=st.integers(1, 300 * BLOCK_SIZE),
       marks=st.lists(st.tuples(st.integers(0, 299), st.integers(1, 40)), max_size=12))
def test_extents_cover_exactly_the_marked_blocks(size: int, marks: list[tuple[int, int]]
                                                 ) -> None:
    bm = Bitmap.for_size(size)
    for first, n in marks:
        if first < bm.nbits:
            bm.set_bits(first, min(n, bm.nbits - first))
    ext = extents(bm, size)
    covered = set()
    for o, n in ext:
        assert n > 0 and o + n <= size
        covered |= set(range(o // BLOCK_SIZE, -(-(o + n) // BLOCK_SIZE)))
    assert covered == {b for b in range(bm.nbits) if bm.test(b)}
    # sorted, merged: no two ranges touch
    assert all(a[0] + a[1] < b[0] for a, b in zip(ext, ext[1:]))


def test_the_last_partial_block_is_clipped_to_the_disk() -> None:
    bm = Bitmap.for_size(10 * BLOCK_SIZE + 100)
    bm.set_all()
    assert extents(bm, 10 * BLOCK_SIZE + 100) == [(0, 10 * BLOCK_SIZE + 100)]


def test_manifest_and_paths(tmp_path) -> None:  # type: ignore[no-untyped-def]
    m = manifest("r0", "n2", 8192, {"current": "AB"}, [(0, 4096)], False, "/x.img")
    assert m["diverging_bytes"] == 4096 and m["contents"] == "the whole disk"
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(KembarError, match="exists already"):
        check_path(str(tmp_path / "a"))
    with pytest.raises(KembarError, match="absolute"):
        check_path("a")
    assert check_path(str(tmp_path / "b")) == (str(tmp_path / "b.img"),
                                                str(tmp_path / "b.json"))
