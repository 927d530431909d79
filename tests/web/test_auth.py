"""The dashboard's gate (pure): password check, sessions, CSRF, the login throttle."""

from __future__ import annotations

import base64

from kembar.web.auth import FAILURE_WINDOW, MAX_FAILURES, MAX_SESSIONS, Auth, basic_password, \
    password_matches

PW = "correct horse battery staple"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_password_matches() -> None:
    assert password_matches(PW, PW)
    assert not password_matches(PW + " ", PW)
    assert not password_matches("", PW)
    assert not password_matches("\udcff", PW)  # undecodable input is just wrong


def test_basic_password() -> None:
    assert basic_password(_basic("prometheus", PW)) == PW
    assert basic_password(_basic("", "a:b")) == "a:b"  # the first colon separates
    assert basic_password("basic " + base64.b64encode(b"u:p").decode()) == "p"
    for bad in (None, "", "Bearer xyz", "Basic", "Basic !!!", "Basic " +
                base64.b64encode(b"no-colon").decode(), "Basic " +
                base64.b64encode(b"\xff:\xfe").decode()):
        assert basic_password(bad) is None, bad


def test_sessions_expire_and_carry_their_own_csrf_token() -> None:
    auth = Auth(PW, session_timeout=100)
    assert auth.required
    assert auth.check(PW, "c", 0) is True
    token, s = auth.login(0)
    token2, s2 = auth.login(0)
    assert token != token2 and s.csrf != s2.csrf and len(token) >= 40
    assert auth.session(token, 99) is s
    assert auth.csrf_ok(s, s.csrf) and not auth.csrf_ok(s, s2.csrf)
    assert not auth.csrf_ok(s, None) and not auth.csrf_ok(None, s.csrf)
    assert not auth.csrf_ok(None, auth.open_csrf)  # a password: the open token is no use
    assert auth.session(token, 100) is None and token not in auth.sessions
    auth.logout(token2)
    assert auth.session(token2, 1) is None
    assert auth.session(None, 1) is None and auth.session("forged", 1) is None


def test_sessions_are_capped() -> None:
    auth = Auth(PW, session_timeout=100)
    first, _ = auth.login(0)
    for i in range(MAX_SESSIONS):
        auth.login(1 + i / 1000)
    assert len(auth.sessions) == MAX_SESSIONS and auth.session(first, 2) is None


def test_wrong_passwords_are_throttled_per_client() -> None:
    auth = Auth(PW, session_timeout=100)
    for i in range(MAX_FAILURES):
        assert auth.check("guess", "mallory", i) is False
    assert auth.check(PW, "mallory", MAX_FAILURES) is None  # not even compared
    assert auth.check(PW, "alice", MAX_FAILURES) is True  # others are not locked out
    assert auth.check(PW, "mallory", FAILURE_WINDOW + MAX_FAILURES) is True


def test_no_password_no_login() -> None:
    auth = Auth(None, session_timeout=100)
    assert not auth.required
    assert auth.check("", "c", 0) is True
    assert auth.csrf_ok(None, auth.open_csrf)
    assert not auth.csrf_ok(None, "x") and not auth.csrf_ok(None, None)
