"""The drill's pure parts: which scenarios can run here, and the verdicts; its poller
against a real local web server that goes away and comes back."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from kembar.config.model import parse_cluster
from kembar.drill.poller import Poller, outages, parse_url
from kembar.drill.run import NFT_TABLE, nft_rules
from kembar.drill.scenarios import default_url, judge, link_target, parse_scenarios, \
    pick_group, service_target
from kembar.errors import KembarError
from kembar.lab import cluster
from kembar.lab.names import Plan
from tests.lab.test_poll import _Site  # the same local site (answers as node1)


def cfg(tmp_path: Path, restarts: int = 2, probe: bool = True) -> Any:
    plan = Plan("t")
    secret = tmp_path / "r0.secret"
    secret.write_text("s" * 32)
    secret.chmod(0o600)
    text = cluster.cluster_toml(plan, membership=cluster.membership_toml(plan, "bcast"),
                                groups=cluster.group_toml(plan, restarts=restarts,
                                                          probe=probe))
    return parse_cluster(text.replace("/etc/kembar/r0.secret", str(secret)))


def manager(here: str = "running", running_on: list[str] | None = None) -> dict[str, Any]:
    return {"groups": {"web": {"here": here, "running_on": running_on or ["node1"]}}}


def test_scenarios_are_parsed_in_order_without_repeats() -> None:
    assert parse_scenarios("link, switchover,link") == ["link", "switchover"]
    for bad in ("", "reboot", "switchover,,crash"):
        with pytest.raises(KembarError, match="--scenarios"):
            parse_scenarios(bad)


def test_the_group_must_run_here(tmp_path: Path) -> None:
    c = cfg(tmp_path)
    assert pick_group(c, manager(), "node1", None) == "web"
    with pytest.raises(KembarError, match="web runs on node2, not here \\(node1\\)"):
        pick_group(c, manager("stopped", ["node2"]), "node1", None)
    with pytest.raises(KembarError, match="--group db: no such group"):
        pick_group(c, manager(), "node1", "db")


def test_the_url_is_the_groups_probe(tmp_path: Path) -> None:
    assert default_url(cfg(tmp_path), "web") == "http://198.18.0.100:80/health"
    assert default_url(cfg(tmp_path, probe=False), "web") is None


def test_the_service_is_not_killed_when_one_more_failure_moves_the_group(
        tmp_path: Path) -> None:
    c = cfg(tmp_path, restarts=2)
    res, why = service_target(c, "web", {"service site": 1})
    assert res is not None and res.name == "site" and why == ""
    res, why = service_target(c, "web", {"service site": 2})
    assert res is None and "one more would move the group" in why and "cleanup web" in why
    res, why = service_target(cfg(tmp_path, restarts=0), "web", {})
    assert res is None and "0 allowed" in why


def test_a_single_heartbeat_link_is_never_cut() -> None:
    assert link_target(["eth0", "eth1"], None) == ("eth1", "")
    assert link_target(["eth0", "eth1"], "eth0") == ("eth0", "")
    link, why = link_target(["eth0"], None)
    assert link is None and "real failover" in why
    with pytest.raises(KembarError, match="--link eth9: not a heartbeat link here"):
        link_target(["eth0", "eth1"], "eth9")


def test_verdicts() -> None:
    assert judge(True, "x", 0.4, None).verdict == "PASS"
    assert judge(True, "x", 0.4, 0.5).verdict == "PASS"
    r = judge(True, "x", 0.6, 0.5)
    assert r.verdict == "FAIL" and "--max-outage 0.5" in r.detail
    assert judge(False, "x", 0.1, None).verdict == "FAIL"
    assert r.as_dict() == {"scenario": "x", "verdict": "FAIL", "outage": 0.6,
                           "detail": r.detail}


def test_the_firewall_rule_drops_only_heartbeats_on_that_link() -> None:
    text = nft_rules("eth1", 694)
    assert f"table inet {NFT_TABLE}" in text
    assert 'iifname "eth1" udp dport 694 drop' in text
    assert 'oifname "eth1" udp dport 694 drop' in text


def test_bad_urls_are_refused() -> None:
    assert parse_url("http://198.18.0.100/health") == ("198.18.0.100", 80, "/health")
    assert parse_url("http://h:8080/a?b=1") == ("h", 8080, "/a?b=1")
    for bad in ("https://h/", "h/x", "http:///x", "http://h:99999/"):
        with pytest.raises(KembarError, match="URL"):
            parse_url(bad)


@pytest.fixture
def server() -> Iterator[http.server.ThreadingHTTPServer]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_the_poller_sees_an_outage_and_its_end(server: http.server.ThreadingHTTPServer
                                               ) -> None:
    port = server.server_address[1]
    p = Poller(f"http://127.0.0.1:{port}/", interval=0.02, timeout=0.3).start()
    time.sleep(0.3)
    server.shutdown()
    server.server_close()  # refused from now on
    time.sleep(0.4)
    again = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Site)
    th = threading.Thread(target=again.serve_forever, daemon=True)
    th.start()
    try:
        time.sleep(0.3)
    finally:
        recs = p.stop()
        again.shutdown()
        again.server_close()
    [gap] = outages(recs)
    assert 0.3 <= gap["seconds"] < 1.5 and gap["failed"] >= 5
    assert gap["before"] == gap["after"] == "node1"
    assert all(r["node"] == "node1" for r in recs if r["ok"])


def test_slow_replies_count_as_outage_when_asked() -> None:
    recs = [{"t": 0.0, "ok": True, "node": "a", "rtt": 0.01},
            {"t": 0.05, "ok": True, "node": "b", "rtt": 0.45},  # held until b took over
            {"t": 0.10, "ok": True, "node": "b", "rtt": 0.40},
            {"t": 0.50, "ok": True, "node": "b", "rtt": 0.01}]
    assert outages(recs) == []
    [gap] = outages(recs, slow=0.25)
    assert gap["seconds"] == 0.5 and gap["failed"] == 2 and gap["after"] == "b"


@pytest.mark.parametrize("args, message", [
    (["--scenarios", "reboot"], "--scenarios 'reboot'"),
    (["--cut-seconds", "0"], "--cut-seconds"),
    (["--timeout", "-1"], "--timeout"),
    (["--max-outage", "x"], "--max-outage"),
    ([], "/nonexistent/cluster.toml"),  # a missing cluster file, named
])
def test_drill_cli_refuses_bad_arguments_before_touching_anything(
        args: list[str], message: str) -> None:
    import subprocess
    import sys
    res = subprocess.run([sys.executable, "-m", "kembar", "drill", "--yes",
                          "-c", "/nonexistent/cluster.toml", *args],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and message in res.stderr, res.stderr


def test_a_site_that_does_not_name_its_node_counts_once_the_group_is_there(
        tmp_path: Path) -> None:
    """Most sites send no X-Served-By (a plain apache2, Python's http.server): a good reply
    sent after the daemon said where the group runs is that node's; one from before, or a
    reply naming another node, is not (docs/install.md's drill found this)."""
    from kembar.drill.run import Drill
    d = Drill(cfg(tmp_path), "node1", "web", "http://127.0.0.1:9/", str(tmp_path), 5, None)
    now = time.time()
    d.poller.records = [{"t": now - 1.0, "ok": True, "node": "", "rtt": 0.01},
                        {"t": now - 0.5, "ok": True, "node": "node1", "rtt": 0.01}]
    assert d._served(now - 2, "node1")  # it names node1
    assert not d._served(now - 2, "node2")  # the anonymous one came before the call
    d.poller.records.append({"t": time.time() + 0.05, "ok": True, "node": "", "rtt": 0.01})
    assert d._served(now - 2, "node2", timeout=0.2)
    d.poller.records = [{"t": time.time() + 0.05, "ok": True, "node": "node1", "rtt": 0.01}]
    assert not d._served(now - 2, "node2")  # a reply that names another node never counts
