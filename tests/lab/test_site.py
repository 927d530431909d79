"""The demo shop: the WSGI app called directly, then one real gunicorn server."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.types import WSGIApplication
from wsgiref.util import setup_testing_defaults

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from kembar.lab.site.__main__ import main
from kembar.lab.site.app import DEFAULT_PRODUCTS, connect, init_site, make_app

HOST = socket.gethostname()
FOOTER = re.compile(
    rf"served by {re.escape(HOST)} at \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{3}} UTC"
)
JSON = "application/json"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    app: WSGIApplication,
    method: str,
    path: str,
    form: dict[str, str] | None = None,
    *,
    body: bytes | None = None,
    accept: str | None = None,
    content_type: str = "application/x-www-form-urlencoded",
) -> Reply:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path}
    if form is not None:
        body = urllib.parse.urlencode(form).encode("ascii")
    if body is not None:
        environ.update(
            CONTENT_TYPE=content_type, CONTENT_LENGTH=str(len(body)), **{"wsgi.input": io.BytesIO(body)}
        )
    if accept is not None:
        environ["HTTP_ACCEPT"] = accept
    setup_testing_defaults(environ)
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: object = None
    ) -> Callable[[bytes], object]:
        started.append((status, headers))
        return lambda data: None

    data = b"".join(app(environ, start_response))
    status, header_list = started[0]
    headers = dict(header_list)
    assert headers["X-Served-By"] == HOST  # on every response, whatever its kind
    if method != "HEAD":
        assert int(headers["Content-Length"]) == len(data)
    return Reply(int(status.split()[0]), headers, data)


def count(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "shop.db") as conn:
        n: int = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    return n


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    init_site(str(tmp_path))
    return tmp_path


@pytest.fixture
def shop(data_dir: Path) -> WSGIApplication:
    return make_app(str(data_dir))


# --------------------------------------------------------------------------- data


def test_init_writes_a_catalogue_once_and_a_durable_database(tmp_path: Path) -> None:
    init_site(str(tmp_path))
    catalogue = json.loads((tmp_path / "catalogue.json").read_text())
    assert catalogue["products"] == DEFAULT_PRODUCTS and len(DEFAULT_PRODUCTS) == 5
    assert set(DEFAULT_PRODUCTS[0]) == {"id", "name", "price_cents", "description"}
    edited = {"products": [{"id": 7, "name": "Edited", "price_cents": 1, "description": "x"}]}
    (tmp_path / "catalogue.json").write_text(json.dumps(edited))
    init_site(str(tmp_path))  # idempotent: the existing catalogue is kept
    assert json.loads((tmp_path / "catalogue.json").read_text()) == edited
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    conn = connect(str(tmp_path))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 3  # EXTRA
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    finally:
        conn.close()


def test_an_uninitialised_directory_is_unavailable_and_left_alone(tmp_path: Path) -> None:
    app = make_app(str(tmp_path))  # e.g. the replicated disk is not mounted here
    assert call(app, "GET", "/health").status == 503
    assert call(app, "GET", "/orders.json").status == 503
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- pages


def test_catalogue_lists_every_product_with_an_order_form(shop: WSGIApplication) -> None:
    reply = call(shop, "GET", "/")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/html")
    for product in DEFAULT_PRODUCTS:
        assert product["name"] in reply.text
        assert f'name="product" value="{product["id"]}"' in reply.text
    assert reply.text.count('action="/order"') == len(DEFAULT_PRODUCTS)
    assert 'name="quantity"' in reply.text and 'name="customer"' in reply.text
    assert FOOTER.search(reply.text)
    head = call(shop, "HEAD", "/")
    assert head.status == 200 and head.body == b""


def test_an_order_is_taken_and_listed(shop: WSGIApplication) -> None:
    reply = call(shop, "POST", "/order", {"product": "2", "quantity": "3", "customer": "Ann"}, accept=JSON)
    assert reply.status == 201 and reply.headers["Content-Type"] == JSON
    assert reply.json() == {"id": 1, "node": HOST}
    reply = call(shop, "POST", "/order", {"product": "5", "quantity": "100", "customer": "Budi"})
    assert reply.status == 303 and reply.headers["Location"] == "/orders"

    listing = call(shop, "GET", "/orders.json").json()
    assert listing["node"] == HOST and listing["count"] == 2
    first, second = listing["orders"]
    assert {k: v for k, v in first.items() if k != "created"} == {
        "id": 1, "product_id": 2, "quantity": 3, "customer": "Ann", "node": HOST
    }
    assert (second["id"], second["product_id"], second["quantity"], second["customer"]) == (2, 5, 100, "Budi")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["created"])

    page = call(shop, "GET", "/orders")
    assert page.status == 200 and FOOTER.search(page.text)
    assert page.text.index("Budi") < page.text.index("Ann")  # newest first
    assert "Heartbeat Desk Lamp" in page.text and "€126,00" in page.text


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"quantity": "1", "customer": "Ann"}, "missing field 'product'"),
        ({"product": "9", "quantity": "1", "customer": "Ann"}, "no such product"),
        ({"product": "two", "quantity": "1", "customer": "Ann"}, "no such product"),
        ({"product": "1", "quantity": "0", "customer": "Ann"}, "quantity"),
        ({"product": "1", "quantity": "101", "customer": "Ann"}, "quantity"),
        ({"product": "1", "quantity": "1.5", "customer": "Ann"}, "quantity"),
        ({"product": "1", "quantity": " 3", "customer": "Ann"}, "quantity"),
        ({"product": "1", "quantity": "3"}, "missing field 'customer'"),
        ({"product": "1", "quantity": "3", "customer": ""}, "customer name is required"),
        ({"product": "1", "quantity": "3", "customer": "   "}, "customer name is required"),
        ({"product": "1", "quantity": "3", "customer": "x" * 81}, "at most 80"),
        ({"product": "1", "quantity": "3", "customer": "Ann\nBob"}, "printable"),
        ({"product": "1", "quantity": "3", "customer": "Ann\x00"}, "printable"),
    ],
)
def test_bad_orders_are_rejected_without_a_write(
    shop: WSGIApplication, data_dir: Path, form: dict[str, str], message: str
) -> None:
    as_json = call(shop, "POST", "/order", form, accept=JSON)
    assert as_json.status == 400 and message in as_json.json()["error"]
    as_html = call(shop, "POST", "/order", form)
    assert as_html.status == 400 and as_html.headers["Content-Type"].startswith("text/html")
    assert FOOTER.search(as_html.text)
    assert count(data_dir) == 0


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"product=1&quantity=1&customer=%FF", "application/x-www-form-urlencoded", "UTF-8"),
        (b"product=1&quantity=1&customer=\xc3\xa9", "application/x-www-form-urlencoded", "UTF-8"),
        (b"product=1&quantity=1&customer=A&customer=B", "application/x-www-form-urlencoded", "more than once"),
        (b'{"product": 1}', "application/json", "x-www-form-urlencoded"),
        (b"customer=" + b"a" * 20000, "application/x-www-form-urlencoded", "at most"),
    ],
)
def test_malformed_forms_are_rejected_without_a_write(
    shop: WSGIApplication, data_dir: Path, body: bytes, content_type: str, message: str
) -> None:
    reply = call(shop, "POST", "/order", body=body, content_type=content_type, accept=JSON)
    assert reply.status == 400 and message in reply.json()["error"]
    assert count(data_dir) == 0


def _valid_customer(name: str) -> bool:
    return name.strip() != "" and len(name) <= 80 and name.isprintable()


def _valid_quantity(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 3 and 1 <= int(text) <= 100


_PRINTABLE = st.characters(categories=("L", "M", "N", "P", "S"))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    customer=st.one_of(
        st.text(_PRINTABLE, min_size=1, max_size=80),  # mostly valid
        st.text(max_size=90),  # anything, control and format characters included
        st.text(min_size=78, max_size=83),  # around the length limit
    ),
    quantity=st.one_of(st.integers(1, 100).map(str), st.integers(-3, 103).map(str), st.text(max_size=4)),
)
@example(customer="x" * 80, quantity="100")
@example(customer="x" * 81, quantity="1")
@example(customer=" Ann ", quantity="007")
@example(customer="Åsa 😀 <b>&amp;", quantity="1")
@example(customer="tab\there", quantity="1")
@example(customer="Ann", quantity="٣")  # an Arabic-Indic three: a digit, but not ASCII
def test_any_order_is_either_stored_exactly_or_rejected_untouched(
    shop: WSGIApplication, data_dir: Path, customer: str, quantity: str
) -> None:
    before = count(data_dir)
    reply = call(shop, "POST", "/order", {"product": "1", "quantity": quantity, "customer": customer}, accept=JSON)
    if _valid_customer(customer) and _valid_quantity(quantity):
        event("accepted")
        assert reply.status == 201, reply.body
        order_id = reply.json()["id"]
        orders = {o["id"]: o for o in call(shop, "GET", "/orders.json").json()["orders"]}
        assert orders[order_id]["customer"] == customer
        assert orders[order_id]["quantity"] == int(quantity)
        assert count(data_dir) == before + 1
    else:
        event("rejected")
        assert reply.status == 400 and reply.json()["error"]
        assert count(data_dir) == before


def test_user_input_is_escaped_in_html(shop: WSGIApplication) -> None:
    evil = "<script>alert('x')</script>"
    assert call(shop, "POST", "/order", {"product": "1", "quantity": "1", "customer": evil}).status == 303
    page = call(shop, "GET", "/orders").text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page and "<script>" not in page
    error = call(shop, "POST", "/order", {"product": "<img src=x>", "quantity": "1", "customer": "a"})
    assert error.status == 400 and "<img" not in error.text and "&lt;img" in error.text


def test_unknown_paths_and_wrong_methods(shop: WSGIApplication) -> None:
    assert call(shop, "GET", "/nope").status == 404
    assert call(shop, "GET", "/nope", accept=JSON).json()["error"] == "no such page"
    reply = call(shop, "GET", "/order")
    assert reply.status == 405 and reply.headers["Allow"] == "POST"
    reply = call(shop, "POST", "/", {"product": "1"})
    assert reply.status == 405 and reply.headers["Allow"] == "GET, HEAD"
    assert call(shop, "DELETE", "/orders.json", accept=JSON).status == 405


def test_health_fails_when_the_database_is_garbage(shop: WSGIApplication, data_dir: Path) -> None:
    reply = call(shop, "GET", "/health")
    assert (reply.status, reply.body) == (200, f"ok {HOST}".encode())
    (data_dir / "shop.db").write_bytes(b"this is not a database\n" * 512)
    reply = call(shop, "GET", "/health")
    assert reply.status == 503 and reply.text.startswith(f"unavailable {HOST}")
    assert call(shop, "GET", "/orders.json", accept=JSON).status == 503
    reply = call(shop, "POST", "/order", {"product": "1", "quantity": "1", "customer": "Ann"})
    assert reply.status == 503
    (data_dir / "shop.db").unlink()
    assert call(shop, "GET", "/health").status == 503
    assert not (data_dir / "shop.db").exists()  # a missing database is not silently recreated


# --------------------------------------------------------------------------- command line


def test_serve_without_a_data_dir_fails_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kembar.lab.site", "serve", "--data", str(tmp_path / "missing"),
         "--bind", "127.0.0.1:1"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kembar-site: error: ") and "missing" in lines[0]


@pytest.mark.parametrize(
    "bind", ["localhost", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", ":8080", "127.0.0.1:80x", "a b:80"]
)
def test_serve_rejects_a_malformed_bind(tmp_path: Path, bind: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--data", str(tmp_path), "--bind", bind])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("kembar-site: error: --bind")


@pytest.mark.parametrize("option", [["--graceful-timeout", "-1"],
                                    ["--graceful-timeout", "soon"], ["--workers", "0"]])
def test_serve_rejects_bad_numbers(tmp_path: Path, option: list[str],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--data", str(tmp_path), "--bind", "127.0.0.1:8080", *option])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("kembar-site: error: ") and option[0] in err[0]


def test_init_only_initialises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["init", "--data", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalogue.json", "shop.db"]
    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit) as exit_:
        main(["init", "--data", str(tmp_path / "afile")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("kembar-site: error: ")


# --------------------------------------------------------------------------- a real server

_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the gunicorn master and its workers, by PID: the node lost power."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGSTOP)  # no new workers while we look for them
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(10)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[[Path, int], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(data: Path, port: int) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"server-{len(started)}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "kembar.lab.site", "serve", "--data", str(data),
             "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
        )
        log.close()
        started.append(proc)
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}: {Path(log.name).read_text()}")
            try:
                with _LOCAL.open(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        return proc
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not become healthy: {Path(log.name).read_text()}")
            time.sleep(0.05)

    yield start
    for proc in started:
        _kill(proc)


def _post_order(port: int, customer: str) -> tuple[int, str, str]:
    form = urllib.parse.urlencode({"product": "3", "quantity": "2", "customer": customer}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/order", data=form, headers={"Accept": JSON}, method="POST"
    )
    with _LOCAL.open(request, timeout=10) as r:
        assert r.status == 201
        body = json.load(r)
        return body["id"], body["node"], r.headers["X-Served-By"]


def _orders(port: int) -> tuple[dict[str, Any], str]:
    with _LOCAL.open(f"http://127.0.0.1:{port}/orders.json", timeout=10) as r:
        return json.load(r), r.headers["X-Served-By"]


def test_orders_survive_a_killed_server(
    tmp_path: Path, servers: Callable[[Path, int], subprocess.Popen[bytes]]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    port = _free_port()
    first = servers(data, port)

    placed = [_post_order(port, f"customer {i}") for i in range(20)]
    assert [p[0] for p in placed] == list(range(1, 21))
    assert all(node == HOST and served_by == HOST for _, node, served_by in placed)
    before, served_by = _orders(port)
    assert served_by == HOST and before["node"] == HOST and before["count"] == 20
    assert [o["customer"] for o in before["orders"]] == [f"customer {i}" for i in range(20)]

    _kill(first)
    servers(data, port)  # the same data and address, as after a failover

    after, served_by = _orders(port)
    assert served_by == HOST and after["orders"] == before["orders"]
    assert _post_order(port, "after the crash")[0] == 21
