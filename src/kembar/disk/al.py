"""The activity log: the set of "hot" 4 MiB extents a Primary may be writing to.

Before a write reaches the backing store, every extent it touches must be in the
activity log *on disk*; after a Primary crash, the extents in the log are the only
regions where the two nodes may differ beyond the bitmap, so they are marked dirty.

Invariants:
- ``AlState`` never holds more than ``capacity`` extents.  ``plan`` is pure: it returns
  ``None`` when every extent is already active (only refreshing their recency) or an
  ``AlChange`` describing additions and least-recently-used evictions; nothing changes
  until ``apply``.  Extents of the request itself are never evicted by that request.
- ``active()`` and ``AlChange.active_after`` list extents least- to most-recently used.
- ``AlFile`` has two fixed-size, 512-byte aligned slots; ``commit`` always writes the slot
  *not* holding the newest valid record, with ``seq + 1``, then ``fdatasync``.  A torn
  write can therefore only damage the slot being written: ``load`` then returns the
  previous record.  A slot with a wrong magic, checksum or count is ignored; ``load``
  never raises for damaged contents (only for I/O errors other than a missing file).
- A file written with a different capacity has a different slot size and reads as empty.
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import crc32c as _crc

EXTENT_SIZE = 4 * 1024 * 1024
SLOT_MAGIC = b"KMBRAL01"
_SLOT_HEAD = struct.Struct("!8sQI")
_CRC = struct.Struct("!I")
_ALIGN = 512
_U32 = (1 << 32) - 1


def extents_for(offset: int, length: int) -> range:
    """Extent numbers touched by the byte range ``[offset, offset + length)``."""
    if offset < 0 or length < 0:
        raise ValueError(f"bad byte range ({offset}, {length})")
    first = offset // EXTENT_SIZE
    if length == 0:
        return range(first, first)
    return range(first, (offset + length - 1) // EXTENT_SIZE + 1)


@dataclass(frozen=True)
class AlChange:
    """Extents to add and evict; ``active_after`` is the full LRU→MRU list afterwards."""

    add: list[int]
    evict: list[int]
    active_after: list[int]


class AlState:
    """A pure LRU set of at most ``capacity`` active extents."""

    def __init__(self, capacity: int, initial: Iterable[int] = ()) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity}")
        self.capacity = capacity
        self._lru: OrderedDict[int, None] = OrderedDict()
        for e in initial:
            self._lru[e] = None
            self._lru.move_to_end(e)
        while len(self._lru) > capacity:
            self._lru.popitem(last=False)

    def __contains__(self, extent: object) -> bool:
        return extent in self._lru

    def __len__(self) -> int:
        return len(self._lru)

    def active(self) -> list[int]:
        return list(self._lru)

    def plan(self, extents: Iterable[int]) -> AlChange | None:
        want = list(dict.fromkeys(extents))
        if len(want) > self.capacity:
            raise ValueError(
                f"one request touches {len(want)} extents, activity log holds {self.capacity}"
            )
        add = [e for e in want if e not in self._lru]
        if not add:
            for e in want:
                self._lru.move_to_end(e)
            return None
        wanted = set(want)
        keep = [e for e in self._lru if e not in wanted]
        n_evict = len(keep) + len(want) - self.capacity
        evict = keep[:n_evict] if n_evict > 0 else []
        return AlChange(add=add, evict=evict, active_after=keep[len(evict) :] + want)

    def apply(self, change: AlChange) -> None:
        """Adopt ``change``; ``ValueError`` if it was planned against another state."""
        expect = (set(self._lru) - set(change.evict)) | set(change.add)
        if (
            not set(change.evict) <= set(self._lru)
            or set(change.add) & set(self._lru)
            or set(change.active_after) != expect
            or len(change.active_after) != len(expect)
            or len(expect) > self.capacity
        ):
            raise ValueError("stale AlChange: the activity log changed since it was planned")
        self._lru = OrderedDict.fromkeys(change.active_after)


class AlFile:
    """The on-disk activity log: two alternating, checksummed slots."""

    def __init__(self, path: str | os.PathLike[str], capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity}")
        self.path = os.fspath(path)
        self.capacity = capacity
        raw = _SLOT_HEAD.size + 4 * capacity + _CRC.size
        self.slot_size = -(-raw // _ALIGN) * _ALIGN
        self._ext = struct.Struct(f"!{capacity}I")
        self._fd: int | None = None
        self._seq: int | None = None  # newest valid seq; None = not scanned yet
        self._slot = 1  # slot holding the newest record (so the first commit goes to 0)

    def __repr__(self) -> str:
        return f"AlFile({self.path!r}, {self.capacity})"

    def encode_slot(self, seq: int, extents: list[int]) -> bytes:
        if len(extents) > self.capacity:
            raise ValueError(f"{len(extents)} extents exceed capacity {self.capacity}")
        if any(not 0 <= e <= _U32 for e in extents):
            raise ValueError("extent numbers must fit in 32 bits")
        body = _SLOT_HEAD.pack(SLOT_MAGIC, seq, len(extents)) + self._ext.pack(
            *extents, *([0] * (self.capacity - len(extents)))
        )
        rec = body + _CRC.pack(_crc.crc32c(body))
        return rec + bytes(self.slot_size - len(rec))

    def _decode_slot(self, raw: bytes) -> tuple[int, list[int]] | None:
        end = _SLOT_HEAD.size + self._ext.size
        if len(raw) < end + _CRC.size:
            return None
        magic, seq, count = _SLOT_HEAD.unpack_from(raw)
        if magic != SLOT_MAGIC or count > self.capacity:
            return None
        (crc,) = _CRC.unpack_from(raw, end)
        if crc != _crc.crc32c(raw[:end]):
            return None
        return seq, list(self._ext.unpack_from(raw, _SLOT_HEAD.size)[:count])

    def _read_all(self) -> bytes:
        if self._fd is not None:
            return os.pread(self._fd, 2 * self.slot_size, 0)
        try:
            with open(self.path, "rb") as f:
                return f.read(2 * self.slot_size)
        except FileNotFoundError:
            return b""

    def load(self) -> list[int]:
        """Extents of the newest valid slot (empty if none is valid or the file is missing)."""
        data = self._read_all()
        best: tuple[int, int, list[int]] | None = None
        for slot in (0, 1):
            got = self._decode_slot(data[slot * self.slot_size : (slot + 1) * self.slot_size])
            if got is not None and (best is None or got[0] > best[0]):
                best = (got[0], slot, got[1])
        if best is None:
            self._seq, self._slot = 0, 1
            return []
        self._seq, self._slot = best[0], best[1]
        return best[2]

    def _open(self) -> int:
        if self._fd is None:
            created = not os.path.exists(self.path)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                want = 2 * self.slot_size
                if os.fstat(fd).st_size != want:
                    os.ftruncate(fd, want)
                    try:
                        os.posix_fallocate(fd, 0, want)
                    except OSError:
                        pass  # not supported by every filesystem
                    os.fsync(fd)
                if created:
                    dfd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
                    try:
                        os.fsync(dfd)
                    finally:
                        os.close(dfd)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    def commit(self, extents: list[int]) -> None:
        """Durably record ``extents`` in the slot not holding the newest record."""
        if self._seq is None:
            self.load()
        assert self._seq is not None
        seq = self._seq + 1
        slot = 1 - self._slot
        rec = self.encode_slot(seq, list(extents))
        fd = self._open()
        off = slot * self.slot_size
        view = memoryview(rec)
        while view:
            n = os.pwrite(fd, view, off)
            view, off = view[n:], off + n
        os.fdatasync(fd)
        self._seq, self._slot = seq, slot

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> AlFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
