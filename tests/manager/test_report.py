"""The manager's report inside heartbeats: round trip, size, malformed reports ignored."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kembar.manager.report import DiskReport, Report, decode
from kembar.membership.packet import MAX_BODY

FULL = Report(groups={"web": "running", "db": "stopping"}, failed=("mail",), standby=True,
              takeover={"web": 1764210000123}, disks={"r0": DiskReport("UpToDate", True, False),
                                                       "r1": DiskReport("Inconsistent")},
              fenced={"node1": 7}, unready=("web",))


def test_round_trip_and_empty() -> None:
    assert decode(json.loads(json.dumps(FULL.encode()))) == FULL
    assert Report().encode() == {}
    assert decode({}) == Report()


def test_a_busy_report_fits_in_a_heartbeat() -> None:
    many = Report(groups={f"group{i}": "running" for i in range(8)},
                  disks={f"r{i}": DiskReport("UpToDate", True, True) for i in range(8)},
                  takeover={f"group{i}": 2**42 for i in range(4)}, fenced={"node1": 2**40},
                  unready=tuple(f"group{i}" for i in range(8)))
    assert many.size() + len('{"ping":[2,2],"m":}') <= MAX_BODY


def test_malformed_reports_are_ignored_as_a_whole() -> None:
    good = FULL.encode()
    for bad in [None, [], "x", {"zz": 1}, {**good, "g": {"web": "flying"}},
                {**good, "g": ["web"]}, {**good, "x": "web"}, {**good, "x": [1]},
                {**good, "sb": 2}, {**good, "sb": True}, {**good, "to": {"web": -1}},
                {**good, "to": {"web": 1.5}}, {**good, "d": {"r0": ["Happy", 1, 0]}},
                {**good, "d": {"r0": ["UpToDate", 1]}}, {**good, "d": {"r0": ["UpToDate", True, 0]}},
                {**good, "f": {"node1": "7"}}, {**good, "f": {"": 1}}, {**good, "u": "web"},
                {**good, "u": [3]},
                {**good, "x": ["a"] * 100}]:
        assert decode(bad) is None, bad


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=4) |
                    st.dictionaries(st.sampled_from(["g", "x", "sb", "to", "d", "f", "web", "r0"]),
                                    kids, max_size=4), max_leaves=20)


@given(JSON)
def test_any_json_decodes_to_a_report_or_none(doc: Any) -> None:
    rep = decode(doc)
    assert rep is None or isinstance(rep, Report)
    if rep is not None:
        assert decode(json.loads(json.dumps(rep.encode()))) == rep


def test_disk_reports_carry_the_connection_and_generation_and_old_peers_still_decode() -> None:
    from kembar.manager.report import DiskReport, Report, decode

    r = Report(disks={"r0": DiskReport("UpToDate", False, False, True, False,
                                       "1DB69E0CDC38AC68:0000000000000001")})
    assert decode(r.encode()) == r
    old = decode({"d": {"r0": ["UpToDate", 1, 0, 0]}})  # a peer of the earlier version
    assert old is not None and old.disks["r0"].connected and old.disks["r0"].gen == ""
    for bad in (["UpToDate", 0, 0, 0, 1, "xyz"], ["UpToDate", 0, 0, 0, 2, ""],
                ["UpToDate", 0, 0, 0, 1], ["UpToDate", 0, 0, 0, 1, "1DB69E0CDC38AC68"],
                ["UpToDate", 0, 0, 0, 1, "1db69e0cdc38ac68:0000000000000000"],
                ["UpToDate", 0, 0, 0, True, ""], ["UpToDate", 0, 0, 0, 1, 7]):
        assert decode({"d": {"r0": bad}}) is None, bad
