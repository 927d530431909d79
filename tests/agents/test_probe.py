"""The ``probe`` agent against a local HTTP server on 127.0.0.1, and a command probe."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from typing import Any, Iterator

import pytest

from kembar.agents import AgentError, make_agent
from kembar.agents.base import Agent
from kembar.config.groups import ProbeResource


class Handler(http.server.BaseHTTPRequestHandler):
    CODES = {"/": 200, "/moved": 302, "/missing": 404, "/broken": 500}

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        code = self.CODES.get(self.path, 404)
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "/missing")  # not followed: 302 itself is "up"
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def serve(port: int = 0) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def server() -> Iterator[str]:
    srv = serve()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def probe(url: str | None = None, command: list[str] | None = None) -> Agent:
    return make_agent(ProbeResource.model_validate(dict(type="probe", url=url, command=command)))


def test_http_up(server: str) -> None:
    assert probe(server + "/").monitor(2) is True
    assert probe(server + "/moved").monitor(2) is True
    probe(server + "/").start(2)


@pytest.mark.parametrize("path, code", [("/missing", 404), ("/broken", 500)])
def test_http_error_status_fails(server: str, path: str, code: int) -> None:
    with pytest.raises(AgentError, match=f"probe failed: .*{path}: HTTP {code}"):
        probe(server + path).monitor(2)


def test_nothing_listening_fails_and_start_gives_up_at_the_timeout() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(AgentError, match="probe failed: .*refused"):
        probe(url).monitor(2)
    t0 = time.monotonic()
    with pytest.raises(AgentError, match=r"probe failed for 0\.5s"):
        probe(url).start(0.5)
    assert time.monotonic() - t0 < 1.5


def test_start_waits_until_the_probe_passes() -> None:
    port = free_port()
    servers: list[http.server.ThreadingHTTPServer] = []
    later = threading.Timer(0.5, lambda: servers.append(serve(port)))
    later.start()
    try:
        t0 = time.monotonic()
        probe(f"http://127.0.0.1:{port}/").start(10)
        assert 0.4 < time.monotonic() - t0 < 5
    finally:
        later.join()
        for srv in servers:
            srv.shutdown()
            srv.server_close()


def test_command_probe() -> None:
    assert probe(command=["true"]).monitor(2) is True
    with pytest.raises(AgentError, match="probe failed: exit 1"):
        probe(command=["false"]).monitor(2)
    with pytest.raises(AgentError, match="probe failed: .*kb-agt-nothing not found"):
        probe(command=["/nonexistent/kb-agt-nothing"]).monitor(2)
    probe(command=["false"]).stop(1)  # stop does nothing, and never fails
