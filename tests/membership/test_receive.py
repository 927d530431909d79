"""The receive path as a whole: any datagram, forged or replayed, changes no membership."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kembar.membership.authkeys import parse_authkeys
from kembar.membership.packet import Packet, encode
from kembar.membership.receive import receive
from kembar.membership.state import Membership, Timing

KEYS = parse_authkeys("auth 1\n1 sha256 the-cluster-secret\n")
WRONG = parse_authkeys("auth 1\n1 sha256 a-guess\n")
T = Timing(0.1, 0.5, 0.25, 2.0)


def fresh() -> tuple[Membership, list[bytes]]:
    m = Membership("web", "node1", ["node1", "node2"], ["eth0"], T, now=0.0)
    real = [encode(Packet(1, "web", "node2", 5, i, "up", 0), KEYS) for i in range(1, 4)]
    for i, p in enumerate(real):
        receive(p, "eth0", 0.01 * i, KEYS, m)
    return m, real


def state(m: Membership) -> dict:  # type: ignore[type-arg]
    v = m.view(1.0)
    del v["dropped"]
    return v


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=1500),
    st.builds(lambda i, n, inc, seq: encode(Packet(1, "web", n, inc, seq, "up", 0), WRONG),
              st.integers(), st.sampled_from(["node2", "node1", "x"]),
              st.integers(0, 2**63), st.integers(0, 2**63)),
))
def test_forged_or_garbage_datagrams_change_nothing(data: bytes) -> None:
    m, _ = fresh()
    before = state(m)
    events, pkt, reason = receive(data, "eth0", 0.05, KEYS, m)
    assert events == [] and pkt is None and reason is not None
    assert state(m) == before and m.dropped[reason] >= 1


@given(st.integers(0, 2), st.sampled_from(["eth0"]))
def test_replayed_datagrams_change_nothing(i: int, link: str) -> None:
    m, real = fresh()
    before = state(m)
    events, pkt, reason = receive(real[i], link, 0.05, KEYS, m)
    assert events == [] and reason == "replay" and pkt is not None
    assert state(m) == before


@given(st.binary(min_size=1, max_size=64), st.integers(0, 200))
def test_bit_flips_of_a_real_datagram_are_dropped(mask: bytes, at: int) -> None:
    m, _ = fresh()
    good = encode(Packet(1, "web", "node2", 5, 99, "up", 0), KEYS)
    bad = bytearray(good)
    for k, b in enumerate(mask):
        bad[(at + k) % len(bad)] ^= b
    before = state(m)
    events, pkt, reason = receive(bytes(bad), "eth0", 0.05, KEYS, m)
    if bytes(bad) != good:
        assert pkt is None and events == [] and state(m) == before
