"""``kembar disk``: the replicated disk's verbs, as ``drbdadm`` has them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import click

from kembar.config import ClusterConfig, config_path, identify_node, load_cluster
from kembar.disk.backing import backing_size
from kembar.disk.client import ALREADY_UP, DiskClient, default_run_dir, take_lock
from kembar.disk.control import socket_path
from kembar.disk.device import DEFAULT_DEV_DIR, cleanup_stale
from kembar.disk.meta import MetaStore
from kembar.disk.status import format_status
from kembar.errors import ConfigError, DaemonNotRunning, KembarError

DISK = click.argument("disk", metavar="DISK")


@dataclass
class Ctx:
    config: str | None
    node: str | None
    run_dir: str
    dev_dir: str

    def load(self) -> tuple[ClusterConfig, str]:
        cfg = load_cluster(config_path(self.config))
        return cfg, identify_node(cfg, self.node)

    def client(self, disk: str, timeout: float | None = None) -> DiskClient:
        try:
            return DiskClient(disk, self.run_dir, timeout=timeout)
        except DaemonNotRunning:
            self.known(disk)
            raise

    def known(self, disk: str) -> None:
        """An unknown disk name is reported as such (with the known ones) when the
        configuration is readable."""
        try:
            cfg = load_cluster(config_path(self.config))
        except KembarError:
            return
        cfg.disk(disk)


@click.group()
@click.option("-c", "--config", metavar="PATH", envvar="KEMBAR_CONFIG",
              help="Cluster file (default $KEMBAR_CONFIG or /etc/kembar/cluster.toml).")
@click.option("--node", metavar="NAME", envvar="KEMBAR_NODE",
              help="Which node this is (default: from the hostname).")
@click.option("--run-dir", metavar="DIR", envvar="KEMBAR_RUN_DIR", default=None,
              help="Where sockets, pid files and logs live (default /run/kembar).")
@click.option("--dev-dir", metavar="DIR", envvar="KEMBAR_DEV_DIR", default=DEFAULT_DEV_DIR,
              show_default=True, help="Where the block device links (DIR/DISK) are made.")
@click.pass_context
def disk(ctx: click.Context, config: str | None, node: str | None, run_dir: str | None,
         dev_dir: str) -> None:
    """Replicated disks (the DRBD part)."""
    ctx.obj = Ctx(config, node, run_dir or default_run_dir(), dev_dir)


pass_ctx = click.make_pass_decorator(Ctx)


@disk.command("create-md")
@DISK
@click.option("--force", is_flag=True, help="Overwrite existing metadata.")
@pass_ctx
def create_md(c: Ctx, disk: str, force: bool) -> None:
    """Write fresh metadata beside the backing store (both nodes, before the first up)."""
    cfg, node = c.load()
    host = cfg.disk(disk).local(node)
    size = backing_size(host.backing) // 4096 * 4096
    if size == 0:
        raise KembarError(f"backing store {host.backing} is smaller than 4 KiB")
    os.makedirs(os.path.dirname(host.meta), exist_ok=True)
    MetaStore(host.meta).create(disk, node, size, force=force)
    for leftover in (host.meta + ".al",):
        if os.path.exists(leftover):
            os.unlink(leftover)
    click.echo(f"{disk}: metadata created at {host.meta} ({size} bytes of data, Inconsistent)")


@disk.command()
@DISK
@pass_ctx
def up(c: Ctx, disk: str) -> None:
    """Start the disk process in the background; returns once it is listening."""
    cfg, node = c.load()
    dcfg = cfg.disk(disk)
    host = dcfg.local(node)
    MetaStore(host.meta).load(expect_disk=disk, expect_node=node)  # clear errors up front
    if os.path.exists(c.dev_dir) and not os.path.isdir(c.dev_dir):
        raise ConfigError(f"--dev-dir {c.dev_dir}: not a directory")
    os.makedirs(c.run_dir, mode=0o700, exist_ok=True)
    try:
        with DiskClient(disk, c.run_dir, timeout=2):
            raise KembarError(f"{disk} is already up on {node}")
    except DaemonNotRunning:
        pass
    logfile = os.path.join(c.run_dir, f"{disk}.log")
    cmd = [sys.executable, "-m", "kembar.disk.daemon", "--disk", disk, "--node", node,
           "--config", str(cfg.source), "--run-dir", c.run_dir, "--dev-dir", c.dev_dir]
    with open(logfile, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if proc.returncode == ALREADY_UP:  # another `up` won the race: it runs
                raise KembarError(f"{disk} is already up on {node}")
            raise KembarError(f"{disk}: the disk process exited ({proc.returncode}): "
                              f"{_tail(logfile)}")
        if os.path.exists(socket_path(c.run_dir, disk)):
            try:
                with c.client(disk, timeout=5) as cl:
                    st = cl.status()
                if _pid_in(os.path.join(c.run_dir, f"{disk}.pid")) != proc.pid:
                    # another `up`'s process answers: ours must be the one that lost
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        time.sleep(0.05)
                        continue
                    continue
                click.echo(f"{disk}: up on {node} (pid {proc.pid}), {st['disk_state']}, "
                           f"{st['peer']['connection']}")
                return
            except DaemonNotRunning:
                pass
        time.sleep(0.05)
    raise KembarError(f"{disk}: the disk process did not answer within 20s; see {logfile}")


def _pid_in(path: str) -> int:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return 0


def _tail(path: str) -> str:
    try:
        with open(path, errors="replace") as fh:
            lines = [ln.strip() for ln in fh.readlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


@disk.command()
@DISK
@click.option("--force", is_flag=True,
              help="Stop even while the block device is mounted or open (its users get I/O "
                   "errors).")
@pass_ctx
def down(c: Ctx, disk: str, force: bool) -> None:
    """Stop the disk process cleanly (demotes, disconnects, saves metadata).

    Refused while /dev/kembar/DISK is mounted or open, unless --force.  When no disk
    process runs, removes what a crashed one left behind (its dead FUSE mount, loop
    devices bound to its file, a stale link)."""
    pidfile = os.path.join(c.run_dir, f"{disk}.pid")
    try:
        with open(pidfile) as fh:
            pid = int(fh.read().strip())
    except (OSError, ValueError):
        pid = 0
    try:
        cl = c.client(disk)
    except DaemonNotRunning:
        lock = take_lock(c.run_dir, disk) if os.path.isdir(c.run_dir) else None
        if lock is None and os.path.isdir(c.run_dir):
            raise KembarError(f"{disk}: a disk process is starting (it holds the disk's "
                              "lock); try again")
        try:
            done = cleanup_stale(disk, c.run_dir, c.dev_dir)
        finally:
            if lock is not None:
                os.close(lock)
        for line in done:
            click.echo(f"{disk}: {line}")
        click.echo(f"{disk}: down (no disk process was running)")
        return
    with cl:
        cl.control("down", force=force)
    deadline = time.monotonic() + 30
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        if not os.path.exists(pidfile):
            break
        time.sleep(0.05)
    click.echo(f"{disk}: down")


def _verb(name: str, help_text: str, **flags: str) -> None:
    def run(c: Ctx, disk: str, **kw: bool) -> None:
        with c.client(disk) as cl:
            click.echo(cl.control(name, **kw))

    cmd = pass_ctx(run)
    cmd = DISK(cmd)
    for flag, fhelp in flags.items():
        cmd = click.option(f"--{flag.replace('_', '-')}", flag, is_flag=True, help=fhelp)(cmd)
    disk.command(name, help=help_text)(cmd)


_verb("primary", "Promote to Primary (refused for Inconsistent/Outdated data).",
      force="Promote even Inconsistent data; on a fresh disk starts the full initial sync.")
_verb("secondary", "Demote to Secondary.")
_verb("connect", "Connect to the peer (again).",
      discard_my_data="In a split brain, make this node the sync target.")
_verb("disconnect", "Drop the connection and stay StandAlone.")
_verb("check-peer", "Ping the peer now; drop it if it does not answer within ping_timeout "
                   "(what the cluster manager does before promoting when the peer is dead).")
_verb("outdate", "Mark a disconnected Secondary's data Outdated (it cannot be promoted).")
_verb("attach", "Attach the backing store again after it failed (Diskless) and was repaired; "
                "the disk comes back Inconsistent and resyncs from its peer.  Refused, "
                "changing nothing, while the store still fails or on a Diskless Primary.")


RECOVERY_DIR = "/var/lib/kembar/recovery"


@disk.command()
@DISK
@click.option("--survivor", required=True, metavar="NODE",
              help="The node whose data is kept; the other one's changes are discarded "
                   "(after they are saved).")
@click.option("--recovery-dir", default=RECOVERY_DIR, show_default=True, metavar="DIR",
              help="Where the victim saves its disk before discarding it.")
@click.option("--blocks-only", is_flag=True,
              help="Save only the victim's diverging blocks, not its whole disk (for disks "
                   "too big to copy; the copy is then not mountable by itself).")
@pass_ctx
def resolve(c: Ctx, disk: str, survivor: str, recovery_dir: str, blocks_only: bool) -> None:
    """Resolve a split brain by keeping SURVIVOR's data: DRBD's manual procedure in one
    command, run on each node.  On the victim it demotes the disk (refused while it is in
    use), disconnects, saves its disk as it is to a recovery image (mountable read-only;
    its manifest lists the blocks it wrote while apart) and reconnects as the sync target
    (--discard-my-data).  On the survivor it connects.  Either node may go first."""
    cfg, me = c.load()
    nodes = sorted(cfg.disk(disk).on)
    if survivor not in nodes:
        raise ConfigError(f"--survivor {survivor}: not a node of disk {disk} "
                          f"({', '.join(nodes)})")
    if not os.path.isabs(recovery_dir):
        raise ConfigError(f"--recovery-dir {recovery_dir}: an absolute path")
    with c.client(disk, timeout=3600) as cl:
        st = cl.status()
        peer, conn = st["peer"]["node"], st["peer"]["connection"]
        if conn == "Connected":
            raise KembarError(f"{disk}: {me} is connected to {peer} ({st['disk_state']}/"
                              f"{st['peer']['disk_state']}): no split brain to resolve")
        if me == survivor:
            if conn == "StandAlone":
                cl.control("connect")
            click.echo(f"{disk}: {me} keeps its data and waits for {peer}.\n"
                       f"next, on {peer} (the victim): kembar disk resolve {disk} "
                       f"--survivor {me}")
            return
        if st["role"] == "Primary":
            click.echo(cl.control("secondary"))
        if conn != "StandAlone":
            click.echo(cl.control("disconnect"))
        base = os.path.join(recovery_dir, f"{disk}-{me}-{time.strftime('%Y%m%d-%H%M%S')}")
        doc = cl.control("save-recovery", path=base, blocks_only=blocks_only)
        click.echo(f"{disk}: saved {doc['contents']} of {me} to {doc['image']} "
                   f"({doc['diverging_bytes']} bytes in {len(doc['diverging'])} range(s) "
                   f"diverge; they are listed in {base}.json)")
        if not blocks_only:
            click.echo(f"  to look at it: mount -o ro,loop {doc['image']} /mnt")
        click.echo(cl.control("connect", discard_my_data=True))
        click.echo(f"{disk}: {me} discards its changes and becomes the sync target of "
                   f"{survivor} once they connect.\n"
                   f"next, on {survivor} (if not done yet): kembar disk resolve {disk} "
                   f"--survivor {survivor}")


@disk.command()
@DISK
@pass_ctx
def verify(c: Ctx, disk: str) -> None:
    """Online verify: compare digests of every block with the peer; mark differences."""
    with c.client(disk) as cl:
        r = cl.control("verify")
    click.echo(f"{disk}: verify done: {r['out_of_sync_blocks']} blocks "
               f"({r['out_of_sync_bytes'] // 1024} KiB) out of sync in {r['seconds']}s"
               + ("; `disconnect` then `connect` resyncs them" if r["out_of_sync_blocks"] else ""))


@disk.command()
@click.argument("disk", metavar="DISK", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status(c: Ctx, disk: str | None, as_json: bool) -> None:
    """Role, connection, disk states, sync progress and counters."""
    if disk is None:
        cfg, _ = c.load()
        names = sorted(cfg.disks)
    else:
        names = [disk]
    out = []
    for name in names:
        try:
            with c.client(name, timeout=10) as cl:
                out.append(cl.status())
        except DaemonNotRunning:
            if disk is not None:
                raise
            out.append({"disk": name, "down": True})
    if as_json:
        click.echo(json.dumps(out[0] if disk else out, indent=2))
        return
    for st in out:
        click.echo(f"{st['disk']}: not up" if st.get("down") else format_status(st))
