"""``kembar lab torture``: faults from a seeded schedule against a cluster under load."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from kembar.config.units import UnitError, to_seconds
from kembar.errors import ConfigError
from kembar.lab.names import check_name
from kembar.lab.torture.run import Torture, write_log
from kembar.lab.torture.schedule import KINDS, make_schedule, parse_kinds


@click.command()
@click.option("--name", "-n", default="torture", show_default=True, metavar="NAME",
              help="The lab to build (an earlier lab of this name is removed first).")
@click.option("--iterations", "-i", default=20, show_default=True, type=int,
              help="How many faults, each settled, undone and checked.")
@click.option("--seed", "-s", type=int, default=None,
              help="The schedule's seed (printed; the same seed replays the same faults).")
@click.option("--faults", default="", metavar="KINDS",
              help="Comma-separated fault kinds (default: all): " + ", ".join(KINDS) + ".")
@click.option("--log", "log_path", type=click.Path(dir_okay=False, writable=True),
              default=None, help="The JSON log (default: ./torture-SEED.json).")
@click.option("--priority-delay", metavar="DURATION", default=None,
              help="Run the cluster with priority fencing ([fencing] priority_delay, e.g. 2s).")
@click.option("--keep", is_flag=True, help="Leave the lab up at the end (to look around).")
@click.option("--dry-run", is_flag=True, help="Print the schedule only.")
def torture(name: str, iterations: int, seed: int | None, faults: str, log_path: str | None,
            priority_delay: str | None, keep: bool, dry_run: bool) -> None:
    """Torture a two-node cluster in the lab with a seeded schedule of faults.

    The full web group (disk, ext4, site, VIP) with fencing on, orders through the VIP and
    fsynced records on /srv/data all along, and a seeded schedule of faults (crash, reboot,
    partitions, daemon and disk-process SIGKILL, disk failure, packet loss).  After each
    fault and after its undoing it checks that the group runs on exactly one node, that
    every acknowledged order and record is there, that the disks agree (online verify) and
    the filesystem is clean (e2fsck -fn), and that a split brain is reported whenever both
    sides could write.

    \b
    Examples:
      kembar lab torture --iterations 50
      kembar lab torture --seed 2026 --iterations 200 --log torture-2026.json
      kembar lab torture --faults crash,partition --dry-run
      kembar lab torture --faults partition --priority-delay 2s --iterations 10

    \b
    Exit status:
      0  PASSED: every check of every iteration held
      1  FAILED: a problem was found (replay it with the printed --seed)
    """
    check_name(name)
    kinds = parse_kinds(faults)
    if priority_delay is not None:
        try:
            if not 0 < to_seconds(priority_delay) <= 300:
                raise UnitError("from more than 0 to 300 s")
        except UnitError as exc:
            raise ConfigError(f"--priority-delay {priority_delay!r}: {exc}") from None
    if seed is None:
        seed = secrets.randbelow(10**6)
    if seed < 0:
        raise ConfigError(f"--seed {seed}: a number from 0")
    schedule = make_schedule(seed, iterations, kinds)
    click.echo(f"torture: seed {seed}, {iterations} iterations, faults {','.join(kinds)}")
    click.echo(f"  replay: kembar lab torture --seed {seed} --iterations {iterations}"
               + (f" --faults {','.join(kinds)}" if faults else "")
               + (f" --priority-delay {priority_delay}" if priority_delay else ""))
    for f in schedule:
        click.echo(f"  {f.i:4d}  {f}")
    if dry_run:
        return
    path = Path(log_path or f"torture-{seed}.json")
    t = Torture(name, schedule, say=click.echo, priority_delay=priority_delay)
    try:
        t.run(keep=keep)
    finally:
        write_log(path, seed, list(kinds), t)
    table = Table(title=f"kembar lab torture, seed {seed}")
    for col in ("fault", "runs", "with problems", "median s", "max s"):
        table.add_column(col, justify="left" if col == "fault" else "right")
    for kind in kinds:
        outs = [o for o in t.outcomes if o.fault.kind == kind]
        if not outs:
            continue
        took = sorted(o.took for o in outs)
        table.add_row(kind, str(len(outs)), str(sum(1 for o in outs if o.problems)),
                      f"{took[len(took) // 2]:.1f}", f"{took[-1]:.1f}")
    Console().print(table)
    tot = t.totals()
    click.echo(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in tot.items()))
    click.echo(f"log: {path}")
    problems = [(o.fault, p) for o in t.outcomes for p in o.problems]
    for f, p in problems:
        click.echo(f"  [{f.i}] {f}: {p}")
    if problems or tot["done"] < tot["iterations"]:
        click.echo(f"FAILED (replay with --seed {seed})")
        sys.exit(1)
    click.echo("PASSED")
