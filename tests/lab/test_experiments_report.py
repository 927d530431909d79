"""The experiments' report: tables and charts from a run's numbers, the paper's beside
them; malformed results refused with the place and the problem."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kembar.lab.experiments import paper
from kembar.lab.experiments.report import ResultsError, check_results, load_results, \
    new_results, render_markdown, write_report

speeds = st.lists(st.floats(min_value=1.0, max_value=5000.0), min_size=1, max_size=10)


def results(mbs: dict[str, list[float]], outages: list[float]) -> dict[str, Any]:
    res = new_results("abc1234")
    res["sync"] = {
        "protocol": "C",
        "runs": [{"size": s, "bytes": 10**8, "mbs": xs} for s, xs in mbs.items()],
        "catchup": [{"size": s, "bytes": 10**8, "seconds": [0.5, 0.25]} for s in mbs],
        "local_ext4": [{"size": s, "bytes": 10**8, "mbs": [x * 2 for x in xs]}
                       for s, xs in mbs.items()],
        "tcp_mbs": 1234.5, "memory_read_mbs": 9000.0, "disk_read_mbs": 300.0}
    runs = [{"outage": o, "steps": [{"step": "node1 declared dead", "at": o / 2},
                                    {"step": "ip up", "at": o}]} for o in outages]
    res["failover"] = {"timing": "fast", "keepalive": 0.01, "deadtime": 0.05,
                       "systems": {"kembar": runs, "heartbeat": runs[:1]}}
    res["failback"] = {"timing": "fast", "keepalive": 0.01, "deadtime": 0.05,
                       "systems": {"kembar": json.loads(json.dumps(runs))}}
    return res


@settings(max_examples=40, deadline=None)
@given(a=speeds, b=speeds, outages=st.lists(st.floats(0.0, 60.0), min_size=1, max_size=10))
def test_the_tables_show_the_runs_numbers_beside_the_papers(
        a: list[float], b: list[float], outages: list[float]) -> None:
    res = results({"100M": a, "1G": b}, outages)
    md = render_markdown(res)
    for size, xs in (("100M", a), ("1G", b)):
        m = statistics.fmean(xs)
        row = next(line for line in md.splitlines() if line.startswith(f"| {size} | "))
        assert f"**{m:,.1f}**" in row and f"{paper.SYNC_MEANS[size]}" in row
        assert f"{m / paper.SYNC_MEANS[size]:.1f}×" in row
        assert f"replicated ÷ local = {0.5:.2f}" in md  # the baseline is twice as fast
    assert f"**{statistics.median(outages):.2f}**" in md
    assert "| heartbeat | 1 |" in md and "~3 |" in md and "~5 |" in md
    assert "abc1234" in md and "1,234.5 MB/s" in md and "30.0×" in md


def test_write_report_makes_markdown_charts_and_json(tmp_path: Path) -> None:
    res = results({"100M": [100.0, 120.0], "8M": [80.0, 90.0]}, [0.2, 0.3])
    md = write_report(res, tmp_path / "r")
    names = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert names == ["failback.png", "failover.png", "report.md", "results.json", "sync.png"]
    for png in ("sync.png", "failover.png", "failback.png"):
        data = (tmp_path / "r" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert "![sync.png](sync.png)" in md.read_text()
    assert "| 8M |" in md.read_text()  # a size the paper has not: shown without a reference
    assert load_results(tmp_path / "r" / "results.json") == json.loads(json.dumps(res))


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(kind="other"), r"not kembar lab results"),
    (lambda r: r.update(version=9), r"version 9, this kembar reads 1"),
    (lambda r: r.pop("machine"), r"machine missing"),
    (lambda r: r["sync"]["runs"][0].update(mbs=[]), r"sync\.runs\[0\]\.mbs: a non-empty"),
    (lambda r: r["sync"]["runs"][0].update(mbs=[1.0, -2.0]), r"positive numbers"),
    (lambda r: r["sync"]["runs"][0].update(mbs=[float("nan")]), r"positive numbers"),
    (lambda r: r["sync"]["runs"][0].update(bytes="100"), r"runs\[0\]: needs size"),
    (lambda r: r["sync"].update(tcp_mbs=True), r"sync\.tcp_mbs"),
    (lambda r: r["failover"].update(systems={}), r"failover: needs systems"),
    (lambda r: r["failover"]["systems"]["kembar"][0].update(outage=-1),
     r"failover\.systems\.kembar\[0\]\.outage"),
    (lambda r: r["failback"]["systems"]["kembar"][0].update(steps=[{"step": 1}]),
     r"failback\.systems\.kembar\[0\]\.steps"),
    (lambda r: r["failover"].update(notes="one"), r"failover\.notes: a list of texts"),
    (lambda r: r["failover"].update(notes=[1]), r"failover\.notes: a list of texts"),
])
def test_malformed_results_are_refused_with_the_place(change: Any, message: str) -> None:
    res = results({"100M": [100.0]}, [0.5])
    change(res)
    with pytest.raises(ResultsError, match=message):
        check_results(res)


def test_a_results_file_that_is_not_json_or_missing(tmp_path: Path) -> None:
    bad = tmp_path / "r.json"
    bad.write_text("{nope")
    with pytest.raises(ResultsError, match=r"r\.json: not JSON"):
        load_results(bad)
    with pytest.raises(ResultsError, match=r"cannot read"):
        load_results(tmp_path / "missing.json")


@pytest.mark.parametrize("text, want", [("paper", ("2s", "15s")), ("fast", ("10ms", "50ms")),
                                        ("100ms/500ms", ("100ms", "500ms")),
                                        ("1/3", ("1", "3"))])
def test_timings_presets_and_pairs(text: str, want: tuple[str, str]) -> None:
    from kembar.lab.experiments.failover import parse_timings
    assert parse_timings(text) == want


@pytest.mark.parametrize("text", ["", "slow", "5ms", "1s/", "/1s", "1s/2s/3s", "2s/1s",
                                  "0/1s", "1s/20m", "x/y"])
def test_bad_timings_are_refused(text: str) -> None:
    from kembar.errors import KembarError
    from kembar.lab.experiments.failover import parse_timings
    with pytest.raises(KembarError, match="--timings"):
        parse_timings(text)


@pytest.mark.parametrize("args, message", [
    (["sync", "--sizes", "100K"], "whole MiB"),
    (["sync", "--sizes", "lots"], "--sizes"),
    (["sync", "--runs", "0"], "--runs"),
    (["sync", "--protocol", "D"], "--protocol"),
    (["failover", "--timings", "5ms"], "--timings"),
    (["failover", "--group", "web"], "--group"),
    (["failover", "--against", "pacemaker"], "--against"),
    (["failover", "--against", "heartbeat", "--group", "clone"], "has no clones"),
    (["failback", "--against", "heartbeat", "--group", "clone"], "has no clones"),
])
def test_experiment_cli_refuses_bad_arguments_before_building_a_lab(
        args: list[str], message: str, tmp_path: Path) -> None:
    import subprocess
    import sys
    res = subprocess.run([sys.executable, "-m", "kembar", "lab", "experiment", *args,
                          "--results", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and message in res.stderr, res.stderr
    assert not (tmp_path / "r.json").exists()


def test_each_systems_timeline_and_the_notes_are_in_the_report() -> None:
    res = results({"100M": [100.0]}, [0.5, 0.7])
    res["failover"]["systems"]["heartbeat"] = [
        {"outage": 9.5, "steps": [{"step": "takeover begins", "at": 1.0}]}]
    res["failover"]["notes"] = ["Heartbeat 3.0.6: haresources: node1 apache2"]
    res["failover"]["group"] = "vip"
    md = render_markdown(res)
    assert "Failover timeline (kembar," in md and "Failover timeline (heartbeat," in md
    assert "| takeover begins | 1.000 |" in md and "| **9.50** | 9.50 |" in md
    assert "- Heartbeat 3.0.6: haresources: node1 apache2" in md and "group vip)" in md


@pytest.mark.parametrize("timing, want", [
    (("2s", "15s"), ("2s", "5s", "15s")),          # the paper's ha.cf
    (("10ms", "50ms"), ("10ms", "30ms", "50ms")),  # 60 % of deadtime
    (("100ms", "250ms"), ("100ms", "200ms", "250ms")),  # at least two keepalives
    (("1s", "1500ms"), ("1s", "1500ms", "1500ms")),  # never past deadtime
])
def test_heartbeats_warntime_for_the_timings(timing: tuple[str, str],
                                             want: tuple[str, str, str]) -> None:
    from kembar.config.units import to_seconds
    from kembar.lab.experiments import heartbeat
    got = heartbeat.timing(*timing)
    assert got[0] == want[0] and got[2] == want[2]
    assert to_seconds(got[1]) == pytest.approx(to_seconds(want[1]))


def test_heartbeats_ha_cf_and_haresources_for_the_groups() -> None:
    from kembar.errors import KembarError
    from kembar.lab.experiments import heartbeat
    cf = heartbeat.ha_cf(("2s", "5s", "15s"))
    for line in ("keepalive 2000ms", "warntime 5000ms", "deadtime 15000ms",
                 "initdead 30000ms", "auto_failback on", "crm no", "bcast eth0"):
        assert line in cf.splitlines()
    assert heartbeat.haresources("198.18.0.100", "vip") == \
        "node1 apache2 IPaddr2::198.18.0.100/24/eth0\n"
    assert heartbeat.haresources("198.18.0.100", "full") == (
        "node1 kembardisk::r0 Filesystem::/dev/kembar/r0::/srv/data::ext4 apache2 "
        "IPaddr2::198.18.0.100/24/eth0\n")
    with pytest.raises(KembarError, match="no clones"):
        heartbeat.haresources("198.18.0.100", "clone")
