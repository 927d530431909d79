"""The ``kembar`` command: one click group per part, one-line errors, exit codes."""

from __future__ import annotations

import sys

import click

from kembar import __version__
from kembar.errors import KembarError


class KembarGroup(click.Group):
    """A click group that turns kembar errors into one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except KembarError as exc:
            click.echo(f"kembar: error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=KembarGroup, context_settings={"help_option_names": ["-h", "--help"],
                                               "max_content_width": 100})
@click.version_option(__version__, prog_name="kembar")
def cli() -> None:
    """kembar: a two-node high-availability cluster for web servers.

    A DRBD-style replicated disk (`kembar disk`) keeps the site's data on both nodes; the
    cluster daemon (`kembar daemon`) watches the other node with heartbeats and moves the
    virtual IP, the disk, the filesystem and the services to the surviving node.  Both
    nodes share one cluster file, /etc/kembar/cluster.toml (`kembar config`).  Every verb
    has its own manual: `kembar VERB --help`.

    \b
    Examples:
      kembar config check              # is the cluster file valid?
      kembar disk status               # every disk: roles, states, sync progress
      kembar status --history          # the cluster as this node's daemon sees it
      kembar standby                   # move this node's groups to the other node
      kembar disk up --help            # the manual of one verb

    \b
    Exit status:
      0  success
      1  an error: refused in this state, no daemon answering, a failed check
      2  a configuration or command-line error (the message names the key or option)
    """


def _register() -> None:
    from kembar.cli import completion as completion_cli
    from kembar.cli import config as config_cli
    from kembar.cli import daemon as daemon_cli
    from kembar.cli import disk as disk_cli
    from kembar.cli import drill as drill_cli
    from kembar.cli import lab as lab_cli
    from kembar.cli import manager as manager_cli

    cli.add_command(config_cli.config)
    cli.add_command(disk_cli.disk)
    cli.add_command(lab_cli.lab)
    cli.add_command(daemon_cli.daemon)
    cli.add_command(daemon_cli.status)
    cli.add_command(drill_cli.drill)
    cli.add_command(completion_cli.completion)
    for cmd in (manager_cli.standby, manager_cli.online, manager_cli.takeover,
                manager_cli.cleanup):
        cli.add_command(cmd)


_register()


def main() -> None:
    cli(prog_name="kembar")


if __name__ == "__main__":
    main()
