"""The write latency histograms of a disk: fixed buckets, counts per protocol label."""

from __future__ import annotations

from kembar.disk.latency import BOUNDS, NOT_REPLICATED, WriteLatency


def test_writes_land_in_the_bucket_of_their_upper_bound() -> None:
    lat = WriteLatency()
    for seconds in (0.00005, 0.0001, 0.0003, 0.002, 0.002, 20.0):
        lat.observe("C", seconds)
    lat.observe(NOT_REPLICATED, 0.01)
    st = lat.status()
    assert st["bounds"] == list(BOUNDS)
    c = st["protocols"]["C"]
    assert c["count"] == 6 == sum(c["counts"])
    assert c["counts"][0] == 2  # 50 µs and exactly 100 µs: le 0.0001
    assert c["counts"][BOUNDS.index(0.0005)] == 1
    assert c["counts"][BOUNDS.index(0.0025)] == 2
    assert c["counts"][-1] == 1  # above every bound: +Inf
    assert abs(c["sum"] - 20.00445) < 1e-6
    assert st["protocols"]["none"]["counts"][BOUNDS.index(0.01)] == 1
    assert list(st["protocols"]) == ["C", "none"]


def test_empty() -> None:
    assert WriteLatency().status() == {"bounds": list(BOUNDS), "protocols": {}}
