"""The cluster file: a full example, defaults, and one-line errors that name the key."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from kembar.config import (
    DEFAULT_CONFIG_PATH,
    ClusterConfig,
    DiskHost,
    config_path,
    identify_node,
    load_cluster,
    parse_cluster,
)
from kembar.errors import ConfigError

SECRET = "s3cr3t-Do-Not-Leak"

FULL = f"""
[cluster]
name = "web"

[nodes.n1]
address = "198.18.0.1"

[nodes."n2.example.com"]
address = "2001:db8::2"

[disks.r0]
protocol = "B"
port = 7790
secret = "{SECRET}"
resync_rate = "100M"
csums_alg = "crc32c"
verify_alg = "blake2b"
after_sb_0pri = "discard-zero-changes"
after_sb_1pri = "consensus"
after_sb_2pri = "disconnect"
al_extents = 3389
timeout = "6s"
ping_int = "10s"
ping_timeout = "500ms"
connect_int = "2s"

[disks.r0.on.n1]
backing = "/dev/sdb1"
meta = "/var/lib/kembar/custom.md"
address = "10.0.0.1"

[disks.r0.on."n2.example.com"]
backing = "/srv/r0.img"
"""

MINIMAL = f"""
[cluster]
name = "web"
[nodes.n1]
address = "198.18.0.1"
[nodes.n2]
address = "198.18.0.2"
[disks.r0]
secret = "{SECRET}"
[disks.r0.on.n1]
backing = "/dev/sdb1"
[disks.r0.on.n2]
backing = "/dev/sdc1"
"""


def test_full_example() -> None:
    cfg = parse_cluster(FULL, "full.toml")
    assert cfg.cluster.name == "web"
    assert cfg.source == "full.toml"
    assert cfg.node("n2.example.com").address == "2001:db8::2"
    disk = cfg.disk("r0")
    assert disk.name == "r0"
    assert (disk.protocol, disk.port, disk.resync_rate) == ("B", 7790, 100 * 1024**2)
    assert (disk.csums_alg, disk.verify_alg, disk.al_extents) == ("crc32c", "blake2b", 3389)
    assert (disk.after_sb_0pri, disk.after_sb_1pri) == ("discard-zero-changes", "consensus")
    assert (disk.timeout, disk.ping_int, disk.ping_timeout, disk.connect_int) == (6.0, 10.0, 0.5, 2.0)
    assert disk.secret_bytes() == SECRET.encode()
    assert disk.local("n1") == DiskHost(backing="/dev/sdb1", meta="/var/lib/kembar/custom.md", address="10.0.0.1")
    peer, side = disk.peer_of("n1")
    assert peer == "n2.example.com"
    assert side == DiskHost(backing="/srv/r0.img", meta="/var/lib/kembar/r0.md", address="2001:db8::2")
    assert disk.peer_of("n2.example.com")[0] == "n1"


def test_defaults() -> None:
    disk = parse_cluster(MINIMAL).disk("r0")
    assert (disk.protocol, disk.port, disk.resync_rate, disk.csums_alg, disk.verify_alg) == (
        "C", 7788, 0, "", "sha256")
    assert (disk.after_sb_0pri, disk.after_sb_1pri, disk.after_sb_2pri) == ("disconnect",) * 3
    assert disk.al_extents == 1237
    assert disk.on_io_error == "detach"
    assert (disk.timeout, disk.ping_int, disk.ping_timeout, disk.connect_int) == (6.0, 10.0, 0.5, 2.0)
    assert disk.local("n2") == DiskHost(backing="/dev/sdc1", meta="/var/lib/kembar/r0.md", address="198.18.0.2")


def test_nodes_only_cluster() -> None:
    cfg = parse_cluster('[cluster]\nname = "solo"\n[nodes.a]\naddress = "127.0.0.1"\n')
    assert list(cfg.nodes) == ["a"] and cfg.disks == {}


def test_models_are_frozen() -> None:
    cfg = parse_cluster(MINIMAL)
    with pytest.raises(Exception):
        cfg.disk("r0").port = 1  # type: ignore[misc]


def _replace(old: str, new: str) -> str:
    assert old in MINIMAL
    return MINIMAL.replace(old, new, 1)


BAD = [
    (_replace('name = "web"', 'name = "Web!"'), "cluster.name"),
    (_replace('name = "web"\n', ""), "cluster.name: required key missing"),
    (_replace('address = "198.18.0.2"', 'address = "999.1.1.1"'), "nodes.n2.address"),
    (_replace('address = "198.18.0.2"', "address = 5"), "nodes.n2.address: must be a string"),
    (_replace('address = "198.18.0.2"\n', ""), "disks.r0.on.n2.address: no address for n2"),
    (_replace("[nodes.n2]", '[nodes."-bad"]'), "nodes.-bad: invalid node name"),
    (_replace("[nodes.n2]", '[nodes."bad name"]'), 'nodes."bad name": invalid node name'),
    (_replace("[disks.r0]", "[disks.R0]").replace("disks.r0.on", "disks.R0.on"), "disks.R0: invalid disk name"),
    (_replace("[disks.r0]", '[disks.r0]\nprotocol = "D"'), "disks.r0.protocol: must be 'A', 'B' or 'C'"),
    (_replace("[disks.r0]", "[disks.r0]\nport = 0"), "disks.r0.port: must be >= 1"),
    (_replace("[disks.r0]", "[disks.r0]\nport = 70000"), "disks.r0.port: must be <= 65535"),
    (_replace("[disks.r0]", '[disks.r0]\nport = "7788"'), "disks.r0.port: must be an integer"),
    (_replace("[disks.r0]", "[disks.r0]\nport = true"), "disks.r0.port: must be an integer"),
    (_replace("[disks.r0]", '[disks.r0]\nresync_rate = "fast"'), "disks.r0.resync_rate: invalid size"),
    (_replace("[disks.r0]", "[disks.r0]\nresync_rate = -5"), "disks.r0.resync_rate"),
    (_replace("[disks.r0]", '[disks.r0]\ncsums_alg = "crc64"'), "disks.r0.csums_alg"),
    (_replace("[disks.r0]", '[disks.r0]\nverify_alg = ""'), "disks.r0.verify_alg"),
    (_replace("[disks.r0]", '[disks.r0]\nafter_sb_0pri = "consensus"'), "disks.r0.after_sb_0pri"),
    (_replace("[disks.r0]", '[disks.r0]\nafter_sb_1pri = "discard-zero-changes"'), "disks.r0.after_sb_1pri"),
    (_replace("[disks.r0]", '[disks.r0]\nafter_sb_2pri = "consensus"'), "disks.r0.after_sb_2pri"),
    (_replace("[disks.r0]", "[disks.r0]\nal_extents = 6"), "disks.r0.al_extents: must be >= 7"),
    (_replace("[disks.r0]", '[disks.r0]\non_io_error = "pass_on"'), "disks.r0.on_io_error"),
    (_replace("[disks.r0]", "[disks.r0]\nal_extents = 65535"), "disks.r0.al_extents: must be <= 65534"),
    (_replace("[disks.r0]", '[disks.r0]\ntimeout = "soon"'), "disks.r0.timeout: invalid duration"),
    (_replace("[disks.r0]", '[disks.r0]\nping_int = "nan"'), "disks.r0.ping_int"),
    (_replace("[disks.r0]", "[disks.r0]\nconnect_int = -1"), "disks.r0.connect_int"),
    (_replace("[disks.r0]", '[disks.r0]\nconnect_int = "0s"'), "disks.r0.connect_int: must be > 0"),
    (_replace("[disks.r0]", '[disks.r0]\nping_timeout = "6s"'), "disks.r0.ping_timeout: must be less than timeout"),
    (_replace("[disks.r0]", '[disks.r0]\nping_timeout = "7s"'), "disks.r0.ping_timeout"),
    (_replace("[disks.r0]", "[disks.r0]\ncolour = 1"), "disks.r0.colour: unknown key"),
    (_replace("[cluster]", "[cluster]\nextra = 1"), "cluster.extra: unknown key"),
    (MINIMAL + "\n[heartbeat]\nport = 694\n", "heartbeat: unknown key"),
    (_replace("[disks.r0.on.n1]", "[disks.r0.on.n1]\nfoo = 1"), "disks.r0.on.n1.foo: unknown key"),
    (_replace('backing = "/dev/sdb1"', 'backing = "dev/sdb1"'), "disks.r0.on.n1.backing: must be an absolute path"),
    (_replace('backing = "/dev/sdb1"', 'backing = "/dev/sdb1"\nmeta = "r0.md"'), "disks.r0.on.n1.meta"),
    (_replace('backing = "/dev/sdb1"', 'backing = "/dev/sdb1"\naddress = "x"'), "disks.r0.on.n1.address"),
    (_replace('backing = "/dev/sdb1"\n', ""), "disks.r0.on.n1.backing: required key missing"),
    (_replace("[disks.r0.on.n2]", "[disks.r0.on.n3]"), "disks.r0.on.n3: unknown node (known: n1, n2)"),
    (MINIMAL + '[disks.r0.on.n3]\nbacking = "/x"\n', "disks.r0.on: exactly two"),
    (_replace('[disks.r0.on.n2]\nbacking = "/dev/sdc1"\n', ""), "disks.r0.on: exactly two"),
    (_replace(f'secret = "{SECRET}"', ""), "disks.r0: one of secret or secret_file is required"),
    (_replace(f'secret = "{SECRET}"', 'secret = ""'), "disks.r0.secret: must be 1 to 64 characters"),
    (_replace(f'secret = "{SECRET}"', f'secret = "{"x" * 65}"'), "disks.r0.secret: must be 1 to 64 characters"),
    (_replace(f'secret = "{SECRET}"', "secret = 12"), "disks.r0.secret: must be a string"),
    (_replace(f'secret = "{SECRET}"', f'secret = "{SECRET}"\nsecret_file = "/etc/k"'), "disks.r0.secret_file"),
    (_replace(f'secret = "{SECRET}"', 'secret_file = "relative"'), "disks.r0.secret_file: must be an absolute"),
    (_replace(f'secret = "{SECRET}"', 'secret_file = "/nonexistent/kembar.secret"'),
     "disks.r0.secret_file: cannot read /nonexistent/kembar.secret"),
    (_replace("[nodes.n1]", "[nodes.n1]\nzone = 1"), "nodes.n1.zone: unknown key"),
    ('[cluster]\nname = "x"\n', "nodes: at least one"),
    ('[nodes.a]\naddress = "::1"\n', "cluster: required key missing"),
    (_replace('[nodes.n2]\naddress = "198.18.0.2"\n', "").replace("[disks.r0.on.n2]", "[disks.r0.on.n1x]"),
     "nodes: a replicated disk needs two nodes"),
    (_replace("[disks.r0]", "[disks.r0]\nprotocol = 3"), "disks.r0.protocol"),
    ('cluster = 1\n[nodes.a]\naddress = "::1"\n', "cluster: must be a table"),
    ('[cluster]\nname = "x"\nnodes = 1\n', "cluster.nodes: unknown key"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_errors_name_the_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_cluster(text, "bad.toml")
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert SECRET not in message
    assert "pydantic" not in message.lower() and "input_value" not in message
    for part in message.split("; "):
        assert part.startswith("bad.toml: ")


def test_several_problems_in_one_error() -> None:
    text = _replace("[disks.r0]", '[disks.r0]\nprotocol = "D"\nport = 0\nfoo = 1')
    message = str(pytest.raises(ConfigError, parse_cluster, text, "f.toml").value)
    parts = message.split("; ")
    assert len(parts) == 3
    assert {p.split(": ")[1] for p in parts} == {"disks.r0.protocol", "disks.r0.port", "disks.r0.foo"}


def test_duplicate_port() -> None:
    second = MINIMAL.replace("r0", "r1").split("[disks.r1]", 1)[1]
    text = MINIMAL + "[disks.r1]" + second
    with pytest.raises(ConfigError, match=r"disks\.r1\.port: port 7788 is already used by disk r0"):
        parse_cluster(text)
    assert len(parse_cluster(text.replace("[disks.r1]", "[disks.r1]\nport = 7789")).disks) == 2


def test_toml_syntax_error_has_line() -> None:
    with pytest.raises(ConfigError, match=r"^x\.toml: invalid TOML: .*line 2"):
        parse_cluster('[cluster]\nname = "web\n', "x.toml")


def test_secret_never_shown() -> None:
    cfg = parse_cluster(MINIMAL)
    for shown in (repr(cfg), str(cfg), repr(cfg.disk("r0")), str(cfg.disk("r0")), repr(cfg.disks),
                  str(cfg.model_dump()), cfg.model_dump_json()):
        assert SECRET not in shown
    # a problem elsewhere in the same disk does not quote the secret either
    bad = _replace("[disks.r0]", f'[disks.r0]\nprotocol = "{SECRET}"\nfoo = "{SECRET}"')
    message = str(pytest.raises(ConfigError, parse_cluster, bad).value)
    assert SECRET not in message and "disks.r0.protocol" in message and "disks.r0.foo" in message


def _with_secret_file(tmp_path: Path, content: str, mode: int) -> tuple[str, Path]:
    secret_file = tmp_path / "r0.secret"
    secret_file.write_text(content)
    os.chmod(secret_file, mode)
    return _replace(f'secret = "{SECRET}"', f'secret_file = "{secret_file}"'), secret_file


def test_secret_file(tmp_path: Path) -> None:
    text, _ = _with_secret_file(tmp_path, SECRET + "\n", 0o600)
    cfg = parse_cluster(text)
    assert cfg.disk("r0").secret_bytes() == SECRET.encode()
    assert SECRET not in repr(cfg)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644, 0o666])
def test_secret_file_must_be_private(tmp_path: Path, mode: int) -> None:
    text, path = _with_secret_file(tmp_path, SECRET, mode)
    message = str(pytest.raises(ConfigError, parse_cluster, text, "c.toml").value)
    assert message.startswith(f"c.toml: disks.r0.secret_file: {path} is accessible by group or others")
    assert SECRET not in message


@pytest.mark.parametrize("content", ["", "\n", "y" * 65])
def test_secret_file_length(tmp_path: Path, content: str) -> None:
    text, _ = _with_secret_file(tmp_path, content, 0o600)
    message = str(pytest.raises(ConfigError, parse_cluster, text).value)
    assert "disks.r0.secret_file: the secret in" in message and "y" * 65 not in message


def test_lookup_errors() -> None:
    cfg = load_cluster_from(MINIMAL)
    with pytest.raises(ConfigError, match=r"^no disk 'x' in <string>; known: r0$"):
        cfg.disk("x")
    with pytest.raises(ConfigError, match=r"^no node 'n9' in <string>; known: n1, n2$"):
        cfg.node("n9")
    with pytest.raises(ConfigError, match="not configured on node 'n9'"):
        cfg.disk("r0").local("n9")
    with pytest.raises(ConfigError, match="not configured on node 'n9'"):
        cfg.disk("r0").peer_of("n9")


def load_cluster_from(text: str) -> ClusterConfig:
    return parse_cluster(text)


def test_load_cluster(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(MINIMAL)
    cfg = load_cluster(path)
    assert cfg.source == str(path)
    with pytest.raises(ConfigError, match=f"no disk 'r5' in {path}; known: r0"):
        cfg.disk("r5")


def test_load_cluster_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match=rf"^{missing}: cannot read config: No such file"):
        load_cluster(missing)
    with pytest.raises(ConfigError, match=rf"^{tmp_path}: cannot read config"):
        load_cluster(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("[cluster\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: invalid TOML: .*line 1"):
        load_cluster(bad)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_cluster(str(binary))


def test_config_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEMBAR_CONFIG", raising=False)
    assert config_path(None) == DEFAULT_CONFIG_PATH == Path("/etc/kembar/cluster.toml")
    monkeypatch.setenv("KEMBAR_CONFIG", "/tmp/env.toml")
    assert config_path(None) == Path("/tmp/env.toml")
    assert config_path("/tmp/explicit.toml") == Path("/tmp/explicit.toml")


def test_identify_node(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_cluster(FULL, "full.toml")
    monkeypatch.delenv("KEMBAR_NODE", raising=False)
    assert identify_node(cfg, "n1") == "n1"
    with pytest.raises(ConfigError, match=r"--node: no node 'zz' in full.toml; known: n1, n2.example.com"):
        identify_node(cfg, "zz")
    monkeypatch.setenv("KEMBAR_NODE", "n2.example.com")
    assert identify_node(cfg, None) == "n2.example.com"
    assert identify_node(cfg, "n1") == "n1"
    monkeypatch.setenv("KEMBAR_NODE", "zz")
    with pytest.raises(ConfigError, match="KEMBAR_NODE: no node 'zz'"):
        identify_node(cfg, None)
    monkeypatch.delenv("KEMBAR_NODE")
    monkeypatch.setattr(socket, "gethostname", lambda: "n2.example.com")
    assert identify_node(cfg, None) == "n2.example.com"
    monkeypatch.setattr(socket, "gethostname", lambda: "n1.lab.local")
    assert identify_node(cfg, None) == "n1"
    monkeypatch.setattr(socket, "gethostname", lambda: "other.lab")
    with pytest.raises(ConfigError, match=r"'other.lab' is not a node .*n1, n2.example.com.*--node"):
        identify_node(cfg, None)


def test_on_io_error_failover() -> None:
    disk = parse_cluster(_replace("[disks.r0]", '[disks.r0]\non_io_error = "failover"')).disk("r0")
    assert disk.on_io_error == "failover"
