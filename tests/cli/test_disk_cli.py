"""``kembar disk`` run as a real process: every mistake is refused and changes nothing.

Operator errors (``KembarError``) exit non-zero with exactly one stderr line starting
``kembar: error:``; click usage errors exit 2 with a usage block naming the problem.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from kembar.lab.pair import Pair, wait_for


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("KEMBAR_CONFIG", "KEMBAR_NODE", "KEMBAR_RUN_DIR")}


def run_raw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kembar", *args], capture_output=True,
                          text=True, timeout=60, env=_env(), check=False)


def run(p: Pair, *args: str, node: str = "n1", config: Path | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """``kembar disk --config C --node N --run-dir R ARGS`` (no bookkeeping, unlike Pair)."""
    return run_raw("disk", "--config", str(config or p.configs[node]), "--node", node,
                   "--run-dir", p.run_dir(node), "--dev-dir", p.dev_dir(node), *args)


def one_error_line(res: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert res.returncode != 0, res
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("kembar: error: "), res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def usage_error(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode == 2, res
    assert "Usage:" in res.stderr, res.stderr
    assert res.stdout == ""
    for needle in needles:
        assert needle in res.stderr, (needle, res.stderr)


def md(p: Pair, node: str = "n1") -> Path:
    return p.root / node / "r0.md"


def tree(p: Pair) -> dict[str, bytes]:
    """Every file under the pair's directory with its contents (backing files too)."""
    out = {}
    for path in sorted(p.root.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(p.root))] = path.read_bytes()
    return out


@pytest.fixture
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = Pair(tmp_path_factory.mktemp("kembar-test-cli-"), size=4 * 1024 * 1024)
    yield p
    p.cleanup()
    shutil.rmtree(p.root, ignore_errors=True)


def up_n1(p: Pair) -> int:
    res = run(p, "up", "r0")
    assert res.returncode == 0, res.stderr + p.log("n1")
    pid = p.pid("n1")
    p.started.append(pid)
    return pid


# ------------------------------------------------------------------ usage errors


def test_unknown_verb(pair: Pair) -> None:
    before = tree(pair)
    usage_error(run(pair, "frobnicate", "r0"), "frobnicate")
    assert tree(pair) == before


def test_missing_disk_name(pair: Pair) -> None:
    before = tree(pair)
    for verb in ("up", "create-md", "primary", "down"):
        usage_error(run(pair, verb), "Missing argument", "DISK")
    assert tree(pair) == before


def test_unknown_option(pair: Pair) -> None:
    before = tree(pair)
    usage_error(run(pair, "up", "--bogus", "r0"), "--bogus")
    usage_error(run_raw("disk", "--nosuch-option", "status"), "--nosuch-option")
    assert tree(pair) == before


# -------------------------------------------------------------- kembar errors


def test_unknown_disk_lists_known_disks(pair: Pair) -> None:
    before = tree(pair)
    for verb in ("up", "create-md"):
        res = run(pair, verb, "r9")
        assert res.returncode == 2
        line = one_error_line(res, "no disk 'r9'", "known: r0")
        assert str(pair.configs["n1"]) in line
    assert tree(pair) == before
    assert not os.path.exists(pair.run_dir("n1"))


def test_unknown_disk_on_socket_verbs_lists_known_disks(pair: Pair) -> None:
    res = run(pair, "primary", "r9")
    one_error_line(res, "no disk 'r9'", "known: r0")


def test_unknown_node(pair: Pair) -> None:
    before = tree(pair)
    res = run_raw("disk", "--config", str(pair.configs["n1"]), "--node", "nosuch",
                  "--run-dir", pair.run_dir("n1"), "create-md", "r0")
    assert res.returncode == 2
    one_error_line(res, "--node", "no node 'nosuch'", "known: n1, n2")
    res = run_raw("disk", "--config", str(pair.configs["n1"]), "--node", "nosuch",
                  "--run-dir", pair.run_dir("n1"), "up", "r0")
    assert res.returncode == 2
    one_error_line(res, "no node 'nosuch'")
    assert tree(pair) == before


@pytest.mark.parametrize("mutation, needles", [
    (lambda t: t.replace("[disks.r0]", "[disks.r0\n", 1), ("invalid TOML",)),
    (lambda t: t.replace("[disks.r0]\n", "[disks.r0]\nfrobnication = 3\n", 1),
     ("disks.r0.frobnication", "unknown key")),
    (lambda t: t.replace('protocol = "C"', 'protocol = "D"', 1), ("disks.r0.protocol",)),
], ids=["syntax", "unknown-key", "protocol-D"])
def test_bad_config_file_up(pair: Pair, mutation, needles: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    assert run(pair, "create-md", "r0").returncode == 0
    bad = pair.root / "bad.toml"
    bad.write_text(mutation(pair.configs["n1"].read_text()))
    before = tree(pair)
    res = run(pair, "up", "r0", config=bad)
    assert res.returncode == 2
    line = one_error_line(res, str(bad), *needles)
    assert "s3cret" not in line
    assert tree(pair) == before
    assert not os.path.exists(pair.run_dir("n1"))


def test_status_and_primary_of_disk_not_up(pair: Pair) -> None:
    assert run(pair, "create-md", "r0").returncode == 0
    before = tree(pair)
    for args in (("status", "r0"), ("status", "r0", "--json"), ("primary", "r0"),
                 ("primary", "--force", "r0"), ("secondary", "r0")):
        res = run(pair, *args)
        assert res.returncode == 1, (args, res)
        one_error_line(res, "r0 is not up", "kembar disk up r0")
        assert res.stdout == ""
    # `down` of a disk that is not up succeeds (as drbdadm's) after looking for leftovers
    res = run(pair, "down", "r0")
    assert res.returncode == 0 and res.stdout == "r0: down (no disk process was running)\n"
    assert tree(pair) == before


def test_status_all_disks_when_not_up(pair: Pair) -> None:
    res = run(pair, "status")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "r0: not up"


def test_up_without_metadata(pair: Pair) -> None:
    before = tree(pair)
    res = run(pair, "up", "r0")
    assert res.returncode == 1
    one_error_line(res, "no metadata at", str(md(pair)), "create-md r0")
    assert tree(pair) == before
    assert not md(pair).exists()
    assert not os.path.exists(pair.run_dir("n1"))


def test_create_md_twice_refuses_without_force(pair: Pair) -> None:
    res = run(pair, "create-md", "r0")
    assert res.returncode == 0, res.stderr
    assert "Inconsistent" in res.stdout
    before = tree(pair)
    res = run(pair, "create-md", "r0")
    assert res.returncode == 1
    one_error_line(res, "metadata already exists", str(md(pair)), "--force")
    assert tree(pair) == before
    # --force does replace it (a new file with the same content for a fresh disk is fine).
    res = run(pair, "create-md", "--force", "r0")
    assert res.returncode == 0, res.stderr


def test_promote_inconsistent_without_force_refused(pair: Pair) -> None:
    assert run(pair, "create-md", "r0").returncode == 0
    pid = up_n1(pair)
    meta_before = md(pair).read_bytes()
    backing_before = pair.backing("n1").read_bytes()
    res = run(pair, "primary", "r0")
    assert res.returncode == 1
    one_error_line(res, "Inconsistent", "--force")
    st = pair.st("n1")
    assert st["role"] == "Secondary" and st["disk_state"] == "Inconsistent"
    assert md(pair).read_bytes() == meta_before
    assert pair.backing("n1").read_bytes() == backing_before
    assert pair.pid("n1") == pid


def test_up_twice(pair: Pair) -> None:
    assert run(pair, "create-md", "r0").returncode == 0
    pid = up_n1(pair)
    wait_for(lambda: ": up on n1" in pair.log("n1"), 10, "the up line in the log")
    meta_before = md(pair).read_bytes()
    log_before = pair.log("n1")
    res = run(pair, "up", "r0")
    assert res.returncode == 1
    one_error_line(res, "r0 is already up on n1")
    assert pair.pid("n1") == pid
    os.kill(pid, 0)
    assert pair.st("n1")["role"] == "Secondary"
    assert md(pair).read_bytes() == meta_before
    assert pair.log("n1") == log_before


def test_up_with_dev_dir_not_a_directory(pair: Pair) -> None:
    assert run(pair, "create-md", "r0").returncode == 0
    not_dir = pair.root / "kembar-test-file"
    not_dir.write_text("x")
    before = tree(pair)
    res = run_raw("disk", "--config", str(pair.configs["n1"]), "--node", "n1", "--run-dir",
                  pair.run_dir("n1"), "--dev-dir", str(not_dir), "up", "r0")
    assert res.returncode == 2
    one_error_line(res, f"--dev-dir {not_dir}: not a directory")
    assert tree(pair) == before
