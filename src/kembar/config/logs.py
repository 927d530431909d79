"""``[logging]``: where the cluster daemon and the disk processes log (ha.cf's ``logfile``,
``logfacility``, ``debug``).

```toml
[logging]
targets = ["journald"]          # any of stderr (the default), file, syslog, journald
level = "info"                  # debug, info, warning, error
file = "/var/log/kembar.log"    # with "file"; reopened when logrotate moves it
syslog_facility = "local0"      # with "syslog" (ha.cf's logfacility)
syslog_address = "/dev/log"     # a Unix datagram socket, or "HOST:PORT" (UDP)
journal_socket = "/run/systemd/journal/socket"   # with "journald"
```

Without the table both log to stderr, as before: the journal when systemd runs them, the
disk's ``DISK.log`` in the run directory when ``kembar disk up`` started it.  Interactive
commands (``kembar status`` …) always write to the terminal.
"""

from __future__ import annotations

import ipaddress
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator, \
    model_validator

Target = Literal["stderr", "file", "syslog", "journald"]
Level = Literal["debug", "info", "warning", "error"]
Facility = Literal["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
                   "uucp", "cron", "authpriv", "ftp", "local0", "local1", "local2", "local3",
                   "local4", "local5", "local6", "local7"]

DEFAULT_SYSLOG_ADDRESS = "/dev/log"
DEFAULT_JOURNAL_SOCKET = "/run/systemd/journal/socket"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _abs(value: str) -> str:
    if "\0" in value or not PurePosixPath(value).is_absolute():
        raise ValueError(f"must be an absolute path, got {value[:40]!r}")
    return value


def syslog_target(address: str) -> str | tuple[str, int]:
    """A syslog address as the logging module takes it: a socket path, or (host, port)."""
    if address.startswith("/"):
        return address
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class LoggingConfig(_Frozen):
    """``[logging]``: see the module's documentation."""

    targets: list[Target] = Field(default_factory=lambda: list[Target](["stderr"]))
    level: Level = "info"
    file: StrictStr | None = None
    syslog_facility: Facility = "daemon"
    syslog_address: StrictStr = DEFAULT_SYSLOG_ADDRESS
    journal_socket: StrictStr = DEFAULT_JOURNAL_SOCKET

    _file = field_validator("file")(_abs)
    _journal = field_validator("journal_socket")(_abs)

    @field_validator("syslog_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value.startswith("/"):
            return _abs(value)
        host, sep, port = value.rpartition(":")
        if not sep or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"not a socket path or HOST:PORT: {value[:40]!r}")
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise ValueError(f"{host[:40]!r} is not an IP address (kembar does not resolve "
                             "names)") from None
        return value

    @field_validator("targets")
    @classmethod
    def _once(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one target (stderr, file, syslog, journald)")
        twice = sorted({t for t in value if value.count(t) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} named more than once")
        return value

    @model_validator(mode="after")
    def _file_target(self) -> LoggingConfig:
        if "file" in self.targets and self.file is None:
            raise ValueError('targets has "file": set file = "/path/to/kembar.log"')
        if self.file is not None and "file" not in self.targets:
            raise ValueError('file is set but "file" is not in targets')
        return self
