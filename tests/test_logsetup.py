"""``[logging]``: the log lines arrive where the cluster file says, on real sockets — a Unix
datagram socket standing in for syslog's /dev/log, a UDP syslog server, a socket speaking
the journal's native protocol (memfd included) — and in a file that logrotate moves."""

from __future__ import annotations

import array
import fcntl
import logging
import os
import socket
from pathlib import Path
from typing import Callable, Iterator

import pytest

from kembar.config.logs import LoggingConfig
from kembar.errors import ConfigError
from kembar.journal import decode, encode, priority
from kembar.lab.pair import Pair, wait_for
from kembar.logsetup import make_handlers
from tests.disk.conftest import make_pair  # noqa: F401 (a fixture)

LOCAL3 = 19  # syslog facility numbers (RFC 5424)
DAEMON = 3


@pytest.fixture
def sock_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A short directory for Unix sockets (their paths are limited to 107 bytes)."""
    path = Path(f"/tmp/kb-log-{os.getpid()}-{os.urandom(3).hex()}")
    path.mkdir()
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def _dgram_server(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(10)
    return s


def _logger(handlers: list[logging.Handler]) -> Callable[[], None]:
    log = logging.getLogger("kembar.test.logsetup")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    for h in handlers:
        log.addHandler(h)

    def remove() -> None:
        for h in handlers:
            log.removeHandler(h)
            h.close()
    return remove


def test_syslog_on_a_unix_socket(sock_dir: Path) -> None:
    server = _dgram_server(sock_dir / "log")
    cfg = LoggingConfig(targets=["syslog"], syslog_facility="local3",
                        syslog_address=str(sock_dir / "log"))
    done = _logger(make_handlers(cfg, "node1", "kembar"))
    try:
        logging.getLogger("kembar.test.logsetup").warning("late heartbeat from %s", "node2")
        logging.getLogger("kembar.test.logsetup").error("BUG: something")
        first, second = server.recv(4096), server.recv(4096)
    finally:
        done()
        server.close()
    # <facility * 8 + severity>: local3 warning = 156, local3 err = 155
    assert first == (f"<{LOCAL3 * 8 + 4}>kembar[{os.getpid()}]: node1 kembar.test.logsetup "
                     "WARNING: late heartbeat from node2").encode()
    assert second.startswith(f"<{LOCAL3 * 8 + 3}>kembar[".encode())


def test_syslog_over_udp() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(10)
    port = server.getsockname()[1]
    cfg = LoggingConfig(targets=["syslog"], syslog_address=f"127.0.0.1:{port}")
    done = _logger(make_handlers(cfg, "node2", "kembar-disk"))
    try:
        logging.getLogger("kembar.test.logsetup").info("r0: up")
        data = server.recv(4096)
    finally:
        done()
        server.close()
    assert data == f"<{DAEMON * 8 + 6}>kembar-disk[{os.getpid()}]: node2 " \
                   "kembar.test.logsetup INFO: r0: up".encode()


def test_syslog_that_does_not_listen_is_survived(sock_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg = LoggingConfig(targets=["syslog"], syslog_address=str(sock_dir / "nobody"))
    done = _logger(make_handlers(cfg, "node1", "kembar"))
    try:
        for _ in range(3):
            logging.getLogger("kembar.test.logsetup").warning("lost")
    finally:
        done()
    err = capsys.readouterr().err
    assert err.count("kembar: cannot log to syslog at") == 1  # once, not per line


def test_journal_native_protocol(sock_dir: Path) -> None:
    server = _dgram_server(sock_dir / "journal")
    cfg = LoggingConfig(targets=["journald"], journal_socket=str(sock_dir / "journal"),
                        syslog_facility="local0")
    done = _logger(make_handlers(cfg, "node1", "kembar-disk", {"KEMBAR_DISK": "r0"}))
    try:
        log = logging.getLogger("kembar.test.logsetup")
        log.warning("r0: I/O error on the backing store")
        try:
            raise OSError(5, "Input/output error")
        except OSError:
            log.exception("two\nlines")
        first, second = decode(server.recv(65536)), decode(server.recv(65536))
    finally:
        done()
        server.close()
    assert first["MESSAGE"] == b"kembar.test.logsetup: r0: I/O error on the backing store"
    assert first["PRIORITY"] == b"4" and first["SYSLOG_FACILITY"] == b"16"
    assert first["SYSLOG_IDENTIFIER"] == b"kembar-disk"
    assert first["LOGGER"] == b"kembar.test.logsetup"
    assert (first["KEMBAR_NODE"], first["KEMBAR_DISK"]) == (b"node1", b"r0")
    assert first["CODE_FUNC"] == b"test_journal_native_protocol"
    assert first["CODE_FILE"].endswith(b"test_logsetup.py") and int(first["CODE_LINE"]) > 0
    # a value with newlines travels length-prefixed; the traceback is part of the message
    assert second["PRIORITY"] == b"3"
    assert second["MESSAGE"].startswith(b"kembar.test.logsetup: two\nlines\nTraceback")
    assert second["MESSAGE"].endswith(b"OSError: [Errno 5] Input/output error")


def test_journal_entry_too_large_for_a_datagram_goes_in_a_sealed_memfd(sock_dir: Path) -> None:
    server = _dgram_server(sock_dir / "journal")
    cfg = LoggingConfig(targets=["journald"], journal_socket=str(sock_dir / "journal"))
    done = _logger(make_handlers(cfg, "node1", "kembar"))
    big = "x" * (4 * 1024 * 1024)
    try:
        logging.getLogger("kembar.test.logsetup").info(big)
        data, ancdata, _, _ = server.recvmsg(65536, socket.CMSG_SPACE(4))
    finally:
        done()
        server.close()
    assert data == b"" and len(ancdata) == 1
    level, kind, raw = ancdata[0]
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
    fds = array.array("i")
    fds.frombytes(raw[:4])
    fd = fds[0]
    try:
        seals = fcntl.fcntl(fd, getattr(fcntl, "F_GET_SEALS", 1034))
        assert seals & 0b1111 == 0b1111  # SEAL, SHRINK, GROW, WRITE
        size = os.fstat(fd).st_size
        fields = decode(os.pread(fd, size, 0))
    finally:
        os.close(fd)
    assert fields["MESSAGE"] == f"kembar.test.logsetup: {big}".encode()


def test_journal_encoding_round_trip() -> None:
    fields = {"MESSAGE": "a\nb", "PRIORITY": "6", "EMPTY": "", "EQ": "x=y"}
    assert encode(fields) == (b"MESSAGE\n\x03\x00\x00\x00\x00\x00\x00\x00a\nb\nPRIORITY=6\n"
                              b"EMPTY=\nEQ=x=y\n")
    assert decode(encode(fields)) == {k: v.encode() for k, v in fields.items()}
    with pytest.raises(ValueError):
        encode({"_PID": "1"})  # the journal's own (trusted) fields
    with pytest.raises(ValueError):
        encode({"message": "lower case"})
    assert [priority(level) for level in (50, 40, 30, 20, 10, 25, 5)] == [2, 3, 4, 6, 7, 6, 7]


def test_file_reopened_after_logrotate_moves_it(tmp_path: Path) -> None:
    path = tmp_path / "kembar.log"
    cfg = LoggingConfig(targets=["file"], file=str(path))
    done = _logger(make_handlers(cfg, "node1", "kembar"))
    try:
        log = logging.getLogger("kembar.test.logsetup")
        log.info("before")
        path.rename(tmp_path / "kembar.log.1")
        log.info("after")
    finally:
        done()
    assert (tmp_path / "kembar.log.1").read_text().endswith(
        "node1 kembar.test.logsetup INFO: before\n")
    assert path.read_text().endswith("node1 kembar.test.logsetup INFO: after\n")


def test_a_log_file_that_cannot_be_opened_is_a_config_error(tmp_path: Path) -> None:
    cfg = LoggingConfig(targets=["file"], file=str(tmp_path / "no-such-dir" / "k.log"))
    with pytest.raises(ConfigError) as info:
        make_handlers(cfg, "node1", "kembar")
    assert str(info.value) == (f"logging.file: cannot open {tmp_path}/no-such-dir/k.log: No "
                               "such file or directory")


def test_a_disk_process_logs_to_syslog_and_the_journal(make_pair: Callable[..., Pair],  # noqa: F811
                                                        sock_dir: Path) -> None:
    """The real disk processes read [logging] from the cluster file."""
    syslog = _dgram_server(sock_dir / "log")
    journal = _dgram_server(sock_dir / "journal")
    try:
        p = make_pair(extra=f"""
[logging]
targets = ["syslog", "journald", "stderr"]
syslog_facility = "local3"
syslog_address = "{sock_dir}/log"
journal_socket = "{sock_dir}/journal"
""")
        p.create()
        p.up("n1")
        pid = p.pid("n1")

        def line(sock: socket.socket, want: bytes) -> bytes:
            while True:
                data = sock.recv(65536)
                if want in data:
                    return data
        up = wait_for(lambda: line(syslog, b"r0: up on n1"), 10, "the syslog line")
        assert up.startswith(f"<{LOCAL3 * 8 + 6}>kembar-disk[{pid}]: n1 kembar.disk INFO: "
                             f"r0: up on n1".encode())
        entry = decode(wait_for(lambda: line(journal, b"r0: up on n1"), 10, "the entry"))
        assert entry["MESSAGE"].startswith(b"kembar.disk: r0: up on n1")
        assert (entry["SYSLOG_IDENTIFIER"], entry["KEMBAR_DISK"], entry["KEMBAR_NODE"]) == \
            (b"kembar-disk", b"r0", b"n1")
        assert entry["PRIORITY"] == b"6"
        assert "r0: up on n1" in p.log("n1")  # and stderr: the run directory's r0.log
    finally:
        syslog.close()
        journal.close()
