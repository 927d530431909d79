"""A daemon's membership on loopback for tests: node1 on 127.0.0.1 hears "node2" (a test's
socket, or a second daemon) on 127.0.0.2, with a written authkeys file."""

from __future__ import annotations

import socket
from pathlib import Path


def authkeys_file(tmp: Path, text: str) -> Path:
    keys = tmp / "authkeys"
    keys.write_text(text)
    keys.chmod(0o600)
    return keys


def lo_membership(port: int, keys: Path, deadtime: str = "2s", initdead: str = "10s",
                  keepalive: str = "100ms") -> str:
    """The ``[membership]`` table (ucast on lo to 127.0.0.2, no real-time priority)."""
    return f"""
[membership]
keepalive = "{keepalive}"
deadtime = "{deadtime}"
initdead = "{initdead}"
port = {port}
authkeys = "{keys}"
realtime = false
[[membership.media]]
type = "ucast"
interface = "lo"
peer = "127.0.0.2"
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
