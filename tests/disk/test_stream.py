"""The hand-written non-blocking streams: frames survive any chunking on the way in, and
queued sends leave in order however full the socket is."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from kembar.disk import wire
from kembar.disk.link import Link
from kembar.disk.wire import Msg

payload_sizes = st.lists(st.one_of(st.integers(1, 64), st.integers(100_000, 400_000)),
                         min_size=1, max_size=8)


def _frames(sizes: list[int], seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i, n in enumerate(sizes):
        out.append(b"".join(bytes(p) for p in wire.encode_data(Msg.DATA, i, i * 4096,
                                                                rng.randbytes(n))))
    return out


@settings(max_examples=30, deadline=None)
@given(payload_sizes, st.one_of(st.integers(1, 40), st.integers(1000, 70_000)), st.integers(0, 2**32))
def test_frames_arrive_whole_whatever_the_chunking(sizes: list[int], chunk: int,
                                                   seed: int) -> None:
    frames = _frames(sizes, seed)
    a, b = socket.socketpair()

    def sender() -> None:
        blob = b"".join(frames)
        pos = 0
        while pos < len(blob):
            # tiny pieces around frame boundaries and headers, big ones elsewhere
            step = chunk if pos < 200 or len(blob) - pos < 200 else max(chunk, 4096)
            a.sendall(blob[pos:pos + step])
            pos += step
        a.close()

    async def receive() -> list[tuple[int, int, bytes]]:
        link = Link(b)
        got = []
        for _ in frames:
            kind, seq, body = await link.recv()
            assert kind == Msg.DATA and isinstance(body, wire.DataBlock)
            got.append((seq, body.offset, bytes(body.data)))
        link.close()
        return got

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    got = asyncio.run(receive())
    t.join(5)
    for i, (raw, (seq, offset, data)) in enumerate(zip(frames, got)):
        assert seq == i and offset == i * 4096 and raw.endswith(data)


def test_queued_sends_leave_in_order_through_a_full_socket() -> None:
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    frames = _frames([200_000, 7, 300_000, 1, 50_000] * 4, 7)
    received = bytearray()

    def slow_reader() -> None:
        b.settimeout(10)
        while len(received) < sum(map(len, frames)):
            time.sleep(0.001)
            chunk = b.recv(8192)
            if not chunk:
                break
            received.extend(chunk)

    async def send() -> None:
        link = Link(a)
        for raw in frames:
            link.send_parts([raw[:10], memoryview(raw)[10:]])  # split, as frames are
        assert link.buffered() > 0  # the socket could not take it all at once
        await link.drain()
        while link.buffered():
            await asyncio.sleep(0.01)

    t = threading.Thread(target=slow_reader, daemon=True)
    t.start()
    asyncio.run(send())
    t.join(10)
    assert bytes(received) == b"".join(frames)
    a.close()
    b.close()
