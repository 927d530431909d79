"""``kembar config import``: Heartbeat's ha.cf and authkeys as a kembar cluster file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kembar.config import parse_cluster
from kembar.config.importer import import_authkeys, import_hacf
from kembar.config.model import ClusterConfig
from kembar.errors import ConfigError

# The paper's ha.cf, verbatim (/work/shared/paper/SUMMARY.md).
PAPER_HACF = """\
keepalive 2
warntime 5
deadtime 15
initdead 90
udpport 694
auto_failback on
bcast eth0
node node1 node2
"""

BASE = "bcast eth0\nnode node1 node2\n"


def _cfg(text: str, **kwargs: str) -> ClusterConfig:
    return parse_cluster(import_hacf(text, **kwargs).toml)


def _notes(text: str) -> list[str]:
    return import_hacf(text).notes


# ------------------------------------------------------------------ the paper


def test_paper_hacf() -> None:
    result = import_hacf(PAPER_HACF)
    cfg = parse_cluster(result.toml)
    m = cfg.membership
    assert m is not None
    assert (m.keepalive, m.warn, m.deadtime, m.init_dead, m.dead_ping) == (2, 5, 15, 90, 15)
    assert m.port == 694
    assert [(x.type, x.interface, x.port) for x in m.media] == [("bcast", "eth0", None)]
    assert list(cfg.nodes) == ["node1", "node2"]
    assert all(node.address is None for node in cfg.nodes.values())
    assert cfg.cluster.auto_failback is True
    assert cfg.cluster.name == "ha"
    assert m.authkeys == "/etc/kembar/authkeys"
    # Readable: each value names its line; what ha.cf left unset is marked.
    assert 'keepalive = "2s"' in result.toml and "# ha.cf line 1" in result.toml
    assert 'deadping = "15s"' in result.toml and "Heartbeat default" in result.toml
    assert "[[membership.media]]   # ha.cf line 7: bcast eth0" in result.toml
    assert any("address" in note for note in result.notes)
    assert any("cluster is named 'ha'" in note for note in result.notes)


def test_source_path_labels_comments() -> None:
    toml = import_hacf(PAPER_HACF, source="/etc/ha.d/ha.cf").toml
    assert "# ha.cf line 3" in toml


# ------------------------------------------------------------------ values


@pytest.mark.parametrize("written, seconds, toml", [
    ("2", 2.0, "2s"), ("1.5", 1.5, "1500ms"), ("2000ms", 2.0, "2s"), ("500ms", 0.5, "500ms"),
    ("1000000us", 1.0, "1s"), ("0.001", 0.001, "1ms"), ("3MS", 3 / 1000, "3ms"),
])
def test_time_values(written: str, seconds: float, toml: str) -> None:
    result = import_hacf(f"keepalive {written}\ndeadtime 60\n{BASE}")
    m = parse_cluster(result.toml).membership
    assert m is not None and m.keepalive == pytest.approx(seconds)
    assert f'keepalive = "{toml}"' in result.toml


@pytest.mark.parametrize("bad", ["2s", "abc", "-1", "1.2.3", "2 ms", "1e3", "9" * 30])
def test_invalid_time_value(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"^ha\.cf: line 3: deadtime: "):
        import_hacf(f"{BASE}deadtime {bad}\n")


def test_defaults_written_when_absent() -> None:
    result = import_hacf(BASE)
    m = parse_cluster(result.toml).membership
    assert m is not None
    assert (m.keepalive, m.warntime, m.deadtime, m.initdead, m.deadping, m.port) == \
        (1, 15, 30, 30, 30, 694)
    for key in ("keepalive", "warntime", "deadtime", "initdead", "deadping", "port"):
        line = next(x for x in result.toml.splitlines() if x.startswith(f"{key} = "))
        assert "# Heartbeat default" in line, line
    assert any(note.startswith("auto_failback not set") for note in result.notes)
    assert parse_cluster(result.toml).cluster.auto_failback is True


@pytest.mark.parametrize("deadtime, initdead", [(30, 30), (11, 11), (10, 20), (6, 12), (5, 12)])
def test_initdead_default_rule(deadtime: int, initdead: int) -> None:
    m = _cfg(f"deadtime {deadtime}\n{BASE}").membership
    assert m is not None and m.initdead == initdead


def test_warntime_outside_keepalive_deadtime_is_replaced() -> None:
    result = import_hacf(f"keepalive 2\ndeadtime 10\nwarntime 12\n{BASE}")
    m = parse_cluster(result.toml).membership
    assert m is not None and m.warntime == 5
    assert any(note.startswith("warntime 12s (line 3)") for note in result.notes)


@pytest.mark.parametrize("deadtime, warntime", [("2001ms", "1000.5ms"),
                                                 ("86399999ms", "43199999.5ms")])
def test_odd_deadtime_keeps_warntime_above_keepalive(deadtime: str, warntime: str) -> None:
    result = import_hacf(f"keepalive 1\ndeadtime {deadtime}\n{BASE}")
    m = parse_cluster(result.toml).membership
    assert m is not None and m.keepalive < m.warn < m.deadtime
    assert f'warntime = "{warntime}"' in result.toml


# ------------------------------------------------------------------ media and ports


def test_udpport_applies_to_lines_after_it() -> None:
    result = import_hacf("bcast eth0\nudpport 700\nucast eth1 10.0.0.2\nnode a b\n")
    m = parse_cluster(result.toml).membership
    assert m is not None and m.port == 694
    assert [(x.type, x.port) for x in m.media] == [("bcast", None), ("ucast", 700)]


def test_first_udpport_in_effect_is_the_membership_port() -> None:
    m = _cfg("udpport 700\nbcast eth0\nudpport 701\nucast eth0 10.0.0.2\nnode a\n").membership
    assert m is not None and m.port == 700
    assert [x.port for x in m.media] == [None, 701]


def test_udpport_after_every_medium_has_no_effect() -> None:
    result = import_hacf(f"{BASE}udpport 700\n")
    m = parse_cluster(result.toml).membership
    assert m is not None and m.port == 694 and m.media[0].port is None
    assert any("udpport (line 3)" in n and "no effect" in n for n in result.notes)


def test_bcast_several_interfaces_and_udp_alias() -> None:
    result = import_hacf("bcast eth0 eth1, eth2\nudp bond0\nnode a\n")
    m = parse_cluster(result.toml).membership
    assert m is not None
    assert [x.interface for x in m.media] == ["eth0", "eth1", "eth2", "bond0"]
    assert any(note.startswith("udp (line 2)") for note in result.notes)


def test_mcast_and_ucast() -> None:
    text = "mcast eth1 239.192.0.1 6940 2 0\nucast eth0 10.0.0.1\nucast eth0 10.0.0.2\nnode a b\n"
    m = _cfg(text).membership
    assert m is not None
    assert [(x.type, x.group, x.port, x.ttl, x.peer) for x in m.media] == [
        ("mcast", "239.192.0.1", 6940, 2, None),
        ("ucast", None, None, 1, "10.0.0.1"),
        ("ucast", None, None, 1, "10.0.0.2"),
    ]


def test_mcast_loop_1_is_noted() -> None:
    result = import_hacf("mcast eth1 239.192.0.1 694 1 1\nnode a\n")
    assert any("loop 1" in note for note in result.notes)


@pytest.mark.parametrize("line, problem", [
    ("mcast eth0 10.0.0.1 694 1 0", "multicast"),
    ("mcast eth0 239.0.0.1 694 1", "expected 'mcast DEV GROUP PORT TTL LOOP'"),
    ("mcast eth0 239.0.0.1 694 0 0", "ttl"),
    ("mcast eth0 239.0.0.1 694 1 2", "loop"),
    ("mcast eth0 239.0.0.1 70000 1 0", "port"),
    ("ucast eth0 node2", "not an IP address"),
    ("ucast eth0", "expected 'ucast DEV PEER-ADDRESS'"),
    ("bcast eth0/1", "interface"),
    ("udpport 0", "invalid port"),
    ("udpport ha-cluster", "invalid port"),
    ("ping router", "not an IP address"),
    ("node bad_name!", "invalid node name"),
    ("auto_failback maybe", "expected on or off"),
])
def test_bad_lines(line: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        import_hacf(f"{BASE}{line}\n")
    assert str(info.value).startswith("ha.cf: line 3: ")
    assert problem in str(info.value)


# ------------------------------------------------------------------ Heartbeat's checks


def test_deadtime_must_exceed_twice_keepalive() -> None:
    with pytest.raises(ConfigError, match=r"^ha\.cf: line 2: deadtime \(4s\) must exceed twice "
                                          r"the keepalive \(2s\)"):
        import_hacf(f"keepalive 2\ndeadtime 4\n{BASE}")


def test_initdead_below_deadtime() -> None:
    with pytest.raises(ConfigError, match=r"^ha\.cf: line 2: initdead \(10s\) is smaller"):
        import_hacf(f"deadtime 15\ninitdead 10\n{BASE}")


def test_deadping_too_small() -> None:
    with pytest.raises(ConfigError, match=r"^ha\.cf: line 2: deadping"):
        import_hacf(f"keepalive 2\ndeadping 4\n{BASE}")


def test_no_media() -> None:
    with pytest.raises(ConfigError, match=r"^ha\.cf: no heartbeat media"):
        import_hacf("node a b\nserial /dev/ttyS0\n", source="ha.cf")


def test_no_node() -> None:
    with pytest.raises(ConfigError, match=r"^/etc/ha\.d/ha\.cf: no nodes"):
        import_hacf("bcast eth0\n", source="/etc/ha.d/ha.cf")


def test_zero_keepalive() -> None:
    with pytest.raises(ConfigError, match="keepalive must be above 0"):
        import_hacf(f"keepalive 0\n{BASE}")


# ------------------------------------------------------------------ other directives


def test_comments_blank_lines_and_case() -> None:
    text = "# a comment\n\n   KeepAlive 3 # three\nDEADTIME 20#x\n\tBcast eth0\nNODE Alpha\n"
    result = import_hacf(text)
    cfg = parse_cluster(result.toml)
    assert cfg.membership is not None and cfg.membership.keepalive == 3
    assert cfg.membership.deadtime == 20
    assert list(cfg.nodes) == ["alpha"]
    assert any("lower case" in note for note in result.notes)


def test_repeated_nodes_and_values() -> None:
    result = import_hacf("node a b\nnode b c\nbcast eth0\nkeepalive 1 2\n")
    cfg = parse_cluster(result.toml)
    assert list(cfg.nodes) == ["a", "b", "c"]
    assert cfg.membership is not None and cfg.membership.keepalive == 2
    assert any("node b (line 2)" in note for note in result.notes)


def test_ping_nodes() -> None:
    m = _cfg(f"{BASE}ping 10.0.0.254 10.0.1.254\nping6 2001:db8::1\n").membership
    assert m is not None and m.ping == ["10.0.0.254", "10.0.1.254", "2001:db8::1"]


@pytest.mark.parametrize("text, expected", [
    ("auto_failback on", True), ("auto_failback off", False), ("auto_failback yes", True),
    ("auto_failback legacy", True), ("nice_failback on", False), ("nice_failback off", True),
    ("nice_failback on\nauto_failback on", True),
])
def test_failback(text: str, expected: bool) -> None:
    result = import_hacf(f"{BASE}{text}\n")
    assert parse_cluster(result.toml).cluster.auto_failback is expected
    if "nice_failback" in text:
        assert any("nice_failback (line 3) is obsolete" in note for note in result.notes)


def test_cluster_name() -> None:
    assert _cfg(f"{BASE}cluster web\n").cluster.name == "web"
    assert _cfg(f"{BASE}cluster web\n", cluster_name="shop").cluster.name == "shop"
    result = import_hacf(f"{BASE}cluster my.cluster\n")
    assert parse_cluster(result.toml).cluster.name == "ha"
    assert any("my.cluster" in note and "not a valid" in note for note in result.notes)
    with pytest.raises(ConfigError, match="invalid cluster name"):
        import_hacf(BASE, cluster_name="Bad Name")


def test_authkeys_path() -> None:
    m = _cfg(BASE, authkeys_path="/srv/keys").membership
    assert m is not None and m.authkeys == "/srv/keys"
    with pytest.raises(ConfigError, match="absolute"):
        import_hacf(BASE, authkeys_path="keys")


def test_crm_off_is_silent_and_on_is_noted() -> None:
    quiet = set(_notes(BASE))
    assert set(_notes(f"{BASE}crm off\n")) == quiet
    assert any(n.startswith("crm (line 3) is not supported") for n in _notes(f"{BASE}crm on\n"))
    assert any(n.startswith("pacemaker (line 3)") for n in _notes(f"{BASE}pacemaker respawn\n"))
    assert set(_notes(f"{BASE}autojoin none\n")) == quiet
    assert any("autojoin any" in n for n in _notes(f"{BASE}autojoin any\n"))


@pytest.mark.parametrize("line", [
    "mcast6 eth0 ff05::1 694 1 0", "ucast6 eth0 2001:db8::2", "serial /dev/ttyS0", "baud 19200",
    "ping_group routers 10.0.0.1 10.0.0.2", "hbaping fc0", "respawn hacluster /usr/lib/heartbeat/ipfail",
    "respawn root /usr/lib/heartbeat/dopd", "respawn root /usr/local/bin/thing --x",
    "crm on", "pacemaker on", "debugfile /var/log/ha-debug", "use_logd yes", "debug 0",
    "logfacility none", "realtime on", "rtprio 5",
    "coredumps true", "uuidfrom nodename", "hbgenmethod time", "msgfmt netstring",
    "compression bz2", "compression_threshold 2", "traditional_compression off",
    "memreserve 6500", "conn_logd_time 60", "max_rexmit_delay 250", "hopfudge 1",
    "apiauth ipfail uid=hacluster", "autojoin other", "stonith baytech /etc/ha.d/conf/stonith.baytech",
    "stonith_host * baytech 10.0.0.3 mylogin mysecretpassword", "watchdog /dev/watchdog",
    "env FOO=bar", "quorum_server q.example.com", "badpack_warn off",
    "register_to_apphbd on", "crm_daemon_dir /usr/lib/pacemaker",
])
def test_every_unsupported_directive_is_noted(line: str) -> None:
    name = line.split()[0]
    notes = _notes(f"{BASE}{line}\n")
    mentions = [n for n in notes if n.startswith(name) and "(line 3)" in n
                or n.startswith(f"{name} ") and "line 3" in n]
    assert mentions, notes
    if name == "respawn" and "ipfail" in line:
        assert "ping nodes" in mentions[0]
    if name == "ping_group":
        assert "ping 10.0.0.1 10.0.0.2" in mentions[0]


# ------------------------------------------------------------------ logging


def test_logfile_logfacility_and_debug_become_the_logging_table() -> None:
    text = (f"{BASE}logfacility local0\nlogfile /var/log/ha-log\ndebugfile /var/log/ha-debug\n"
            "debug 1\n")
    cfg = _cfg(text).logging
    assert cfg is not None
    assert (cfg.targets, cfg.file, cfg.syslog_facility, cfg.level) == \
        (["file", "syslog"], "/var/log/ha-log", "local0", "debug")
    toml = import_hacf(text).toml
    assert 'targets = ["file", "syslog"]   # ha.cf line 4: logfile; ha.cf line 3: ' \
           "logfacility local0" in toml
    assert any(n.startswith("debugfile (line 5): kembar writes one log file (logfile, line 4)")
               for n in _notes(text))


def test_a_debugfile_alone_is_the_file() -> None:
    cfg = _cfg(f"{BASE}debugfile /var/log/ha-debug\n").logging
    assert cfg is not None and (cfg.targets, cfg.file) == (["file"], "/var/log/ha-debug")


def test_use_logd_means_syslog_and_ignores_the_rest() -> None:
    text = f"{BASE}use_logd yes\nlogfacility local3\nlogfile /var/log/ha-log\n"
    cfg = _cfg(text).logging
    assert cfg is not None
    assert (cfg.targets, cfg.syslog_facility, cfg.file) == (["syslog"], "daemon", None)
    notes = _notes(text)
    assert "logfile (line 5): ignored with use_logd on, as Heartbeat ignores it" in notes
    assert "logfacility (line 4): ignored with use_logd on, as Heartbeat ignores it" in notes


def test_no_logging_directive_no_table() -> None:
    assert _cfg(BASE).logging is None
    assert _cfg(f"{BASE}logfacility none\ndebug 0\nuse_logd off\n").logging is None


def test_debug_alone_keeps_stderr() -> None:
    cfg = _cfg(f"{BASE}debug 3\n").logging
    assert cfg is not None and (cfg.targets, cfg.level) == (["stderr"], "debug")


@pytest.mark.parametrize("line, error", [
    ("logfacility local9", "ha.cf: line 3: logfacility: unknown syslog facility local9"),
    ("logfile ha-log", "ha.cf: line 3: logfile: ha-log is not an absolute path"),
    ("debug lots", "ha.cf: line 3: debug: expected a level from 0 to 255, got lots"),
    ("use_logd maybe", "ha.cf: line 3: use_logd: expected on or off, got maybe"),
])
def test_bad_logging_directives(line: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        import_hacf(f"{BASE}{line}\n")
    assert str(info.value).startswith(error)


def test_unknown_directive() -> None:
    notes = _notes(f"{BASE}frobnicate 12\n")
    assert "unknown directive frobnicate (line 3): ignored" in notes


# ------------------------------------------------------------------ authkeys


def test_authkeys_round_trip() -> None:
    text, notes = import_authkeys("auth 2\n1 sha1 Old Secret\n2 sha256 New-one\n", "authkeys")
    assert "auth 2\n1 sha1 Old Secret\n2 sha256 New-one\n" in text
    assert notes == []
    _, notes = import_authkeys("auth 1\n1 md5 Hello!\n", "authkeys")
    assert any("uses md5" in note for note in notes)
    assert all("Hello!" not in note for note in notes)


def test_authkeys_crc_is_refused_clearly() -> None:
    with pytest.raises(ConfigError) as info:
        import_authkeys("auth 3\n3 crc\n", "/etc/ha.d/authkeys")
    message = str(info.value)
    assert message.startswith("/etc/ha.d/authkeys: line 2: key 3 uses crc, which adds no security")
    assert "sha256, sha1 or md5" in message and "generate a key with" in message


def test_authkeys_other_errors_pass_through() -> None:
    with pytest.raises(ConfigError, match=r"^authkeys: no keys"):
        import_authkeys("# empty\n", "authkeys")


# ------------------------------------------------------------------ never another exception

_TIME = st.one_of(
    st.integers(1, 120).map(str),
    st.integers(1, 120_000).map(lambda ms: f"{ms}ms"),
    st.integers(1, 90_000_000).map(lambda ms: f"{ms}ms"),
    st.decimals(0, 100, places=2, allow_nan=False).map(str),
)
_NODE = st.sampled_from(["node1", "node2", "Node3", "n.example.com"])
# Directives with values Heartbeat accepts (their combination may still be refused).
_VALID = st.one_of(
    st.tuples(st.sampled_from(["keepalive", "deadtime", "warntime", "initdead", "deadping"]),
              _TIME).map(" ".join),
    st.lists(st.sampled_from(["eth0", "eth1", "bond0", "lo"]), min_size=1, max_size=3)
    .map(lambda devs: " ".join(["bcast", *devs])),
    st.tuples(st.sampled_from(["eth0", "eth1"]), st.ip_addresses().map(str))
    .map(lambda t: f"ucast {t[0]} {t[1]}"),
    st.tuples(st.integers(224, 239), st.integers(1, 65535), st.integers(1, 255),
              st.integers(0, 1))
    .map(lambda t: f"mcast eth0 {t[0]}.1.2.3 {t[1]} {t[2]} {t[3]}"),
    st.integers(1, 65535).map(lambda p: f"udpport {p}"),
    st.lists(_NODE, min_size=1, max_size=3).map(lambda ns: " ".join(["node", *ns])),
    st.lists(st.ip_addresses().map(str), max_size=2).map(lambda a: " ".join(["ping", *a])),
    st.sampled_from(["on", "off", "legacy"]).map(lambda v: f"auto_failback {v}"),
    st.sampled_from(["on", "off"]).map(lambda v: f"nice_failback {v}"),
    st.sampled_from(["web", "Linux-HA", "no.good"]).map(lambda v: f"cluster {v}"),
    st.sampled_from([
        "crm on", "crm off", "respawn hacluster /usr/lib/heartbeat/ipfail", "serial /dev/ttyS0",
        "ping_group g 10.0.0.1", "logfacility local0", "stonith_host * x", "frob 1",
        "mcast6 eth0 ff02::1 694 1 0", "# comment", "", "autojoin any", "udp eth1",
        "keepalive", "node", "ping6 2001:db8::1", "apiauth x uid=y",
    ]),
)
# Anything at all, Heartbeat's errors included.
_ANY = st.one_of(
    st.tuples(st.sampled_from(["keepalive", "deadtime", "initdead", "udpport", "mcast", "ucast",
                               "bcast", "node", "ping", "auto_failback", "cluster"]),
              st.text(max_size=20)).map(" ".join),
    st.text(max_size=30),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_VALID, _VALID, _VALID, _VALID, _ANY), max_size=12),
       st.booleans(), st.sampled_from([None, "web", "Bad"]))
def test_random_directives_import_or_config_error(lines: list[str], base: bool,
                                                  name: str | None) -> None:
    text = "\n".join(lines) + "\n" + (BASE if base else "")
    try:
        result = import_hacf(text, cluster_name=name)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    parse_cluster(result.toml)
    assert all(note and "\n" not in note for note in result.notes)


# ------------------------------------------------------------------ the CLI


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KEMBAR_CONFIG"}
    return subprocess.run([sys.executable, "-m", "kembar", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, env=env, check=False)


@pytest.fixture()
def heartbeat(tmp_path: Path) -> Path:
    (tmp_path / "ha.cf").write_text(PAPER_HACF + "respawn hacluster /usr/lib/heartbeat/ipfail\n")
    keys = tmp_path / "authkeys"
    keys.write_text("auth 1\n1 sha1 SomeSharedSecret\n")
    keys.chmod(0o600)
    return tmp_path


def _import(tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return _run("config", "import", "--hacf", "ha.cf", "--authkeys", "authkeys",
                "--authkeys-output", str(tmp / "kembar-keys"), *extra, cwd=tmp)


def test_cli_import_writes_both_files(heartbeat: Path) -> None:
    result = _import(heartbeat, "-o", "cluster.toml", "--name", "web")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: cluster 'web', 2 nodes, 0 disks; wrote cluster.toml")
    notes = result.stderr.splitlines()
    assert notes and all(line.startswith("kembar: note: ") for line in notes)
    assert any("ipfail" in line for line in notes)
    assert "SomeSharedSecret" not in result.stderr + result.stdout
    keys = heartbeat / "kembar-keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert "1 sha1 SomeSharedSecret" in keys.read_text()
    cfg = parse_cluster((heartbeat / "cluster.toml").read_text())
    assert cfg.membership is not None and cfg.membership.authkeys == str(keys)
    check = _run("config", "check", "-c", "cluster.toml", cwd=heartbeat)
    assert check.returncode == 0, check.stderr
    assert check.stdout == "ok: cluster 'web', 2 nodes, 0 disks\n"
    assert not [p for p in heartbeat.iterdir() if p.name.endswith(".tmp")]


def test_cli_import_to_stdout(heartbeat: Path) -> None:
    result = _import(heartbeat)
    assert result.returncode == 0, result.stderr
    assert parse_cluster(result.stdout).cluster.name == "ha"
    assert result.stderr.splitlines()[-1].startswith("kembar: ok: cluster 'ha'")


def test_cli_refuses_to_overwrite(heartbeat: Path) -> None:
    (heartbeat / "cluster.toml").write_text("old")
    result = _import(heartbeat, "-o", "cluster.toml")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "kembar: error: cluster.toml exists: not overwritten (use --force to replace it)"]
    assert (heartbeat / "cluster.toml").read_text() == "old"
    assert not (heartbeat / "kembar-keys").exists()
    forced = _import(heartbeat, "-o", "cluster.toml", "--force")
    assert forced.returncode == 0, forced.stderr
    parse_cluster((heartbeat / "cluster.toml").read_text())


def test_cli_refuses_to_overwrite_the_key_file(heartbeat: Path) -> None:
    (heartbeat / "kembar-keys").write_text("old")
    result = _import(heartbeat, "-o", "cluster.toml")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"kembar: error: {heartbeat / 'kembar-keys'} exists: "
                                          "not overwritten (use --force to replace it)"]
    assert not (heartbeat / "cluster.toml").exists()


@pytest.mark.skipif(os.path.lexists("/etc/ha.d/authkeys"), reason="this host has an authkeys")
def test_cli_without_authkeys_notes_it(heartbeat: Path) -> None:
    result = _run("config", "import", "--hacf", "ha.cf", "-o", "cluster.toml",
                  "--authkeys-output", str(heartbeat / "kembar-keys"), cwd=heartbeat)
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("kembar: note: no /etc/ha.d/authkeys")
               for line in result.stderr.splitlines())
    assert not (heartbeat / "kembar-keys").exists()
    assert result.stdout.endswith("; wrote cluster.toml\n")


def test_cli_refuses_readable_authkeys(heartbeat: Path) -> None:
    (heartbeat / "authkeys").chmod(0o644)
    result = _import(heartbeat, "-o", "cluster.toml")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kembar: error: authkeys: mode 0644")
    assert "chmod 600" in lines[0]
    assert sorted(p.name for p in heartbeat.iterdir()) == ["authkeys", "ha.cf"]


def test_cli_bad_time_value(heartbeat: Path) -> None:
    (heartbeat / "ha.cf").write_text(PAPER_HACF.replace("deadtime 15", "deadtime 15s"))
    result = _import(heartbeat, "-o", "cluster.toml")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "kembar: error: ha.cf: line 3: deadtime: invalid time value 15s (use e.g. 2, 1.5, 2000ms)"]
    assert sorted(p.name for p in heartbeat.iterdir()) == ["authkeys", "ha.cf"]


def test_cli_crc_authkeys_and_missing_files(heartbeat: Path) -> None:
    (heartbeat / "authkeys").write_text("auth 1\n1 crc\n")
    result = _import(heartbeat, "-o", "cluster.toml")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "crc, which adds no security" in result.stderr
    missing = _run("config", "import", "--hacf", "nope.cf", cwd=heartbeat)
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        "kembar: error: nope.cf: cannot read: No such file or directory"]
    assert sorted(p.name for p in heartbeat.iterdir()) == ["authkeys", "ha.cf"]
