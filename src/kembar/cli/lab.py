"""``kembar lab``: the paper's cluster on this machine, out of namespaces, with faults."""

from __future__ import annotations

import json
import os
import sys

import click
from rich.console import Console
from rich.table import Table

from kembar.config.units import parse_size
from kembar.errors import ConfigError, KembarError
from kembar.lab.lab import DEFAULT_DISK_SIZE, Lab, all_labs

NAME = click.option("--name", "-n", default="lab", envvar="KEMBAR_LAB", show_default=True,
                    metavar="NAME", help="Which lab ($KEMBAR_LAB).")


def _lab(name: str) -> Lab:
    return Lab(name)


@click.group()
def lab() -> None:
    """The lab: a switch, two (or more) nodes and a client, built from namespaces.

    Every name it makes carries the prefix kb-<lab>- (namespaces) or kembar-lab-<lab>
    (files under /tmp); addresses come from 198.18.0.0/15 (node1 .1, node2 .2,
    client .50, the VIP .100; the private link 198.18.1.0/24).  Faults on demand: power
    cuts, partitions, failing disks.

    \b
    Examples:
      kembar lab up
      kembar lab up --private --stack lamp
      kembar lab exec node1 -- kembar status
      kembar lab crash node1 && kembar lab boot node1
      kembar lab down
    """


@lab.command()
@NAME
@click.option("--nodes", default=2, show_default=True, type=int, help="How many nodes.")
@click.option("--private", is_flag=True,
              help="Add a second, private link between the nodes (198.18.1.0/24).")
@click.option("--disk-size", default="256M", show_default=True, metavar="SIZE",
              help="Size of each node's second disk (/mnt/vdb on the node).")
@click.option("--stack", type=click.Choice(["none", "lamp"]), default="none",
              show_default=True,
              help="lamp: the paper's stack on top — Debian's apache2 + mod_php and MariaDB "
                   "(installed if missing), web root and database on the replicated disk at "
                   "/srv/data, the cluster daemons running group web (disk, filesystem, "
                   "MariaDB, Apache, VIP) on node1.")
def up(name: str, nodes: int, private: bool, disk_size: str, stack: str) -> None:
    """Build the lab and power on every machine.

    A switch namespace with a bridge; per node a set of namespaces (network, mount, PID,
    host name: a small machine whose power is its PID 1) with a second disk at /mnt/vdb;
    a client.  kembar on the nodes is this kembar.  `kembar lab down` removes it all.

    \b
    Examples:
      kembar lab up
      kembar lab up --nodes 3 --disk-size 1G
      kembar lab up --name demo --private --stack lamp
    """
    size = parse_size(disk_size, "--disk-size")
    if size < 16 * 1024 * 1024 or size % 4096:
        raise ConfigError(f"--disk-size {disk_size}: at least 16M and a multiple of 4K")
    if stack == "lamp" and nodes != 2:
        raise ConfigError(f"--stack lamp: two nodes (the paper's cluster), not {nodes}")
    lab_ = _lab(name)
    plan = lab_.up(nodes, private, size or DEFAULT_DISK_SIZE)
    for m in plan.machines:
        addrs = ", ".join(f"{a} ({ln})" for ln, a in m.addresses.items())
        click.echo(f"{plan.lab}: {m.name} up: {addrs}" + (
            "; second disk /mnt/vdb" if m.is_node else ""))
    if stack == "lamp":
        from kembar.lab import lamp
        lamp.install(lab_, lambda text: click.echo(f"{plan.lab}: {text}"))
        click.echo(f"{plan.lab}: the shop (PHP, MariaDB) answers on http://{plan.vip}/ "
                   "(`kembar lab exec client -- curl -s http://VIP/orders.json`)")
        return
    click.echo(f"{plan.lab}: the VIP {plan.vip} is reserved; `kembar lab exec node1 -- sh` "
               "opens a shell on node1")


@lab.command()
@click.option("--name", "-n", default=None, envvar="KEMBAR_LAB", metavar="NAME",
              help="Which lab (default: lab).")
@click.option("--all", "all_", is_flag=True, help="Every lab on this machine.")
def down(name: str | None, all_: bool) -> None:
    """Remove everything the lab made (also after an interrupted `up`).

    Every machine is powered off; the namespaces, links, mounts, loop devices and files
    with the lab's prefix are removed, also when `up` was interrupted or the lab's owner
    died.  A lab that does not exist is nothing to do.

    \b
    Examples:
      kembar lab down
      kembar lab down --name demo
      kembar lab down --all
    """
    if all_ and name:
        raise ConfigError("give --name or --all, not both")
    names = all_labs() if all_ else [name or "lab"]
    if not names:
        click.echo("no lab to remove")
    for n in names:
        lab_ = _lab(n)
        if not lab_.exists():
            click.echo(f"{n}: no such lab; nothing to do")
            continue
        for line in lab_.down():
            click.echo(f"{n}: {line}")
        click.echo(f"{n}: down")


@lab.command()
@NAME
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(name: str, as_json: bool) -> None:
    """What exists: machines, power, cables, cuts, disks.

    Each machine's power, PID 1 and number of boots, its addresses and cables; the links
    cut by `partition`; each node's second disk (working or failing, its error count).
    --json gives the same for scripts.

    \b
    Examples:
      kembar lab status
      kembar lab status --name demo --json
    """
    st = _lab(name).status()
    if as_json:
        click.echo(json.dumps(st, indent=1))
        return
    t = Table(title=f"lab {st['lab']} ({st['dir']})")
    for col in ("machine", "power", "pid", "boots", "addresses", "cables", "disk"):
        t.add_column(col)
    for m in st["machines"]:
        disk = m["disk"]
        dtxt = "" if disk is None else (
            f"{disk['mode']} ({disk['size'] // 2**20} MiB, {disk['errors']} errors)")
        t.add_row(m["name"], m["power"], str(m["pid"] or "-"), str(m["boots"]),
                  " ".join(m["addresses"].values()),
                  " ".join(f"{k}:{v}" for k, v in m["cables"].items()), dtxt)
    Console(width=120).print(t)
    cuts = ", ".join(f"{a}-{b} ({ln})" for a, b, ln in st["cuts"]) or "none"
    click.echo(f"cut links: {cuts}; VIP {st['vip']}")


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@NAME
@click.argument("machine")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(name: str, machine: str, command: tuple[str, ...]) -> None:
    """Run COMMAND on MACHINE (node1, node2, …, client) and return its exit status.

    COMMAND runs in the machine's namespaces (network, mount, PID, host name), with this
    kembar first on the PATH; `--` keeps COMMAND's options from being read as kembar's.

    \b
    Examples:
      kembar lab exec node1 -- kembar disk status r0
      kembar lab exec client -- curl -s http://198.18.0.100/health
      kembar lab exec node2 -- sh      # a shell on node2

    \b
    Exit status:
      COMMAND's own; 1 if it cannot be run (the machine is off…), 2 for an unknown machine
    """
    argv = _lab(name).exec_argv(machine, list(command))
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        raise KembarError(f"cannot run {argv[0]}: {exc.strerror}") from None


@lab.command()
@NAME
@click.argument("machine")
def crash(name: str, machine: str) -> None:
    """Power cut: every process of MACHINE dies at once, its links go down.

    As when the cord is pulled: PID 1 and everything under it get SIGKILL together and its
    cables go down; what reached its disk stays.  `kembar lab boot` powers it on again.

    \b
    Examples:
      kembar lab crash node1
    """
    click.echo(_lab(name).crash(machine))


@lab.command()
@NAME
@click.argument("machine")
def boot(name: str, machine: str) -> None:
    """Power on: links up, PID 1 started, kembar started as at boot.

    As systemd would at boot: the disks the cluster file names for the node come up
    (`kembar disk up`), then the cluster daemon, if the file has a [membership] table.
    The boot's output goes to the node's /run/kembar/boot.log.

    \b
    Examples:
      kembar lab boot node1
    """
    click.echo(_lab(name).boot(machine))


@lab.command()
@NAME
@click.argument("a")
@click.argument("b")
@click.option("--link", type=click.Choice(["public", "private", "all"]), default="all",
              show_default=True, help="Which link to cut between A and B.")
def partition(name: str, a: str, b: str, link: str) -> None:
    """Cut the link between A and B (only that: both still reach everybody else).

    Their traffic is dropped in both directions on the public link, the private one, or
    both (--link all, the default): a partition, split brain's cause.  `kembar lab heal`
    ends it.

    \b
    Examples:
      kembar lab partition node1 node2
      kembar lab partition node1 node2 --link private
    """
    click.echo(_lab(name).partition(a, b, link))


@lab.command()
@NAME
def heal(name: str) -> None:
    """Restore every cut link.

    Every link `kembar lab partition` cut carries traffic again; the nodes see each other
    and what follows (a resync, a split brain to resolve) is up to kembar.

    \b
    Examples:
      kembar lab heal
    """
    click.echo(_lab(name).heal())


@lab.command("disk-fail")
@NAME
@click.argument("node")
@click.option("--repair", is_flag=True, help="Make the disk work again.")
def disk_fail(name: str, node: str, repair: bool) -> None:
    """Make NODE's second disk fail every read and write with EIO (or --repair it).

    The disk (/mnt/vdb, the backing store of the lab's replicated disk) answers every
    read, write and flush with an I/O error, as a dying disk does: kembar detaches it
    (Diskless) and serves through the peer.  --repair makes it work again; then
    `kembar disk attach` takes it back.

    \b
    Examples:
      kembar lab disk-fail node1
      kembar lab disk-fail node1 --repair
    """
    click.echo(_lab(name).disk_fail(node, fail=not repair))


def _experiments() -> None:
    from kembar.cli.experiment import experiment, report
    from kembar.cli.torture import torture
    lab.add_command(experiment)
    lab.add_command(report)
    lab.add_command(torture)


_experiments()
