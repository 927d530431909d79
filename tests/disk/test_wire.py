"""The replication wire format: golden bytes, round trips, and every kind of damage."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kembar.disk import wire
from kembar.disk.wire import Msg
from kembar.errors import PeerProtocolError


def frame_bytes(kind: Msg, seq: int, body: wire.Body) -> bytes:
    return b"".join(bytes(p) for p in wire.encode_body(kind, seq, body))


def test_golden_ping_frame() -> None:
    raw = frame_bytes(Msg.PING, 7, wire.Empty())
    assert raw[:4] == b"KMBR"
    assert raw[4] == 1 and raw[5] == Msg.PING
    assert raw[6:8] == b"\0\0"
    assert struct.unpack("!I", raw[8:12])[0] == 0
    assert struct.unpack("!Q", raw[12:20])[0] == 7
    assert len(raw) == wire.HEADER_SIZE == 24
    head, payload = wire.decode_frame(raw)
    assert head.kind is Msg.PING and head.seq == 7 and payload == b""


SAMPLES: list[tuple[Msg, wire.Body]] = [
    (Msg.HELLO, wire.Hello(1, b"c" * 32, "node-a", "r0")),
    (Msg.AUTH, wire.Auth(b"m" * 32)),
    (Msg.PARAMS, wire.Params(1 << 30, 0xDEADBEEF0, 5, 6, 7, 1, 4, wire.F_CRASHED_PRIMARY,
                             ord("C"), 12)),
    (Msg.DECISION, wire.Decision(-2)),
    (Msg.BITMAP, wire.BitmapChunk(4096, 1, b"\xff\x00" * 10)),
    (Msg.DATA, wire.DataBlock(8192, b"x" * 4096)),
    (Msg.RS_CSUM, wire.Range(0, 4096, b"d" * 32)),
    (Msg.WRITE_ACK, wire.Status(0)),
    (Msg.STATE, wire.State(1, 4, 1, 2, 3, 4)),
    (Msg.BYE, wire.Bye("going down")),
    (Msg.READ_REQ, wire.ReadReq(1 << 20, 65536)),
    (Msg.READ_REPLY, wire.ReadReply(1 << 20, wire.READ_OK, b"r" * 4096)),
    (Msg.READ_REPLY, wire.ReadReply(4096, wire.READ_FAILED)),
]


@pytest.mark.parametrize("kind,body", SAMPLES,
                         ids=[f"{k.name}-{i}" for i, (k, _) in enumerate(SAMPLES)])
def test_round_trip(kind: Msg, body: wire.Body) -> None:
    head, payload = wire.decode_frame(frame_bytes(kind, 3, body))
    decoded = wire.decode_body(head.kind, payload)
    assert wire.body_bytes(decoded) == wire.body_bytes(body)


def test_bad_magic_version_type_flags_length() -> None:
    raw = bytearray(frame_bytes(Msg.PING, 1, wire.Empty()))
    for pos, value, words in [(0, ord("X"), "magic"), (4, 9, "version"), (5, 200, "unknown"),
                              (6, 1, "reserved")]:
        bad = bytearray(raw)
        bad[pos] = value
        with pytest.raises(PeerProtocolError, match=words):
            wire.decode_frame(bytes(bad))
    huge = bytearray(raw)
    huge[8:12] = struct.pack("!I", wire.MAX_PAYLOAD + 1)
    with pytest.raises(PeerProtocolError, match="oversized"):
        wire.decode_header(bytes(huge[:24]))


def test_trailing_and_short_payloads_rejected() -> None:
    with pytest.raises(PeerProtocolError):
        wire.decode_body(Msg.AUTH, b"m" * 33)
    with pytest.raises(PeerProtocolError):
        wire.decode_body(Msg.PARAMS, b"\0" * 10)
    with pytest.raises(PeerProtocolError):
        wire.decode_body(Msg.PING, b"\0")
    with pytest.raises(PeerProtocolError):
        wire.decode_body(Msg.DATA, struct.pack("!Q", 0))  # empty data


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SAMPLES), st.data())
def test_any_single_byte_corruption_is_rejected(sample: tuple[Msg, wire.Body],
                                                data: st.DataObject) -> None:
    kind, body = sample
    raw = bytearray(frame_bytes(kind, 42, body))
    pos = data.draw(st.integers(0, len(raw) - 1))
    flip = data.draw(st.integers(1, 255))
    raw[pos] ^= flip
    with pytest.raises(PeerProtocolError):
        head, payload = wire.decode_frame(bytes(raw))
        wire.decode_body(head.kind, payload)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_raises_anything_but_protocol_error(blob: bytes) -> None:
    try:
        head, payload = wire.decode_frame(blob)
        wire.decode_body(head.kind, payload)
    except PeerProtocolError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(list(Msg)), st.binary(max_size=100))
def test_valid_crc_garbage_body_never_crashes(kind: Msg, payload: bytes) -> None:
    """A peer that frames correctly but lies in the body is still only a PeerProtocolError."""
    raw = b"".join(bytes(p) for p in wire.encode_frame(kind, 1, payload))
    head, got = wire.decode_frame(raw)
    try:
        wire.decode_body(head.kind, got)
    except PeerProtocolError:
        pass


# ------------------------------------------------ reads served by the peer


def test_golden_read_req_and_reply() -> None:
    assert wire.ReadReq(4096, 8192).encode() == struct.pack("!QI", 4096, 8192)
    assert wire.ReadReply(4096, wire.READ_OK, b"ab").encode() == struct.pack("!QB", 4096, 0) + b"ab"
    assert wire.ReadReply(0, wire.READ_FAILED).encode() == struct.pack("!QB", 0, 1)
    raw = frame_bytes(Msg.READ_REQ, 9, wire.ReadReq(0, 4096))
    head, payload = wire.decode_frame(raw)
    assert head.kind is Msg.READ_REQ and head.seq == 9
    assert wire.decode_body(head.kind, payload) == wire.ReadReq(0, 4096)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(1, wire.MAX_DATA))
def test_read_req_round_trip(offset: int, length: int) -> None:
    body = wire.ReadReq(offset, length)
    assert wire.decode_body(Msg.READ_REQ, body.encode()) == body


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**64 - 1), st.binary(min_size=1, max_size=8192))
def test_read_reply_round_trip(offset: int, data: bytes) -> None:
    ok = wire.ReadReply(offset, wire.READ_OK, data)
    assert wire.decode_body(Msg.READ_REPLY, ok.encode()) == ok
    failed = wire.ReadReply(offset, wire.READ_FAILED)
    assert wire.decode_body(Msg.READ_REPLY, failed.encode()) == failed


@pytest.mark.parametrize("kind, payload, words", [
    (Msg.READ_REQ, struct.pack("!QI", 0, 0), "range of 0 bytes"),
    (Msg.READ_REQ, struct.pack("!QI", 0, wire.MAX_DATA + 1), "range of"),
    (Msg.READ_REQ, struct.pack("!QI", 0, 4096) + b"x", "expected 12"),
    (Msg.READ_REQ, b"\0" * 11, "expected 12"),
    (Msg.READ_REPLY, struct.pack("!QB", 0, wire.READ_OK), "data of 0 bytes"),
    (Msg.READ_REPLY, struct.pack("!QB", 0, wire.READ_FAILED) + b"x", "failure status"),
    (Msg.READ_REPLY, struct.pack("!QB", 0, 7) + b"x", "bad status 7"),
    (Msg.READ_REPLY, b"\0" * 8, "at least 9"),
])
def test_bad_read_messages_are_protocol_errors(kind: Msg, payload: bytes, words: str) -> None:
    with pytest.raises(PeerProtocolError, match=words):
        wire.decode_body(kind, payload)


def test_read_reply_larger_than_a_data_block_is_refused() -> None:
    payload = struct.pack("!QB", 0, wire.READ_OK) + b"x" * (wire.MAX_DATA + 1)
    with pytest.raises(PeerProtocolError, match="data of"):
        wire.decode_body(Msg.READ_REPLY, payload)
