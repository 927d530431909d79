"""``kembar daemon`` (the cluster daemon, foreground) and ``kembar status`` (what it sees)."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from kembar.config import config_path, identify_node, load_cluster
from kembar.config.model import DEFAULT_META_DIR
from kembar.daemon.control import request

CONFIG = click.option("-c", "--config", metavar="PATH", envvar="KEMBAR_CONFIG",
                      help="Cluster file (default $KEMBAR_CONFIG or /etc/kembar/cluster.toml).")
RUN_DIR = click.option("--run-dir", metavar="DIR", envvar="KEMBAR_RUN_DIR",
                       default="/run/kembar", show_default=True,
                       help="Where the control socket lives.")


@click.command()
@CONFIG
@click.option("--node", metavar="NAME", envvar="KEMBAR_NODE",
              help="Which node this is (default: from the hostname).")
@RUN_DIR
@click.option("--state-dir", metavar="DIR", default=DEFAULT_META_DIR, show_default=True,
              help="Where the incarnation number is kept.")
def daemon(config: str | None, node: str | None, run_dir: str, state_dir: str) -> None:
    """Run the cluster daemon in the foreground: membership, resource groups, hooks.

    Heartbeats go out on every medium of [membership]; a peer silent for the deadtime is
    declared dead, and the resource manager starts, stops and monitors the groups of
    [groups] (fencing first, when [fencing] is set), running the [notify] hooks on the
    way.  Logs go where [logging] says (stderr by default: the journal under systemd).
    SIGTERM stops the groups running here, then sends a shutdown notice, so the peers act
    at once instead of waiting out the deadtime.  Under systemd, kembar.service runs it.

    \b
    Examples:
      kembar daemon
      kembar daemon --node node1 --config /etc/kembar/cluster.toml
      systemctl start kembar
    """
    from kembar.daemon.main import run_daemon

    from kembar.logsetup import setup_logging

    cfg = load_cluster(config_path(config))
    me = identify_node(cfg, node)
    # where [logging] says (stderr by default), written by a thread of its own: a write to
    # a log file on a disk busy with writeback can block, heartbeats must not wait for it
    listener = setup_logging(cfg.logging, me, "kembar")
    try:
        run_daemon(cfg, me, run_dir, state_dir)
    finally:
        listener.stop()


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return f"{seconds * 1000:.0f} ms ago" if seconds < 10 else f"{seconds:.1f} s ago"


def format_status(st: dict[str, Any]) -> Table:
    t = Table(title=f"cluster {st['cluster']}: {st['node']} (incarnation {st['incarnation']}), "
                    f"members: {', '.join(st['members'])}")
    for col in ("node", "state", "incarnation", "last heard", "late", "links", "ping"):
        t.add_column(col)
    ping = st.get("ping") or {}
    mine = f"{ping['score']}/{ping['total']}" if ping.get("total") else "-"
    t.add_row(st["node"], "up (this node)", str(st["incarnation"]), "-", "-",
              ", ".join(st["links"]), mine)
    for name, n in sorted(st["nodes"].items()):
        state = n["state"] + (f" ({n['reason']})" if n["reason"] else "")
        links = ", ".join(f"{ln}: {ls['state']}" for ln, ls in n["links"].items())
        score = f"{n['ping'][0]}/{n['ping'][1]}" if n.get("ping") else "-"
        t.add_row(name, state, str(n["incarnation"] or "-"), _age(n["last_heard"]),
                  str(n["late"]), links, score)
    return t


def format_groups(st: dict[str, Any]) -> Table | None:
    groups = (st.get("manager") or {}).get("groups") or {}
    if not groups:
        return None
    t = Table(title="resource groups" + (" (standby: this node gives its groups away)"
                                         if st["manager"].get("standby") else ""))
    for col in ("group", "runs on", "here", "preferred", "failback", "notes"):
        t.add_column(col)
    for name, g in sorted(groups.items()):
        notes = []
        if g["failed_here"]:
            notes.append(f"failed here: {g['failed_here']}")
        elif g["last_error"]:
            notes.append(g["last_error"])
        if g["failed_on"]:
            notes.append(f"failed on {', '.join(g['failed_on'])}")
        notes += [d for d in g["decisions"] if d.startswith(("wait", "fence"))]
        t.add_row(name, ", ".join(g["running_on"]) or "nowhere", g["here"], g["preferred"],
                  "on" if g["auto_failback"] else "off", "; ".join(notes) or "-")
    return t


def format_resources(st: dict[str, Any]) -> Table | None:
    """Each group's resources on this node: state and fail count (crm_mon's resource
    lines with ``--failcounts``)."""
    groups = (st.get("manager") or {}).get("groups") or {}
    rows = [(name, r) for name, g in sorted(groups.items())
            for r in g.get("resource_states", [])]
    if not rows:
        return None
    t = Table(title=f"resources on {st.get('node', 'this node')}")
    for col in ("group", "resource", "state here", "fail count"):
        t.add_column(col)
    for name, r in rows:
        t.add_row(name, r["resource"], r["state"], str(r["fail_count"]))
    return t


def _stamp(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


@click.command()
@RUN_DIR
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--history", is_flag=True, help="Also the recent events, oldest first.")
def status(run_dir: str, as_json: bool, history: bool) -> None:
    """What the cluster daemon sees: nodes, links, groups and recent events.

    Nodes, links, late heartbeats, dropped packets, where each resource group runs and
    each resource's state here; with --history, the recent events and each failover's and
    failback's timeline (declared dead, fenced, each resource started).  --json gives the
    whole status (hook counts included), for scripts.

    \b
    Examples:
      kembar status
      kembar status --history
      kembar status --json

    \b
    Exit status:
      0  shown
      1  no daemon answers (no socket in --run-dir)
    """
    st = request(run_dir, {"op": "status"})
    if as_json:
        click.echo(json.dumps(st, indent=1))
        return
    console = Console(width=120)
    console.print(format_status(st))
    groups = format_groups(st)
    if groups is not None:
        console.print(groups)
        resources = format_resources(st)
        if resources is not None:
            console.print(resources)
    dropped = ", ".join(f"{k}: {v}" for k, v in sorted(st["dropped"].items()) if k != "own")
    click.echo(f"media: {'; '.join(st['media'])}")
    if st.get("ping", {}).get("total"):
        click.echo("ping nodes: " + ", ".join(
            f"{a} {'answers' if up else 'unreachable'}" for a, up in st["ping"]["nodes"].items()))
    click.echo(f"packets accepted: {st['accepted']}; dropped: {dropped or 'none'}")
    hooks = st.get("notify") or {}
    if hooks.get("configured"):
        counts = ", ".join(f"{hooks.get(k, 0)} {k.replace('_', ' ')}" for k in
                           ("ok", "failed", "timed_out", "not_started", "dropped"))
        click.echo(f"notify hooks ({', '.join(hooks['configured'])}): {counts}"
                   + (f"; last failure: {hooks['last_failure']}" if hooks.get("last_failure")
                      else ""))
    if history:
        for ev in st["events"]:
            click.echo(f"{_stamp(ev['time'])} {ev['text']}")
            steps = ev.get("timeline") or []
            for step in steps:
                since = step["time"] - steps[0]["time"]
                click.echo(f"    {_stamp(step['time'])} +{since:7.3f} s  {step['step']}")
