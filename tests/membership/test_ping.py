"""Ping nodes: the pure reachability tracker, the ICMP codec, the score in heartbeats."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from kembar.membership.receive import ping_score
from kembar.membership.ping import (
    ECHO_REPLY,
    PingChange,
    Reachability,
    checksum,
    echo_request,
    parse_reply,
)


def test_reachability_score_and_changes() -> None:
    r = Reachability(["198.18.0.50", "198.18.0.60"], deadping=1.0, now=0.0)
    assert (r.score, r.total) == (0, 2)
    assert r.reply("198.18.0.50", 0.1) == [PingChange("198.18.0.50", True, 0.0)]
    assert r.reply("198.18.0.50", 0.2) == [] and r.reply("10.0.0.1", 0.2) == []
    assert r.score == 1
    assert r.tick(1.1) == []
    ch = r.tick(1.3)
    assert [c.address for c in ch] == ["198.18.0.50"] and not ch[0].reachable
    assert r.score == 0 and r.tick(5.0) == []


def test_echo_request_checksums_to_zero_and_replies_are_recognised() -> None:
    req = echo_request(0x1234, 7)
    assert checksum(req) == 0
    ip = bytes([0x45]) + bytes(19)
    reply = ip + struct.pack("!BBHHH", ECHO_REPLY, 0, 0, 0x1234, 7) + b"x"
    assert parse_reply(reply, 0x1234)
    assert not parse_reply(reply, 0x4321)
    assert not parse_reply(ip + req, 0x1234)  # our own request is no reply


@given(st.binary(max_size=100), st.integers(0, 0xFFFF))
def test_parse_reply_never_raises(data: bytes, ident: int) -> None:
    parse_reply(data, ident)


@given(st.binary(max_size=200))
def test_a_bad_score_in_a_heartbeat_is_no_score(body: bytes) -> None:
    score = ping_score(body)
    assert score is None or 0 <= score[0] <= score[1] <= 64


def test_score_from_a_heartbeat_body() -> None:
    assert ping_score(b'{"ping": [1, 2]}') == (1, 2)
    assert ping_score(b'{"ping": [3, 2]}') is None
    assert ping_score(b"") is None
