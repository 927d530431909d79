"""``kembar config import``: DRBD's drbd.conf as ``[disks.*]`` tables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from kembar.cli.main import cli
from kembar.config import parse_cluster
from kembar.config.drbdconf import import_drbdconf
from kembar.config.importer import import_hacf
from kembar.config.model import ClusterConfig, DiskConfig
from kembar.errors import ConfigError
from tests.config.test_importer import PAPER_HACF

# A drbd.conf as the Ubuntu 14.04 tutorials of the paper's time wrote it (drbd8-utils
# 8.4.4, 8.3-style syncer section still accepted).
UBUNTU_DRBD = """\
global { usage-count no; }
common { protocol C; syncer { rate 100M; } }
resource r0 {
        protocol C;
        startup {
                wfc-timeout  15;
                degr-wfc-timeout 60;
        }
        net {
                cram-hmac-alg sha1;
                shared-secret "secret";
        }
        on node1 {
                device /dev/drbd0;
                disk /dev/sdb;
                address 192.168.0.101:7788;
                meta-disk internal;
        }
        on node2 {
                device /dev/drbd0;
                disk /dev/sdb;
                address 192.168.0.102:7788;
                meta-disk internal;
        }
}
"""

HEAD = '[cluster]\nname = "t"\n[nodes.node1]\n[nodes.node2]\n'
NODES = ["node1", "node2"]


def _hosts(res: str = "r0", port: int = 7788, minor: int = 0) -> str:
    return "".join(f"  on node{i} {{ device /dev/drbd{minor}; disk /dev/sdb; "
                   f"address 10.0.0.{i}:{port}; meta-disk internal; }}\n" for i in (1, 2))


def _res(body: str = "", name: str = "r0", port: int = 7788, minor: int = 0) -> str:
    return (f"resource {name} {{\n  net {{ shared-secret \"k\"; cram-hmac-alg sha1; }}\n"
            f"{body}\n{_hosts(name, port, minor)}}}\n")


def _cfg(text: str) -> ClusterConfig:
    toml, _, _ = import_drbdconf(text, "drbd.conf", NODES)
    return parse_cluster(HEAD + toml)


def _disk(text: str, name: str = "r0") -> DiskConfig:
    return _cfg(text).disks[name]


def _notes(text: str) -> list[str]:
    return import_drbdconf(text, "drbd.conf", NODES)[1]


# ------------------------------------------------------------------ the paper's cluster


def test_ubuntu_drbd_conf() -> None:
    toml, notes, devices = import_drbdconf(UBUNTU_DRBD, "/etc/drbd.conf", NODES)
    assert devices == {"/dev/drbd0": "r0"}
    disk = parse_cluster(HEAD + toml).disks["r0"]
    assert (disk.protocol, disk.port, disk.secret_bytes()) == ("C", 7788, b"secret")
    assert disk.resync_rate == 100 * 1024**2
    assert (disk.timeout, disk.ping_int, disk.ping_timeout, disk.connect_int) == \
        (6.0, 10.0, 0.5, 10.0)
    assert (disk.csums_alg, disk.verify_alg, disk.al_extents) == ("", "sha256", 1237)
    assert {n: (h.backing, h.address, h.meta) for n, h in disk.on.items()} == {
        "node1": ("/dev/sdb", "192.168.0.101", None), "node2": ("/dev/sdb", "192.168.0.102", None)}
    # Readable: each value names its line; defaults are marked.
    assert "[disks.r0]   " in toml and "# drbd.conf line 3: resource r0" in toml
    assert 'resync_rate = "100M"' in toml and "# drbd.conf line 2 (common): rate" in toml
    assert "drbd.conf lines 16, 22: address" in toml
    assert 'connect_int = "10s"' in toml and "DRBD default: connect-int 10 (seconds)" in toml
    assert 'secret = "secret"' in toml
    assert any(n.startswith("global usage-count (drbd.conf line 1)") for n in notes)
    assert any(n.startswith("startup wfc-timeout (drbd.conf line 6)") for n in notes)
    assert any(n.startswith("startup degr-wfc-timeout (drbd.conf line 7)") for n in notes)
    assert any(n.startswith("cram-hmac-alg sha1 (drbd.conf line 10)") for n in notes)
    assert any("/var/lib/kembar/r0.md" in n and "meta-disk internal" in n for n in notes)


def test_with_the_paper_hacf_passes_parse_cluster() -> None:
    hacf = import_hacf(PAPER_HACF).toml
    toml, _, _ = import_drbdconf(UBUNTU_DRBD, "drbd.conf", NODES)
    cfg = parse_cluster(hacf + "\n" + toml)
    assert list(cfg.disks) == ["r0"] and cfg.disk("r0").local("node2").address == "192.168.0.102"


# ------------------------------------------------------------------ every mapping


def test_drbd_83_syncer_and_net_values() -> None:
    disk = _disk(_res("""
  protocol A;
  net { after-sb-0pri discard-zero-changes; after-sb-1pri discard-secondary;
        after-sb-2pri disconnect; timeout 55; ping-int 3; ping-timeout 7; connect-int 4; }
  syncer { rate 33M; csums-alg md5; verify-alg sha1; al-extents 257; }"""))
    assert disk.protocol == "A"
    assert disk.resync_rate == 33 * 1024**2
    assert (disk.csums_alg, disk.verify_alg, disk.al_extents) == ("md5", "sha1", 257)
    assert (disk.after_sb_0pri, disk.after_sb_1pri, disk.after_sb_2pri) == \
        ("discard-zero-changes", "discard-secondary", "disconnect")
    # timeout and ping-timeout count tenths of a second; ping-int and connect-int seconds.
    assert (disk.timeout, disk.ping_int, disk.ping_timeout, disk.connect_int) == \
        (5.5, 3.0, pytest.approx(0.7), 4.0)


def test_drbd_84_sections() -> None:
    disk = _disk(_res("""
  net { protocol B; csums-alg SHA256; verify-alg crc32c; after-sb-0pri discard-least-changes;
        after-sb-1pri consensus; }
  disk { resync-rate 40M; al-extents 3389; }"""))
    assert (disk.protocol, disk.resync_rate, disk.al_extents) == ("B", 40 * 1024**2, 3389)
    assert (disk.csums_alg, disk.verify_alg) == ("sha256", "crc32c")
    assert (disk.after_sb_0pri, disk.after_sb_1pri) == ("discard-least-changes", "consensus")


@pytest.mark.parametrize("written, nbytes, toml", [
    ("10240", 10240 * 1024, "10240K"), ("512k", 512 * 1024, "512K"), ("1G", 1024**3, "1G"),
    ("100M", 100 * 1024**2, "100M"),
])
def test_rate_units_are_kib_unless_suffixed(written: str, nbytes: int, toml: str) -> None:
    text = _res(f"  syncer {{ rate {written}; }}")
    assert _disk(text).resync_rate == nbytes
    assert f'resync_rate = "{toml}"' in import_drbdconf(text, "drbd.conf", NODES)[0]


def test_dynamic_resync_controller_uses_c_max_rate() -> None:
    text = _res("  disk { resync-rate 10M; c-plan-ahead 20; c-max-rate 80M; c-min-rate 4M; }")
    assert _disk(text).resync_rate == 80 * 1024**2
    notes = _notes(text)
    assert any(n.startswith("c-plan-ahead (drbd.conf line") and "c-max-rate" in n for n in notes)
    assert any(n.startswith("c-min-rate (drbd.conf line") for n in notes)
    fixed = _res("  disk { resync-rate 10M; c-plan-ahead 0; c-max-rate 80M; }")
    assert _disk(fixed).resync_rate == 10 * 1024**2
    assert _disk(_res("  disk { c-max-rate 70M; }")).resync_rate == 70 * 1024**2


def test_no_rate_is_unlimited_with_a_note() -> None:
    assert _disk(_res()).resync_rate == 0
    assert any("no resync rate" in n for n in _notes(_res()))


def test_common_is_inherited_option_by_option() -> None:
    text = """common { protocol B; net { timeout 50; ping-int 5; } syncer { rate 20M; } }
""" + _res("  net { ping-int 7; }") + _res("  protocol C;", name="r1", port=7789, minor=1)
    cfg = _cfg(text)
    r0, r1 = cfg.disks["r0"], cfg.disks["r1"]
    assert (r0.protocol, r0.timeout, r0.ping_int, r0.resync_rate) == ("B", 5.0, 7.0, 20 * 1024**2)
    assert (r1.protocol, r1.timeout, r1.ping_int) == ("C", 5.0, 5.0)
    toml = import_drbdconf(text, "drbd.conf", NODES)[0]
    assert 'timeout = "5s"' in toml and "drbd.conf line 1 (common): timeout 50" in toml


@pytest.mark.parametrize("option, value, note", [
    ("csums-alg", "sha512", "csums-alg sha512"), ("verify-alg", "crc32", "verify-alg crc32"),
    ("after-sb-0pri", "discard-node-node1", "after-sb-0pri discard-node-node1"),
    ("after-sb-1pri", "violently-as0p", "after-sb-1pri violently-as0p"),
    ("after-sb-1pri", "call-pri-lost-after-sb", "after-sb-1pri call-pri-lost-after-sb"),
    ("after-sb-2pri", "violently-as0p", "after-sb-2pri violently-as0p"),
])
def test_unsupported_values_fall_back_with_a_note(option: str, value: str, note: str) -> None:
    text = _res(f"  net {{ {option} {value}; }}")
    disk = _disk(text)
    assert (disk.csums_alg, disk.verify_alg) == ("", "sha256")
    assert (disk.after_sb_0pri, disk.after_sb_1pri, disk.after_sb_2pri) == ("disconnect",) * 3
    assert any(n.startswith(f"{note} (drbd.conf line 3)") for n in _notes(text))


def test_no_shared_secret_gets_a_random_one() -> None:
    text = "resource r0 {\n" + _hosts() + "}\n"
    first, notes, _ = import_drbdconf(text, "drbd.conf", NODES)
    second = import_drbdconf(text, "drbd.conf", NODES)[0]
    one = parse_cluster(HEAD + first).disks["r0"].secret_bytes()
    assert len(one) >= 24 and one != parse_cluster(HEAD + second).disks["r0"].secret_bytes()
    assert any("has no shared-secret" in n and "random secret" in n for n in notes)
    assert "# random: drbd.conf has no shared-secret" in first


def test_shared_secret_without_cram_hmac_alg_is_noted() -> None:
    text = ("resource r0 {\n net { shared-secret \"abc def\"; }\n" + _hosts() + "}\n")
    assert _disk(text).secret_bytes() == b"abc def"
    assert any("without cram-hmac-alg" in n for n in _notes(text))


def test_device_forms_and_resource_level_fields() -> None:
    text = """resource r0 {
  device /dev/drbd3 minor 3; disk /dev/vdb1; meta-disk internal;
  net { shared-secret k; }
  on node1 { address 10.0.0.1:7790; }
  on node2 { address 10.0.0.2:7790; disk /dev/vdc1; }
}
resource r1 {
  net { shared-secret k; }
  on node1 { device minor 4; disk /dev/sdc; address 10.0.0.1:7791; }
  on node2 { device minor 4; disk /dev/sdc; address 10.0.0.2:7791; }
}
"""
    toml, _, devices = import_drbdconf(text, "drbd.conf", NODES)
    assert devices == {"/dev/drbd3": "r0", "/dev/drbd4": "r1"}
    cfg = parse_cluster(HEAD + toml)
    assert [cfg.disks["r0"].on[n].backing for n in NODES] == ["/dev/vdb1", "/dev/vdc1"]
    assert cfg.disks["r1"].port == 7791


def test_one_volume_is_read() -> None:
    text = """resource r0 {
  net { shared-secret k; }
  on node1 { volume 0 { device /dev/drbd0; disk /dev/sdb; meta-disk internal; }
             address 10.0.0.1:7788; }
  on node2 { volume 0 { device /dev/drbd0; disk /dev/sdb; meta-disk internal; }
             address 10.0.0.2:7788; }
}
"""
    toml, _, devices = import_drbdconf(text, "drbd.conf", NODES)
    assert devices == {"/dev/drbd0": "r0"}
    assert parse_cluster(HEAD + toml).disks["r0"].on["node2"].backing == "/dev/sdb"


def test_sdp_address_family_is_noted() -> None:
    text = _res().replace("address 10.0.0.1", "address sdp 10.0.0.1")
    assert _disk(text).on["node1"].address == "10.0.0.1"
    assert any(n.startswith("address sdp (drbd.conf line 4)") for n in _notes(text))


def test_ipv6_address() -> None:
    text = """resource r0 { net { shared-secret k; }
  on node1 { device /dev/drbd0; disk /dev/sdb; address ipv6 [fd00::1]:7788; }
  on node2 { device /dev/drbd0; disk /dev/sdb; address ipv6 [fd00::2]:7788; } }"""
    disk = _disk(text)
    assert (disk.on["node1"].address, disk.port) == ("fd00::1", 7788)


def test_external_meta_disk_is_noted() -> None:
    text = _res().replace("meta-disk internal", "meta-disk /dev/sdc1 [0]")
    notes = _notes(text)
    assert any("external meta-disk" in n and "/var/lib/kembar/r0.md" in n for n in notes)
    flexible = _res().replace("meta-disk internal", "flexible-meta-disk internal")
    assert any(n.startswith("flexible-meta-disk (drbd.conf line") for n in _notes(flexible))


def test_host_names_are_lower_cased_and_checked() -> None:
    text = _res().replace("on node1", "on Node1")
    assert "node1" in _disk(text).on
    assert any(n.startswith("on Node1 (drbd.conf line") for n in _notes(text))
    toml, _, _ = import_drbdconf(_res().replace("node2", "alpha"), "drbd.conf")
    assert "[disks.r0.on.alpha]" in toml  # without ha.cf's nodes, any name is taken


def test_resource_name_lower_case() -> None:
    text = _res(name="Data")
    toml, notes, devices = import_drbdconf(text, "drbd.conf", NODES)
    assert "[disks.data]" in toml and devices == {"/dev/drbd0": "data"}
    assert any(n.startswith("resource Data (drbd.conf line 1)") for n in notes)


def test_comments_strings_and_layout() -> None:
    text = """# drbd.conf
resource r0{net{shared-secret "a \\"quoted\\" {secret};#";}   # the secret
on node1{device /dev/drbd0;disk /dev/sdb;address 10.0.0.1:7788;}on node2{
device "/dev/drbd0"; disk
/dev/sdb; address 10.0.0.2:7788;}}"""
    assert _disk(text).secret_bytes() == b'a "quoted" {secret};#'


def test_empty_file() -> None:
    toml, notes, devices = import_drbdconf("# nothing\n\n", "/etc/drbd.conf", NODES)
    assert (toml, devices) == ("", {})
    assert notes == ["drbd.conf: no resources: no disks converted"]


@pytest.mark.parametrize("statement, start", [
    ("handlers { split-brain \"/usr/lib/drbd/notify-split-brain.sh root\"; }",
     "handlers split-brain (drbd.conf line 4)"),
    ("handlers { fence-peer \"/usr/lib/drbd/crm-fence-peer.sh\"; }",
     "handlers fence-peer (drbd.conf line 4)"),
    ("startup { become-primary-on node1; }", "startup become-primary-on (drbd.conf line 4)"),
    ("startup { wfc-timeout 0; }", "startup wfc-timeout (drbd.conf line 4)"),
    ("disk { on-io-error pass_on; }", "on-io-error (drbd.conf line 4)"),
    ("disk { fencing resource-only; }", "fencing (drbd.conf line 4)"),
    ("disk { no-disk-flushes; }", "no-disk-flushes (drbd.conf line 4)"),
    ("net { allow-two-primaries yes; }", "allow-two-primaries (drbd.conf line 4)"),
    ("net { data-integrity-alg crc32c; }", "data-integrity-alg (drbd.conf line 4)"),
    ("net { max-buffers 8000; }", "max-buffers (drbd.conf line 4)"),
    ("net { frobnicate 1; }", "frobnicate (drbd.conf line 4): unknown"),
    ("options { cpu-mask 1; }", "cpu-mask (drbd.conf line 4)"),
    ("proxy { memlimit 1; }", "section proxy (drbd.conf line 4)"),
    ("weird-statement 1;", "weird-statement (drbd.conf line 4): unknown"),
])
def test_every_statement_not_carried_over_is_noted(statement: str, start: str) -> None:
    text = _res("\n" + statement)
    _disk(text)
    assert any(n.startswith(start) for n in _notes(text)), _notes(text)


def test_top_level_notes() -> None:
    text = ("global { usage-count yes; minor-count 8; }\nskip { resource old { } }\n"
            "frob { }\n" + _res())
    notes = _notes(text)
    assert any(n.startswith("global usage-count (drbd.conf line 1)") for n in notes)
    assert any(n.startswith("global minor-count (drbd.conf line 1)") for n in notes)
    assert any(n.startswith("skip (drbd.conf line 2): skipped") for n in notes)
    assert any(n.startswith("section frob (drbd.conf line 3)") for n in notes)


def test_common_notes_are_written_once() -> None:
    text = "common { handlers { split-brain x; } }\n" + _res() + \
        _res(name="r1", port=7789, minor=1)
    assert sum("split-brain" in n for n in _notes(text)) == 1


# ------------------------------------------------------------------ handlers


def test_handlers_become_notify_hooks_run_by_a_shell() -> None:
    text = ('common { handlers { split-brain "/usr/lib/drbd/notify-split-brain.sh root"; '
            'initial-split-brain "logger sb"; fence-peer "/usr/lib/drbd/crm-fence-peer.sh"; '
            '} }\n' + _res('  handlers { local-io-error "/usr/lib/drbd/notify-io-error.sh; '
                          'echo o > /proc/sysrq-trigger"; }'))
    notify = _cfg(text).notify
    assert notify is not None
    assert notify.command("split_brain") == \
        ("/bin/sh", "-c", "/usr/lib/drbd/notify-split-brain.sh root")
    assert notify.command("initial_split_brain") == ("/bin/sh", "-c", "logger sb")
    assert notify.command("disk_detached") == \
        ("/bin/sh", "-c", "/usr/lib/drbd/notify-io-error.sh; echo o > /proc/sysrq-trigger")
    assert set(notify.configured()) == {"split_brain", "initial_split_brain", "disk_detached"}
    toml = import_drbdconf(text, "drbd.conf", NODES)[0]
    assert "# drbd.conf line 1: split-brain" in toml
    notes = _notes(text)
    assert any(n.startswith("handlers split-brain (drbd.conf line 1): carried over as "
                            "notify.split_brain, with /bin/sh -c") for n in notes)
    assert any(n.startswith("handlers local-io-error (drbd.conf line 4): carried over as "
                            "notify.disk_detached") and "call-local-io-error" in n for n in notes)
    assert any(n.startswith("handlers fence-peer (drbd.conf line 1): not carried over")
               for n in notes)


def test_handlers_that_differ_between_resources_are_noted() -> None:
    text = ('common { handlers { split-brain "/bin/common-sb"; } }\n'
            + _res('  handlers { split-brain "/bin/r1-sb"; }', name="r1", port=7789, minor=1)
            + _res(name="r0") + _res(name="r2", port=7790, minor=2))
    notify = _cfg(text).notify
    assert notify is not None and notify.command("split_brain") == \
        ("/bin/sh", "-c", "/bin/common-sb")
    assert any(n.startswith("handlers split-brain: kembar runs one notify.split_brain hook "
                            "for every disk: the one of drbd.conf line 1 is written; not "
                            "carried over: r1 (drbd.conf line 4)") for n in _notes(text)), \
        _notes(text)


def test_a_handler_of_one_resource_runs_for_every_disk() -> None:
    text = _res('  handlers { split-brain "/bin/sb"; }') + _res(name="r1", port=7789, minor=1)
    assert _cfg(text).notify is not None
    assert "handlers split-brain: resource r1 had none; notify.split_brain runs for every " \
           "disk (a hook can test $KEMBAR_DISK)" in _notes(text)


def test_no_handlers_no_notify_table() -> None:
    assert _cfg(_res()).notify is None
    assert _cfg(_res('  handlers { split-brain ""; }')).notify is None


def test_a_handler_with_two_values_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        _cfg(_res('  handlers { split-brain "/bin/a" "/bin/b"; }'))
    assert str(info.value).startswith("drbd.conf: line 3: split-brain: expected one value")


# ------------------------------------------------------------------ includes


def test_include_without_a_reader_is_noted() -> None:
    text = 'include "drbd.d/global_common.conf";\ninclude "drbd.d/*.res";\n'
    toml, notes, _ = import_drbdconf(text, "/etc/drbd.conf", NODES)
    assert toml == ""
    assert any(n.startswith("include drbd.d/*.res (drbd.conf line 2): not followed") for n in notes)


def test_include_with_a_reader() -> None:
    files = {"drbd.d/global_common.conf": "common { syncer { rate 50M; } }\n",
             "drbd.d/r0.res": "\n\n" + _res("  net { frob 1; }")}
    asked: list[tuple[str, str]] = []

    def reader(pattern: str, including: str) -> list[tuple[str, str]]:
        asked.append((pattern, including))
        if pattern == "drbd.d/*.res":
            return [("/etc/drbd.d/r0.res", files["drbd.d/r0.res"])]
        if pattern == "drbd.d/none*":
            return []
        return [("/etc/" + pattern, files[pattern])]

    text = ('include "drbd.d/global_common.conf";\ninclude "drbd.d/*.res";\n'
            'include "drbd.d/none*";\n')
    toml, notes, devices = import_drbdconf(text, "/etc/drbd.conf", NODES, reader)
    assert asked[0] == ("drbd.d/global_common.conf", "/etc/drbd.conf")
    assert devices == {"/dev/drbd0": "r0"}
    assert parse_cluster(HEAD + toml).disks["r0"].resync_rate == 50 * 1024**2
    assert "# r0.res line 3: resource r0" in toml
    assert any(n.startswith("frob (r0.res line 5)") for n in notes)
    assert any(n.startswith("include drbd.d/none* (drbd.conf line 3): no file") for n in notes)


def test_include_errors_name_the_included_file() -> None:
    def reader(pattern: str, including: str) -> list[tuple[str, str]]:
        return [("/etc/drbd.d/bad.res", "resource r0 {\n  protocol D;\n}\n")]

    with pytest.raises(ConfigError, match=r"^/etc/drbd\.d/bad\.res: line 2: protocol"):
        import_drbdconf('include "drbd.d/*.res";', "/etc/drbd.conf", NODES, reader)


def test_include_loop_is_an_error() -> None:
    def reader(pattern: str, including: str) -> list[tuple[str, str]]:
        return [("/etc/drbd.conf", 'include "drbd.conf";\n')]

    with pytest.raises(ConfigError, match="includes nested more than 8 deep"):
        import_drbdconf('include "drbd.conf";\n', "/etc/drbd.conf", NODES, reader)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("text, line, problem", [
    (_res().replace("10.0.0.2:7788", "10.0.0.2:7789"), 1, "the hosts listen on different ports"),
    (_res() + _res(name="r1", minor=1), 7, "port 7788 is already used by resource r0"),
    (_res() + _res(name="r1", port=7789), 10, "device /dev/drbd0 is already the device of"
                                             " resource r0"),
    ("resource r0 { on node1 { device /dev/drbd0; disk /dev/sdb; address 10.0.0.1:7788; } }",
     1, "exactly two 'on HOST' sections, found 1"),
    (_res().replace("disk /dev/sdb; address 10.0.0.1", "address 10.0.0.1"), 4, "no 'disk'"),
    (_res().replace("address 10.0.0.1:7788; ", ""), 4, "no 'address'"),
    (_res().replace("device /dev/drbd0; disk /dev/sdb; address 10.0.0.1", "disk /dev/sdb; "
                    "address 10.0.0.1"), 4, "no 'device'"),
    (_res().replace("disk /dev/sdb; address 10.0.0.1", "disk none; address 10.0.0.1"), 4,
     "disk none: node1 would be diskless"),
    (_res().replace("disk /dev/sdb; address 10.0.0.1", "disk sdb; address 10.0.0.1"), 4,
     "is not an absolute path"),
    (_res().replace("10.0.0.1:7788", "10.0.0.1"), 4, "is not IP:PORT"),
    (_res().replace("10.0.0.1:7788", "node1:7788"), 4, "node1 is not an IP address"),
    (_res().replace("10.0.0.1:7788", "10.0.0.1:70000"), 4, "invalid port 70000"),
    (_res().replace("address 10.0.0.1", "address ipv6 10.0.0.1"), 4, "not an ipv6 address"),
    (_res().replace("device /dev/drbd0; disk /dev/sdb; address 10.0.0.1", "device drbd0; "
                    "disk /dev/sdb; address 10.0.0.1"), 4, "device: expected"),
    (_res("  protocol D;"), 3, "protocol: expected A, B or C, got D"),
    (_res("  protocol;"), 3, "protocol: expected one value"),
    (_res("  net { timeout 0; }"), 3, "timeout: invalid value 0 (a whole number from 1 to 600 "
                                      "tenths of a second"),
    (_res("  net { timeout 601; }"), 3, "timeout: invalid value 601"),
    (_res("  net { ping-int ²; }"), 3, "ping-int: invalid value"),
    (_res("  net { connect-int 1.5; }"), 3, "connect-int: invalid value"),
    (_res("  net { timeout 5; }"), 3, "ping-timeout (500ms) must be below timeout (500ms)"),
    (_res("  syncer { al-extents 5; }"), 3, "al-extents: invalid value 5"),
    (_res("  syncer { rate fast; }"), 3, "rate: invalid rate fast"),
    (_res("  syncer { rate 100T; }"), 3, "rate: invalid rate"),
    (_res("  syncer { rate 5G; }"), 3, "out of DRBD's range"),
    (_res(f"  net {{ shared-secret \"{'x' * 65}\"; }}"), 3, "longer than 64 characters"),
    (_res().replace("on node2", "on node3"), 5, "on node3: not a node of ha.cf (nodes: node1, "
                                                "node2)"),
    (_res().replace("on node2", "on node1"), 5, "a second section for the same host"),
    (_res().replace("on node2", "on bad_name!"), 5, "invalid node name"),
    (_res() + _res(), 7, "resource r0 is already defined on drbd.conf line 1"),
    (_res(name="Bad.Name"), 1, "not usable as a kembar disk name"),
    ("resource { }", 1, "resource: expected 'resource NAME"),
    ("resource r0 {\n floating 10.0.0.1:7788 { }\n}", 2, "floating sections are not supported"),
    ("resource r0 {\n on node1 {\n volume 0 { device minor 0; }\n volume 1 { device minor 1; }\n}}",
     4, "a second volume"),
    ('resource r0 { net { shared-secret "abc; } }', 1, "unterminated string"),
    ("resource r0 {\n protocol C\n}", 2, "missing ';' after protocol C"),
    ("resource r0 { }\n}", 2, "unexpected '}'"),
    ("resource r0 {\n on node1 {\n", 2, "section on node1 is not closed"),
    ("{ }", 1, "'{' without a section name"),
    ("global { usage-count no; };", 1, "unexpected ';'"),
    ("global { usage-count no; }\nprotocol", 2, "missing ';' after protocol"),
    ("common r0 { }", 1, "common: expected 'common"),
    (_res("  net { foo; }").replace("net {", "net x {", 1), 2, "net: unexpected x before '{'"),
])
def test_errors(text: str, line: int, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        import_drbdconf(text, "drbd.conf", NODES)
    message = str(info.value)
    assert message.startswith(f"drbd.conf: line {line}: "), message
    assert problem in message, message
    assert "\n" not in message


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(ConfigError, match="nested more than"):
        import_drbdconf("a {" * 10_000 + "}" * 10_000, "drbd.conf", NODES)


# ------------------------------------------------------------------ never another exception

_WORD = st.sampled_from(["resource", "r0", "r1", "on", "node1", "node2", "node3", "device",
                         "/dev/drbd0", "/dev/drbd1", "disk", "/dev/sdb", "none", "address",
                         "10.0.0.1:7788", "10.0.0.2:7788", "10.0.0.2:7789", "meta-disk",
                         "internal", "protocol", "C", "net", "syncer", "rate", "33M",
                         "timeout", "60", "5", "ping-timeout", "shared-secret", "common",
                         "include", "volume", "0", "minor", "after-sb-0pri", "csums-alg",
                         "md5", "al-extents", "c-max-rate", "c-plan-ahead", "handlers",
                         "startup", "global", "skip", "ipv6", "[::1]:7788"])
_PIECE = st.one_of(_WORD, _WORD, _WORD, st.sampled_from(["{", "}", ";", "\n", '"', "#"]),
                   st.text(max_size=6))
_VALID = st.sampled_from([
    _res(), _res(name="r1", port=7789, minor=1), UBUNTU_DRBD,
    "common { net { timeout 90; ping-timeout 20; } }\n",
    "global { usage-count no; }\n", _res("  syncer { rate 10M; verify-alg md5; }", name="r2",
                                          port=7790, minor=2),
    "resource r3 {\n" + _hosts("r3", 7791, 3).replace("10.0.0.2", "10.0.0.9") + "}\n",
])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_config_error(text: str) -> None:
    try:
        toml, notes, _ = import_drbdconf(text, "drbd.conf", NODES)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    parse_cluster(HEAD + toml)
    assert all(note and "\n" not in note for note in notes)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_VALID, st.lists(_PIECE, max_size=25).map(" ".join)), max_size=5))
def test_mixed_text_imports_or_config_error(parts: list[str]) -> None:
    text = "\n".join(parts)
    try:
        toml, notes, devices = import_drbdconf(text, "drbd.conf", NODES)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    cfg = parse_cluster(HEAD + toml)
    assert set(devices.values()) == set(cfg.disks)
    assert all(note and "\n" not in note for note in notes)


# ------------------------------------------------------------------ the CLI


def _invoke(tmp: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["config", "import", "--hacf", str(tmp / "ha.cf"),
                                      "--authkeys-output", str(tmp / "keys"), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture()
def etc(tmp_path: Path) -> Path:
    (tmp_path / "ha.cf").write_text(PAPER_HACF)
    (tmp_path / "empty").write_text("")
    (tmp_path / "drbd.d").mkdir()
    (tmp_path / "drbd.conf").write_text('include "drbd.d/global_common.conf";\n'
                                        'include "drbd.d/*.res";\n')
    (tmp_path / "drbd.d" / "global_common.conf").write_text(
        "global { usage-count no; }\ncommon { syncer { rate 100M; } }\n")
    (tmp_path / "drbd.d" / "r0.res").write_text(UBUNTU_DRBD.split("\n", 2)[2])
    return tmp_path


def test_cli_follows_includes(etc: Path) -> None:
    code, out, err = _invoke(etc, "--drbd-conf", str(etc / "drbd.conf"), "-o",
                             str(etc / "cluster.toml"), "--haresources", str(etc / "empty"))
    assert code == 0, err
    assert out.startswith("ok: cluster 'ha', 2 nodes, 1 disk (r0: protocol C, port 7788)")
    assert f"wrote {etc / 'cluster.toml'} (mode 600)" in out  # the shared secret is inside
    assert (etc / "cluster.toml").stat().st_mode & 0o777 == 0o600
    disk = parse_cluster((etc / "cluster.toml").read_text()).disks["r0"]
    assert disk.resync_rate == 100 * 1024**2
    assert "kembar: note: global usage-count (global_common.conf line 1)" in err
    # ha.cf alone asks for node addresses; drbd.conf gave them.
    assert "ha.cf has no node addresses" not in err


def test_cli_missing_explicit_drbd_conf(etc: Path) -> None:
    code, out, err = _invoke(etc, "--drbd-conf", str(etc / "nope.conf"), "-o",
                             str(etc / "cluster.toml"))
    assert code == 2 and out == ""
    assert err.splitlines() == [f"kembar: error: {etc / 'nope.conf'}: cannot read: No such file "
                                "or directory"]
    assert not (etc / "cluster.toml").exists()


def test_cli_missing_include_and_bad_drbd_conf(etc: Path) -> None:
    (etc / "drbd.conf").write_text('include "drbd.d/missing.conf";\n')
    code, _, err = _invoke(etc, "--drbd-conf", str(etc / "drbd.conf"))
    assert code == 2
    assert err.splitlines() == [f"kembar: error: {etc / 'drbd.d/missing.conf'}: cannot read: "
                                "No such file or directory"]
    (etc / "drbd.conf").write_text(UBUNTU_DRBD.replace("on node2", "on node9"))
    code, _, err = _invoke(etc, "--drbd-conf", str(etc / "drbd.conf"), "-o",
                           str(etc / "cluster.toml"))
    assert code == 2
    assert err.splitlines() == [f"kembar: error: {etc / 'drbd.conf'}: line 19: on node9: not a "
                                "node of ha.cf (nodes: node1, node2)"]
    assert not (etc / "cluster.toml").exists()


@pytest.mark.skipif(os.path.lexists("/etc/drbd.conf"), reason="this host has a drbd.conf")
def test_cli_without_drbd_conf_notes_it(etc: Path) -> None:
    code, out, err = _invoke(etc, "-o", str(etc / "cluster.toml"))
    assert code == 0, err
    assert "kembar: note: no /etc/drbd.conf: no disks converted" in err.splitlines()
    assert ", 0 disks;" in out


def test_on_io_error_detach_is_carried_over() -> None:
    text = _res("\ndisk { on-io-error detach; }")
    assert _disk(text).on_io_error == "detach"
    assert not any("on-io-error" in n for n in _notes(text))
    toml, _, _ = import_drbdconf(text, "/etc/drbd.conf", NODES)
    assert 'on_io_error = "detach"' in toml


@pytest.mark.parametrize("value", ["pass_on", "call-local-io-error"])
def test_other_on_io_error_values_get_a_note(value: str) -> None:
    text = _res(f"\ndisk {{ on-io-error {value}; }}")
    assert _disk(text).on_io_error == "detach"
    notes = [n for n in _notes(text) if n.startswith("on-io-error")]
    assert len(notes) == 1 and value in notes[0] and "failover" in notes[0], notes


def test_unknown_on_io_error_is_an_error() -> None:
    with pytest.raises(ConfigError, match="on-io-error: expected pass_on, call-local-io-error, "
                                          "detach"):
        import_drbdconf(_res("\ndisk { on-io-error explode; }"), "/etc/drbd.conf", NODES)
