"""Write latency on the Primary: every completed write counted into fixed buckets.

One histogram per protocol label: the disk's protocol (``A``, ``B``, ``C``) for a write that
was replicated, ``none`` for one that was not (disconnected, or the peer is Diskless: it
completed on the local disk alone).  Counting costs a bisect and two additions, so it is
always on.  The disk's status carries the histograms (``write_latency``), the cluster
daemon's ``/metrics`` turns them into Prometheus histograms.

Invariant: ``sum(counts) == count`` for every histogram; ``counts[i]`` holds the writes whose
latency is at most ``BOUNDS[i]`` and above ``BOUNDS[i - 1]``; the last one, those above every
bound.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

# seconds: from a page-cache hit (100 µs) to a peer that stalls for the disk's timeout
BOUNDS: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                             0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
NOT_REPLICATED = "none"


class Histogram:
    __slots__ = ("counts", "count", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BOUNDS, seconds)] += 1
        self.count += 1
        self.sum += seconds


class WriteLatency:
    """The histograms of one disk, by protocol label."""

    def __init__(self) -> None:
        self.by_protocol: dict[str, Histogram] = {}

    def observe(self, protocol: str, seconds: float) -> None:
        h = self.by_protocol.get(protocol)
        if h is None:
            h = self.by_protocol[protocol] = Histogram()
        h.observe(seconds)

    def status(self) -> dict[str, Any]:
        """``{"bounds": [...], "protocols": {label: {"counts", "count", "sum"}}}`` (counts
        per bucket, not cumulative; the last bucket is +Inf)."""
        return {"bounds": list(BOUNDS),
                "protocols": {p: {"counts": list(h.counts), "count": h.count,
                                  "sum": round(h.sum, 6)}
                              for p, h in sorted(self.by_protocol.items())}}
