"""The web server over a fake daemon, for real over HTTP on 127.0.0.1: login and sessions,
Basic auth on /metrics, CSRF on the actions, the Host check, the live stream, and no
secret in anything it sends."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kembar.config.web import WebConfig
from kembar.web.auth import MAX_FAILURES
from tests.web.servers import Client, FakeDaemon, Served, basic, csrf_of, free_port

PASSWORD = "kb-web-test-password-0123"


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., tuple[Served, Client]]]:
    made: list[Served] = []

    def make(password: bool = True) -> tuple[Served, Client]:
        port = free_port()
        doc: dict[str, object] = {"listen": [f"127.0.0.1:{port}"]}
        if password:
            pw = tmp_path / "kb-web.password"
            pw.write_text(PASSWORD + "\n")
            os.chmod(pw, 0o600)
            doc["password_file"] = str(pw)
        served = Served(WebConfig.model_validate(doc), FakeDaemon())
        made.append(served)
        assert served.listening == [f"127.0.0.1:{port}"]
        return served, Client("127.0.0.1", port)

    yield make
    for s in made:
        s.stop()


def test_login_session_and_logout(serve: Callable[..., tuple[Served, Client]]) -> None:
    served, c = serve()
    status, headers, _ = c.get("/")
    assert status == 303 and headers["location"] == "/login"
    status, headers, page = c.get("/login")
    assert status == 200 and b'name="password"' in page
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert c.login("wrong password!") == 401 and "kembar_session" not in c.cookies
    assert c.login(PASSWORD) == 303
    status, headers, page = c.get("/")
    assert status == 200 and b"<title>kembar \xc2\xb7 kb \xc2\xb7 node1</title>" in page
    csrf = csrf_of(page)
    assert len(csrf) > 30 and PASSWORD.encode() not in page
    status, doc = c.post_json("/api/standby", {"on": True}, csrf)
    assert status == 200 and doc == {"ok": True, "message": "node1: standby on"}
    assert served.daemon.calls == [("standby", True)]
    assert c.request("POST", "/logout", headers={"X-Kembar-CSRF": csrf})[0] == 303
    assert c.get("/")[0] == 303 and c.get("/api/status")[0] == 401


def test_actions_need_the_csrf_token(serve: Callable[..., tuple[Served, Client]]) -> None:
    served, c = serve()
    assert c.post_json("/api/takeover", {}, None)[0] == 401  # not logged in
    c.login(PASSWORD)
    csrf = csrf_of(c.get("/")[2])
    for token in (None, "forged", served.server.auth.open_csrf):
        status, doc = c.post_json("/api/takeover", {"groups": ["web"]}, token)
        assert status == 403 and "X-Kembar-CSRF" in doc["error"]
    assert served.daemon.calls == []
    status, doc = c.post_json("/api/takeover", {"groups": ["web"]}, csrf)
    assert status == 200 and served.daemon.calls == [("takeover", ["web"])]
    status, doc = c.post_json("/api/takeover", {"groups": "web"}, csrf)
    assert status == 409 and doc["error"] == "groups: a list of group names"
    status, doc = c.post_json("/api/standby", {"on": "yes"}, csrf)
    assert status == 409 and served.daemon.calls == [("takeover", ["web"])]
    status, _, data = c.request("POST", "/api/standby", body=b"{not json",
                                headers={"X-Kembar-CSRF": csrf})
    assert status == 400 and b"bad request" in data


def test_metrics_take_basic_auth(serve: Callable[..., tuple[Served, Client]]) -> None:
    _, c = serve()
    status, headers, _ = c.get("/metrics")
    assert status == 401 and headers["www-authenticate"].startswith('Basic realm="kembar"')
    assert c.get("/metrics", headers=basic("not-the-password"))[0] == 401
    status, headers, data = c.get("/metrics", headers=basic(PASSWORD))
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    names = {f.name for f in text_string_to_metric_families(data.decode())}
    assert {"kembar_node_up", "kembar_disk_sent_bytes", "kembar_disk_write_latency_seconds"} \
        <= names
    assert PASSWORD.encode() not in data
    # a logged-in session may read them too
    c.login(PASSWORD)
    assert c.get("/metrics")[0] == 200


def test_wrong_passwords_are_throttled(serve: Callable[..., tuple[Served, Client]]) -> None:
    _, c = serve()
    for _ in range(MAX_FAILURES):
        assert c.get("/metrics", headers=basic("guess"))[0] == 401
    assert c.get("/metrics", headers=basic(PASSWORD))[0] == 401  # locked for a minute
    assert c.login(PASSWORD) == 429


def test_no_password_means_no_login_but_still_csrf(
        serve: Callable[..., tuple[Served, Client]]) -> None:
    served, c = serve(password=False)
    status, _, page = c.get("/")
    assert status == 200 and b'id="logout" hidden' in page
    assert c.get("/login")[0] == 303
    assert c.get("/metrics")[0] == 200
    assert c.post_json("/api/standby", {"on": False}, None)[0] == 403
    assert c.post_json("/api/standby", {"on": False}, csrf_of(page))[0] == 200
    assert served.daemon.calls == [("standby", False)]


def test_other_host_names_are_refused(serve: Callable[..., tuple[Served, Client]]) -> None:
    """A page of another site whose name an attacker points at 127.0.0.1 (DNS rebinding)
    sends its own name as Host: refused."""
    _, c = serve(password=False)
    status, _, data = c.get("/", headers={"Host": f"evil.example:{c.port}"})
    assert status == 421 and b"only to its own addresses" in data
    assert c.get("/metrics", headers={"Host": f"localhost:{c.port}"})[0] == 200


def test_the_live_stream(serve: Callable[..., tuple[Served, Client]]) -> None:
    served, c = serve()
    assert c.first_event()[0] == 401
    c.login(PASSWORD)
    status, text = c.first_event()
    assert status == 200 and "retry: 1000" in text
    data = text.split("event: status\ndata: ", 1)[1].split("\n\n", 1)[0]
    snap = json.loads(data)
    assert snap["node"] == "node1" and snap["status"]["nodes"]["node2"]["state"] == "dead"
    assert snap["disks"]["r0"]["role"] == "Primary"
    assert PASSWORD not in text


def test_static_files(serve: Callable[..., tuple[Served, Client]]) -> None:
    _, c = serve(password=False)
    status, headers, data = c.get("/static/dashboard.js")
    assert status == 200 and headers["content-type"].startswith("application/javascript")
    assert b"EventSource" in data
    assert c.get("/static/dashboard.css")[0] == 200
    assert c.get("/static/login.html")[0] == 404
    assert c.get("/static/..%2fserver.py")[0] == 404


def test_an_address_that_cannot_be_bound_is_skipped(tmp_path: Path) -> None:
    port = free_port()
    cfg = WebConfig.model_validate({"listen": [f"127.0.0.1:{port}"]})
    daemon = FakeDaemon()
    first = Served(cfg, daemon)
    try:
        second = Served(cfg, daemon)  # the port is taken: logged, not fatal
        try:
            assert second.listening == []
        finally:
            second.stop()
    finally:
        first.stop()
