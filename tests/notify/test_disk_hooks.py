"""A pair of real disk processes runs its hooks: split brain (both nodes, DRBD's
initial-split-brain and split-brain) and a detached disk (an I/O error of a failing FUSE
disk, the lab's hardware) — with a hook that hangs, while the writes go on."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from kembar.lab.pair import Pair, wait_for
from tests.disk.conftest import HwDisks, hw_pair_in, make_pair  # noqa: F401 (a fixture)
from tests.disk.test_split_brain import _diverge, _standalone
from tests.notify.hooks import HOOK, read_env


def _notify(root: Path, sleep: float | None = None, timeout: str = "30s") -> str:
    """A [notify] table whose hooks write their environment under ROOT/hooks."""
    hooks = root / "hooks"
    hooks.mkdir(exist_ok=True)
    script = root / "hook.py"
    script.write_text(HOOK)
    argv = f'["{sys.executable}", "{script}", "{hooks}"' + \
        (f', "{sleep}"]' if sleep is not None else "]")
    return (f'\n[notify]\ntimeout = "{timeout}"\ninitial_split_brain = {argv}\n'
            f"split_brain = {argv}\ndisk_detached = {argv}\n")


def _pair_with_hooks(make_pair: Callable[..., Pair], tmp_path: Path) -> Pair:
    return make_pair(extra=_notify(tmp_path))


def test_split_brain_hooks_on_both_nodes(make_pair: Callable[..., Pair],
                                        tmp_path: Path) -> None:
    p = _pair_with_hooks(make_pair, tmp_path)
    _diverge(p)
    p.kembar("n1", "connect", "r0")
    wait_for(lambda: _standalone(p, "n1") and _standalone(p, "n2"), 15, "both StandAlone")
    hooks = tmp_path / "hooks"
    names = [f"{n}-{e}-{e}.env" for n in ("n1", "n2")
             for e in ("initial_split_brain", "split_brain")]
    wait_for(lambda: all((hooks / name).exists() for name in names), 15, "four hooks")
    for node in ("n1", "n2"):
        env = read_env(hooks / f"{node}-split_brain-split_brain.env")
        assert (env["KEMBAR_EVENT"], env["KEMBAR_DISK"], env["DRBD_RESOURCE"]) == \
            ("split_brain", "r0", "r0")
        assert env["KEMBAR_LOCAL_NODE"] == env["KEMBAR_NODE"] == node
        assert env["KEMBAR_CLUSTER"] == "test"
        assert env["KEMBAR_TEXT"].startswith("r0: Split-Brain detected (bitmap-both")
        first = read_env(hooks / f"{node}-initial_split_brain-initial_split_brain.env")
        assert first["KEMBAR_TEXT"] == (f"r0: split brain with {'n2' if node == 'n1' else 'n1'}"
                                        " detected, not resolved: the disk stays StandAlone")
        assert "notify split_brain: " in p.log(node) and "exit status 0" in p.log(node)


def test_a_split_brain_a_policy_resolves_runs_only_the_initial_hook(
        make_pair: Callable[..., Pair], tmp_path: Path) -> None:
    p = make_pair(extra=_notify(tmp_path), options={"after_sb_0pri": "discard-zero-changes"})
    _diverge(p, n2_writes=False)
    p.kembar("n1", "connect", "r0")
    p.wait_synced()
    hooks = tmp_path / "hooks"
    wait_for(lambda: (hooks / "n2-initial_split_brain-initial_split_brain.env").exists(), 15,
             "the initial split brain hook")
    env = read_env(hooks / "n2-initial_split_brain-initial_split_brain.env")
    assert "detected, resolved: " in env["KEMBAR_TEXT"]
    assert "after-sb-0pri=discard-zero-changes" in env["KEMBAR_TEXT"]
    time.sleep(1)
    assert not list(hooks.glob("*-split_brain-*"))


@pytest.fixture
def hooked_hw_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pair, HwDisks,
                                                                              Path]]:
    """A disk pair on failing hardware disks, whose disk_detached hook hangs (10 s, killed
    after its 2 s timeout).  ``kbf-`` names, as ``tests.disk.conftest.hw_pair``."""
    root: Path = tmp_path_factory.mktemp("kbf-hook-")
    with hw_pair_in(root, extra=_notify(root, sleep=10, timeout="2s")) as (pair, hw):
        yield pair, hw, root / "hooks"


def test_disk_detached_hook_hangs_while_the_writes_go_on(
        hooked_hw_pair: tuple[Pair, HwDisks, Path]) -> None:
    p, hw, hooks = hooked_hw_pair
    p.start_fresh()
    with p.client("n1", timeout=30) as c:
        c.write(0, b"a" * 4096)
        hw.fail("n1")
        c.write(4096, b"b" * 4096)  # detaches n1; served by n2 (protocol C)
        wait_for(lambda: (hooks / "n1-disk_detached-disk_detached.env").exists(), 10,
                 "the disk_detached hook")
        # the hook sleeps now; the I/O path does not wait for it
        t0 = time.monotonic()
        for i in range(2, 50):
            c.write(i * 4096, bytes([i]) * 4096)
        assert time.monotonic() - t0 < 2.0
        assert c.read(4096, 4096) == b"b" * 4096
    env = read_env(hooks / "n1-disk_detached-disk_detached.env")
    assert (env["KEMBAR_EVENT"], env["KEMBAR_DISK"], env["KEMBAR_LOCAL_NODE"]) == \
        ("disk_detached", "r0", "n1")
    assert env["KEMBAR_TEXT"].startswith(f"r0: I/O error on the backing store {hw.path('n1')}:")
    assert env["KEMBAR_TEXT"].endswith("detached (Diskless)")
    assert p.st("n1")["disk_state"] == "Diskless"
    wait_for(lambda: "still running after its timeout of 2 s: killed" in p.log("n1"), 10,
             "the hung hook to be killed")
    assert "output: sleeping" in p.log("n1")
    assert not (hooks / "n2-disk_detached-disk_detached.env").exists()
