"""The ``filesystem`` agent on a real loop device with ext4: mount, monitor, kill holders."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from kembar.agents import AgentContext, AgentError, make_agent
from kembar.agents.base import Agent
from kembar.config.groups import FilesystemResource
from kembar.disk.loopdev import mounts
from tests.agents.conftest import alive, kill_quietly


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {res.stderr}")
    return res


@dataclass
class Fs:
    root: Path
    loop: str
    link: Path
    mnt: Path
    procs: list[subprocess.Popen[bytes]]

    def agent(self, device: str | None = None, **kw: object) -> Agent:
        res = FilesystemResource.model_validate(dict(
            type="filesystem", device=device or self.loop, directory=str(self.mnt), **kw))
        return make_agent(res, AgentContext(run_dir=str(self.root / "kb-agt-run")))

    def mounted(self) -> list[str]:
        return [m.source for m in mounts() if m.mountpoint == str(self.mnt)]

    def hold(self, *code: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """A process running ``code`` that prints "ready" once it holds what it holds."""
        proc = subprocess.Popen([sys.executable, "-c", "\n".join(code)],
                                cwd=str(cwd) if cwd else None, stdout=subprocess.PIPE)
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        return proc


@pytest.fixture
def fs(kbdir: Path) -> Iterator[Fs]:
    image = kbdir / "kb-agt-fs.img"
    with open(image, "wb") as fh:
        fh.truncate(32 * 1024 * 1024)
    loop = sh("losetup", "--find", "--show", str(image)).stdout.strip()
    f = Fs(kbdir, loop, kbdir / "kb-agt-link", kbdir / "kb-agt-mnt", [])
    try:
        sh("mkfs.ext4", "-q", loop)
        f.link.symlink_to(loop)
        yield f
    finally:
        for proc in f.procs:
            kill_quietly(proc.pid)
            proc.wait()
        for _ in range(3):
            if not f.mounted():
                break
            sh("umount", "-l", str(f.mnt), check=False)
        sh("losetup", "-d", loop, check=False)
    assert not f.mounted()
    assert str(image) not in sh("losetup", "-a").stdout


def test_start_monitor_stop_are_idempotent(fs: Fs) -> None:
    agent = fs.agent(options="noatime")
    assert agent.monitor(5) is False
    agent.stop(5)
    agent.start(10)
    assert fs.mounted() == [fs.loop]
    assert agent.monitor(5) is True
    agent.start(10)
    assert fs.mounted() == [fs.loop]
    (fs.mnt / "index.html").write_text("hello\n")
    agent.stop(10)
    assert fs.mounted() == [] and agent.monitor(5) is False
    agent.stop(10)


def test_a_device_link_is_resolved(fs: Fs) -> None:
    agent = fs.agent(device=str(fs.link))
    agent.start(10)
    assert fs.mounted() == [fs.loop]  # the kernel shows the loop device, not the link
    assert agent.monitor(5) is True
    agent.stop(10)
    assert agent.monitor(5) is False


def test_stop_kills_holders_but_nobody_on_the_parent_filesystem(fs: Fs) -> None:
    agent = fs.agent()
    agent.start(10)
    (fs.mnt / "data").mkdir()
    polite = fs.hold("import time", "f = open('data/open.txt', 'w')", "print('ready', flush=True)",
                     "time.sleep(60)", cwd=fs.mnt)
    stubborn = fs.hold("import signal, time", "signal.signal(signal.SIGTERM, signal.SIG_IGN)",
                       f"f = open({str(fs.mnt / 'data' / 'x')!r}, 'w')",
                       "print('ready', flush=True)", "time.sleep(60)")
    bystander = fs.hold("import time", "f = open('kb-agt-outside.txt', 'w')",
                        "print('ready', flush=True)", "time.sleep(60)", cwd=fs.root)
    t0 = time.monotonic()
    agent.stop(10)
    assert time.monotonic() - t0 < 8
    assert fs.mounted() == []
    assert polite.wait(5) == -15
    assert stubborn.wait(5) == -9
    assert bystander.poll() is None and alive(bystander.pid)


def test_stop_fails_with_a_clear_error_when_we_hold_it_ourselves(fs: Fs) -> None:
    agent = fs.agent()
    agent.start(10)
    fh = open(fs.mnt / "ours.txt", "w")
    try:
        with pytest.raises(AgentError, match=r"umount failed.*kembar itself"):
            agent.stop(3)
        assert agent.monitor(5) is True
    finally:
        fh.close()
    agent.stop(5)
    assert fs.mounted() == []


def test_something_else_mounted_there_is_an_error(fs: Fs) -> None:
    fs.mnt.mkdir()
    sh("mount", "-t", "tmpfs", "kb-agt-tmpfs", str(fs.mnt))
    agent = fs.agent()
    with pytest.raises(AgentError, match="kb-agt-tmpfs .tmpfs. is mounted on"):
        agent.monitor(5)
    with pytest.raises(AgentError, match="is mounted on"):
        agent.start(5)
    with pytest.raises(AgentError, match="is mounted on"):
        agent.stop(5)
    assert fs.mounted() == ["kb-agt-tmpfs"]
    sh("umount", str(fs.mnt))


def test_missing_device_and_failing_mount_are_agent_errors(fs: Fs) -> None:
    with pytest.raises(AgentError, match="kb-agt-missing does not exist"):
        fs.agent(device=str(fs.root / "kb-agt-missing")).start(5)
    with pytest.raises(AgentError, match="mount failed: "):
        fs.agent(fstype="xfs-not-a-type").start(5)
    assert fs.mounted() == []
    assert os.path.isdir(fs.mnt)
