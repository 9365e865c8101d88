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
import datetime as dt
import hashlib
import json
import logging
import re
import secrets
import tempfile
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlsplit

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from quotad.core import console
from quotad.core.alerts import RULE_NAMES, SEVERITY_NAMES
from quotad.core.errors import QuotadError, StoreError
from quotad.core.inspections import Entry
from quotad.core.orders import STATE_NAMES, OrderError
from quotad.core.views import event_now
from quotad.web.auth import Session, Sessions, Users, same

if TYPE_CHECKING:
    from quotad.shell.daemon import Daemon

__all__ = ["COOKIE", "Console"]

log = logging.getLogger(__name__)

COOKIE: Final = "quotad_session"
LOGIN: Final = "/login"
RESULT_NAMES: Final = {"ok": "正常", "violation": "违规", "rectify": "限期整改"}
ACTION_WORDS: Final = {
    "confirm": "确认停电令",
    "dismiss": "撤销停电令",
    "notified": "已通知企业",
    "executed": "已停电",
    "lift": "解除停电令",
    "issue": "下达停电令",
    "talk": "约谈",
    "visit": "督查记录",
}
RECENT: Final = 500  # alerts kept in memory for a stream that reconnects (Last-Event-ID)
FIRMS_PAGE: Final = 100  # firms a page of the firms list shows
MAX_UPLOAD: Final = 11 * 1024 * 1024  # a photo (10 MB at most, `quotad.shell.photos`) and the form around it
_CID = re.compile(r"^[0-9a-f]{32}$")
_SAFE_NEXT = re.compile(r"^/[A-Za-z0-9/_\-?=&.%]*$")
_REPORT = re.compile(r"^[A-Za-z0-9_\-.]+\.(html|pdf|xlsx)$")
_PHOTO = re.compile(r"^[0-9a-f]{64}\.(jpg|png|webp)$")
_CONTENT_TYPES: Final = {
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
}
CSP: Final = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Console:
    """The console of `daemon` (its journal, store, clock and policy), served at `[web] listen`."""

    def __init__(self, daemon: Daemon) -> None:
        settings = daemon.settings.web
        assert settings is not None
        self.daemon, self.settings = daemon, settings
        self.users = Users(settings.users_file)
        self.sessions = Sessions(settings.session_hours * 3600)
        self.env = Environment(loader=PackageLoader("quotad.web", "templates"), autoescape=select_autoescape())
        self.env.filters.update(kwh=_kwh_text, pct=_pct_text, hm=_hm, when=_when)
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
            static=_static_url,
        )
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
        r = app.router
        r.add_get("/login", self.login_page)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        r.add_get("/", self.today_page)
        r.add_get("/api/today", self.today_json)
        r.add_get("/firms", self.firms_page)
        r.add_get("/firms/{firm}", self.firm_page)
        r.add_get("/orders", self.orders_page)
        r.add_post("/orders/{firm}/{action}", self.order_action)
        r.add_post("/orders/issue", self.order_issue)
        r.add_get("/inspections", self.inspections_page)
        r.add_post("/inspections", self.visit)
        r.add_post("/talks", self.talk)
        r.add_get("/alerts", self.alerts_page)
        r.add_get("/events", self.events)
        r.add_get("/reports", self.reports_page)
        r.add_get("/reports/{name}", self.report_file)
        r.add_get("/rota", self.rota_page)
        r.add_get("/photos/{name}", self.photo)
        r.add_get("/favicon.ico", self.favicon)
        r.add_static("/static", str(resources.files("quotad.web") / "static"))
        return app

    async def start(self) -> None:
        host, port = self.settings.host_port
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        bound = self._runner.addresses[0] if self._runner.addresses else (host, port)
        self.address = f"http://{_host_text(bound[0])}:{bound[1]}/"
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
            self._push("alert", self._seq, json.dumps(_alert_view(payload, self._names()), ensure_ascii=False))

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
        open_route = path in ("/login", "/favicon.ico") or path.startswith("/static/")
        session = self.sessions.get(request.cookies.get(COOKIE))
        if request.method == "POST" and not self._same_origin(request):
            log.warning("console: a %s to %s from another origin was refused (%s)", request.method, path,
                        request.headers.get("Origin") or request.headers.get("Referer") or "no origin")  # fmt: skip
            return self._refused(request, 403, "请求来自其他网站，已拒绝")
        if not open_route:
            if session is None:
                if request.method == "GET" and not path.startswith(("/api/", "/events", "/photos/", "/reports/")):
                    target = request.path_qs if _SAFE_NEXT.match(request.path_qs) else "/"
                    raise _redirect(_with(LOGIN, next=target))
                return self._refused(request, 401, "请先登录")
            if session.user not in self.users.refresh():  # removed from the users file
                self.sessions.end_user(session.user)
                raise _redirect(LOGIN)
            request["session"] = session
            if request.method == "POST" and path != "/logout":
                form = await request.post()
                if not same(str(form.get("csrf", "")), session.csrf):
                    log.warning("console: a form to %s without the session's token was refused (user %s)", path,
                                session.user)  # fmt: skip
                    return self._refused(request, 403, "表单已过期或来源不明，请刷新页面后重试")
        try:
            response = await handler(request)
        except web.HTTPException:
            raise
        except Exception:  # a bug: said in the log with its trace; the user is told, the daemon goes on
            log.exception("console: %s %s failed", request.method, path)
            return self._refused(request, 500, "出错了，已记入日志，请联系管理员")
        _harden(response, cache=path.startswith("/static/"))
        return response

    def _same_origin(self, request: web.Request) -> bool:
        source = request.headers.get("Origin") or request.headers.get("Referer")
        if not source or source == "null":
            return False
        parts = urlsplit(source)
        return parts.netloc == request.host

    def _refused(self, request: web.Request, status: int, text: str) -> web.Response:
        body = self.env.get_template("refused.html").render(status=status, text=text, session=None)
        response = web.Response(status=status, text=body, content_type="text/html")
        _harden(response, cache=False)
        return response

    def _page(self, request: web.Request, template: str, **context: Any) -> web.Response:
        session: Session | None = request.get("session")
        context.setdefault("flash", request.query.get("said"))
        context.setdefault("error", request.query.get("error"))
        body = self.env.get_template(template).render(
            session=session,
            township=self.daemon.journal.engine.policy.township,
            path=request.path,
            new_cid=lambda: uuid.uuid4().hex,
            **context,
        )
        return web.Response(text=body, content_type="text/html")

    # -- login ---------------------------------------------------------------------------------

    async def login_page(self, request: web.Request) -> web.Response:
        return self._page(request, "login.html", next=request.query.get("next", "/"), failed=False)

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
        target = str(form.get("next", "/"))
        target = target if _SAFE_NEXT.match(target) and not target.startswith("//") else "/"
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

    # -- pages ---------------------------------------------------------------------------------

    def _now(self) -> int:
        engine = self.daemon.journal.engine
        return event_now(engine, self.daemon.clock.now())

    def _names(self) -> dict[str, str]:
        return {f.id: f.name for f in self.daemon.journal.engine.policy.firms}

    def _today_data(self) -> dict[str, Any]:
        engine = self.daemon.journal.engine
        t = console.today(engine, self._now())
        return {
            "day": t.day.isoformat(),
            "updated": t.updated,
            "consumed_kwh": t.consumed_kwh,
            "cap_kwh": t.cap_kwh,
            "projected_kwh": t.projected_kwh,
            "share": t.share,
            "curve": t.curve,
            "projection": t.projection,
            "load": t.load,
            "load_cap_kw": t.load_cap_kw,
            "day_start": t.day_start,
            "day_end": t.day_end,
            "states": t.states,
            "orders": t.orders,
            "tz": engine.policy.township.timezone,
        }

    async def today_page(self, request: web.Request) -> web.Response:
        engine = self.daemon.journal.engine
        now = self._now()
        rows = console.firm_rows(engine, now)
        t = console.today(engine, now, rows)
        data = json.dumps(self._today_data(), ensure_ascii=False).replace("</", "<\\/")
        risky = [r for r in rows if r.state != "ok"][:8]
        return self._page(request, "today.html", t=t, data=data, risky=risky)

    async def today_json(self, request: web.Request) -> web.Response:
        return web.json_response(self._today_data(), dumps=lambda o: json.dumps(o, ensure_ascii=False))

    async def firms_page(self, request: web.Request) -> web.Response:
        engine = self.daemon.journal.engine
        rows = console.firm_rows(engine, self._now())
        state, kind, q = request.query.get("state", ""), request.query.get("kind", ""), request.query.get("q", "")
        if state in console.FIRM_STATES:
            rows = [r for r in rows if r.state == state]
        if kind in console.KIND_NAMES:
            rows = [r for r in rows if r.kind == kind]
        if q.strip():
            rows = [r for r in rows if q.strip() in r.name or q.strip() in r.id]
        page = max(1, _int(request.query.get("page"), 1))
        pages = max(1, -(-len(rows) // FIRMS_PAGE))
        page = min(page, pages)
        shown = rows[(page - 1) * FIRMS_PAGE : page * FIRMS_PAGE]
        return self._page(request, "firms.html", rows=shown, total=len(rows), page=page, pages=pages, state=state,
                          kind=kind, q=q)  # fmt: skip

    async def firm_page(self, request: web.Request) -> web.Response:
        engine = self.daemon.journal.engine
        firm_id = request.match_info["firm"]
        firm = engine.firms.get(firm_id)
        if firm is None:
            raise web.HTTPNotFound(text="没有这家企业")
        now = self._now()
        row = next(r for r in console.firm_rows(engine, now) if r.id == firm_id)
        days = console.firm_days(engine, firm_id, now)
        store = self.daemon.store
        orders = [o for o in _order_register(self.daemon) if o.firm == firm_id]
        visits = [v for v in store.visits() if v["firm"] == firm_id][::-1]
        alerts = [_alert_view(a, self._names()) for a in store.recent_alerts(50, lambda a: a.get("firm") == firm_id)]
        escalated = engine.escalations.get(firm_id)
        curve = json.dumps(
            {
                "days": [engine.calendar.day_start(d.day) // 1_000_000 + 12 * 3600 for d in days],
                "used": [d.used_kwh for d in days],
                "limit": firm.daily_limit_kwh,
                "tz": engine.policy.township.timezone,
            }
        ).replace("</", "<\\/")
        return self._page(request, "firm.html", firm=firm, row=row, days=days, orders=orders[::-1], visits=visits,
                          alerts=alerts, escalated=escalated, curve=curve)  # fmt: skip

    async def orders_page(self, request: web.Request) -> web.Response:
        engine = self.daemon.journal.engine
        state = request.query.get("state", "open")
        orders = sorted(engine.orders.values(), key=lambda o: (o.state != "pending", o.issued), reverse=False)
        if state == "open":
            orders = [o for o in orders if o.open]
        elif state in STATE_NAMES:
            orders = [o for o in orders if o.state == state]
        counts: dict[str, int] = {}
        for o in engine.orders.values():
            counts[o.state] = counts.get(o.state, 0) + 1
        firms = sorted(engine.policy.firms, key=lambda f: f.id)
        return self._page(request, "orders.html", orders=orders, state=state, counts=counts, firms=firms)

    async def inspections_page(self, request: web.Request) -> web.Response:
        daemon = self.daemon
        engine, now = daemon.journal.engine, self._now()
        day = engine.calendar.day_of(now)
        published = daemon.store.latest("inspections")
        fresh = published is None or published.body.get("day") != day.isoformat()
        payload = daemon.journal.list_of(day, now) if fresh or published is None else published.body
        entries = [Entry(e["firm"], e["firm_name"], tuple(e["reasons"]), tuple(e["evidence"])) for e in
                   payload["entries"]]  # fmt: skip
        visits = list(daemon.store.visits())[-30:][::-1]
        firms = sorted(engine.policy.firms, key=lambda f: f.id)
        chosen = request.query.get("firm", "")
        return self._page(request, "inspections.html", entries=entries, fresh=fresh, payload=payload, visits=visits,
                          firms=firms, chosen=chosen, names=self._names())  # fmt: skip

    async def alerts_page(self, request: web.Request) -> web.Response:
        severity, firm = request.query.get("severity", ""), request.query.get("firm", "")
        rule = request.query.get("rule", "")

        def keep(a: dict[str, Any]) -> bool:
            return (
                (not severity or a.get("severity") == severity)
                and (not firm or a.get("firm") == firm)
                and (not rule or a.get("rule") == rule)
            )

        alerts = [_alert_view(a, self._names()) for a in self.daemon.store.recent_alerts(200, keep)]
        firms = sorted(self.daemon.journal.engine.policy.firms, key=lambda f: f.id)
        return self._page(request, "alerts.html", alerts=alerts, severity=severity, firm=firm, rule=rule, firms=firms,
                          last=f"{self.boot}-{self._seq}")  # fmt: skip

    async def reports_page(self, request: web.Request) -> web.Response:
        folder = self.daemon.settings.state_dir / "reports"
        files = sorted((p for p in folder.glob("*") if _REPORT.match(p.name)), reverse=True) if folder.is_dir() else []
        by_name: dict[str, list[Path]] = {}
        for p in files:
            by_name.setdefault(p.stem, []).append(p)
        return self._page(request, "reports.html", reports=sorted(by_name.items(), reverse=True))

    async def report_file(self, request: web.Request) -> web.FileResponse:
        name = request.match_info["name"]
        path = self.daemon.settings.state_dir / "reports" / name
        if not _REPORT.match(name) or not path.is_file():
            raise web.HTTPNotFound(text="没有这份报告")
        return _file(path, name.rsplit(".", 1)[1])

    async def favicon(self, request: web.Request) -> web.Response:
        icon = (resources.files("quotad.web") / "static" / "favicon.svg").read_bytes()
        return web.Response(body=icon, content_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    async def photo(self, request: web.Request) -> web.FileResponse:
        name = request.match_info["name"]
        path = self.daemon.settings.state_dir / "photos" / name
        if not _PHOTO.match(name) or not path.is_file():
            raise web.HTTPNotFound(text="没有这张照片")
        return _file(path, name.rsplit(".", 1)[1])

    async def rota_page(self, request: web.Request) -> web.Response:
        engine = self.daemon.journal.engine
        today = engine.calendar.day_of(self._now())
        month = request.query.get("month", f"{today.year:04d}-{today.month:02d}")
        try:
            first = dt.date.fromisoformat(f"{month}-01")
        except ValueError:
            first = today.replace(day=1)
        days = []
        d = first
        while d.month == first.month:
            days.append(console.rota(engine, d))
            d += dt.timedelta(days=1)
        prev_month = (first - dt.timedelta(days=1)).strftime("%Y-%m")
        next_month = (first + dt.timedelta(days=32)).strftime("%Y-%m")
        lead = [None] * first.weekday()
        return self._page(request, "rota.html", days=days, lead=lead, first=first, today=today, prev=prev_month,
                          next=next_month)  # fmt: skip

    # -- the live stream -----------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: `alert` as each is raised, `today` when the figures moved. A stream that
        reconnects (the browser sends Last-Event-ID) first gets what it missed, from the alerts kept in memory."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})  # fmt: skip
        _harden(response, cache=False)
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
                    data = json.dumps(_alert_view(payload, names), ensure_ascii=False)
                    await response.write(_sse("alert", f"{self.boot}-{n}", data))
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
                await response.write(_sse(kind, f"{self.boot}-{n}" if kind == "alert" else None, data))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._streams.discard(queue)
        return response

    # -- actions -------------------------------------------------------------------------------

    def _act(self, request: web.Request, what: str, back: str, kind: str, firm: str, /, **fields: Any) -> web.Response:
        """Carry out a command as the CLI would (journaled once per command id), as the logged-in user."""
        from quotad.commands.orders import command

        session: Session = request["session"]
        if not console.allowed(session.role, what):
            log.warning("console: %s (%s) may not %s: refused", session.user, session.role, what)
            return self._refused(request, 403, f"您的角色（{console.ROLE_NAMES.get(session.role)}）不能执行此操作")
        try:
            body = command(self.daemon.loaded, kind, firm, session.user, **fields)
        except QuotadError as exc:
            raise _redirect(_with(back, error=str(exc))) from None
        if request.get("cid"):  # the form's own id: a second click, or a resubmitted form, changes nothing more
            body["id"] = request["cid"]
        try:
            outcome = self.daemon.perform(body)
        except OrderError as exc:
            raise _redirect(_with(back, error=str(exc))) from None
        except StoreError as exc:
            log.error("console: %s's command was not recorded: %s", session.user, exc)
            raise _redirect(_with(back, error="状态目录拒绝写入，未执行，请稍后重试")) from None
        said = f"{self._names().get(firm, firm)}：{ACTION_WORDS[what]}已记录"
        if "state" in outcome:
            said += f"，停电令{STATE_NAMES.get(outcome['state'], outcome['state'])}"
        raise _redirect(_with(back, said=said))

    async def order_action(self, request: web.Request) -> web.Response:
        form = await request.post()
        firm, action = request.match_info["firm"], request.match_info["action"]
        if action not in ("confirm", "dismiss", "notified", "executed", "lift"):
            raise web.HTTPNotFound()
        _take_cid(request, form)
        back = _back(form, "/orders")
        fields: dict[str, Any] = {"action": action}
        reason = str(form.get("reason", "")).strip()
        if action in ("dismiss", "lift") or reason:
            fields["reason"] = reason
        return self._act(request, action, back, "order", firm, **fields)

    async def order_issue(self, request: web.Request) -> web.Response:
        form = await request.post()
        _take_cid(request, form)
        firm, reason = str(form.get("firm", "")), str(form.get("reason", ""))
        return self._act(request, "issue", _back(form, "/orders"), "issue", firm, reason=reason)

    async def talk(self, request: web.Request) -> web.Response:
        form = await request.post()
        _take_cid(request, form)
        firm, note = str(form.get("firm", "")), str(form.get("note", ""))
        return self._act(request, "talk", _back(form, f"/firms/{firm}"), "talk", firm, note=note)

    async def visit(self, request: web.Request) -> web.Response:
        """A visit recorded from the phone, with its photo: checked and kept first, removed if refused."""
        from quotad.shell import photos

        form = await request.post()
        _take_cid(request, form)
        session: Session = request["session"]
        back = _back(form, "/inspections")
        if not console.allowed(session.role, "visit"):
            return self._refused(request, 403, f"您的角色（{console.ROLE_NAMES.get(session.role)}）不能记录督查")
        firm, result = str(form.get("firm", "")), str(form.get("result", ""))
        finding, order = str(form.get("finding", "")).strip(), form.get("order") == "1"
        if result not in RESULT_NAMES:
            raise _redirect(_with(back, error="请选择督查结果"))
        if not finding:
            raise _redirect(_with(back, error="请填写现场发现"))
        if order and result != "violation":
            raise _redirect(_with(back, error="只有“违规”的督查才能同时下达停电令"))
        if order and not console.allowed(session.role, "issue"):  # an inspector records; an operator issues
            raise _redirect(_with(back, error="下达停电令需操作员角色；请只记录违规"))
        upload = form.get("photo")
        record, kept = None, None
        if isinstance(upload, web.FileField) and upload.filename:
            state_dir = self.daemon.settings.state_dir
            with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".upload-") as tmp:
                tmp.write(upload.file.read(photos.MAX_BYTES + 1))
                tmp.flush()
                try:
                    photo = photos.read(Path(tmp.name))
                except QuotadError as exc:
                    raise _redirect(_with(back, error=f"照片未保存：{exc}")) from None
            path, new = photos.keep(photo, state_dir)
            record, kept = photo.record(), (path if new else None)
        try:
            return self._act(request, "visit", back, "inspection", firm, result=result, finding=finding,
                             issue_order=order, photo=record)  # fmt: skip
        except web.HTTPSeeOther as redirect:
            if kept is not None and "error=" in str(redirect.location):
                kept.unlink(missing_ok=True)
            raise


# -- helpers -----------------------------------------------------------------------------------


_VERSIONS: dict[str, str] = {}


def _static_url(name: str) -> str:
    """`/static/NAME?v=<digest>`: a new release's files are fetched afresh, the same ones come from the cache."""
    version = _VERSIONS.get(name)
    if version is None:
        data = (resources.files("quotad.web") / "static" / name).read_bytes()
        version = _VERSIONS[name] = hashlib.sha256(data).hexdigest()[:10]
    return f"/static/{name}?v={version}"


def _order_register(daemon: Daemon) -> list[Any]:
    from quotad.shell.journal import order_history

    latest: dict[str, Any] = {}
    for order in order_history(daemon.store):
        latest[order.alert_id] = order
    return list(latest.values())


def _redirect(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


def _take_cid(request: web.Request, form: Any) -> None:
    cid = str(form.get("cid", ""))
    if _CID.match(cid):
        request["cid"] = cid


def _back(form: Any, default: str) -> str:
    back = str(form.get("back", "")) or default
    return back if _SAFE_NEXT.match(back) and not back.startswith("//") else default


def _with(path: str, **query: str) -> str:
    base = path.split("?", 1)[0]
    return base + "?" + "&".join(f"{k}={quote(v)}" for k, v in query.items())


def _sse(kind: str, ident: str | None, data: str) -> bytes:
    head = f"event: {kind}\n" + (f"id: {ident}\n" if ident else "")
    return (head + "".join(f"data: {line}\n" for line in data.splitlines()) + "\n").encode()


def _harden(response: web.StreamResponse, *, cache: bool) -> None:
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "same-origin")
    if not cache:
        h.setdefault("Cache-Control", "no-store")


def _file(path: Path, ext: str) -> web.FileResponse:
    response = web.FileResponse(path, headers={"Content-Type": _CONTENT_TYPES[ext]})
    return response


def _alert_view(payload: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    firm = payload.get("firm")
    return {
        "id": payload.get("id"),
        "ts": payload.get("ts"),
        "severity": payload.get("severity"),
        "severity_name": SEVERITY_NAMES.get(str(payload.get("severity")), str(payload.get("severity"))),
        "rule": payload.get("rule"),
        "firm": firm,
        "firm_name": names.get(str(firm), "") if firm else "全镇",
        "message": payload.get("message"),
        "action": payload.get("action"),
        "order_state": payload.get("order_state"),
    }


def _int(text: str | None, default: int) -> int:
    try:
        return int(text or default)
    except ValueError:
        return default


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _kwh_text(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _pct_text(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def _hm(value: str | None) -> str:
    return str(value or "")[11:16]


def _when(value: str | None) -> str:
    text = str(value or "")
    return text[5:16].replace("T", " ") if len(text) >= 16 else text
