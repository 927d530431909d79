"""``[groups.<name>]``: resource groups in the cluster file, and one-line errors."""

from __future__ import annotations

import pytest

from kembar.config import parse_cluster
from kembar.errors import ConfigError

BASE = """
[cluster]
name = "web"
auto_failback = true
[nodes.node1]
address = "198.18.0.1"
[nodes.node2]
address = "198.18.0.2"
[disks.r0]
secret = "0123456789abcdef"
[disks.r0.on.node1]
backing = "/dev/vdb"
[disks.r0.on.node2]
backing = "/dev/vdb"
"""

GROUP = BASE + """
[groups.web]
preferred = "node1"
[[groups.web.resources]]
type = "disk"
disk = "r0"
[[groups.web.resources]]
type = "filesystem"
device = "/dev/kembar/r0"
directory = "/srv/data"
[[groups.web.resources]]
type = "service"
name = "site"
command = ["gunicorn", "site:app"]
timeout = "20s"
[[groups.web.resources]]
type = "ip"
address = "198.18.0.100/24"
interface = "eth0"
[[groups.web.resources]]
type = "script"
path = "/etc/ha.d/resource.d/IPaddr"
args = ["198.18.0.101/24/eth0"]
[[groups.web.resources]]
type = "probe"
url = "http://198.18.0.100/"
monitor_interval = "500ms"
restarts = 0
"""


def test_a_group_reads_in_order_with_defaults() -> None:
    cfg = parse_cluster(GROUP)
    g = cfg.groups["web"]
    assert g.preferred == "node1"
    assert [r.type for r in g.resources] == ["disk", "filesystem", "service", "ip", "script",
                                             "probe"]
    fs, svc, ip, probe = g.resources[1], g.resources[2], g.resources[3], g.resources[5]
    assert fs.fstype == "ext4" and fs.timeout == 60.0  # type: ignore[union-attr]
    assert svc.timeout == 20.0 and svc.restarts == 3
    assert ip.arp_count == 5 and ip.arp_interval == 0.2  # type: ignore[union-attr]
    assert probe.monitor_interval == 0.5 and probe.restarts == 0
    assert cfg.auto_failback("web") is True  # from [cluster]
    assert g.failure_timeout == 0.0  # failures stay until `kembar cleanup`, as Pacemaker's
    text = GROUP.replace('preferred = "node1"', 'preferred = "node1"\nfailure_timeout = "2m"')
    assert parse_cluster(text).groups["web"].failure_timeout == 120.0
    assert g.resources[4].describe() == "script /etc/ha.d/resource.d/IPaddr::198.18.0.101/24/eth0"


def test_group_auto_failback_overrides_the_cluster() -> None:
    text = GROUP.replace('preferred = "node1"', 'preferred = "node1"\nauto_failback = false')
    assert parse_cluster(text).auto_failback("web") is False


@pytest.mark.parametrize("change, message", [
    (('preferred = "node1"', 'preferred = "node9"'), r"groups\.web\.preferred: unknown node"),
    (('disk = "r0"', 'disk = "r9"'), r"groups\.web\.resources\.0\.disk: unknown disk 'r9'"),
    (('type = "disk"', 'type = "dsik"'), r"unknown type 'dsik'"),
    (('type = "disk"\n', ''), r"type is required"),
    (('directory = "/srv/data"', 'directory = "srv/data"'), r"must be an absolute path"),
    (('address = "198.18.0.100/24"', 'address = "198.18.0.300/24"'), r"not an address"),
    (('restarts = 0', 'restarts = -1'), r"restarts"),
    (('groups.web', 'groups.Web'), r"invalid group name"),
    (('timeout = "20s"', 'timeout = "soon"'), r"timeout"),
    (('preferred = "node1"', 'preferred = "node1"\nfailure_timeout = "-5s"'),
     r"failure_timeout"),
    (('interface = "eth0"', 'interface = "eth0"\ncolour = "red"'), r"colour"),
])
def test_bad_groups_give_one_clear_error(change: tuple[str, str], message: str) -> None:
    text = GROUP.replace(*change)
    assert text != GROUP
    with pytest.raises(ConfigError, match=message):
        parse_cluster(text)


def test_a_group_without_resources_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"at least one resource"):
        parse_cluster(BASE + '[groups.web]\npreferred = "node1"\nresources = []\n')


CLONED = BASE + """
[groups.web]
preferred = "node1"
[[groups.web.resources]]
type = "service"
name = "site"
command = ["gunicorn", "site:app"]
clone = true
[[groups.web.resources]]
type = "script"
path = "/etc/ha.d/resource.d/cache"
clone = true
[[groups.web.resources]]
type = "ip"
address = "198.18.0.100/24"
"""


def test_clones_come_first_and_are_counted() -> None:
    g = parse_cluster(CLONED).groups["web"]
    assert g.clone_count == 2
    assert parse_cluster(GROUP).groups["web"].clone_count == 0


@pytest.mark.parametrize("text, message", [
    # a clone after a resource that moves: it would lack what comes before it elsewhere
    (GROUP.replace('timeout = "20s"', 'timeout = "20s"\nclone = true'),
     r"resource 3 \(service site\) is a clone after one that is not \(disk r0\)"),
    # only clones: nothing moves, so the group would have no owner worth the name
    (CLONED.replace('type = "ip"\naddress = "198.18.0.100/24"\n',
                    'type = "script"\npath = "/x"\nclone = true\n'),
     r"every resource is a clone"),
    (CLONED.replace("clone = true", 'clone = "yes"', 1), r"clone"),
    # only services and scripts can be clones
    (CLONED.replace('address = "198.18.0.100/24"', 'address = "198.18.0.100/24"\nclone = true'),
     r"clone"),
])
def test_bad_clones_give_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_cluster(text)


VMAC = BASE + """
[groups.web]
preferred = "node1"
[[groups.web.resources]]
type = "ip"
address = "198.18.0.100/24"
interface = "eth0"
vmac = "auto"
"""


def test_vmac_auto_is_the_same_mac_on_every_node() -> None:
    ip = parse_cluster(VMAC).groups["web"].resources[0]
    assert ip.mac() == "02:6b:c6:12:00:64"  # type: ignore[union-attr]
    text = VMAC.replace('vmac = "auto"', 'vmac = "02:AA:bb:cc:dd:ee"')
    assert parse_cluster(text).groups["web"].resources[0].mac() == "02:aa:bb:cc:dd:ee"  # type: ignore[union-attr]


@pytest.mark.parametrize("change, message", [
    (('vmac = "auto"', 'vmac = "01:00:5e:00:00:01"'), r"not a unicast MAC"),
    (('vmac = "auto"', 'vmac = "zz"'), r"not a unicast MAC"),
    (('vmac = "auto"', "vmac = true"), r"vmac"),
    (('interface = "eth0"\n', ''), r"vmac needs interface"),
    (('198.18.0.100/24', '2001:db8::100/64'), r"vmac is for IPv4"),
])
def test_bad_vmac_gives_one_clear_error(change: tuple[str, str], message: str) -> None:
    text = VMAC.replace(*change)
    assert text != VMAC
    with pytest.raises(ConfigError, match=message):
        parse_cluster(text)


def test_fencing_priority_delay_is_a_duration_off_by_default() -> None:
    fence = '\n[fencing]\ncommand = ["fence-node", "{node}"]\n'
    assert parse_cluster(GROUP + fence).fencing.priority_delay == 0.0  # type: ignore[union-attr]
    cfg = parse_cluster(GROUP + fence + 'priority_delay = "5s"\n')
    assert cfg.fencing is not None and cfg.fencing.priority_delay == 5.0
    for bad, message in (('"-1s"', r"priority_delay"), ('"10m"', r"priority_delay.*300"),
                         ("true", r"priority_delay.*boolean"), ('"soon"', r"priority_delay")):
        with pytest.raises(ConfigError, match=message):
            parse_cluster(GROUP + fence + f"priority_delay = {bad}\n")
