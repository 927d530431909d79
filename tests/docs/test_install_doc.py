"""docs/install.md, followed to the letter on a bare lab: two fresh nodes and a client.

The lab gives each machine its own network, ``/etc``, ``/var/lib``, ``/run``, ``/srv`` and
second disk (``/mnt/vdb``), and nothing of kembar: no cluster file, no daemon (this test
does not use ``kembar.lab.cluster``, the lab's own installer).  The document's blocks then
run in order, on the machines their markers name, as root in a login-like environment
(``tests/docs/docrun.py``).  What differs from two real servers, all of it here:

* each node gets its own ``/opt``, ``/usr/local`` and ``/root`` (overlays over the host's,
  gone with the lab), so that the virtual environment, the command's link and the copied
  files the document installs there are that node's alone;
* ``apt-get update`` is skipped and ``apt-get install -y PKGS`` becomes ``dpkg -s PKGS``:
  the lab has no internet, and the packages are the host's (the lab shares ``/usr``);
* pip has no index: ``PIP_NO_INDEX=1`` and ``PIP_FIND_LINKS`` point it at a wheelhouse of
  kembar's dependencies built on the host beforehand (``PIP_CONFIG_FILE=/dev/null``: the
  host's pip settings do not count; ``PIP_NO_CACHE_DIR=1``); the commands are unchanged;
* ``scp`` becomes a copy through the host's ``/tmp`` (the lab has no ssh);
* ``systemctl daemon-reload`` is skipped and ``systemctl enable --now UNIT`` runs the unit
  file's ExecStart in the background (the lab has no systemd; the unit file is the one the
  document copied to ``/etc/systemd/system``).

Then the test checks what the document promises: the site answers on the VIP from the
client, the drill passes, ``kembar standby`` moved the group to node2 with the data, and
``kembar online`` brought it back.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from kembar.lab.lab import Lab
from tests.docs.conftest import package_files
from tests.docs.docrun import DOCS, DocRunner, blocks, private_dirs

pytestmark = pytest.mark.slow

NODE_DIRS = ("/opt", "/usr/local", "/root")
PAGE = "<h1>kembar works</h1>"


@pytest.fixture
def runner(make_lab: Callable[..., Lab], wheelhouse: Path) -> Iterator[DocRunner]:
    lab = make_lab(disk_size=64 * 2**20)
    for node in lab.plan.node_names:
        private_dirs(lab, node, NODE_DIRS)
    r = DocRunner(lab, env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse),
                            "PIP_CONFIG_FILE": "/dev/null", "PIP_NO_CACHE_DIR": "1",
                            "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    try:
        yield r
    finally:
        r.close()


def _daemon_status(lab: Lab, node: str) -> dict[str, Any]:
    res = lab.run(node, ["/usr/local/bin/kembar", "status", "--json"])
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


def _where(lab: Lab) -> dict[str, str]:
    return {n: _daemon_status(lab, n)["manager"]["groups"]["web"]["here"]
            for n in lab.plan.node_names}


def _logs(lab: Lab) -> str:
    out = []
    for node in lab.plan.node_names:
        res = lab.run(node, ["sh", "-c", "tail -n 12 /run/kembar/*.log"])
        out.append(f"=== {node}\n{res.stdout}{res.stderr}")
    return "\n".join(out)


def test_install_md_on_a_bare_lab(runner: DocRunner) -> None:
    lab = runner.lab
    doc = blocks(DOCS / "install.md")
    t0 = time.monotonic()
    timeline = []
    try:
        for b in doc:
            if b.place:
                runner.run(b)
                timeline.append(f"{time.monotonic() - t0:6.1f}s {b.where} ({b.place})")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- progress\n" + "\n".join(timeline) +
                             f"\n--- logs\n{_logs(lab)}") from None
    print("\n".join(timeline))
    out = {(r.block.line, r.machine): r.stdout for r in runner.ran}

    def of(text: str, machine: str, nth: int = 0) -> str:
        hits = [o for (line, m), o in sorted(out.items())
                if m == machine and text in next(b.text for b in doc if b.line == line)]
        return hits[nth]

    # what the document says the reader will see
    assert of("kembar --version", "node1").splitlines()[-1].startswith("kembar, version ")
    assert of("kembar config check", "node1").startswith("ok: cluster 'web', 2 nodes, 1 disk")
    perms = of("ls -l /etc/kembar", "node2")
    assert perms.count("-rw-------") >= 2, perms
    synced = of("kembar disk primary --force r0", "node1").rstrip().splitlines()
    assert any("peer-disk:UpToDate replication:Established" in ln for ln in synced), synced
    assert PAGE in of("curl", "client", 0)  # node1 serves it
    assert "kembar_node_up" in of("9694/metrics", "node1")  # the dashboard's server runs
    (drill,) = [r for r in runner.ran if "kembar drill" in r.block.text]
    assert "FAIL" not in drill.stdout + drill.stderr, drill.stdout + drill.stderr
    assert PAGE in of("curl", "client", 1)  # node2 serves it, from its copy of the disk
    moved = of("kembar disk status r0", "node2", -1)
    assert "r0 role:Primary disk:UpToDate" in moved, moved
    # and after `kembar online` the group goes home (auto_failback)
    deadline = time.monotonic() + 60
    while _where(lab) != {"node1": "running", "node2": "stopped"}:
        assert time.monotonic() < deadline, f"{_where(lab)}\n{_logs(lab)}"
        time.sleep(0.5)
    # the installed command is the wheel's, in the venv the document made
    link = lab.run("node1", ["readlink", "-f", "/usr/local/bin/kembar"]).stdout.strip()
    assert link == "/opt/kembar/bin/kembar"
    site = lab.run("node1", ["/opt/kembar/bin/python", "-c",
                             "import kembar, sys; print(kembar.__file__)"]).stdout
    assert site.startswith("/opt/kembar/lib/"), site
    # with the package's data files (the dashboard's pages, the lab site's PHP)
    data = sorted(n for n in package_files() if not n.endswith(".py"))
    code = ("import sys; from importlib import resources\n"
            "for n in sys.argv[1:]:\n"
            "    assert resources.files('kembar').joinpath(n[7:]).is_file(), n\n")
    res = lab.run("node1", ["/opt/kembar/bin/python", "-c", code, *data])
    assert res.returncode == 0, res.stderr
    assert lab.run("node1", ["grep", "-q", "_KEMBAR_COMPLETE",
                             "/etc/bash_completion.d/kembar"]).returncode == 0
    page = lab.run("node1", ["curl", "-s", "http://127.0.0.1:9694/"]).stdout
    assert "<html" in page.lower(), page[:300]  # the dashboard's page, from the wheel
    for verb in ("disk", "config", "daemon", "status", "drill", "standby"):
        res = lab.run("node1", ["/usr/local/bin/kembar", verb, "--help"])
        assert res.returncode == 0, res.stderr
