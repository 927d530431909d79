"""``kembar completion SHELL``: the shell's completion script (click's), and completion of
disk, group and node names from the cluster file where an argument names one."""

from __future__ import annotations

from collections.abc import Iterable

import click
from click.shell_completion import CompletionItem, get_completion_class

from kembar.config import config_path, load_cluster
from kembar.config.model import ClusterConfig
from kembar.errors import KembarError

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_KEMBAR_COMPLETE"


def _cluster(ctx: click.Context) -> ClusterConfig | None:
    """The cluster file the command line names (``--config`` of the command or a parent
    group, else ``$KEMBAR_CONFIG``, else the default), None if unreadable: completion
    must never fail loudly."""
    given = None
    walk: click.Context | None = ctx
    while walk is not None and given is None:
        value = walk.params.get("config")
        given = value if isinstance(value, str) and value else None
        walk = walk.parent
    try:
        return load_cluster(config_path(given))
    except (KembarError, OSError):
        return None


def _items(names: Iterable[str], incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(n) for n in sorted(names) if n.startswith(incomplete)]


def complete_disks(ctx: click.Context, param: click.Parameter,
                   incomplete: str) -> list[CompletionItem]:
    cfg = _cluster(ctx)
    return _items(cfg.disks if cfg else (), incomplete)


def complete_groups(ctx: click.Context, param: click.Parameter,
                    incomplete: str) -> list[CompletionItem]:
    cfg = _cluster(ctx)
    chosen = set(ctx.params.get(param.name or "", None) or ())
    return _items((g for g in (cfg.groups if cfg else ()) if g not in chosen), incomplete)


def complete_nodes(ctx: click.Context, param: click.Parameter,
                   incomplete: str) -> list[CompletionItem]:
    cfg = _cluster(ctx)
    return _items(cfg.nodes if cfg else (), incomplete)


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    The script completes commands, options and, where an argument names one, the disks,
    groups and nodes of the cluster file (the one --config names, else $KEMBAR_CONFIG,
    else /etc/kembar/cluster.toml).  It asks `kembar` itself (with _KEMBAR_COMPLETE set)
    each time, so it stays right when kembar is upgraded.  Bash needs version 4.4 or later.

    \b
    Examples:
      eval "$(kembar completion bash)"          # this bash session
      kembar completion bash > /etc/bash_completion.d/kembar
      kembar completion zsh > "${fpath[1]}/_kembar"
      kembar completion fish > ~/.config/fish/completions/kembar.fish
    """
    root = ctx.find_root()
    cls = get_completion_class(shell)
    assert cls is not None  # every name in SHELLS has a class
    comp = cls(root.command, {}, root.info_name or "kembar", COMPLETE_VAR)
    click.echo(comp.source())
