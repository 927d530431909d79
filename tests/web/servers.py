"""A web server over a fake daemon, served for real on 127.0.0.1 by a loop in a thread,
and a tiny HTTP client (urllib, no redirects followed, cookies kept)."""

from __future__ import annotations

import asyncio
import base64
import copy
import http.client
import json
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from kembar.config.web import WebConfig
from kembar.errors import DaemonNotRunning
from kembar.web.server import WebServer
from kembar.web.snapshot import Backend
from tests.web.samples import DISK, STATUS


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class FakeDaemon:
    """Records what the web server asked; its status is the sample's."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    events: int = 0
    status: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(STATUS))

    def backend(self) -> Backend:
        def standby(on: bool) -> str:
            self.calls.append(("standby", on))
            self.status["manager"]["standby"] = on
            return f"node1: standby {'on' if on else 'off'}"

        def takeover(groups: list[str]) -> str:
            self.calls.append(("takeover", groups))
            return f"node1 takes over {', '.join(groups)}"

        return Backend(node="node1", run_dir="/nonexistent", disks=["r0", "r1"],
                       status=lambda: self.status, version=lambda: self.events,
                       standby=standby, takeover=takeover)


class Served:
    def __init__(self, cfg: WebConfig, daemon: FakeDaemon) -> None:
        self.daemon = daemon
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="kb-web-test",
                                       daemon=True)
        self.thread.start()
        self.server = WebServer(cfg, cfg.binds(), daemon.backend(), "kb")
        self.server.snapshots._ask = _ask
        self.listening = self._run(self.server.start())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stop(self) -> None:
        try:
            self._run(self.server.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def _ask(disk: str, run_dir: str) -> dict[str, Any]:
    """r0 answers with the sample's status; r1 is down."""
    if disk != "r0":
        raise DaemonNotRunning(f"disk {disk} is not up on this node")
    return copy.deepcopy(DISK)


class Client:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 10
                ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            h = dict(headers or {})
            if self.cookies:
                h.setdefault("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            for key, value in r.getheaders():
                if key.lower() == "set-cookie":
                    name, _, rest = value.partition("=")
                    val = rest.split(";", 1)[0]
                    if val in ("", '""'):
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = val
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
        return self.request("GET", path, **kw)

    def login(self, password: str) -> int:
        body = urllib.parse.urlencode({"password": password}).encode()
        status, _, _ = self.request("POST", "/login", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded"})
        return status

    def post_json(self, path: str, doc: Any, csrf: str | None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if csrf is not None:
            headers["X-Kembar-CSRF"] = csrf
        status, _, data = self.request("POST", path, body=json.dumps(doc).encode(),
                                       headers=headers)
        return status, json.loads(data) if data.startswith(b"{") else data

    def first_event(self, path: str = "/events", timeout: float = 10) -> tuple[int, str]:
        """The status code and the first ``status`` event of a server-sent event stream."""
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            # HTTP/1.0: the stream comes as it is, not in chunks
            sock.sendall((f"GET {path} HTTP/1.0\r\nHost: {self.host}:{self.port}\r\n"
                          "Accept: text/event-stream\r\n"
                          + (f"Cookie: {cookie}\r\n" if cookie else "") + "\r\n").encode())
            buf, mark = b"", b"event: status\ndata: "
            while mark not in buf or b"\n\n" not in buf[buf.index(mark):]:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
            status = int(buf.split(b" ", 2)[1])
            return status, buf.decode("utf-8", "replace")
        finally:
            sock.close()


def basic(password: str, user: str = "prometheus") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def csrf_of(page: bytes) -> str:
    text = page.decode()
    start = text.index('name="kembar-csrf" content="') + len('name="kembar-csrf" content="')
    return text[start:text.index('"', start)]
