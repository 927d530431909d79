"""Fuzzing the replication wire decoder (issue 8): frames, bodies, the framed stream.

test_wire.py already sends short random blobs, single-byte corruptions of a few samples
and short random bodies under a valid crc.  These go further: bodies built from each
type's own struct (every field at random or at an extreme, tails made of names, NULs,
broken UTF-8 and blocks at the size caps), mutations of valid frames *with the crc
computed again* (so damage reaches the header and body checks, not only the checksum),
and whole byte streams through ``Link.recv`` on a real socket pair, fragmented, cut off
and padded.  Property: ``PeerProtocolError`` with a message, or (at a frame boundary) a
clean ``ConnectionResetError``; nothing else, no hang; what decodes is canonical (encoding
it again gives the same bytes).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import struct
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kembar.disk import wire
from kembar.disk.link import PROTO, Link, auth_mac, authenticate
from kembar.disk.wire import Msg
from kembar.errors import AuthError, PeerProtocolError
from tests.fuzzing import SLOW, byte_op, byte_ops, fuzz, only

KINDS = sorted(wire.BODIES, key=int)
_NOT_CANONICAL = {wire.Bye}  # the reason is decoded with errors="replace"


def frame(kind: int, seq: int, payload: bytes, flags: int = 0, version: int = wire.VERSION,
          magic: bytes = wire.MAGIC, length: int | None = None) -> bytes:
    """A frame with a correct crc over whatever header fields it is given."""
    n = len(payload) if length is None else length
    head0 = wire.HEADER.pack(magic, version, kind, flags, n, seq, 0)
    crc = wire._crc_of(head0, [payload])
    return wire.HEADER.pack(magic, version, kind, flags, n, seq, crc) + payload


def decode_all(raw: bytes) -> wire.Body | PeerProtocolError:
    def run() -> wire.Body:
        head, payload = wire.decode_frame(raw)
        return wire.decode_body(head.kind, payload)
    return only(PeerProtocolError, run)  # type: ignore[return-value,unused-ignore]


def test_every_message_type_has_a_body_decoder() -> None:
    # A type in Msg without an entry in BODIES would pass decode_header and then raise
    # KeyError from decode_body: a crash, not a protocol error.
    assert set(Msg) == set(wire.BODIES)
    for kind in Msg:
        assert wire.BODIES[kind].FIXED.format.startswith("!"), kind  # network order


# ------------------------------------------------------------------ bodies from their structs

_NAME = st.one_of(st.sampled_from([b"n1", b"r0", b"", b"x" * 64, b"x" * 65, b"\xff\xfe",
                                   "é".encode(), b"\xc3"]),
                  st.binary(max_size=70))
_BIG = st.sampled_from([0, 1, 4095, 4096, wire.MAX_DATA, wire.MAX_DATA + 1])
_TAIL = st.one_of(
    st.just(b""),
    st.lists(_NAME, max_size=4).map(b"\0".join),
    st.binary(max_size=300),
    st.binary(max_size=8) | st.sampled_from([b"\0", b"\0\0", b"a\0", b"\0b"]),
    _BIG.map(lambda n: b"\xab" * n),
    st.integers(190, 210).map(lambda n: "€".encode() * (n // 3) + b"\xe2"),  # BYE's cap
)
_FIELD = {"B": st.sampled_from([0, 1, 2, 4, 65, 66, 67, 255]) | st.integers(0, 255),
          "H": st.sampled_from([0, 1, 2, 65535]) | st.integers(0, 65535),
          "h": st.sampled_from([-32768, -2, -1, 0, 1, 2, 32767]),
          "I": st.sampled_from([0, 1, 4096, wire.MAX_DATA, wire.MAX_DATA + 1, 2**32 - 1])
          | st.integers(0, 2**32 - 1),
          "Q": st.sampled_from([0, 1, 4096, 2**63, 2**64 - 1]) | st.integers(0, 2**64 - 1)}


@st.composite
def payloads(draw: st.DrawFn, kind: Msg) -> bytes:
    """The type's fixed struct with every field drawn (extremes likely), then a tail."""
    fixed = wire.BODIES[kind].FIXED
    values: list[object] = []
    for count, code in re.findall(r"([0-9]*)([a-zA-Z])", fixed.format):
        if code == "s":  # HELLO's challenge, AUTH's mac: fixed-size bytes
            values.append(draw(st.binary(min_size=int(count), max_size=int(count))))
        else:
            values += [draw(_FIELD[code]) for _ in range(int(count or 1))]
    head = fixed.pack(*values)
    cut = draw(st.sampled_from([len(head)] * 6 + [0, max(0, len(head) - 1)]))
    return head[:cut] + draw(_TAIL)


@fuzz(1500)
@given(st.sampled_from(KINDS).flatmap(lambda k: st.tuples(st.just(k), payloads(k))),
       st.integers(0, 2**64 - 1))
def test_bodies_built_from_their_structs(kind_payload: tuple[Msg, bytes], seq: int) -> None:
    kind, payload = kind_payload
    if len(payload) > wire.MAX_PAYLOAD:
        with pytest.raises(PeerProtocolError, match="oversized frame"):
            wire.decode_frame(frame(kind, seq, payload))
        return
    got = decode_all(frame(kind, seq, payload))
    if isinstance(got, wire.Body):
        assert isinstance(got, wire.BODIES[kind])
        if type(got) not in _NOT_CANONICAL:
            assert wire.body_bytes(got) == payload, (kind, got)
        # and the sender side accepts what the receiver accepted
        raw = b"".join(bytes(p) for p in wire.encode_body(kind, seq, got))
        assert isinstance(decode_all(raw), wire.BODIES[kind])


# ------------------------------------------------------------------ valid frames, mutated

SAMPLES: list[tuple[Msg, wire.Body]] = [
    (Msg.HELLO, wire.Hello(PROTO, b"c" * 32, "n1", "r0")),
    (Msg.AUTH, wire.Auth(b"m" * 32)),
    (Msg.PARAMS, wire.Params(1 << 30, 5, 6, 7, 8, 1, 4, wire.F_PEER_OUTDATED, ord("B"), 3)),
    (Msg.DECISION, wire.Decision(-3)),
    (Msg.BITMAP, wire.BitmapChunk(0, 1, b"\x0f" * 64)),
    (Msg.DATA, wire.DataBlock(4096, b"d" * 512)),
    (Msg.RS_DATA, wire.DataBlock(0, b"r" * 4096)),
    (Msg.RS_CSUM, wire.Range(8192, 4096, b"s" * 32)),
    (Msg.RS_WANT, wire.Range(0, 4096)),
    (Msg.WRITE_ACK, wire.Status(1)),
    (Msg.SYNC_DONE, wire.State(0, 4, 1, 2, 3, 4)),
    (Msg.PING, wire.Empty()),
    (Msg.BYE, wire.Bye("bye")),
]

_OPS = st.lists(st.one_of(
    *byte_ops(cut=40, insert=40, extend=300),
    st.tuples(st.just("length"), st.sampled_from([0, 1, -1, +1, wire.MAX_PAYLOAD,
                                                  wire.MAX_PAYLOAD + 1, 2**32 - 1])),
    st.tuples(st.just("kind"), st.sampled_from([0, 26, 27, 28, 99, 255]) | st.integers(0, 255)),
), min_size=1, max_size=4)


def mutate(raw: bytes, ops: list[tuple]) -> bytes:
    buf = bytearray(raw)
    for op in ops:
        if op[0] == "length":
            if len(buf) >= 12:
                old = struct.unpack_from("!I", buf, 8)[0]
                new = old + op[1] if op[1] in (-1, 1) else op[1]
                struct.pack_into("!I", buf, 8, new % 2**32)
        elif op[0] == "kind":
            if len(buf) > 5:
                buf[5] = op[1]
        else:
            byte_op(buf, op)
    return bytes(buf)


def recrc(raw: bytes) -> bytes:
    """The crc field recomputed over whatever the header and payload now say."""
    if len(raw) < wire.HEADER_SIZE:
        return raw
    head0 = raw[:wire.HEADER_SIZE - 4] + b"\0\0\0\0"
    crc = wire._crc_of(head0, [raw[wire.HEADER_SIZE:]])
    return raw[:wire.HEADER_SIZE - 4] + struct.pack("!I", crc) + raw[wire.HEADER_SIZE:]


@fuzz(1500)
@given(st.sampled_from(SAMPLES), _OPS, st.booleans())
def test_mutated_valid_frames(sample: tuple[Msg, wire.Body], ops: list[tuple],
                              fix_crc: bool) -> None:
    kind, body = sample
    good = b"".join(bytes(p) for p in wire.encode_body(kind, 9, body))
    bad = mutate(good, ops)
    if fix_crc:
        bad = recrc(bad)
    got = decode_all(bad)
    if bad != good and not fix_crc:
        assert isinstance(got, PeerProtocolError), (ops, got)
    if isinstance(got, wire.Body) and type(got) not in _NOT_CANONICAL:
        head = wire.decode_header(bad[:wire.HEADER_SIZE])
        assert wire.body_bytes(got) == bad[wire.HEADER_SIZE:], (head.kind, got)


# ------------------------------------------------------------------ the framed stream

def _chunks() -> st.SearchStrategy[bytes]:
    valid = st.sampled_from(SAMPLES).map(
        lambda s: b"".join(bytes(p) for p in wire.encode_body(s[0], 1, s[1])))
    return st.one_of(
        valid, valid, valid,
        st.tuples(st.sampled_from(SAMPLES), _OPS, st.booleans()).map(
            lambda t: (recrc if t[2] else bytes)(mutate(b"".join(
                bytes(p) for p in wire.encode_body(t[0][0], 2, t[0][1])), t[1]))),
        st.binary(max_size=64),
        st.sampled_from([
            wire.HEADER.pack(wire.MAGIC, wire.VERSION, int(Msg.DATA), 0,
                             wire.MAX_PAYLOAD + 1, 3, 0),  # oversized: refused unread
            wire.HEADER.pack(wire.MAGIC, wire.VERSION, int(Msg.DATA), 0, 2**32 - 1, 3, 0),
            wire.HEADER.pack(wire.MAGIC, wire.VERSION, int(Msg.DATA), 0,
                             wire.MAX_PAYLOAD, 3, 0),  # the cap, then too little
            frame(int(Msg.DATA), 4, struct.pack("!Q", 0) + b"\xcd" * wire.MAX_DATA),
            frame(int(Msg.RS_DATA), 5, struct.pack("!Q", 1 << 40) + b"\xce" * 300_000),
        ]),
    )


def _expected(stream: bytes) -> tuple[list[tuple[Msg, bytes]], bool]:
    """What a strict reader yields: the frames before the first bad one, and whether the
    stream ends cleanly at a frame boundary after them."""
    out: list[tuple[Msg, bytes]] = []
    pos = 0
    while pos < len(stream):
        if len(stream) - pos < wire.HEADER_SIZE:
            return out, False
        try:
            head = wire.decode_header(stream[pos:pos + wire.HEADER_SIZE])
            payload = stream[pos + wire.HEADER_SIZE:pos + wire.HEADER_SIZE + head.length]
            if len(payload) < head.length:
                return out, False
            wire.check_payload(head, payload)
            body = wire.decode_body(head.kind, payload)
        except PeerProtocolError:
            return out, False
        out.append((head.kind, wire.body_bytes(body)))
        pos += wire.HEADER_SIZE + head.length
    return out, True


async def _read_all(stream: bytes, pieces: list[int]) -> tuple[list[tuple[Msg, bytes]],
                                                               BaseException | None]:
    a, b = socket.socketpair()

    def writer() -> None:  # fragmented writes, then EOF
        try:
            pos = 0
            for n in pieces:
                b.sendall(stream[pos:pos + n])
                pos += n
            b.sendall(stream[pos:])
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the reader gave up first

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    link = Link(a)
    got: list[tuple[Msg, bytes]] = []
    error: BaseException | None = None
    try:
        while True:
            kind, _, body = await asyncio.wait_for(link.recv(), SLOW)
            got.append((kind, wire.body_bytes(body)))
    except (PeerProtocolError, ConnectionResetError) as exc:
        error = exc
    finally:
        link.close()
        a.close()
        await asyncio.to_thread(thread.join, SLOW)
        b.close()
    return got, error


@fuzz(300)
@given(st.lists(_chunks(), min_size=1, max_size=6),
       st.lists(st.integers(1, 40), max_size=6), st.integers(0, 30))
def test_byte_streams_through_link_recv(chunks: list[bytes], pieces: list[int],
                                        tail_cut: int) -> None:
    stream = b"".join(chunks)
    stream = stream[:max(0, len(stream) - tail_cut)] if tail_cut < 20 else stream
    got, error = asyncio.run(_read_all(stream, pieces))
    want, clean = _expected(stream)
    assert got == want
    assert error is not None and str(error)
    if clean:
        assert isinstance(error, ConnectionResetError), error
    else:
        assert isinstance(error, PeerProtocolError), error


def test_oversized_header_is_refused_before_its_payload_is_read() -> None:
    head = wire.HEADER.pack(wire.MAGIC, wire.VERSION, int(Msg.DATA), 0,
                            wire.MAX_PAYLOAD + 1, 3, 0)
    got, error = asyncio.run(_read_all(head, []))  # no payload follows: no wait for it
    assert got == [] and isinstance(error, PeerProtocolError)
    assert f"oversized frame: {wire.MAX_PAYLOAD + 1} bytes" in str(error)


# ------------------------------------------------------------------ the authentication

SECRET = b"s3cret-xyz"
REAL_AUTH = b"<the AUTH frame with the MAC over our challenge>"  # built by the fake peer


async def _handshake(peer_frames: list[bytes], secret: bytes = SECRET) -> BaseException | None:
    """Our side of ``authenticate`` (as n2) against a fake n1 that reads our HELLO, then
    sends ``peer_frames`` (``REAL_AUTH``: an AUTH frame with its MAC, made with
    ``secret``, over our challenge) and closes."""
    a, b = socket.socketpair()
    b.settimeout(SLOW)

    def peer() -> None:
        try:
            raw = b""
            while len(raw) < wire.HEADER_SIZE:
                raw += b.recv(4096)
            head = wire.decode_header(raw[:wire.HEADER_SIZE])
            while len(raw) < wire.HEADER_SIZE + head.length:
                raw += b.recv(4096)
            ours = wire.Hello.decode(raw[wire.HEADER_SIZE:wire.HEADER_SIZE + head.length])
            mac = auth_mac(secret, ours.challenge, "n1", "r0")
            for f in peer_frames:
                b.sendall(frame(int(Msg.AUTH), 0, mac) if f == REAL_AUTH else f)
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    link = Link(a)
    try:
        await asyncio.wait_for(authenticate(link, SECRET, "n2", "n1", "r0"), SLOW)
        return None
    except (PeerProtocolError, ConnectionResetError) as exc:
        return exc
    finally:
        link.close()
        a.close()
        await asyncio.to_thread(thread.join, SLOW)
        b.close()


def _hello(node: bytes = b"n1", disk: bytes = b"r0", proto: int = PROTO) -> bytes:
    fixed = wire.Hello.FIXED.pack(proto, os.urandom(wire.CHALLENGE_SIZE))
    return frame(int(Msg.HELLO), 0, fixed + node + b"\0" + disk)


@fuzz(300)
@given(st.lists(st.one_of(
    st.builds(_hello, node=_NAME, disk=_NAME, proto=st.sampled_from([PROTO, 0, 2, 65535])),
    st.builds(_hello),
    st.binary(min_size=32, max_size=32).map(lambda m: frame(int(Msg.AUTH), 0, m)),
    st.sampled_from(SAMPLES).map(lambda s: b"".join(bytes(p) for p in wire.encode_body(
        s[0], 0, s[1]))),
    st.binary(max_size=40),
), min_size=0, max_size=3), st.booleans())
def test_hostile_handshakes_end_in_protocol_or_auth_errors(frames: list[bytes],
                                                           wrong_secret: bool) -> None:
    """A fake peer sends anything during the handshake (a real AUTH made with the wrong
    secret among it): refused with a message, never an exception of another kind."""
    if wrong_secret:
        frames = [_hello(), REAL_AUTH] + frames
    error = asyncio.run(_handshake(frames, b"a-guess"))
    assert error is not None and str(error)
    assert isinstance(error, (PeerProtocolError, ConnectionResetError))


def test_right_secret_authenticates_and_wrong_secret_is_an_auth_error() -> None:
    assert asyncio.run(_handshake([_hello(), REAL_AUTH], SECRET)) is None
    err = asyncio.run(_handshake([_hello(), REAL_AUTH], b"not-the-secret"))
    assert isinstance(err, AuthError)
    assert "authentication failed: the peer does not know the shared secret" in str(err)
    assert "not-the-secret" not in str(err) and SECRET.decode() not in str(err)
