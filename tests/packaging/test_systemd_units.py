"""The systemd units in packaging/systemd: what systemd itself says of them
(``systemd-analyze verify``), and that every command they run is a valid kembar command
line (parsed by kembar's own CLI parser)."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tests.cli.cmdline import resolve

UNITS = Path(__file__).resolve().parents[2] / "packaging" / "systemd"
KEMBAR = "/usr/local/bin/kembar"
EXEC_KEYS = ("ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload", "ExecStop",
             "ExecStopPost")


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True,
                                       comment_prefixes=("#", ";"), empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string((UNITS / name).read_text(), source=name)
    return parser


def _commands(unit: configparser.ConfigParser, instance: str = "r0") -> dict[str, list[str]]:
    out = {}
    for key in EXEC_KEYS:
        if unit.has_option("Service", key):
            line = unit.get("Service", key).lstrip("-@:+!")
            out[key] = [w.replace("%i", instance) for w in shlex.split(line)]
    return out


def test_the_daemon_unit() -> None:
    unit = _unit("kembar.service")
    commands = _commands(unit)
    assert set(commands) == {"ExecStart"}
    argv = commands["ExecStart"]
    assert argv[0] == KEMBAR
    assert resolve(argv[1:])[0] == "kembar daemon"
    service = unit["Service"]
    assert service["Type"] == "simple" and service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] == "process"  # a restarted daemon adopts its running group
    assert service["RuntimeDirectory"] == "kembar" and \
        service["RuntimeDirectoryPreserve"] == "yes"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_disk_template_unit() -> None:
    unit = _unit("kembar-disk@.service")
    commands = _commands(unit, "r0")
    assert commands["ExecStart"][0] == commands["ExecStop"][0] == KEMBAR
    assert resolve(commands["ExecStart"][1:]) == ("kembar disk up", {"disk": "r0"})
    assert resolve(commands["ExecStop"][1:]) == ("kembar disk down", {"disk": "r0",
                                                                      "force": False})
    service = unit["Service"]
    # `kembar disk up` returns once the disk process (in its own session) answers, and the
    # disk process writes its pid file where --run-dir's default puts it
    assert service["Type"] == "forking"
    assert service["PIDFile"] == "/run/kembar/%i.pid"
    assert service["RuntimeDirectory"] == "kembar"
    assert service["RuntimeDirectoryPreserve"] == "yes"  # never removed under the daemon
    # before the daemon (which promotes the disk), stopped after it (which demotes it)
    assert "kembar.service" in unit["Unit"]["Before"].split()


def test_the_pid_file_is_in_the_default_run_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """PIDFile= names /run/kembar/DISK.pid: the disk process writes DISK.pid in its run
    directory (``Pair.pid`` reads it there in every disk test), /run/kembar by default."""
    from kembar.disk.client import default_run_dir

    monkeypatch.delenv("KEMBAR_RUN_DIR", raising=False)
    assert default_run_dir() == "/run/kembar"


def test_resolve_refuses_what_the_cli_refuses() -> None:
    for bad in (["disk", "upp", "r0"], ["disk", "up"], ["daemon", "--frob"]):
        with pytest.raises(click.UsageError):
            resolve(bad)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (Debian: apt-get install systemd)")
def test_systemd_analyze_verify_has_nothing_to_say(tmp_path: Path) -> None:
    """systemd's own checks: syntax, directives, types; the program must exist, so the
    copies run the kembar of this environment."""
    kembar = shutil.which("kembar", path=os.path.dirname(sys.executable))
    assert kembar is not None, "the kembar console script of this environment"
    for unit in UNITS.glob("*.service"):
        (tmp_path / unit.name).write_text(unit.read_text().replace(KEMBAR, kembar))
    res = subprocess.run(["systemd-analyze", "verify", "--man=no",
                          str(tmp_path / "kembar.service"),
                          str(tmp_path / "kembar-disk@r0.service")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stderr.strip() == "" and res.stdout.strip() == "", \
        res.stdout + res.stderr
