"""The LAMP profile: Debian's apache2 + mod_php and MariaDB on the replicated disk, moved
by the cluster.  Orders placed through the VIP while node1 serves (and during the
takeover) are all there after node1's power cut, MariaDB recovers cleanly on node2, and
again after the failback to node1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from kembar.demo import Shopper, get
from kembar.lab import cluster, lamp
from kembar.lab.lab import Lab
from tests.labtools import leftovers

needs_lamp = pytest.mark.skipif(bool(lamp.missing_packages()),
                                reason="the LAMP packages are not installed (make test "
                                       "installs them)")


@pytest.fixture
def lamp_lab() -> Iterator[Lab]:
    name = f"t{os.getpid() % 1000}lp"  # the test labs' pattern: swept if a run is killed
    lab = Lab(name)
    if lab.exists():
        lab.down()
    try:
        res = subprocess.run([sys.executable, "-m", "kembar", "lab", "up", "-n", name,
                              "--stack", "lamp"], capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "the shop (PHP, MariaDB) answers on" in res.stdout
        yield lab
    finally:
        if lab.exists():
            lab.down()
        assert leftovers(lab) == []


def orders(lab: Lab) -> dict[int, str]:
    body, _ = get(lab, "/orders.json")
    return {o["id"]: o["customer"] for o in json.loads(body)["orders"]}


def this_boots_log(lab: Lab, node: str) -> str:
    """MariaDB's error log of the node since its last start (the log survives a crash)."""
    text = lamp.mariadb_log(lab, node)
    return text[text.rindex("Starting MariaDB"):] if "Starting MariaDB" in text else text


def assert_clean(log: str) -> None:
    assert "[ERROR]" not in log, log
    assert not re.search(r"corrupt", log, re.IGNORECASE), log
    assert "ready for connections" in log, log


@pytest.mark.slow
@pytest.mark.timeout(900)
@needs_lamp
def test_orders_survive_a_crash_and_the_failback(lamp_lab: Lab) -> None:
    lab = lamp_lab
    assert get(lab, "/health") == ("ok node1", "node1")
    assert cluster.sh(lab, "node1", "findmnt -n -o SOURCE,FSTYPE /srv/data").split() == \
        [cluster.sh(lab, "node1", "readlink -f /dev/kembar/r0").strip(), "ext4"]
    shopper = Shopper(lab)
    thread = threading.Thread(target=shopper.run, daemon=True)
    thread.start()
    try:
        cluster.wait(lambda: shopper.served_by.get("node1", 0) >= 10, 120,
                     "10 orders served by node1")
        lab.crash("node1")
        cluster.wait(lambda: shopper.served_by.get("node2", 0) >= 5, 120,
                     "5 orders served by node2 after node1's crash")
    finally:
        shopper.stop.set()
        thread.join(10)
    acked = dict(shopper.acked)
    stored = orders(lab)
    missing = {i: c for i, c in acked.items() if stored.get(i) != c}
    assert not missing, f"acknowledged orders lost or changed: {missing}"
    assert get(lab, "/health")[1] == "node2"
    log2 = this_boots_log(lab, "node2")
    assert "InnoDB: Starting crash recovery" in log2  # node1's power cut left it dirty
    assert_clean(log2)
    assert "shop.orders" in lamp.mariadb_check(lab, "node2")
    assert "OK" in lamp.mariadb_check(lab, "node2")

    lab.boot("node1")  # it resyncs, then takes the group back (auto_failback on)
    cluster.wait(lambda: get(lab, "/health")[1] == "node1", 300, "the failback to node1")
    assert all(orders(lab).get(i) == c for i, c in acked.items())
    assert_clean(this_boots_log(lab, "node1"))
    assert "OK" in lamp.mariadb_check(lab, "node1")
    # node2's MariaDB was stopped in order for the handover
    assert "Shutdown complete" in lamp.mariadb_log(lab, "node2")
    # a new order on node1 after all that
    res = lab.run("client", ["curl", "-s", "-H", "Accept: application/json", "-d",
                             "customer=after failback", "-d", "product=3",
                             f"http://{lab.plan.vip}/order"])
    new = json.loads(res.stdout)
    assert new["node"] == "node1" and orders(lab)[new["id"]] == "after failback"


def test_the_lamp_group_loads_and_starts_mariadb_before_apache(tmp_path: Path) -> None:
    from kembar.config.model import parse_cluster
    from kembar.lab.names import Plan
    plan = Plan("t")
    secret = tmp_path / "r0.secret"
    secret.write_text("s" * 32)
    secret.chmod(0o600)
    text = cluster.cluster_toml(plan, membership=cluster.membership_toml(plan, "bcast"),
                                groups=lamp.group_toml(plan))
    cfg = parse_cluster(text.replace(f"/etc/kembar/{cluster.DISK}.secret", str(secret)))
    res = cfg.groups["web"].resources
    assert [r.type for r in res] == ["disk", "filesystem", "service", "service", "ip", "probe"]
    mariadb, apache = res[2], res[3]
    assert (mariadb.name, mariadb.listen, apache.name, apache.listen) == \
        ("mariadb", 3306, "apache2", 80)
    assert mariadb.command == lamp.mariadb_command() and apache.command == lamp.apache_command()
    assert f"--datadir={lamp.DATADIR}" in mariadb.command[-1]
    assert f"DocumentRoot {lamp.WEB_ROOT}" in lamp.SITE_CONF
    assert lamp.WEB_ROOT.startswith(cluster.MOUNT + "/") and \
        lamp.DATADIR.startswith(cluster.MOUNT + "/")


def test_the_startup_sql_is_idempotent_and_grants_only_what_the_shop_needs() -> None:
    sql = lamp.init_sql("pw123")
    assert sql.count("IF NOT EXISTS") == 3
    assert "GRANT SELECT, INSERT ON shop.* TO 'shop'@'localhost';" in sql
    assert "IDENTIFIED BY 'pw123'" in sql


def test_the_php_site_is_shipped_with_the_package() -> None:
    php = lamp.php_site()
    assert php.startswith("<?php") and "X-Served-By" in php and lamp.SHOP_INI in php
