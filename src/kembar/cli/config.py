"""``kembar config``: inspect and validate the cluster file."""

from __future__ import annotations

import click

from kembar.config import config_path, load_cluster


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


@click.group()
def config() -> None:
    """The cluster configuration file."""


@config.command()
@click.option(
    "-c",
    "--config",
    "path",
    metavar="PATH",
    default=None,
    help="Cluster file (default: $KEMBAR_CONFIG or /etc/kembar/cluster.toml).",
)
def check(path: str | None) -> None:
    """Validate the cluster file and print a one-line summary."""
    cfg = load_cluster(config_path(path))
    summary = f"ok: cluster '{cfg.cluster.name}', {_plural(len(cfg.nodes), 'node')}, "
    summary += _plural(len(cfg.disks), "disk")
    if cfg.disks:
        details = ", ".join(
            f"{name}: protocol {disk.protocol}, port {disk.port}" for name, disk in cfg.disks.items()
        )
        summary += f" ({details})"
    click.echo(summary)
