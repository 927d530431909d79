"""``kembar lab experiment …`` and ``kembar lab report``: the paper's experiments in the
lab, and the report that sets their figures beside the paper's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from kembar.config.units import parse_size
from kembar.errors import ConfigError
from kembar.lab.experiments.report import ResultsError, load_results, new_results, \
    write_report

RESULTS = click.option("--results", default="kembar-lab-results.json", show_default=True,
                       metavar="FILE", help="The results file the experiment adds its part to "
                                            "(made if missing).")


def _rev() -> str:
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short",
                              "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except OSError:
        return ""


def _save(path: Path, part: str, value: Any) -> None:
    """Add ``part`` to the results in ``path`` (a fresh document if there is none yet)."""
    res = load_results(path) if path.exists() else new_results(_rev())
    res[part] = value
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=1) + "\n")
    tmp.replace(path)


def _sizes(text: str) -> list[int]:
    sizes = [parse_size(s.strip(), "--sizes") for s in text.split(",") if s.strip()]
    if not sizes or any(s < 2**20 or s % 2**20 for s in sizes):
        raise ConfigError(f"--sizes {text}: whole MiB, at least 1M each (e.g. 100M,500M,1G)")
    return sizes


class _Bar:
    """A rich progress bar fed by the experiment's step texts."""

    def __init__(self, total: int) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total}"),
                                 TimeElapsedColumn())
        self.task = self.progress.add_task("starting", total=total)

    def __enter__(self) -> Callable[[str], None]:
        self.progress.start()

        def step(text: str) -> None:
            self.progress.update(self.task, description=text, advance=1)
        return step

    def __exit__(self, *exc: object) -> None:
        self.progress.update(self.task, completed=self.progress.tasks[0].total)
        self.progress.stop()


@click.group()
def experiment() -> None:
    """The paper's experiments (its section 4) in a lab of their own.

    Each builds the lab --lab names, runs, removes it, and adds its part to the results
    file (--results); `kembar lab report` turns the results into the paper's tables and
    charts.

    \b
    Examples:
      kembar lab experiment sync --runs 3 --sizes 100M
      kembar lab experiment failover --timings fast --runs 5
      kembar lab report
    """


@experiment.command()
@click.option("--sizes", default="100M,500M,1G", show_default=True, metavar="LIST",
              help="Sizes written, comma-separated.")
@click.option("--runs", default=10, show_default=True, type=click.IntRange(1, 100),
              help="Runs per size.")
@click.option("--protocol", default="C", show_default=True,
              type=click.Choice(["A", "B", "C"]), help="The disk's replication protocol.")
@click.option("--lab", "lab_name", default="exp", show_default=True, metavar="NAME",
              help="The lab made (and removed) for the experiment.")
@RESULTS
def sync(sizes: str, runs: int, protocol: str, lab_name: str, results: str) -> None:
    """Measure the replicated disk's write speed, as the paper's sync experiment.

    Write each size with a final fsync on the mounted replicated filesystem, RUNS times;
    the catch-up after a disconnection; baselines (ext4 on a plain loop device, the
    node-to-node TCP throughput) and memory vs disk read, all in the same run.

    \b
    Examples:
      kembar lab experiment sync
      kembar lab experiment sync --sizes 100M,500M --runs 3 --protocol A
    """
    from kembar.lab.experiments.sync import run_sync
    size_list = _sizes(sizes)
    path = Path(results)
    if path.exists():
        load_results(path)  # a bad file is reported before an hour of work, not after
    catchup = min(runs, 3)
    total = 2 + len(size_list) * (2 * runs + catchup) + 2
    with _Bar(total) as step:
        res = run_sync(size_list, runs, protocol, lab_name, step, catchup)
    _save(path, "sync", res)
    for r in res["runs"]:
        click.echo(f"{r['size']}: {', '.join(f'{x:.1f}' for x in r['mbs'])} MB/s")
    click.echo(f"results in {path}; `kembar lab report --results {path}` writes the report")


def _failover(runs: int, timings: str, group: str, lab_name: str, results: str,
              against: str | None) -> None:
    from kembar.lab.experiments.failover import check_against, parse_timings, run_failover
    from kembar.lab.experiments.heartbeat import require
    parse_timings(timings)  # bad arguments are refused before the lab is built
    check_against(against, group)
    if against:
        require()
    path = Path(results)
    if path.exists():
        load_results(path)
    with _Bar((runs + 1) * (2 if against else 1)) as step:
        fo, fb = run_failover(runs, timings, group, lab_name, progress=step, against=against)
    _save(path, "failover", fo)
    _save(path, "failback", fb)
    for name, part in (("failover", fo), ("failback", fb)):
        for system, runs_ in part["systems"].items():
            xs = [r["outage"] for r in runs_]
            click.echo(f"{name} ({system}): {', '.join(f'{x:.2f}' for x in xs)} s")
    click.echo(f"results in {path}; `kembar lab report --results {path}` writes the report")


FAILOVER_OPTIONS = [
    click.option("--runs", default=10, show_default=True, type=click.IntRange(1, 100),
                 help="Crashes (each followed by the failback)."),
    click.option("--timings", default="paper", show_default=True, metavar="T",
                 help="paper (2s/15s), fast (10ms/50ms) or KEEPALIVE/DEADTIME."),
    click.option("--group", default="full", show_default=True,
                 type=click.Choice(["full", "vip", "clone"]),
                 help="full: disk, fs, site, VIP; vip: site + VIP; clone: the site on both "
                      "nodes + VIP."),
    click.option("--lab", "lab_name", default="exp", show_default=True, metavar="NAME",
                 help="The lab made (and removed) for the experiment."),
    click.option("--against", type=click.Choice(["heartbeat"]), default=None,
                 help="Then the original, Debian's Heartbeat 3.0.6, running the same group "
                      "(vip or full) at the same timings in the same lab: both in the "
                      "results and the report."),
    RESULTS,
]


def _with_options(f: Callable[..., None]) -> Callable[..., None]:
    for opt in reversed(FAILOVER_OPTIONS):
        f = opt(f)
    return f


@experiment.command()
@_with_options
def failover(runs: int, timings: str, group: str, lab_name: str, against: str | None,
             results: str) -> None:
    """Measure the outage a client sees when node1 crashes, RUNS times.

    Crash node1 RUNS times while a client polls the VIP every 50 ms: the outage per run
    and the moments of each step (declared dead, fenced, promoted, mounted, IP up, service
    up); each crash is followed by node1's boot and failback, measured too.

    \b
    Examples:
      kembar lab experiment failover
      kembar lab experiment failover --timings fast --group vip --runs 5
      kembar lab experiment failover --against heartbeat --group vip
    """
    _failover(runs, timings, group, lab_name, results, against)


@experiment.command()
@_with_options
def failback(runs: int, timings: str, group: str, lab_name: str, against: str | None,
             results: str) -> None:
    """Measure the failback after each crash (node1 boots, resyncs, takes the group back).

    The failback after each of RUNS crashes (node1 boots, resyncs, takes the group back
    with auto_failback): the same cycles as `failover`, both parts saved.

    \b
    Examples:
      kembar lab experiment failback --runs 3
    """
    _failover(runs, timings, group, lab_name, results, against)


@click.command()
@RESULTS
@click.option("--out", default="kembar-lab-report", show_default=True, metavar="DIR",
              help="Where report.md, results.json and the charts go.")
def report(results: str, out: str) -> None:
    """Write the report of saved results: tables like the paper's and PNG charts.

    Markdown tables like the paper's, PNG charts (sync speed per run, the failover
    timeline) and the results as JSON, in --out.

    \b
    Examples:
      kembar lab report
      kembar lab report --results kembar-lab-results.json --out docs/results
    """
    try:
        md = write_report(load_results(Path(results)), Path(out))
    except ResultsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"report: {md}")
