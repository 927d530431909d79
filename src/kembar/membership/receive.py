"""One datagram in: authenticate, decode, hand to the state machine (pure, no sockets).

Whatever the bytes, this returns: a packet that does not authenticate or parse is dropped
and counted by its reason; one that does is judged by the state machine, which drops and
counts what it refuses (other cluster, unknown node, replay, ...).
"""

from __future__ import annotations

import json
from typing import Any

from kembar.membership.authkeys import AuthKeys
from kembar.membership.packet import BadPacket, Packet, decode
from kembar.membership.state import HEARTBEAT, SHUTDOWN, Event, Heard, Membership


def ping_score(body: bytes) -> tuple[int, int] | None:
    """The sender's connectivity score from a heartbeat's body (authenticated already);
    anything malformed counts as no score."""
    return parse_body(body)[0]


def parse_body(body: bytes) -> tuple[tuple[int, int] | None, dict[str, Any] | None]:
    """(connectivity score, the manager's report) from a heartbeat's body (authenticated
    already); each part that is malformed counts as absent."""
    if not body:
        return None, None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # not JSON (or UTF-8), or nested too deeply
        return None, None
    if not isinstance(doc, dict):
        return None, None
    score: tuple[int, int] | None = None
    try:
        up, total = int(doc["ping"][0]), int(doc["ping"][1])
        if 0 <= up <= total <= 64:
            score = (up, total)
    except (ValueError, KeyError, IndexError, TypeError, OverflowError):  # e.g. 1e999
        pass
    report = doc.get("m")
    return score, report if isinstance(report, dict) else None


def receive(data: bytes, link: str, now: float, keys: AuthKeys, m: Membership
            ) -> tuple[list[Event], Packet | None, str | None]:
    """(events, the packet if it authenticated, the reason it was dropped if it was)."""
    try:
        pkt = decode(data, keys)
    except BadPacket as exc:
        m.drop(exc.reason)
        return [], None, exc.reason
    kind = pkt.type if pkt.type in (HEARTBEAT, SHUTDOWN) else HEARTBEAT
    before = dict(m.dropped)
    score, report = parse_body(pkt.body)
    events = m.receive(Heard(kind, pkt.cluster, pkt.node, pkt.incarnation, pkt.seq,
                             score, report), link, now)
    grown = [r for r, n in m.dropped.items() if n > before.get(r, 0)]
    return events, pkt, grown[0] if grown else None
