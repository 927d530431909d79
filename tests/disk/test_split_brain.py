"""Split brain: detected every time, resolved only by a policy or by the operator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from kembar.errors import KembarError
from kembar.lab.pair import MiB, Pair, wait_for


def _diverge(p: Pair, n1_writes: bool = True, n2_writes: bool = True) -> None:
    """Both nodes Primary while apart, as after a partition with two failovers."""
    p.start_fresh()
    p.kembar("n1", "disconnect", "r0")
    wait_for(lambda: p.st("n2")["peer"]["connection"] != "Connected", 10)
    if n1_writes:
        with p.client("n1") as c:
            c.write(0, b"n1 was here")
    p.kembar("n2", "primary", "r0")
    if n2_writes:
        with p.client("n2") as c:
            c.write(MiB, b"n2 was here")
    p.kembar("n1", "secondary", "r0")
    p.kembar("n2", "secondary", "r0")


def _standalone(p: Pair, node: str) -> bool:
    return p.st(node)["peer"]["connection"] == "StandAlone"


def test_split_brain_detected_and_left_disconnected(make_pair: Callable[..., Pair]) -> None:
    p = make_pair()
    _diverge(p)
    p.kembar("n1", "connect", "r0")
    wait_for(lambda: _standalone(p, "n1") and _standalone(p, "n2"), 15, "both StandAlone")
    assert "Split-Brain detected" in p.log("n1")
    assert "Split-Brain" in p.st("n1")["last_error"]
    assert b"n2 was here" not in p.backing("n1").read_bytes()
    assert b"n1 was here" not in p.backing("n2").read_bytes()
    # manual recovery: n2 is the victim
    p.kembar("n2", "connect", "--discard-my-data", "r0")
    p.kembar("n1", "connect", "r0")
    p.wait_synced()
    assert p.identical()
    image = p.backing("n2").read_bytes()
    assert image.startswith(b"n1 was here") and b"n2 was here" not in image


def test_discard_zero_changes(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(options={"after_sb_0pri": "discard-zero-changes"})
    _diverge(p, n2_writes=False)
    p.kembar("n1", "connect", "r0")
    p.wait_synced()
    assert p.identical() and p.backing("n2").read_bytes().startswith(b"n1 was here")
    assert "discard-zero-changes" in p.log("n1")


def test_discard_zero_changes_refuses_when_both_wrote(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(options={"after_sb_0pri": "discard-zero-changes"})
    _diverge(p)
    p.kembar("n1", "connect", "r0")
    wait_for(lambda: _standalone(p, "n1") and _standalone(p, "n2"), 15, "both StandAlone")


def test_discard_younger_primary(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(options={"after_sb_0pri": "discard-younger-primary"})
    _diverge(p)  # n1 was Primary when they parted; n2 was promoted later: n2 loses
    p.kembar("n1", "connect", "r0")
    p.wait_synced()
    image = p.backing("n2").read_bytes()
    assert p.identical() and image.startswith(b"n1 was here") and b"n2 was here" not in image


def test_unrelated_data_refused(make_pair: Callable[..., Pair]) -> None:
    p = make_pair(options={"after_sb_0pri": "discard-zero-changes"})
    p.start_fresh()
    p.kembar("n1", "disconnect", "r0")
    p.kembar("n2", "down", "r0")
    p.kembar("n2", "create-md", "--force", "r0")
    p.up("n2")
    p.kembar("n2", "primary", "--force", "r0")  # a new, unrelated data generation
    p.kembar("n2", "secondary", "r0")
    p.kembar("n1", "connect", "r0")
    wait_for(lambda: _standalone(p, "n1"), 15, "n1 StandAlone")
    assert "unrelated data" in p.log("n1")
    assert p.st("n1")["disk_state"] == "UpToDate"


def _split(p: Pair) -> None:
    _diverge(p)
    p.kembar("n1", "connect", "r0")
    wait_for(lambda: _standalone(p, "n1") and _standalone(p, "n2"), 15, "both StandAlone")


def test_resolve_saves_the_victims_disk_before_discarding_it(
        make_pair: Callable[..., Pair], tmp_path: Path) -> None:
    p = make_pair()
    _split(p)
    size = p.st("n2")["size"]
    before = p.backing("n2").read_bytes()[:size]
    rec = tmp_path / "recovery"
    # refused: a node that is not the disk's, a relative directory — nothing changes
    bad = p.kembar("n2", "resolve", "r0", "--survivor", "n9", check=False)
    assert bad.returncode != 0 and "--survivor n9: not a node of disk r0 (n1, n2)" in bad.stderr
    bad = p.kembar("n2", "resolve", "r0", "--survivor", "n1", "--recovery-dir", "rel",
                   check=False)
    assert bad.returncode != 0 and "an absolute path" in bad.stderr
    assert _standalone(p, "n2") and not rec.exists()

    out = p.kembar("n2", "resolve", "r0", "--survivor", "n1", "--recovery-dir", str(rec)).stdout
    assert "next, on n1" in out and "mount -o ro,loop" in out
    [img] = list(rec.glob("r0-n2-*.img"))
    assert img.read_bytes() == before  # the victim's whole disk as it was
    assert img.stat().st_blocks * 512 < size // 2  # sparse: the zeros are holes
    man = json.loads(img.with_suffix(".json").read_text())
    assert man["node"] == "n2" and man["contents"] == "the whole disk"
    assert any(o <= MiB < o + n for o, n in man["diverging"])  # what n2 wrote while apart
    assert man["diverging_bytes"] == sum(n for _, n in man["diverging"]) > 0
    assert oct(img.stat().st_mode & 0o777) == "0o600"

    out = p.kembar("n1", "resolve", "r0", "--survivor", "n1").stdout
    assert "n1 keeps its data" in out
    p.wait_synced()
    assert p.identical()
    image = p.backing("n2").read_bytes()
    assert image.startswith(b"n1 was here") and b"n2 was here" not in image
    assert img.read_bytes()[MiB:MiB + 11] == b"n2 was here"  # kept, for the operator
    assert "saved the whole disk" in p.log("n2")
    again = p.kembar("n2", "resolve", "r0", "--survivor", "n1", check=False)
    assert again.returncode != 0 and "no split brain to resolve" in again.stderr


def test_resolve_blocks_only_and_the_survivor_first(make_pair: Callable[..., Pair],
                                                   tmp_path: Path) -> None:
    p = make_pair()
    _split(p)
    assert "waits for n2" in p.kembar("n1", "resolve", "r0", "--survivor", "n1").stdout
    p.kembar("n2", "resolve", "r0", "--survivor", "n1", "--blocks-only", "--recovery-dir",
             str(tmp_path))
    p.wait_synced()
    assert p.identical()
    [img] = list(tmp_path.glob("r0-n2-*.img"))
    data = img.read_bytes()
    man = json.loads(img.with_suffix(".json").read_text())
    assert man["contents"] == "diverging blocks only"
    assert data[MiB:MiB + 11] == b"n2 was here"
    covered = bytearray(len(data))
    for o, n in man["diverging"]:
        covered[o:o + n] = data[o:o + n]
    assert bytes(covered) == data  # nothing outside the diverging blocks


def test_save_recovery_only_on_a_standalone_secondary(make_pair: Callable[..., Pair],
                                                     tmp_path: Path) -> None:
    p = make_pair()
    p.start_fresh()
    with p.client("n2") as c:  # connected
        with pytest.raises(KembarError, match="disconnect first"):
            c.control("save-recovery", path=str(tmp_path / "x"))
        for path in (None, "", 7, "a\0b"):
            with pytest.raises(KembarError, match="path: a file name"):
                c.control("save-recovery", path=path)
    p.kembar("n1", "disconnect", "r0")
    with p.client("n1") as c:  # Primary
        with pytest.raises(KembarError, match="demote it"):
            c.control("save-recovery", path=str(tmp_path / "x"))
    with p.client("n2") as c:  # trying to connect again
        wait_for(lambda: p.st("n2")["peer"]["connection"] != "Connected", 10, "n2 apart")
        with pytest.raises(KembarError, match="disconnect first"):
            c.control("save-recovery", path=str(tmp_path / "x"))
    p.kembar("n2", "disconnect", "r0")
    with p.client("n2") as c:
        c.control("save-recovery", path=str(tmp_path / "y"))
        with pytest.raises(KembarError, match="exists already"):
            c.control("save-recovery", path=str(tmp_path / "y"))
        with pytest.raises(KembarError, match="absolute"):
            c.control("save-recovery", path="relative/y")
    assert not (tmp_path / "x.img").exists()
