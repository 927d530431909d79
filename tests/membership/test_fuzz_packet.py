"""Fuzzing the heartbeat receive path (issue 8): the packet decoder, the body parser, the
state machine behind them, and the authkeys parser.

test_packet.py already throws random bytes, bit flips, truncations and appends at
``decode``; those all die at the MAC.  The fuzzers here go past it: every mutated packet
is *signed again* with a key of the ring, as a peer holding the key (or a buggy one)
would send it, so the length walk, the UTF-8 checks, the body's JSON and the state
machine all see hostile input.  Property: ``decode`` raises only ``BadPacket`` (with a
reason of ``REASONS``); ``receive`` raises nothing and drops what it refuses by a reason.
"""

from __future__ import annotations

import hmac
import json
import struct
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from kembar.errors import ConfigError
from kembar.membership.authkeys import METHODS, AuthKeys, Key, load_authkeys, parse_authkeys
from kembar.membership.packet import (HEADER, HEADER_SIZE, HEARTBEAT, MAC_SIZES, MAGIC,
                                      MAX_BODY, MAX_NAME, MAX_PACKET, MAX_STATUS, REASONS,
                                      SHUTDOWN, VERSION, BadPacket, Packet, decode, encode)
from kembar.membership.receive import parse_body, receive
from kembar.membership.state import Membership, Timing
from tests.fuzzing import byte_op, byte_ops, fuzz, only

RING = AuthKeys(2, {1: Key(1, "md5", b"old-key"), 2: Key(2, "sha256", b"the-key"),
                    3: Key(3, "sha1", b"k3")})
T = Timing(0.1, 0.5, 0.25, 2.0)
NODES = ["node1", "node2", "node3"]


def membership() -> Membership:
    return Membership("web", "node1", NODES, ["eth0", "eth1"], T, now=0.0)


def sign(signed: bytes, index: int) -> bytes:
    """``signed`` with the MAC of ring key ``index`` appended, as the decoder checks it."""
    key = RING.keys[index]
    return signed + hmac.digest(key.secret, signed, key.method)


def check_decode(data: bytes) -> Packet | None:
    got = only(BadPacket, decode, data, RING)
    if isinstance(got, BadPacket):
        assert got.reason in REASONS, got.reason
        return None
    assert isinstance(got, Packet)
    assert len(got.cluster.encode()) <= MAX_NAME and len(got.node.encode()) <= MAX_NAME
    assert len(got.status.encode()) <= MAX_STATUS and len(got.body) <= MAX_BODY
    return got


def check_receive(data: bytes, m: Membership, link: str = "eth0", now: float = 0.05) -> None:
    """``receive`` takes anything: it returns, and what it refuses is counted."""
    before = sum(m.dropped.values()), m.accepted
    got = only((), receive, data, link, now, RING, m)
    assert not isinstance(got, BaseException)
    events, pkt, reason = got
    assert isinstance(events, list)
    if reason is not None:
        assert m.dropped[reason] >= 1 and events == []
        assert sum(m.dropped.values()) == before[0] + 1
    else:
        assert pkt is not None and m.accepted == before[1] + 1
    m.view(now + 0.01)
    m.tick(now + 1.0)


# ------------------------------------------------------------------ grammar of bodies

_JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["up", "running", "UpToDate", "starting", "g", "x", "d", "node2"]))
_JSON = st.recursive(_JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=5),
    st.dictionaries(st.sampled_from(["ping", "m", "g", "x", "sb", "to", "d", "f", "u", "zz"]),
                    inner, max_size=5)), max_leaves=20)


def _dump(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=True).encode()


# Bodies as a peer might send them: real-looking JSON, JSON with extremes in the score,
# deep nesting, raw tokens (NaN, 1e999), broken UTF-8, plain bytes.
BODIES = st.one_of(
    st.just(b""),
    _JSON.map(_dump),
    st.fixed_dictionaries({"ping": st.one_of(
        st.lists(st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=4),
                           st.booleans(), st.none()), max_size=3),
        _JSON_LEAF)}).map(_dump),
    st.sampled_from([b'{"ping":[1e999,2]}', b'{"ping":[Infinity,1]}', b'{"ping":[-Infinity,1]}',
                     b'{"ping":[NaN,1]}', b'{"ping":[1,1e400]}', b'{"ping":[1]}',
                     b'{"ping":"12"}', b'{"ping":{"0":1,"1":2}}', b'{"m":[]}', b'[1,2]',
                     b'{"ping":[1,2],"m":{"g":{"web":"running"},"d":{"r0":["UpToDate",1,0,0]}}}']),
    st.integers(1, MAX_BODY // 2).flatmap(lambda n: st.sampled_from(
        [b"[" * n, b"{\"a\":" * (n // 5), b'{"m":' * (n // 5) + b"1" + b"}" * (n // 5),
         b"[" * n + b"]" * n, b'{"ping":' + b"[" * (n - 9)])),
    st.binary(max_size=64),
    st.binary(max_size=MAX_BODY),
).map(lambda b: b[:MAX_BODY])


# ------------------------------------------------------------------ signed garbage

def _field(cap: int) -> st.SearchStrategy[bytes]:
    return st.one_of(st.sampled_from([b"web", b"node1", b"node2", b"node3", b"up",
                                      b"shutdown", b"", "nœud".encode()]),
                     st.binary(max_size=cap + 2), st.text(max_size=cap).map(str.encode))


@st.composite
def signed_packets(draw: st.DrawFn) -> bytes:
    """A datagram signed with a ring key whose fields are drawn almost freely: the length
    bytes may lie, strings need not be UTF-8, the header may be off by a field."""
    index = draw(st.sampled_from([1, 2, 3, 2, 2]))
    head = HEADER.pack(
        draw(st.sampled_from([MAGIC, MAGIC, MAGIC, b"KBHb"])),
        draw(st.sampled_from([VERSION] * 6 + [0, 2, 255])),
        draw(st.sampled_from([HEARTBEAT, HEARTBEAT, SHUTDOWN, 0, 3, 255])),
        draw(st.sampled_from([index] * 8 + [0, 4, 15, 255])),
        draw(st.sampled_from([0] * 8 + [1, 128, 255])),
        draw(st.sampled_from([0, 1, 5, 2**63, 2**64 - 1]) | st.integers(0, 2**64 - 1)),
        draw(st.sampled_from([0, 1, 2, 2**64 - 1]) | st.integers(0, 2**64 - 1)),
        draw(st.integers(0, 2**64 - 1)))
    parts = [head]
    for width, cap in ((1, MAX_NAME), (1, MAX_NAME), (1, MAX_STATUS), (2, MAX_BODY)):
        content = draw(BODIES if width == 2 else _field(cap))
        length = draw(st.one_of(st.just(len(content)), st.just(len(content)),
                                st.just(len(content)),
                                st.sampled_from([0, cap, cap + 1, 255 if width == 1 else 65535]),
                                st.integers(0, 255 if width == 1 else 65535)))
        parts.append(struct.pack("!B" if width == 1 else "!H", length % (256 ** width)))
        parts.append(content)
    signed = b"".join(parts)
    cut = draw(st.one_of(st.just(len(signed)), st.just(len(signed)),
                         st.integers(0, len(signed))))
    return sign(signed[:cut], index)[: MAX_PACKET + 8]


@fuzz(600)
@given(signed_packets())
def test_signed_hostile_packets_decode_or_bad_packet(data: bytes) -> None:
    check_decode(data)
    check_receive(data, membership())


# ------------------------------------------------------------------ mutations

def _offsets(p: Packet) -> dict[str, tuple[int, int]]:
    """Offset and width of each length field of ``p``'s encoding."""
    pos, out = HEADER_SIZE, {}
    for name, n, width in (("cluster", len(p.cluster.encode()), 1),
                           ("node", len(p.node.encode()), 1),
                           ("status", len(p.status.encode()), 1), ("body", len(p.body), 2)):
        out[name] = (pos, width)
        pos += width + n
    return out


_PACKETS = st.builds(
    Packet, type=st.sampled_from([HEARTBEAT, SHUTDOWN]),
    cluster=st.sampled_from(["web", "other", ""]), node=st.sampled_from(NODES + ["stranger"]),
    incarnation=st.integers(0, 2**64 - 1), seq=st.integers(0, 2**64 - 1),
    status=st.sampled_from(["up", "shutdown", ""]), sent_at_ms=st.integers(0, 2**64 - 1),
    body=BODIES)

_OPS = st.lists(st.one_of(
    *byte_ops(cut=64, insert=32, extend=600),
    st.tuples(st.just("length"), st.sampled_from(["cluster", "node", "status", "body"]),
              st.sampled_from(["zero", "max", "cap", "over", "plus1", "minus1"])),
), min_size=1, max_size=4)


def mutate(data: bytes, p: Packet, ops: list[tuple]) -> bytes:
    buf = bytearray(data)
    offsets = _offsets(p)
    caps = {"cluster": MAX_NAME, "node": MAX_NAME, "status": MAX_STATUS, "body": MAX_BODY}
    for op in ops:
        if op[0] == "length":
            pos, width = offsets[op[1]]
            if pos + width > len(buf):
                continue
            old = int.from_bytes(buf[pos:pos + width], "big")
            top = 256 ** width - 1
            new = {"zero": 0, "max": top, "cap": caps[op[1]], "over": caps[op[1]] + 1,
                   "plus1": old + 1, "minus1": old - 1}[op[2]]
            buf[pos:pos + width] = (new % (top + 1)).to_bytes(width, "big")
        else:
            byte_op(buf, op)
    return bytes(buf)


@fuzz(600)
@given(_PACKETS, st.sampled_from([1, 2, 3]), _OPS, st.booleans())
def test_mutations_of_valid_packets_signed_again(p: Packet, index: int, ops: list[tuple],
                                                 resign: bool) -> None:
    good = encode(p, AuthKeys(index, RING.keys))
    assert decode(good, RING) == p
    mac = MAC_SIZES[RING.keys[index].method]
    signed = mutate(good[:-mac], p, ops)
    data = sign(signed, index) if resign else mutate(good, p, ops)
    check_decode(data)
    check_receive(data, membership())


# ------------------------------------------------------------------ a hostile stream

@fuzz(200)
@given(st.lists(st.tuples(_PACKETS, st.sampled_from(["eth0", "eth1", "eth9"]),
                          st.floats(0, 0.2)), min_size=1, max_size=12))
def test_sequences_of_authentic_packets_never_break_the_state_machine(
        stream: list[tuple[Packet, str, float]]) -> None:
    """Authentic packets in any order (replays, restarts, shutdowns, strangers, other
    clusters, unknown links, hostile bodies): receive and tick never raise."""
    m = membership()
    now = 0.0
    for p, link, dt in stream:
        now += dt
        check_receive(encode(p, RING), m, link, now)


@fuzz(300)
@given(BODIES)
def test_parse_body_never_raises(body: bytes) -> None:
    got = only((), parse_body, body)
    assert not isinstance(got, BaseException)
    score, report = got
    assert score is None or (isinstance(score, tuple) and 0 <= score[0] <= score[1] <= 64)
    assert report is None or isinstance(report, dict)


# Regressions: each of these raised out of receive() (an authentic peer's body is parsed
# after the MAC; a crash there escaped the daemon's datagram callback).

def _authentic(body: bytes) -> bytes:
    return encode(Packet(HEARTBEAT, "web", "node2", 5, 1, "up", 0, body), RING)


def test_regression_deeply_nested_body_is_no_score_not_recursion_error() -> None:
    body = b"[" * MAX_BODY  # json.loads: RecursionError
    assert parse_body(body) == (None, None)
    m = membership()
    events, pkt, reason = receive(_authentic(body), "eth0", 0.0, RING, m)
    assert pkt is not None and reason is None and m.nodes["node2"].ping is None


def test_regression_infinite_score_is_no_score_not_overflow_error() -> None:
    for body in (b'{"ping":[1e999,2]}', b'{"ping":[Infinity,1]}', b'{"ping":[1,-Infinity]}'):
        assert parse_body(body) == (None, None), body  # int(inf): OverflowError
        m = membership()
        events, pkt, reason = receive(_authentic(body), "eth0", 0.0, RING, m)
        assert pkt is not None and reason is None and m.nodes["node2"].ping is None


def test_regression_nan_score_is_no_score() -> None:
    assert parse_body(b'{"ping":[NaN,1]}') == (None, None)  # int(nan): ValueError


# ------------------------------------------------------------------ authkeys

_KEY_TOKENS = st.sampled_from([
    "auth", "AUTH", "1", "2", "15", "16", "0", "007", "-1", "1.0", "sha256", "SHA1", "md5",
    "crc", "sha512", "blake2b", "secret", "s e c", "#", "# comment", "x" * 300, "\t", " ",
    "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u00a0", "\ufeff", "\0", "\ud800", "é",
])
_KEY_LINES = st.lists(st.lists(_KEY_TOKENS, max_size=5).map(" ".join), max_size=8)


@fuzz(400)
@given(st.one_of(_KEY_LINES.map("\n".join), _KEY_LINES.map("\r\n".join),
                 st.text(max_size=200)))
def test_authkeys_text_parses_or_config_error(text: str) -> None:
    got = only(ConfigError, parse_authkeys, text, "authkeys")
    if isinstance(got, AuthKeys):
        assert got.active in got.keys and all(k.method in METHODS for k in got.keys.values())
    else:
        assert "\n" not in str(got)


@fuzz(100)
@given(st.one_of(st.binary(max_size=300), _KEY_LINES.map(lambda ls: "\n".join(ls).encode(
    "utf-8", "surrogatepass"))))
def test_authkeys_file_loads_or_config_error(tmp_path_factory: object, raw: bytes) -> None:
    path = Path(tmp_path_factory.mktemp("keys")) / "authkeys"  # type: ignore[attr-defined]
    path.write_bytes(raw)
    path.chmod(0o600)
    only(ConfigError, load_authkeys, path)
