"""``kembar config import``: a Heartbeat ``ha.cf`` (and ``authkeys``) as a kembar cluster file.

Pure functions: text in, TOML text and notes out; the CLI does the reading and writing.

Heartbeat's reading rules are kept (``heartbeat/config.c``): ``#`` starts a comment
anywhere on a line; directives are read in order, so ``udpport`` applies only to the
``bcast``/``ucast`` lines after it; option-list directives (``node``, ``bcast``, ``ping``,
the timers …) take each value separated by blanks or commas in turn; time values are
seconds when bare (``2``, ``1.5``) or carry ``ms``/``us``; node names are lower-cased.
Its checks are errors here too (no medium, no node, ``deadtime <= 2*keepalive``,
``initdead < deadtime``, a bad value).  Directive names are read case-insensitively.

Every directive ends up either in the TOML (with a comment naming its line) or in a note
saying why not and what kembar does instead; values ha.cf leaves to Heartbeat's defaults
are written out explicitly, marked ``# Heartbeat default``.  The logging directives
(``logfile``, ``debugfile``, ``logfacility``, ``debug``, ``use_logd``) become a
``[logging]`` table.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import PurePosixPath

from pydantic import ValidationError

from kembar.config.membership import DEFAULT_AUTHKEYS, DEFAULT_PORT, initdead_default
from kembar.config.model import _NODE_NAME_RE, ClusterSection, parse_cluster
from kembar.errors import ConfigError
from kembar.membership.authkeys import format_authkeys, parse_authkeys

__all__ = ["ImportResult", "import_authkeys", "import_hacf"]

DEFAULT_CLUSTER_NAME = "ha"

_TIME_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|msec|us|usec)?", re.IGNORECASE)
_MAX_MS = 86_400_000  # a day: far beyond any sensible timer, and exact as a float
_TRUE = frozenset({"true", "on", "yes", "y", "1"})
_FALSE = frozenset({"false", "off", "no", "n", "0"})
_TIMERS = ("keepalive", "warntime", "deadtime", "initdead", "deadping")

_LOGGING = ("kembar does not use Heartbeat's logging daemon (ha_logd): nothing to set")
_FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp",
               "cron", "authpriv", "ftp", *(f"local{i}" for i in range(8)))
_PACEMAKER = "a Pacemaker (CRM) setting: kembar has its own resource manager"
_SERIAL = "serial heartbeat links are not supported: use bcast, mcast or ucast"

# Directives with nothing to carry over, and what kembar does instead.
_EXPLAINED: dict[str, str] = {
    "conn_logd_time": _LOGGING,
    "realtime": "kembar runs at normal priority without locking memory; a stall of its own "
                "loop is detected and never makes it declare a peer dead",
    "rtprio": "kembar runs at normal priority without locking memory; a stall of its own "
              "loop is detected and never makes it declare a peer dead",
    "coredumps": "core dumps are set by systemd (LimitCORE=) or ulimit, not the cluster file",
    "corerootdir": "core dumps are set by systemd (LimitCORE=) or ulimit, not the cluster "
                   "file",
    "uuidfrom": "kembar identifies nodes by their [nodes] names; there is no node UUID",
    "hbgenmethod": "replay protection is built in: every packet carries the sender's "
                   "incarnation (new at each start) and a sequence number",
    "msgfmt": "kembar has one signed binary wire format; there is nothing to choose",
    "compression": "kembar's heartbeat packets are small and never compressed",
    "compression_threshold": "kembar's heartbeat packets are small and never compressed",
    "traditional_compression": "kembar's heartbeat packets are small and never compressed",
    "memreserve": "kembar preallocates no memory; nothing to reserve",
    "max_rexmit_delay": "kembar's heartbeats need no retransmission: a lost one is followed "
                        "by the next keepalive",
    "hopfudge": "only for serial rings, which kembar does not support",
    "baud": _SERIAL,
    "apiauth": "kembar has no API client groups: its control socket is root-only",
    "stonith": "not carried over: fencing comes with the resource manager (a fencing "
               "agent)",
    "stonith_host": "not carried over: fencing comes with the resource manager (a fencing "
                    "agent)",
    "watchdog": "kembar drives no watchdog device: use systemd's RuntimeWatchdogSec= (or "
                "WatchdogSec= on kembar's unit) for the same protection",
    "env": "kembar respawns no client programs, so it needs no environment for them",
    "quorum_server": "a two-node kembar cluster uses no quorum server",
    "badpack_warn": "kembar always drops and counts bad packets",
    "register_to_apphbd": "apphbd does not exist in kembar",
    "normalpoll": "a Heartbeat internal; nothing to set in kembar",
    "crm_daemon_dir": _PACEMAKER,
    "crmd_spawns_pengine": _PACEMAKER,
    "log_config_changes": _PACEMAKER,
    "record_config_changes": _PACEMAKER,
    "log_pengine_inputs": _PACEMAKER,
    "record_pengine_inputs": _PACEMAKER,
    "config_writes_enabled": _PACEMAKER,
    "enable_config_writes": _PACEMAKER,
    "hbaping": "FC-HBA ping nodes are not supported: use ping with an address",
    "mcast6": "IPv6 multicast is not supported: use ucast (IPv6 peers are accepted), bcast "
              "or mcast",
    "ucast6": "not supported as such: kembar's ucast accepts IPv6 peers, so write 'ucast "
              "DEV ADDRESS' instead",
    "serial": _SERIAL,
}

# Directives whose values are option lists (Heartbeat splits them on blanks and commas);
# the others take the whole rest of the line.
_WHOLE_LINE = frozenset({"ucast", "ucast6", "mcast", "mcast6", "stonith", "stonith_host",
                         "apiauth", "respawn", "serial"})


@dataclass
class ImportResult:
    """The cluster file's text and one line per thing not carried over or changed."""

    toml: str
    notes: list[str]


@dataclass
class _Medium:
    line: int
    kind: str
    interface: str
    port: int
    group: str | None = None
    ttl: int | None = None
    peer: str | None = None
    loop: int = 0
    port_line: int = 0  # the udpport line that set ``port`` (0: Heartbeat's default)

    def key(self) -> tuple[object, ...]:
        return (self.kind, self.interface, self.port, self.group, self.peer)

    def describe(self) -> str:
        if self.kind == "bcast":
            return f"bcast {self.interface}"
        if self.kind == "mcast":
            return f"mcast {self.interface} {self.group} {self.port} {self.ttl} {self.loop}"
        return f"ucast {self.interface} {self.peer}"


@dataclass
class _State:
    source: str
    label: str
    notes: list[str] = field(default_factory=list)
    timers: dict[str, tuple[Fraction, int]] = field(default_factory=dict)
    udpport: int | None = None
    udpport_line: int = 0
    first_udpport: tuple[int, int] | None = None
    udpport_used: bool = True
    media: list[_Medium] = field(default_factory=list)
    nodes: dict[str, int] = field(default_factory=dict)
    pings: dict[str, int] = field(default_factory=dict)
    auto_failback: tuple[bool, int, str] | None = None
    cluster: tuple[str, int] | None = None
    unsupported_media: list[str] = field(default_factory=list)
    # the logging directives: name -> (value, line)
    logging: dict[str, tuple[str, int]] = field(default_factory=dict)

    def fail(self, line: int | None, problem: str) -> ConfigError:
        where = f"{self.source}: line {line}: " if line else f"{self.source}: "
        return ConfigError(where + problem)

    def note(self, text: str) -> None:
        self.notes.append(text)


def _show(token: str) -> str:
    """A token from the input, safe to put in a one-line message."""
    text = token if len(token) <= 40 else token[:37] + "..."
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def _ms(state: _State, line: int, name: str, value: str) -> Fraction:
    """Heartbeat's get_msec(): seconds when bare, else ms / msec / us / usec."""
    match = _TIME_RE.fullmatch(value)
    if match is None or len(match.group(1)) > 20:
        raise state.fail(line, f"{name}: invalid time value {_show(value)} (use e.g. 2, 1.5, "
                               "2000ms)")
    unit = (match.group(2) or "").lower()
    scale = {"": Fraction(1000), "ms": Fraction(1), "msec": Fraction(1),
             "us": Fraction(1, 1000), "usec": Fraction(1, 1000)}[unit]
    ms = Fraction(int(Fraction(match.group(1)) * scale + Fraction(1, 2)))  # rounded, as C
    if ms > _MAX_MS:
        raise state.fail(line, f"{name}: time value {_show(value)} is too large (at most a "
                               "day)")
    return ms


def _duration(ms: Fraction) -> str:
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    if ms.denominator == 1:
        return f"{ms}ms"
    return f"{Decimal(ms.numerator) / Decimal(ms.denominator)}ms"  # half a ms: exact


def _bool(state: _State, line: int, name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE
    raise state.fail(line, f"{name}: expected on or off, got {_show(value)}")


def _port(state: _State, line: int, name: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 5 or not 1 <= int(value) <= 65535:
        raise state.fail(line, f"{name}: invalid port {_show(value)} (1 to 65535)")
    return int(value)


def _interface(state: _State, line: int, name: str, value: str) -> str:
    if (not 1 <= len(value) <= 15 or value in (".", "..") or not value.isprintable()
            or any(ch in value for ch in "/: ")):
        raise state.fail(line, f"{name}: not an interface name: {_show(value)}")
    return value


def _address(state: _State, line: int, what: str, value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise state.fail(line, f"{what} {_show(value)} is not an IP address: write the "
                               "address (kembar does not resolve names)") from None


def _split(name: str, rest: str) -> list[str]:
    if name in _WHOLE_LINE:
        return rest.split()
    return [token for token in re.split(r"[,\s]+", rest) if token]


def _directives(text: str) -> list[tuple[int, str, str, list[str]]]:
    """(line number, lower-case name, name as written, values) for each directive line."""
    out = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.split("#", 1)[0]
        line = re.split(r"[\r\n]", line, maxsplit=1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 1)
        written = parts[0]
        name = written.lower()
        out.append((number, name, written, _split(name, parts[1] if len(parts) > 1 else "")))
    return out


def _media_line(state: _State, line: int, name: str, args: list[str]) -> None:
    if name == "bcast":
        for dev in args:
            state.media.append(_Medium(line, "bcast", _interface(state, line, name, dev),
                                       state.udpport or DEFAULT_PORT,
                                       port_line=state.udpport_line))
        state.udpport_used = True
        return
    if name == "ucast":
        if len(args) < 2:
            raise state.fail(line, "ucast: expected 'ucast DEV PEER-ADDRESS'")
        dev = _interface(state, line, name, args[0])
        for peer in args[1:]:
            state.media.append(_Medium(line, "ucast", dev, state.udpport or DEFAULT_PORT,
                                       peer=_address(state, line, "ucast: peer", peer),
                                       port_line=state.udpport_line))
        state.udpport_used = True
        return
    # mcast dev group port ttl loop
    if len(args) != 5:
        raise state.fail(line, "mcast: expected 'mcast DEV GROUP PORT TTL LOOP'")
    dev = _interface(state, line, name, args[0])
    try:
        group = ipaddress.IPv4Address(args[1])
    except ValueError:
        group = None
    if group is None or not group.is_multicast:
        raise state.fail(line, f"mcast: {_show(args[1])} is not an IPv4 multicast group "
                               "(e.g. 239.192.0.1)")
    port = _port(state, line, "mcast", args[2])
    ttl, loop = args[3], args[4]
    if not (ttl.isascii() and ttl.isdigit()) or len(ttl) > 3 or not 1 <= int(ttl) <= 255:
        raise state.fail(line, f"mcast: invalid ttl {_show(ttl)} (1 to 255)")
    if loop not in ("0", "1"):
        raise state.fail(line, f"mcast: invalid loop {_show(loop)} (0 or 1)")
    if loop == "1":
        state.note(f"mcast (line {line}): loop 1 is not carried over: kembar never loops its "
                   "own multicast heartbeats back (Heartbeat's documentation says to set 0)")
    state.media.append(_Medium(line, "mcast", dev, port, group=str(group), ttl=int(ttl),
                               loop=int(loop)))


def _last(state: _State, line: int, name: str, args: list[str]) -> str | None:
    """The value of a single-valued option-list directive (Heartbeat applies each in turn)."""
    if not args:
        state.note(f"{name} (line {line}) has no value: ignored, as Heartbeat does")
        return None
    if len(args) > 1:
        state.note(f"{name} (line {line}) has {len(args)} values: Heartbeat applies each in "
                   f"turn, so the last one, {_show(args[-1])}, is used")
    return args[-1]


def _respawn(state: _State, line: int, args: list[str]) -> None:
    program = PurePosixPath(args[1]).name if len(args) > 1 else ""
    if program == "ipfail":
        state.note(f"respawn ipfail (line {line}): not needed: ipfail's job is done by ping "
                   "nodes in kembar (membership.ping)")
    elif program in ("dopd", "drbd-peer-outdater"):
        state.note(f"respawn {program} (line {line}): not needed: DRBD's outdate-peer helper "
                   "is replaced by kembar's own disk and resource manager")
    else:
        shown = _show(" ".join(args[1:]) or "(nothing)")
        state.note(f"respawn (line {line}): {shown} is not carried over: kembar supervises "
                   "no extra programs; run it as a systemd service")


def _read(state: _State, text: str) -> None:
    for line, name, written, args in _directives(text):
        if name in _TIMERS:
            value = _last(state, line, name, args)
            if value is not None:
                for each in args:
                    _ms(state, line, name, each)
                state.timers[name] = (_ms(state, line, name, value), line)
        elif name in ("bcast", "udp", "ucast", "mcast"):
            if name == "udp":
                state.note(f"udp (line {line}): the old name of bcast, read as bcast")
                name = "bcast"
            _media_line(state, line, name, args)
        elif name == "udpport":
            value = _last(state, line, name, args)
            if value is not None:
                for each in args:
                    _port(state, line, name, each)
                if not state.udpport_used:
                    state.note(f"udpport (line {state.udpport_line}) is followed by another "
                               f"udpport (line {line}) before any bcast or ucast line: it "
                               "has no effect")
                state.udpport, state.udpport_line = int(value), line
                state.udpport_used = False
                if state.first_udpport is None:
                    state.first_udpport = (int(value), line)
        elif name == "node":
            for each in args:
                node = each.lower()
                if not _NODE_NAME_RE.fullmatch(node):
                    raise state.fail(line, f"node: invalid node name {_show(each)} (use "
                                           "[A-Za-z0-9][A-Za-z0-9._-]{0,62})")
                if node != each:
                    state.note(f"node {_show(each)} (line {line}): Heartbeat uses node names "
                               f"in lower case: written as {node} (if this host's name "
                               f"differs, start kembar with --node {node})")
                if node in state.nodes:
                    state.note(f"node {node} (line {line}) is already named on line "
                               f"{state.nodes[node]}: listed once")
                else:
                    state.nodes[node] = line
        elif name in ("ping", "ping6"):
            for each in args:
                state.pings.setdefault(_address(state, line, f"{name}: node", each), line)
        elif name == "ping_group":
            addresses = " ".join(_show(a) for a in args[1:]) or "ADDRESS..."
            state.note(f"ping_group (line {line}) is not supported (kembar's ping nodes are "
                       f"independent, not a group): use 'ping {addresses}' in ha.cf or "
                       "membership.ping in the cluster file")
        elif name == "auto_failback":
            value = _last(state, line, name, args)
            if value is not None:
                if value.lower() == "legacy":
                    state.note(f"auto_failback legacy (line {line}): Heartbeat's 'legacy' "
                               "behaves as 'on' (with a warning): kembar writes "
                               "auto_failback = true")
                    state.auto_failback = (True, line, "auto_failback legacy")
                else:
                    flag = _bool(state, line, name, value)
                    state.auto_failback = (flag, line, f"auto_failback {'on' if flag else 'off'}")
        elif name == "nice_failback":
            value = _last(state, line, name, args)
            if value is not None:
                nice = _bool(state, line, name, value)
                state.note(f"nice_failback (line {line}) is obsolete: Heartbeat reads "
                           f"'nice_failback {'on' if nice else 'off'}' as 'auto_failback "
                           f"{'off' if nice else 'legacy'}': kembar writes auto_failback = "
                           f"{'false' if nice else 'true'}")
                state.auto_failback = (not nice, line, f"nice_failback {value}")
        elif name in ("logfacility", "logfile", "debugfile", "debug", "use_logd"):
            value = _last(state, line, name, args)
            if value is not None:
                _log_directive(state, line, name, value)
        elif name == "respawn":
            _respawn(state, line, args)
        elif name in ("crm", "pacemaker"):
            if not args or args[0].lower() not in _FALSE:
                state.note(f"{name} (line {line}) is not supported: kembar has its own "
                           "resource manager; Pacemaker's CIB is not imported")
        elif name == "cluster":
            value = _last(state, line, name, args)
            if value is not None:
                state.cluster = (value, line)
        elif name == "autojoin":
            if args and args[-1].lower() != "none":
                state.note(f"autojoin {_show(args[-1])} (line {line}) is not supported: "
                           "kembar's members are exactly the [nodes] tables")
        elif name in _EXPLAINED:
            if name in ("mcast6", "ucast6", "serial"):
                state.unsupported_media.append(f"{name} (line {line})")
            state.note(f"{name} (line {line}): {_EXPLAINED[name]}")
        else:
            state.note(f"unknown directive {_show(written)} (line {line}): ignored")


def _log_directive(state: _State, line: int, name: str, value: str) -> None:
    """Check one logging directive as Heartbeat would and keep it (``_logging`` writes)."""
    if name == "logfacility":
        value = value.lower()
        if value != "none" and value not in _FACILITIES:
            raise state.fail(line, f"logfacility: unknown syslog facility {_show(value)} (use "
                                   f"none, daemon, local0 … local7, …)")
    elif name in ("logfile", "debugfile"):
        if not value.startswith("/") or "\0" in value:
            raise state.fail(line, f"{name}: {_show(value)} is not an absolute path")
    elif name == "debug":
        if not (value.isascii() and value.isdigit()) or int(value) > 255:
            raise state.fail(line, f"debug: expected a level from 0 to 255, got {_show(value)}")
    else:
        value = "on" if _bool(state, line, name, value) else "off"
    state.logging[name] = (value, line)


def _logging(state: _State) -> list[tuple[str, str | None]]:
    """The ``[logging]`` rows for ha.cf's logging directives (none: no table)."""
    got = state.logging
    if not got:
        return []
    label = state.label

    def where(name: str) -> str:
        return f"{label} line {got[name][1]}"

    targets: list[tuple[str, str]] = []
    rows: list[tuple[str, str | None]] = []
    logd = got.get("use_logd", ("off", 0))[0] == "on"
    facility = got.get("logfacility", ("", 0))[0]
    if logd:
        for name in ("logfile", "debugfile", "logfacility"):
            if name in got:
                state.note(f"{name} (line {got[name][1]}): ignored with use_logd on, as "
                           "Heartbeat ignores it")
        state.note(f"use_logd on (line {got['use_logd'][1]}): kembar has no logging daemon: "
                   "it logs to syslog (facility daemon) itself; Heartbeat's logd.cf is not "
                   "read (set [logging] syslog_facility to what it named)")
        targets.append(("syslog", where("use_logd") + ": use_logd on"))
        rows.append(('syslog_facility = "daemon"', "kembar's choice: logd.cf is not read"))
    else:
        path_key = "logfile" if "logfile" in got else \
            "debugfile" if "debugfile" in got else None
        if path_key is not None:
            targets.append(("file", where(path_key) + f": {path_key}"))
            rows.append((f"file = {_toml_str(got[path_key][0])}", where(path_key)))
        if "logfile" in got and "debugfile" in got:
            state.note(f"debugfile (line {got['debugfile'][1]}): kembar writes one log file "
                       f"(logfile, line {got['logfile'][1]}); its debug messages go there "
                       "when level = \"debug\"")
        elif path_key == "debugfile":
            state.note(f"debugfile (line {got['debugfile'][1]}): written as [logging] file "
                       "(there is no logfile); kembar's debug messages go there when level = "
                       "\"debug\"")
        if facility == "none":
            state.note(f"logfacility none (line {got['logfacility'][1]}): no syslog, as in "
                       "Heartbeat")
        elif facility:
            targets.append(("syslog", where("logfacility") + f": logfacility {facility}"))
            rows.append((f"syslog_facility = {_toml_str(facility)}", where("logfacility")))
    if "debug" in got and int(got["debug"][0]) > 0:
        rows.append(('level = "debug"', where("debug") + f": debug {got['debug'][0]}"))
    elif "debug" in got:
        state.note(f"debug 0 (line {got['debug'][1]}): kembar's default level (info), as "
                   "Heartbeat's")
    if not targets and not rows:
        return []
    out: list[tuple[str, str | None]] = [("", None), ("[logging]", None)]
    if targets:
        names = ", ".join(_toml_str(t) for t, _ in targets)
        out.append((f"targets = [{names}]", "; ".join(why for _, why in targets)))
    else:
        out.append(('targets = ["stderr"]', "kembar's default (the journal under systemd)"))
    return out + rows


def _cluster_name(state: _State, explicit: str | None) -> tuple[str, str]:
    """The cluster name and its TOML comment."""
    def valid(name: str) -> bool:
        try:
            ClusterSection(name=name)
        except ValidationError:
            return False
        return True

    if explicit is not None:
        if not valid(explicit):
            raise ConfigError(f"invalid cluster name {_show(explicit)} (use "
                              "[a-z0-9][a-z0-9_-]{0,31})")
        return explicit, "chosen with --name"
    if state.cluster is not None:
        name, line = state.cluster
        if valid(name):
            return name, f"{state.label} line {line}"
        if valid(name.lower()):
            state.note(f"cluster {_show(name)} (line {line}): written in lower case as "
                       f"{name.lower()}")
            return name.lower(), f"{state.label} line {line}"
        state.note(f"cluster {_show(name)} (line {line}) is not a valid kembar cluster name "
                   f"([a-z0-9][a-z0-9_-]{{0,31}}): using '{DEFAULT_CLUSTER_NAME}' (choose "
                   "another with --name)")
        return DEFAULT_CLUSTER_NAME, "ha.cf's name is not valid in kembar"
    state.note(f"no cluster directive: the cluster is named '{DEFAULT_CLUSTER_NAME}' (choose "
               "another with --name)")
    return DEFAULT_CLUSTER_NAME, "no cluster directive in ha.cf"


def _timing(state: _State) -> dict[str, tuple[Fraction, str]]:
    """Effective timers with their TOML comments, after Heartbeat's checks."""
    t = state.timers
    d = _duration

    def given(name: str) -> tuple[Fraction | None, int | None]:
        return (t[name][0], t[name][1]) if name in t else (None, None)

    keepalive = t["keepalive"][0] if "keepalive" in t else Fraction(1000)
    deadtime = t["deadtime"][0] if "deadtime" in t else Fraction(30000)
    if keepalive <= 0:
        raise state.fail(t["keepalive"][1], "keepalive must be above 0")
    if deadtime <= 2 * keepalive:
        line = t["deadtime"][1] if "deadtime" in t else t["keepalive"][1]
        raise state.fail(line, f"deadtime ({d(deadtime)}) must exceed twice the keepalive "
                               f"({d(keepalive)}), as Heartbeat requires")
    out: dict[str, tuple[Fraction, str]] = {}
    out["keepalive"] = (keepalive, f"{state.label} line {t['keepalive'][1]}" if "keepalive"
                        in t else "Heartbeat default")
    warn, warn_line = given("warntime")
    if warn is not None and warn <= 0:
        raise state.fail(warn_line, "warntime must be above 0")
    if warn is not None and not keepalive < warn < deadtime:
        state.note(f"warntime {d(warn)} (line {warn_line}) is not between the keepalive "
                   f"({d(keepalive)}) and the deadtime ({d(deadtime)}) as kembar requires: "
                   f"wrote {d(deadtime / 2)} (half the deadtime, Heartbeat's default)")
        out["warntime"] = (deadtime / 2, f"half the deadtime: line {warn_line} not usable")
    elif warn is not None:
        out["warntime"] = (warn, f"{state.label} line {warn_line}")
    else:
        out["warntime"] = (deadtime / 2, "Heartbeat default (half the deadtime)")
    out["deadtime"] = (deadtime, f"{state.label} line {t['deadtime'][1]}" if "deadtime" in t
                       else "Heartbeat default")
    initdead, init_line = given("initdead")
    if initdead is None:
        seconds = Fraction(initdead_default(float(deadtime / 1000))).limit_denominator(1000)
        initdead = seconds * 1000
        out["initdead"] = (initdead, "Heartbeat default (from the deadtime)")
    else:
        if initdead < deadtime:
            raise state.fail(init_line, f"initdead ({d(initdead)}) is smaller than the "
                                        f"deadtime ({d(deadtime)}), as Heartbeat refuses")
        out["initdead"] = (initdead, f"{state.label} line {init_line}")
    if initdead < 10000:
        state.note(f"initdead is {d(initdead)}: Heartbeat warns that below 10s it may be too "
                   "short for a slow network start")
    deadping, ping_line = given("deadping")
    if deadping is None:
        out["deadping"] = (deadtime, "Heartbeat default (the deadtime)")
    else:
        if deadping <= 2 * keepalive:
            raise state.fail(ping_line, f"deadping ({d(deadping)}) must exceed twice the "
                                        f"keepalive ({d(keepalive)}), as Heartbeat requires")
        out["deadping"] = (deadping, f"{state.label} line {ping_line}")
    return out


def _toml_str(value: str) -> str:
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _toml_str(name)


def _rows(rows: list[tuple[str, str | None]]) -> list[str]:
    width = max((len(text) for text, comment in rows if comment), default=0)
    return [f"{text.ljust(width)}   # {comment}" if comment else text for text, comment in rows]


def import_hacf(text: str, source: str = "ha.cf", authkeys_path: str | None = None,
                cluster_name: str | None = None) -> ImportResult:
    """Convert the text of a Heartbeat ``ha.cf``; ConfigError (``source: line N: …``) if
    Heartbeat itself would refuse it or kembar cannot represent it."""
    label = "".join(ch for ch in (PurePosixPath(source).name or source) if ch.isprintable())
    state = _State(source=source, label=label or "ha.cf")
    authkeys = DEFAULT_AUTHKEYS if authkeys_path is None else authkeys_path
    if not PurePosixPath(authkeys).is_absolute() or "\0" in authkeys:
        raise ConfigError(f"the authkeys path must be absolute, got {_show(authkeys)}")
    _read(state, text)

    if not state.media:
        also = f" ({', '.join(state.unsupported_media)} cannot be used)" \
            if state.unsupported_media else ""
        raise state.fail(None, f"no heartbeat media: at least one bcast, mcast or ucast line "
                               f"is required{also}")
    if not state.nodes:
        raise state.fail(None, "no nodes: at least one 'node NAME' line is required (autojoin "
                               "is not supported)")
    timing = _timing(state)
    name, name_comment = _cluster_name(state, cluster_name)

    udp_media = [m for m in state.media if m.kind != "mcast"]
    if udp_media:
        if state.udpport is not None and not state.udpport_used:
            state.note(f"udpport (line {state.udpport_line}) comes after every bcast and "
                       "ucast line: Heartbeat applies it to none of them, so it has no effect")
        port, port_line = udp_media[0].port, udp_media[0].port_line
    else:
        port, port_line = state.first_udpport or (DEFAULT_PORT, 0)
    port_comment = (f"{state.label} line {port_line}" if port_line
                    else "Heartbeat default (IANA ha-cluster)")

    if state.auto_failback is None:
        state.note("auto_failback not set: Heartbeat's default 'legacy' behaves as 'on' with a "
                   "warning; kembar writes auto_failback = true")
        failback, failback_comment = True, "Heartbeat default 'legacy', which acts as on"
    else:
        flag, line, how = state.auto_failback
        failback, failback_comment = flag, f"{state.label} line {line}: {how}"

    state.note(f"nodes {', '.join(state.nodes)}: ha.cf has no node addresses; set "
               "nodes.<name>.address for each before adding disks")
    state.note("kembar's heartbeat packets are not Heartbeat's: a kembar node and a Heartbeat "
               "node see each other as dead, so switch both nodes together")
    if len(state.nodes) > 2:
        state.note(f"ha.cf names {len(state.nodes)} nodes: kembar's disks and resource "
                   "groups run on two of them")

    out = [f"# kembar cluster file, converted from {label} by 'kembar config import'.",
           f"# Comments name the {label} line of each value; 'Heartbeat default' marks what",
           "# ha.cf left unset (written out so the timing is visible).",
           "# Before adding [disks.*]: set nodes.<name>.address for every node.", ""]
    out += _rows([("[cluster]", None), (f"name = {_toml_str(name)}", name_comment),
                  (f"auto_failback = {'true' if failback else 'false'}", failback_comment)])
    for number, (node, line) in enumerate(state.nodes.items(), start=1):
        example = f'# address = "192.0.2.{min(number, 254)}"'
        out += ["", *_rows([(f"[nodes.{_key(node)}]", f"{state.label} line {line}"),
                            (example, "needed before adding disks")])]
    rows: list[tuple[str, str | None]] = [("", None), ("[membership]", None)]
    for timer in _TIMERS:
        value, comment = timing[timer]
        rows.append((f"{timer} = {_toml_str(_duration(value))}", comment))
    rows.append((f"port = {port}", port_comment))
    rows.append((f"authkeys = {_toml_str(authkeys)}",
                 "chosen with --authkeys-output" if authkeys_path else "kembar's default"))
    if state.pings:
        lines = sorted(set(state.pings.values()))
        rows.append((f"ping = [{', '.join(_toml_str(p) for p in state.pings)}]",
                     f"{state.label} line{'s' if len(lines) > 1 else ''} "
                     f"{', '.join(map(str, lines))}"))
    out += _rows(rows)
    log_rows = _logging(state)
    seen: dict[tuple[object, ...], int] = {}
    for medium in state.media:
        if medium.key() in seen:
            state.note(f"{medium.describe()} (line {medium.line}) repeats line "
                       f"{seen[medium.key()]}: written once")
            continue
        seen[medium.key()] = medium.line
        out += ["", f"[[membership.media]]   # {state.label} line {medium.line}: "
                    f"{medium.describe()}",
                f"type = {_toml_str(medium.kind)}",
                f"interface = {_toml_str(medium.interface)}"]
        if medium.kind == "mcast":
            out += [f"group = {_toml_str(medium.group or '')}", f"ttl = {medium.ttl}"]
        if medium.kind == "ucast":
            out.append(f"peer = {_toml_str(medium.peer or '')}")
        if medium.port != port:
            out.append(f"port = {medium.port}")
    if log_rows:
        out += _rows(log_rows)
    toml = "\n".join(out) + "\n"
    try:
        parse_cluster(toml, f"{source} (converted)")
    except ConfigError as exc:
        raise ConfigError(f"{source}: cannot be converted: {exc}") from None
    return ImportResult(toml=toml, notes=state.notes)


def import_authkeys(text: str, source: str) -> tuple[str, list[str]]:
    """Heartbeat's authkeys as kembar's (same format) and notes; ConfigError if unusable."""
    try:
        keys = parse_authkeys(text, source)
    except ConfigError as exc:
        crc = re.search(r"^(.*?)key (\d+): crc adds no security", str(exc))
        if crc is None:
            raise
        where, index = crc.group(1), crc.group(2)
        raise ConfigError(f"{where}key {index} uses crc, which adds no security; kembar needs "
                          f"sha256, sha1 or md5: generate a key with: echo \"{index} sha256 "
                          f"$(openssl rand -hex 32)\" (the same line on both nodes)") from None
    try:
        converted = format_authkeys(keys)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    notes = []
    signing = keys.sign_key
    if signing.method != "sha256":
        notes.append(f"{source}: the signing key {signing.index} uses {signing.method}: kembar "
                     "accepts it (as HMAC), but sha256 is stronger; add a sha256 key and "
                     "'auth' it once both nodes run kembar")
    return converted, notes
