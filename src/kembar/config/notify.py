"""``[notify]``: a command per cluster event (DRBD's handlers, keepalived's notify scripts).

```toml
[notify]
timeout = "30s"    # a hook still running then is killed (SIGTERM, then SIGKILL)
node_dead = ["/usr/local/bin/page-oncall", "--urgent"]
split_brain = "/usr/lib/drbd/notify-split-brain.sh root"
any = ["/usr/bin/logger", "-t", "kembar-event"]   # every event, besides its own hook
```

A command is an argv list, or a string split as a POSIX shell splits words (quotes and
backslashes, ``shlex.split``) — it is never run by a shell: write ``["/bin/sh", "-c",
"…"]`` for pipes or redirections.  The program is an absolute path or a bare name looked
up in ``PATH``.  What the hook learns comes in its environment (``KEMBAR_EVENT``,
``KEMBAR_NODE``…: ``kembar.notify.events``).  Which process runs which hook: the cluster
daemon runs the membership and resource-manager events, each disk process its disk's.
"""

from __future__ import annotations

import shlex
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from kembar.config.units import to_seconds

# event -> who notices it and what it means (the order is the documentation's)
EVENTS: dict[str, str] = {
    "node_dead": "a peer was declared dead (deadtime passed, or it sent a shutdown notice)",
    "node_up": "a peer joined, or came back after it was declared dead",
    "failover": "a group started on this node after it ran on another one (a takeover "
                "after a death, a standby, a failure or a manual takeover), this node not "
                "being its preferred one",
    "failback": "a group came back to its preferred node, this one, from another one "
                "(auto_failback, or a takeover)",
    "resource_failed": "a resource failed on this node: its monitor, a start, a restart "
                       "or a stop",
    "fence_failed": "fencing a dead node failed (its groups wait)",
    "initial_split_brain": "a disk's handshake found a split brain, whether a policy "
                           "resolves it or not (DRBD's initial-split-brain)",
    "split_brain": "a disk's split brain that no policy resolves: the disk stays "
                   "StandAlone until an operator resolves it (DRBD's split-brain)",
    "disk_detached": "an I/O error of a disk's backing store detached it (Diskless; "
                     "DRBD's local-io-error)",
}
CATCH_ALL = "any"
DISK_EVENTS = frozenset({"initial_split_brain", "split_brain", "disk_detached"})

Argv = tuple[str, ...]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_command(value: object) -> Argv:
    """A hook's command as argv: a list of strings, or a string split with shlex;
    ValueError saying what is wrong."""
    if isinstance(value, str):
        if "\0" in value:
            raise ValueError("the command contains a NUL byte")
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split the command into words: {exc} (a quote is "
                             "not closed?)") from None
        if not argv:
            raise ValueError("empty command")
    elif isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("empty command (a list: the program, then its arguments)")
        if not all(isinstance(part, str) for part in value):
            raise ValueError("every element of the command must be a string")
        argv = list(value)
        if any("\0" in part for part in argv):
            raise ValueError("the command contains a NUL byte")
    else:
        raise ValueError("must be a command: a list of strings (the program, then its "
                         "arguments) or one string")
    program = argv[0]
    if not program:
        raise ValueError("the program (the first word) is empty")
    if "/" in program and not program.startswith("/"):
        raise ValueError(f"the program {program!r} is a relative path: give an absolute "
                         "path, or a bare name found in PATH")
    return tuple(argv)


class NotifyConfig(_Frozen):
    """``[notify]``: which command runs on which event; see the module's documentation."""

    timeout: float = Field(30.0, gt=0, le=3600)
    # hooks run at once at most (the others wait their turn, in order)
    max_running: StrictInt = Field(4, ge=1, le=32)
    node_dead: Argv | None = None
    node_up: Argv | None = None
    failover: Argv | None = None
    failback: Argv | None = None
    resource_failed: Argv | None = None
    fence_failed: Argv | None = None
    initial_split_brain: Argv | None = None
    split_brain: Argv | None = None
    disk_detached: Argv | None = None
    any: Argv | None = None

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    raise ValueError(
                        f"unknown key {str(key)[:40]!r}: the events are "
                        f"{', '.join(EVENTS)} and {CATCH_ALL} (every event); the settings "
                        "timeout and max_running")
        return data

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return to_seconds(value)

    @field_validator(*EVENTS, CATCH_ALL, mode="before")
    @classmethod
    def _command(cls, value: object) -> Argv:
        return parse_command(value)

    def command(self, key: str) -> Argv | None:
        """The command configured for ``key`` (an event name or ``any``), None if none."""
        if key not in EVENTS and key != CATCH_ALL:
            raise KeyError(key)
        found: Any = getattr(self, key)
        return found if found is None else tuple(found)

    def configured(self) -> dict[str, Argv]:
        """Every configured hook, by key."""
        out: dict[str, Argv] = {}
        for key in (*EVENTS, CATCH_ALL):
            argv = self.command(key)
            if argv is not None:
                out[key] = argv
        return out
