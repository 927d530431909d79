"""Who may use the dashboard: the password, login sessions, CSRF tokens, a login throttle.

Pure (time is an argument); the HTTP layer (``server``) only reads headers and cookies and
asks here.  Invariants:

* the password is compared in constant time (``hmac.compare_digest`` over UTF-8 bytes) and
  never logged, stored elsewhere or put into a reply;
* a session is a random 256-bit token with an expiry; an expired or unknown token is no
  session; each session has its own CSRF token, which a state-changing request must carry
  in the ``X-Kembar-CSRF`` header (a cross-site form or script cannot set that header
  without the page's token);
* without a password (loopback only) there are no sessions: one CSRF token for the
  server's life guards the actions;
* after ``MAX_FAILURES`` wrong passwords from one client within ``FAILURE_WINDOW`` seconds,
  further attempts from it are refused until the window has passed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from dataclasses import dataclass, field

MAX_SESSIONS = 256  # the oldest is dropped past this
MAX_FAILURES = 5
FAILURE_WINDOW = 60.0
CSRF_HEADER = "X-Kembar-CSRF"
COOKIE = "kembar_session"


def password_matches(given: str, expected: str) -> bool:
    """Constant-time comparison (its time depends on the length of ``given`` only)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                               expected.encode("utf-8"))


def basic_password(header: str | None) -> str | None:
    """The password of an ``Authorization: Basic …`` header (any user name; Prometheus
    needs one); None when the header is absent or not Basic."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep else None


@dataclass
class Session:
    csrf: str
    expires: float


@dataclass
class Throttle:
    """Failed logins per client address, in a sliding window."""

    failures: dict[str, list[float]] = field(default_factory=dict)

    def blocked(self, client: str, now: float) -> bool:
        recent = [t for t in self.failures.get(client, []) if now - t < FAILURE_WINDOW]
        if recent:
            self.failures[client] = recent
        else:
            self.failures.pop(client, None)
        return len(recent) >= MAX_FAILURES

    def failed(self, client: str, now: float) -> None:
        self.failures.setdefault(client, []).append(now)
        if len(self.failures) > 4096:  # many clients: forget the quietest
            oldest = min(self.failures, key=lambda c: self.failures[c][-1])
            del self.failures[oldest]


class Auth:
    """The dashboard's gate: ``password`` None means no login (loopback only)."""

    def __init__(self, password: str | None, session_timeout: float) -> None:
        self._password = password
        self.timeout = session_timeout
        self.sessions: dict[str, Session] = {}
        self.throttle = Throttle()
        self.open_csrf = secrets.token_urlsafe(32)

    @property
    def required(self) -> bool:
        return self._password is not None

    def check(self, given: str, client: str, now: float) -> bool | None:
        """Is ``given`` the password?  None: too many failures from ``client`` lately
        (not even compared)."""
        if self._password is None:
            return True
        if self.throttle.blocked(client, now):
            return None
        if password_matches(given, self._password):
            return True
        self.throttle.failed(client, now)
        return False

    def login(self, now: float) -> tuple[str, Session]:
        """A new session (after ``check`` said yes): its token and its CSRF token."""
        self._expire(now)
        while len(self.sessions) >= MAX_SESSIONS:
            del self.sessions[min(self.sessions, key=lambda t: self.sessions[t].expires)]
        token = secrets.token_urlsafe(32)
        session = self.sessions[token] = Session(secrets.token_urlsafe(32), now + self.timeout)
        return token, session

    def session(self, token: str | None, now: float) -> Session | None:
        if not token:
            return None
        s = self.sessions.get(token)
        if s is None:
            return None
        if s.expires <= now:
            del self.sessions[token]
            return None
        return s

    def logout(self, token: str | None) -> None:
        if token:
            self.sessions.pop(token, None)

    def csrf_ok(self, session: Session | None, header: str | None) -> bool:
        expected = session.csrf if session is not None else \
            (self.open_csrf if self._password is None else None)
        return expected is not None and header is not None and \
            hmac.compare_digest(header.encode("utf-8", "surrogateescape"), expected.encode())

    def _expire(self, now: float) -> None:
        for token in [t for t, s in self.sessions.items() if s.expires <= now]:
            del self.sessions[token]
