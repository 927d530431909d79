"""Persistent metadata of one replicated disk, kept in a file beside the backing store.

File format (all integers big-endian)::

    HEADER  magic "KMBRMETA", version, flags, size, current, bitmap_uuid,
            history[0], history[1], nbits, len(disk), len(node), len(bitmap)
    disk    utf-8 name
    node    utf-8 name
    bitmap  Bitmap.to_bytes()
    crc     crc32c over everything before it

Invariants:
- Decoding is strict: a wrong magic, version, unknown flag bit, length, bitmap size,
  name encoding, trailing byte or checksum raises ``MetadataError`` (naming the path);
  no other exception escapes ``load``.
- ``nbits == ceil(size / 4096)`` and the bitmap length matches it, always.
- ``save`` is atomic: it writes ``PATH.tmp``, fsyncs it, renames it over ``PATH`` and
  fsyncs the directory, so after a crash at any point ``PATH`` holds either the old or
  the new metadata, never a mixture.  A leftover ``PATH.tmp`` is ignored by ``load`` and
  overwritten by the next ``save``.
- ``disk_failed`` is set when the backing store failed and the disk detached; cleared when
  a resync as SyncTarget (or ``primary --force``) makes the data whole again.
- ``primary_ind`` is set while Primary and cleared on a clean demotion: a set flag at
  load time means the Primary crashed (its activity log must be replayed into the bitmap).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import crc32c as _crc

from kembar.disk.bitmap import BLOCK_SIZE, Bitmap
from kembar.errors import MetadataError

MAGIC = b"KMBRMETA"
VERSION = 1
HEADER = struct.Struct("!8sHHQQQQQQHHQ")
CRC = struct.Struct("!I")
MAX_NAME = 255
U64 = (1 << 64) - 1

FLAG_CONSISTENT = 1 << 0
FLAG_WAS_UP_TO_DATE = 1 << 1
FLAG_PRIMARY_IND = 1 << 2
FLAG_PEER_OUTDATED = 1 << 3
FLAG_DISK_FAILED = 1 << 4  # the backing store failed (detached): its data may miss writes
_KNOWN_FLAGS = (FLAG_CONSISTENT | FLAG_WAS_UP_TO_DATE | FLAG_PRIMARY_IND | FLAG_PEER_OUTDATED
                | FLAG_DISK_FAILED)

# Test hook: called with "written", "synced", "renamed" during save (instance hook wins).
_crash_hook: Callable[[str], None] | None = None


def _empty_bitmap() -> Bitmap:
    return Bitmap(0)


@dataclass
class Metadata:
    """Generation identifiers, disk flags and the dirty bitmap of one disk on one node."""

    disk: str
    node: str
    size: int
    current: int = 0
    bitmap_uuid: int = 0
    history: tuple[int, int] = (0, 0)
    consistent: bool = False
    was_up_to_date: bool = False
    primary_ind: bool = False
    peer_outdated: bool = False
    disk_failed: bool = False
    bitmap: Bitmap = field(default_factory=_empty_bitmap)

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"size must be >= 0, got {self.size}")
        want = Bitmap.for_size(self.size)
        if self.bitmap.nbits != want.nbits:
            if self.bitmap.nbits != 0:
                raise ValueError(
                    f"bitmap has {self.bitmap.nbits} bits, size {self.size} needs {want.nbits}"
                )
            self.bitmap = want
        elif self.bitmap.size_bytes != self.size:
            self.bitmap = Bitmap.from_bytes(
                want.nbits, self.bitmap.to_bytes(), size_bytes=self.size
            )
        self.history = (self.history[0], self.history[1])

    @classmethod
    def new(cls, disk: str, node: str, size: int) -> Metadata:
        return cls(disk=disk, node=node, size=size)

    @property
    def flags(self) -> int:
        return (
            (FLAG_CONSISTENT if self.consistent else 0)
            | (FLAG_WAS_UP_TO_DATE if self.was_up_to_date else 0)
            | (FLAG_PRIMARY_IND if self.primary_ind else 0)
            | (FLAG_PEER_OUTDATED if self.peer_outdated else 0)
            | (FLAG_DISK_FAILED if self.disk_failed else 0)
        )


def _name_bytes(what: str, name: str) -> bytes:
    raw = name.encode("utf-8")
    if not raw or len(raw) > MAX_NAME:
        raise ValueError(f"{what} name must be 1..{MAX_NAME} utf-8 bytes, got {name!r}")
    return raw


def encode(md: Metadata) -> bytes:
    """Serialize ``md``; ``ValueError`` if a field is out of range."""
    for label, v in (
        ("current", md.current),
        ("bitmap_uuid", md.bitmap_uuid),
        ("history[0]", md.history[0]),
        ("history[1]", md.history[1]),
        ("size", md.size),
    ):
        if not 0 <= v <= U64:
            raise ValueError(f"{label} {v} is not a 64-bit unsigned value")
    disk = _name_bytes("disk", md.disk)
    node = _name_bytes("node", md.node)
    bm = md.bitmap.to_bytes()
    head = HEADER.pack(
        MAGIC,
        VERSION,
        md.flags,
        md.size,
        md.current,
        md.bitmap_uuid,
        md.history[0],
        md.history[1],
        md.bitmap.nbits,
        len(disk),
        len(node),
        len(bm),
    )
    body = b"".join((head, disk, node, bm))
    return body + CRC.pack(_crc.crc32c(body))


def decode(data: bytes, where: str = "<bytes>") -> Metadata:
    """Strictly parse ``encode`` output; every defect raises ``MetadataError``."""

    def bad(why: str) -> MetadataError:
        return MetadataError(f"corrupt metadata at {where}: {why}")

    if len(data) < HEADER.size + CRC.size:
        raise bad(f"truncated ({len(data)} bytes)")
    (
        magic,
        version,
        flags,
        size,
        current,
        bitmap_uuid,
        h0,
        h1,
        nbits,
        disk_len,
        node_len,
        bm_len,
    ) = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise bad(f"bad magic {magic!r}")
    if version != VERSION:
        raise bad(f"unsupported version {version}")
    expect = HEADER.size + disk_len + node_len + bm_len + CRC.size
    if len(data) != expect:
        raise bad(f"length {len(data)} != {expect} (truncated or trailing bytes)")
    (crc,) = CRC.unpack_from(data, len(data) - CRC.size)
    if crc != _crc.crc32c(data[: -CRC.size]):
        raise bad("checksum mismatch")
    if flags & ~_KNOWN_FLAGS:
        raise bad(f"unknown flags {flags:#x}")
    if nbits != (size + BLOCK_SIZE - 1) // BLOCK_SIZE:
        raise bad(f"size mismatch: {nbits} bitmap bits for {size} bytes")
    if bm_len != (nbits + 7) // 8:
        raise bad(f"bitmap of {nbits} bits stored in {bm_len} bytes")
    if not 0 < disk_len <= MAX_NAME or not 0 < node_len <= MAX_NAME:
        raise bad("bad name length")
    pos = HEADER.size
    try:
        disk = data[pos : pos + disk_len].decode("utf-8")
        node = data[pos + disk_len : pos + disk_len + node_len].decode("utf-8")
    except UnicodeDecodeError as e:
        raise bad(f"name is not utf-8 ({e})") from None
    pos += disk_len + node_len
    try:
        bitmap = Bitmap.from_bytes(nbits, data[pos : pos + bm_len], size_bytes=size)
    except (MetadataError, ValueError) as e:
        raise bad(str(e)) from None
    return Metadata(
        disk=disk,
        node=node,
        size=size,
        current=current,
        bitmap_uuid=bitmap_uuid,
        history=(h0, h1),
        consistent=bool(flags & FLAG_CONSISTENT),
        was_up_to_date=bool(flags & FLAG_WAS_UP_TO_DATE),
        primary_ind=bool(flags & FLAG_PRIMARY_IND),
        peer_outdated=bool(flags & FLAG_PEER_OUTDATED),
        disk_failed=bool(flags & FLAG_DISK_FAILED),
        bitmap=bitmap,
    )


def describe(md: Metadata) -> dict[str, Any]:
    """A JSON-friendly summary for status output."""
    bm = md.bitmap
    oos = bm.count() * BLOCK_SIZE
    tail = md.size % BLOCK_SIZE
    if tail and bm.nbits and bm.test(bm.nbits - 1):
        oos -= BLOCK_SIZE - tail
    return {
        "disk": md.disk,
        "node": md.node,
        "size": md.size,
        "current": f"{md.current:016X}",
        "bitmap_uuid": f"{md.bitmap_uuid:016X}",
        "history": [f"{md.history[0]:016X}", f"{md.history[1]:016X}"],
        "consistent": md.consistent,
        "was_up_to_date": md.was_up_to_date,
        "primary_ind": md.primary_ind,
        "peer_outdated": md.peer_outdated,
        "disk_failed": md.disk_failed,
        "bitmap_bits": bm.nbits,
        "out_of_sync_blocks": bm.count(),
        "out_of_sync_bytes": oos,
    }


class MetaStore:
    """Loads and atomically saves the metadata file at ``path``."""

    describe = staticmethod(describe)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.tmp_path = self.path + ".tmp"
        self._crash_hook: Callable[[str], None] | None = None

    def __repr__(self) -> str:
        return f"MetaStore({self.path!r})"

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def _hook(self, step: str) -> None:
        hook = self._crash_hook or _crash_hook
        if hook is not None:
            hook(step)

    def create(self, disk: str, node: str, size: int, force: bool = False) -> Metadata:
        """Write fresh metadata; refuses to replace a valid file unless ``force``."""
        if not force and self.exists():
            try:
                self.load()
            except MetadataError:
                pass  # unreadable: nothing worth protecting
            else:
                raise MetadataError(f"metadata already exists at {self.path}; use --force")
        md = Metadata.new(disk, node, size)
        self.save(md)
        return md

    def load(
        self,
        expect_disk: str | None = None,
        expect_node: str | None = None,
        expect_size: int | None = None,
    ) -> Metadata:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise MetadataError(
                f"no metadata at {self.path}; run `kembar disk create-md {expect_disk or 'r0'}`"
            ) from None
        except OSError as e:
            raise MetadataError(f"cannot read metadata at {self.path}: {e.strerror}") from None
        md = decode(data, self.path)
        if expect_disk is not None and md.disk != expect_disk:
            raise MetadataError(
                f"metadata at {self.path} belongs to disk {md.disk!r}, not {expect_disk!r}"
            )
        if expect_node is not None and md.node != expect_node:
            raise MetadataError(
                f"metadata at {self.path} belongs to node {md.node!r}, not {expect_node!r}"
            )
        if expect_size is not None and md.size != expect_size:
            raise MetadataError(
                f"size mismatch: metadata at {self.path} is for {md.size} bytes,"
                f" backing store has {expect_size}"
            )
        return md

    def save(self, md: Metadata) -> None:
        """Atomically replace the file: write tmp, fsync, rename, fsync the directory."""
        data = encode(md)
        fd = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            self._hook("written")
            os.fsync(fd)
            self._hook("synced")
        finally:
            os.close(fd)
        os.replace(self.tmp_path, self.path)
        self._hook("renamed")
        dfd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
