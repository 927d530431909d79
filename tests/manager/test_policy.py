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


def test_priority_fencing_the_owner_shoots_first_the_other_waits_its_delay() -> None:
    """Pacemaker's priority-fencing-delay: every link cut, each node sees the other dead.
    The owner's view: fence the lost peer at once and keep the group; the other's view:
    fence the owner only after the delay (the daemon waits it)."""
    g = replace(WEB, running_on=("node1",))
    # node1's side: node2 dead, node1 runs the group
    owner_side = View((N1, replace(N2, alive=False)), (g,), fencing=True, priority_fencing=True)
    a = one(owner_side)
    assert (a.kind, a.node, a.keeps, a.delayed) == ("fence", "node2", "node1", False)
    assert "so that web stays on node1" in str(a) and "priority fencing" in a.why
    # ... but not a peer that stopped cleanly, nor one already fenced, nor without priority
    for peer in (replace(N2, alive=False, clean_stop=True), replace(N2, alive=False, fenced=True)):
        assert decide(View((N1, peer), (g,), fencing=True, priority_fencing=True)) == []
    assert decide(View((N1, replace(N2, alive=False)), (g,), fencing=True)) == []
    # node2's side: node1 (the owner) dead: fence it, marked to wait the delay
    other_side = View((replace(N1, alive=False), N2), (g,), fencing=True,
                      priority_fencing=True)
    a = one(other_side)
    assert (a.kind, a.node, a.delayed, a.keeps) == ("fence", "node1", True, "")
    assert "after the priority fencing delay" in str(a)
    # without priority fencing the same fence has no delay
    assert not one(replace(other_side, priority_fencing=False)).delayed
    # once node1 is fenced, node2 takes over as before
    fenced = replace(other_side, nodes=(replace(N1, alive=False, fenced=True), N2))
    assert (one(fenced).kind, one(fenced).node) == ("start", "node2")


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
                                                  "Inconsistent", "Diskless", "Down"]),
                  st.booleans(), st.booleans(), st.booleans(), st.booleans())
subsets = st.lists(st.sampled_from(["node1", "node2"]), unique=True, max_size=2).map(tuple)


@given(st.tuples(nodes, nodes).filter(lambda t: t[0].name != t[1].name),
       st.builds(Group, st.just("web"), st.sampled_from(["node1", "node2"]), st.booleans(),
                 subsets, subsets, st.sampled_from([None, "node1", "node2"])),
       st.booleans(), st.booleans())
def test_invariants(ns: tuple[Node, Node], g: Group, fencing: bool, priority: bool) -> None:
    v = View(ns, (g,), fencing, priority)
    acts = decide(v)
    starts = [a for a in acts if a.kind == "start"]
    assert len(starts) <= 1
    live_runs = [n for n in g.running_on if v.node(n) and v.node(n).alive]  # type: ignore[union-attr]
    if live_runs:
        assert not starts  # a running group is stopped first, never started a second time
    for a in starts:
        node = v.node(a.node)
        assert node is not None
        # a node whose disk process is gone starts only when no other node can
        assert eligible(v, g, node) is None or node.disk == "Down" and eligible(
            v, g, node, down_ok=True) is None and not any(
            eligible(v, g, o) is None for o in v.nodes)
        for owner in g.running_on:  # a dead, unclean owner is fenced before a takeover
            o = v.node(owner)
            if fencing and o is not None and not o.alive and not o.clean_stop:
                assert o.fenced
    for a in acts:
        assert a.why and a.group == "web" and str(a)
        if a.kind == "fence":  # only the dead are fenced, never a clean stop, never twice
            victim = v.node(a.node)
            assert victim is not None and not victim.alive and not victim.clean_stop
            assert not victim.fenced and fencing
            assert not a.delayed or priority  # a delay only under priority fencing


def test_monitor_failure_restarts_then_fails_and_a_dead_disk_fails_at_once() -> None:
    from kembar.manager.policy import after_monitor_failure

    assert after_monitor_failure(1, 2) == "restart"
    assert after_monitor_failure(2, 2) == "restart"
    assert after_monitor_failure(3, 2) == "fail"
    assert after_monitor_failure(1, 0) == "fail"
    # A Diskless disk under on_io_error = "failover": no restart can repair it.
    assert after_monitor_failure(1, 5, restart_helps=False) == "fail"


def test_a_diskless_node_is_never_eligible() -> None:
    g = Group("web", "n1")
    v = View((Node("n1", True, disk="Diskless"), Node("n2", True)), (g,))
    assert eligible(v, g, v.nodes[0]) is not None
    assert [(a.kind, a.node) for a in decide(v) if a.kind == "start"] == [("start", "n2")]


A, B, C = "00000000000000AA", "00000000000000BB", "00000000000000CC"
Z = "0000000000000000"


def test_a_disconnected_disk_is_promoted_only_if_the_live_peer_did_not_write_alone() -> None:
    """Found by the torture (replication link cut, the group failed on node1, node2 took
    it over with its older data: split brain)."""
    g = Group("web", "node1", running_on=(), failed_on=("node1",))
    cut = replace(N2, disk_connected=False, disk_synced=False, disk_gen=f"{A}:{Z}")
    # node1 (alive) started a new generation when it lost its peer as Primary
    a = one(View((replace(N1, disk_connected=False, disk_gen=f"{B}:{A}"), cut), (g,)))
    assert a.kind == "wait" and "may have newer data" in a.why and "new generation" in a.why
    # node1's disk is down and its metadata unreadable: nobody can say what it wrote
    a = one(View((replace(N1, disk="Down", disk_connected=False), cut), (g,)))
    assert a.kind == "wait" and "its disk is down" in a.why
    # node1 still Primary (it has not stopped yet)
    assert "is Primary" in str(eligible(View((replace(N1, primary=True, disk_gen=f"{A}:{Z}"),
                                              cut), (g,)), g, cut))
    # the same generation: node1 wrote nothing alone; node2 may take over
    a = one(View((replace(N1, disk_connected=False, disk_gen=f"{A}:{Z}"), cut), (g,)))
    assert (a.kind, a.node) == ("start", "node2")
    # node2 still believes it is connected, node1 says it is not: node1's word counts
    a = one(View((replace(N1, disk_connected=False, disk_gen=f"{B}:{A}"),
                  replace(N2, disk_gen=f"{A}:{Z}")), (g,)))
    assert a.kind == "wait", a
    # node1 dead: fencing and the dead-owner rules decide, as before
    a = one(View((replace(N1, alive=False, disk_gen=f"{B}:{A}"), cut), (g,)))
    assert (a.kind, a.node) == ("start", "node2")


def test_the_side_that_wrote_alone_may_start_again_the_other_may_not() -> None:
    g = Group("web", "node1")
    n1 = replace(N1, disk_connected=False, disk_synced=False, disk_gen=f"{B}:{A}")
    n2 = replace(N2, disk_connected=False, disk_synced=False, disk_gen=f"{A}:{Z}")
    v = View((n1, n2), (g,))
    assert eligible(v, g, n1) is None and eligible(v, g, n2) is not None
    # both wrote alone since they parted (a split brain already): neither
    v = View((n1, replace(n2, disk_gen=f"{C}:{A}")), (g,))
    assert eligible(v, g, n1) is not None and eligible(v, g, v.nodes[1]) is not None


def test_generations_compare_per_disk_and_bit_0_of_the_bitmap_does_not_count() -> None:
    from kembar.manager.policy import ahead_or_same

    assert ahead_or_same(f"{A}:{Z}", f"{A}:{Z}")
    assert ahead_or_same(f"{B}:00000000000000AB", f"{A}:{Z}")  # bit 0: was Primary
    assert not ahead_or_same(f"{A}:{Z}", f"{B}:{A}")
    assert ahead_or_same(f"{A}:{Z},{B}:{A}", f"{A}:{Z},{A}:{Z}")
    assert not ahead_or_same(f"{A}:{Z},{A}:{Z}", f"{A}:{Z},{B}:{A}")
    for bad in ("", "xyz", f"{A}", f"{A}:{Z},"):
        assert not ahead_or_same(bad, f"{A}:{Z}") and not ahead_or_same(f"{A}:{Z}", bad)
    assert not ahead_or_same(f"{A}:{Z}", f"{A}:{Z},{A}:{Z}")


@given(st.tuples(nodes, nodes).filter(lambda t: t[0].name != t[1].name),
       st.tuples(st.booleans(), st.booleans(),
                 st.sampled_from(["", f"{A}:{Z}", f"{B}:{A}", f"{C}:{A}"]),
                 st.sampled_from(["", f"{A}:{Z}", f"{B}:{A}", f"{C}:{A}"])),
       st.builds(Group, st.just("web"), st.sampled_from(["node1", "node2"]), st.booleans(),
                 subsets, subsets, st.sampled_from([None, "node1", "node2"])))
def test_never_started_apart_from_a_live_peer_that_may_have_newer_data(
        ns: tuple[Node, Node], extra: tuple[bool, bool, str, str], g: Group) -> None:
    from kembar.manager.policy import ahead_or_same

    c1, c2, g1, g2 = extra
    a, b = replace(ns[0], disk_connected=c1, disk_gen=g1), replace(ns[1], disk_connected=c2,
                                                                   disk_gen=g2)
    v = View((a, b), (g,))
    for act in decide(v):
        if act.kind != "start":
            continue
        me, other = (a, b) if act.node == a.name else (b, a)
        if (not me.disk_connected or not other.disk_connected) and other.alive and \
                other.disk not in ("Inconsistent", "Outdated"):
            assert ahead_or_same(me.disk_gen, other.disk_gen) and not other.primary


def test_a_failure_is_forgotten_after_the_failure_timeout_only() -> None:
    from kembar.manager.policy import failure_expired

    assert not failure_expired(100.0, 159.9, 60.0)
    assert failure_expired(100.0, 160.0, 60.0)
    assert not failure_expired(100.0, 10**9, 0.0)  # 0: until an operator's cleanup


def test_a_disk_whose_process_is_gone_is_judged_by_its_metadata() -> None:
    """Found by the torture (SIGKILL of the owner's disk process; the restart of the probe
    alone failed, the group left node1 and waited for a person: node2 would not promote
    beside a live node1 whose disk state nobody knew, node1 not with its disk down).  A
    Down disk's report now carries the generations in its metadata."""
    g = Group("web", "node1", failed_on=("node1",))
    cut = replace(N2, disk_connected=False, disk_synced=False, disk_gen=f"{A}:{Z}")
    down = replace(N1, disk="Down", disk_connected=False, disk_synced=False)
    # node1's disk held what node2's holds (killed while connected): node2 takes over
    a = one(View((replace(down, disk_gen=f"{A}:{Z}"), cut), (g,)))
    assert (a.kind, a.node) == ("start", "node2")
    # node1 wrote alone before its disk process died: node2 may not; node1 may, once its
    # failure is forgotten, as the last resort (its disk agent brings the disk up)
    a = one(View((replace(down, disk_gen=f"{B}:{A}"), cut), (g,)))
    assert a.kind == "wait" and "new generation" in a.why
    a = one(View((replace(down, disk_gen=f"{B}:{A}"), cut), (replace(g, failed_on=()),)))
    assert (a.kind, a.node) == ("start", "node1")
    # ... but never while another node can run the group (node2 wrote alone: it is ahead)
    a = one(View((replace(down, disk_gen=f"{A}:{Z}"), cut), (replace(g, failed_on=()),)))
    assert (a.kind, a.node) == ("start", "node2")
    a = one(View((replace(down, disk_gen=f"{A}:{Z}"), replace(cut, disk_gen=f"{C}:{A}")),
                 (replace(g, failed_on=()),)))
    assert (a.kind, a.node) == ("start", "node2")
    # both wrote alone (a split brain already): neither
    a = one(View((replace(down, disk_gen=f"{B}:{A}"), replace(cut, disk_gen=f"{C}:{A}")),
                 (replace(g, failed_on=()),)))
    assert a.kind == "wait"
    # alone (node2 dead): the Down node starts, the disk's own checks guard the promotion
    a = one(View((replace(down, disk_gen=""), replace(N2, alive=False)),
                 (replace(g, failed_on=()),)))
    assert (a.kind, a.node) == ("start", "node1")
