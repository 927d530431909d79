from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kembar.errors import ConfigError
from kembar.membership.authkeys import (METHODS, AuthKeys, Key, format_authkeys,
                                        load_authkeys, parse_authkeys)

HEARTBEAT_EXAMPLE = """\
#
#	Authentication file.  Must be mode 600
#
auth 2
1 sha1 SomeSharedSecret
2 md5 Hello!
"""


def _error(text: str, source: str = "<string>") -> str:
    with pytest.raises(ConfigError) as info:
        parse_authkeys(text, source)
    return str(info.value)


# ------------------------------------------------------------------ valid files

def test_heartbeat_example() -> None:
    keys = parse_authkeys(HEARTBEAT_EXAMPLE)
    assert keys.active == 2
    assert keys.keys == {1: Key(1, "sha1", b"SomeSharedSecret"), 2: Key(2, "md5", b"Hello!")}
    assert keys.sign_key == Key(2, "md5", b"Hello!")


def test_secret_with_spaces_comments_and_blank_lines() -> None:
    text = ("  # leading comment\n\n"
            "auth 1\n"
            "\t1   sha256   a long secret  with  spaces \t\n"
            "# 2 sha1 commented-out\n"
            "15 SHA1 hash#not-a-comment\r\n")
    keys = parse_authkeys(text)
    assert keys.active == 1
    assert keys.keys[1].secret == b"a long secret  with  spaces"
    assert keys.keys[15] == Key(15, "sha1", b"hash#not-a-comment")
    assert sorted(keys.keys) == [1, 15]


def test_auth_may_precede_or_follow_keys() -> None:
    assert parse_authkeys("3 sha256 x\nauth 3\n").active == 3


def test_non_ascii_secret_is_utf8() -> None:
    assert parse_authkeys("auth 1\n1 sha256 pässwörd ✓\n").sign_key.secret == \
        "pässwörd ✓".encode()


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("text, expected", [
    ("auth 1\n1 crc\n", "f: line 2: key 1: crc adds no security: use sha256"),
    ("auth 1\n1 crc\n1 sha1 x\n", "f: line 2: key 1: crc adds no security"),
    ("auth 1\n1 sha512 secret\n", "f: line 2: key 1: method 'sha512' is not supported; "
                                  "use one of sha256, sha1, md5"),
    ("auth 1\n1 foo secret\n", "f: line 2: key 1: unknown method (not shown: it may be a "
                               "secret); use one of sha256, sha1, md5"),
    ("auth 1\n\n1 sha1\n", "f: line 3: key 1: method sha1 needs a secret"),
    ("auth 1\n1 sha256   \n", "f: line 2: key 1: method sha256 needs a secret"),
    ("auth 1\n1\n", "f: line 2: key 1: missing method and secret"),
    ("auth 1\n1 sha1 a\n# c\n1 md5 b\n", "f: line 4: duplicate key index 1 (first defined "
                                         "on line 2)"),
    ("auth 1\n01 sha1 a\n1 md5 b\n", "f: line 3: duplicate key index 1"),
    ("auth 3\n1 sha1 a\n2 md5 b\n", "f: line 1: 'auth 3' names no key (keys: 1, 2)"),
    ("auth 1\nauth 1\n1 sha1 a\n", "f: line 2: a second 'auth' line (the first is line 1)"),
    ("auth\n1 sha1 a\n", "f: line 1: expected 'auth N' with N from 1 to 15"),
    ("auth 0\n1 sha1 a\n", "f: line 1: expected 'auth N' with N from 1 to 15"),
    ("auth 16\n1 sha1 a\n", "f: line 1: expected 'auth N' with N from 1 to 15"),
    ("auth 1 2\n1 sha1 a\n", "f: line 1: expected 'auth N' with N from 1 to 15"),
    ("auth 1\n0 sha1 a\n", "f: line 2: expected 'auth N' or 'N METHOD SECRET' with N from "
                           "1 to 15"),
    ("auth 1\n16 sha1 a\n", "f: line 2: expected 'auth N' or 'N METHOD SECRET'"),
    ("auth 1\n-1 sha1 a\n", "f: line 2: expected 'auth N' or 'N METHOD SECRET'"),
    ("auth 1\n１ sha1 a\n", "f: line 2: expected 'auth N' or 'N METHOD SECRET'"),
    ("auth 1\nsha1 1 a\n", "f: line 2: expected 'auth N' or 'N METHOD SECRET'"),
    ("", "f: no keys"),
    ("# only comments\n\n", "f: no keys"),
    ("auth 1\n", "f: no keys"),
    ("1 sha1 a\n2 md5 b\n", "f: no 'auth N' line choosing the key that signs outgoing "
                            "packets (keys: 1, 2)"),
])
def test_errors(text: str, expected: str) -> None:
    assert _error(text, "f").startswith(expected)


def test_crc_message_recommends_sha256() -> None:
    message = _error("auth 1\n1 crc\n", "/etc/kembar/authkeys")
    assert message.startswith("/etc/kembar/authkeys: line 2: key 1: crc adds no security")
    assert "sha256" in message


def test_error_is_config_error_with_exit_code_2() -> None:
    with pytest.raises(ConfigError) as info:
        parse_authkeys("")
    assert info.value.exit_code == 2


# ------------------------------------------------------------------ secrets never shown

_SECRET = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc")),
    min_size=8, max_size=40).filter(lambda s: s.strip() == s and "\n" not in s)

# Each template gives an error (or, the last ones, a valid file) with SECRET somewhere in it.
_KEYWORDS = {"auth", "crc", *METHODS, "sha512", "sha384", "sha224", "sha512_224",
             "sha512_256", "sha3_224", "sha3_256", "sha3_384", "sha3_512", "blake2b",
             "blake2s", "ripemd160", "shake_128", "shake_256"}
_BAD_TEMPLATES = [
    "auth 1\n1 crc {s}\n",
    "auth 1\n1 foo {s}\n",
    "auth 1\n1 {s}\n",
    "auth 1\n1 {s} {s}\n",
    "auth 1\n{s}\n",
    "auth 1\n1 sha1 {s}\n{s}\n",
    "auth {s}\n1 sha1 {s}\n",
    "auth 1\n1 sha1 {s}\n1 md5 {s}\n",
    "auth 2\n1 sha1 {s}\n",
    "1 sha1 {s}\n",
    "auth 1\nauth 1\n1 sha1 {s}\n",
    "auth 1\n1 sha512 {s}\n",
    "auth 1\n99 sha1 {s}\n",
]


@settings(max_examples=60, deadline=None)
@given(secret=_SECRET, template=st.sampled_from(_BAD_TEMPLATES))
def test_secret_never_in_error_message(secret: str, template: str) -> None:
    assume(not secret.startswith("#") and secret.lower() not in _KEYWORDS)
    message = _error(template.format(s=secret))
    assert secret not in message
    # The message does not depend on the secret at all.
    assert message == _error(template.format(s="Xy7" * 4))


@settings(max_examples=60, deadline=None)
@given(secret=_SECRET, method=st.sampled_from(METHODS), index=st.integers(1, 15))
def test_secret_never_in_repr_or_str(secret: str, method: str, index: int) -> None:
    keys = parse_authkeys(f"auth {index}\n{index} {method} {secret}\n")
    assert keys.sign_key.secret == secret.encode()
    for shown in (repr(keys), str(keys), repr(keys.sign_key), str(keys.sign_key),
                  f"{keys}", f"{keys.keys}", f"{[keys.sign_key]}"):
        assert secret not in shown
        assert repr(secret.encode()) not in shown
        assert "<hidden>" in shown


def test_repr_shape() -> None:
    keys = parse_authkeys(HEARTBEAT_EXAMPLE)
    assert repr(keys.keys[1]) == "Key(index=1, method='sha1', secret=<hidden>)"
    assert repr(keys) == ("AuthKeys(active=2, keys={1: Key(index=1, method='sha1', "
                          "secret=<hidden>), 2: Key(index=2, method='md5', secret=<hidden>)})")


def test_dataclasses_validate() -> None:
    with pytest.raises(ValueError):
        Key(0, "sha1", b"x")
    with pytest.raises(ValueError):
        Key(1, "crc", b"x")
    with pytest.raises(ValueError):
        Key(1, "sha1", b"")
    with pytest.raises(ValueError):
        AuthKeys(1, {})
    with pytest.raises(ValueError):
        AuthKeys(2, {1: Key(1, "sha1", b"x")})
    with pytest.raises(ValueError):
        AuthKeys(1, {1: Key(2, "sha1", b"x")})


# ------------------------------------------------------------------ files

def _write(path: Path, text: str | bytes, mode: int) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_load_owner_only(tmp_path: Path, mode: int) -> None:
    path = _write(tmp_path / "authkeys", HEARTBEAT_EXAMPLE, mode)
    assert load_authkeys(path) == parse_authkeys(HEARTBEAT_EXAMPLE)
    assert load_authkeys(str(path)).active == 2


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644, 0o666])
def test_load_refuses_group_or_other_access(tmp_path: Path, mode: int) -> None:
    path = _write(tmp_path / "authkeys", HEARTBEAT_EXAMPLE, mode)
    with pytest.raises(ConfigError) as info:
        load_authkeys(path)
    message = str(info.value)
    assert message.startswith(f"{path}: mode {mode:04o} ")
    assert f"chmod 600 {path}" in message
    assert "SomeSharedSecret" not in message


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(ConfigError) as info:
        load_authkeys(path)
    assert str(info.value) == f"{path}: cannot read the key file: No such file or directory"


def test_load_directory(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o700)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_authkeys(tmp_path)


def test_load_not_utf8(tmp_path: Path) -> None:
    path = _write(tmp_path / "authkeys", b"auth 1\n1 sha1 caf\xe9\n", 0o600)
    with pytest.raises(ConfigError) as info:
        load_authkeys(path)
    assert str(info.value) == f"{path}: line 2: not UTF-8 text"


def test_load_reports_path_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "authkeys", "auth 1\n1 crc\n", 0o600)
    with pytest.raises(ConfigError, match=rf"^{path}: line 2: key 1: crc adds no security"):
        load_authkeys(path)


def test_load_too_large(tmp_path: Path) -> None:
    path = _write(tmp_path / "authkeys", "#" * 70000 + "\n", 0o600)
    with pytest.raises(ConfigError, match="larger than"):
        load_authkeys(path)


# ------------------------------------------------------------------ format / parse

_KEYS = st.dictionaries(
    st.integers(1, 15),
    st.tuples(st.sampled_from(METHODS), _SECRET | st.text(min_size=1, max_size=3).filter(
        lambda s: s.strip() == s and "\n" not in s and not any(
            "\ud800" <= c <= "\udfff" for c in s))),
    min_size=1, max_size=15)


@settings(max_examples=80, deadline=None)
@given(keys=_KEYS, data=st.data())
def test_format_parse_round_trip(keys: dict[int, tuple[str, str]], data: st.DataObject) -> None:
    active = data.draw(st.sampled_from(sorted(keys)))
    ring = AuthKeys(active, {i: Key(i, m, s.encode()) for i, (m, s) in keys.items()})
    text = format_authkeys(ring)
    assert parse_authkeys(text) == ring
    assert text.splitlines()[0].startswith("#")


@pytest.mark.parametrize("secret", [b" lead", b"trail ", b"two\nlines", b"\xff\xfe"])
def test_format_refuses_unwritable_secret(secret: bytes) -> None:
    ring = AuthKeys(1, {1: Key(1, "sha256", secret)})
    with pytest.raises(ValueError) as info:
        format_authkeys(ring)
    assert "key 1" in str(info.value)
    assert repr(secret) not in str(info.value)
