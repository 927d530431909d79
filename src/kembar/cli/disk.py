"""``kembar disk``: the replicated disk's verbs, as ``drbdadm`` has them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import click

from kembar.cli.completion import complete_disks, complete_nodes
from kembar.config import ClusterConfig, config_path, identify_node, load_cluster
from kembar.disk.backing import backing_size
from kembar.disk.client import ALREADY_UP, DiskClient, default_run_dir, take_lock
from kembar.disk.control import socket_path
from kembar.disk.device import DEFAULT_DEV_DIR, cleanup_stale
from kembar.disk.meta import MetaStore
from kembar.disk.status import format_status
from kembar.errors import ConfigError, DaemonNotRunning, KembarError

DISK = click.argument("disk", metavar="DISK", shell_complete=complete_disks)


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
    """Replicated disks (the DRBD part): drbdadm's verbs.

    A disk (r0, …) is a backing store on each of two nodes, kept identical over TCP by one
    disk process per node; /dev/kembar/DISK exists on the Primary.  The options before the
    verb say which cluster file, node and directories to use; they default to what the
    cluster daemon and the systemd units use.

    \b
    Examples:
      kembar disk create-md r0 && kembar disk up r0   # on both nodes
      kembar disk primary --force r0                  # once, on one node: the first sync
      kembar disk status r0
      kembar disk --node node2 --run-dir /tmp/kb-run status r0
    """
    ctx.obj = Ctx(config, node, run_dir or default_run_dir(), dev_dir)


pass_ctx = click.make_pass_decorator(Ctx)


@disk.command("create-md")
@DISK
@click.option("--force", is_flag=True, help="Overwrite existing metadata.")
@pass_ctx
def create_md(c: Ctx, disk: str, force: bool) -> None:
    """Write fresh metadata beside the backing store (both nodes, before the first up).

    The metadata (generation identifiers, disk state, the dirty bitmap, the activity log)
    goes to the disk's meta file, /var/lib/kembar/DISK.md unless the cluster file names
    another.  A new disk is Inconsistent on both nodes until the first `primary --force`
    starts the full sync.  Existing metadata is kept unless --force: then the disk's
    history is forgotten and it is Inconsistent again.

    \b
    Examples:
      kembar disk create-md r0
      kembar disk create-md --force r0
    """
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
    """Start the disk process in the background; return once it answers.

    The disk process (one per disk and node, in a session of its own) connects to the
    peer, replicates, and serves /dev/kembar/DISK while Primary.  Its log goes to
    RUN_DIR/DISK.log, or where the cluster file's [logging] table says.  A disk that is
    already up is left alone (and reported as an error).  Under systemd the unit
    kembar-disk@DISK.service runs this.

    \b
    Examples:
      kembar disk up r0
      systemctl start kembar-disk@r0

    \b
    Exit status:
      0  the disk process runs and answers
      1  it is already up, or it exited or did not answer (the log's last line says why)
    """
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
    devices bound to its file, a stale link).

    \b
    Examples:
      umount /srv/data && kembar disk down r0
      kembar disk down --force r0      # its users get I/O errors
    """
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
    """A verb that is one request to the disk process (its answer is printed)."""
    def run(c: Ctx, disk: str, **kw: bool) -> None:
        with c.client(disk) as cl:
            click.echo(cl.control(name, **kw))

    cmd = pass_ctx(run)
    cmd = DISK(cmd)
    for flag, fhelp in flags.items():
        cmd = click.option(f"--{flag.replace('_', '-')}", flag, is_flag=True, help=fhelp)(cmd)
    disk.command(name, help=help_text)(cmd)


_verb("primary", """Promote to Primary (refused for Inconsistent or Outdated data).

    /dev/kembar/DISK appears: a loop device over the disk process's FUSE file, to mount
    or format.  Refused while the peer is Primary, and for data that is not UpToDate —
    except with --force on a new disk, which makes this node's data the source of the full
    initial sync.  In a cluster the daemon's disk agent promotes; by hand, only without a
    daemon or for a new disk.

    \b
    Examples:
      kembar disk primary r0
      kembar disk primary --force r0   # a new disk: this node's data wins the first sync

    \b
    Exit status:
      0  Primary now (or already)
      1  refused: the message says why (the peer is Primary, the data is Inconsistent…)
    """, force="Promote even Inconsistent data; on a fresh disk starts the full initial sync.")
_verb("secondary", """Demote to Secondary.

    The block device goes; the disk keeps replicating as the peer's Secondary.  Refused
    while /dev/kembar/DISK is mounted or open: unmount it (or stop what holds it) first.

    \b
    Examples:
      kembar disk secondary r0
      umount /srv/data && kembar disk secondary r0
    """)
_verb("connect", """Connect to the peer (again).

    After `disconnect`, or after a split brain left the disk StandAlone.  With
    --discard-my-data, in a split brain this node becomes the sync target: what it wrote
    since the nodes parted is overwritten by the peer's data (`kembar disk resolve` saves
    it first, and is the easier way).

    \b
    Examples:
      kembar disk connect r0
      kembar disk connect --discard-my-data r0    # on the split brain's victim
    """, discard_my_data="In a split brain, make this node the sync target.")
_verb("disconnect", """Drop the connection and stay StandAlone.

    The Primary keeps working and marks what it writes in its bitmap; a later `connect`
    sends only those blocks.  Nothing reconnects by itself until `connect`.

    \b
    Examples:
      kembar disk disconnect r0
    """)
_verb("check-peer", """Ping the peer now; drop it if it does not answer within ping_timeout.

    The cluster manager does this before it promotes a disk whose peer the membership
    declared dead: a peer that is gone is dropped at once (with its Primary role) instead
    of after the disk's own timeout; a peer that answers stays, and the promotion waits.

    \b
    Examples:
      kembar disk check-peer r0
    """)
_verb("outdate", """Mark a disconnected Secondary's data Outdated (it cannot be promoted).

    DRBD's resource-level fencing, by hand: the side that must not take over is marked, so
    that nothing promotes its old data by mistake.  Refused on a Primary and while
    connected.  Reconnecting to an UpToDate peer with the same data, or a resync, clears
    the mark.

    \b
    Examples:
      kembar disk outdate r0
    """)
_verb("attach", """Attach the backing store again after it failed (Diskless) and was repaired.

    The disk comes back Inconsistent and resyncs from its peer.  Refused, changing
    nothing, while the store still fails, and on a Diskless Primary (move the group away
    or demote first).

    \b
    Examples:
      kembar disk attach r0
    """)


RECOVERY_DIR = "/var/lib/kembar/recovery"


@disk.command()
@DISK
@click.option("--survivor", required=True, metavar="NODE",
              shell_complete=complete_nodes,
              help="The node whose data is kept; the other one's changes are discarded "
                   "(after they are saved).")
@click.option("--recovery-dir", default=RECOVERY_DIR, show_default=True, metavar="DIR",
              help="Where the victim saves its disk before discarding it.")
@click.option("--blocks-only", is_flag=True,
              help="Save only the victim's diverging blocks, not its whole disk (for disks "
                   "too big to copy; the copy is then not mountable by itself).")
@pass_ctx
def resolve(c: Ctx, disk: str, survivor: str, recovery_dir: str, blocks_only: bool) -> None:
    """Resolve a split brain by keeping SURVIVOR's data (DRBD's manual recovery).

    DRBD's manual procedure in one command, run on each node.  On the victim it demotes
    the disk (refused while it is in use), disconnects, saves its disk as it is to a
    recovery image (mountable read-only; its manifest lists the blocks it wrote while
    apart) and reconnects as the sync target (--discard-my-data).  On the survivor it
    connects.  Either node may go first.

    \b
    Examples:
      kembar disk resolve r0 --survivor node1    # on node2 (the victim), then on node1
      kembar disk resolve r0 --survivor node1 --blocks-only
    """
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
    """Online verify: compare every block with the peer and mark those that differ.

    Digests (verify_alg) of every block are compared over the connection while the disk
    stays in use; blocks that differ are marked out of sync, not copied: `disconnect`
    then `connect` resyncs them.  Run it on either node while connected.

    \b
    Examples:
      kembar disk verify r0
    """
    with c.client(disk) as cl:
        r = cl.control("verify")
    click.echo(f"{disk}: verify done: {r['out_of_sync_blocks']} blocks "
               f"({r['out_of_sync_bytes'] // 1024} KiB) out of sync in {r['seconds']}s"
               + ("; `disconnect` then `connect` resyncs them" if r["out_of_sync_blocks"] else ""))


@disk.command()
@click.argument("disk", metavar="DISK", required=False,
                shell_complete=complete_disks)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status(c: Ctx, disk: str | None, as_json: bool) -> None:
    """Role, connection, disk states, sync progress and counters.

    As drbdadm status reads: this node's role and disk state, the peer's, the connection
    and replication states, resync progress with rate and ETA, bytes sent and received.
    Without DISK, every disk the cluster file has on this node ('not up' for those without
    a disk process).  --json gives everything, for scripts.

    \b
    Examples:
      kembar disk status
      kembar disk status r0 --json

    \b
    Exit status:
      0  shown
      1  DISK was named and is not up
    """
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
