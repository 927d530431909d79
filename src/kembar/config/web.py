"""``[web]``: the dashboard and ``/metrics`` that each node's daemon serves (off when absent).

```toml
[web]
listen = ["127.0.0.1:9694", "198.18.0.1:9694", "198.18.0.2:9694"]
password_file = "/etc/kembar/web.password"   # mode 600; without it: loopback only
session_timeout = "12h"                      # how long a login lasts
```

The file is the same on every node, so ``listen`` names every node's addresses at once:
each daemon binds the entries that are its own (``nodes.<name>.address`` or its side's
``address`` of a disk) and the loopback ones, and skips the others (as a ``ucast`` medium
to a node's own address is skipped).  An address that is neither loopback nor configured
for any node is an error, and so is a wildcard (``0.0.0.0``, ``::``): every listener binds
only to configured addresses.  Without ``password_file`` every entry must be loopback
(anyone who reaches the port could move the cluster's groups); with it, the password is
read here, from a file that only its owner may read (as the disks' ``secret_file``).
"""

from __future__ import annotations

import ipaddress
from pathlib import PurePosixPath

from pydantic import BaseModel, ConfigDict, PrivateAttr, SecretStr, StrictStr, \
    field_validator, model_validator

from kembar.config.secrets import read_private_file
from kembar.config.units import to_seconds

MIN_PASSWORD = 8
MAX_PASSWORD = 1024
MAX_SESSION = 7 * 24 * 3600.0


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` (``"[v6]:port"``) as (normalised address, port); ValueError saying
    what is wrong."""
    text = value.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"{value!r}: write an IPv6 address in brackets, e.g. [::1]:9694")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{value!r}: expected host:port, e.g. 127.0.0.1:9694")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{value!r}: {host!r} is not an IPv4 or IPv6 address (a name is "
                         "not allowed: listeners bind only to configured addresses)") from None
    if addr.is_unspecified:
        raise ValueError(f"{value!r}: {host} means every address of the machine; name this "
                         "node's addresses instead (listeners bind only to configured "
                         "addresses)")
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError(f"{value!r}: port must be 1 to 65535")
    return str(addr), number


def is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


def read_password_file(path: str) -> str:
    """The password in ``path``: a regular file of its owner only (no bit for group or
    others), UTF-8, one line, trailing newline stripped, 8 to 1024 characters."""
    return read_private_file(path, "password", MIN_PASSWORD, MAX_PASSWORD, say_length=True)


class WebConfig(_Frozen):
    """``[web]``: where the dashboard listens and the password that guards it."""

    listen: list[StrictStr]
    password_file: StrictStr | None = None
    session_timeout: float = 12 * 3600.0

    _password: SecretStr | None = PrivateAttr(default=None)
    _binds: list[tuple[str, int]] = PrivateAttr(default_factory=list)

    @field_validator("session_timeout", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        seconds = to_seconds(value)
        if not 60 <= seconds <= MAX_SESSION:
            raise ValueError("must be between 1m and 168h")
        return seconds

    @field_validator("password_file")
    @classmethod
    def _path(cls, value: str) -> str:
        if "\0" in value or not PurePosixPath(value).is_absolute():
            raise ValueError(f"must be an absolute path, got {value[:40]!r}")
        return value

    @model_validator(mode="after")
    def _check(self) -> WebConfig:
        from kembar.config.model import _Problems  # the model's multi-problem carrier

        problems: list[tuple[tuple[str, ...], str]] = []
        seen: dict[tuple[str, int], int] = {}
        if not self.listen:
            problems.append((("listen",), "at least one host:port is required"))
        for i, entry in enumerate(self.listen):
            try:
                bind = parse_listen(entry)
            except ValueError as exc:
                problems.append((("listen", str(i)), str(exc)))
                continue
            if bind in seen:
                problems.append((("listen", str(i)), f"{entry!r} is listed twice"))
            seen.setdefault(bind, i)
            self._binds.append(bind)
        if self.password_file is not None:
            try:
                self._password = SecretStr(read_password_file(self.password_file))
            except ValueError as exc:
                problems.append((("password_file",), str(exc)))
        else:
            for i, entry in enumerate(self.listen):
                parsed = _parsed(entry)
                if parsed is not None and not is_loopback(parsed[0]):
                    problems.append((("listen", str(i)), f"{entry!r} is not a loopback "
                                     "address: without web.password_file the dashboard "
                                     "serves this machine only (127.0.0.1, ::1); set "
                                     "password_file to listen elsewhere"))
        if problems:
            raise _Problems(problems)
        return self

    def password(self) -> str | None:
        """The password (None: loopback only, no login)."""
        return None if self._password is None else self._password.get_secret_value()

    def binds(self) -> list[tuple[str, int]]:
        """Every listen entry as (address, port)."""
        return list(self._binds)

    def binds_for(self, own: set[str]) -> list[tuple[str, int]]:
        """The entries this node binds: loopback ones and those among ``own`` (the node's
        configured addresses)."""
        return [(h, p) for h, p in self._binds if is_loopback(h) or h in own]


def _parsed(entry: str) -> tuple[str, int] | None:
    try:
        return parse_listen(entry)
    except ValueError:
        return None


def check_listen(web: WebConfig, owners: dict[str, set[str]]) -> list[tuple[tuple[str, ...], str]]:
    """Problems (key path below the cluster file, message) with ``web.listen`` given which
    node each configured address belongs to (``owners``: address → nodes)."""
    problems: list[tuple[tuple[str, ...], str]] = []
    for i, entry in enumerate(web.listen):
        bind = _parsed(entry)
        if bind is None or is_loopback(bind[0]) or bind[0] in owners:
            continue
        known = ", ".join(sorted(owners)) or "none"
        problems.append((("web", "listen", str(i)),
                         f"{bind[0]} is not a configured address of any node (nodes.<name>."
                         f"address or a disk's address: {known}) nor loopback"))
    return problems
