"""``kembar config import``: DRBD's ``drbd.conf`` (8.3 and 8.4 syntax) as ``[disks.*]`` tables.

A pure function, text in and TOML text, notes and the device map out; the CLI reads the
files.  No well-kept Python library parses drbd.conf (drbdadm's own flex scanner is the
reference), so a small tokenizer and parser live here, following drbdadm's rules: ``#``
starts a comment, ``"…"`` is a string (backslash escapes one character), words end at
blanks, ``{``, ``}``, ``;`` and ``"``; a statement is words ending in ``;`` or a section
(words, then ``{`` … ``}``).

What is read: ``global``, ``common`` (inherited by every resource, option by option) and
``resource NAME`` with two ``on HOST`` sections (``device``, ``disk``, ``address``,
``meta-disk``; also written at resource level, or in one ``volume``), ``protocol`` and the
``net``, ``disk``, ``syncer`` (8.3), ``startup``, ``handlers`` and ``options`` sections.
The ``split-brain``, ``initial-split-brain`` and ``local-io-error`` handlers become the
``[notify]`` table's hooks (run with ``/bin/sh -c``, as drbdadm runs them); kembar has one
hook per event for all disks, so handlers that differ between resources are noted.
Every statement either ends up in the TOML (with a comment naming its line) or in a note
saying why not and what kembar does instead; what drbd.conf leaves to DRBD's defaults is
written out where kembar's default differs or the value matters, marked ``DRBD default``.
DRBD's units are kept in mind: ``timeout`` and ``ping-timeout`` count tenths of a second,
``ping-int`` and ``connect-int`` seconds, rates KiB/s unless suffixed ``K``, ``M``, ``G``.
``include`` is followed only when the caller passes a reader for the files.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from kembar.config.importer import _key, _rows, _show, _toml_str
from kembar.config.model import _DISK_NAME_RE, _NODE_NAME_RE, DEFAULT_META_DIR
from kembar.config.units import format_duration
from kembar.errors import ConfigError

__all__ = ["IncludeReader", "import_drbdconf"]

IncludeReader = Callable[[str, str], list[tuple[str, str]]]
"""``reader(pattern, including_source)``: the (path, text) of each file an ``include``
names, in drbdadm's order (sorted glob matches, relative to the including file)."""

_MAX_DEPTH = 12  # nested sections
_MAX_INCLUDE_DEPTH = 8
_MAX_FILES = 256

_SIZE_RE = re.compile(r"([0-9]{1,12})([kKmMgG]?)")
_SIZE_UNITS = {"": 1024, "k": 1024, "m": 1024**2, "g": 1024**3}
_MAX_RATE = 4 * 1024**3  # DRBD 8.4: 4194304 KiB/s

_DIGESTS = ("crc32c", "md5", "sha1", "sha256")
_ASB = {
    "after-sb-0pri": ("disconnect", "discard-zero-changes", "discard-younger-primary",
                      "discard-older-primary", "discard-least-changes"),
    "after-sb-1pri": ("disconnect", "consensus", "discard-secondary"),
    "after-sb-2pri": ("disconnect",),
}
# name: (unit in seconds, DRBD's range, DRBD 8.4's default, kembar key)
_TIMERS: dict[str, tuple[float, int, int, int, str]] = {
    "timeout": (0.1, 1, 600, 60, "timeout"),
    "ping-int": (1.0, 1, 120, 10, "ping_int"),
    "ping-timeout": (0.1, 1, 300, 5, "ping_timeout"),
    "connect-int": (1.0, 1, 120, 10, "connect_int"),
}
_CARRIED = frozenset({"protocol", "shared-secret", "cram-hmac-alg", "csums-alg", "verify-alg",
                      "al-extents", "rate", "resync-rate", "c-max-rate", "c-plan-ahead",
                      "on-io-error", *_ASB, *_TIMERS})
_IO_ERROR_POLICIES = ("pass_on", "call-local-io-error", "detach")
_OPTION_SECTIONS = frozenset({"net", "disk", "syncer", "startup", "handlers", "options"})

_TUNING = "a DRBD tuning knob with no kembar equivalent: not carried over"
_DYNAMIC = ("kembar's resync runs at one fixed rate (resync_rate); DRBD's dynamic "
            "resync controller is not carried over")
_FLUSH = ("not carried over: kembar always passes flushes through to the backing store and "
          "completes a flush only when both sides flushed")
_STARTUP = ("DRBD's boot-time wait is not carried over: kembar's disks come up with the "
            "daemon, and a group starts only after membership's initdead")
_HANDLER = "not carried over: kembar has no such event to run a hook on"
# DRBD handler -> kembar's notify event, and what differs
_HANDLERS: dict[str, tuple[str, str]] = {
    "split-brain": ("split_brain", "run when a split brain is not resolved automatically, "
                                   "as DRBD does"),
    "initial-split-brain": ("initial_split_brain", "run at every split brain found, as DRBD "
                                                   "does"),
    "local-io-error": ("disk_detached", "DRBD ran it only with on-io-error "
                                        "call-local-io-error; kembar runs it whenever an I/O "
                                        "error detaches the disk"),
}
_GLOBAL = "a drbdadm setting with no kembar equivalent: not needed"

_EXPLAINED: dict[str, str] = {
    "usage-count": "kembar reports no usage statistics: not needed",
    "minor-count": _GLOBAL, "dialog-refresh": _GLOBAL, "disable-ip-verification": _GLOBAL,
    "udev-always-use-vnr": _GLOBAL, "cmd-timeout-short": _GLOBAL,
    "cmd-timeout-medium": _GLOBAL, "cmd-timeout-long": _GLOBAL,
    "allow-two-primaries": "kembar never allows two primaries: not carried over (a "
                           "dual-primary setup cannot be converted)",
    "data-integrity-alg": "kembar checks every message on the wire with crc32c: there is "
                          "no digest to choose",
    "max-buffers": _TUNING, "max-epoch-size": _TUNING, "sndbuf-size": _TUNING,
    "rcvbuf-size": _TUNING, "unplug-watermark": _TUNING, "tcp-cork": _TUNING,
    "ko-count": _TUNING, "congestion-fill": _TUNING, "congestion-extents": _TUNING,
    "on-congestion": _TUNING, "max-bio-bvecs": _TUNING, "cpu-mask": _TUNING,
    "csums-after-crash-only": _TUNING, "al-updates": _TUNING, "read-balancing": _TUNING,
    "use-rle": _TUNING, "delay-probe-volume": _TUNING, "delay-probe-interval": _TUNING,
    "throttle-threshold": _TUNING, "hold-off-threshold": _TUNING,
    "rr-conflict": "not carried over: kembar never resyncs against the roles; it "
                   "disconnects",
    "always-asbp": "not carried over: kembar applies its after_sb policies only when the "
                   "generation identifiers show a common ancestor",
    "discard-my-data": "not carried over: use 'kembar disk connect --discard-my-data' once, "
                       "by hand",
    "fencing": "not carried over: fencing is the resource manager's job in kembar (a fencing "
               "agent), not the disk's",
    "on-no-data-accessible": "not carried over: kembar has no such setting",
    "disk-timeout": "not carried over: kembar has no backing-device timeout",
    "disk-barrier": _FLUSH, "disk-flushes": _FLUSH, "disk-drain": _FLUSH,
    "md-flushes": _FLUSH, "no-disk-barrier": _FLUSH, "no-disk-flushes": _FLUSH,
    "no-disk-drain": _FLUSH, "no-md-flushes": _FLUSH,
    "size": "not carried over: a kembar disk is as large as its backing store",
    "resync-after": "not carried over: kembar resyncs its disks independently",
    "after": "not carried over: kembar resyncs its disks independently",
    "c-fill-target": _DYNAMIC, "c-delay-target": _DYNAMIC, "c-min-rate": _DYNAMIC,
    "wfc-timeout": _STARTUP, "degr-wfc-timeout": _STARTUP, "outdated-wfc-timeout": _STARTUP,
    "wait-after-sb": _STARTUP, "stacked-timeouts": _STARTUP,
    "become-primary-on": "not carried over: roles follow the resource groups (a group's "
                         "preferred node promotes its disks)",
    "fence-peer": f"{_HANDLER}: fencing comes with the resource manager (a fencing agent)",
    "unfence-peer": f"{_HANDLER}: fencing comes with the resource manager (a fencing agent)",
    "outdate-peer": f"{_HANDLER}: fencing comes with the resource manager (a fencing agent)",
    "pri-lost-after-sb": f"{_HANDLER}: split brain is never resolved by rebooting a node",
    "pri-on-incon-degr": f"{_HANDLER}: kembar never promotes Inconsistent data",
    "pri-lost": _HANDLER, "before-resync-target": _HANDLER,
    "after-resync-target": _HANDLER, "before-resync-source": _HANDLER,
    "out-of-sync": _HANDLER, "quorum-lost": _HANDLER, "disconnected": _HANDLER,
    "node-id": "not needed: a kembar disk joins exactly two nodes, named by [on.<node>]",
}


def _digits(text: str, most: int) -> bool:
    """ASCII digits only (str.isdigit() also takes '²', which int() refuses), at most
    ``most`` of them."""
    return 0 < len(text) <= most and all("0" <= ch <= "9" for ch in text)


def _fail(source: str, line: int | None, problem: str) -> ConfigError:
    where = f"{source}: line {line}: " if line else f"{source}: "
    return ConfigError(where + problem)


def _label(source: str) -> str:
    label = "".join(ch for ch in (PurePosixPath(source).name or source) if ch.isprintable())
    return label or "drbd.conf"


# ------------------------------------------------------------------ tokenizer and parser


@dataclass(frozen=True)
class _Tok:
    text: str
    line: int
    kind: str  # "word", "string", "{", "}", ";"


@dataclass
class _Stmt:
    words: list[_Tok]
    source: str
    label: str
    body: list[_Stmt] | None = None  # None: a simple statement ending in ';'
    end: int = 0  # the line of the closing brace

    @property
    def line(self) -> int:
        return self.words[0].line

    @property
    def name(self) -> str:
        return self.words[0].text

    @property
    def args(self) -> list[str]:
        return [w.text for w in self.words[1:]]

    def where(self) -> str:
        return f"{self.label} line {self.line}"

    def fail(self, problem: str, line: int | None = None) -> ConfigError:
        return _fail(self.source, line or self.line, problem)

    def shown(self) -> str:
        return _show(" ".join(w.text for w in self.words))


_PUNCT = "{};"


def _tokens(text: str, source: str) -> list[_Tok]:
    out: list[_Tok] = []
    i, line, n = 0, 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch.isspace():
            i += 1
        elif ch == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif ch in _PUNCT:
            out.append(_Tok(ch, line, ch))
            i += 1
        elif ch == '"':
            start, i = line, i + 1
            chars: list[str] = []
            while True:
                if i >= n or text[i] == "\n":
                    raise _fail(source, start, "unterminated string (a \" is missing)")
                if text[i] == '"':
                    i += 1
                    break
                if text[i] == "\\" and i + 1 < n and text[i + 1] != "\n":
                    i += 1
                chars.append(text[i])
                i += 1
            out.append(_Tok("".join(chars), start, "string"))
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in '{};"#':
                i += 1
            out.append(_Tok(text[start:i], line, "word"))
    return out


def _parse(text: str, source: str) -> list[_Stmt]:
    """The statements of one file; ConfigError (``source: line N: …``) on bad syntax."""
    label = _label(source)
    top: list[_Stmt] = []
    stack: list[tuple[_Stmt, list[_Stmt]]] = []
    words: list[_Tok] = []
    tokens = _tokens(text, source)
    for tok in tokens:
        body = stack[-1][1] if stack else top
        if tok.kind in ("word", "string"):
            words.append(tok)
        elif tok.kind == ";":
            if not words:
                raise _fail(source, tok.line, "unexpected ';' (a statement is missing)")
            body.append(_Stmt(words, source, label))
            words = []
        elif tok.kind == "{":
            if not words:
                raise _fail(source, tok.line, "'{' without a section name before it")
            if len(stack) >= _MAX_DEPTH:
                raise _fail(source, tok.line, f"sections nested more than {_MAX_DEPTH} deep")
            inner: list[_Stmt] = []
            section = _Stmt(words, source, label, body=inner)
            body.append(section)
            stack.append((section, inner))
            words = []
        else:  # "}"
            if words:
                raise _fail(source, words[-1].line, f"missing ';' after "
                                                    f"{_show(' '.join(w.text for w in words))}")
            if not stack:
                raise _fail(source, tok.line, "unexpected '}' (no section is open)")
            stack.pop()[0].end = tok.line
    if words:
        raise _fail(source, words[-1].line,
                    f"missing ';' after {_show(' '.join(w.text for w in words))}")
    if stack:
        section = stack[-1][0]
        raise section.fail(f"section {section.shown()} is not closed (a '}}' is missing)")
    return top


# ------------------------------------------------------------------ reading


@dataclass
class _Opt:
    value: object
    stmt: _Stmt

    def where(self) -> str:
        return self.stmt.where()


@dataclass
class _Host:
    name: str
    stmt: _Stmt
    fields: dict[str, _Stmt] = field(default_factory=dict)


@dataclass
class _Resource:
    name: str  # kembar's disk name
    written: str
    stmt: _Stmt
    opts: dict[str, _Opt] = field(default_factory=dict)
    fields: dict[str, _Stmt] = field(default_factory=dict)  # resource-level device, disk…
    hosts: list[_Host] = field(default_factory=list)
    handlers: dict[str, _Stmt] = field(default_factory=dict)  # its own, by DRBD name


@dataclass
class _Side:
    host: _Host
    backing: str
    ip: str
    port: int
    address_stmt: _Stmt
    meta: str


@dataclass
class _State:
    notes: list[str] = field(default_factory=list)
    common: dict[str, _Opt] = field(default_factory=dict)
    resources: dict[str, _Resource] = field(default_factory=dict)
    handlers: dict[str, _Stmt] = field(default_factory=dict)  # common's, by DRBD name
    noted: set[tuple[str, int, str]] = field(default_factory=set)
    files: int = 1

    def note(self, stmt: _Stmt, text: str) -> None:
        key = (stmt.source, stmt.line, stmt.name)
        if key not in self.noted:
            self.noted.add(key)
            self.notes.append(text)


def _one(stmt: _Stmt) -> str:
    if len(stmt.words) != 2 or stmt.body is not None:
        raise stmt.fail(f"{_show(stmt.name)}: expected one value, as in "
                        f"'{stmt.name} VALUE;'")
    return stmt.words[1].text


def _int(stmt: _Stmt, low: int, high: int, unit: str = "") -> int:
    value = _one(stmt)
    if not _digits(value, 9) or not low <= int(value) <= high:
        raise stmt.fail(f"{stmt.name}: invalid value {_show(value)} (a whole number from "
                        f"{low} to {high}{unit}, as DRBD requires)")
    return int(value)


def _rate(stmt: _Stmt) -> tuple[int, str]:
    """A DRBD rate (KiB/s unless suffixed K, M, G) as bytes per second and kembar's text."""
    value = _one(stmt)
    match = _SIZE_RE.fullmatch(value)
    if match is None:
        raise stmt.fail(f"{stmt.name}: invalid rate {_show(value)} (use e.g. 33M, 100M or "
                        "10240, which DRBD reads as KiB/s)")
    number, unit = int(match.group(1)), match.group(2).lower()
    nbytes = number * _SIZE_UNITS[unit]
    if not 1024 <= nbytes <= _MAX_RATE:
        raise stmt.fail(f"{stmt.name}: rate {_show(value)} is out of DRBD's range (1K to 4G "
                        "per second)")
    return nbytes, f"{number}{(unit or 'k').upper()}"


def _option(state: _State, stmt: _Stmt, opts: dict[str, _Opt]) -> None:
    """One statement of a net/disk/syncer/startup/handlers/options section (or protocol)."""
    name = stmt.name
    if stmt.body is not None:
        state.note(stmt, f"section {stmt.shown()} ({stmt.where()}): not expected here: "
                         "ignored")
        return
    if name not in _CARRIED:
        why = _EXPLAINED.get(name)
        if why is None:
            state.note(stmt, f"{_show(name)} ({stmt.where()}): unknown to the importer: not "
                             "carried over")
        else:
            state.note(stmt, f"{name} ({stmt.where()}): {why}")
        return
    value: object
    if name == "protocol":
        text = _one(stmt)
        if text.upper() not in ("A", "B", "C"):
            raise stmt.fail(f"protocol: expected A, B or C, got {_show(text)}")
        value = text.upper()
    elif name == "shared-secret":
        text = _one(stmt)
        if not text:
            state.note(stmt, f"shared-secret ({stmt.where()}) is empty: ignored")
            return
        if len(text) > 64:
            raise stmt.fail("shared-secret: longer than 64 characters (DRBD's and kembar's "
                            "limit)")
        value = text
    elif name == "cram-hmac-alg":
        value = _one(stmt)
        state.note(stmt, f"cram-hmac-alg {_show(str(value))} ({stmt.where()}): kembar's peers "
                         "always authenticate with their own HMAC challenge-response over "
                         "the shared secret: there is no algorithm to choose")
    elif name in ("csums-alg", "verify-alg"):
        text = _one(stmt)
        if text.lower() in _DIGESTS:
            value = text.lower()
        else:
            instead = "resync sends whole blocks (no csums_alg)" if name == "csums-alg" \
                else "verify uses sha256"
            state.note(stmt, f"{name} {_show(text)} ({stmt.where()}): kembar supports "
                             f"{', '.join(_DIGESTS)}: not carried over, {instead}")
            value = None
    elif name in _ASB:
        text = _one(stmt)
        if text in _ASB[name]:
            value = text
        else:
            state.note(stmt, f"{name} {_show(text)} ({stmt.where()}): kembar supports "
                             f"{', '.join(_ASB[name])}: written as disconnect (a split brain "
                             "waits for an operator)")
            value = "disconnect"
    elif name == "on-io-error":
        text = _one(stmt)
        if text not in _IO_ERROR_POLICIES:
            raise stmt.fail(f"on-io-error: expected {', '.join(_IO_ERROR_POLICIES)}, got "
                            f"{_show(text)}")
        if text != "detach":
            state.note(stmt, f"on-io-error ({stmt.where()}): {text} is not carried over: a "
                             "kembar disk always detaches on an I/O error of its backing "
                             "store and serves through its peer (on_io_error = \"detach\"); "
                             "set on_io_error = \"failover\" to move the group to the peer "
                             "instead")
            return
        value = text
    elif name == "al-extents":
        value = _int(stmt, 7, 65534)
    elif name in ("rate", "resync-rate", "c-max-rate"):
        value = _rate(stmt)
    elif name == "c-plan-ahead":
        value = _int(stmt, 0, 300, " tenths of a second")
    else:
        unit, low, high, _, _ = _TIMERS[name]
        value = _int(stmt, low, high, " tenths of a second" if unit < 1 else " seconds")
    opts[name] = _Opt(value, stmt)


def _options(state: _State, section: _Stmt, opts: dict[str, _Opt]) -> None:
    if section.args:
        raise section.fail(f"{section.name}: unexpected {_show(' '.join(section.args))} "
                           "before '{'")
    for stmt in section.body or []:
        _option(state, stmt, opts)


def _explain_all(state: _State, section: _Stmt) -> None:
    """A section with nothing to carry over (global, startup, handlers): a note each."""
    for stmt in section.body or []:
        why = _EXPLAINED.get(stmt.name, "not carried over")
        what = stmt.name if stmt.body is None else f"section {stmt.shown()}"
        state.note(stmt, f"{section.name} {_show(what)} ({stmt.where()}): {why}")


def _handlers(state: _State, section: _Stmt, into: dict[str, _Stmt]) -> None:
    """A ``handlers`` section: the handlers kembar has an event for are kept (``into``),
    the others noted."""
    for stmt in section.body or []:
        mapped = _HANDLERS.get(stmt.name) if stmt.body is None else None
        if mapped is None:
            why = _EXPLAINED.get(stmt.name, "not carried over")
            what = stmt.name if stmt.body is None else f"section {stmt.shown()}"
            state.note(stmt, f"handlers {_show(what)} ({stmt.where()}): {why}")
            continue
        command = _one(stmt)
        if not command.strip():
            state.note(stmt, f"handlers {stmt.name} ({stmt.where()}) is empty: ignored")
            continue
        into[stmt.name] = stmt
        event, how = mapped
        state.note(stmt, f"handlers {stmt.name} ({stmt.where()}): carried over as "
                         f"notify.{event}, with /bin/sh -c as drbdadm runs it; {how}; kembar "
                         "sets DRBD_RESOURCE (and KEMBAR_* variables) but not DRBD's others "
                         "(DRBD_MINOR, DRBD_PEER_ADDRESS…)")


def _section_common(state: _State, stmt: _Stmt, opts: dict[str, _Opt],
                    handlers: dict[str, _Stmt]) -> None:
    """A statement inside ``common`` or ``resource`` that both may hold."""
    if stmt.body is not None and stmt.name == "handlers":
        if stmt.args:
            raise stmt.fail("handlers: expected 'handlers { … }'")
        _handlers(state, stmt, handlers)
    elif stmt.body is not None and stmt.name == "startup":
        _explain_all(state, stmt)
    elif stmt.body is not None and stmt.name in _OPTION_SECTIONS:
        _options(state, stmt, opts)
    elif stmt.body is None and stmt.name == "protocol":
        _option(state, stmt, opts)
    elif stmt.body is not None:
        state.note(stmt, f"section {stmt.shown()} ({stmt.where()}): not supported: ignored")
    else:
        why = _EXPLAINED.get(stmt.name)
        text = f"{stmt.name} ({stmt.where()}): {why}" if why else \
            f"{_show(stmt.name)} ({stmt.where()}): unknown to the importer: not carried over"
        state.note(stmt, text)


_HOST_FIELDS = ("device", "disk", "address", "meta-disk", "flexible-meta-disk")


def _volume(state: _State, stmt: _Stmt, fields: dict[str, _Stmt], seen: list[_Stmt]) -> None:
    if len(stmt.words) != 2 or not _digits(stmt.words[1].text, 6):
        raise stmt.fail("volume: expected 'volume NUMBER { … }'")
    for other in seen:
        if other.args != stmt.args:
            raise stmt.fail(f"a second volume (volume {other.args[0]} is on line "
                            f"{other.line}): a kembar disk has one volume; make one disk "
                            "per volume")
    seen.append(stmt)
    for inner in stmt.body or []:
        if inner.body is None and inner.name in ("device", "disk", "meta-disk",
                                                 "flexible-meta-disk"):
            fields[inner.name] = inner
        elif inner.body is not None and inner.name == "disk":
            _options(state, inner, {})  # notes only: per-volume disk options are rare
        else:
            state.note(inner, f"{_show(inner.name)} ({inner.where()}) in a volume: not "
                              "carried over")


def _resource(state: _State, stmt: _Stmt, nodes: list[str] | None) -> None:
    if len(stmt.words) != 2:
        raise stmt.fail("resource: expected 'resource NAME { … }'")
    written = stmt.words[1].text
    name = written.lower()
    if not _DISK_NAME_RE.fullmatch(name):
        raise stmt.fail(f"resource {_show(written)}: not usable as a kembar disk name (use "
                        "[a-z0-9][a-z0-9_-]{0,31})")
    if name in state.resources:
        raise stmt.fail(f"resource {_show(written)} is already defined on "
                        f"{state.resources[name].stmt.where()}")
    if name != written:
        state.note(stmt, f"resource {_show(written)} ({stmt.where()}): kembar's disk names "
                         f"are lower case: written as {name}")
    res = _Resource(name, written, stmt)
    volumes: list[_Stmt] = []
    for inner in stmt.body or []:
        if inner.name == "on" and inner.body is not None:
            res.hosts.append(_host(state, inner, nodes, res))
        elif inner.name in ("floating", "stacked-on-top-of", "connection",
                            "connection-mesh") and inner.body is not None:
            raise inner.fail(f"{inner.name} sections are not supported: a kembar disk joins "
                             "two nodes, each written as 'on HOST { … }'")
        elif inner.name == "volume" and inner.body is not None:
            _volume(state, inner, res.fields, volumes)
        elif inner.body is None and inner.name in _HOST_FIELDS and inner.name != "address":
            res.fields[inner.name] = inner
        else:
            _section_common(state, inner, res.opts, res.handlers)
    state.resources[name] = res


def _host(state: _State, stmt: _Stmt, nodes: list[str] | None, res: _Resource) -> _Host:
    if len(stmt.words) != 2:
        raise stmt.fail("on: expected 'on HOST { … }' with one host name")
    written = stmt.words[1].text
    host = written.lower()
    if not _NODE_NAME_RE.fullmatch(host):
        raise stmt.fail(f"on {_show(written)}: invalid node name (use "
                        "[A-Za-z0-9][A-Za-z0-9._-]{0,62})")
    if nodes and host not in nodes:
        raise stmt.fail(f"on {_show(written)}: not a node of ha.cf (nodes: "
                        f"{', '.join(nodes)})")
    if host != written:
        state.note(stmt, f"on {_show(written)} ({stmt.where()}): node names are read in lower "
                         f"case, as Heartbeat does: written as {host}")
    if any(h.name == host for h in res.hosts):
        raise stmt.fail(f"on {_show(written)}: a second section for the same host")
    out = _Host(host, stmt)
    volumes: list[_Stmt] = []
    for inner in stmt.body or []:
        if inner.body is None and inner.name in _HOST_FIELDS:
            out.fields[inner.name] = inner
        elif inner.name == "volume" and inner.body is not None:
            _volume(state, inner, out.fields, volumes)
        else:
            why = _EXPLAINED.get(inner.name, "not carried over")
            state.note(inner, f"{_show(inner.name)} ({inner.where()}) in 'on {host}': {why}")
    return out


def _read(state: _State, stmts: list[_Stmt], nodes: list[str] | None,
          include: IncludeReader | None, depth: int) -> None:
    for stmt in stmts:
        if stmt.name == "include" and stmt.body is None:
            pattern = _one(stmt)
            if include is None:
                state.note(stmt, f"include {_show(pattern)} ({stmt.where()}): not followed: "
                                 "convert the included files too (the CLI follows includes)")
                continue
            if depth >= _MAX_INCLUDE_DEPTH:
                raise stmt.fail(f"include {_show(pattern)}: includes nested more than "
                                f"{_MAX_INCLUDE_DEPTH} deep (a loop?)")
            files = include(pattern, stmt.source)
            if not files:
                state.note(stmt, f"include {_show(pattern)} ({stmt.where()}): no file matches")
            for path, text in files:
                state.files += 1
                if state.files > _MAX_FILES:
                    raise stmt.fail(f"include {_show(pattern)}: more than {_MAX_FILES} files "
                                    "in all")
                _read(state, _parse(text, path), nodes, include, depth + 1)
        elif stmt.name == "global" and stmt.body is not None:
            _explain_all(state, stmt)
        elif stmt.name == "common" and stmt.body is not None:
            if stmt.args:
                raise stmt.fail("common: expected 'common { … }'")
            for inner in stmt.body:
                _section_common(state, inner, state.common, state.handlers)
        elif stmt.name == "resource" and stmt.body is not None:
            _resource(state, stmt, nodes)
        elif stmt.name == "skip":
            state.note(stmt, f"skip ({stmt.where()}): skipped, as drbdadm does")
        else:
            what = _show(stmt.name) if stmt.body is None else f"section {stmt.shown()}"
            state.note(stmt, f"{what} ({stmt.where()}): unknown at the top level: ignored")


# ------------------------------------------------------------------ writing


def _device(stmt: _Stmt) -> list[str]:
    """The device paths a ``device`` statement names (``/dev/drbd0 [minor 0]``, ``minor 0``)."""
    args = stmt.args
    if len(args) == 1 and args[0].startswith("/"):
        return [args[0]]
    if len(args) == 2 and args[0] == "minor" and _digits(args[1], 6):
        return [f"/dev/drbd{int(args[1])}"]
    if (len(args) == 3 and args[0].startswith("/") and args[1] == "minor"
            and _digits(args[2], 6)):
        return [args[0], f"/dev/drbd{int(args[2])}"]
    raise stmt.fail("device: expected 'device /dev/drbdN;' or 'device minor N;'")


def _lines(stmts: list[_Stmt]) -> str:
    """``drbd.conf lines 12, 18`` (several files: each named)."""
    by_label: dict[str, list[int]] = {}
    for stmt in stmts:
        by_label.setdefault(stmt.label, []).append(stmt.line)
    return "; ".join(f"{label} line{'s' if len(lines) > 1 else ''} "
                     f"{', '.join(map(str, lines))}" for label, lines in by_label.items())


def _address(stmt: _Stmt) -> tuple[str, int]:
    args = stmt.args
    if len(args) == 2 and args[0] in ("ipv4", "ipv6", "ssocks", "sdp", "sci"):
        family, args = args[0], args[1:]
    else:
        family = "ipv4"
    if len(args) != 1:
        raise stmt.fail("address: expected 'address [ipv4|ipv6] IP:PORT;'")
    text = args[0]
    match = re.fullmatch(r"\[([^\]]*)\]:([0-9]{1,5})", text) or \
        re.fullmatch(r"([^:\[\]]*):([0-9]{1,5})", text)
    if match is None:
        raise stmt.fail(f"address: {_show(text)} is not IP:PORT (e.g. 192.168.0.101:7788, "
                        "or [fd00::1]:7788 with ipv6)")
    try:
        ip = ipaddress.ip_address(match.group(1))
    except ValueError:
        raise stmt.fail(f"address: {_show(match.group(1))} is not an IP address") from None
    port = int(match.group(2))
    if not 1 <= port <= 65535:
        raise stmt.fail(f"address: invalid port {port} (1 to 65535)")
    if family in ("ipv4", "ipv6") and (ip.version == 6) != (family == "ipv6"):
        raise stmt.fail(f"address: {ip} is not an {family} address")
    return str(ip), port


def _disk_rows(state: _State, res: _Resource, used_ports: dict[int, str],
               devices: dict[str, str]) -> list[str]:
    where = res.stmt.where()
    if len(res.hosts) != 2:
        raise res.stmt.fail(f"resource {_show(res.written)}: kembar needs exactly two 'on "
                            f"HOST' sections, found {len(res.hosts)}")
    opts = dict(state.common)
    opts.update(res.opts)

    def comment(opt: _Opt) -> str:
        return _origin(opt, res)

    rows: list[tuple[str, str | None]] = [(f"[disks.{_key(res.name)}]",
                                           f"{where}: resource {res.written}")]
    if "protocol" in opts:
        rows.append((f"protocol = {_toml_str(str(opts['protocol'].value))}",
                     comment(opts["protocol"])))
    else:
        rows.append(('protocol = "C"', "DRBD 8.4 default (8.3 requires protocol)"))

    sides: list[_Side] = []
    for host in res.hosts:
        fields = dict(res.fields)
        fields.update(host.fields)
        for need in ("device", "disk", "address"):
            if need not in fields:
                raise host.stmt.fail(f"on {host.name} (resource {res.written}): no '{need}' "
                                     "statement")
        for path in _device(fields["device"]):
            if devices.get(path, res.name) != res.name:
                raise fields["device"].fail(f"device {_show(path)} is already the device of "
                                            f"resource {devices[path]}")
            devices[path] = res.name
        disk = fields["disk"]
        if len(disk.args) != 1:
            raise disk.fail("disk: expected 'disk /dev/DEVICE;'")
        backing = disk.args[0]
        if backing == "none":
            raise disk.fail(f"disk none: {host.name} would be diskless; kembar needs a "
                            "backing store on both nodes")
        if not backing.startswith("/") or "\0" in backing:
            raise disk.fail(f"disk: {_show(backing)} is not an absolute path")
        ip, port = _address(fields["address"])
        family = fields["address"].args[0]
        if family in ("ssocks", "sdp", "sci"):
            state.note(fields["address"], f"address {family} ({fields['address'].where()}): "
                                          "kembar replicates over TCP: the address is used "
                                          "as a TCP one")
        meta = fields.get("meta-disk") or fields.get("flexible-meta-disk")
        if meta is not None and (not meta.args or len(meta.args) > 2):
            raise meta.fail(f"{meta.name}: expected '{meta.name} internal;' or "
                            f"'{meta.name} /dev/DEVICE [INDEX];'")
        if meta is not None and meta.name == "flexible-meta-disk":
            state.note(meta, f"flexible-meta-disk ({meta.where()}): read as meta-disk")
        sides.append(_Side(host, backing, ip, port, fields["address"],
                           meta.args[0] if meta is not None else "internal"))
    ports = {side.port for side in sides}
    if len(ports) != 1:
        detail = ", ".join(f"{s.host.name} {s.port} ({s.address_stmt.where()})" for s in sides)
        raise res.stmt.fail(f"resource {_show(res.written)}: the hosts listen on different "
                            f"ports ({detail}); a kembar disk has one port: make them equal")
    (port,) = ports
    if port in used_ports:
        raise res.stmt.fail(f"resource {_show(res.written)}: port {port} is already used by "
                            f"resource {used_ports[port]}; kembar needs one port per disk")
    used_ports[port] = res.name
    rows.append((f"port = {port}", _lines([s.address_stmt for s in sides]) + ": address"))

    if "shared-secret" in opts:
        secret = opts["shared-secret"]
        rows.append((f"secret = {_toml_str(str(secret.value))}",
                     f"{comment(secret)}: shared-secret"))
        if "cram-hmac-alg" not in opts:
            state.notes.append(f"resource {res.name}: shared-secret without cram-hmac-alg "
                               f"({secret.where()}): DRBD did not authenticate peers; kembar "
                               "always does, with this secret")
    else:
        rows.append((f"secret = {_toml_str(secrets.token_urlsafe(24))}",
                     "random: drbd.conf has no shared-secret"))
        state.notes.append(f"resource {res.name} ({where}) has no shared-secret: kembar always "
                           "authenticates its peer, so a random secret is written (the "
                           "cluster file must be the same on both nodes)")

    rate = _resync_rate(state, res, opts)
    if rate is not None:
        text, why = rate
        rows.append((f"resync_rate = {_toml_str(text)}", why))
    for name, key in (("csums-alg", "csums_alg"), ("verify-alg", "verify_alg")):
        opt = opts.get(name)
        if opt is not None and opt.value is not None:
            rows.append((f"{key} = {_toml_str(str(opt.value))}", comment(opt)))
    for name in _ASB:
        opt = opts.get(name)
        if opt is not None:
            rows.append((f"{name.replace('-', '_')} = {_toml_str(str(opt.value))}",
                         comment(opt)))
    if "on-io-error" in opts:
        rows.append(('on_io_error = "detach"', comment(opts["on-io-error"])))
    if "al-extents" in opts:
        rows.append((f"al_extents = {opts['al-extents'].value}", comment(opts["al-extents"])))
    seconds: dict[str, float] = {}
    for name, (unit, _, _, default, key) in _TIMERS.items():
        opt = opts.get(name)
        value = opt.value if opt is not None else default
        assert isinstance(value, int)
        seconds[name] = round(value * unit, 1)
        why = comment(opt) if opt is not None else "DRBD default"
        units = "tenths of a second" if unit < 1 else "seconds"
        rows.append((f"{key} = {_toml_str(format_duration(seconds[name]))}",
                     f"{why}: {name} {value} ({units})"))
    if seconds["ping-timeout"] >= seconds["timeout"]:
        opt = opts.get("ping-timeout") or opts.get("timeout")
        assert opt is not None
        raise opt.stmt.fail(f"ping-timeout ({format_duration(seconds['ping-timeout'])}) must be "
                            f"below timeout ({format_duration(seconds['timeout'])}), as kembar "
                            "requires")

    out = _rows(rows)
    for side in sides:
        out += ["", *_rows([(f"[disks.{_key(res.name)}.on.{_key(side.host.name)}]",
                             f"{side.host.stmt.where()}: on {side.host.stmt.words[1].text}"),
                            (f"backing = {_toml_str(side.backing)}", None),
                            (f"address = {_toml_str(side.ip)}", None)])]
    metas = {side.meta for side in sides}
    if metas == {"internal"}:
        state.notes.append(f"resource {res.name}: kembar keeps the metadata in a file, "
                           f"{DEFAULT_META_DIR}/{res.name}.md, not at the end of the backing "
                           f"device (DRBD's meta-disk internal, which is left unused): run 'kembar "
                           f"disk create-md {res.name}' on both nodes")
    else:
        shown = ", ".join(sorted(_show(m) for m in metas))
        state.notes.append(f"resource {res.name}: external meta-disk ({shown}) not carried "
                           f"over: kembar keeps the metadata in a file, "
                           f"{DEFAULT_META_DIR}/{res.name}.md; run 'kembar disk create-md "
                           f"{res.name}' on both nodes")
    return out


def _origin(opt: _Opt, res: _Resource) -> str:
    """Where an option's value comes from: ``drbd.conf line 12`` (``(common)`` if inherited)."""
    return opt.where() + ("" if res.opts.get(opt.stmt.name) is opt else " (common)")


def _resync_rate(state: _State, res: _Resource, opts: dict[str, _Opt]) -> tuple[str, str] | None:
    fixed = opts.get("rate") or opts.get("resync-rate")
    ceiling = opts.get("c-max-rate")
    plan = opts.get("c-plan-ahead")
    dynamic = plan is not None and plan.value != 0
    if ceiling is not None and (dynamic or fixed is None):
        value = ceiling.value
        assert isinstance(value, tuple)
        if plan is not None:
            state.note(plan.stmt, f"c-plan-ahead ({plan.where()}): {_DYNAMIC}; "
                                  "c-max-rate is used as the fixed rate")
        return str(value[1]), f"{_origin(ceiling, res)}: c-max-rate (the dynamic " \
                              "controller's ceiling)"
    if plan is not None:
        state.note(plan.stmt, f"c-plan-ahead ({plan.where()}): {_DYNAMIC}")
    if fixed is not None:
        value = fixed.value
        assert isinstance(value, tuple)
        return str(value[1]), f"{_origin(fixed, res)}: {fixed.stmt.name}"
    state.notes.append(f"resource {res.name}: no resync rate in drbd.conf (DRBD's default: "
                       "250K/s in 8.3, a dynamic controller up to 100M/s in 8.4): kembar "
                       "resyncs at full speed unless resync_rate is set")
    return None


def _notify_rows(state: _State) -> list[str]:
    """A ``[notify]`` table from the handlers, one hook per event for every disk."""
    rows: list[tuple[str, str | None]] = []
    for name, (event, _) in _HANDLERS.items():
        per_res = {res.name: res.handlers.get(name) or state.handlers.get(name)
                   for res in state.resources.values()}
        given = {r: stmt for r, stmt in per_res.items() if stmt is not None}
        if not given:
            continue
        common = state.handlers.get(name)
        chosen = common if common is not None and common in given.values() else \
            next(iter(given.values()))
        command = _one(chosen)
        others = sorted(f"{r} ({stmt.where()})" for r, stmt in given.items()
                        if _one(stmt) != command)
        if others:
            state.notes.append(f"handlers {name}: kembar runs one notify.{event} hook for "
                               f"every disk: the one of {chosen.where()} is written; "
                               f"not carried over: {', '.join(others)} (a hook can tell "
                               "the disks apart by $KEMBAR_DISK)")
        missing = sorted(r for r, stmt in per_res.items() if stmt is None)
        if missing:
            state.notes.append(f"handlers {name}: resource{'s' if len(missing) > 1 else ''} "
                               f"{', '.join(missing)} had none; notify.{event} runs for "
                               "every disk (a hook can test $KEMBAR_DISK)")
        rows.append((f"{event} = [\"/bin/sh\", \"-c\", {_toml_str(command)}]",
                     f"{chosen.where()}: {name}"))
    if not rows:
        return []
    state.notes.append("handlers: kembar runs a hook beside the disk's work and kills it "
                       "after notify.timeout (30 s by default), where DRBD waited for it")
    return ["", *_rows([("[notify]", "DRBD's handlers, run as drbdadm runs them"), *rows])]


def import_drbdconf(text: str, source: str = "drbd.conf", nodes: Sequence[str] | None = None,
                    include: IncludeReader | None = None
                    ) -> tuple[str, list[str], dict[str, str]]:
    """Convert the text of a ``drbd.conf``: ``[disks.*]`` TOML text, notes and the map of
    DRBD device paths to kembar disk names (``{"/dev/drbd0": "r0"}``); ConfigError
    (``source: line N: …``) if DRBD itself would refuse it or kembar cannot represent it.

    ``nodes`` (ha.cf's, lower case): every ``on`` host must be one of them. ``include``
    reads the files an ``include`` statement names; without it, includes are noted."""
    state = _State()
    known = [n.lower() for n in nodes] if nodes else None
    _read(state, _parse(text, source), known, include, 0)
    devices: dict[str, str] = {}
    used_ports: dict[int, str] = {}
    out: list[str] = []
    for res in state.resources.values():
        out += ["", *_disk_rows(state, res, used_ports, devices)]
    out += _notify_rows(state)
    if not state.resources:
        state.notes.append(f"{_label(source)}: no resources: no disks converted")
        return "", state.notes, devices
    label = _label(source)
    head = [f"# Disks, converted from {label} by 'kembar config import'. Comments name the",
            "# line of each value; 'DRBD default' marks what it left unset. The shared",
            "# secrets are here: keep this file mode 600 (or move them to secret_file)."]
    return "\n".join(head + out) + "\n", state.notes, devices
