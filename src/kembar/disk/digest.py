"""Per-block digests for checksum-based resync and online verify."""

from __future__ import annotations

import hashlib

import crc32c

from kembar.disk.bitmap import BLOCK_SIZE

ALGORITHMS = ("crc32c", "md5", "sha1", "sha256", "blake2b")


def block_digests(alg: str, data: bytes | memoryview) -> bytes:
    """Concatenated digests of each 4 KiB block of ``data``."""
    view = memoryview(data)
    out = []
    for pos in range(0, len(view), BLOCK_SIZE):
        block = view[pos:pos + BLOCK_SIZE]
        if alg == "crc32c":
            out.append(crc32c.crc32c(block).to_bytes(4, "big"))
        elif alg == "blake2b":
            out.append(hashlib.blake2b(block, digest_size=32).digest())
        else:
            out.append(hashlib.new(alg, block).digest())
    return b"".join(out)


def differing_blocks(alg: str, data: bytes | memoryview, digests: bytes) -> list[int]:
    """Indexes of blocks whose digest differs from the peer's (length mismatch = all)."""
    mine = block_digests(alg, data)
    nblocks = (len(data) + BLOCK_SIZE - 1) // BLOCK_SIZE
    if len(mine) != len(digests):
        return list(range(nblocks))
    size = len(mine) // nblocks
    return [i for i in range(nblocks) if mine[i * size:(i + 1) * size] != digests[i * size:(i + 1) * size]]


def encode_mask(indexes: list[int], nblocks: int) -> bytes:
    mask = bytearray((nblocks + 7) // 8)
    for i in indexes:
        mask[i // 8] |= 1 << (i % 8)
    return bytes(mask)


def decode_mask(mask: bytes, nblocks: int) -> list[int]:
    return [i for i in range(min(nblocks, len(mask) * 8)) if mask[i // 8] >> (i % 8) & 1]
