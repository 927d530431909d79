"""The torture's pure parts: the seeded schedule and the judge."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from kembar.cli.main import cli
from kembar.errors import ConfigError
from kembar.lab.torture import judge
from kembar.lab.torture.run import loss_rules
from kembar.lab.torture.schedule import KINDS, LINKS, NODES, make_schedule, parse_kinds


@given(st.integers(0, 10**9), st.integers(1, 60))
def test_the_same_seed_gives_the_same_schedule(seed: int, n: int) -> None:
    a = make_schedule(seed, n)
    assert a == make_schedule(seed, n)
    assert [f.i for f in a] == list(range(1, n + 1))
    for f in a:
        assert f.kind in KINDS and f.node in NODES
        assert (f.link in LINKS) == (f.kind in ("partition", "loss"))
        assert f.link != "all" or f.kind == "partition"
        assert (f.loss > 0) == (f.kind == "loss")
    assert make_schedule(seed, n + 5)[:n] == a  # a longer run starts the same way


def test_a_schedule_uses_only_the_kinds_asked_for_and_all_of_them_in_time() -> None:
    s = make_schedule(3, 200, ("crash", "loss"))
    assert {f.kind for f in s} == {"crash", "loss"}
    assert {f.kind for f in make_schedule(3, 300)} == set(KINDS)
    assert {f.link for f in make_schedule(3, 50, ("partition",), private=False)} == {"all"}


@pytest.mark.parametrize("text, why", [
    ("crash,nosuch", "unknown nosuch"), (",", "empty list"), ("Crash", "unknown Crash")])
def test_unknown_fault_kinds_are_refused(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_kinds(text)


def test_fault_kinds_parse_in_order_without_repeats() -> None:
    assert parse_kinds(" loss, crash ,loss") == ("loss", "crash")
    assert parse_kinds("") == tuple(KINDS)
    with pytest.raises(ConfigError, match="at least 1"):
        make_schedule(1, 0)


def test_records_are_parsed_per_writer_and_torn_lines_counted() -> None:
    text = "== w0001-node1\n1 w0001-node1\n2 w0001-node1\n3 w00\n\n== w0002-node2\n" \
           "1 w0002-node2\n7 w0001-node1\n"
    present, bad = judge.parse_records(text)
    assert present == {"w0001-node1": {1, 2}, "w0002-node2": {1}}
    assert bad == 2  # a torn record, and one that names another writer's file
    assert judge.lost_records({"w0001-node1": 2, "w0002-node2": 1}, present) == {}
    assert judge.lost_records({"w0001-node1": 4, "w0003-node1": 1}, present) == {
        "w0001-node1": [3, 4], "w0003-node1": [1]}


@given(st.dictionaries(st.integers(1, 500), st.text(max_size=5)), st.data())
def test_an_order_is_lost_when_missing_or_holding_another_customer(
        acked: dict[int, str], data: st.DataObject) -> None:
    stored = dict(acked)
    gone = data.draw(st.sets(st.sampled_from(sorted(acked)) if acked else st.nothing()))
    for i in gone:
        if data.draw(st.booleans()):
            del stored[i]
        else:
            stored[i] = acked[i] + "x"
    stored[10_000] = "not acknowledged: does not matter"
    assert judge.lost_orders(acked, stored) == sorted(gone)


def test_group_disk_and_overlap_judgements() -> None:
    assert judge.group_problems(["node2"]) == []
    assert judge.group_problems([]) == ["the group runs nowhere"]
    assert "2 nodes at once" in judge.group_problems(["node1", "node2"])[0]
    good = {"role": "Secondary", "disk_state": "UpToDate",
            "peer": {"connection": "Connected", "disk_state": "UpToDate"}}
    prim = dict(good, role="Primary")
    assert judge.disk_problems({"node1": prim, "node2": good}) == []
    assert judge.disk_problems({"node1": prim, "node2": prim}) == [
        "both disks Primary: node1, node2"]
    sb = dict(good, peer={"connection": "StandAlone"},
              last_error="split brain: both sides changed their data")
    assert judge.disk_problems({"node1": prim, "node2": sb})[0].startswith(
        "node2: disk StandAlone (split brain")
    assert judge.reported_split_brain({"node2": sb})
    assert not judge.reported_split_brain({"node1": good})
    assert judge.disk_problems({"node1": {"down": True}}) == ["node1: disk not up"]
    assert judge.overlap_problems(1, 1, False) == []
    assert judge.overlap_problems(2, 1, False) == ["the VIP was up on 2 nodes at once"]
    assert "no split brain" in judge.overlap_problems(1, 2, False)[0]
    assert "no split brain" not in judge.overlap_problems(1, 2, True)[0]


def test_loss_rules_drop_that_share_on_that_interface_both_ways() -> None:
    text = loss_rules("eth1", 25)
    assert text.count("numgen random mod 100 < 25 drop") == 2
    assert 'iifname "eth1"' in text and 'oifname "eth1"' in text


@pytest.mark.parametrize("args, why", [
    (["--iterations", "0"], "at least 1"), (["--faults", "crash,melt"], "unknown melt"),
    (["--seed", "-3"], "--seed -3"), (["--name", "bad name!"], ""),
    (["--priority-delay", "soon"], "invalid duration"),
    (["--priority-delay", "0"], "more than 0"), (["--priority-delay", "10m"], "300 s")])
def test_torture_cli_refuses_bad_arguments_before_building_anything(
        args: list[str], why: str) -> None:
    res = CliRunner().invoke(cli, ["lab", "torture", "--dry-run", *args])
    assert res.exit_code != 0 and why in res.output, res.output


def test_torture_dry_run_prints_the_replayable_schedule() -> None:
    res = CliRunner().invoke(cli, ["lab", "torture", "--dry-run", "--seed", "42", "-i", "5"])
    assert res.exit_code == 0, res.output
    assert "replay: kembar lab torture --seed 42 --iterations 5" in res.output
    again = CliRunner().invoke(cli, ["lab", "torture", "--dry-run", "--seed", "42", "-i", "5"])
    assert again.output == res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()[:1].isdigit()]) == 5
    pf = CliRunner().invoke(cli, ["lab", "torture", "--dry-run", "--seed", "42", "-i", "5",
                                  "--priority-delay", "2s"])
    assert "--iterations 5 --priority-delay 2s" in pf.output, pf.output


def test_the_writer_writes_only_on_the_replicated_filesystem_itself() -> None:
    from pathlib import Path

    from kembar.lab.torture.writer import mounted_from

    info = ("22 1 0:21 / / rw - ext4 /dev/sda1 rw\n"
            "40 22 0:40 / /srv rw - overlay overlay rw,lowerdir=/srv\n"
            "51 40 7:1 / /srv/data rw,relatime - ext4 /dev/loop1 rw\n")
    assert mounted_from(Path("/srv/data"), info) == "/dev/loop1"
    # the replicated filesystem gone: /srv/data is only a directory of the node's /srv
    assert mounted_from(Path("/srv/data"), info.rsplit("51 ", 1)[0]) is None
    assert mounted_from(Path("/srv"), info) == "overlay"
