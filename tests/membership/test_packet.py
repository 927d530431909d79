from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kembar.errors import PeerProtocolError
from kembar.membership.authkeys import METHODS, AuthKeys, Key
from kembar.membership.packet import (HEADER, HEADER_SIZE, HEARTBEAT, MAC_SIZES, MAGIC,
                                      MAX_BODY, MAX_NAME, MAX_PACKET, MAX_STATUS, MAX_U64,
                                      REASONS, SHUTDOWN, VERSION, BadPacket, Packet, decode,
                                      encode)


def ring(active: int, *keys: tuple[int, str, bytes]) -> AuthKeys:
    return AuthKeys(active, {i: Key(i, m, s) for i, m, s in keys})


SHA1 = ring(1, (1, "sha1", b"SomeSharedSecret"))
SAMPLE = Packet(HEARTBEAT, "web", "alpha", incarnation=1700000000123, seq=42, status="up",
                sent_at_ms=1700000001234, body=b'{"ping": 100}')


def reason_of(data: bytes, keys: AuthKeys) -> str:
    with pytest.raises(BadPacket) as info:
        decode(data, keys)
    assert isinstance(info.value, PeerProtocolError)
    assert info.value.reason in REASONS
    return info.value.reason


# ------------------------------------------------------------------ layout

def test_exact_layout() -> None:
    key = Key(3, "sha256", b"k")
    data = encode(SAMPLE, AuthKeys(3, {3: key}))
    signed = (b"KBHB" + bytes([1, 1, 3, 0])
              + struct.pack("!QQQ", SAMPLE.incarnation, 42, SAMPLE.sent_at_ms)
              + b"\x03web" + b"\x05alpha" + b"\x02up"
              + struct.pack("!H", len(SAMPLE.body)) + SAMPLE.body)
    assert data == signed + hmac.new(b"k", signed, hashlib.sha256).digest()
    assert HEADER_SIZE == 32 and MAGIC == b"KBHB" and VERSION == 1


@pytest.mark.parametrize("method", METHODS)
def test_mac_length_per_method(method: str) -> None:
    data = encode(SAMPLE, ring(1, (1, method, b"s")))
    bare = encode(Packet(HEARTBEAT, "", "", 0, 0, "", 0), ring(1, (1, method, b"s")))
    assert len(bare) == HEADER_SIZE + 1 + 1 + 1 + 2 + MAC_SIZES[method]
    assert MAC_SIZES[method] == hashlib.new(method).digest_size
    assert decode(data, ring(1, (1, method, b"s"))) == SAMPLE


# ------------------------------------------------------------------ round trips

_U64 = st.integers(0, MAX_U64)


def _text(max_bytes: int) -> st.SearchStrategy[str]:
    return st.text(max_size=max_bytes).filter(lambda s: len(s.encode()) <= max_bytes)


PACKETS = st.builds(
    Packet, type=st.sampled_from([HEARTBEAT, SHUTDOWN]), cluster=_text(MAX_NAME),
    node=_text(MAX_NAME), incarnation=_U64, seq=_U64, status=_text(MAX_STATUS),
    sent_at_ms=_U64, body=st.binary(max_size=MAX_BODY))
KEYS = st.builds(lambda i, m, s: AuthKeys(i, {i: Key(i, m, s)}), st.integers(1, 15),
                 st.sampled_from(METHODS), st.binary(min_size=1, max_size=80))


@settings(max_examples=200, deadline=None)
@given(p=PACKETS, keys=KEYS)
def test_round_trip(p: Packet, keys: AuthKeys) -> None:
    data = encode(p, keys)
    assert len(data) <= MAX_PACKET
    assert data[6] == keys.active
    assert decode(data, keys) == p
    assert decode(bytearray(data), keys) == p
    assert decode(memoryview(data), keys) == p


def test_largest_packet_fits() -> None:
    p = Packet(SHUTDOWN, "c" * MAX_NAME, "n" * MAX_NAME, MAX_U64, MAX_U64, "s" * MAX_STATUS,
               MAX_U64, b"\xff" * MAX_BODY)
    keys = ring(1, (1, "sha256", b"x"))
    data = encode(p, keys)
    assert len(data) <= MAX_PACKET
    assert decode(data, keys) == p


# ------------------------------------------------------------------ keys

def test_key_rotation_any_listed_key_is_accepted() -> None:
    old = ring(1, (1, "sha1", b"old secret"))
    both = ring(2, (1, "sha1", b"old secret"), (2, "sha256", b"new secret"))
    from_old = encode(SAMPLE, old)
    assert from_old[6] == 1
    assert decode(from_old, both) == SAMPLE
    from_new = encode(SAMPLE, both)
    assert from_new[6] == 2
    assert decode(from_new, both) == SAMPLE
    assert reason_of(from_new, old) == "key"


def test_wrong_secret_is_mac() -> None:
    data = encode(SAMPLE, SHA1)
    assert reason_of(data, ring(1, (1, "sha1", b"SomeOtherSecret"))) == "mac"


def test_same_index_other_method_is_refused() -> None:
    data = encode(SAMPLE, ring(1, (1, "sha256", b"s")))
    # 12 bytes too many for a sha1 MAC: the lengths do not add up.
    assert reason_of(data, ring(1, (1, "sha1", b"s"))) == "length"
    data = encode(SAMPLE, ring(1, (1, "md5", b"s")))
    assert reason_of(data, ring(1, (1, "sha1", b"s"))) == "short"


def test_unknown_key_index() -> None:
    data = encode(SAMPLE, ring(7, (7, "sha1", b"s")))
    assert reason_of(data, ring(1, (1, "sha1", b"s"), (2, "sha1", b"s"))) == "key"


# ------------------------------------------------------------------ each reason

def _signed(fields: bytes, key: Key) -> bytes:
    return fields + hmac.digest(key.secret, fields, key.method)


def _header(version: int = 1, kind: int = 1, index: int = 1, flags: int = 0,
            magic: bytes = MAGIC) -> bytes:
    return HEADER.pack(magic, version, kind, index, flags, 1, 2, 3)


KEY1 = SHA1.sign_key
TAIL = b"\x03web\x05alpha\x02up\x00\x00"


@pytest.mark.parametrize("data, reason", [
    (b"", "short"),
    (b"KBHB", "short"),
    (_header()[:HEADER_SIZE] + b"\0\0\0\0\0", "short"),
    (_signed(_header(magic=b"KBHA") + TAIL, KEY1), "magic"),
    (_signed(_header(version=2) + TAIL, KEY1), "version"),
    (_signed(_header(flags=1) + TAIL, KEY1), "version"),
    (_signed(_header(kind=0) + TAIL, KEY1), "type"),
    (_signed(_header(kind=3) + TAIL, KEY1), "type"),
    (_signed(_header(index=2) + TAIL, KEY1), "key"),
    (_signed(_header(index=0) + TAIL, KEY1), "key"),
    (_signed(_header() + TAIL, KEY1)[:-1] + b"\0", "mac"),
    (_signed(_header() + TAIL, KEY1) + b"\0", "length"),
    (_signed(_header() + TAIL, KEY1)[:-1], "short"),
    (_signed(_header() + b"\x03w\xffb\x05alpha\x02up\x00\x00", KEY1), "utf8"),
    (_signed(_header() + b"\x03web\x05alpha\x02u\xc3\x00\x00", KEY1), "utf8"),
    (_signed(_header() + bytes([MAX_NAME + 1]) + b"c" * (MAX_NAME + 1)
             + b"\x05alpha\x02up\x00\x00", KEY1), "oversize"),
    (_signed(_header() + b"\x03web\x05alpha" + bytes([MAX_STATUS + 1])
             + b"s" * (MAX_STATUS + 1) + b"\x00\x00", KEY1), "oversize"),
    (_signed(_header() + b"\x03web\x05alpha\x02up" + struct.pack("!H", MAX_BODY + 1)
             + b"b" * (MAX_BODY + 1), KEY1), "oversize"),
    (b"\0" * (MAX_PACKET + 1), "oversize"),
])
def test_reasons(data: bytes, reason: str) -> None:
    assert reason_of(data, SHA1) == reason


def test_all_reasons_are_covered_and_messages_are_short() -> None:
    assert REASONS == {"short", "magic", "version", "type", "key", "mac", "length", "utf8",
                       "oversize"}
    err = BadPacket("mac", "key 1")
    assert str(err) == "bad heartbeat packet (mac): key 1"
    assert err.reason == "mac"


def test_strings_are_not_decoded_before_the_mac() -> None:
    # Invalid UTF-8 under a wrong MAC is a MAC failure, not a UTF-8 one.
    data = _signed(_header() + b"\x03w\xffb\x05alpha\x02up\x00\x00", KEY1)
    assert reason_of(data[:-1] + bytes([data[-1] ^ 1]), SHA1) == "mac"


# ------------------------------------------------------------------ corruption

@pytest.mark.parametrize("method", METHODS)
def test_every_single_bit_flip_is_refused(method: str) -> None:
    keys = ring(1, (1, method, b"s3cret"), (2, "sha1", b"other"))
    data = encode(SAMPLE, keys)
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(BadPacket):
            decode(bytes(flipped), keys)


@pytest.mark.parametrize("method", METHODS)
def test_every_truncation_is_refused(method: str) -> None:
    keys = ring(1, (1, method, b"s3cret"))
    data = encode(SAMPLE, keys)
    for n in range(len(data)):
        assert reason_of(data[:n], keys) == "short"


@settings(max_examples=200, deadline=None)
@given(p=PACKETS, keys=KEYS, data=st.data())
def test_random_bit_flips_truncations_and_appends(p: Packet, keys: AuthKeys,
                                                  data: st.DataObject) -> None:
    good = encode(p, keys)
    bit = data.draw(st.integers(0, len(good) * 8 - 1))
    flipped = bytearray(good)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(BadPacket):
        decode(bytes(flipped), keys)
    cut = data.draw(st.integers(0, len(good) - 1))
    with pytest.raises(BadPacket):
        decode(good[:cut], keys)
    extra = data.draw(st.binary(min_size=1, max_size=64))
    assert reason_of(good + extra, keys) in {"length", "oversize"}


@settings(max_examples=500, deadline=None)
@given(blob=st.binary(max_size=MAX_PACKET + 10) | st.binary(min_size=50, max_size=200).map(
    lambda b: MAGIC + bytes([1, 1, 1, 0]) + b))
def test_arbitrary_bytes_never_raise_anything_else(blob: bytes) -> None:
    try:
        result = decode(blob, SHA1)
    except BadPacket as exc:
        assert exc.reason in REASONS
    else:  # a forged MAC: astronomically unlikely
        assert isinstance(result, Packet)


@settings(max_examples=200, deadline=None)
@given(header=st.binary(min_size=HEADER_SIZE - 8, max_size=HEADER_SIZE - 8),
       lengths=st.lists(st.integers(0, 600), min_size=4, max_size=4),
       rest=st.binary(max_size=700))
def test_structured_garbage_under_a_valid_header(header: bytes, lengths: list[int],
                                                 rest: bytes) -> None:
    # Valid magic/version/type/key, then garbage lengths: BadPacket only.
    head = MAGIC + bytes([1, 1, 1, 0]) + header[8:] + bytes(8)
    blob = head + bytes([lengths[0] % 256]) + rest[:lengths[1]] + struct.pack(
        "!H", lengths[3]) + rest
    with pytest.raises(BadPacket):
        decode(blob[:MAX_PACKET + 5], SHA1)


# ------------------------------------------------------------------ encode refuses

@pytest.mark.parametrize("change, fragment", [
    ({"cluster": "c" * (MAX_NAME + 1)}, "cluster name is 65 bytes"),
    ({"node": "é" * 33}, "node name is 66 bytes"),
    ({"status": "s" * (MAX_STATUS + 1)}, "status is 33 bytes"),
    ({"node": "\ud800"}, "node name cannot be encoded as UTF-8"),
    ({"body": b"x" * (MAX_BODY + 1)}, f"body is {MAX_BODY + 1} bytes"),
    ({"body": "text"}, "body must be bytes"),
    ({"incarnation": -1}, "incarnation must be an integer"),
    ({"seq": MAX_U64 + 1}, "seq must be an integer"),
    ({"sent_at_ms": -5}, "sent_at_ms must be an integer"),
    ({"seq": 1.5}, "seq must be an integer"),
    ({"type": 3}, "unknown packet type 3"),
    ({"type": 0}, "unknown packet type 0"),
])
def test_encode_refuses_out_of_range(change: dict[str, object], fragment: str) -> None:
    fields = {**SAMPLE.__dict__, **change}
    with pytest.raises(ValueError, match=fragment):
        encode(Packet(**fields), SHA1)
