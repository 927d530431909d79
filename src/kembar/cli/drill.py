"""``kembar drill``: prove on the real cluster that it fails over (the safe scenarios)."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from kembar.cli.daemon import RUN_DIR
from kembar.config import config_path, identify_node, load_cluster
from kembar.daemon.control import request
from kembar.drill.scenarios import SCENARIOS, Result, default_url, parse_scenarios, \
    pick_group
from kembar.errors import ConfigError, KembarError


@click.command()
@RUN_DIR
@click.option("-c", "--config", metavar="PATH", envvar="KEMBAR_CONFIG",
              help="Cluster file (default $KEMBAR_CONFIG or /etc/kembar/cluster.toml).")
@click.option("--group", metavar="GROUP", help="The group to drill (default: the only one).")
@click.option("--url", metavar="URL",
              help="The site as users reach it (default: the group's HTTP probe).")
@click.option("--scenarios", default=",".join(SCENARIOS), show_default=True, metavar="LIST",
              help="Which scenarios, in this order.")
@click.option("--link", metavar="IFACE", help="The heartbeat link to cut (default: the last).")
@click.option("--cut-seconds", type=click.FloatRange(1, 600), default=10.0, show_default=True,
              help="How long the link stays cut.")
@click.option("--max-outage", type=click.FloatRange(0, 3600), default=None, metavar="S",
              help="A move whose outage is longer fails (default: no limit).")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=120.0, show_default=True,
              help="How long each step may take.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--yes", is_flag=True, help="Do not ask: the drill moves the live site.")
def drill(run_dir: str, config: str | None, group: str | None, url: str | None,
          scenarios: str, link: str | None, cut_seconds: float, max_outage: float | None,
          timeout: float, as_json: bool, yes: bool) -> None:
    """Run the safe failover scenarios on this cluster while watching the site.

    The group switched over to the other node and back, its service killed (the monitor
    restarts it), a heartbeat link cut by a firewall rule (nothing may move).  Run it on
    the node that runs the group; it prints a verdict and the client-visible outage per
    scenario.

    \b
    Examples:
      kembar drill
      kembar drill --scenarios switchover --max-outage 5 --yes
      kembar drill --json --yes > drill.json

    \b
    Exit status:
      0  every scenario passed
      1  one failed, or the drill could not run (the site did not answer, no daemon…)
    """
    from kembar.drill.run import Drill
    names = parse_scenarios(scenarios)
    cfg = load_cluster(config_path(config))
    me = identify_node(cfg, None)
    st: dict[str, Any] = request(run_dir, {"op": "status"}, timeout=10)
    g = pick_group(cfg, st["manager"], me, group)
    url = url or default_url(cfg, g)
    if url is None:
        raise ConfigError(f"--url: {g} has no HTTP probe to take the site's URL from")
    if not yes:
        click.confirm(f"This moves {g} off {me} and back and kills its service while the "
                      "site is live. Go on?", abort=True)
    say = (lambda _: None) if as_json else (lambda text: click.echo(text, err=True))
    d = Drill(cfg, me, g, url, run_dir, timeout, max_outage, say)
    results: list[Result] = []
    d.poller.start()
    try:
        if not d.ready():
            raise KembarError(f"the site does not answer at {url}: nothing to drill "
                              "(is the group healthy? is --url right?)")
        for name in names:
            if name == "switchover":
                results += d.switchover()
            elif name == "service":
                results.append(d.service())
            else:
                results.append(d.link(link, cut_seconds))
    except KembarError as exc:
        if not results:
            d.poller.stop()
            raise
        results.append(Result(name, "FAIL", None, f"stopped: {exc}"))
    finally:
        d.poller.stop()
    failed = any(r.verdict == "FAIL" for r in results)
    if as_json:
        click.echo(json.dumps({"node": me, "group": g, "url": url,
                               "results": [r.as_dict() for r in results],
                               "passed": not failed}, indent=1))
    else:
        t = Table(title=f"kembar drill: {g} on {me}, watched through {url}")
        for col in ("scenario", "verdict", "outage (s)", "detail"):
            t.add_column(col)
        for r in results:
            color = {"PASS": "green", "FAIL": "red"}.get(r.verdict, "yellow")
            t.add_row(r.scenario, f"[{color}]{r.verdict}[/]",
                      "-" if r.outage is None else f"{r.outage:.2f}", r.detail)
        Console().print(t)
    if failed:
        raise SystemExit(1)
