"""The cluster file: pydantic models, loading, and one-line error messages.

One TOML file describes the whole cluster (``[cluster]``, ``[nodes.<name>]``,
``[disks.<name>]`` with two ``[disks.<name>.on.<node>]`` sections). Every problem is
reported as ``<source>: <dotted.key.path>: <problem>``; several are joined with ``"; "``
into one :class:`ConfigError`. Secrets are held as :class:`SecretStr` and never appear
in a repr, a str or an error message.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from kembar.config.groups import FencingConfig, GroupConfig, check_group_name
from kembar.config.logs import LoggingConfig
from kembar.config.membership import MembershipConfig
from kembar.config.notify import NotifyConfig
from kembar.config.secrets import read_private_file
from kembar.config.units import format_duration, to_bytes, to_seconds
from kembar.config.web import WebConfig, check_listen
from kembar.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/kembar/cluster.toml")
DEFAULT_META_DIR = "/var/lib/kembar"

_CLUSTER_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_NODE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_DISK_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")

Digest = Literal["crc32c", "md5", "sha1", "sha256", "blake2b"]

Path_ = tuple[str, ...]


class _Problems(ValueError):
    """Several problems found by one validator, each with a key path below its table."""

    def __init__(self, problems: list[tuple[Path_, str]]) -> None:
        super().__init__("; ".join(msg for _, msg in problems))
        self.problems = problems


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"not an IPv4 or IPv6 address: {_short(value)}") from None


def _check_abs_path(value: str) -> str:
    if "\0" in value or not PurePosixPath(value).is_absolute():
        raise ValueError(f"must be an absolute path, got {_short(value)}")
    return value


def _short(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


class ClusterSection(_Frozen):
    """``[cluster]``: the cluster's name."""

    name: StrictStr
    # Whether a resource group returns to its preferred node when that node is back
    # (ha.cf's auto_failback); used by the cluster manager.
    auto_failback: StrictBool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _CLUSTER_NAME_RE.fullmatch(value):
            raise ValueError(f"invalid cluster name {_short(value)} (use [a-z0-9][a-z0-9_-]{{0,31}})")
        return value


class NodeConfig(_Frozen):
    """``[nodes.<name>]``: one machine of the cluster (its address is needed where a disk
    does not name one for it)."""

    address: StrictStr | None = None

    _ip = field_validator("address")(_check_ip)


class HostSection(_Frozen):
    """``[disks.<disk>.on.<node>]`` as written; see :class:`DiskHost` for the resolved form."""

    backing: StrictStr
    meta: StrictStr | None = None
    address: StrictStr | None = None

    _paths = field_validator("backing", "meta")(_check_abs_path)
    _ip = field_validator("address")(_check_ip)


class DiskHost(_Frozen):
    """One side of a disk with defaults filled in (meta file, node address)."""

    backing: str
    meta: str
    address: str


class DiskConfig(_Frozen):
    """``[disks.<name>]``: a replicated disk between exactly two nodes."""

    protocol: Literal["A", "B", "C"] = "C"
    port: StrictInt = Field(7788, ge=1, le=65535)
    secret: SecretStr | None = None
    secret_file: StrictStr | None = None
    resync_rate: int = Field(0, ge=0)
    csums_alg: Literal["", "crc32c", "md5", "sha1", "sha256", "blake2b"] = ""
    verify_alg: Digest = "sha256"
    after_sb_0pri: Literal[
        "disconnect",
        "discard-zero-changes",
        "discard-younger-primary",
        "discard-older-primary",
        "discard-least-changes",
    ] = "disconnect"
    after_sb_1pri: Literal["disconnect", "consensus", "discard-secondary"] = "disconnect"
    after_sb_2pri: Literal["disconnect"] = "disconnect"
    al_extents: StrictInt = Field(1237, ge=7, le=65534)
    # An I/O error of the backing store always detaches the disk (DRBD's on-io-error
    # detach); "failover" also makes the group whose owner's disk is Diskless fail over.
    on_io_error: Literal["detach", "failover"] = "detach"
    timeout: float = Field(6.0, gt=0)
    ping_int: float = Field(10.0, gt=0)
    ping_timeout: float = Field(0.5, gt=0)
    connect_int: float = Field(2.0, gt=0)
    on: dict[str, HostSection] = Field(default_factory=dict)

    _name: str = PrivateAttr(default="")
    _secret: SecretStr = PrivateAttr(default=SecretStr(""))
    _hosts: dict[str, DiskHost] = PrivateAttr(default_factory=dict)

    @field_validator("timeout", "ping_int", "ping_timeout", "connect_int", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return to_seconds(value)

    @field_validator("resync_rate", mode="before")
    @classmethod
    def _size(cls, value: object) -> int:
        return to_bytes(value)

    @field_validator("secret")
    @classmethod
    def _secret_length(cls, value: SecretStr) -> SecretStr:
        if not 1 <= len(value.get_secret_value()) <= 64:
            raise ValueError("must be 1 to 64 characters long")
        return value

    @field_validator("secret_file")
    @classmethod
    def _secret_path(cls, value: str) -> str:
        return _check_abs_path(value)

    @model_validator(mode="after")
    def _check(self) -> DiskConfig:
        problems: list[tuple[Path_, str]] = []
        if self.secret is not None and self.secret_file is not None:
            problems.append((("secret_file",), "set either secret or secret_file, not both"))
        elif self.secret is not None:
            self._secret = self.secret
        elif self.secret_file is not None:
            try:
                self._secret = SecretStr(_read_secret_file(self.secret_file))
            except ValueError as exc:
                problems.append((("secret_file",), str(exc)))
        else:
            problems.append(((), "one of secret or secret_file is required"))
        if self.ping_timeout >= self.timeout:
            problems.append(
                (
                    ("ping_timeout",),
                    f"must be less than timeout ({format_duration(self.ping_timeout)}"
                    f" >= {format_duration(self.timeout)})",
                )
            )
        if len(self.on) != 2:
            problems.append((("on",), f"exactly two [on.<node>] sections required, found {len(self.on)}"))
        if problems:
            raise _Problems(problems)
        return self

    @property
    def name(self) -> str:
        """The disk's name (its table key in ``[disks]``)."""
        return self._name

    def secret_bytes(self) -> bytes:
        """The shared secret for peer authentication, as UTF-8 bytes."""
        return self._secret.get_secret_value().encode()

    def _resolve(self, name: str, node_addresses: dict[str, str]) -> None:
        self._name = name
        self._hosts = {
            node: DiskHost(
                backing=host.backing,
                meta=host.meta or f"{DEFAULT_META_DIR}/{name}.md",
                address=host.address or node_addresses.get(node, ""),
            )
            for node, host in self.on.items()
        }

    def local(self, node: str) -> DiskHost:
        """This disk's side on ``node``; ConfigError if the disk is not on that node."""
        if node not in self._hosts:
            known = ", ".join(sorted(self.on)) or "no node"
            raise ConfigError(f"disk '{self._name}' is not configured on node '{node}' (it is on {known})")
        return self._hosts[node]

    def peer_of(self, node: str) -> tuple[str, DiskHost]:
        """The other node of this disk and its side; ConfigError if ``node`` is not one of them."""
        self.local(node)
        (peer,) = [other for other in self._hosts if other != node]
        return peer, self._hosts[peer]


def _read_secret_file(path: str) -> str:
    """Read a secret file: private to its owner, trailing newline stripped, 1..64 characters."""
    return read_private_file(path, "secret", 1, 64)


class ClusterConfig(_Frozen):
    """The whole cluster file."""

    cluster: ClusterSection
    nodes: dict[str, NodeConfig] = Field(default_factory=dict)
    disks: dict[str, DiskConfig] = Field(default_factory=dict)
    membership: MembershipConfig | None = None
    groups: dict[str, GroupConfig] = Field(default_factory=dict)
    fencing: FencingConfig | None = None
    notify: NotifyConfig | None = None
    logging: LoggingConfig | None = None
    web: WebConfig | None = None

    _source: str = PrivateAttr(default="<string>")

    @model_validator(mode="after")
    def _check(self) -> ClusterConfig:
        problems: list[tuple[Path_, str]] = []
        for node in self.nodes:
            if not _NODE_NAME_RE.fullmatch(node):
                problems.append((("nodes", node), "invalid node name (use [A-Za-z0-9][A-Za-z0-9._-]{0,62})"))
        if not self.nodes:
            problems.append((("nodes",), "at least one [nodes.<name>] table is required"))
        elif self.disks and len(self.nodes) < 2:
            problems.append((("nodes",), "a replicated disk needs two nodes, found 1"))
        known = ", ".join(sorted(self.nodes)) or "none"
        ports: dict[int, str] = {}
        for name, disk in self.disks.items():
            if not _DISK_NAME_RE.fullmatch(name):
                problems.append((("disks", name), "invalid disk name (use [a-z0-9][a-z0-9_-]{0,31})"))
            for node in disk.on:
                if node not in self.nodes:
                    problems.append((("disks", name, "on", node), f"unknown node (known: {known})"))
            if disk.port in ports:
                problems.append(
                    (("disks", name, "port"), f"port {disk.port} is already used by disk {ports[disk.port]}")
                )
            ports.setdefault(disk.port, name)
            disk._resolve(name, {node: cfg.address for node, cfg in self.nodes.items()
                                 if cfg.address})
            for node, host in disk._hosts.items():
                if node in self.nodes and not host.address:
                    problems.append((("disks", name, "on", node, "address"),
                                     f"no address for {node}: set nodes.{node}.address or "
                                     "this key"))
        for gname, group in self.groups.items():
            bad = check_group_name(gname)
            if bad:
                problems.append((("groups", gname), bad))
            if group.preferred not in self.nodes:
                problems.append((("groups", gname, "preferred"), f"unknown node (known: {known})"))
            for i, res in enumerate(group.resources):
                if res.type == "disk" and res.disk not in self.disks:
                    problems.append((("groups", gname, "resources", str(i), "disk"),
                                     f"unknown disk {res.disk!r} (known: "
                                     f"{', '.join(sorted(self.disks)) or 'none'})"))
        if self.web is not None:
            owners: dict[str, set[str]] = {}
            for node in self.nodes:
                for addr in self.addresses_of(node):
                    owners.setdefault(addr, set()).add(node)
            problems += check_listen(self.web, owners)
        if problems:
            raise _Problems(problems)
        return self

    def addresses_of(self, node: str) -> set[str]:
        """The addresses configured for ``node``: its own and its side of every disk."""
        own = self.nodes[node].address if node in self.nodes else None
        out = {d._hosts[node].address for d in self.disks.values() if node in d._hosts}
        return {a for a in (own, *out) if a}

    def auto_failback(self, group: str) -> bool:
        g = self.groups[group]
        return self.cluster.auto_failback if g.auto_failback is None else g.auto_failback

    @property
    def source(self) -> str:
        """Where this configuration was read from (a path or ``<string>``)."""
        return self._source

    def node(self, name: str) -> NodeConfig:
        """The node called ``name``; ConfigError listing the known nodes if there is none."""
        if name not in self.nodes:
            raise ConfigError(f"no node '{name}' in {self._source}; known: {_names(self.nodes)}")
        return self.nodes[name]

    def disk(self, name: str) -> DiskConfig:
        """The disk called ``name``; ConfigError listing the known disks if there is none."""
        if name not in self.disks:
            raise ConfigError(f"no disk '{name}' in {self._source}; known: {_names(self.disks)}")
        return self.disks[name]


def _names(table: dict[str, Any]) -> str:
    return ", ".join(sorted(table)) or "none"


def _dotted(path: tuple[int | str, ...]) -> str:
    return ".".join(
        str(part) if _BARE_KEY_RE.fullmatch(str(part)) else f'"{part}"' for part in path
    )


def _describe(error: Any) -> list[tuple[Path_, str]]:
    """One pydantic error as (relative path, problem) pairs, without the input value."""
    kind, ctx = error["type"], error.get("ctx") or {}
    exc = ctx.get("error")
    if isinstance(exc, _Problems):
        return exc.problems
    messages = {
        "missing": "required key missing",
        "extra_forbidden": "unknown key",
        "string_type": "must be a string",
        "int_type": "must be an integer",
        "float_type": "must be a number",
        "dict_type": "must be a table",
        "model_type": "must be a table",
        "model_attributes_type": "must be a table",
    }
    if kind in messages:
        return [((), messages[kind])]
    if kind == "value_error" and exc is not None:
        return [((), str(exc))]
    if kind == "union_tag_invalid":
        return [((), f"unknown type {ctx.get('tag')!r} (use one of {ctx.get('expected_tags')})")]
    if kind == "union_tag_not_found":
        return [((), "type is required")]
    if kind == "literal_error":
        return [((), f"must be {ctx.get('expected')}")]
    bounds = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        return [((), f"must be {bounds[kind]} {limit}")]
    return [((), " ".join(str(error["msg"]).split()))]


def _to_config_error(exc: ValidationError, source: str) -> ConfigError:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        for sub, problem in _describe(error):
            path = _dotted(tuple(error["loc"]) + sub)
            lines.append(f"{source}: {path}: {problem}" if path else f"{source}: {problem}")
    return ConfigError("; ".join(lines))


def parse_cluster(text: str, source: str = "<string>") -> ClusterConfig:
    """Parse and validate the TOML text of a cluster file; ConfigError on any problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per level of nesting
        raise ConfigError(f"{source}: invalid TOML: arrays or inline tables nested too "
                          "deeply") from None
    try:
        cfg = ClusterConfig.model_validate(data)
    except ValidationError as exc:
        raise _to_config_error(exc, source) from None
    cfg._source = source
    return cfg


def load_cluster(path: str | Path) -> ClusterConfig:
    """Read and validate the cluster file at ``path``; ConfigError naming the path if bad."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or type(exc).__name__}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_cluster(text, str(path))


def config_path(explicit: str | None) -> Path:
    """The cluster file to use: ``explicit``, else ``$KEMBAR_CONFIG``, else the default."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get("KEMBAR_CONFIG")
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


def identify_node(cfg: ClusterConfig, explicit: str | None) -> str:
    """Which node this process runs as: ``explicit``, else ``$KEMBAR_NODE``, else the hostname."""
    for given, origin in ((explicit, "--node"), (os.environ.get("KEMBAR_NODE"), "KEMBAR_NODE")):
        if given:
            if given not in cfg.nodes:
                raise ConfigError(f"{origin}: no node '{given}' in {cfg.source}; known: {_names(cfg.nodes)}")
            return given
    host = socket.gethostname()
    for candidate in (host, host.split(".")[0]):
        if candidate in cfg.nodes:
            return candidate
    raise ConfigError(
        f"this host '{host}' is not a node in {cfg.source} (known: {_names(cfg.nodes)});"
        " name it with --node NAME or KEMBAR_NODE"
    )
