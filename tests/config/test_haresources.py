"""``kembar config import``: Heartbeat's haresources as ``[groups.*]`` tables, and the
whole paper cluster (ha.cf + drbd.conf + haresources) through the CLI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from kembar.cli.main import cli
from kembar.config import parse_cluster
from kembar.config.drbdconf import import_drbdconf
from kembar.config.haresources import import_haresources
from kembar.config.importer import import_hacf
from kembar.config.model import ClusterConfig
from kembar.errors import ConfigError
from tests.config.test_drbdconf import UBUNTU_DRBD, _res
from tests.config.test_importer import PAPER_HACF

PAPER_HARESOURCES = ("node1 IPaddr::198.18.0.100/24/eth0 drbddisk::r0 "
                     "Filesystem::/dev/drbd0::/srv/data::ext4 apache2 mysql\n")
NODES = ["node1", "node2"]
DEVICES = {"/dev/drbd0": "r0", "/dev/drbd1": "r1"}
# The cluster file around the groups: two nodes, disks r0 and r1.
HEAD = import_hacf(PAPER_HACF).toml + "\n" + import_drbdconf(
    _res() + _res(name="r1", port=7789, minor=1), "drbd.conf", NODES)[0]


def _import(text: str, devices: dict[str, str] | None = None) -> tuple[str, list[str]]:
    return import_haresources(text, "haresources", NODES, DEVICES if devices is None
                              else devices)


def _cfg(text: str) -> ClusterConfig:
    return parse_cluster(HEAD + "\n" + _import(text)[0])


def _resources(text: str, group: str = "group1") -> list[dict[str, Any]]:
    return [r.model_dump(exclude_defaults=True) for r in _cfg(text).groups[group].resources]


def _notes(text: str) -> list[str]:
    return _import(text)[1]


# ------------------------------------------------------------------ the paper's cluster


def test_paper_cluster() -> None:
    hacf = import_hacf(PAPER_HACF)
    nodes = list(parse_cluster(hacf.toml).nodes)
    disks, _, devices = import_drbdconf(UBUNTU_DRBD, "/etc/drbd.conf", nodes)
    groups, notes = import_haresources(PAPER_HARESOURCES, "/etc/ha.d/haresources", nodes,
                                       devices)
    cfg = parse_cluster(hacf.toml + "\n" + disks + "\n" + groups)
    assert list(cfg.groups) == ["group1"]
    group = cfg.groups["group1"]
    assert group.preferred == "node1" and cfg.auto_failback("group1") is True
    assert [r.describe() for r in group.resources] == [
        "ip 198.18.0.100/24 on eth0", "disk r0", "filesystem /dev/kembar/r0 on /srv/data (ext4)",
        "service apache2", "service mysql"]
    assert "[[groups.group1.resources]]   # haresources line 1: drbddisk::r0" in groups
    assert any(n.startswith("group1 (haresources line 1): the address 198.18.0.100 starts "
                            "before the services") and "consider moving IPaddr last" in n
               for n in notes)
    assert any("/dev/drbd0 is the DRBD resource r0: kembar's is /dev/kembar/r0" in n
               for n in notes)
    assert any("called group1 in file order" in n for n in notes)
    assert any("Heartbeat never checked a resource" in n for n in notes)


def test_vip_last_gives_no_order_note() -> None:
    notes = _notes("node1 drbddisk::r0 Filesystem::/dev/drbd0::/srv::ext4 apache2 "
                   "IPaddr2::10.0.0.100/24/eth0\n")
    assert not any("starts before the services" in n for n in notes)


# ------------------------------------------------------------------ every mapping


@pytest.mark.parametrize("token, expected", [
    ("IPaddr::10.0.0.5/24/eth0", {"type": "ip", "address": "10.0.0.5/24", "interface": "eth0"}),
    ("IPaddr2::10.0.0.5/16", {"type": "ip", "address": "10.0.0.5/16"}),
    ("IPaddr::10.0.0.5/255.255.255.0/eth1", {"type": "ip", "address": "10.0.0.5/24",
                                             "interface": "eth1"}),
    ("10.0.0.5/24/eth0/10.0.0.255", {"type": "ip", "address": "10.0.0.5/24",
                                     "interface": "eth0"}),
    ("IPv6addr::2001:db8::10/64/eth0", {"type": "ip", "address": "2001:db8::10/64",
                                        "interface": "eth0"}),
    ("drbddisk::r1", {"type": "disk", "disk": "r1"}),
    ("drbddisk::R1", {"type": "disk", "disk": "r1"}),
    ("Filesystem::/dev/drbd0::/srv/data::ext4", {
        "type": "filesystem", "device": "/dev/kembar/r0", "directory": "/srv/data"}),
    ("Filesystem::/dev/drbd1::/srv/db::xfs::noatime,nodiratime", {
        "type": "filesystem", "device": "/dev/kembar/r1", "directory": "/srv/db",
        "fstype": "xfs", "options": "noatime,nodiratime"}),
    ("Filesystem::/dev/drbd/by-res/r1::/srv::ext3", {
        "type": "filesystem", "device": "/dev/kembar/r1", "directory": "/srv", "fstype": "ext3"}),
    ("Filesystem::/dev/drbd/by-res/r0/0::/srv::ext4", {
        "type": "filesystem", "device": "/dev/kembar/r0", "directory": "/srv"}),
    ("Filesystem::/dev/sdc1::/mnt/shared::ext4", {
        "type": "filesystem", "device": "/dev/sdc1", "directory": "/mnt/shared"}),
    ("apache2", {"type": "service", "name": "apache2"}),
    ("mysql", {"type": "service", "name": "mysql"}),
    ("postgresql@9.3-main", {"type": "service", "name": "postgresql@9.3-main"}),
    ("apache", {"type": "script", "path": "/etc/ha.d/resource.d/apache"}),
    ("Xinetd::tftp", {"type": "script", "path": "/etc/ha.d/resource.d/Xinetd", "args": ["tftp"]}),
    ("MailTo::root::Failover", {"type": "script", "path": "/etc/ha.d/resource.d/MailTo",
                                "args": ["root", "Failover"]}),
    ("Delay::10::5", {"type": "script", "path": "/etc/ha.d/resource.d/Delay",
                      "args": ["10", "5"]}),
    ("SendArp::10.0.0.5/eth0", {"type": "script", "path": "/etc/ha.d/resource.d/SendArp",
                                "args": ["10.0.0.5/eth0"]}),
    ("myapp::start-fast", {"type": "script", "path": "/etc/ha.d/resource.d/myapp",
                           "args": ["start-fast"]}),
])
def test_mapping(token: str, expected: dict[str, Any]) -> None:
    assert _resources(f"node1 {token}\n") == [expected]


def test_bare_drbddisk_means_every_resource() -> None:
    assert _resources("node2 drbddisk\n") == [{"type": "disk", "disk": "r0"},
                                              {"type": "disk", "disk": "r1"}]
    assert any("every DRBD resource" in n for n in _notes("node2 drbddisk\n"))
    with pytest.raises(ConfigError, match=r"^haresources: line 1: drbddisk without a "
                                          r"resource means every DRBD resource, and none"):
        _import("node1 drbddisk\n", {})


@pytest.mark.parametrize("token, note", [
    ("10.0.0.5", "no prefix length: Heartbeat took the netmask from the route to the address, "
                 "but kembar needs it written: wrote /24"),
    ("IPaddr2::10.0.0.5/24/eth0:1", "the interface label eth0:1 is not used"),
    ("10.0.0.5/24/eth0/10.0.0.254", "the broadcast address 10.0.0.254 is not carried over"),
    ("Filesystem::/dev/sdc1::/mnt::ext4", "/dev/sdc1 is not a replicated disk"),
    ("Filesystem::/dev/drbd0::/srv", "no filesystem type: Heartbeat let mount detect it; "
                                     "kembar writes ext4"),
    ("Filesystem::/dev/drbd0::/srv::ext4::rw::x", "not carried over (Filesystem takes four)"),
    ("apache", "Heartbeat's resource.d agent, not the apache init script"),
    ("myapp::x", "myapp is not an agent Heartbeat ships"),
    ("IPaddr::10.0.0.5/24::extra", "the arguments after the address are not carried over"),
    ("drbddisk::r0::x", "drbddisk takes one resource"),
])
def test_mapping_notes(token: str, note: str) -> None:
    line = f"node1 {token}\n" if "drbddisk" in token else f"node1 drbddisk::r0 {token}\n"
    notes = _notes(line)
    assert any(note in n for n in notes), notes
    _cfg(line)


def test_default_prefix_and_ipv6_prefix() -> None:
    assert _resources("node1 10.0.0.5\n") == [{"type": "ip", "address": "10.0.0.5/24"}]
    assert _resources("node1 IPv6addr::fd00::5\n") == [{"type": "ip", "address": "fd00::5/64"}]


def test_script_note_once() -> None:
    notes = _notes("node1 MailTo::root Delay::1\nnode2 drbddisk::r1 MailTo::ops\n")
    assert sum("keep them when removing the heartbeat package" in n for n in notes) == 1


def test_filesystem_before_its_disk_is_noted() -> None:
    notes = _notes("node1 Filesystem::/dev/drbd0::/srv::ext4 drbddisk::r0\n")
    assert any("is not preceded by drbddisk::r0" in n for n in notes)


def test_unused_disk_is_noted() -> None:
    notes = _notes("node1 drbddisk::r0 apache2\n")
    assert any("no group holds the disk r1" in n for n in notes)


# ------------------------------------------------------------------ lines and groups


def test_groups_comments_continuations_and_case() -> None:
    text = """# haresources
node1 drbddisk::r0 \\
      Filesystem::/dev/drbd0::/srv/data::ext4 \\   # data
      apache2
# second group, with a continued line at its end
Node2 drbddisk::r1 Filesystem::/dev/drbd1::/srv/db::ext4 \\
   mysql \\
"""
    result, notes = _import(text)
    cfg = parse_cluster(HEAD + result)
    assert list(cfg.groups) == ["group1", "group2"]
    assert [r.describe() for r in cfg.groups["group1"].resources] == [
        "disk r0", "filesystem /dev/kembar/r0 on /srv/data (ext4)", "service apache2"]
    assert cfg.groups["group2"].preferred == "node2"
    assert [r.describe() for r in cfg.groups["group2"].resources] == [
        "disk r1", "filesystem /dev/kembar/r1 on /srv/db (ext4)", "service mysql"]
    assert "[[groups.group2.resources]]   # haresources line 7: mysql" in result
    assert any("Node2 (haresources line 6)" in n and "lower case" in n for n in notes)
    assert any("group1, group2 in file order" in n for n in notes)


def test_a_line_without_backslash_ends_the_group() -> None:
    with pytest.raises(ConfigError, match=r"^haresources: line 2: node2: the group has no "
                                          r"resources"):
        _import("node1 drbddisk::r0\n   node2\n")


def test_empty_file_has_no_groups() -> None:
    result, notes = _import("# nothing here\n\n   \n")
    assert result == ""
    assert notes == ["haresources: no resource groups"]


def test_without_ha_cf_nodes_any_node_name() -> None:
    result, _ = import_haresources("alpha apache2\n", "haresources")
    assert 'preferred = "alpha"' in result


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("text, line, problem", [
    ("node1\n", 1, "node1: the group has no resources"),
    ("\n\nnode3 apache2\n", 3, "node3 is not a node of ha.cf (nodes: node1, node2)"),
    ("bad_node! apache2\n", 1, "bad_node! is not a node name"),
    ("node1 Filesystem::/dev/drbd0\n", 1, "expected 'Filesystem::DEVICE::DIRECTORY"),
    ("node1 Filesystem\n", 1, "expected 'Filesystem::DEVICE::DIRECTORY"),
    ("node1 Filesystem::::/srv\n", 1, "expected 'Filesystem::DEVICE::DIRECTORY"),
    ("node1 Filesystem::/dev/drbd5::/srv::ext4\n", 1,
     "Filesystem: /dev/drbd5 is not the device of any DRBD resource in drbd.conf (known: "
     "/dev/drbd0 (r0), /dev/drbd1 (r1))"),
    ("node1 Filesystem::/dev/drbd/by-res/r7::/srv::ext4\n", 1, "no DRBD resource r7"),
    ("node1 Filesystem::/dev/drbd0::srv::ext4\n", 1, "the mount point srv is not an absolute"),
    ("node1 Filesystem::nfs:/export::/srv::nfs\n", 1, "is not a path"),
    ("node1 drbddisk::r9\n", 1, "drbddisk::r9: no DRBD resource r9 in drbd.conf (known: r0, r1)"),
    ("node1 300.1.2.3\n", 1, "IPaddr: 300.1.2.3 is not an IPv4 address"),
    ("node1 10.0.0/24\n", 1, "IPaddr: 10.0.0 is not an IPv4 address"),
    ("node1 IPaddr::10.0.0.1/33\n", 1, "IPaddr: invalid netmask 33"),
    ("node1 IPaddr::10.0.0.1/255.0.255.0\n", 1, "IPaddr: invalid netmask 255.0.255.0"),
    ("node1 IPaddr::10.0.0.1/24/eth0/10.0.0.x\n", 1, "is not a broadcast address"),
    ("node1 IPaddr::10.0.0.1/24/eth0/10.0.0.255/x\n", 1, "expected IP[/BITS[/IF[/BCAST]]]"),
    ("node1 IPaddr::10.0.0.1/24/averyveryverylongname\n", 1, "not an interface name"),
    ("node1 IPaddr::fd00::1\n", 1, "IPaddr: fd00 is not an IPv4 address"),
    ("node1 IPaddr\n", 1, "IPaddr: expected 'IPaddr::ADDRESS"),
    ("node1 IPv6addr::10.0.0.1/64\n", 1, "is not an IPv6 address"),
    ("node1 IPv6addr::fe80::1%eth0/64\n", 1, "is not an IPv6 address"),
    ("node1 IPv6addr::fd00::1/129\n", 1, "invalid prefix length 129"),
    ("node1 /etc/init.d/apache2\n", 1, "/etc/init.d/apache2: not a resource"),
    ("node1 drbddisk::r0\nnode2 drbddisk::r0\n", 2, "the disk r0 is already a resource of "
                                                    "group1 (line 1)"),
    ("node1 10.0.0.1/24\nnode2 IPaddr2::10.0.0.1/24\n", 2, "the address 10.0.0.1 is already"),
    ("node1 drbddisk::r0 Filesystem::/dev/drbd0::/srv::ext4 "
     "Filesystem::/dev/drbd0::/srv/::ext4\n", 1, "the mount point /srv/ is already"),
    ("node1 drbddisk::r0 \\\n  apache2 \\\n  300.0.0.1\n", 3, "300.0.0.1 is not an IPv4"),
])
def test_errors(text: str, line: int, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        _import(text)
    message = str(info.value)
    assert message.startswith(f"haresources: line {line}: "), message
    assert problem in message, message
    assert "\n" not in message


def test_no_drbd_conf_names_the_option() -> None:
    with pytest.raises(ConfigError, match=r"known: none: give the drbd\.conf \(--drbd-conf\)"):
        _import("node1 drbddisk::r0\n", {})
    with pytest.raises(ConfigError, match=r"known: none: give the drbd\.conf"):
        _import("node1 Filesystem::/dev/drbd0::/srv::ext4\n", {})


# ------------------------------------------------------------------ never another exception

_TOKEN = st.one_of(
    st.sampled_from(["node1", "node2", "Node1", "node3", "apache2", "mysql", "drbddisk",
                     "drbddisk::r0", "drbddisk::r1", "drbddisk::r2", "\\", "#", "\n",
                     "Filesystem::/dev/drbd0::/srv/data::ext4", "Filesystem::/dev/drbd1::/db",
                     "Filesystem::/dev/sdc::/mnt::xfs::ro", "Filesystem::/dev/drbd9::/x",
                     "IPaddr::198.18.0.100/24/eth0", "10.0.0.9", "10.0.0.9/33",
                     "IPaddr2::10.1.1.1/255.255.0.0/eth1:0/10.1.255.255", "MailTo::root",
                     "IPv6addr::fd00::1/64/eth0", "Delay::3", "apache", "a::b::c", "::",
                     "Filesystem::/dev/drbd/by-res/r0/0::/srv::ext4"]),
    st.text(max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_config_error(text: str) -> None:
    try:
        result, notes = _import(text)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    parse_cluster(HEAD + "\n" + result)
    assert all(note and "\n" not in note for note in notes)


_NODE = st.sampled_from(["node1", "node2", "Node1"])
_GOOD = st.sampled_from(["apache2", "mysql", "drbddisk::r0", "drbddisk::r1", "10.0.0.9/24",
                         "Filesystem::/dev/drbd0::/srv/data::ext4", "MailTo::root::x",
                         "Filesystem::/dev/drbd/by-res/r1::/db", "IPv6addr::fd00::1/64/eth0",
                         "IPaddr2::10.1.1.1/255.255.0.0/eth1:0/10.1.255.255", "Delay::3"])
_LINE = st.tuples(st.integers(0, 9).flatmap(lambda i: _TOKEN if i == 0 else _NODE),
                  st.lists(st.integers(0, 9).flatmap(lambda i: _TOKEN if i == 0 else _GOOD),
                           min_size=1, max_size=6)) \
    .map(lambda t: " ".join([t[0], *t[1]]))


@settings(max_examples=500, deadline=None)
@given(st.lists(_LINE, max_size=4), st.booleans())
def test_token_lines_import_or_config_error(lines: list[str], devices: bool) -> None:
    try:
        result, notes = _import("\n".join(lines), None if devices else {})
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    cfg = parse_cluster(HEAD + "\n" + result)
    assert all(group.preferred in NODES for group in cfg.groups.values())
    assert all(note and "\n" not in note for note in notes)


# ------------------------------------------------------------------ the CLI


@pytest.fixture()
def etc(tmp_path: Path) -> Path:
    (tmp_path / "ha.cf").write_text(PAPER_HACF)
    (tmp_path / "haresources").write_text(PAPER_HARESOURCES)
    (tmp_path / "drbd.conf").write_text(UBUNTU_DRBD)
    keys = tmp_path / "authkeys"
    keys.write_text("auth 1\n1 sha1 SomeSharedSecret\n")
    keys.chmod(0o600)
    return tmp_path


def _invoke(tmp: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["config", "import", "--hacf", str(tmp / "ha.cf"),
                                      "--authkeys", str(tmp / "authkeys"),
                                      "--authkeys-output", str(tmp / "keys"), *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_imports_the_paper_cluster(etc: Path) -> None:
    out_path = etc / "cluster.toml"
    code, out, err = _invoke(etc, "--haresources", str(etc / "haresources"), "--drbd-conf",
                             str(etc / "drbd.conf"), "--name", "web", "-o", str(out_path))
    assert code == 0, err
    assert out == (
        "ok: cluster 'web', 2 nodes, 1 disk (r0: protocol C, port 7788), 1 group (group1 on "
        "node1: ip 198.18.0.100/24 on eth0, disk r0, filesystem /dev/kembar/r0 on /srv/data "
        f"(ext4), service apache2, service mysql); wrote {out_path} (mode 600) and "
        f"{etc / 'keys'} (mode 600)\n")
    lines = err.splitlines()
    assert lines and all(line.startswith("kembar: note: ") for line in lines)
    assert any("consider moving IPaddr last" in line for line in lines)
    assert any("startup wfc-timeout (drbd.conf line 6)" in line for line in lines)
    cfg = parse_cluster(out_path.read_text())
    assert [r.type for r in cfg.groups["group1"].resources] == \
        ["ip", "disk", "filesystem", "service", "service"]
    assert cfg.disk("r0").secret_bytes() == b"secret"
    assert "secret" not in out and "SomeSharedSecret" not in out + err


def test_cli_to_stdout(etc: Path) -> None:
    code, out, err = _invoke(etc, "--haresources", str(etc / "haresources"), "--drbd-conf",
                             str(etc / "drbd.conf"))
    assert code == 0, err
    assert list(parse_cluster(out).groups) == ["group1"]
    assert err.splitlines()[-1].startswith("kembar: ok: cluster 'ha', 2 nodes, 1 disk")


def test_cli_missing_explicit_haresources(etc: Path) -> None:
    code, out, err = _invoke(etc, "--haresources", str(etc / "nope"), "-o",
                             str(etc / "cluster.toml"))
    assert code == 2 and out == ""
    assert err.splitlines() == [f"kembar: error: {etc / 'nope'}: cannot read: No such file or "
                                "directory"]
    assert sorted(p.name for p in etc.iterdir()) == ["authkeys", "drbd.conf", "ha.cf",
                                                      "haresources"]


def test_cli_bad_haresources_writes_nothing(etc: Path) -> None:
    (etc / "haresources").write_text("node1 drbddisk::r0\nnode9 apache2\n")
    code, out, err = _invoke(etc, "--haresources", str(etc / "haresources"), "--drbd-conf",
                             str(etc / "drbd.conf"), "-o", str(etc / "cluster.toml"))
    assert code == 2 and out == ""
    assert err.splitlines() == [f"kembar: error: {etc / 'haresources'}: line 2: node9 is not a "
                                "node of ha.cf (nodes: node1, node2)"]
    assert not (etc / "cluster.toml").exists() and not (etc / "keys").exists()


def test_cli_haresources_without_drbd_conf(etc: Path) -> None:
    if os.path.lexists("/etc/drbd.conf"):
        pytest.skip("this host has a drbd.conf")
    code, _, err = _invoke(etc, "--haresources", str(etc / "haresources"))
    assert code == 2
    assert err.splitlines() == [f"kembar: error: {etc / 'haresources'}: line 1: drbddisk::r0: "
                                "no DRBD resource r0 in drbd.conf (known: none: give the "
                                "drbd.conf (--drbd-conf))"]


def test_cli_refuses_an_input_as_output(etc: Path) -> None:
    code, _, err = _invoke(etc, "--haresources", str(etc / "haresources"), "--drbd-conf",
                           str(etc / "drbd.conf"), "-o", str(etc / "drbd.conf"), "--force")
    assert code == 2
    assert err.splitlines() == [f"kembar: error: {etc / 'drbd.conf'}: is the input drbd.conf; "
                                "choose another --output"]
    assert (etc / "drbd.conf").read_text() == UBUNTU_DRBD


@pytest.mark.skipif(os.path.lexists("/etc/ha.d/haresources"),
                    reason="this host has a haresources")
def test_cli_without_haresources_notes_it(etc: Path) -> None:
    code, out, err = _invoke(etc, "--drbd-conf", str(etc / "drbd.conf"), "-o",
                             str(etc / "cluster.toml"))
    assert code == 0, err
    assert "kembar: note: no /etc/ha.d/haresources: no resource groups converted" in \
        err.splitlines()
    assert "group" not in out
