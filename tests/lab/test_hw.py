"""The lab's hardware disks: real FUSE, real loop devices, a switch to EIO and back."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import string
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kembar.errors import ConfigError, DaemonNotRunning, KembarError
from kembar.lab.hw import HwError, hw_request, main, parse_disks
from kembar.lab.pair import wait_for

MiB = 1024 * 1024
SIZE = 8 * MiB
PREFIX = "kembar-lab-hw: error:"


def mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as fh:
        return any(line.split()[4] == path for line in fh)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@dataclass
class Hw:
    root: Path
    mount: str
    control: str
    pid_file: Path
    images: dict[str, Path]
    proc: subprocess.Popen[bytes]

    def req(self, **request: Any) -> dict[str, Any]:
        return hw_request(self.control, request)

    def dev(self, name: str) -> str:
        return f"{self.mount}/{name}"

    def image_bytes(self, name: str, off: int, length: int) -> bytes:
        with open(self.images[name], "rb") as fh:
            fh.seek(off)
            return fh.read(length)


def _stop(proc: subprocess.Popen[bytes], mount: str) -> None:
    """Stop the one process this test started (by its PID) and leave nothing mounted."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    if mounted(mount):
        subprocess.run(["umount", "-l", mount], check=False)


@pytest.fixture
def hw(tmp_path: Path) -> Iterator[Hw]:
    mount = tmp_path / "kembar-hwtest-mnt"
    mount.mkdir()
    images = {}
    for name in ("node1", "node2"):
        images[name] = tmp_path / f"{name}.img"
        with open(images[name], "wb") as fh:
            fh.truncate(SIZE)
    control = tmp_path / "hw.sock"
    pid_file = tmp_path / "hw.pid"
    with open(tmp_path / "hw.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kembar.lab.hw", "--mount", str(mount),
             "--control", str(control), "--pid-file", str(pid_file),
             *[a for n, p in images.items() for a in ("--disk", f"{n}={p}")]],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: pid_file.exists() or proc.poll() is not None, 10, "the pid file")
        assert proc.poll() is None, (tmp_path / "hw.log").read_text()
        assert pid_file.read_text().strip() == str(proc.pid)
        assert mounted(str(mount))
        yield Hw(tmp_path, str(mount), str(control), pid_file, images, proc)
    finally:
        _stop(proc, str(mount))
    assert not mounted(str(mount))


# ----------------------------------------------------------------- data path


def test_writes_land_in_the_image_and_read_back(hw: Hw) -> None:
    assert sorted(os.listdir(hw.mount)) == ["node1", "node2"]
    st1 = os.stat(hw.dev("node1"))
    assert st1.st_size == SIZE and oct(st1.st_mode & 0o777) == oct(0o600)

    data1 = os.urandom(12345)
    data2 = os.urandom(4096)
    fd1 = os.open(hw.dev("node1"), os.O_RDWR)
    fd2 = os.open(hw.dev("node2"), os.O_RDWR)
    try:
        assert os.pwrite(fd1, data1, 3 * MiB + 7) == len(data1)
        os.fsync(fd1)
        assert os.pwrite(fd2, data2, 0) == len(data2)
        os.fsync(fd2)
        assert hw.image_bytes("node1", 3 * MiB + 7, len(data1)) == data1
        assert hw.image_bytes("node2", 0, len(data2)) == data2
        assert hw.image_bytes("node2", 3 * MiB + 7, len(data1)) == bytes(len(data1))
        assert hw.image_bytes("node1", 0, 4096) == bytes(4096)
        assert os.pread(fd1, len(data1), 3 * MiB + 7) == data1
        assert os.pread(fd1, 100, SIZE - 10) == bytes(10)  # short read at the end
        with pytest.raises(OSError) as exc:
            os.pwrite(fd1, b"x" * 20, SIZE - 10)
        assert exc.value.errno == errno.ENOSPC
    finally:
        os.close(fd1)
        os.close(fd2)
    with pytest.raises(OSError):
        open(f"{hw.mount}/node3", "w")  # no create
    with pytest.raises(OSError):
        os.unlink(hw.dev("node2"))
    with pytest.raises(OSError):
        os.truncate(hw.dev("node1"), 0)
    status = hw.req(op="status")["disks"]
    assert status["node1"]["writes"] >= 1 and status["node1"]["fsyncs"] >= 1
    assert status["node1"]["written_bytes"] == len(data1)
    assert status["node2"]["written_bytes"] == len(data2)
    assert status["node1"]["errors"] == 1  # the ENOSPC
    assert status["node1"]["image"] == str(hw.images["node1"])


def _eio(call: Any, *args: Any) -> None:
    with pytest.raises(OSError) as exc:
        call(*args)
    assert exc.value.errno == errno.EIO, exc.value


def test_fail_returns_eio_on_that_disk_only_until_repair(hw: Hw) -> None:
    before = os.open(hw.dev("node1"), os.O_RDWR)
    other = os.open(hw.dev("node2"), os.O_RDWR)
    after = -1
    try:
        os.pwrite(before, b"A" * 4096, 0)
        assert hw.req(op="fail", disk="node1") == {"ok": True, "disk": "node1",
                                                     "mode": "fail", "was": "ok"}
        after = os.open(hw.dev("node1"), os.O_RDWR)  # opening a dead disk still works
        for fd in (before, after):
            _eio(os.pread, fd, 4096, 0)
            _eio(os.pwrite, fd, b"B" * 4096, 0)
            _eio(os.fsync, fd)
        assert hw.image_bytes("node1", 0, 4096) == b"A" * 4096  # nothing got through
        os.pwrite(other, b"C" * 4096, 0)
        os.fsync(other)
        assert os.pread(other, 4096, 0) == b"C" * 4096
        status = hw.req(op="status")["disks"]
        assert status["node1"]["mode"] == "fail" and status["node1"]["errors"] == 6
        assert status["node2"]["mode"] == "ok" and status["node2"]["errors"] == 0

        assert hw.req(op="repair", disk="node1")["was"] == "fail"
        for fd in (before, after):
            assert os.pread(fd, 4096, 0) == b"A" * 4096
        os.pwrite(after, b"D" * 4096, 8192)
        os.fsync(before)
        assert hw.image_bytes("node1", 8192, 4096) == b"D" * 4096
        assert hw.req(op="status")["disks"]["node1"]["mode"] == "ok"
    finally:
        for fd in (before, other, after):
            if fd >= 0:
                os.close(fd)


def _dd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dd", "status=none", *args], capture_output=True, text=True,
                          timeout=30)


def test_loop_device_on_top_sees_the_disk_die(hw: Hw, tmp_path: Path) -> None:
    loop = subprocess.run(["losetup", "--find", "--show", hw.dev("node1")], check=True,
                          capture_output=True, text=True).stdout.strip()
    assert loop.startswith("/dev/loop")
    try:
        src = tmp_path / "block"
        payload = os.urandom(65536)
        src.write_bytes(payload)
        r = _dd(f"if={src}", f"of={loop}", "bs=64K", "count=1", "seek=5", "oflag=direct")
        assert r.returncode == 0, r.stderr
        assert hw.image_bytes("node1", 5 * 65536, 65536) == payload

        hw.req(op="fail", disk="node1")
        r = _dd(f"if={src}", f"of={loop}", "bs=64K", "count=1", "seek=6", "oflag=direct")
        assert r.returncode != 0 and "Input/output error" in r.stderr, r
        r = _dd(f"if={loop}", f"of={tmp_path / 'out'}", "bs=64K", "count=1", "skip=5",
                "iflag=direct")
        assert r.returncode != 0 and "Input/output error" in r.stderr, r
        assert hw.image_bytes("node1", 6 * 65536, 65536) == bytes(65536)
        assert hw.req(op="status")["disks"]["node1"]["errors"] >= 2

        hw.req(op="repair", disk="node1")
        r = _dd(f"if={loop}", f"of={tmp_path / 'out'}", "bs=64K", "count=1", "skip=5",
                "iflag=direct")
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "out").read_bytes() == payload
        r = _dd(f"if={src}", f"of={loop}", "bs=64K", "count=1", "seek=6", "oflag=direct")
        assert r.returncode == 0, r.stderr
        assert hw.image_bytes("node1", 6 * 65536, 65536) == payload
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
    wait_for(lambda: hw.dev("node1") not in subprocess.run(
        ["losetup", "-a"], capture_output=True, text=True).stdout, 10, "loop detached")


# ------------------------------------------------------------------ control


def test_bad_control_requests_are_refused_and_the_server_keeps_serving(hw: Hw) -> None:
    bad = [
        (b"this is not json", "malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"op": "explode"}', "unknown op 'explode'"),
        (b'{"disk": "node1"}', "unknown op None"),
        (b'{"op": "fail", "disk": "node9"}', "unknown disk 'node9'"),
        (b'{"op": "fail"}', "needs \\\"disk\\\""),
        (b'{"op": "repair", "disk": 7}', "needs"),
        (b'{"op": "status", "disk": "node1"}', "no other keys"),
    ]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(hw.control)
        f = s.makefile("rwb")
        for line, message in bad:
            f.write(line + b"\n\n")  # a blank line is skipped, not answered
            f.flush()
            reply = f.readline()
            assert json.loads(reply)["ok"] is False
            assert message in reply.decode(), reply
        f.write(b'{"op": "status"}\n')
        f.flush()
        assert json.loads(f.readline())["ok"] is True
    with pytest.raises(HwError, match="unknown disk 'nope'"):
        hw.req(op="fail", disk="nope")
    assert set(hw.req(op="status")["disks"]) == {"node1", "node2"}
    assert all(d["mode"] == "ok" for d in hw.req(op="status")["disks"].values())
    assert oct(os.stat(hw.control).st_mode & 0o777) == oct(0o600)
    with pytest.raises(DaemonNotRunning, match="no hardware-disk server"):
        hw_request(str(hw.root / "missing.sock"), {"op": "status"})


def test_sigterm_unmounts_and_removes_socket_and_pid_file(hw: Hw) -> None:
    fd = os.open(hw.dev("node2"), os.O_RDONLY)
    os.close(fd)
    os.kill(hw.proc.pid, signal.SIGTERM)
    assert hw.proc.wait(10) == 0
    assert not mounted(hw.mount)
    assert not os.path.exists(hw.control)
    assert not hw.pid_file.exists()
    assert os.listdir(hw.mount) == []


# ------------------------------------------------------------------ arguments


def _images(tmp_path: Path) -> tuple[str, str, str]:
    mnt = tmp_path / "kembar-hwtest-mnt"
    mnt.mkdir(exist_ok=True)
    img = tmp_path / "a.img"
    img.write_bytes(bytes(4096))
    return str(mnt), str(img), str(tmp_path / "hw.sock")


@pytest.mark.parametrize("case", [
    "no-args", "no-disk", "unknown-option", "mount-missing", "mount-not-empty",
    "image-missing", "image-is-dir", "bad-name", "dup-name", "same-image", "no-equals",
    "control-is-file",
])
def test_bad_arguments_exit_2_with_one_error_line(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mnt, img, sock = _images(tmp_path)
    base = ["--mount", mnt, "--control", sock]
    argv = {
        "no-args": [],
        "no-disk": base,
        "unknown-option": [*base, "--disk", f"a={img}", "--frobnicate"],
        "mount-missing": ["--mount", f"{mnt}-x", "--control", sock, "--disk", f"a={img}"],
        "mount-not-empty": [*base, "--disk", f"a={img}"],
        "image-missing": [*base, "--disk", f"a={img}.nope"],
        "image-is-dir": [*base, "--disk", f"a={tmp_path}"],
        "bad-name": [*base, "--disk", f"Node_1={img}"],
        "dup-name": [*base, "--disk", f"a={img}", "--disk", f"a={img}"],
        "same-image": [*base, "--disk", f"a={img}", "--disk", f"b={img}"],
        "no-equals": [*base, "--disk", img],
        "control-is-file": ["--mount", mnt, "--control", img, "--disk", f"a={img}"],
    }[case]
    if case == "mount-not-empty":
        Path(mnt, "junk").write_text("x")
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), err
    assert out == ""
    assert not mounted(mnt) and not os.path.exists(sock)


def test_bad_arguments_from_the_command_line(tmp_path: Path) -> None:
    mnt, img, sock = _images(tmp_path)
    r = subprocess.run([sys.executable, "-m", "kembar.lab.hw", "--mount", mnt, "--control",
                        sock, "--disk", f"BAD={img}"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith(PREFIX)
    assert "'BAD'" in r.stderr
    assert not mounted(mnt)


NAMES = st.from_regex(r"[a-z0-9-]{1,32}", fullmatch=True)
PATHS = st.text(st.characters(blacklist_characters="\0", codec="utf-8"), min_size=1,
                max_size=40)


@given(st.dictionaries(NAMES, PATHS, min_size=1, max_size=6))
def test_parse_disks_round_trips(disks: dict[str, str]) -> None:
    specs = [f"{n}={p}" for n, p in disks.items()]
    assert parse_disks(specs) == disks
    assert list(parse_disks(specs)) == list(disks)  # order kept


@given(st.text(max_size=40).filter(lambda n: "=" not in n and not (0 < len(n) <= 32 and all(
    c in string.ascii_lowercase + string.digits + "-" for c in n))), PATHS)
def test_parse_disks_rejects_bad_names(name: str, path: str) -> None:
    with pytest.raises(ConfigError):
        parse_disks([f"{name}={path}"])


@given(NAMES, PATHS, PATHS)
def test_parse_disks_rejects_a_name_twice(name: str, p1: str, p2: str) -> None:
    with pytest.raises(ConfigError, match="given twice"):
        parse_disks([f"{name}={p1}", f"other-{name}"[:32] + f"={p2}", f"{name}={p2}"])


def test_parse_disks_needs_a_disk_and_errors_are_kembar_errors() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        parse_disks([])
    with pytest.raises(KembarError, match="image path is empty"):
        parse_disks(["a="])


def test_hw_error_is_a_kembar_error() -> None:
    assert issubclass(HwError, KembarError) and issubclass(DaemonNotRunning, KembarError)
