"""The membership state machine with a fake clock: no sockets, no sleeping."""

from __future__ import annotations

from typing import Any, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from kembar.membership.state import (
    HEARTBEAT,
    SHUTDOWN,
    Heard,
    LateHeartbeat,
    LinkDown,
    LinkUp,
    Membership,
    NodeDead,
    NodeRestarted,
    NodeUp,
    Silent,
    Stalled,
    Timing,
)

T = Timing(keepalive=1.0, deadtime=5.0, warntime=2.5, initdead=10.0)


def hb(seq: int, inc: int = 7, node: str = "node2", kind: int = HEARTBEAT,
       cluster: str = "web") -> Heard:
    return Heard(kind, cluster, node, inc, seq)


def fresh(links: tuple[str, ...] = ("eth0",)) -> Membership:
    return Membership("web", "node1", ["node1", "node2"], list(links), T, now=100.0)


def kinds(events: Sequence[object]) -> list[str]:
    return [type(e).__name__ for e in events]


def advance(m: Membership, to: float, step: float = 0.25) -> list[Any]:
    """Tick as the timer layer does (often) up to ``to``; every event on the way."""
    events: list[Any] = []
    now = m.last_tick
    while now < to:
        now = min(to, now + step)
        events += m.tick(now)
    return events


def test_deadtime() -> None:
    m = fresh()
    ev = m.receive(hb(1), "eth0", 100.0)
    assert kinds(ev) == ["LinkUp", "NodeUp"] and m.alive() == ["node1", "node2"]
    for i in range(1, 4):
        assert advance(m, 100.0 + i) == []
        assert m.receive(hb(1 + i), "eth0", 100.0 + i) == []
    assert kinds(advance(m, 107.9)) == ["Silent"]
    ev = advance(m, 108.1)
    assert kinds(ev) == ["LinkDown", "NodeDead"]  # the one link dies with it
    assert ev[1].reason == "deadtime"
    assert T.deadtime < ev[1].silent_for <= T.deadtime + 0.25
    assert m.view(108.1)["nodes"]["node2"]["state"] == "dead"
    assert m.alive() == ["node1"]
    assert advance(m, 130.0) == []  # dead once, not again


def test_warntime_reports_the_silence_once_and_the_late_heartbeat_with_its_gap() -> None:
    m = fresh()
    m.receive(hb(1), "eth0", 100.0)
    assert m.tick(101.0) == [] and m.tick(102.0) == []
    assert kinds(m.tick(102.6)) == ["Silent"]
    assert m.tick(103.0) == []  # once per silence
    ev = m.receive(hb(2), "eth0", 103.4)
    assert ev == [LateHeartbeat("node2", "eth0", ev[0].gap, 2.5)]
    assert abs(ev[0].gap - 3.4) < 1e-9
    assert "3.400 s after the last one" in str(ev[0])
    assert m.view(103.4)["nodes"]["node2"]["late"] == 1
    assert m.receive(hb(3), "eth0", 104.4) == []  # on time again


def test_initdead_for_a_node_never_heard() -> None:
    m = fresh()
    for t in range(101, 110):
        assert m.tick(float(t)) == []
    ev = m.tick(110.2)
    assert kinds(ev) == ["NodeDead"] and ev[0].reason == "initdead"


def test_a_restart_within_the_deadtime_is_seen_and_old_packets_are_stale() -> None:
    m = fresh()
    m.receive(hb(50, inc=7), "eth0", 100.0)
    ev = m.receive(hb(1, inc=8), "eth0", 101.0)
    assert NodeRestarted("node2", 7, 8) in ev
    assert m.view(101.0)["nodes"]["node2"]["incarnation"] == 8
    assert m.receive(hb(51, inc=7), "eth0", 101.5) == []  # the old life's packets
    assert m.dropped["replay"] == 1


def test_replays_change_nothing() -> None:
    m = fresh()
    m.receive(hb(1), "eth0", 100.0)
    m.receive(hb(2), "eth0", 101.0)
    before = m.view(101.0)
    advance(m, 104.0)
    for p in (hb(2), hb(1), hb(2)):
        assert m.receive(p, "eth0", 104.0) == []
    assert m.dropped["replay"] == 3
    assert kinds(advance(m, 106.25)) == ["LinkDown", "NodeDead"]  # replays kept nothing alive
    assert before["nodes"]["node2"]["incarnation"] == 7


def test_one_of_two_links_lost_keeps_the_node_alive() -> None:
    m = fresh(("eth0", "eth1"))
    for i in range(3):
        m.receive(hb(i + 1), "eth0", 100.0 + i)
        m.receive(hb(i + 1), "eth1", 100.0 + i)  # the same heartbeat over the other link
    assert m.view(102.0)["nodes"]["node2"]["links"]["eth1"]["state"] == "up"
    # eth0 is cut: only eth1 carries from now on
    events: list[object] = []
    for i in range(3, 12):
        events += advance(m, 100.0 + i)
        events += m.receive(hb(i + 1), "eth1", 100.0 + i)
    assert LinkDown("node2", "eth0", 5.25) in events
    assert not [e for e in events if isinstance(e, (NodeDead, Silent, LateHeartbeat))]
    assert m.alive() == ["node1", "node2"]
    assert kinds(m.receive(hb(13), "eth0", 112.0)) == ["LinkUp"]  # healed: the link only


def test_flapping_links_never_kill_a_node_heard_on_one_of_them() -> None:
    m = fresh(("eth0", "eth1"))
    events: list[object] = []
    for i in range(40):
        link = "eth0" if (i // 7) % 2 == 0 else "eth1"  # the carrier flips every 7 s
        events += advance(m, 100.0 + i)
        events += m.receive(hb(i + 1), link, 100.0 + i)
    assert not [e for e in events if isinstance(e, NodeDead)]
    assert sum(isinstance(e, LinkDown) for e in events) >= 4
    assert sum(isinstance(e, LinkUp) for e in events) >= 5


def test_a_stalled_daemon_does_not_declare_its_peers_dead() -> None:
    m = fresh()
    m.receive(hb(1), "eth0", 100.0)
    m.tick(100.5)
    ev = m.tick(160.0)  # this process was stopped for a minute (SIGSTOP, a suspended VM)
    assert kinds(ev) == ["Stalled"]
    assert m.alive() == ["node1", "node2"]
    m.receive(hb(2), "eth0", 160.2)
    assert advance(m, 161.0) == []
    assert kinds(advance(m, 165.5)) == ["Silent", "LinkDown", "NodeDead"]  # a real silence


def test_the_senders_clock_is_not_used() -> None:
    """Heard has no wall-clock field at all: a clock step on the peer cannot matter, and the
    monotonic ``now`` is the only time the machine knows."""
    assert "sent" not in " ".join(Heard.__dataclass_fields__)


def test_shutdown_notice_is_acted_on_at_once() -> None:
    m = fresh(("eth0", "eth1"))
    m.receive(hb(1), "eth0", 100.0)
    ev = m.receive(hb(2, kind=SHUTDOWN), "eth0", 100.3)
    assert kinds(ev) == ["NodeDead"] and ev[0].reason == "shutdown notice"
    assert m.receive(hb(2, kind=SHUTDOWN), "eth1", 100.3) == []  # the notice's copy
    assert m.receive(hb(3), "eth0", 100.4) == []  # a straggler of the same life
    assert m.alive() == ["node1"]
    ev = m.receive(hb(1, inc=8), "eth0", 130.0)  # started again
    assert NodeUp("node2", 8, "eth0", returning=True) in ev


def test_strangers_are_dropped_and_counted() -> None:
    m = fresh()
    assert m.receive(hb(1, cluster="other"), "eth0", 100.0) == []
    assert m.receive(hb(1, node="mallory"), "eth0", 100.0) == []
    assert m.receive(hb(1, node="node1"), "eth0", 100.0) == []  # our own broadcast
    assert m.receive(hb(1), "wlan0", 100.0) == []
    assert dict(m.dropped) == {"cluster": 1, "unknown-node": 1, "own": 1, "unknown-link": 1}
    assert m.alive() == ["node1"]


schedules = st.lists(st.tuples(st.floats(0.0, 3.0), st.sampled_from(["eth0", "eth1", None]),
                               st.booleans()), max_size=60)


@settings(max_examples=200, deadline=None)
@given(schedules)
def test_up_exactly_while_heard_within_the_deadtime(schedule: list[tuple[float, str | None, bool]]) -> None:
    """Whatever the schedule of heartbeats, replays and silences: after every tick the node
    is up iff its last accepted heartbeat is at most one deadtime old (ticks come often)."""
    m = fresh(("eth0", "eth1"))
    now, seq, last_ok = 100.0, 0, None
    sent: list[Heard] = []
    for step, link, replay in schedule:
        t_end = now + step
        while now < t_end:  # the timer layer ticks at least every quarter keepalive
            now = min(t_end, now + 0.25)
            m.tick(now)
        if link is None:
            continue
        if replay and sent:
            m.receive(sent[len(sent) // 2], link, now)
            continue
        seq += 1
        p = hb(seq)
        sent.append(p)
        m.receive(p, link, now)
        last_ok = now
        m.tick(now)
        up = m.view(now)["nodes"]["node2"]["state"] == "up"
        assert up == (last_ok is not None and now - last_ok <= T.deadtime)
