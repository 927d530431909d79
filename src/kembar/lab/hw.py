"""The lab's "hardware disks": a FUSE directory of image files that can be made to die.

``python -m kembar.lab.hw --mount DIR --control SOCK --disk node1=IMG1 --disk node2=IMG2``
mounts DIR (fsname and subtype ``kembar-hw``) holding one regular file per disk, named
after it (``DIR/node1``, ...), each a passthrough to its image on the host: reads with
``pread``, writes with ``pwrite``, fsync (and close) with ``fdatasync``.  Files are opened
with ``direct_io``, so no page cache sits between the lab node and this process: every
read and write reaches us, and a switch takes effect at once.

Each disk is in mode ``ok`` or ``fail``.  In ``fail`` every read, write and fsync on it
returns EIO (and is counted in ``errors``); the other disks are unaffected.  A loop
device on top of ``DIR/node1`` then behaves like a disk that died.  (device-mapper's
``error`` target would do the same; it is not available where the lab runs.)

The control socket speaks newline-delimited JSON, one reply line per request::

    {"op": "fail", "disk": "node1"}    -> {"ok": true, "disk": "node1", "mode": "fail", "was": "ok"}
    {"op": "repair", "disk": "node1"}  -> {"ok": true, "disk": "node1", "mode": "ok", "was": "fail"}
    {"op": "status"}                   -> {"ok": true, "disks": {"node1": {"mode": "ok",
                                           "size": ..., "image": ..., "reads": ..., ...}}}
    anything wrong                     -> {"ok": false, "error": "..."}

Nothing in this process may touch the mount point from the event-loop thread (a stat or
an open there would wait for a FUSE reply that only this thread can send): the one
readiness check runs in a worker thread.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import re
import signal
import socket
import stat
import sys
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn, Sequence

import pyfuse3
import pyfuse3.asyncio

from kembar.disk.fusefs import attributes
from kembar.errors import ConfigError, DaemonNotRunning, KembarError, LocalBug

log = logging.getLogger("kembar.lab.hw")

pyfuse3.asyncio.enable()

PROG = "kembar-lab-hw"
NAME_RE = re.compile(r"[a-z0-9-]{1,32}")
MODES = ("ok", "fail")
COUNTERS = ("reads", "writes", "fsyncs", "errors", "read_bytes", "written_bytes")
MAX_REQUEST = 64 * 1024  # one control request line, bytes
SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


class HwError(KembarError):
    """The hardware-disk control server refused a request or answered nonsense."""


# ------------------------------------------------------------------ arguments


def parse_disks(specs: Sequence[str]) -> dict[str, str]:
    """``["node1=/a.img", ...]`` → ``{"node1": "/a.img", ...}`` (order kept).

    Pure: checks the form only (name ``[a-z0-9-]{1,32}``, unique, non-empty path), not
    the files.  Raises ``ConfigError`` naming the offending argument.
    """
    disks: dict[str, str] = {}
    if not specs:
        raise ConfigError("at least one --disk NAME=IMAGE is required")
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            raise ConfigError(f"--disk {spec!r}: expected NAME=IMAGE")
        if not NAME_RE.fullmatch(name):
            raise ConfigError(f"--disk {spec!r}: disk name {name!r} must be 1-32 characters "
                              "of a-z, 0-9 and '-'")
        if not path:
            raise ConfigError(f"--disk {spec!r}: image path is empty")
        if "\0" in path:
            raise ConfigError(f"--disk {spec!r}: image path contains a NUL byte")
        if name in disks:
            raise ConfigError(f"--disk {spec!r}: disk name {name!r} given twice")
        disks[name] = path
    return disks


@dataclass(frozen=True)
class Args:
    mount: str
    control: str
    disks: dict[str, str]
    pid_file: str | None
    verbose: bool


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Serve image files as lab disks that can be made "
                "to fail with EIO (python -m kembar.lab.hw).")
    p.add_argument("--mount", required=True, metavar="DIR",
                   help="existing empty directory to mount on")
    p.add_argument("--control", required=True, metavar="SOCK",
                   help="path of the control socket (Unix stream, JSON lines)")
    p.add_argument("--disk", action="append", default=[], metavar="NAME=IMAGE",
                   help="a disk: NAME ([a-z0-9-]{1,32}) served from regular file IMAGE; "
                   "repeat for more")
    p.add_argument("--pid-file", metavar="F",
                   help="written once the mount serves requests; removed at exit")
    p.add_argument("-v", "--verbose", action="store_true", help="log every I/O error")
    return p


def _check_parent(what: str, path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ConfigError(f"{what} {path}: directory {parent} does not exist")


def _socket_in_use(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def check_args(argv: Sequence[str]) -> Args:
    """Parse and check the command line against the file system; ``ConfigError`` if bad."""
    ns = _parser().parse_args(list(argv))
    disks = parse_disks(ns.disk)
    mount = os.path.abspath(ns.mount)
    if not os.path.isdir(mount):
        raise ConfigError(f"--mount {ns.mount}: not an existing directory")
    try:
        if os.listdir(mount):
            raise ConfigError(f"--mount {ns.mount}: directory is not empty")
    except OSError as exc:
        raise ConfigError(f"--mount {ns.mount}: cannot list: {exc.strerror}") from exc
    if os.path.ismount(mount):
        raise ConfigError(f"--mount {ns.mount}: something is already mounted there")

    control = os.path.abspath(ns.control)
    if len(os.fsencode(control)) > SUN_PATH_MAX:
        raise ConfigError(f"--control {ns.control}: path longer than {SUN_PATH_MAX} bytes "
                          "(a Unix socket limit)")
    _check_parent("--control", control)
    if os.path.lexists(control):
        if not stat.S_ISSOCK(os.lstat(control).st_mode):
            raise ConfigError(f"--control {ns.control}: exists and is not a socket")
        if _socket_in_use(control):
            raise ConfigError(f"--control {ns.control}: another server is listening there")
    if ns.pid_file is not None:
        _check_parent("--pid-file", ns.pid_file)

    seen: dict[tuple[int, int], str] = {}
    images: dict[str, str] = {}
    for name, path in disks.items():
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ConfigError(f"--disk {name}={path}: {exc.strerror}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"--disk {name}={path}: not a regular file")
        if not os.access(path, os.R_OK | os.W_OK):
            raise ConfigError(f"--disk {name}={path}: not readable and writable")
        key = (st.st_dev, st.st_ino)
        if key in seen:
            raise ConfigError(f"--disk {name}={path}: same image as disk {seen[key]}")
        seen[key] = name
        images[name] = os.path.abspath(path)
    return Args(mount=mount, control=control, disks=images,
                pid_file=os.path.abspath(ns.pid_file) if ns.pid_file else None,
                verbose=ns.verbose)


# -------------------------------------------------------------------- the disks


@dataclass
class Disk:
    name: str
    image: str
    inode: int
    fd: int
    size: int
    mode: str = "ok"
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))

    def status(self) -> dict[str, Any]:
        return {"mode": self.mode, "size": self.size, "image": self.image, **self.counters}


class HwDisks(pyfuse3.Operations):
    """A flat directory: one passthrough file per disk, each switchable to EIO."""

    def __init__(self, images: dict[str, str], verbose: bool = False) -> None:
        super().__init__()
        self.verbose = verbose
        self.started = time.time_ns()
        self.disks: dict[str, Disk] = {}
        self.by_inode: dict[int, Disk] = {}
        self.handles: dict[int, Disk] = {}
        self._next_fh = 1
        try:
            for i, (name, image) in enumerate(images.items()):
                fd = os.open(image, os.O_RDWR | os.O_CLOEXEC)
                disk = Disk(name=name, image=image, inode=pyfuse3.ROOT_INODE + 1 + i, fd=fd,
                            size=os.fstat(fd).st_size)
                self.disks[name] = disk
                self.by_inode[disk.inode] = disk
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        """Close the images (after the mount is gone)."""
        for disk in self.disks.values():
            if disk.fd >= 0:
                os.close(disk.fd)
                disk.fd = -1

    # ------------------------------------------------------------ control

    def set_mode(self, name: str, mode: str) -> str:
        """Switch disk ``name`` to ``mode``; returns the previous mode."""
        if mode not in MODES:
            raise HwError(f"unknown mode {mode!r} (expected one of {', '.join(MODES)})")
        disk = self.disks.get(name)
        if disk is None:
            raise HwError(f"unknown disk {name!r} (disks: {', '.join(self.disks)})")
        was, disk.mode = disk.mode, mode
        if was != mode:
            log.info("%s: mode %s -> %s", name, was, mode)
        return was

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: disk.status() for name, disk in self.disks.items()}

    # ------------------------------------------------------------ metadata

    def _attr(self, inode: int) -> pyfuse3.EntryAttributes:
        if inode == pyfuse3.ROOT_INODE:
            return attributes(inode, stat.S_IFDIR | 0o700, 0, self.started)
        return attributes(inode, stat.S_IFREG | 0o600, self.by_inode[inode].size, self.started)

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if inode != pyfuse3.ROOT_INODE and inode not in self.by_inode:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(inode)

    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if parent_inode != pyfuse3.ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        if name in (b".", b".."):
            return self._attr(pyfuse3.ROOT_INODE)
        disk = self.disks.get(name.decode(errors="replace"))
        if disk is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(disk.inode)

    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        disk = self.by_inode.get(inode)
        if disk is None:
            raise pyfuse3.FUSEError(errno.EPERM)
        if fields.update_size and attr.st_size != disk.size:
            raise pyfuse3.FUSEError(errno.EPERM)  # a disk does not change size
        if fields.update_mode or fields.update_uid or fields.update_gid:
            raise pyfuse3.FUSEError(errno.EPERM)
        return self._attr(inode)  # times (touch): accepted and forgotten

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        if inode != pyfuse3.ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        disks = list(self.disks.values())
        for i in range(start_id, len(disks)):
            if not pyfuse3.readdir_reply(token, disks[i].name.encode(),
                                         self._attr(disks[i].inode), i + 1):
                break

    async def releasedir(self, fh: int) -> None:
        return None

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_blocks = sum(d.size for d in self.disks.values()) // 4096
        s.f_bfree = s.f_bavail = 0
        s.f_files = len(self.disks) + 1
        s.f_ffree = s.f_favail = 0
        s.f_namemax = 255
        return s

    # --------------------------------------------------------------- data

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if inode == pyfuse3.ROOT_INODE:
            raise pyfuse3.FUSEError(errno.EISDIR)
        disk = self.by_inode.get(inode)
        if disk is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        fh = self._next_fh
        self._next_fh += 1
        self.handles[fh] = disk
        # direct_io: every read and write reaches us (a switch to fail is immediate and
        # no page cache hides an error); an open succeeds even on a failed disk, as on a
        # dead block device: the I/O is what fails.
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)

    def _disk(self, fh: int) -> Disk:
        disk = self.handles.get(fh)
        if disk is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        return disk

    def _check(self, disk: Disk, what: str, off: int, length: int) -> None:
        if disk.mode == "fail":
            self._error(disk, what, off, length, errno.EIO, "disk is in mode fail")

    def _error(self, disk: Disk, what: str, off: int, length: int, err: int,
               why: str) -> NoReturn:
        disk.counters["errors"] += 1
        if self.verbose or disk.mode != "fail":
            log.warning("%s: %s of %d bytes at %d: %s: %s", disk.name, what, length, off,
                        errno.errorcode.get(err, str(err)), why)
        raise pyfuse3.FUSEError(err)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        disk = self._disk(fh)
        self._check(disk, "read", off, size)
        end = min(off + size, disk.size)
        if end <= off:
            return b""
        try:
            data = os.pread(disk.fd, end - off, off)
        except OSError as exc:
            self._error(disk, "read", off, size, exc.errno or errno.EIO, str(exc))
        disk.counters["reads"] += 1
        disk.counters["read_bytes"] += len(data)
        return data

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        disk = self._disk(fh)
        self._check(disk, "write", off, len(buf))
        if off + len(buf) > disk.size:
            self._error(disk, "write", off, len(buf), errno.ENOSPC, "beyond the end of the disk")
        try:
            done = os.pwrite(disk.fd, buf, off)
        except OSError as exc:
            self._error(disk, "write", off, len(buf), exc.errno or errno.EIO, str(exc))
        disk.counters["writes"] += 1
        disk.counters["written_bytes"] += done
        return done

    def _sync(self, disk: Disk, what: str) -> None:
        try:
            os.fdatasync(disk.fd)
        except OSError as exc:
            self._error(disk, what, 0, 0, exc.errno or errno.EIO, str(exc))

    async def fsync(self, fh: int, datasync: bool) -> None:
        disk = self._disk(fh)
        self._check(disk, "fsync", 0, 0)
        self._sync(disk, "fsync")
        disk.counters["fsyncs"] += 1

    async def flush(self, fh: int) -> None:
        # close(2).  On a failed disk it succeeds without syncing, as closing a dead block
        # device does; the writes and fsyncs before it already reported EIO.
        disk = self._disk(fh)
        if disk.mode == "ok":
            self._sync(disk, "flush")

    async def release(self, fh: int) -> None:
        self.handles.pop(fh, None)


# ------------------------------------------------------------------ the control


def _reply_for(ops: HwDisks, line: bytes) -> dict[str, Any]:
    try:
        req = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return {"ok": False, "error": f"malformed JSON request: {exc}"}
    if not isinstance(req, dict):
        return {"ok": False, "error": "a request must be a JSON object, e.g. {\"op\": \"status\"}"}
    op = req.get("op")
    try:
        if op == "status":
            extra = set(req) - {"op"}
            if extra:
                raise HwError(f"op status takes no other keys, got {sorted(extra)}")
            return {"ok": True, "disks": ops.status()}
        if op in ("fail", "repair"):
            extra = set(req) - {"op", "disk"}
            if extra:
                raise HwError(f"op {op} takes only 'disk', got also {sorted(extra)}")
            name = req.get("disk")
            if not isinstance(name, str):
                raise HwError(f"op {op} needs \"disk\": a disk name (disks: "
                              f"{', '.join(ops.disks)})")
            mode = "fail" if op == "fail" else "ok"
            was = ops.set_mode(name, mode)
            return {"ok": True, "disk": name, "mode": mode, "was": was}
        raise HwError(f"unknown op {op!r} (expected fail, repair or status)")
    except HwError as exc:
        return {"ok": False, "error": str(exc)}


async def _serve_client(ops: HwDisks, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                line = exc.partial  # a last request without its newline
                if not line.strip():
                    break
            except asyncio.LimitOverrunError:
                writer.write(json.dumps({"ok": False, "error": f"request longer than "
                                         f"{MAX_REQUEST} bytes"}).encode() + b"\n")
                await writer.drain()
                break
            if not line.strip():
                continue
            reply = _reply_for(ops, line)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
    except (ConnectionError, OSError):
        pass  # the client went away
    except Exception:  # noqa: BLE001 - one client must not stop the server
        log.exception("BUG: control client handler failed")
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def start_control(ops: HwDisks, path: str) -> asyncio.Server:
    """Listen on Unix socket ``path`` (mode 0600; a stale socket there is replaced)."""
    if os.path.lexists(path) and stat.S_ISSOCK(os.lstat(path).st_mode):
        os.unlink(path)
    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(
            lambda r, w: _serve_client(ops, r, w), path=path, limit=MAX_REQUEST)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return server


def hw_request(sock_path: str, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the control server at ``sock_path`` and return its reply.

    Raises ``DaemonNotRunning`` if nobody listens there, ``HwError`` if the reply says
    ``ok: false`` (with the server's message), is not JSON, or does not come in time.
    """
    data = json.dumps(request).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(sock_path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(f"no hardware-disk server at {sock_path}: "
                                   f"{exc.strerror}") from exc
        except OSError as exc:
            raise HwError(f"cannot connect to {sock_path}: {exc}") from exc
        buf = b""
        try:
            s.sendall(data)
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except socket.timeout as exc:
            raise HwError(f"{sock_path}: no reply within {timeout:g} s") from exc
        except OSError as exc:
            raise HwError(f"{sock_path}: {exc}") from exc
    if not buf.endswith(b"\n"):
        raise HwError(f"{sock_path}: connection closed before a complete reply")
    try:
        reply = json.loads(buf)
    except ValueError as exc:
        raise HwError(f"{sock_path}: reply is not JSON: {buf[:200]!r}") from exc
    if not isinstance(reply, dict):
        raise HwError(f"{sock_path}: reply is not a JSON object: {buf[:200]!r}")
    if reply.get("ok") is not True:
        raise HwError(f"hardware-disk request {request} refused: "
                      f"{reply.get('error', 'no reason given')}")
    return reply


# --------------------------------------------------------------------- process


def _write_pid_file(path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


def _remove_pid_file(path: str) -> None:
    try:
        with open(path) as fh:
            if fh.read().strip() != str(os.getpid()):
                return  # not ours (any more)
        os.unlink(path)
    except OSError:
        pass


async def serve(args: Args) -> None:
    """Mount, serve until SIGTERM/SIGINT (or an external unmount), then clean up."""
    loop = asyncio.get_running_loop()
    ops = HwDisks(args.disks, verbose=args.verbose)
    stop = asyncio.Event()
    server: asyncio.Server | None = None
    fuse_task: asyncio.Task[None] | None = None
    mounted = False
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = await start_control(ops, args.control)
        options = {"fsname=kembar-hw", "subtype=kembar-hw", "default_permissions"}
        pyfuse3.init(ops, args.mount, options)
        mounted = True
        fuse_task = asyncio.create_task(pyfuse3.main(min_tasks=2, max_tasks=64))
        # Ready = the kernel gets answers: list the mount from a worker thread (never
        # from this thread, which is the one that answers).
        listing = asyncio.create_task(asyncio.to_thread(os.listdir, args.mount))
        await asyncio.wait({listing, fuse_task}, timeout=10,
                           return_when=asyncio.FIRST_COMPLETED)
        if not listing.done():
            raise KembarError(f"mount {args.mount} did not answer within 10 s")
        if sorted(listing.result()) != sorted(ops.disks):
            raise LocalBug(f"mount {args.mount} lists {listing.result()}")
        if args.pid_file:
            _write_pid_file(args.pid_file)
        log.info("serving %s at %s, control %s", ", ".join(ops.disks), args.mount,
                 args.control)
        stop_task = asyncio.create_task(stop.wait())
        await asyncio.wait({stop_task, fuse_task}, return_when=asyncio.FIRST_COMPLETED)
        stop_task.cancel()
        if fuse_task.done():
            log.info("the FUSE session ended (unmounted from outside?)")
        else:
            log.info("stopping")
    finally:
        if fuse_task is not None:
            if not fuse_task.done():
                try:
                    pyfuse3.terminate()
                except Exception as exc:  # noqa: BLE001 - unmount below regardless
                    log.warning("pyfuse3.terminate: %r", exc)
            try:
                await asyncio.wait_for(fuse_task, timeout=5)
            except (asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - still unmount
                log.warning("FUSE loop did not end cleanly: %r", exc)
        if mounted:
            pyfuse3.close(unmount=True)
        if server is not None:
            server.close()
            try:
                os.unlink(args.control)
            except OSError:
                pass
        if args.pid_file:
            _remove_pid_file(args.pid_file)
        ops.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _die(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str]) -> int:
    try:
        args = check_args(argv)
    except ConfigError as exc:
        return _die(str(exc))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"{PROG}: %(levelname)s: %(message)s")
    try:
        asyncio.run(serve(args))
    except KembarError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # pyfuse3.init: the mount itself failed
        print(f"{PROG}: error: cannot mount {args.mount}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
