"""The manager's policy: a pure function, tested rule by rule and with hypothesis."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from kembar.manager.policy import Action, Group, Node, View, decide, eligible

N1, N2 = Node("node1", True), Node("node2", True)
WEB = Group("web", "node1", auto_failback=True)


def one(v: View) -> Action:
    acts = decide(v)
    assert len(acts) == 1, acts
    return acts[0]


def test_starts_on_the_preferred_node() -> None:
    a = one(View((N1, N2), (WEB,)))
    assert (a.kind, a.node) == ("start", "node1") and "runs nowhere" in str(a)


def test_the_other_node_takes_over_when_the_owner_dies() -> None:
    g = replace(WEB, running_on=("node1",))
    a = one(View((replace(N1, alive=False), N2), (g,)))
    assert (a.kind, a.node) == ("start", "node2")
    assert "node1 is dead" in a.why and "node1 is dead" in str(a)


def test_fencing_first_when_on_unless_the_owner_stopped_cleanly() -> None:
    g = replace(WEB, running_on=("node1",))
    dead = replace(N1, alive=False)
    assert one(View((dead, N2), (g,), fencing=True)).kind == "fence"
    assert one(View((replace(dead, fenced=True), N2), (g,), fencing=True)).kind == "start"
    assert one(View((replace(dead, clean_stop=True), N2), (g,), fencing=True)).kind == "start"


def test_auto_failback_waits_for_the_resync_then_hands_over_in_order() -> None:
    g = replace(WEB, running_on=("node2",))
    resyncing = replace(N1, disk="Inconsistent", disk_synced=False)
    a = one(View((resyncing, N2), (g,)))
    assert a.kind == "wait" and "Inconsistent" in a.why
    a = one(View((replace(N1, disk_synced=False), N2), (g,)))
    assert a.kind == "wait" and "resyncing" in a.why
    # a group with clones: they run on node1 before the handover (no start to wait for)
    a = one(View((replace(N1, ready=False), N2), (g,)))
    assert a.kind == "wait" and "clones of web are not running on node1" in a.why
    a = one(View((N1, N2), (g,)))
    assert (a.kind, a.node) == ("stop", "node2") and "auto_failback" in a.why
    # after the stop the group runs nowhere: it starts at home
    assert one(View((N1, N2), (replace(g, running_on=()),))).node == "node1"
    # with auto_failback off, node2 keeps it
    assert decide(View((N1, N2), (replace(g, auto_failback=False),))) == []


def test_never_on_two_nodes() -> None:
    g = replace(WEB, running_on=("node1", "node2"))
    a = one(View((N1, N2), (g,)))
    assert (a.kind, a.node) == ("stop", "node2")


def test_standby_and_takeover_move_the_group_with_an_orderly_stop() -> None:
    g = replace(WEB, running_on=("node1",))
    a = one(View((replace(N1, standby=True), N2), (g,)))
    assert (a.kind, a.node) == ("stop", "node1")
    a = one(View((replace(N1, standby=True), N2), (replace(g, running_on=()),)))
    assert (a.kind, a.node) == ("start", "node2")
    t = replace(g, takeover_to="node2")
    assert one(View((N1, N2), (t,))).kind == "stop"
    a = one(View((N1, N2), (replace(t, running_on=()),)))
    assert (a.kind, a.node) == ("start", "node2") and "takeover" in a.why
    a = one(View((N1, replace(N2, disk="Outdated")), (t,)))
    assert a.kind == "wait" and "Outdated" in a.why


def test_a_group_that_failed_moves_and_does_not_come_back_there() -> None:
    g = replace(WEB, running_on=("node1",), failed_on=("node1",))
    assert one(View((N1, N2), (g,))).kind == "stop"
    a = one(View((N1, N2), (replace(g, running_on=()),)))
    assert a.node == "node2"


def test_the_better_connected_node_runs_the_group() -> None:
    g = replace(WEB, running_on=("node1",))
    a = one(View((replace(N1, ping=0), replace(N2, ping=1)), (g,)))
    assert (a.kind, a.node) == ("stop", "node1") and "ping" in a.why
    a = one(View((replace(N1, ping=0), replace(N2, ping=1)), (replace(g, running_on=()),)))
    assert a.node == "node2"


def test_never_promoted_where_the_disk_cannot_be() -> None:
    for disk in ("Outdated", "Inconsistent", "Diskless"):
        a = one(View((replace(N1, disk=disk), replace(N2, alive=False)), (WEB,)))
        assert a.kind == "wait" and disk in a.why
    a = one(View((replace(N1, peer_primary=True), replace(N2, primary=True)), (WEB,)))
    assert a.node == "node2"
    # node1's view that its peer is Primary is older than node2's own word that it is not
    a = one(View((replace(N1, peer_primary=True), N2), (WEB,)))
    assert a.node == "node1"
    # Consistent is enough only when the peer is dead
    assert one(View((replace(N1, disk="Consistent"), replace(N2, alive=False)), (WEB,))
               ).kind == "start"
    assert eligible(View((replace(N1, disk="Consistent"), N2), (WEB,)), WEB,
                    replace(N1, disk="Consistent")) is not None


nodes = st.builds(Node, st.sampled_from(["node1", "node2"]), st.booleans(), st.integers(0, 2),
                  st.booleans(), st.sampled_from(["UpToDate", "Consistent", "Outdated",
                                                  "Inconsistent", "Diskless"]),
                  st.booleans(), st.booleans(), st.booleans(), st.booleans())
subsets = st.lists(st.sampled_from(["node1", "node2"]), unique=True, max_size=2).map(tuple)


@given(st.tuples(nodes, nodes).filter(lambda t: t[0].name != t[1].name),
       st.builds(Group, st.just("web"), st.sampled_from(["node1", "node2"]), st.booleans(),
                 subsets, subsets, st.sampled_from([None, "node1", "node2"])),
       st.booleans())
def test_invariants(ns: tuple[Node, Node], g: Group, fencing: bool) -> None:
    v = View(ns, (g,), fencing)
    acts = decide(v)
    starts = [a for a in acts if a.kind == "start"]
    assert len(starts) <= 1
    live_runs = [n for n in g.running_on if v.node(n) and v.node(n).alive]  # type: ignore[union-attr]
    if live_runs:
        assert not starts  # a running group is stopped first, never started a second time
    for a in starts:
        node = v.node(a.node)
        assert node is not None and eligible(v, g, node) is None
        for owner in g.running_on:  # a dead, unclean owner is fenced before a takeover
            o = v.node(owner)
            if fencing and o is not None and not o.alive and not o.clean_stop:
                assert o.fenced
    for a in acts:
        assert a.why and a.group == "web" and str(a)
