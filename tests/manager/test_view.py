"""From membership and reports to the policy's view, and what the policy then decides."""

from __future__ import annotations

from kembar.manager.policy import decide
from kembar.manager.report import DiskReport, Report
from kembar.manager.view import GroupSpec, Member, fencer, group_view, newest_wish

WEB = GroupSpec("web", "node1", True, ("r0",))
OK = {"r0": DiskReport("UpToDate", True, False)}


def members(n1: bool = True, n2: bool = True, **kw: Member) -> dict[str, Member]:
    out = {"node1": Member("node1", n1, incarnation=3), "node2": Member("node2", n2,
                                                                        incarnation=5)}
    out.update(kw)
    return out


def kinds(spec: GroupSpec, m: dict[str, Member], r: dict[str, Report], fencing: bool = False
          ) -> list[tuple[str, str]]:
    return [(a.kind, a.node) for a in decide(group_view(spec, m, r, fencing))]


def test_fresh_cluster_starts_on_the_preferred_node() -> None:
    r = {"node1": Report(disks=OK), "node2": Report(disks=OK)}
    assert kinds(WEB, members(), r) == [("start", "node1")]


def test_the_worst_disk_of_the_group_counts() -> None:
    spec = GroupSpec("web", "node1", False, ("r0", "r1"))
    r = {"node1": Report(disks={"r0": DiskReport("UpToDate", True), "r1": DiskReport(
        "Inconsistent")}), "node2": Report(disks={"r0": DiskReport("UpToDate", True),
                                                  "r1": DiskReport("UpToDate", True)})}
    v = group_view(spec, members(), r, False)
    n1 = v.node("node1")
    assert n1 is not None and n1.disk == "Inconsistent"
    assert kinds(spec, members(), r) == [("start", "node2")]


def test_a_dead_owner_is_fenced_first_then_the_survivor_starts() -> None:
    m = members(n1=False)
    r = {"node1": Report(groups={"web": "running"}, disks=OK), "node2": Report(disks=OK)}
    assert kinds(WEB, m, r, fencing=True) == [("fence", "node1")]
    assert fencer(m) == "node2"
    # fenced for an older incarnation of node1 does not count
    r["node2"] = Report(disks=OK, fenced={"node1": 2})
    assert kinds(WEB, m, r, fencing=True) == [("fence", "node1")]
    r["node2"] = Report(disks=OK, fenced={"node1": 3})
    assert kinds(WEB, m, r, fencing=True) == [("start", "node2")]
    assert kinds(WEB, m, {**r, "node2": Report(disks=OK)}, fencing=False) == [("start", "node2")]


def test_a_clean_stop_needs_no_fencing() -> None:
    m = members(node1=Member("node1", False, clean_stop=True, incarnation=3))
    r = {"node1": Report(disks=OK), "node2": Report(disks=OK)}
    assert kinds(WEB, m, r, fencing=True) == [("start", "node2")]


def test_the_newest_takeover_wish_wins_and_pins_the_group() -> None:
    r = {"node1": Report(groups={"web": "running"}, disks=OK, takeover={"web": 100}),
         "node2": Report(disks=OK, takeover={"web": 200})}
    assert newest_wish("web", members(), r) == "node2"
    assert kinds(WEB, members(), r) == [("stop", "node1")]
    r = {"node1": Report(disks=OK), "node2": Report(groups={"web": "running"}, disks=OK,
                                                     takeover={"web": 200})}
    assert kinds(WEB, members(), r) == []  # pinned: no auto_failback while the wish holds
    del r["node2"].takeover["web"]
    assert kinds(WEB, members(), r) == [("stop", "node2")]  # auto_failback home


def test_a_dead_node_wish_does_not_count() -> None:
    r = {"node1": Report(disks=OK), "node2": Report(disks=OK, takeover={"web": 1})}
    assert newest_wish("web", members(n2=False), r) is None


def test_failback_waits_for_the_resync_of_the_returning_node() -> None:
    r = {"node1": Report(disks={"r0": DiskReport("UpToDate", False)}),
         "node2": Report(groups={"web": "running"}, disks=OK)}
    assert kinds(WEB, members(), r) == [("wait", "node1")]
    r["node1"] = Report(disks=OK)
    assert kinds(WEB, members(), r) == [("stop", "node2")]


def test_a_starting_or_stopping_group_counts_as_running() -> None:
    for state in ("starting", "stopping"):
        r = {"node1": Report(disks=OK), "node2": Report(groups={"web": state}, disks=OK)}
        assert ("start", "node1") not in kinds(WEB, members(), r)


def test_a_node_where_the_group_failed_is_skipped() -> None:
    r = {"node1": Report(failed=("web",), disks=OK), "node2": Report(disks=OK)}
    assert kinds(WEB, members(), r) == [("start", "node2")]
    r["node2"] = Report(failed=("web",), disks=OK)
    assert [k for k, _ in kinds(WEB, members(), r)] == ["wait"]


def test_the_disk_peer_primary_blocks_a_start() -> None:
    """node1 died Primary; node2's disk still holds the connection to it: no start until
    the disk let go of it (the daemon asks it to, with check-peer)."""
    m = members(n1=False)
    r = {"node1": Report(groups={"web": "running"}, disks={"r0": DiskReport(
        "UpToDate", True, False, True)}),
        "node2": Report(disks={"r0": DiskReport("UpToDate", True, True)})}
    assert [k for k, _ in kinds(WEB, m, r)] == ["wait"]
    r["node2"] = Report(disks=OK)
    assert kinds(WEB, m, r) == [("start", "node2")]


def test_a_handover_does_not_wait_for_an_old_view_of_the_peer() -> None:
    """node2 stopped the group for the failback (its disk Secondary now, in its report);
    node1's last report still says its peer is Primary: node1 starts, node2 waits."""
    r = {"node1": Report(disks={"r0": DiskReport("UpToDate", True, True)}),
         "node2": Report(disks=OK)}
    assert kinds(WEB, members(), r) == [("start", "node1")]
    r["node2"] = Report(groups={"web": "running"}, disks={"r0": DiskReport(
        "UpToDate", True, False, True)})
    assert kinds(WEB, members(), r) == [("stop", "node2")]


def test_the_views_generation_is_every_disk_of_the_group_or_unknown() -> None:
    spec = GroupSpec("web", "node1", False, ("r0", "r1"))
    a = DiskReport("UpToDate", False, connected=False, gen="00000000000000AA:0000000000000000")
    r = {"node1": Report(disks={"r0": a, "r1": a}),
         "node2": Report(disks={"r0": a, "r1": DiskReport("UpToDate")})}
    v = group_view(spec, members(), r, False)
    n1, n2 = v.node("node1"), v.node("node2")
    assert n1 is not None and n2 is not None
    assert n1.disk_gen == "00000000000000AA:0000000000000000,00000000000000AA:" \
        "0000000000000000" and not n1.disk_connected
    assert n2.disk_gen == ""  # one disk of unknown generation: the whole is unknown
    assert kinds(spec, members(), r) == [("wait", "node1")]
