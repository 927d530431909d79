"""docs/troubleshooting.md's split-brain recovery, run as written on a lab in split brain.

The cluster is the lab's own (``kembar.lab.cluster``: the install is not what is under
test here; test_install_doc.py follows install.md), without fencing and with one heartbeat
link.  Cutting that link makes both nodes run the group; each writes a file of its own
while they are apart; after the heal the daemons keep the group on node1 and both disks are
``StandAlone`` — what the document's "What you see" shows.  Then the document's blocks run
(``tests/docs/docrun.py``): ``resolve`` on the victim and the survivor, and the victim's
recovery image mounted.  Checked: the disks are connected and in sync again with node1's
data, and node2's lone write is in its recovery image (and nowhere else).
"""

from __future__ import annotations

import json
from typing import Callable, Iterator

import pytest

from kembar.lab import cluster
from kembar.lab.lab import Lab
from tests.docs.docrun import DOCS, DocRunner, blocks, own_kembar

pytestmark = pytest.mark.slow


@pytest.fixture
def split(make_lab: Callable[..., Lab]) -> Iterator[DocRunner]:
    lab = make_lab(disk_size=32 * 2**20)
    mt = cluster.membership_toml(lab.plan, "bcast", keepalive="200ms", deadtime="1s",
                                 initdead="5s")
    cluster.install(lab, membership=mt, groups=cluster.group_toml(lab.plan, monitor="1s"))
    cluster.prepare_site(lab)
    for n in lab.plan.node_names:
        cluster.start_daemon(lab, n)
    cluster.wait(lambda: cluster.runs_on(lab) == ["node1"], 60, "the group on node1")
    lab.partition("node1", "node2", "all")
    cluster.wait(lambda: sorted(cluster.runs_on(lab)) == ["node1", "node2"], 60,
                 "both nodes to run the group")
    for n in lab.plan.node_names:
        cluster.sh(lab, n, f"echo {n} > /srv/data/alone-on-{n} && sync")
    lab.heal()
    cluster.wait(lambda: cluster.runs_on(lab) == ["node1"], 60, "one owner after the heal")
    for n in lab.plan.node_names:
        cluster.wait(lambda: cluster.disk_status(lab, n)["peer"]["connection"] == "StandAlone"
                     and cluster.disk_status(lab, n)["role"] == ("Primary" if n == "node1"
                                                                  else "Secondary"),
                     30, f"{n}'s disk to stand alone")
    for n in lab.plan.node_names:
        own_kembar(lab, n)
    r = DocRunner(lab)
    try:
        yield r
    finally:
        r.close()


def test_the_split_brain_recovery_of_troubleshooting_md(split: DocRunner) -> None:
    lab = split.lab
    doc = [b for b in blocks(DOCS / "troubleshooting.md") if b.place]
    assert [b.place for b in doc] == ["node2", "node1", "node2"]
    for b in doc:
        split.run(b)
    victim, survivor, image = split.ran
    assert "saved the whole disk of node2 to /var/lib/kembar/recovery/r0-node2-" in \
        victim.stdout, victim.stdout
    assert "node1 keeps its data" in survivor.stdout, survivor.stdout
    # the victim's lone write is in its copy
    assert "alone-on-node2" in image.stdout and "alone-on-node1" not in image.stdout, \
        image.stdout
    cluster.wait(lambda: cluster.synced(lab), 60, "the disks to be in sync again")
    assert cluster.disk_status(lab, "node1")["role"] == "Primary"
    files = cluster.sh(lab, "node1", "ls /srv/data")
    assert "alone-on-node1" in files and "alone-on-node2" not in files, files
    manifest = json.loads(cluster.sh(lab, "node2", "cat /var/lib/kembar/recovery/*.json"))
    assert manifest["node"] == "node2" and manifest["diverging_bytes"] > 0
    mounts = cluster.sh(lab, "node2", "cut -d' ' -f1,2 /proc/self/mounts").splitlines()
    assert not [m for m in mounts if m.endswith(" /mnt") and m.startswith("/dev/loop")], \
        mounts  # the block unmounted the image again
