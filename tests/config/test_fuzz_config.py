"""Fuzzing the cluster-file loader and the Heartbeat/DRBD importers (issue 8).

test_importer, test_haresources and test_drbdconf already feed each importer random text
and lines of its grammar.  These add: the TOML loader (``parse_cluster``/``load_cluster``)
with whole documents drawn from the schema's keys and hostile values (wrong types,
extremes, NaN, huge numbers, control characters, deep nesting), line-level mutations of
a complete valid cluster file, the importers' valid inputs mutated line by line and
token by token (Unicode line breaks, NULs, surrogates, huge numbers), and drbd.conf's
``include`` with a reader that returns anything, itself included.

Property: the result, or ``ConfigError`` with a one-line message that never contains a
secret; nothing else (no RecursionError, ValueError, KeyError ... escaping), no hang.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kembar.config.drbdconf import import_drbdconf
from kembar.config.haresources import import_haresources
from kembar.config.importer import ImportResult, import_authkeys, import_hacf
from kembar.config.model import ClusterConfig, load_cluster, parse_cluster
from kembar.errors import ConfigError
from tests.config.test_drbdconf import UBUNTU_DRBD
from tests.config.test_haresources import PAPER_HARESOURCES
from tests.config.test_importer import PAPER_HACF
from tests.fuzzing import fuzz, only

SECRET = "Zq9-SeCrEt-xK2"
NODES = ["node1", "node2"]
_DISKS, _, DEVICES = import_drbdconf(UBUNTU_DRBD.replace('"secret"', f'"{SECRET}"'),
                                     "drbd.conf", NODES)
_GROUPS, _ = import_haresources(PAPER_HARESOURCES, "haresources", NODES, DEVICES)
# A complete cluster file: cluster, nodes, membership, a disk, a group.
FULL = import_hacf(PAPER_HACF).toml + "\n" + _DISKS + "\n" + _GROUPS


def test_the_full_sample_is_valid() -> None:
    cfg = parse_cluster(FULL)
    assert cfg.membership is not None and cfg.disks and cfg.groups


def check_config(text: str) -> ClusterConfig | None:
    got = only(ConfigError, parse_cluster, text, "fuzz.toml")
    if isinstance(got, ConfigError):
        assert "\n" not in str(got) and SECRET not in str(got), str(got)
        return None
    assert isinstance(got, ClusterConfig)
    assert SECRET not in repr(got) and SECRET not in str(got)
    return got


# ------------------------------------------------------------------ TOML values

def toml(value: Any) -> str:
    """``value`` as a TOML value (everything inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):  # a TOML basic string (lone surrogates: invalid TOML)
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


_WORDS = ["web", "node1", "node2", "r0", "eth0", "lo", "bcast", "ucast", "mcast", "disk",
          "filesystem", "ip", "service", "script", "C", "A", "D", "/dev/sdb", "/srv/data",
          "dev/sdb", "198.18.0.1", "239.192.0.1", "::1", "10.0.0.1/24", "2s", "500ms", "0s",
          "-1s", "1e999s", "nan", "inf", "1h", "100M", "1G", "1T", "99999999999999999999P",
          "0x10", "crc32c", "md5", "sha1", "blake2b", "disconnect", "consensus",
          "", " ", "\0", "\n", "\t", "\x7f", "\u2028", "é", "x" * 200, "a.b", "A", "-x"]
_LEAF = st.one_of(
    st.sampled_from(_WORDS), st.text(max_size=12), st.booleans(),
    st.sampled_from([0, 1, -1, 7788, 65535, 65536, 2**31, 2**63 - 1, -(2**63)]),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
)
_VALUE = st.recursive(_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(_WORDS[:12] + ["name", "type", "on", "x"]), inner,
                    max_size=3)), max_leaves=8)

# The schema's keys, table by table (and some that are not).
_CLUSTER_KEYS = ["name", "auto_failback", "x"]
_NODE_KEYS = ["address", "x"]
_DISK_KEYS = ["protocol", "port", "secret", "secret_file", "resync_rate", "csums_alg",
              "verify_alg", "after_sb_0pri", "after_sb_1pri", "after_sb_2pri", "al_extents",
              "timeout", "ping_int", "ping_timeout", "connect_int", "device", "on",
              "on_io_error", "x"]
_HOST_KEYS = ["backing", "meta", "address", "x"]
_MEMBERSHIP_KEYS = ["keepalive", "deadtime", "warntime", "initdead", "deadping", "port",
                    "authkeys", "media", "ping", "realtime", "x"]
_MEDIUM_KEYS = ["type", "interface", "port", "group", "ttl", "peer", "x"]
_GROUP_KEYS = ["preferred", "auto_failback", "resources", "clone", "x", "monitor_interval"]
_RESOURCE_KEYS = ["type", "disk", "device", "directory", "fstype", "options", "address",
                  "interface", "name", "command", "path", "args", "timeout", "url",
                  "monitor_interval", "x"]


def _table(keys: list[str], values: st.SearchStrategy[Any] = _VALUE
           ) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))


_HOSTS = st.dictionaries(st.sampled_from(NODES + ["node3", ""]), _table(_HOST_KEYS), max_size=3)
_DOCS = st.fixed_dictionaries({
    "cluster": st.one_of(st.just({"name": "web"}), _table(_CLUSTER_KEYS), _VALUE),
    "nodes": st.one_of(st.just({"node1": {}, "node2": {"address": "198.18.0.2"}}),
                       st.dictionaries(st.sampled_from(NODES + ["Bad Name", "n.x", ""]),
                                       _table(_NODE_KEYS), max_size=3), _VALUE),
}, optional={
    "disks": st.dictionaries(st.sampled_from(["r0", "R0", "r-1", ""]), st.one_of(
        _table(_DISK_KEYS).flatmap(lambda d: _HOSTS.map(lambda h: {**d, "on": h})),
        _table(_DISK_KEYS).flatmap(lambda d: _HOSTS.map(  # the secret where it belongs
            lambda h: {**d, "secret": SECRET, "on": h})),
        _table(_DISK_KEYS)), max_size=2),
    "membership": st.one_of(
        _table(_MEMBERSHIP_KEYS).flatmap(lambda m: st.lists(_table(_MEDIUM_KEYS), max_size=2)
                                         .map(lambda media: {**m, "media": media})),
        _VALUE),
    "groups": st.dictionaries(st.sampled_from(["web", "db", "Web", ""]), _table(_GROUP_KEYS)
                              .flatmap(lambda g: st.lists(_table(_RESOURCE_KEYS), max_size=3)
                                       .map(lambda r: {**g, "resources": r})), max_size=2),
    "fencing": _VALUE,
    "x": _VALUE,
})


def document(doc: dict[str, Any]) -> str:
    return "\n".join(f"{json.dumps(k)} = {toml(v)}" for k, v in doc.items()) + "\n"


@fuzz(500)
@given(_DOCS)
def test_documents_from_the_schema(doc: dict[str, Any]) -> None:
    check_config(document(doc))


# ------------------------------------------------------------------ mutations of a valid file

_LINE_OPS = st.lists(st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 10**4)),
    st.tuples(st.just("duplicate"), st.integers(0, 10**4)),
    st.tuples(st.just("swap"), st.integers(0, 10**4), st.integers(0, 10**4)),
    st.tuples(st.just("value"), st.integers(0, 10**4), _VALUE.map(toml)),
    st.tuples(st.just("insert"), st.integers(0, 10**4), st.one_of(
        st.sampled_from(["[cluster]", "[nodes.node3]", "[[membership.media]]", "[disks.r0]",
                         "[groups.web]", "[[groups.web.resources]]", "[fencing]", "[x]", "[[",
                         "]]", "=", 'a = "', "a.b.c = 1", "nodes.node1.address = 1"]),
        st.tuples(st.sampled_from(sorted(set(_DISK_KEYS + _MEMBERSHIP_KEYS + _GROUP_KEYS
                                             + _RESOURCE_KEYS))), _VALUE.map(toml))
        .map(" = ".join))),
    st.tuples(st.just("chars"), st.integers(0, 10**6), st.text(max_size=3)),
), min_size=1, max_size=5)


def mutate_lines(text: str, ops: list[tuple]) -> str:
    lines = text.split("\n")
    for op in ops:
        if not lines:
            lines = [""]
        i = op[1] % len(lines)
        if op[0] == "delete":
            del lines[i]
        elif op[0] == "duplicate":
            lines.insert(i, lines[i])
        elif op[0] == "swap":
            j = op[2] % len(lines)
            lines[i], lines[j] = lines[j], lines[i]
        elif op[0] == "value":
            if "=" in lines[i]:
                lines[i] = lines[i].split("=", 1)[0] + "= " + op[2]
        elif op[0] == "insert":
            lines.insert(i, op[2])
        else:
            flat = "\n".join(lines)
            at = op[1] % (len(flat) + 1)
            lines = (flat[:at] + op[2] + flat[at:]).split("\n")
    return "\n".join(lines)


@fuzz(500)
@given(_LINE_OPS)
def test_mutations_of_a_valid_cluster_file(ops: list[tuple]) -> None:
    check_config(mutate_lines(FULL, ops))


_NESTING = st.integers(1, 3000)


@fuzz(60)
@given(_NESTING, st.sampled_from(["[", "{a=", "[{a=", "{a=["]), st.sampled_from(
    ["x = ", "cluster = ", "[cluster]\nname = ", "[[membership.media]]\ninterface = "]))
def test_deep_nesting(depth: int, opener: str, prefix: str) -> None:
    check_config(FULL + "\n" + prefix + opener * depth + "\n")
    check_config(prefix + opener * depth)


def test_regression_deeply_nested_toml_is_a_config_error() -> None:
    # tomllib recurses once per nesting level: RecursionError escaped parse_cluster.
    for text in ("a=" + "[" * 100_000, "a=" + "{b=" * 100_000,
                 "a=" + "[" * (sys.getrecursionlimit() + 10)):
        got = only(ConfigError, parse_cluster, text, "deep.toml")
        assert isinstance(got, ConfigError)
        assert str(got).startswith("deep.toml: invalid TOML: ") and "nested" in str(got)


@fuzz(100)
@given(st.one_of(st.binary(max_size=400), st.builds(
    lambda ops: mutate_lines(FULL, ops).encode("utf-8", "surrogatepass"), _LINE_OPS)))
def test_load_cluster_any_bytes(tmp_path_factory: Any, raw: bytes) -> None:
    path = Path(tmp_path_factory.mktemp("cfg")) / "cluster.toml"
    path.write_bytes(raw)
    got = only(ConfigError, load_cluster, path)
    if isinstance(got, ConfigError):
        assert "\n" not in str(got) and SECRET not in str(got)


# ------------------------------------------------------------------ the importers

# Characters str.splitlines() (and some parsers) treat as line breaks, and other traps.
_TRAPS = ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\0",
          "\ud800", "\ufeff", "\u00a0", "\t", "#", ",", ";", "{", "}", '"', "\\", "::", "/",
          "é", "İ", "ß"]


@st.composite
def token_mutations(draw: st.DrawFn, text: str, vocabulary: list[str]) -> str:
    """``text`` with a few tokens replaced, inserted or removed, and traps sprinkled."""
    tokens = text.replace("\n", " \n ").split(" ")
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, max(0, len(tokens) - 1)))
        choice = draw(st.integers(0, 5))
        pick = st.one_of(st.sampled_from(vocabulary), st.sampled_from(_TRAPS),
                         st.text(max_size=8),
                         st.sampled_from(["0", "-1", "99999999999999999999999", "1e999",
                                          "0.0000001", "65536", "1.5", ".", "..", "nan"]))
        if choice == 0 and tokens:
            del tokens[i]
        elif choice == 1:
            tokens.insert(i, draw(pick))
        elif tokens:
            tokens[i] = draw(pick)
    return " ".join(tokens).replace(" \n ", "\n")


_HACF_WORDS = ["keepalive", "warntime", "deadtime", "initdead", "deadping", "udpport",
               "auto_failback", "nice_failback", "bcast", "mcast", "ucast", "node", "ping",
               "ping_group", "respawn", "crm", "cluster", "eth0", "eth1", "lo", "on", "off",
               "legacy", "node1", "node2", "NODE1", "239.0.0.1", "10.0.0.2", "694", "1", "0",
               "2", "15", "90", "500ms", "2us", "1.5", "logfacility", "serial", "baud"]


def check_hacf(text: str, name: str | None = None, keys: str | None = None) -> None:
    got = only(ConfigError, import_hacf, text, "ha.cf", keys, name)
    if isinstance(got, ConfigError):
        assert "\n" not in str(got), str(got)
        return
    assert isinstance(got, ImportResult)
    parse_cluster(got.toml)
    assert all(note and "\n" not in note for note in got.notes)


@fuzz(500)
@given(token_mutations(PAPER_HACF + "mcast eth1 239.0.0.1 694 1 0\nucast eth0 10.0.0.2\n"
                       "ping 10.0.0.1\n", _HACF_WORDS),
       st.sampled_from([None, "web", "Bad", "", "x" * 40, "\0"]),
       st.sampled_from([None, "/etc/kembar/authkeys", "relative", "/a\0b", "/\u2028", "/é"]))
def test_hacf_token_mutations(text: str, name: str | None, keys: str | None) -> None:
    check_hacf(text, name, keys)


_HARES_WORDS = ["node1", "node2", "IPaddr", "IPaddr2", "IPv6addr", "drbddisk", "Filesystem",
                "apache2", "mysql", "MailTo", "Delay", "::", "r0", "r1", "/dev/drbd0",
                "/dev/drbd/by-res/r0/0", "/srv/data", "ext4", "10.0.0.1", "198.18.0.100/24",
                "fd00::1/64/eth0", "eth0", "\\", "\\\n", "1.2.3", "1.2.3.4/33"]


@fuzz(500)
@given(token_mutations(PAPER_HARESOURCES + "node2 IPaddr2::10.0.0.5/24/eth0/10.0.0.255 "
                       "drbddisk::r1 Filesystem::/dev/drbd/by-res/r1::/db::xfs::noatime "
                       "MailTo::root::subj \\\n  Delay::3 IPv6addr::fd00::1/64/eth0\n",
                       _HARES_WORDS),
       st.sampled_from([None, NODES, ["Node1", "NODE2"], []]),
       st.sampled_from([None, DEVICES, {"/dev/drbd0": "r0", "/dev/drbd1": "r1"}, {}]))
def test_haresources_token_mutations(text: str, nodes: list[str] | None,
                                     devices: dict[str, str] | None) -> None:
    got = only(ConfigError, import_haresources, text, "haresources", nodes, devices)
    if isinstance(got, ConfigError):
        assert "\n" not in str(got), str(got)
    else:
        assert not isinstance(got, BaseException)
        assert all(note and "\n" not in note for note in got[1])


_DRBD_WORDS = ["resource", "r0", "r1", "on", "node1", "node2", "device", "disk", "address",
               "meta-disk", "internal", "protocol", "C", "net", "syncer", "rate", "100M",
               "shared-secret", "cram-hmac-alg", "sha1", "volume", "0", "minor", "include",
               "common", "global", "startup", "handlers", "options", "floating", "stacked-on-top-of",
               "192.168.0.101:7788", "ipv6", "[fd00::1]:7788", "/dev/drbd0", "/dev/sdb",
               "{", "}", ";", '"', "#", "timeout", "60", "ping-timeout", "after-sb-0pri",
               "disconnect", "al-extents", "999999999999", "0K", "4G", "5G"]


def check_drbd(text: str, nodes: list[str] | None, include: Any = None) -> None:
    got = only(ConfigError, import_drbdconf, text, "drbd.conf", nodes, include)
    # The secret must not be echoed while it is one (a mutation may move it elsewhere).
    secret = SECRET if f'shared-secret "{SECRET}";' in text else "\0no secret\0"
    if isinstance(got, ConfigError):
        assert "\n" not in str(got) and secret not in str(got), str(got)
        return
    assert not isinstance(got, BaseException)
    toml, notes, devices = got
    assert all(note and "\n" not in note and secret not in note for note in notes)
    if toml and nodes is not None:  # without nodes, any "on" host is taken
        cfg = parse_cluster('[cluster]\nname = "t"\n[nodes.node1]\n[nodes.node2]\n' + toml)
        assert set(devices.values()) == set(cfg.disks)


@fuzz(500)
@given(token_mutations(UBUNTU_DRBD.replace('"secret"', f'"{SECRET}"'), _DRBD_WORDS),
       st.sampled_from([None, NODES, ["NODE1", "node2"]]))
def test_drbdconf_token_mutations(text: str, nodes: list[str] | None) -> None:
    check_drbd(text, nodes)


@fuzz(150)
@given(st.lists(st.one_of(st.just(UBUNTU_DRBD), st.just('include "*.res";\n'),
                          st.sampled_from(['include "x";', "include;", 'include "";',
                                           "common { include \"c\"; }", "resource r9 {"]),
                          st.text(max_size=40)), max_size=3),
       st.integers(0, 3))
def test_drbdconf_include_reader_returning_anything(files: list[str], fanout: int) -> None:
    """The reader returns any texts, the including file among them (include loops)."""
    text = 'include "drbd.d/*.res";\n' + (files[0] if files else "")

    def reader(pattern: str, including: str) -> list[tuple[str, str]]:
        out = [(f"/etc/drbd.d/{i}.res", t) for i, t in enumerate(files)]
        return out + [("/etc/drbd.conf", text)] * fanout

    check_drbd(text, NODES, reader)


@fuzz(150)
@given(st.lists(st.lists(st.sampled_from(["auth", "1", "2", "16", "sha1", "crc", "md5",
                                          "sha256", "secret", "#", " x "] + _TRAPS),
                         max_size=4).map(" ".join), max_size=5).map("\n".join))
def test_import_authkeys(text: str) -> None:
    got = only(ConfigError, import_authkeys, text, "authkeys")
    if isinstance(got, ConfigError):
        assert "\n" not in str(got) or "openssl" in str(got), str(got)
