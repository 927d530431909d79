"""The lab's plan, partition rules, cluster file and boot commands: pure, no I/O."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kembar.config.model import load_cluster
from kembar.errors import ConfigError
from kembar.lab.cluster import cluster_toml
from kembar.lab.names import Plan, check_name, cut, lab_of_ns, port_name, ruleset
from kembar.lab.rc import boot_commands

names = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True)


@given(names, st.integers(1, 8), st.booleans())
def test_plan_names_and_addresses(lab: str, nodes: int, private: bool) -> None:
    plan = Plan(lab, nodes, private)
    assert [lab_of_ns(ns) for ns in plan.namespaces] == [lab] * (nodes + 2)
    addrs = [a for m in plan.machines for a in m.addresses.values()]
    assert len(addrs) == len(set(addrs)) and plan.vip not in addrs
    assert all(a.startswith("198.18.0.") or a.startswith("198.18.1.") for a in addrs)
    assert plan.machine("node1").addresses["public"] == "198.18.0.1"
    assert plan.machine("client").addresses == {"public": "198.18.0.50"}
    for m in plan.machines:
        for link in m.addresses:
            assert len(port_name(m.name, link)) <= 15  # an interface name's limit
    assert Plan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize("bad", ["", "Lab", "1lab", "lab-1", "toolongname", "la b"])
def test_bad_lab_names_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="lab name"):
        check_name(bad)


def test_node_count_is_checked() -> None:
    for n in (0, 9):
        with pytest.raises(ConfigError, match="1 to 8"):
            Plan("x", n)


def test_foreign_namespace_names_are_not_labs() -> None:
    for ns in ("kb-x", "kb--node1", "other-lab-node1", "kb-lab-node1x", "kb-Lab-sw"):
        assert lab_of_ns(ns) is None


machines = st.sampled_from(["node1", "node2", "node3", "client"])


@given(st.lists(st.tuples(machines, machines, st.sampled_from(["public", "private"]))
                .filter(lambda t: t[0] != t[1])))
def test_ruleset_drops_exactly_the_cut_pairs_both_ways(pairs: list[tuple[str, str, str]]) -> None:
    cuts = [cut(a, b, ln) for a, b, ln in pairs]
    text = ruleset(cuts)
    rules = {line.strip() for line in text.splitlines() if line.strip().endswith("drop")}
    want = set()
    for a, b, ln in cuts:
        pa, pb = port_name(a, ln), port_name(b, ln)
        want |= {f'iifname "{pa}" oifname "{pb}" drop', f'iifname "{pb}" oifname "{pa}" drop'}
    assert rules == want
    assert text.startswith("table bridge kembar\ndelete table bridge kembar\n")  # atomic


def test_cut_is_symmetric_and_checked() -> None:
    assert cut("node2", "node1", "public") == cut("node1", "node2", "public")
    with pytest.raises(ConfigError):
        cut("node1", "node1", "public")
    with pytest.raises(ConfigError):
        cut("node1", "node2", "serial")


@pytest.mark.parametrize("private", [False, True])
def test_the_lab_cluster_file_loads_and_boots_the_disk(tmp_path: Path, private: bool) -> None:
    plan = Plan("web", 2, private)
    text = cluster_toml(plan, "C", {"resync_rate": "0"})
    secret = tmp_path / "r0.secret"
    secret.write_text("s3cret")
    secret.chmod(0o600)
    path = tmp_path / "cluster.toml"
    path.write_text(text.replace("/etc/kembar/r0.secret", str(secret)))
    cfg = load_cluster(path)
    assert cfg.cluster.name == "web"
    host = cfg.disk("r0").local("node2")
    assert host.backing == "/mnt/vdb"
    assert host.address == ("198.18.1.2" if private else "198.18.0.2")
    assert boot_commands(cfg, "node1") == [["kembar", "disk", "up", "r0"]]
    assert boot_commands(cfg, "elsewhere") == []
