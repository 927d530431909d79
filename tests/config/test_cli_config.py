"""``kembar config check`` run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.config.test_model import MINIMAL

KEMBAR = Path(sys.executable).with_name("kembar")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(KEMBAR)] if KEMBAR.exists() else [sys.executable, "-m", "kembar"]
    full_env = {k: v for k, v in os.environ.items() if k != "KEMBAR_CONFIG"}
    full_env.update(env or {})
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=60, env=full_env, check=False
    )


def test_check_ok(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(MINIMAL)
    result = _run("config", "check", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok: cluster 'web', 2 nodes, 1 disk (r0: protocol C, port 7788)\n"


def test_check_names_the_fencing_and_its_priority_delay(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    fence = '\n[fencing]\ncommand = ["/usr/local/sbin/fence-node", "{node}"]\n'
    path.write_text(MINIMAL + fence)
    result = _run("config", "check", "-c", str(path))
    assert result.stdout.strip().endswith("port 7788), fencing by /usr/local/sbin/fence-node")
    path.write_text(MINIMAL + fence + 'priority_delay = "5s"\n')
    result = _run("config", "check", "-c", str(path))
    assert result.stdout.strip().endswith(
        "fencing by /usr/local/sbin/fence-node (priority delay 5 s)"), result.stdout


def test_check_uses_env_and_plurals(tmp_path: Path) -> None:
    path = tmp_path / "env.toml"
    second = MINIMAL.replace("r0", "r1").split("[disks.r1]", 1)[1]
    path.write_text(MINIMAL + '[disks.r1]\nport = 7789\nprotocol = "A"' + second)
    result = _run("config", "check", env={"KEMBAR_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "ok: cluster 'web', 2 nodes, 2 disks (r0: protocol C, port 7788, r1: protocol A, port 7789)"
    )


def test_check_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(MINIMAL.replace("[disks.r0]", '[disks.r0]\nprotocol = "Z"\nport = 0'))
    result = _run("config", "check", "--config", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"kembar: error: {path}: disks.r0.")
    assert "disks.r0.protocol" in lines[0] and "disks.r0.port" in lines[0]
    assert "s3cr3t" not in result.stderr


def test_check_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    result = _run("config", "check", "-c", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"kembar: error: {path}: cannot read config: No such file or directory"]
