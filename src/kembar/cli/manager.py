"""Moving groups by hand: ``kembar standby``, ``online``, ``takeover``, ``cleanup``.

As Heartbeat's ``hb_standby`` and ``hb_takeover``, these run on the node they concern and
ask its daemon; the move itself is orderly (a stop on the owner, then the start here) and
the commands wait until it is done (``--wait 0`` returns at once).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import click

from kembar.cli.completion import complete_groups
from kembar.cli.daemon import RUN_DIR
from kembar.daemon.control import request
from kembar.errors import KembarError

WAIT = click.option("--wait", "wait", metavar="SECONDS", type=click.FloatRange(0, 3600),
                    default=120.0, show_default=True,
                    help="How long to wait for the move to finish (0: do not wait).")


def _until(run_dir: str, done: Callable[[dict[str, Any]], str | None], wait: float,
           what: str) -> str:
    deadline = time.monotonic() + wait
    while True:
        st = request(run_dir, {"op": "status"})["manager"]
        answer = done(st)
        if answer is not None:
            return answer
        if time.monotonic() >= deadline:
            problems = "; ".join(f"{g}: " + (s["last_error"] or "; ".join(s["decisions"]))
                                 for g, s in st["groups"].items())
            raise KembarError(f"timed out after {wait:g}s waiting for {what} ({problems})")
        time.sleep(0.1)


@click.command()
@RUN_DIR
@WAIT
def standby(run_dir: str, wait: float) -> None:
    """Put this node in standby: its groups move to the other node (orderly).

    As Heartbeat's hb_standby: each group running here is stopped (its resources in
    reverse order), then started on the other node; this node runs no group until
    `kembar online`.  Waits until no group runs here (--wait 0: does not wait).

    \b
    Examples:
      kembar standby
      kembar standby --wait 0

    \b
    Exit status:
      0  no group runs here any more (or not waiting)
      1  still running here after --wait seconds, or no daemon answers
    """
    click.echo(request(run_dir, {"op": "standby", "on": True}))
    if wait:
        def done(st: dict[str, Any]) -> str | None:
            here = [g for g, s in st["groups"].items() if s["here"] != "stopped"]
            return None if here else "no group runs here now"
        click.echo(_until(run_dir, done, wait, "the groups to leave this node"))


@click.command()
@RUN_DIR
def online(run_dir: str) -> None:
    """End this node's standby: it may run groups again.

    A group whose preferred node this is comes back with auto_failback, once the disk
    here is in sync; the others stay where they run.

    \b
    Examples:
      kembar online
    """
    click.echo(request(run_dir, {"op": "standby", "on": False}))


@click.command()
@RUN_DIR
@WAIT
@click.argument("groups", nargs=-1, metavar="[GROUP]...",
                shell_complete=complete_groups)
def takeover(run_dir: str, wait: float, groups: tuple[str, ...]) -> None:
    """Move GROUPs (default: all) to this node, orderly.

    As Heartbeat's hb_takeover: each group is stopped on the node running it, then started
    here, and stays here (no auto_failback) until moved again.  Waits until they run here
    (--wait 0: does not wait).

    \b
    Examples:
      kembar takeover
      kembar takeover web --wait 300

    \b
    Exit status:
      0  the groups run here (or not waiting)
      1  a start failed here, --wait passed, or no daemon answers
    """
    click.echo(request(run_dir, {"op": "takeover", "groups": list(groups)}))
    if wait:
        def done(st: dict[str, Any]) -> str | None:
            names = list(groups) or list(st["groups"])
            failed = [f"{g}: {st['groups'][g]['failed_here']}" for g in names
                      if st["groups"][g]["failed_here"]]
            if failed:
                raise KembarError("takeover failed: " + "; ".join(failed))
            if all(st["groups"][g]["here"] == "running" for g in names):
                return f"{', '.join(names)} running here"
            return None
        click.echo(_until(run_dir, done, wait, "the takeover"))


@click.command()
@RUN_DIR
@click.argument("groups", nargs=-1, metavar="[GROUP]...",
                shell_complete=complete_groups)
def cleanup(run_dir: str, groups: tuple[str, ...]) -> None:
    """Forget GROUPs' failures on this node (default: all), so they may run here again.

    A group whose resource failed more often than its restarts allow is failed on this
    node and does not come back here until its failures are forgotten: by this command,
    or when its failure_timeout has passed.

    \b
    Examples:
      kembar cleanup
      kembar cleanup web
    """
    click.echo(request(run_dir, {"op": "cleanup", "groups": list(groups)}))
