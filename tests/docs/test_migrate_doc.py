"""docs/migrate.md on the lab: the paper's Heartbeat + DRBD cluster moves to kembar with its
data in place.

The old cluster as the document's window leaves it (Heartbeat stopped, DRBD down, in
sync): on both nodes the paper's ``ha.cf`` (verbatim), an ``haresources`` line of its kind
(VIP, drbddisk, Filesystem, apache2, mysql), an ``authkeys`` and a ``drbd.conf`` with the
lab's disk and addresses (those of tests/manager/test_paper_cluster_lab.py), the two
services as LSB init scripts (the lab's stand-ins), and on both backing disks what DRBD
with ``meta-disk internal`` leaves there: the same ext4 filesystem with the demo shop
from the first byte, and in the last MiB each node's own metadata (random bytes here).
Then the document's blocks run as written (``tests/docs/docrun.py``; its substitutions for
the lab apply), with one more: kembar is the test's own installation (``/usr/local/bin/
kembar`` links to it, in a ``/usr/local`` of the node's own) instead of install.md's,
which test_install_doc.py follows.  Checked: the import passes ``config check``, the first
sync sends only what differs, the filesystem and its files are intact on
``/dev/kembar/r0``, the site answers on the VIP from node1 and, after ``kembar standby``,
from node2 with the same data.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

from kembar.lab import cluster
from kembar.lab.lab import Lab
from tests.config.test_importer import PAPER_HACF
from tests.docs.docrun import DOCS, REPO, DocRunner, blocks, own_kembar, private_dirs
from tests.manager.test_paper_cluster_lab import AUTHKEYS, DRBD_CONF, HARESOURCES

pytestmark = pytest.mark.slow

MiB = 2**20
DISK = 64 * MiB
DRBD_META = 1 * MiB  # the end of the backing device: DRBD's internal metadata


def _old_disk(lab: Lab) -> None:
    """Both images as an in-sync DRBD pair leaves them: one filesystem, two metadata."""
    with tempfile.TemporaryDirectory(prefix="kembar-drbd-") as tmp:
        site, fs = Path(tmp) / "site", Path(tmp) / "fs.img"
        site.mkdir()
        subprocess.run([sys.executable, "-m", "kembar.lab.site", "init", "--data", str(site)],
                       check=True, capture_output=True)
        with open(fs, "wb") as fh:
            fh.truncate(DISK - DRBD_META)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "paper", "-d", str(site), str(fs)],
                       check=True, capture_output=True)
        data = fs.read_bytes()
    for node in lab.plan.node_names:
        with open(lab.image(node), "r+b") as img:
            img.write(data)
            img.seek(DISK - DRBD_META)
            img.write(os.urandom(DRBD_META))
            img.flush()
            os.fsync(img.fileno())


@pytest.fixture
def runner(make_lab: Callable[..., Lab]) -> Iterator[DocRunner]:
    lab = make_lab(disk_size=DISK)
    files = {"/etc/ha.d/ha.cf": PAPER_HACF, "/etc/ha.d/haresources": HARESOURCES,
             "/etc/ha.d/authkeys": AUTHKEYS, "/etc/drbd.conf": DRBD_CONF}
    for node in lab.plan.node_names:
        own_kembar(lab, node)
        private_dirs(lab, node, ("/root",))
        for path, text in files.items():
            cluster.sh(lab, node, f"mkdir -p /etc/ha.d && umask 077 && cat > {path}",
                       input=text)
        cluster.sh(lab, node, f"cp {REPO}/packaging/systemd/*.service /root/ && "
                              "mkdir -p /srv/data")
    cluster.install_lsb_stand_ins(lab)
    _old_disk(lab)
    r = DocRunner(lab)
    try:
        yield r
    finally:
        r.close()


def _size(text: str) -> float:
    """``1.0 MiB`` → bytes."""
    number, unit = text.split()
    return float(number) * {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[unit]


def test_migrate_md_moves_the_papers_cluster_with_its_data(runner: DocRunner) -> None:
    lab = runner.lab
    for b in blocks(DOCS / "migrate.md"):
        if b.place:
            runner.run(b)
    by_text = {}
    for r in runner.ran:
        by_text.setdefault((r.block.text.splitlines()[0], r.machine), []).append(r)
    imported = by_text[("kembar config import -o /etc/kembar/cluster.toml", "node1")][0]
    assert "ok: cluster 'ha', 2 nodes, 1 disk" in imported.stdout + imported.stderr
    assert "kembar: note: resource r0: kembar keeps the metadata in a file" in imported.stderr
    # the document quotes exactly what the import printed
    text = (DOCS / "migrate.md").read_text()
    quoted = text[text.index("```text", text.index("For the paper's files it prints")):]
    quoted = quoted[len("```text\n"):quoted.index("\n```")]
    printed = (imported.stdout + imported.stderr).strip()
    assert sorted(quoted.splitlines()) == sorted(printed.splitlines()), printed
    toml = lab.run("node2", ["cat", "/etc/kembar/cluster.toml"]).stdout
    assert 'csums_alg = "sha256"' in toml and "[groups.group1]" in toml
    # the first sync compared everything and sent only the old metadata area
    synced = by_text[("kembar disk primary --force r0", "node1")][0].stdout
    sent = _size(re.findall(r"resync-sent:([0-9.]+ [KMG]?i?B)", synced)[-1])
    assert 0 < sent <= 2 * DRBD_META, synced
    looked = by_text[("fsck.ext4 -n /dev/kembar/r0", "node1")][0].stdout
    assert "clean" in looked and "catalogue.json" in looked, looked
    first, second = (r.stdout for r in by_text[
        ("curl -sS --retry 60 --retry-all-errors --retry-delay 1 --max-time 2 "
         "http://198.18.0.100/", "client")] + by_text[
        ("curl -sS --retry 10 --retry-all-errors --retry-delay 1 --max-time 2 "
         "http://198.18.0.100/", "client")])
    assert "served by node1" in first, first[-300:]
    assert "served by node2" in second, second[-300:]
    # the same shop, from node2's copy
    title = re.search(r"<title>.*?</title>", first)
    assert title and title.group(0) in second
