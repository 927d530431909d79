"""The FUSE file's rules, without a mount: a fake store stands in for the engine."""

from __future__ import annotations

import asyncio
import errno
import os
from types import SimpleNamespace
from typing import Any

import pyfuse3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kembar.disk.fusefs import FILE_INODE, FILE_NAME, BlockFile
from kembar.disk.loopdev import Mount, parse_mountinfo
from kembar.errors import StateError

SIZE = 1 << 20
CTX = SimpleNamespace(pid=4242, uid=0, gid=0)


class FakeStore:
    def __init__(self) -> None:
        self.size = SIZE
        self.primary = True
        self.data = bytearray(SIZE)
        self.flushes = 0
        self.fail = False

    @property
    def writable(self) -> bool:
        return self.primary

    async def write(self, offset: int, data: Any) -> None:
        if self.fail:
            raise StateError("r0 is Secondary")
        self.data[offset:offset + len(data)] = data

    async def read(self, offset: int, length: int) -> bytes:
        return bytes(self.data[offset:offset + length])

    async def flush(self) -> None:
        self.flushes += 1


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def fuse_errno(coro: Any) -> int:
    with pytest.raises(pyfuse3.FUSEError) as exc:
        run(coro)
    return int(exc.value.errno)


def test_one_file_of_the_disk_size() -> None:
    f = BlockFile(FakeStore(), "r0")
    attr = run(f.lookup(pyfuse3.ROOT_INODE, FILE_NAME))
    assert attr.st_ino == FILE_INODE and attr.st_size == SIZE
    assert fuse_errno(f.lookup(pyfuse3.ROOT_INODE, b"other")) == errno.ENOENT
    assert fuse_errno(f.getattr(99)) == errno.ENOENT


def test_secondary_refuses_opens_and_demotion_blocks_new_ones() -> None:
    store = FakeStore()
    f = BlockFile(store, "r0")
    store.primary = False
    assert fuse_errno(f.open(FILE_INODE, os.O_RDWR, CTX)) == errno.EROFS
    assert fuse_errno(f.open(FILE_INODE, os.O_RDONLY, CTX)) == errno.EMEDIUMTYPE
    store.primary = True
    f.closing = True
    assert fuse_errno(f.open(FILE_INODE, os.O_RDWR, CTX)) == errno.EBUSY
    f.closing = False
    info = run(f.open(FILE_INODE, os.O_RDWR, CTX))
    assert f.handles[info.fh].pid == 4242 and not f.released.is_set()
    run(f.release(info.fh))
    assert f.released.is_set() and not f.handles


def test_writes_reads_and_fsync_go_to_the_store() -> None:
    store = FakeStore()
    f = BlockFile(store, "r0")
    fh = run(f.open(FILE_INODE, os.O_RDWR, CTX)).fh
    assert run(f.write(fh, 4096, b"x" * 4096)) == 4096
    assert run(f.read(fh, 4090, 10)) == b"\0" * 6 + b"xxxx"
    assert run(f.read(fh, SIZE - 2, 10)) == b"\0\0"  # clipped at the end
    assert run(f.read(fh, SIZE, 10)) == b""
    run(f.fsync(fh, True))
    assert store.flushes == 1
    assert fuse_errno(f.write(fh, SIZE - 1, b"ab")) == errno.ENOSPC
    store.fail = True
    assert fuse_errno(f.write(fh, 0, b"a")) == errno.EIO
    assert f.counters["errors"] == 1
    ro = run(f.open(FILE_INODE, os.O_RDONLY, CTX)).fh
    assert fuse_errno(f.write(ro, 0, b"a")) == errno.EBADF


def test_truncate_and_chmod_refused() -> None:
    f = BlockFile(FakeStore(), "r0")
    attr = pyfuse3.EntryAttributes()
    attr.st_size = 0
    fields = SimpleNamespace(update_size=True, update_mode=False, update_uid=False,
                             update_gid=False)
    assert fuse_errno(f.setattr(FILE_INODE, attr, fields, None, CTX)) == errno.EPERM


MOUNTINFO = (
    "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "97 22 7:3 / /srv/my\\040data rw,relatime shared:50 - ext4 /dev/loop3 rw\n"
    "98 22 0:61 / /run/kembar/r0.fuse rw,nosuid - fuse.kembar kembar-r0 rw,user_id=0\n"
    "garbage line\n"
)


def test_mountinfo_parsed_with_escapes() -> None:
    ms = parse_mountinfo(MOUNTINFO)
    assert ms[1] == Mount("7:3", "/srv/my data", "ext4", "/dev/loop3")
    assert ms[2].fstype == "fuse.kembar" and len(ms) == 3


@settings(max_examples=200)
@given(st.text(max_size=300))
def test_mountinfo_never_crashes(text: str) -> None:
    for m in parse_mountinfo(text):
        assert isinstance(m.mountpoint, str)
