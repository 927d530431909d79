"""One datagram in: authenticate, decode, hand to the state machine (pure, no sockets).

Whatever the bytes, this returns: a packet that does not authenticate or parse is dropped
and counted by its reason; one that does is judged by the state machine, which drops and
counts what it refuses (other cluster, unknown node, replay, ...).
"""

from __future__ import annotations

import json

from kembar.membership.authkeys import AuthKeys
from kembar.membership.packet import BadPacket, Packet, decode
from kembar.membership.state import HEARTBEAT, SHUTDOWN, Event, Heard, Membership


def ping_score(body: bytes) -> tuple[int, int] | None:
    """The sender's connectivity score from a heartbeat's body (authenticated already);
    anything malformed counts as no score."""
    if not body:
        return None
    try:
        score = json.loads(body)["ping"]
        up, total = int(score[0]), int(score[1])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return (up, total) if 0 <= up <= total <= 64 else None


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
    events = m.receive(Heard(kind, pkt.cluster, pkt.node, pkt.incarnation, pkt.seq,
                             ping_score(pkt.body)), link, now)
    grown = [r for r, n in m.dropped.items() if n > before.get(r, 0)]
    return events, pkt, grown[0] if grown else None
