"""``[web]``: listen addresses (this node's or loopback, never a wildcard), the password
file (private to its owner, required for anything but loopback), one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kembar.config import parse_cluster
from kembar.config.web import parse_listen
from kembar.errors import ConfigError

BASE = """
[cluster]
name = "web"
[nodes.n1]
address = "198.18.0.1"
[nodes.n2]
address = "198.18.0.2"
[disks.r0]
secret = "s3cret"
[disks.r0.on.n1]
backing = "/dev/vdb"
address = "198.18.1.1"
[disks.r0.on.n2]
backing = "/dev/vdb"
address = "198.18.1.2"
"""
PASSWORD = "correct horse battery staple"


def _password_file(tmp_path: Path, text: str = PASSWORD + "\n", mode: int = 0o600) -> Path:
    path = tmp_path / "web.password"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_cluster(BASE + text, "c.toml")
    return str(info.value)


def test_absent_means_off() -> None:
    assert parse_cluster(BASE).web is None


def test_loopback_without_password() -> None:
    cfg = parse_cluster(BASE + '[web]\nlisten = ["127.0.0.1:9694", "[::1]:9694"]\n')
    assert cfg.web is not None and cfg.web.password() is None
    assert cfg.web.binds() == [("127.0.0.1", 9694), ("::1", 9694)]
    assert cfg.web.session_timeout == 12 * 3600


def test_each_node_binds_its_own_addresses_and_loopback(tmp_path: Path) -> None:
    pw = _password_file(tmp_path)
    cfg = parse_cluster(BASE + f'[web]\nlisten = ["127.0.0.1:9694", "198.18.0.1:9694", '
                               f'"198.18.0.2:9694", "198.18.1.2:9695"]\n'
                               f'password_file = "{pw}"\nsession_timeout = "30m"\n')
    assert cfg.web is not None and cfg.web.password() == PASSWORD
    assert cfg.web.session_timeout == 1800
    assert cfg.addresses_of("n1") == {"198.18.0.1", "198.18.1.1"}
    assert cfg.web.binds_for(cfg.addresses_of("n1")) == [("127.0.0.1", 9694),
                                                          ("198.18.0.1", 9694)]
    assert cfg.web.binds_for(cfg.addresses_of("n2")) == [("127.0.0.1", 9694),
                                                          ("198.18.0.2", 9694),
                                                          ("198.18.1.2", 9695)]


def test_the_password_never_shows(tmp_path: Path) -> None:
    pw = _password_file(tmp_path)
    cfg = parse_cluster(BASE + f'[web]\nlisten = ["198.18.0.1:80"]\npassword_file = "{pw}"\n')
    assert PASSWORD not in repr(cfg) and PASSWORD not in str(cfg.web)
    assert PASSWORD not in cfg.model_dump_json()


@pytest.mark.parametrize("listen, expected", [
    ('"198.18.0.1:9694"', "c.toml: web.listen.0: '198.18.0.1:9694' is not a loopback address: "
                          "without web.password_file"),
    ('"0.0.0.0:9694"', "web.listen.0: '0.0.0.0:9694': 0.0.0.0 means every address"),
    ('"[::]:9694"', "web.listen.0: '[::]:9694': :: means every address"),
    ('"localhost:9694"', "web.listen.0: 'localhost:9694': 'localhost' is not an IPv4 or IPv6"),
    ('"127.0.0.1"', "web.listen.0: '127.0.0.1': expected host:port"),
    ('"127.0.0.1:"', "web.listen.0: '127.0.0.1:': expected host:port"),
    ('"127.0.0.1:70000"', "web.listen.0: '127.0.0.1:70000': port must be 1 to 65535"),
    ('"::1:9694"', "write an IPv6 address in brackets"),
    ('"127.0.0.1:9694", "127.0.0.1:9694"', "web.listen.1: '127.0.0.1:9694' is listed twice"),
    ('', "web.listen: at least one host:port is required"),
    ('9694', "web.listen.0: must be a string"),
])
def test_bad_listen(listen: str, expected: str) -> None:
    assert expected in _error(f"[web]\nlisten = [{listen}]\n")


def test_listen_must_be_a_configured_address(tmp_path: Path) -> None:
    pw = _password_file(tmp_path)
    msg = _error(f'[web]\nlisten = ["198.18.0.1:9694", "198.18.0.9:9694"]\n'
                 f'password_file = "{pw}"\n')
    assert msg == ("c.toml: web.listen.1: 198.18.0.9 is not a configured address of any node "
                   "(nodes.<name>.address or a disk's address: 198.18.0.1, 198.18.0.2, "
                   "198.18.1.1, 198.18.1.2) nor loopback")


def test_password_file_must_be_private(tmp_path: Path) -> None:
    pw = _password_file(tmp_path, mode=0o640)
    msg = _error(f'[web]\nlisten = ["127.0.0.1:9694"]\npassword_file = "{pw}"\n')
    assert f"web.password_file: {pw} is accessible by group or others (mode 640); " \
           f"run chmod 600 {pw}" in msg
    assert PASSWORD not in msg


@pytest.mark.parametrize("text, expected", [
    ("short\n", "must be 8 to 1024 characters long (it has 5)"),
    ("two\nlines here\n", "must be one line"),
])
def test_bad_password(tmp_path: Path, text: str, expected: str) -> None:
    pw = _password_file(tmp_path, text)
    msg = _error(f'[web]\nlisten = ["127.0.0.1:9694"]\npassword_file = "{pw}"\n')
    assert "web.password_file: " in msg and expected in msg
    assert "lines here" not in msg


@pytest.mark.parametrize("text, expected", [
    ('password_file = "relative"', "web.password_file: must be an absolute path"),
    ('password_file = "/nonexistent/kb-web.password"',
     "web.password_file: cannot read /nonexistent/kb-web.password: No such file"),
    ('session_timeout = "10s"', "web.session_timeout: must be between 1m and 168h"),
    ('session_timeout = "soon"', "web.session_timeout: invalid duration"),
    ('port = 80', "web.port: unknown key"),
    ('password = "x"', "web.password: unknown key"),
])
def test_other_errors_name_the_key(text: str, expected: str) -> None:
    assert expected in _error(f'[web]\nlisten = ["127.0.0.1:9694"]\n{text}\n')


def test_parse_listen_normalises() -> None:
    assert parse_listen("[0:0::1]:80") == ("::1", 80)
    assert parse_listen(" 127.0.0.1:8080 ") == ("127.0.0.1", 8080)



def test_config_check_names_the_dashboard(tmp_path: Path) -> None:
    from tests.config.test_cli_config import _run

    path = tmp_path / "cluster.toml"
    path.write_text(BASE + '[web]\nlisten = ["127.0.0.1:9694"]\n')
    res = _run("config", "check", "-c", str(path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith(", dashboard on 127.0.0.1:9694 (loopback, no password)")
    path.write_text(BASE + '[web]\nlisten = ["198.18.0.1:9694"]\n')
    res = _run("config", "check", "-c", str(path))
    assert res.returncode == 2 and "web.listen.0: '198.18.0.1:9694' is not a loopback" \
        in res.stderr
