"""The victim's copy before a split brain is resolved: nothing thrown away unseen.

DRBD's manual split-brain recovery (``connect --discard-my-data`` on the victim) overwrites
the victim's changes with the survivor's data, and nothing keeps them.  Before kembar does
the same, the victim's disk process writes a recovery image:

* ``<name>.img``: the victim's disk as it is (a sparse file of the disk's size: all-zero
  stretches are left as holes), mountable read-only (``mount -o ro,loop``) — or, with
  ``blocks_only``, only the blocks its bitmap marks, at their offsets (for disks too big to
  copy whole);
* ``<name>.json``: the disk, node, time, generation identifiers, and the diverging extents
  (the blocks the victim's bitmap marks: what it wrote while apart), as byte ranges.

Pure parts (``extents``, ``manifest``) are separate from the copying (``save``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Awaitable, Callable

from kembar.disk.bitmap import BLOCK_SIZE, Bitmap
from kembar.errors import KembarError

CHUNK = 1 << 20  # bytes copied per read
ZERO = bytes(CHUNK)


def extents(bitmap: Bitmap, size: int) -> list[tuple[int, int]]:
    """The bitmap's marked blocks as merged byte ranges ``(offset, length)``, clipped to
    the disk's ``size`` (pure)."""
    out: list[tuple[int, int]] = []
    bit = bitmap.next_set(0)
    while bit != -1:
        end = bitmap.next_clear(bit)
        lo, hi = bit * BLOCK_SIZE, min(end * BLOCK_SIZE, size)
        if hi > lo:
            out.append((lo, hi - lo))
        bit = bitmap.next_set(end) if end < bitmap.nbits else -1
    return out


def manifest(disk: str, node: str, size: int, uuids: dict[str, Any],
             diverging: list[tuple[int, int]], blocks_only: bool, image: str) -> dict[str, Any]:
    """The sidecar's content (pure)."""
    return {"kind": "kembar-split-brain-recovery", "version": 1, "disk": disk, "node": node,
            "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "size": size, "image": image,
            "contents": "diverging blocks only" if blocks_only else "the whole disk",
            "uuids": uuids, "diverging_bytes": sum(n for _, n in diverging),
            "diverging": [[o, n] for o, n in diverging]}


def check_path(base: str) -> tuple[str, str]:
    """``base`` (absolute, no suffix) → (image path, manifest path); KembarError if it is
    relative or either file exists already (a recovery copy is never overwritten)."""
    if not os.path.isabs(base):
        raise KembarError(f"recovery file {base!r}: an absolute path")
    paths = base + ".img", base + ".json"
    for p in paths:
        if os.path.lexists(p):
            raise KembarError(f"recovery file {p} exists already; nothing was changed")
    return paths


async def save(read: Callable[[int, int], Awaitable[bytes]], size: int,
               diverging: list[tuple[int, int]], blocks_only: bool, base: str,
               meta: dict[str, Any]) -> dict[str, Any]:
    """Copy (the disk through ``read``, or its diverging ranges) into ``base.img``, then
    write ``base.json`` (``meta`` and the result); fsynced, the directory too.  Returns the
    manifest.  On failure the partial image is removed."""
    img, side = check_path(base)
    os.makedirs(os.path.dirname(img), mode=0o700, exist_ok=True)
    ranges = diverging if blocks_only else [(0, size)]
    copied = 0
    fd = os.open(img, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size)
        for off, length in ranges:
            pos = off
            while pos < off + length:
                n = min(CHUNK, off + length - pos)
                data = await read(pos, n)
                if data != ZERO[:n]:
                    os.pwrite(fd, data, pos)
                    copied += n
                pos += n
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(img)
        raise
    os.close(fd)
    doc = {**meta, "copied_bytes": copied}
    tmp = side + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, side)
    dfd = os.open(os.path.dirname(img), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return doc
