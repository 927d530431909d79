"""The disk process: one engine, its control socket, a pid file and a log.

Run as ``python -m kembar.disk.daemon --disk r0 --node n1 --config C --run-dir R``
(``kembar disk up`` does that and waits until the socket answers).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import signal
import sys
import time

from kembar.config import ClusterConfig, load_cluster
from kembar.disk.client import ALREADY_UP, take_lock
from kembar.disk.control import ControlServer, socket_path
from kembar.disk.device import DEFAULT_DEV_DIR, Device
from kembar.disk.engine import Engine
from kembar.errors import KembarError
from kembar.logsetup import setup_logging
from kembar.notify import Notifier
from kembar.notify.events import disk_notice

log = logging.getLogger("kembar.disk")


async def run(disk: str, node: str, config: str, run_dir: str, dev_dir: str,
              direct_io: bool = True, cfg: ClusterConfig | None = None) -> int:
    cfg = cfg or load_cluster(config)
    engine = Engine(cfg.disk(disk), node)
    # split brain and detach hooks ([notify]): queued from the engine, run by threads
    notifier = Notifier(cfg.notify, cfg.cluster.name, node)
    for warning in notifier.check():
        log.warning("%s", warning)
    engine.on_event = lambda event, text: notifier.notify(
        disk_notice(event, disk, text, time.time()))
    device = Device(engine, run_dir, dev_dir, direct_io=direct_io)
    stop = asyncio.Event()
    server = ControlServer(engine, socket_path(run_dir, disk), stop.set, device)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await engine.start()
    await device.start()
    await server.start()
    how = "listening on" if node > engine.peer_name else "connecting from"
    log.info("%s: up on %s (%s), %s %s:%d", disk, node, engine.disk_state.value, how,
             engine.local.address, cfg.disk(disk).port)
    await stop.wait()
    log.info("%s: going down", disk)
    try:
        try:
            # `down` checked that the device is free (or was forced); a signal forces.
            await device.stop(force=True)
        finally:
            await engine.stop()
    finally:
        server.close()
        await asyncio.to_thread(notifier.close, 5.0)
    return 0


def _tune_malloc() -> None:
    """Keep 1 MiB I/O buffers in the heap: glibc would otherwise hand each one back to the
    kernel (brk/munmap) and fault fresh pages in for the next, on every write."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 32 * 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: only slower


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kembar-disk")
    ap.add_argument("--disk", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--dev-dir", default=DEFAULT_DEV_DIR)
    ap.add_argument("--loop-direct-io", choices=("on", "off"),
                    default=os.environ.get("KEMBAR_LOOP_DIRECT_IO", "on"))
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args(argv)
    _tune_malloc()
    try:
        cfg = load_cluster(args.config)
        # where [logging] says (stderr: the DISK.log of `kembar disk up`, or the journal
        # under systemd), through a queue: the I/O path never waits for a log write
        listener = setup_logging(cfg.logging, args.node, "kembar-disk", args.debug,
                                 {"KEMBAR_DISK": args.disk})
    except KembarError as exc:
        print(f"kembar-disk: {args.disk}: {exc}", file=sys.stderr)
        return 1
    # One disk process per disk and node, whoever starts it (found by the torture: the
    # cluster daemon's restart and a service manager's `up` raced, two processes fought
    # over one disk): the lock is the kernel's, released when this process dies, and is
    # taken before anything here is touched (the pid file, a crashed process's leftovers).
    lock = take_lock(args.run_dir, args.disk)
    if lock is None:
        print(f"kembar-disk: {args.disk} is already up on {args.node} (another disk process "
              "holds its lock)", file=sys.stderr)
        return ALREADY_UP
    pidfile = os.path.join(args.run_dir, f"{args.disk}.pid")
    with open(pidfile, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    try:
        return asyncio.run(run(args.disk, args.node, args.config, args.run_dir,
                                args.dev_dir, args.loop_direct_io == "on", cfg))
    except KembarError as exc:
        log.error("%s", exc)
        return 1
    finally:
        try:
            os.unlink(pidfile)
        except FileNotFoundError:
            pass
        listener.stop()


if __name__ == "__main__":
    sys.exit(main())
