"""``kembar config import``: Heartbeat's ``haresources`` as ``[groups.*]`` tables.

A pure function, text in and TOML text and notes out; the CLI reads the file.

Heartbeat's rules are kept (``haresources(5)`` sample, ``ResourceManager``): ``#`` starts a
comment; a line ending in ``\\`` continues on the next; every other non-empty line is one
resource group: the node that normally runs it (one of ha.cf's ``node`` names), then the
resources, started left to right and stopped right to left.  ``name::a::b`` passes the
arguments ``a`` and ``b``; a bare IPv4 address (``ip[/bits[/if[/bcast]]]``) means
``IPaddr::ip…``; a name is looked up in ``/etc/ha.d/resource.d`` first (the agents
Heartbeat ships), then ``/etc/init.d`` (any init script, so ``apache2`` is a service).

Mapping:

================================================  ==============================================
``IPaddr``/``IPaddr2::ip[/bits[/if[/bcast]]]``    ``type = "ip"``, ``address = "ip/bits"``
``IPv6addr::addr/bits[/if]``                      ``type = "ip"``
``drbddisk::r0`` (no argument: every resource)    ``type = "disk"``, ``disk = "r0"``
``Filesystem::dev::dir[::fstype[::options]]``     ``type = "filesystem"`` (``/dev/drbd0`` and
                                                  ``/dev/drbd/by-res/r0`` → ``/dev/kembar/r0``)
a name without ``::`` that is no shipped agent    ``type = "service"`` (init script / unit)
any other agent, with or without arguments        ``type = "script"``, path
                                                  ``/etc/ha.d/resource.d/NAME``, ``args``
================================================  ==============================================

haresources gives groups no names: they are called ``group1``, ``group2`` … in file order.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from kembar.config.importer import _key, _rows, _show, _toml_str
from kembar.config.model import _NODE_NAME_RE
from kembar.errors import ConfigError

__all__ = ["RESOURCE_D", "import_haresources"]

RESOURCE_D = "/etc/ha.d/resource.d"

# The R1 agents Heartbeat 3.0.6 and drbd-utils ship in /etc/ha.d/resource.d.
_AGENTS = frozenset({"AudibleAlarm", "Delay", "Filesystem", "ICP", "IPaddr", "IPaddr2",
                     "IPsrcaddr", "IPv6addr", "LVM", "LinuxSCSI", "MailTo", "OCF", "Raid1",
                     "SendArp", "ServeRAID", "WAS", "WinPopup", "Xinetd", "apache", "db2",
                     "drbddisk", "drbdupper", "ids", "portblock"})
# Heartbeat reads a.b.c.d as an address; digits and dots alone are a mistyped one, never
# an init script's name.
_IPV4_LIKE = re.compile(r"[0-9]+(\.[0-9]*)+(/.*)?", re.DOTALL)
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,127}")
_BY_RES = re.compile(r"/dev/drbd/by-res/([^/]+)(?:/([0-9]+))?")
_DEFAULT_PREFIX = {4: 24, 6: 64}


def _fail(source: str, line: int, problem: str) -> ConfigError:
    return ConfigError(f"{source}: line {line}: {problem}")


def _label(source: str) -> str:
    label = "".join(ch for ch in (PurePosixPath(source).name or source) if ch.isprintable())
    return label or "haresources"


@dataclass
class _Res:
    kind: str  # ip, disk, filesystem, service, script
    token: str
    line: int
    values: list[tuple[str, str | list[str]]] = field(default_factory=list)
    disk: str | None = None  # disk: its name; filesystem: the disk it mounts


@dataclass
class _State:
    source: str
    label: str
    nodes: list[str] | None
    disks: list[str]  # kembar names of drbd.conf's resources, in order
    devices: dict[str, str]
    notes: list[str] = field(default_factory=list)
    owners: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    scripts: bool = False
    current: str = ""  # the group being read

    def fail(self, line: int, problem: str) -> ConfigError:
        return _fail(self.source, line, problem)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def at(self, line: int) -> str:
        return f"{self.label} line {line}"


def _groups(text: str) -> list[list[tuple[str, int]]]:
    """The tokens (with their line numbers) of each group line, continuations joined."""
    out: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] | None = None
    for number, raw in enumerate(text.split("\n"), start=1):
        body = raw.split("#", 1)[0].rstrip()
        more = body.endswith("\\")
        if more:
            body = body[:-1]
        tokens = [(token, number) for token in body.split()]
        if current is None:
            current = tokens
        else:
            current += tokens
        if not more:
            if current:
                out.append(current)
            current = None
    if current:
        out.append(current)
    return out


def _interface(state: _State, line: int, what: str, value: str) -> str:
    name, _, label = value.partition(":")
    if (not 1 <= len(name) <= 15 or name in (".", "..") or not name.isprintable()
            or any(ch in name for ch in "/ ") or any(ch.isspace() for ch in name)):
        raise state.fail(line, f"{what}: not an interface name: {_show(value)}")
    if label:
        state.note(f"{what} ({state.at(line)}): the interface label {_show(value)} is not "
                   f"used: kembar adds the address to {name} without a label")
    return name


def _ip(state: _State, res: _Res, agent: str, arg: str) -> None:
    """``ip[/bits[/if[/bcast]]]`` (IPaddr, IPaddr2, a bare address) or ``addr[/bits[/if]]``
    (IPv6addr)."""
    line = res.line
    parts = arg.split("/")
    version = 6 if agent == "IPv6addr" else 4
    form = "ADDRESS[/BITS[/IF]]" if version == 6 else "IP[/BITS[/IF[/BCAST]]]"
    if len(parts) > form.count("/") + 1:
        raise state.fail(line, f"{agent}: {_show(arg)}: expected {form}")
    try:
        if "%" in parts[0]:
            raise ValueError("a scope id")
        address = ipaddress.IPv6Address(parts[0]) if version == 6 else \
            ipaddress.IPv4Address(parts[0])
    except ValueError:
        raise state.fail(line, f"{agent}: {_show(parts[0])} is not an IPv{version} "
                               "address") from None
    bits_text = parts[1] if len(parts) > 1 else ""
    if bits_text:
        if re.fullmatch(r"[0-9]{1,3}", bits_text) and 1 <= int(bits_text) <= \
                address.max_prefixlen:
            bits = int(bits_text)
        elif version == 4:
            try:
                bits = ipaddress.IPv4Network(f"0.0.0.0/{bits_text}").prefixlen
            except ValueError:
                bits = 0
            if bits == 0:
                raise state.fail(line, f"{agent}: invalid netmask {_show(bits_text)} (1 to 32 "
                                       "bits, or a netmask such as 255.255.255.0)")
        else:
            raise state.fail(line, f"{agent}: invalid prefix length {_show(bits_text)} (1 to "
                                   "128)")
    else:
        bits = _DEFAULT_PREFIX[version]
        state.note(f"{res.token} ({state.at(line)}): no prefix length: Heartbeat took the "
                   "netmask from the route to the address, but kembar needs it written: "
                   f"wrote /{bits}; make it the subnet of the interface that carries "
                   f"{address}")
    res.values.append(("address", f"{address}/{bits}"))
    if len(parts) > 2 and parts[2]:
        res.values.append(("interface", _interface(state, line, agent, parts[2])))
    if len(parts) > 3 and parts[3]:
        try:
            bcast = ipaddress.IPv4Address(parts[3])
        except ValueError:
            raise state.fail(line, f"{agent}: {_show(parts[3])} is not a broadcast "
                                   "address") from None
        network = ipaddress.IPv4Network(f"{address}/{bits}", strict=False)
        if bcast != network.broadcast_address:
            state.note(f"{res.token} ({state.at(line)}): the broadcast address {bcast} is not "
                       f"carried over: kembar uses the subnet's, {network.broadcast_address}")
    _claim(state, ("ip", str(address)), f"the address {address}", res.line)


def _claim(state: _State, key: tuple[str, str], what: str, line: int) -> None:
    """One group owns a disk, an address, a mount point: a second use is an error."""
    if key in state.owners:
        group, first = state.owners[key]
        raise state.fail(line, f"{what} is already a resource of {group} (line {first}): "
                               "one resource belongs to one group, once")
    state.owners[key] = (state.current, line)


def _disk_name(state: _State, line: int, written: str, what: str) -> str:
    name = written.lower()
    if name not in state.disks:
        known = ", ".join(state.disks) or "none: give the drbd.conf (--drbd-conf)"
        raise state.fail(line, f"{what}: no DRBD resource {_show(written)} in drbd.conf "
                               f"(known: {known})")
    return name


def _filesystem(state: _State, res: _Res, args: list[str]) -> None:
    line = res.line
    if len(args) < 2 or not args[0] or not args[1]:
        raise state.fail(line, f"{_show(res.token)}: expected "
                               "'Filesystem::DEVICE::DIRECTORY[::FSTYPE[::OPTIONS]]'")
    device, directory = args[0], args[1]
    fstype = args[2] if len(args) > 2 and args[2] else ""
    options = args[3] if len(args) > 3 else ""
    if len(args) > 4:
        state.note(f"{res.token} ({state.at(line)}): the arguments after the options "
                   f"({_show('::'.join(args[4:]))}) are not carried over (Filesystem takes "
                   "four)")
    if not directory.startswith("/"):
        raise state.fail(line, f"Filesystem: the mount point {_show(directory)} is not an "
                               "absolute path")
    by_res = _BY_RES.fullmatch(device)
    if by_res is not None:
        res.disk = _disk_name(state, line, by_res.group(1), f"Filesystem: {_show(device)}")
    elif device in state.devices:
        res.disk = state.devices[device]
    elif re.fullmatch(r"/dev/drbd[0-9]+", device):
        known = ", ".join(f"{d} ({r})" for d, r in state.devices.items()) or \
            "none: give the drbd.conf (--drbd-conf)"
        raise state.fail(line, f"Filesystem: {_show(device)} is not the device of any DRBD "
                               f"resource in drbd.conf (known: {known})")
    elif not device.startswith("/"):
        raise state.fail(line, f"Filesystem: the device {_show(device)} is not a path: kembar "
                               "mounts devices (NFS and LABEL=/UUID= are not supported)")
    if res.disk is not None:
        mapped = f"/dev/kembar/{res.disk}"
        if device != mapped:
            state.note(f"{res.token} ({state.at(line)}): the device {_show(device)} is the DRBD "
                       f"resource {res.disk}: kembar's is {mapped}")
        device = mapped
    else:
        state.note(f"{res.token} ({state.at(line)}): {_show(device)} is not a replicated disk: "
                   "it must be reachable from both nodes (shared storage)")
    res.values += [("device", device), ("directory", directory)]
    if fstype:
        res.values.append(("fstype", fstype))
    else:
        res.values.append(("fstype", "ext4"))
        state.note(f"{res.token} ({state.at(line)}): no filesystem type: Heartbeat let mount "
                   "detect it; kembar writes ext4: change it if that is wrong")
    if options:
        res.values.append(("options", options))
    _claim(state, ("mount", directory.rstrip("/") or "/"), f"the mount point {directory}",
           line)


def _resource(state: _State, token: str, line: int) -> list[_Res]:
    if _IPV4_LIKE.fullmatch(token):
        res = _Res("ip", token, line)
        _ip(state, res, "IPaddr", token)
        return [res]
    name, *args = token.split("::")
    if not _NAME_RE.fullmatch(name):
        raise state.fail(line, f"{_show(token)}: not a resource (a name from "
                               f"{RESOURCE_D} or /etc/init.d, an IP address)")
    if name in ("IPaddr", "IPaddr2", "IPv6addr"):
        arg = "::".join(args) if name == "IPv6addr" else (args[0] if args else "")
        if not arg:
            raise state.fail(line, f"{name}: expected '{name}::ADDRESS[/BITS[/IF]]'")
        if len(args) > 1 and name != "IPv6addr":
            state.note(f"{token} ({state.at(line)}): the arguments after the address are not "
                       "carried over")
        res = _Res("ip", token, line)
        _ip(state, res, name, arg)
        return [res]
    if name == "drbddisk":
        if len(args) > 1:
            state.note(f"{token} ({state.at(line)}): drbddisk takes one resource: the rest is "
                       "ignored")
        if args and args[0] and args[0] != "all":
            names = [_disk_name(state, line, args[0], f"drbddisk::{_show(args[0])}")]
        else:
            if not state.disks:
                raise state.fail(line, f"{_show(token)} without a resource means every DRBD "
                                       "resource, and none is known (give the drbd.conf: "
                                       "--drbd-conf)")
            names = list(state.disks)
            state.note(f"{token} ({state.at(line)}): every DRBD resource: written as one disk "
                       f"resource each ({', '.join(names)})")
        out = []
        for disk in names:
            _claim(state, ("disk", disk), f"the disk {disk}", line)
            out.append(_Res("disk", token, line, [("disk", disk)], disk))
        return out
    if name == "Filesystem":
        res = _Res("filesystem", token, line)
        _filesystem(state, res, args)
        return [res]
    if not args and name not in _AGENTS:
        return [_Res("service", token, line, [("name", name)])]
    state.scripts = True
    kept = [arg for arg in args if arg]
    if name not in _AGENTS:
        state.note(f"{token} ({state.at(line)}): {name} is not an agent Heartbeat ships: "
                   f"written as the script {RESOURCE_D}/{name}; if it is an init script in "
                   "/etc/init.d, change the path")
    elif name == "apache" and not args:
        state.note(f"apache ({state.at(line)}): Heartbeat's resource.d agent, not the apache "
                   "init script: written as a script")
    values: list[tuple[str, str | list[str]]] = [("path", f"{RESOURCE_D}/{name}")]
    if kept:
        values.append(("args", kept))
    return [_Res("script", token, line, values)]


def _value(value: str | list[str]) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_str(v) for v in value) + "]"
    return _toml_str(value)


def _group(state: _State, name: str, tokens: list[tuple[str, int]]) -> list[str]:
    written, line = tokens[0]
    node = written.lower()
    if not _NODE_NAME_RE.fullmatch(node):
        raise state.fail(line, f"{_show(written)} is not a node name: a line starts with the "
                               "node that normally runs the group")
    if state.nodes and node not in state.nodes:
        raise state.fail(line, f"{_show(written)} is not a node of ha.cf (nodes: "
                               f"{', '.join(state.nodes)})")
    if node != written:
        state.note(f"{_show(written)} ({state.at(line)}): node names are read in lower case, "
                   f"as Heartbeat does: written as {node}")
    if len(tokens) == 1:
        raise state.fail(line, f"{node}: the group has no resources (expected 'NODE "
                               "RESOURCE…')")
    resources: list[_Res] = []
    for token, at in tokens[1:]:
        resources += _resource(state, token, at)

    started: set[str] = set()
    for i, res in enumerate(resources):
        if res.kind == "disk" and res.disk:
            started.add(res.disk)
        if res.kind == "filesystem" and res.disk and res.disk not in started:
            state.note(f"{res.token} ({state.at(res.line)}) is not preceded by drbddisk::"
                       f"{res.disk} in its group: the mount fails where {res.disk} is not "
                       f"Primary; put drbddisk::{res.disk} before it")
        if res.kind == "ip" and any(r.kind in ("service", "script") for r in resources[i + 1:]):
            address = str(dict(res.values)["address"]).split("/")[0]
            state.note(f"{name} ({state.at(line)}): the address {address} starts before the "
                       "services in this line, as written: clients see 'connection refused' "
                       "during a takeover until the services listen; consider moving "
                       f"{res.token.split('::')[0] if '::' in res.token else 'the address'} "
                       "last")

    out = _rows([(f"[groups.{name}]", f"{state.at(line)}"),
                 (f"preferred = {_toml_str(node)}", None)])
    for res in resources:
        rows: list[tuple[str, str | None]] = [
            (f"[[groups.{name}.resources]]", f"{state.at(res.line)}: {_show(res.token)}"),
            (f'type = "{res.kind}"', None)]
        rows += [(f"{key} = {_value(value)}", None) for key, value in res.values]
        out += ["", *_rows(rows)]
    return out


def import_haresources(text: str, source: str = "haresources",
                       nodes: Sequence[str] | None = None,
                       drbd_devices: Mapping[str, str] | None = None) -> tuple[str, list[str]]:
    """Convert the text of a Heartbeat ``haresources``: ``[groups.*]`` TOML text and notes;
    ConfigError (``source: line N: …``) for a line Heartbeat or kembar cannot use.

    ``nodes``: ha.cf's node names (lower case); a group's node must be one of them.
    ``drbd_devices``: DRBD device paths to kembar disk names, from :func:`import_drbdconf`
    (``{"/dev/drbd0": "r0"}``); its names are the disks ``drbddisk`` may name."""
    devices = dict(drbd_devices or {})
    disks = list(dict.fromkeys(devices.values()))
    state = _State(source=source, label=_label(source),
                   nodes=[n.lower() for n in nodes] if nodes else None, disks=disks,
                   devices=devices)
    out: list[str] = []
    names: list[str] = []
    for number, tokens in enumerate(_groups(text), start=1):
        name = f"group{number}"
        state.current = name
        names.append(name)
        out += ["", *_group(state, name, tokens)]
    if not names:
        state.note(f"{state.label}: no resource groups")
        return "", state.notes
    unused = [d for d in disks if ("disk", d) not in state.owners]
    if unused:
        state.note(f"{state.label}: no group holds the disk{'s' if len(unused) > 1 else ''} "
                   f"{', '.join(unused)} (no drbddisk for {'them' if len(unused) > 1 else 'it'}):"
                   " no node promotes it unless told to ('kembar disk primary')")
    state.note(f"{state.label}: a group has no name there: they are called "
               f"{', '.join(names) if len(names) <= 3 else names[0] + ' … ' + names[-1]} in "
               "file order (rename them in the cluster file; standby and takeover name them)")
    state.note(f"{state.label}: Heartbeat never checked a resource after starting it; kembar "
               "monitors each every 10s and restarts, then moves, one that fails (set "
               "monitor_interval = 0 on a resource for Heartbeat's behaviour)")
    if state.scripts:
        state.note(f"{state.label}: script resources run Heartbeat's {RESOURCE_D} scripts as "
                   "they are: keep them when removing the heartbeat package")
    head = [f"# Resource groups, converted from {state.label} by 'kembar config import'.",
            "# Resources start in the order written and stop in reverse, as in Heartbeat."]
    return "\n".join(head + out) + "\n", state.notes
