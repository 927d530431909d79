"""The sync experiment end to end in a lab of its own, at a small size, and its report:
every number in the report comes from the run."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from kembar.disk import loopdev
from kembar.lab.lab import Lab
from tests.labtools import leftovers

pytestmark = pytest.mark.slow


@pytest.fixture
def lab_name() -> Iterator[str]:
    name = f"t{os.getpid() % 1000}k1"  # the test labs' pattern: swept if a run is killed
    yield name
    lab = Lab(name)
    if lab.exists():
        lab.down()
    assert leftovers(lab) == []


def kembar(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kembar", *args], capture_output=True,
                          text=True, timeout=900)


def test_sync_experiment_and_its_report(lab_name: str, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    res = kembar("lab", "experiment", "sync", "--sizes", "8M", "--runs", "2", "--lab",
                 lab_name, "--results", str(results))
    assert res.returncode == 0, res.stderr + res.stdout
    doc = json.loads(results.read_text())
    sync = doc["sync"]
    assert [r["size"] for r in sync["runs"]] == ["8M"] and len(sync["runs"][0]["mbs"]) == 2
    assert len(sync["local_ext4"][0]["mbs"]) == 2 and len(sync["catchup"][0]["seconds"]) == 2
    assert all(sync[k] > 0 for k in ("tcp_mbs", "memory_read_mbs", "disk_read_mbs"))
    assert doc["machine"]["cpus"] == os.cpu_count()
    # nothing of the experiment is left: its lab, the loop device, the image
    assert not Lab(lab_name).exists()
    assert not [n for n in loopdev.loop_devices()
                if "kembar-exp-" in (loopdev.backing_file(n) or "")]
    assert not list(Path("/var/tmp").glob(f"kembar-exp-{lab_name}-*"))

    out = tmp_path / "report"
    res = kembar("lab", "report", "--results", str(results), "--out", str(out))
    assert res.returncode == 0, res.stderr
    md = (out / "report.md").read_text()
    mean = statistics.fmean(sync["runs"][0]["mbs"])
    assert f"**{mean:,.1f}**" in md and "| 8M |" in md
    assert f"{sync['tcp_mbs']:,.1f} MB/s" in md
    assert (out / "sync.png").read_bytes()[:4] == b"\x89PNG"
    # a second experiment adds its part to the same file; a broken file is refused
    results.write_text("{broken")
    res = kembar("lab", "experiment", "sync", "--sizes", "8M", "--runs", "1", "--lab",
                 lab_name, "--results", str(results))
    assert res.returncode != 0 and "not JSON" in res.stderr
    assert not Lab(lab_name).exists()


def test_failover_experiment_and_its_report(lab_name: str, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    res = kembar("lab", "experiment", "failover", "--runs", "1", "--timings", "100ms/500ms",
                 "--group", "vip", "--lab", lab_name, "--results", str(results))
    assert res.returncode == 0, res.stderr + res.stdout
    doc = json.loads(results.read_text())
    for part in ("failover", "failback"):
        runs = doc[part]["systems"]["kembar"]
        assert len(runs) == 1 and runs[0]["outage"] >= 0 and doc[part]["deadtime"] == 0.5
        steps = [s["step"] for s in runs[0]["steps"]]
        assert any(s.startswith("ip ") for s in steps), steps
    fo = doc["failover"]["systems"]["kembar"][0]
    assert fo["steps"][0]["step"] == "node1 declared dead by node2"
    assert 0 < fo["steps"][0]["at"] < 5
    assert not Lab(lab_name).exists()
    out = tmp_path / "report"
    assert kembar("lab", "report", "--results", str(results), "--out",
                  str(out)).returncode == 0
    md = (out / "report.md").read_text()
    assert f"**{fo['outage']:.2f}**" in md and "Failover timeline" in md
    assert (out / "failover.png").exists() and (out / "failback.png").exists()



@pytest.mark.timeout(600)
@pytest.mark.skipif(not os.path.exists("/usr/libexec/heartbeat/heartbeat"),
                    reason="heartbeat is not installed (make test installs it)")
def test_failover_against_heartbeat_runs_both_on_the_full_group(
        lab_name: str, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    res = kembar("lab", "experiment", "failover", "--runs", "1", "--timings", "100ms/500ms",
                 "--group", "full", "--against", "heartbeat", "--lab", lab_name,
                 "--results", str(results))
    assert res.returncode == 0, res.stderr + res.stdout
    doc = json.loads(results.read_text())
    for part in ("failover", "failback"):
        assert sorted(doc[part]["systems"]) == ["heartbeat", "kembar"]
        hb = doc[part]["systems"]["heartbeat"]
        assert len(hb) == 1 and hb[0]["outage"] > 0
        assert any("kembardisk::r0 Filesystem::" in n for n in doc[part]["notes"])
    steps = [s["step"] for s in doc["failover"]["systems"]["heartbeat"][0]["steps"]]
    assert steps[0] == "node1 declared dead by node2" and "IP up" in steps
    assert "the client is served again" in steps
    assert f"failover (heartbeat): {doc['failover']['systems']['heartbeat'][0]['outage']:.2f}" \
        in res.stdout
    assert not Lab(lab_name).exists()
    out = tmp_path / "report"
    assert kembar("lab", "report", "--results", str(results), "--out",
                  str(out)).returncode == 0
    md = (out / "report.md").read_text()
    assert "| heartbeat | 1 |" in md and "Failover timeline (heartbeat," in md
