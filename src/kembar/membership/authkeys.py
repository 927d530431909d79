"""The shared heartbeat keys: Heartbeat's ``authkeys`` file, parsed strictly.

Format (Heartbeat's ``authkeys(5)``)::

    # comment lines start with '#'; blank lines are ignored
    auth 2                   # the key that signs outgoing packets (exactly one line)
    1 sha1 SomeSharedSecret
    2 sha256 a longer secret, spaces allowed

Invariants:
- A key line is ``N METHOD SECRET``: ``N`` from 1 to 15, unique; ``METHOD`` one of
  ``sha256``, ``sha1``, ``md5`` (HMAC with that digest); ``SECRET`` is the rest of the
  line, stripped (it may contain spaces and ``#``: only whole lines are comments).
- Every listed key is accepted on input; only the ``auth`` key signs (key rotation).
- Heartbeat's ``crc`` method is refused: it authenticates nothing.
- No error message, ``repr`` or ``str`` ever contains a secret: a token that might be the
  secret (an unknown method, a malformed line) is described, never quoted.
- ``load_authkeys`` refuses a file that group or others may read or write.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass

from kembar.errors import ConfigError

METHODS = ("sha256", "sha1", "md5")  # preferred first
MIN_INDEX = 1
MAX_INDEX = 15
MAX_FILE_SIZE = 64 * 1024

_INDEX_RE = re.compile(r"[0-9]{1,3}")
# Digest names worth quoting back in "not supported" (they cannot be mistaken for a secret).
_OTHER_DIGESTS = frozenset({
    "sha224", "sha384", "sha512", "sha512_224", "sha512_256", "sha3_224", "sha3_256",
    "sha3_384", "sha3_512", "blake2b", "blake2s", "md4", "ripemd160", "sm3", "shake_128",
    "shake_256",
})
_CRC_HINT = ("crc adds no security: use sha256 with a secret instead "
             "(e.g. '1 sha256 ' followed by the output of 'openssl rand -hex 32')")


@dataclass(frozen=True)
class Key:
    """One shared key: HMAC with ``method`` keyed by ``secret``."""

    index: int
    method: str
    secret: bytes

    def __post_init__(self) -> None:
        if not (isinstance(self.index, int) and MIN_INDEX <= self.index <= MAX_INDEX):
            raise ValueError(f"key index must be from {MIN_INDEX} to {MAX_INDEX}")
        if self.method not in METHODS:
            raise ValueError(f"key {self.index}: method must be one of {', '.join(METHODS)}")
        if not isinstance(self.secret, bytes) or not self.secret:
            raise ValueError(f"key {self.index}: the secret must be non-empty bytes")

    def __repr__(self) -> str:
        return f"Key(index={self.index}, method={self.method!r}, secret=<hidden>)"

    __str__ = __repr__


@dataclass(frozen=True)
class AuthKeys:
    """The key ring: ``keys`` by index, ``active`` the index of the signing key."""

    active: int
    keys: dict[int, Key]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("no keys")
        for index, key in self.keys.items():
            if not isinstance(key, Key) or key.index != index:
                raise ValueError(f"keys[{index}] is not the Key with index {index}")
        if self.active not in self.keys:
            raise ValueError(f"the active key {self.active} is not among the keys")

    @property
    def sign_key(self) -> Key:
        """The key that signs outgoing packets."""
        return self.keys[self.active]

    def __repr__(self) -> str:
        keys = ", ".join(f"{i}: {self.keys[i]!r}" for i in sorted(self.keys))
        return f"AuthKeys(active={self.active}, keys={{{keys}}})"

    __str__ = __repr__


def _fail(source: str, line: int | None, problem: str) -> ConfigError:
    where = f"{source}: line {line}: " if line is not None else f"{source}: "
    return ConfigError(where + problem)


def _parse_index(token: str) -> int | None:
    if not _INDEX_RE.fullmatch(token):
        return None
    index = int(token)
    return index if MIN_INDEX <= index <= MAX_INDEX else None


def parse_authkeys(text: str, source: str = "<string>") -> AuthKeys:
    """Parse the text of an authkeys file; ``ConfigError`` naming ``source`` and the line."""
    active: int | None = None
    auth_line = 0
    keys: dict[int, Key] = {}
    key_lines: dict[int, int] = {}
    for n, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split(None, 2)
        if tokens[0] == "auth":
            if auth_line:
                raise _fail(source, n, f"a second 'auth' line (the first is line {auth_line})")
            index = _parse_index(tokens[1]) if len(tokens) == 2 else None
            if index is None:
                raise _fail(source, n, f"expected 'auth N' with N from {MIN_INDEX} to "
                                       f"{MAX_INDEX} (the key that signs outgoing packets)")
            active, auth_line = index, n
            continue
        index = _parse_index(tokens[0])
        if index is None:
            # The token is not quoted: a stray line may be the secret itself.
            raise _fail(source, n, f"expected 'auth N' or 'N METHOD SECRET' with N from "
                                   f"{MIN_INDEX} to {MAX_INDEX}")
        if index in keys:
            raise _fail(source, n, f"duplicate key index {index} (first defined on line "
                                   f"{key_lines[index]})")
        if len(tokens) < 2:
            raise _fail(source, n, f"key {index}: missing method and secret "
                                   f"(expected '{index} sha256 SECRET')")
        method = tokens[1].lower()
        if method == "crc":
            raise _fail(source, n, f"key {index}: {_CRC_HINT}")
        if method not in METHODS:
            what = f"method {method!r} is not supported" if method in _OTHER_DIGESTS \
                else "unknown method (not shown: it may be a secret)"
            raise _fail(source, n, f"key {index}: {what}; use one of {', '.join(METHODS)}")
        secret = tokens[2].strip() if len(tokens) == 3 else ""
        if not secret:
            raise _fail(source, n, f"key {index}: method {method} needs a secret "
                                   f"(expected '{index} {method} SECRET')")
        try:
            secret_bytes = secret.encode("utf-8")
        except UnicodeEncodeError:
            raise _fail(source, n, f"key {index}: the secret is not valid text") from None
        keys[index] = Key(index, method, secret_bytes)
        key_lines[index] = n
    if not keys:
        raise _fail(source, None, "no keys (expected lines such as 'auth 1' and "
                                  "'1 sha256 SECRET')")
    if active is None:
        raise _fail(source, None, "no 'auth N' line choosing the key that signs outgoing "
                                  f"packets (keys: {', '.join(map(str, sorted(keys)))})")
    if active not in keys:
        raise _fail(source, auth_line, f"'auth {active}' names no key (keys: "
                                       f"{', '.join(map(str, sorted(keys)))})")
    return AuthKeys(active, keys)


def load_authkeys(path: str | os.PathLike[str]) -> AuthKeys:
    """Read and parse an authkeys file that only its owner may read and write."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the key file: "
                          f"{exc.strerror or type(exc).__name__}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{name}: the key file is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise ConfigError(f"{name}: mode {mode:04o} lets group or others read or write "
                              f"the key file; run: chmod 600 {name}")
        if st.st_size > MAX_FILE_SIZE:
            raise ConfigError(f"{name}: the key file is larger than {MAX_FILE_SIZE} bytes")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_SIZE:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_FILE_SIZE:
            raise ConfigError(f"{name}: the key file is larger than {MAX_FILE_SIZE} bytes")
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the key file: "
                          f"{exc.strerror or type(exc).__name__}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{name}: line {line}: not UTF-8 text") from None
    return parse_authkeys(text, name)


def _representable(secret: bytes) -> bool:
    try:
        text = secret.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(text) and "\n" not in text and text.strip() == text


def format_authkeys(keys: AuthKeys) -> str:
    """The authkeys text for ``keys`` (``parse_authkeys`` gives ``keys`` back).

    ``ValueError`` (naming the key, not the secret) if a secret cannot be written on one
    line: not UTF-8, a newline, or whitespace at either end."""
    lines = ["# kembar heartbeat keys: keep this file mode 600 (owner only).",
             f"auth {keys.active}"]
    for index in sorted(keys.keys):
        key = keys.keys[index]
        if not _representable(key.secret):
            raise ValueError(f"key {index}: the secret cannot be written in an authkeys file "
                             "(not UTF-8, a newline, or whitespace at either end)")
        lines.append(f"{index} {key.method} {key.secret.decode('utf-8')}")
    return "\n".join(lines) + "\n"
