"""The demo shop as a plain WSGI application (standard library only).

Its data lives in one directory, on the replicated filesystem in the lab:

* ``catalogue.json`` -- ``{"products": [{"id", "name", "price_cents", "description"}]}``,
  written once by :func:`init_site`;
* ``shop.db`` -- SQLite, table ``orders(id, product_id, quantity, customer, created, node)``.

SQLite is opened afresh for every request, in ``journal_mode=DELETE`` with
``synchronous=EXTRA``: each order is a single auto-committed INSERT whose
database, journal and directory are fsynced before the response is sent, so an
acknowledged order survives a power cut of the node that took it.

Every response carries ``X-Served-By: <hostname>``, and every HTML page ends
with "served by <hostname> at <UTC time>", so a failover is visible.
"""

from __future__ import annotations

import datetime
import html
import json
import os
import re
import socket
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

CATALOGUE = "catalogue.json"
DATABASE = "shop.db"
MAX_BODY = 16 * 1024
MAX_CUSTOMER = 80
MAX_QUANTITY = 100
ORDERS_SHOWN = 200

DEFAULT_PRODUCTS: list[dict[str, Any]] = [
    {"id": 1, "name": "Twin Mug Set", "price_cents": 1850,
     "description": "Two stoneware mugs, one for each node. Coffee stays hot on failover."},
    {"id": 2, "name": "Heartbeat Desk Lamp", "price_cents": 4200,
     "description": "Blinks once a second and stays lit when its twin goes dark."},
    {"id": 3, "name": "Mirror Notebook", "price_cents": 950,
     "description": "A5, dotted, 160 pages. Every page is written twice."},
    {"id": 4, "name": "Failover Umbrella", "price_cents": 2900,
     "description": "A spare canopy opens by itself if the first one fails."},
    {"id": 5, "name": "Split-Brain Puzzle", "price_cents": 1500,
     "description": "A 500-piece jigsaw with two correct solutions. Do not fence."},
]

SCHEMA = """CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY,
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    customer TEXT NOT NULL,
    created TEXT NOT NULL,
    node TEXT NOT NULL
)"""

_PRODUCT_ID = re.compile(r"[0-9]{1,9}")
_QUANTITY = re.compile(r"[0-9]{1,3}")


class CatalogueError(Exception):
    """catalogue.json is missing or malformed."""


class BadRequest(Exception):
    """The client sent something we refuse; the message is shown to the client."""


@dataclass(frozen=True)
class Product:
    id: int
    name: str
    price_cents: int
    description: str


@dataclass
class Response:
    status: str
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- data


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: str, text: str) -> None:
    """Write ``path`` atomically: temp file, fsync, rename, fsync the directory."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def load_catalogue(data_dir: str) -> dict[int, Product]:
    path = os.path.join(data_dir, CATALOGUE)
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        products = [
            Product(int(p["id"]), str(p["name"]), int(p["price_cents"]), str(p["description"]))
            for p in raw["products"]
        ]
    except OSError as e:
        raise CatalogueError(f"cannot read {path}: {e.strerror or e}") from e
    except (ValueError, KeyError, TypeError) as e:
        raise CatalogueError(f"malformed {path}: {e!r}") from e
    return {p.id: p for p in products}


def connect(data_dir: str, *, create: bool = False) -> sqlite3.Connection:
    """Open shop.db durably. Without ``create`` a missing file is an error, not a new shop."""
    path = os.path.abspath(os.path.join(data_dir, DATABASE))
    uri = f"file:{urllib.parse.quote(path)}?mode={'rwc' if create else 'rw'}"
    conn = sqlite3.connect(uri, uri=True, timeout=5.0, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = DELETE").fetchall()
        conn.execute("PRAGMA synchronous = EXTRA")
    except BaseException:
        conn.close()
        raise
    return conn


def init_site(data_dir: str) -> None:
    """Create catalogue.json and the orders table if missing; check both are usable."""
    if not os.path.exists(os.path.join(data_dir, CATALOGUE)):
        text = json.dumps({"products": DEFAULT_PRODUCTS}, indent=2) + "\n"
        _write_durably(os.path.join(data_dir, CATALOGUE), text)
    load_catalogue(data_dir)
    fresh = not os.path.exists(os.path.join(data_dir, DATABASE))
    with closing(connect(data_dir, create=True)) as conn:
        conn.execute(SCHEMA)
    if fresh:
        _fsync_dir(data_dir)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


# --------------------------------------------------------------------------- input


def read_form(environ: WSGIEnvironment) -> dict[str, str]:
    ctype = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if ctype not in ("", "application/x-www-form-urlencoded"):
        raise BadRequest("send the order form as application/x-www-form-urlencoded")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BadRequest("bad Content-Length") from None
    if not 0 <= length <= MAX_BODY:
        raise BadRequest(f"the order form must be at most {MAX_BODY} bytes")
    try:
        body = environ["wsgi.input"].read(length).decode("ascii")
        pairs = urllib.parse.parse_qsl(
            body, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=20
        )
    except UnicodeDecodeError:
        raise BadRequest("the order form is not URL-encoded UTF-8") from None
    except ValueError:
        raise BadRequest("the order form has too many fields") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise BadRequest(f"field {name!r} given more than once")
        form[name] = value
    return form


def validate_order(form: dict[str, str], catalogue: dict[int, Product]) -> tuple[Product, int, str]:
    for name in ("product", "quantity", "customer"):
        if name not in form:
            raise BadRequest(f"missing field {name!r}")
    raw = form["product"]
    if not _PRODUCT_ID.fullmatch(raw) or int(raw) not in catalogue:
        raise BadRequest(f"no such product: {raw[:40]!r}")
    raw = form["quantity"]
    if not _QUANTITY.fullmatch(raw) or not 1 <= int(raw) <= MAX_QUANTITY:
        raise BadRequest(f"quantity must be a whole number from 1 to {MAX_QUANTITY}")
    customer = form["customer"]
    if not customer.strip():
        raise BadRequest("customer name is required")
    if len(customer) > MAX_CUSTOMER:
        raise BadRequest(f"customer name must be at most {MAX_CUSTOMER} characters")
    if not customer.isprintable():
        raise BadRequest("customer name must contain printable characters only")
    return catalogue[int(form["product"])], int(raw), customer


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#f4f6f8;color:#1d2733}
header{background:#1d3557;color:#fff;padding:1rem 2rem;display:flex;align-items:center;gap:1.5rem}
header h1{margin:0;font-size:1.4rem}header a{color:#dbe7f5;text-decoration:none}
.node{margin-left:auto;background:#e63946;border-radius:1rem;padding:.2rem .8rem;font-weight:600}
main{max-width:60rem;margin:1.5rem auto;padding:0 1rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(16rem,1fr));gap:1rem}
.card{background:#fff;border-radius:.5rem;padding:1rem;box-shadow:0 1px 3px #0002}
.card h2{margin:0 0 .3rem;font-size:1.1rem}.price{font-weight:700;color:#1d3557}
form label{display:block;margin:.4rem 0;font-size:.9rem}
input{width:100%;box-sizing:border-box;padding:.3rem}
button{margin-top:.5rem;background:#1d3557;color:#fff;border:0;border-radius:.3rem;padding:.4rem 1rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{padding:.4rem .6rem;border-bottom:1px solid #dde3ea;text-align:left}
.error{background:#ffe3e3;border-left:4px solid #e63946;padding:1rem}
footer{text-align:center;color:#6b7785;font-size:.85rem;margin:2rem 0}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _money(cents: int) -> str:
    return f"€{cents // 100},{cents % 100:02d}" if cents >= 0 else f"-{_money(-cents)}"


def page(title: str, content: str, host: str, root: str) -> bytes:
    now = _now().replace("T", " ").replace("Z", " UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)} · Kembar Twin Goods</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head>
<body><header><h1>Kembar Twin Goods</h1>
<a href="{_e(root)}/">Catalogue</a><a href="{_e(root)}/orders">Orders</a>
<span class="node">{_e(host)}</span></header>
<main><h2>{_e(title)}</h2>
{content}
</main>
<footer>served by {_e(host)} at {_e(now)}</footer></body></html>
""".encode()


def catalogue_html(catalogue: dict[int, Product], root: str) -> str:
    cards = [
        f"""<div class="card"><h2>{_e(p.name)}</h2><p>{_e(p.description)}</p>
<p class="price">{_e(_money(p.price_cents))}</p>
<form method="post" action="{_e(root)}/order">
<input type="hidden" name="product" value="{p.id}">
<label>Quantity <input type="number" name="quantity" min="1" max="{MAX_QUANTITY}" value="1" required></label>
<label>Your name <input type="text" name="customer" maxlength="{MAX_CUSTOMER}" required></label>
<button type="submit">Order</button></form></div>"""
        for p in sorted(catalogue.values(), key=lambda p: p.id)
    ]
    return f'<div class="grid">{"".join(cards)}</div>'


def orders_html(rows: list[sqlite3.Row], total: int, catalogue: dict[int, Product]) -> str:
    if not rows:
        return "<p>No orders yet.</p>"
    lines = []
    for r in rows:
        product = catalogue.get(r["product_id"])
        name = product.name if product else f"product #{r['product_id']}"
        price = _money(product.price_cents * r["quantity"]) if product else "?"
        lines.append(
            f"<tr><td>{_e(r['id'])}</td><td>{_e(r['created'])}</td><td>{_e(name)}</td>"
            f"<td>{_e(r['quantity'])}</td><td>{_e(price)}</td><td>{_e(r['customer'])}</td>"
            f"<td>{_e(r['node'])}</td></tr>"
        )
    shown = f"the newest {len(rows)} of {total}" if total > len(rows) else f"all {total}"
    return (
        f"<p>Showing {shown} orders, newest first.</p><table><tr><th>#</th><th>Placed (UTC)</th>"
        "<th>Product</th><th>Qty</th><th>Total</th><th>Customer</th><th>Taken by</th></tr>"
        + "".join(lines)
        + "</table>"
    )


# --------------------------------------------------------------------------- the app

Handler = Callable[[WSGIEnvironment, str], Response]


class ShopApp:
    """The WSGI callable. Holds nothing but the data directory: all state is on disk."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.routes: dict[str, dict[str, Handler]] = {
            "/": {"GET": self.home},
            "/order": {"POST": self.order},
            "/orders": {"GET": self.orders},
            "/orders.json": {"GET": self.orders_json},
            "/health": {"GET": self.health},
        }

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        host = socket.gethostname()
        method = environ.get("REQUEST_METHOD", "GET").upper()
        try:
            response = self.dispatch(environ, method, host)
        except BadRequest as e:
            response = self.error(environ, host, "400 Bad Request", str(e))
        except (sqlite3.Error, CatalogueError) as e:
            response = self.error(environ, host, "503 Service Unavailable", f"shop data unavailable: {e}")
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            ("X-Served-By", host),
            ("Cache-Control", "no-store"),
            *response.headers,
        ]
        start_response(response.status, headers)
        return [] if method == "HEAD" else [response.body]

    def dispatch(self, environ: WSGIEnvironment, method: str, host: str) -> Response:
        handlers = self.routes.get(environ.get("PATH_INFO") or "/")
        if handlers is None:
            return self.error(environ, host, "404 Not Found", "no such page")
        handler = handlers.get("GET" if method == "HEAD" else method)
        if handler is None:
            allowed = sorted(handlers) + (["HEAD"] if "GET" in handlers else [])
            response = self.error(environ, host, "405 Method Not Allowed", f"use {' or '.join(allowed)}")
            response.headers.append(("Allow", ", ".join(allowed)))
            return response
        return handler(environ, host)

    # ---- helpers

    @staticmethod
    def root(environ: WSGIEnvironment) -> str:
        return str(environ.get("SCRIPT_NAME", "")).rstrip("/")

    @staticmethod
    def wants_json(environ: WSGIEnvironment) -> bool:
        return "application/json" in environ.get("HTTP_ACCEPT", "")

    @staticmethod
    def json(status: str, obj: object) -> Response:
        body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        return Response(status, body, "application/json")

    def error(self, environ: WSGIEnvironment, host: str, status: str, message: str) -> Response:
        if self.wants_json(environ):
            return self.json(status, {"error": message, "node": host})
        content = f'<p class="error">{_e(message)}</p><p><a href="{_e(self.root(environ))}/">Back to the catalogue</a></p>'
        return Response(status, page(status, content, host, self.root(environ)))

    # ---- pages

    def home(self, environ: WSGIEnvironment, host: str) -> Response:
        root = self.root(environ)
        content = catalogue_html(load_catalogue(self.data_dir), root)
        return Response("200 OK", page("Catalogue", content, host, root))

    def order(self, environ: WSGIEnvironment, host: str) -> Response:
        form = read_form(environ)
        product, quantity, customer = validate_order(form, load_catalogue(self.data_dir))
        with closing(connect(self.data_dir)) as conn:
            cur = conn.execute(  # autocommit: the INSERT is fsynced when execute() returns
                "INSERT INTO orders (product_id, quantity, customer, created, node) VALUES (?, ?, ?, ?, ?)",
                (product.id, quantity, customer, _now(), host),
            )
            order_id = cur.lastrowid
        if self.wants_json(environ):
            return self.json("201 Created", {"id": order_id, "node": host})
        return Response("303 See Other", b"", "text/plain", [("Location", f"{self.root(environ)}/orders")])

    def orders(self, environ: WSGIEnvironment, host: str) -> Response:
        with closing(connect(self.data_dir)) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute("SELECT * FROM orders ORDER BY id DESC LIMIT ?", (ORDERS_SHOWN,)).fetchall()
            total = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        content = orders_html(rows, total, load_catalogue(self.data_dir))
        return Response("200 OK", page("Orders", content, host, self.root(environ)))

    def orders_json(self, environ: WSGIEnvironment, host: str) -> Response:
        with closing(connect(self.data_dir)) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(
                "SELECT id, product_id, quantity, customer, created, node FROM orders ORDER BY id"
            ).fetchall()
        orders = [dict(r) for r in rows]
        return self.json("200 OK", {"node": host, "count": len(orders), "orders": orders})

    def health(self, environ: WSGIEnvironment, host: str) -> Response:
        try:
            with closing(connect(self.data_dir)) as conn:
                conn.execute("SELECT count(*) FROM orders").fetchone()
        except sqlite3.Error as e:
            return Response("503 Service Unavailable", f"unavailable {host}: {e}".encode(), "text/plain; charset=utf-8")
        return Response("200 OK", f"ok {host}".encode(), "text/plain; charset=utf-8")


def make_app(data_dir: str) -> WSGIApplication:
    """The shop's WSGI application, serving the data under ``data_dir``."""
    return ShopApp(data_dir)
