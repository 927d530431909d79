"""``[notify]`` and ``[logging]`` in the cluster file: what is accepted, and one-line
errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from kembar.cli.main import cli
from kembar.config import parse_cluster
from kembar.config.logs import syslog_target
from kembar.config.notify import EVENTS, parse_command
from kembar.errors import ConfigError

BASE = """
[cluster]
name = "web"
[nodes.node1]
[nodes.node2]
"""


def _cfg(extra: str):  # type: ignore[no-untyped-def]
    return parse_cluster(BASE + extra, "cluster.toml")


def _error(extra: str) -> str:
    with pytest.raises(ConfigError) as info:
        _cfg(extra)
    return str(info.value)


# ------------------------------------------------------------------ notify


def test_no_notify_table_means_no_hooks() -> None:
    assert _cfg("").notify is None


def test_commands_as_lists_and_strings() -> None:
    cfg = _cfg("""
[notify]
timeout = "5s"
node_dead = ["/usr/local/bin/page", "node dead", "--urgent"]
split_brain = "/usr/lib/drbd/notify-split-brain.sh 'root@example.com'"
any = "logger -t kembar"
""").notify
    assert cfg is not None
    assert cfg.timeout == 5.0 and cfg.max_running == 4
    assert cfg.command("node_dead") == ("/usr/local/bin/page", "node dead", "--urgent")
    assert cfg.command("split_brain") == ("/usr/lib/drbd/notify-split-brain.sh",
                                          "root@example.com")
    assert cfg.command("any") == ("logger", "-t", "kembar")
    assert cfg.command("failover") is None
    assert set(cfg.configured()) == {"node_dead", "split_brain", "any"}


def test_every_event_is_a_key() -> None:
    lines = "\n".join(f'{event} = ["/bin/true"]' for event in EVENTS)
    cfg = _cfg(f"[notify]\n{lines}\n").notify
    assert cfg is not None and set(cfg.configured()) == set(EVENTS)


def test_a_string_is_never_given_to_a_shell() -> None:
    # the pipe and the redirection are plain words of argv
    assert parse_command("echo a | tee /tmp/x > /dev/null") == \
        ("echo", "a", "|", "tee", "/tmp/x", ">", "/dev/null")


@pytest.mark.parametrize("extra, expected", [
    ('nod_dead = ["/bin/true"]', "cluster.toml: notify: unknown key 'nod_dead': the events "
                                 "are node_dead, node_up"),
    ("node_dead = []", "cluster.toml: notify.node_dead: empty command"),
    ('node_dead = ""', "cluster.toml: notify.node_dead: empty command"),
    ('node_dead = "   "', "cluster.toml: notify.node_dead: empty command"),
    ("node_dead = 5", "cluster.toml: notify.node_dead: must be a command: a list of strings"),
    ("node_dead = { x = 1 }", "cluster.toml: notify.node_dead: must be a command"),
    ('node_dead = ["/bin/echo", 1]', "cluster.toml: notify.node_dead: every element of the "
                                     "command must be a string"),
    ('node_dead = ["", "x"]', "cluster.toml: notify.node_dead: the program (the first word) "
                              "is empty"),
    ('node_dead = "page \'oncall"', "cluster.toml: notify.node_dead: cannot split the "
                                    "command into words: No closing quotation"),
    ('failover = ["bin/page"]', "cluster.toml: notify.failover: the program 'bin/page' is a "
                                "relative path"),
    ('timeout = "0s"', "cluster.toml: notify.timeout: must be > 0"),
    ('timeout = "2h"', "cluster.toml: notify.timeout: must be <= 3600"),
    ('timeout = "soon"', "cluster.toml: notify.timeout: invalid duration"),
    ("max_running = 0", "cluster.toml: notify.max_running: must be >= 1"),
])
def test_bad_notify_tables(extra: str, expected: str) -> None:
    assert _error(f"[notify]\n{extra}\n").startswith(expected)


def test_notify_must_be_a_table() -> None:
    with pytest.raises(ConfigError) as info:
        parse_cluster('notify = ["/bin/true"]\n' + BASE, "cluster.toml")
    assert str(info.value) == "cluster.toml: notify: must be a table"


# ------------------------------------------------------------------ logging


def test_no_logging_table_means_stderr() -> None:
    assert _cfg("").logging is None


def test_logging_targets() -> None:
    cfg = _cfg("""
[logging]
targets = ["file", "syslog", "journald"]
level = "debug"
file = "/var/log/kembar.log"
syslog_facility = "local0"
syslog_address = "198.18.0.9:514"
journal_socket = "/run/kb-test/journal.sock"
""").logging
    assert cfg is not None
    assert cfg.targets == ["file", "syslog", "journald"] and cfg.level == "debug"
    assert syslog_target(cfg.syslog_address) == ("198.18.0.9", 514)
    assert syslog_target("/dev/log") == "/dev/log"
    assert syslog_target("[::1]:514") == ("::1", 514)


@pytest.mark.parametrize("extra, expected", [
    ('targets = ["stdout"]', "cluster.toml: logging.targets.0: must be 'stderr', 'file', "
                             "'syslog' or 'journald'"),
    ("targets = []", "cluster.toml: logging.targets: name at least one target"),
    ('targets = ["syslog", "syslog"]', "cluster.toml: logging.targets: syslog named more "
                                       "than once"),
    ('targets = ["file"]', 'cluster.toml: logging: targets has "file": set file = '),
    ('file = "/var/log/k.log"', 'cluster.toml: logging: file is set but "file" is not in '
                                "targets"),
    ('targets = ["file"]\nfile = "k.log"', "cluster.toml: logging.file: must be an absolute "
                                           "path"),
    ('level = "verbose"', "cluster.toml: logging.level: must be 'debug', 'info', 'warning' or "
                          "'error'"),
    ('syslog_facility = "local8"', "cluster.toml: logging.syslog_facility: must be 'kern'"),
    ('syslog_address = "loghost:514"', "cluster.toml: logging.syslog_address: 'loghost' is "
                                       "not an IP address"),
    ('syslog_address = "198.18.0.9"', "cluster.toml: logging.syslog_address: not a socket "
                                      "path or HOST:PORT"),
    ('syslog_address = "198.18.0.9:99999"', "cluster.toml: logging.syslog_address: not a "
                                            "socket path or HOST:PORT"),
    ('journal_socket = "journal"', "cluster.toml: logging.journal_socket: must be an "
                                   "absolute path"),
    ("colour = true", "cluster.toml: logging.colour: unknown key"),
])
def test_bad_logging_tables(extra: str, expected: str) -> None:
    assert _error(f"[logging]\n{extra}\n").startswith(expected)


def test_check_names_the_hooks_and_the_log_targets(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(BASE + '[notify]\nnode_dead = "/bin/true"\nany = "/bin/true"\n'
                           '[logging]\ntargets = ["journald", "stderr"]\n')
    res = CliRunner().invoke(cli, ["config", "check", "-c", str(path)], prog_name="kembar")
    assert res.exit_code == 0, res.output
    assert res.output.strip().endswith(", hooks on node_dead, any, logs to journald, stderr")
