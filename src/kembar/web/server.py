"""The dashboard's HTTP server (aiohttp), run inside the cluster daemon's asyncio loop.

Routes:

* ``GET /`` the dashboard (``/login`` first when a password is configured), ``GET /events``
  the live status as server-sent events (pushed when an event happened, else every
  ``PUSH_EVERY`` seconds), ``GET /api/status`` the same once, as JSON;
* ``POST /api/standby`` (``{"on": true|false}``) and ``POST /api/takeover``
  (``{"groups": [...]}``): this node's standby and takeover, as ``kembar standby`` and
  ``kembar takeover`` do; they need the page's CSRF token in the ``X-Kembar-CSRF`` header;
* ``GET /metrics`` Prometheus' text format; with a password, HTTP Basic auth (any user
  name) or a login session;
* ``GET|POST /login``, ``POST /logout``, ``GET /static/<file>``.

Every request must name one of the server's own addresses in its ``Host`` header (a
page of another site that a DNS trick points at this address is refused), every reply
forbids framing and loading anything from elsewhere.  The password is never logged nor
echoed.  A listen address that cannot be bound is logged and skipped: the cluster runs
on without its dashboard rather than not at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Awaitable, Callable

from aiohttp import web

from kembar.config.web import WebConfig, is_loopback
from kembar.errors import KembarError
from kembar.web import pages
from kembar.web.auth import COOKIE, CSRF_HEADER, Auth, Session, basic_password
from kembar.web.metrics import CONTENT_TYPE, render
from kembar.web.snapshot import Backend, Snapshots

log = logging.getLogger("kembar.web")

PUSH_EVERY = 1.0  # seconds between two pushes of the live status when nothing happens
TICK = 0.2  # seconds between two looks for a new event
MAX_BODY = 64 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def host_names(binds: list[tuple[str, int]]) -> set[str]:
    """The ``Host`` header values a request to these listen addresses may carry."""
    out = set()
    for host, port in binds:
        name = f"[{host}]" if ":" in host else host
        out.add(f"{name}:{port}")
        if port == 80:
            out.add(name)
        if is_loopback(host):
            out.add(f"localhost:{port}")
            if port == 80:
                out.add("localhost")
    return out


class WebServer:
    def __init__(self, cfg: WebConfig, binds: list[tuple[str, int]], backend: Backend,
                 cluster: str = "") -> None:
        self.binds = binds
        self.backend = backend
        self.cluster = cluster
        self.auth = Auth(cfg.password(), cfg.session_timeout)
        self.snapshots = Snapshots(backend)
        self.hosts = host_names(binds)
        self.listening: list[str] = []
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------- lifecycle

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        r = app.router
        r.add_get("/", self._dashboard)
        r.add_get("/login", self._login_page)
        r.add_post("/login", self._login)
        r.add_post("/logout", self._logout)
        r.add_get("/static/{name}", self._static)
        r.add_get("/api/status", self._status)
        r.add_get("/events", self._events)
        r.add_post("/api/standby", self._standby)
        r.add_post("/api/takeover", self._takeover)
        r.add_get("/metrics", self._metrics)
        app.on_shutdown.append(self._on_shutdown)
        app.on_response_prepare.append(_secure)
        return app

    async def start(self) -> list[str]:
        """Listen on every bind that can be bound; returns them as ``host:port``."""
        if not self.binds:
            log.info("web: no listen address of [web] is this node's; dashboard off here")
            return []
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        for host, port in self.binds:
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            try:
                await web.TCPSite(self._runner, host, port).start()
            except OSError as exc:
                log.error("web: cannot listen on %s: %s; the dashboard is not served there",
                          where, exc.strerror or exc)
                continue
            self.listening.append(where)
        if self.listening:
            log.info("web: dashboard and /metrics on %s (%s)", ", ".join(
                f"http://{w}/" for w in self.listening),
                "login with the password of web.password_file" if self.auth.required
                else "no password: loopback only")
        return list(self.listening)

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _on_shutdown(self, app: web.Application) -> None:
        self._closing.set()  # ends the live streams, so that the shutdown does not wait

    # ------------------------------------------------------------ the guards

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if (request.host or "").lower() not in self.hosts:
            return web.Response(status=421, text="kembar: this server answers only to its "
                                f"own addresses ({', '.join(sorted(self.hosts))})\n")
        return await handler(request)

    def _session(self, request: web.Request) -> Session | None:
        return self.auth.session(request.cookies.get(COOKIE), time.time())

    def _allowed(self, request: web.Request, basic: bool = False) -> bool:
        """A logged-in session, no password at all, or (``basic``) the right password in
        an Authorization header.  A wrong Basic password counts as a failed login."""
        if not self.auth.required or self._session(request) is not None:
            return True
        if not basic:
            return False
        given = basic_password(request.headers.get("Authorization"))
        if given is None:
            return False
        ok = self.auth.check(given, request.remote or "?", time.time())
        if not ok:
            log.warning("web: %s to %s from %s refused (%s)", request.method, request.path,
                        request.remote, "wrong password" if ok is False
                        else "too many wrong passwords lately")
        return bool(ok)

    def _csrf(self, request: web.Request) -> str:
        s = self._session(request)
        return s.csrf if s is not None else self.auth.open_csrf

    # ----------------------------------------------------------------- pages

    async def _dashboard(self, request: web.Request) -> web.StreamResponse:
        if not self._allowed(request):
            raise web.HTTPSeeOther("/login")
        return web.Response(text=pages.fill(
            "dashboard.html", node=self.backend.node, cluster=self.cluster,
            csrf=self._csrf(request), logout="" if self.auth.required else "hidden"),
            content_type="text/html")

    def _login_form(self, error: str = "", status: int = 200) -> web.Response:
        return web.Response(text=pages.fill("login.html", node=self.backend.node,
                                            cluster=self.cluster, error=error,
                                            hidden="" if error else "hidden"),
                            content_type="text/html", status=status)

    async def _login_page(self, request: web.Request) -> web.StreamResponse:
        if not self.auth.required or self._session(request) is not None:
            raise web.HTTPSeeOther("/")
        return self._login_form()

    async def _login(self, request: web.Request) -> web.StreamResponse:
        if not self.auth.required:
            raise web.HTTPSeeOther("/")
        form = await request.post()
        given = form.get("password")
        now = time.time()
        ok = self.auth.check(given if isinstance(given, str) else "", request.remote or "?",
                             now)
        if not ok:
            why = "wrong password" if ok is False else "too many wrong passwords: wait a minute"
            log.warning("web: login from %s refused (%s)", request.remote, why)
            return self._login_form(why[0].upper() + why[1:], 401 if ok is False else 429)
        token, _ = self.auth.login(now)
        log.info("web: login from %s", request.remote)
        resp = web.HTTPSeeOther("/")
        resp.set_cookie(COOKIE, token, max_age=int(self.auth.timeout), httponly=True,
                        samesite="Strict", path="/")
        raise resp

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        if self.auth.csrf_ok(self._session(request), request.headers.get(CSRF_HEADER)):
            self.auth.logout(request.cookies.get(COOKIE))
        resp = web.HTTPSeeOther("/login")
        resp.del_cookie(COOKIE, path="/")
        raise resp

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in pages.ASSETS:
            raise web.HTTPNotFound()
        return web.Response(text=pages.read(name), content_type=pages.ASSETS[name])

    # ------------------------------------------------------------ live status

    async def _status(self, request: web.Request) -> web.StreamResponse:
        if not self._allowed(request, basic=True):
            raise web.HTTPUnauthorized(text="login first\n")
        return web.json_response(await self.snapshots.get(), dumps=_dumps)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if not self._allowed(request):
            raise web.HTTPUnauthorized(text="login first\n")
        token = request.cookies.get(COOKIE)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        await resp.write(b"retry: 1000\n\n")
        last_version, last_sent = -1, 0.0
        try:
            while not self._closing.is_set():
                if self.auth.required and self.auth.session(token, time.time()) is None:
                    await resp.write(b"event: logout\ndata: {}\n\n")
                    break
                version, now = self.backend.version(), time.monotonic()
                if version != last_version or now - last_sent >= PUSH_EVERY:
                    snap = await self.snapshots.get()
                    await resp.write(b"event: status\ndata: " + _dumps(snap).encode() + b"\n\n")
                    last_version, last_sent = version, now
                try:
                    await asyncio.wait_for(self._closing.wait(), TICK)
                except asyncio.TimeoutError:
                    pass
        except ConnectionError:
            pass  # the browser went away
        return resp

    # --------------------------------------------------------------- actions

    async def _action(self, request: web.Request,
                      act: Callable[[dict[str, Any]], str]) -> web.StreamResponse:
        if not self._allowed(request):
            raise web.HTTPUnauthorized(text="login first\n")
        if not self.auth.csrf_ok(self._session(request), request.headers.get(CSRF_HEADER)):
            log.warning("web: %s from %s refused: no valid %s header", request.path,
                        request.remote, CSRF_HEADER)
            return web.json_response({"ok": False, "error": f"missing or wrong {CSRF_HEADER}"
                                      " header (reload the page)"}, status=403)
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError("a JSON object")
        except ValueError as exc:
            return web.json_response({"ok": False, "error": f"bad request: {exc}"},
                                     status=400)
        try:
            message = act(body)
        except KembarError as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=409)
        finally:
            self.snapshots.invalidate()
        log.warning("web: %s (asked from %s)", message, request.remote)
        return web.json_response({"ok": True, "message": message})

    async def _standby(self, request: web.Request) -> web.StreamResponse:
        def act(body: dict[str, Any]) -> str:
            on = body.get("on", True)
            if not isinstance(on, bool):
                raise KembarError("on: true or false")
            return self.backend.standby(on)
        return await self._action(request, act)

    async def _takeover(self, request: web.Request) -> web.StreamResponse:
        def act(body: dict[str, Any]) -> str:
            groups = body.get("groups") or []
            if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                raise KembarError("groups: a list of group names")
            return self.backend.takeover(groups)
        return await self._action(request, act)

    # --------------------------------------------------------------- metrics

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        if not self._allowed(request, basic=True):
            raise web.HTTPUnauthorized(text="the password of web.password_file, as HTTP "
                                            "Basic auth (any user name)\n",
                                       headers={"WWW-Authenticate":
                                                'Basic realm="kembar", charset="UTF-8"'})
        body = render(await self.snapshots.get())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    response.headers.setdefault("Cache-Control", "no-store")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
