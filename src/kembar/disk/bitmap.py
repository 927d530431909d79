"""The dirty bitmap: one bit per 4 KiB block of the backing store.

Invariants:
- Bit ``i`` covers bytes ``[i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)`` of the disk; it lives in
  byte ``i // 8`` of the buffer at mask ``1 << (i % 8)`` (LSB first, so ``to_bytes`` is
  ``int.to_bytes(..., "little")`` of the bit set).
- The buffer holds exactly ``ceil(nbits / 8)`` bytes and the padding bits beyond ``nbits``
  in the last byte are always zero (``from_bytes`` and ``union_update`` zero them).
- ``count()`` always equals the number of set bits; every mutator updates it by exactly
  the number of bits it changed (and returns that number), so it is O(1).
- No operation loops in Python over individual bits of a large range: whole bytes are
  written with slice assignment, counted with ``int.bit_count`` and scanned in growing
  chunks compared against constant all-zero / all-one blocks.
- ``runs`` re-reads the live buffer at every step, so bits cleared while iterating are
  simply not reported (a run may end early); it never raises because of concurrent clears.
- Range arguments must lie inside the bitmap (``ValueError`` otherwise); ``test`` of a bit
  outside it raises ``IndexError``.
"""

from __future__ import annotations

from collections.abc import Iterator

from kembar.errors import MetadataError

BLOCK_SIZE = 4096

_MAX_CHUNK = 1 << 20  # bytes compared at once while scanning
_ZEROS = bytes(_MAX_CHUNK)
_ONES = b"\xff" * _MAX_CHUNK


def _lowest_bit(x: int) -> int:
    return (x & -x).bit_length() - 1


def _popcount(buf: bytes | bytearray, lo: int, hi: int) -> int:
    """Set bits in ``buf[lo:hi]``, skipping all-zero / all-one 1 MiB chunks quickly."""
    total = 0
    for start in range(lo, hi, _MAX_CHUNK):
        stop = min(start + _MAX_CHUNK, hi)
        piece = buf[start:stop]
        if piece == _ZEROS[: stop - start]:
            continue
        if piece == _ONES[: stop - start]:
            total += 8 * (stop - start)
        else:
            total += int.from_bytes(piece, "little").bit_count()
    return total


class Bitmap:
    """A fixed-size bit set with an O(1) population count; see the module docstring."""

    __slots__ = ("_nbits", "_buf", "_count", "_size_bytes")

    def __init__(self, nbits: int, *, size_bytes: int | None = None) -> None:
        if nbits < 0:
            raise ValueError(f"nbits must be >= 0, got {nbits}")
        if size_bytes is None:
            size_bytes = nbits * BLOCK_SIZE
        elif not max(nbits - 1, 0) * BLOCK_SIZE < size_bytes <= nbits * BLOCK_SIZE and (
            nbits or size_bytes
        ):
            raise ValueError(f"size_bytes {size_bytes} does not fit {nbits} blocks")
        self._nbits = nbits
        self._size_bytes = size_bytes
        self._buf = bytearray((nbits + 7) // 8)
        self._count = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_size(cls, size_bytes: int) -> Bitmap:
        """A clear bitmap covering ``size_bytes`` bytes (the last block may be partial)."""
        if size_bytes < 0:
            raise ValueError(f"size must be >= 0, got {size_bytes}")
        return cls((size_bytes + BLOCK_SIZE - 1) // BLOCK_SIZE, size_bytes=size_bytes)

    @classmethod
    def from_bytes(
        cls, nbits: int, data: bytes | bytearray | memoryview, *, size_bytes: int | None = None
    ) -> Bitmap:
        """Rebuild a bitmap from ``to_bytes`` output; padding bits are zeroed.

        A buffer of the wrong length raises ``MetadataError``.
        """
        bm = cls(nbits, size_bytes=size_bytes)
        if len(data) != len(bm._buf):
            raise MetadataError(
                f"bitmap of {nbits} bits needs {len(bm._buf)} bytes, got {len(data)}"
            )
        bm._buf[:] = data
        bm._mask_padding()
        bm._count = bm._popcount(0, len(bm._buf))
        return bm

    def copy(self) -> Bitmap:
        other = Bitmap(self._nbits, size_bytes=self._size_bytes)
        other._buf[:] = self._buf
        other._count = self._count
        return other

    # ------------------------------------------------------------------ basics
    @property
    def nbits(self) -> int:
        return self._nbits

    @property
    def size_bytes(self) -> int:
        """Bytes of disk covered (``nbits * BLOCK_SIZE`` unless built ``for_size``)."""
        return self._size_bytes

    def count(self) -> int:
        """Number of set bits, O(1)."""
        return self._count

    def to_bytes(self) -> bytes:
        return bytes(self._buf)

    def __len__(self) -> int:
        return self._nbits

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Bitmap):
            return NotImplemented
        return self._nbits == other._nbits and self._buf == other._buf

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Bitmap(nbits={self._nbits}, count={self._count})"

    def test(self, bit: int) -> bool:
        if not 0 <= bit < self._nbits:
            raise IndexError(f"bit {bit} outside bitmap of {self._nbits} bits")
        return bool(self._buf[bit >> 3] & (1 << (bit & 7)))

    # ------------------------------------------------------------------ helpers
    def _check_range(self, first: int, n: int) -> None:
        if first < 0 or n < 0 or first + n > self._nbits:
            raise ValueError(f"bit range ({first}, {n}) outside bitmap of {self._nbits} bits")

    def _mask_padding(self) -> None:
        extra = self._nbits & 7
        if extra:
            self._buf[-1] &= (1 << extra) - 1

    def _popcount(self, lo: int, hi: int) -> int:
        """Set bits in buffer bytes ``[lo, hi)``; all-zero / all-one chunks are cheap."""
        return _popcount(self._buf, lo, hi)

    @staticmethod
    def _edges(first: int, n: int) -> tuple[int, int, int, int]:
        """(first byte, last byte, mask in first byte, mask in last byte) for n > 0."""
        last = first + n - 1
        lo, hi = first >> 3, last >> 3
        head = (0xFF << (first & 7)) & 0xFF
        tail = (1 << ((last & 7) + 1)) - 1
        if lo == hi:
            head &= tail
            tail = head
        return lo, hi, head, tail

    # ------------------------------------------------------------------ mutation
    def bits_in_range(self, first: int, n: int) -> int:
        """Number of set bits among ``[first, first + n)``."""
        self._check_range(first, n)
        if n == 0:
            return 0
        lo, hi, head, tail = self._edges(first, n)
        buf = self._buf
        if lo == hi:
            return (buf[lo] & head).bit_count()
        return (
            (buf[lo] & head).bit_count()
            + self._popcount(lo + 1, hi)
            + (buf[hi] & tail).bit_count()
        )

    def set_bits(self, first: int, n: int) -> int:
        """Set ``[first, first + n)``; returns how many bits were clear before."""
        before = self.bits_in_range(first, n)
        if before == n:
            return 0
        lo, hi, head, tail = self._edges(first, n)
        buf = self._buf
        buf[lo] |= head
        if hi > lo:
            buf[hi] |= tail
            if hi > lo + 1:
                buf[lo + 1 : hi] = b"\xff" * (hi - lo - 1)
        changed = n - before
        self._count += changed
        return changed

    def clear_bits(self, first: int, n: int) -> int:
        """Clear ``[first, first + n)``; returns how many bits were set before."""
        before = self.bits_in_range(first, n)
        if before == 0:
            return 0
        lo, hi, head, tail = self._edges(first, n)
        buf = self._buf
        buf[lo] &= ~head & 0xFF
        if hi > lo:
            buf[hi] &= ~tail & 0xFF
            if hi > lo + 1:
                buf[lo + 1 : hi] = bytes(hi - lo - 1)
        self._count -= before
        return before

    def _check_bytes(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self._nbits * BLOCK_SIZE:
            raise ValueError(
                f"byte range ({offset}, {length}) outside bitmap of {self._nbits} blocks"
            )

    def set_range(self, offset: int, length: int) -> int:
        """Mark every block the byte range ``[offset, offset + length)`` touches."""
        self._check_bytes(offset, length)
        if length == 0:
            return 0
        first = offset // BLOCK_SIZE
        last = (offset + length - 1) // BLOCK_SIZE
        return self.set_bits(first, last - first + 1)

    def clear_range_full(self, offset: int, length: int) -> int:
        """Clear only the blocks the byte range covers completely.

        Partially covered edge blocks stay set.  A range reaching ``size_bytes`` (the end
        of the disk) covers a partial last block completely.
        """
        self._check_bytes(offset, length)
        end = offset + length
        first = -(-offset // BLOCK_SIZE)
        stop = self._nbits if end >= self._size_bytes else end // BLOCK_SIZE
        if stop <= first:
            return 0
        return self.clear_bits(first, stop - first)

    def set_all(self) -> int:
        changed = self._nbits - self._count
        self._buf[:] = b"\xff" * len(self._buf)
        self._mask_padding()
        self._count = self._nbits
        return changed

    def clear_all(self) -> int:
        changed = self._count
        self._buf[:] = bytes(len(self._buf))
        self._count = 0
        return changed

    def union_update(self, other: Bitmap | bytes | bytearray | memoryview) -> int:
        """OR ``other`` in (same size required, else ``ValueError``); returns bits newly set."""
        if isinstance(other, Bitmap):
            if other._nbits != self._nbits:
                raise ValueError(f"bitmap sizes differ: {self._nbits} vs {other._nbits} bits")
            data: bytes | bytearray | memoryview = other._buf
        else:
            if len(other) != len(self._buf):
                raise ValueError(
                    f"bitmap of {self._nbits} bits needs {len(self._buf)} bytes, got {len(other)}"
                )
            data = other
        buf = self._buf
        added = 0
        for lo in range(0, len(buf), _MAX_CHUNK):
            hi = min(lo + _MAX_CHUNK, len(buf))
            theirs = bytes(data[lo:hi])
            if theirs == _ZEROS[: hi - lo]:
                continue
            mine = buf[lo:hi]
            if mine == theirs or mine == _ONES[: hi - lo]:
                continue
            before = _popcount(mine, 0, hi - lo)
            merged = int.from_bytes(mine, "little") | int.from_bytes(theirs, "little")
            buf[lo:hi] = merged.to_bytes(hi - lo, "little")
            added += merged.bit_count() - before
        extra = self._nbits & 7
        if extra and buf[-1] >> extra:
            added -= (buf[-1] >> extra).bit_count()
            buf[-1] &= (1 << extra) - 1
        self._count += added
        return added

    # ------------------------------------------------------------------ scanning
    def _scan(self, bit: int, want_set: bool, limit: int) -> int:
        """First bit in ``[bit, limit)`` equal to ``want_set``, or ``limit`` if none."""
        if bit >= limit:
            return limit
        buf = self._buf
        end_byte = (limit + 7) >> 3
        pos = bit >> 3
        skip = _ZEROS if want_set else _ONES
        chunk = 64
        first = True
        while pos < end_byte:
            stop = min(pos + chunk, end_byte)
            piece = buf[pos:stop]
            if first or piece != skip[: stop - pos]:
                x = int.from_bytes(piece, "little")
                if not want_set:
                    x = ~x & ((1 << (8 * (stop - pos))) - 1)
                if first:
                    x &= ~((1 << (bit & 7)) - 1)
                    first = False
                if x:
                    return min(pos * 8 + _lowest_bit(x), limit)
            pos = stop
            chunk = min(chunk * 2, _MAX_CHUNK)
        return limit

    def next_set(self, bit: int) -> int:
        """First set bit at or after ``bit``, or -1."""
        if bit < 0:
            raise ValueError(f"bit must be >= 0, got {bit}")
        if self._count == 0 or bit >= self._nbits:
            return -1
        found = self._scan(bit, True, self._nbits)
        return found if found < self._nbits else -1

    def next_clear(self, bit: int) -> int:
        """First clear bit at or after ``bit``, or ``nbits`` if none."""
        if bit < 0:
            raise ValueError(f"bit must be >= 0, got {bit}")
        return self._scan(bit, False, self._nbits)

    def runs(self, start_bit: int = 0, max_bits: int = 256) -> Iterator[tuple[int, int]]:
        """Yield ``(first, n)`` runs of set bits at or after ``start_bit``, ascending.

        Each maximal run is cut into pieces of at most ``max_bits``.  The live bitmap is
        re-read at every step.
        """
        if max_bits <= 0:
            raise ValueError(f"max_bits must be > 0, got {max_bits}")
        pos = max(start_bit, 0)
        while pos < self._nbits:
            s = self.next_set(pos)
            if s < 0:
                return
            e = self._scan(s, False, min(s + max_bits, self._nbits))
            if e <= s:  # cleared between the two scans
                pos = s + 1
                continue
            yield s, e - s
            pos = e

