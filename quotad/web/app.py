"""The console's HTTP server: aiohttp, in the daemon's own asyncio loop (SPEC "The console").

Why aiohttp: it runs in the loop the daemon already has (`AppRunner` + `TCPSite`), with no second server process
or thread between the pages and the engine, and streams server-sent events natively. Pages are rendered on the
server with Jinja2 (autoescaped); the one script is ours (`static/console.js`) plus uPlot for the curves, both
served from the package: nothing comes from the internet.

Security, on every request (`_guard`): no page without a session (a request without one is sent to the login
page, or answered 401); a POST must come from the console's own origin (its `Origin`, else its `Referer`) and
carry the session's anti-forgery token; each action checks the user's role (`quotad.core.console.allowed`).
Responses forbid framing and outside scripts (Content-Security-Policy), and pages are not cached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from quotad.core import console
from quotad.core.alerts import RULE_NAMES, SEVERITY_NAMES
from quotad.core.orders import STATE_NAMES
from quotad.web.auth import Sessions, Users, same
from quotad.web.common import (
    COMPRESSED,
    COOKIE,
    LOGIN,
    MAX_UPLOAD,
    RECENT,
    RESULT_NAMES,
    SAFE_NEXT,
    STATIC,
    Handler,
    alert_view,
    harden,
    hm,
    host_text,
    kwh_text,
    pct_text,
    quiet_collector,
    redirect,
    sse,
    static_url,
    when,
    with_query,
)
from quotad.web.forms import Forms
from quotad.web.pages import Pages

if TYPE_CHECKING:
    from quotad.shell.daemon import Daemon

__all__ = ["COOKIE", "OPEN", "ROUTES", "Console"]

log = logging.getLogger(__name__)

ROUTES: Final = (  # (method, path, handler): every route; all but OPEN need a login
    ("GET", "/login", "login_page"),
    ("POST", "/login", "login"),
    ("POST", "/logout", "logout"),
    ("GET", "/", "today_page"),
    ("GET", "/api/today", "today_json"),
    ("GET", "/firms", "firms_page"),
    ("GET", "/firms/{firm}", "firm_page"),
    ("GET", "/orders", "orders_page"),
    ("POST", "/orders/{firm}/{action}", "order_action"),
    ("POST", "/orders/issue", "order_issue"),
    ("GET", "/inspections", "inspections_page"),
    ("POST", "/inspections", "visit"),
    ("POST", "/talks", "talk"),
    ("GET", "/alerts", "alerts_page"),
    ("GET", "/events", "events"),
    ("GET", "/reports", "reports_page"),
    ("GET", "/reports/{name}", "report_file"),
    ("GET", "/rota", "rota_page"),
    ("GET", "/photos/{name}", "photo"),
    ("GET", "/favicon.ico", "favicon"),
    ("GET", "/static/{name:.+}", "static_file"),
)
OPEN: Final = frozenset({"/login", "/favicon.ico"})  # and /static/: the login page's own files


class Console(Pages, Forms):
    """The console of `daemon` (its journal, store, clock and policy), served at `[web] listen`."""

    def __init__(self, daemon: Daemon) -> None:
        settings = daemon.settings.web
        assert settings is not None
        self.daemon, self.settings = daemon, settings
        self.users = Users(settings.users_file)
        self.sessions = Sessions(settings.session_hours * 3600)
        self.env = Environment(loader=PackageLoader("quotad.web", "templates"), autoescape=select_autoescape())
        self.env.filters.update(kwh=kwh_text, pct=pct_text, hm=hm, when=when)
        self.env.globals.update(
            STATE_NAMES=STATE_NAMES,
            FIRM_STATES=console.FIRM_STATES,
            KIND_NAMES=console.KIND_NAMES,
            ROLE_NAMES=console.ROLE_NAMES,
            RESULT_NAMES=RESULT_NAMES,
            SEVERITY_NAMES=SEVERITY_NAMES,
            RULE_NAMES=RULE_NAMES,
            allowed=console.allowed,
            order_actions=console.order_actions,
            static=static_url,
        )
        self.board = console.Board()
        self.recent: deque[tuple[int, dict[str, Any]]] = deque(maxlen=RECENT)
        self._seq = 0
        self.boot = secrets.token_hex(4)  # a stream's ids are of this run: after a restart the page reloads
        self._streams: set[asyncio.Queue[tuple[str, int, str] | None]] = set()
        self._runner: web.AppRunner | None = None
        self._today_task: asyncio.Task[None] | None = None
        self.address = ""

    # -- life ----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_UPLOAD)
        for method, path, handler in ROUTES:
            app.router.add_route(method, path, getattr(self, handler))
        return app

    async def start(self) -> None:
        host, port = self.settings.host_port
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        bound = self._runner.addresses[0] if self._runner.addresses else (host, port)
        self.address = f"http://{host_text(bound[0])}:{bound[1]}/"
        self._today_task = asyncio.create_task(self._today_loop())
        log.info("console at %s (%d user(s))", self.address, len(self.users.refresh()))

    async def stop(self) -> None:
        if self._today_task is not None:
            self._today_task.cancel()
        for queue in list(self._streams):
            queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()

    # -- what the daemon tells the console -----------------------------------------------------

    def alerts(self, payloads: list[dict[str, Any]]) -> None:
        """Alerts just raised (journaled): pushed to every open stream at once."""
        for payload in payloads:
            self._seq += 1
            self.recent.append((self._seq, payload))
            self._push("alert", self._seq, json.dumps(alert_view(payload, self._names()), ensure_ascii=False))

    def _push(self, kind: str, seq: int, data: str) -> None:
        for queue in list(self._streams):
            try:
                queue.put_nowait((kind, seq, data))
            except asyncio.QueueFull:  # a stream that does not read: ended, its page reconnects and reloads
                self._streams.discard(queue)
                queue.put_nowait(None) if queue.empty() else None

    async def _today_loop(self) -> None:
        """The today page's figures, pushed when the engine's time moved (at most every 2 s)."""
        said: int | None = None
        while True:
            await asyncio.sleep(2.0)
            engine = self.daemon.journal.engine
            if self._streams and engine.now != said:
                said = engine.now
                self._push("today", 0, json.dumps(self._today_data(), ensure_ascii=False))

    # -- the guard -----------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        open_route = path in OPEN or path.startswith("/static/")
        session = self.sessions.get(request.cookies.get(COOKIE))
        if request.method == "POST" and not self._same_origin(request):
            log.warning("console: a %s to %s from another origin was refused (%s)", request.method, path,
                        request.headers.get("Origin") or request.headers.get("Referer") or "no origin")  # fmt: skip
            return self._refused(request, 403, "请求来自其他网站，已拒绝")
        if not open_route:
            if session is None:
                if request.method == "GET" and not path.startswith(("/api/", "/events", "/photos/", "/reports/")):
                    target = request.path_qs if SAFE_NEXT.match(request.path_qs) else "/"
                    raise redirect(with_query(LOGIN, next=target))
                return self._refused(request, 401, "请先登录")
            if session.user not in self.users.refresh():  # removed from the users file
                self.sessions.end_user(session.user)
                raise redirect(LOGIN)
            request["session"] = session
            if request.method == "POST" and path != "/logout":
                form = await request.post()
                if not same(str(form.get("csrf", "")), session.csrf):
                    log.warning("console: a form to %s without the session's token was refused (user %s)", path,
                                session.user)  # fmt: skip
                    return self._refused(request, 403, "表单已过期或来源不明，请刷新页面后重试")
        try:
            if request.method == "GET" and path != "/events":
                with quiet_collector():  # a page is one synchronous step: no await inside
                    response = await handler(request)
            else:
                response = await handler(request)
        except web.HTTPException:
            raise
        except Exception:  # a bug: said in the log with its trace; the user is told, the daemon goes on
            log.exception("console: %s %s failed", request.method, path)
            return self._refused(request, 500, "出错了，已记入日志，请联系管理员")
        harden(response, cache=path.startswith("/static/"))
        if isinstance(response, web.Response) and response.content_type in COMPRESSED:
            response.enable_compression()  # gzip or deflate, as the browser accepts: a phone on 4G
        return response

    def _same_origin(self, request: web.Request) -> bool:
        source = request.headers.get("Origin") or request.headers.get("Referer")
        if not source or source == "null":
            return False
        parts = urlsplit(source)
        return parts.netloc == request.host

    # -- login ---------------------------------------------------------------------------------

    async def static_file(self, request: web.Request) -> web.Response:
        """The package's own scripts, styles and fonts: nothing from a CDN. Cached for a year when asked for by
        the digest the pages name (`static_url`), which changes with the file."""
        found = STATIC.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        body, content_type, digest = found
        response = web.Response(body=body, content_type=content_type)
        if request.query.get("v") == digest:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response

    async def login_page(self, request: web.Request) -> web.Response:
        return self._page(request, "login.html", next=request.query.get("next", "/"), failed=False)

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
        target = str(form.get("next", "/"))
        target = target if SAFE_NEXT.match(target) and not target.startswith("//") else "/"
        address = request.remote or "?"
        if address in ("127.0.0.1", "::1") and request.headers.get("X-Real-IP"):  # nginx on this machine
            address = request.headers["X-Real-IP"]
        user = await self.users.check(name, password, address) if name and password else None
        if user is None:
            response = self._page(request, "login.html", next=target, failed=True)
            response.set_status(401)
            return response
        token, _session = self.sessions.start(user)
        log.info("console: %s (%s) logged in from %s", user.name, user.role, address)
        response = web.HTTPSeeOther(target)
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=self.settings.secure_cookie,
                            path="/", max_age=int(self.settings.session_hours * 3600))  # fmt: skip
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        self.sessions.end(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther(LOGIN)
        response.del_cookie(COOKIE, path="/")
        raise response

    # -- the live stream -----------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: `alert` as each is raised, `today` when the figures moved. A stream that
        reconnects (the browser sends Last-Event-ID) first gets what it missed, from the alerts kept in memory."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})  # fmt: skip
        harden(response, cache=False)
        await response.prepare(request)
        queue: asyncio.Queue[tuple[str, int, str] | None] = asyncio.Queue(maxsize=1000)
        last = request.headers.get("Last-Event-ID") or request.query.get("after", "")
        boot, _dash, seq = last.partition("-")
        if last and boot != self.boot:
            await response.write(b"event: reload\ndata: {}\n\n")
        elif seq.isdigit():
            names = self._names()
            for n, payload in list(self.recent):
                if n > int(seq):
                    data = json.dumps(alert_view(payload, names), ensure_ascii=False)
                    await response.write(sse("alert", f"{self.boot}-{n}", data))
        self._streams.add(queue)
        try:
            await response.write(b": open\n\n")
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=15.0)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if item is None:
                    break
                kind, n, data = item
                await response.write(sse(kind, f"{self.boot}-{n}" if kind == "alert" else None, data))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._streams.discard(queue)
        return response
