"""The console's pages (SPEC "The console"): today, firms, one firm, orders, inspections, alerts, reports, rota;
and the files behind them (reports, photos). Each is rendered on the server from the engine and the journal."""

from __future__ import annotations

import datetime as dt
import json
from itertools import islice
from pathlib import Path
from typing import Any

from aiohttp import web

from quotad.core import console
from quotad.core.inspections import Entry
from quotad.core.orders import STATE_NAMES
from quotad.web.common import (
    FIRMS_PAGE,
    PHOTO,
    REPORT,
    STATIC,
    Base,
    alert_view,
    file_response,
    int_or,
    order_register,
)

__all__ = ["Pages"]


_KINDS = {"wecom": "企业微信群机器人", "dingtalk": "钉钉机器人", "webhook": "Webhook", "email": "邮件"}


class Pages(Base):
    def _today_data(self, t: console.Today | None = None) -> dict[str, Any]:
        engine = self.daemon.journal.engine
        if t is None:
            now = self._now()
            t = console.today(engine, now, self.board.scan(engine, now).states)
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
        scan = self.board.scan(engine, now)
        t = console.today(engine, now, scan.states)
        data = json.dumps(self._today_data(t), ensure_ascii=False).replace("</", "<\\/")
        risky = scan.rows([e for e in scan.entries[:8] if e[4] != "ok"])
        return self._page(request, "today.html", t=t, data=data, risky=risky, channels=self._channels())

    def _channels(self) -> list[dict[str, Any]]:
        """Each notice channel's queue: is it delivering, what waits, what it last answered (SPEC "Notices and
        channels"): a 供电所 robot that stopped answering is seen here, not only in the log."""
        store = self.daemon.store
        return [
            {"name": name, "kind": _KINDS.get(c.channel.kind, c.channel.kind), "ok": c.trouble is None,
             "answer": str(c.trouble or ""), "pending": store.backlog(c.sink), "delivered": c.delivered}
            for name, c in sorted(self.daemon.couriers.items())
        ]  # fmt: skip

    async def today_json(self, request: web.Request) -> web.Response:
        return web.json_response(self._today_data(), dumps=lambda o: json.dumps(o, ensure_ascii=False))

    async def firms_page(self, request: web.Request) -> web.Response:
        engine = self.daemon.journal.engine
        scan = self.board.scan(engine, self._now())
        state, kind, q = request.query.get("state", ""), request.query.get("kind", ""), request.query.get("q", "")
        state = state if state in console.FIRM_STATES else ""
        kind = kind if kind in console.KIND_NAMES else ""
        chosen = scan.select(state, kind, q.strip())
        page = max(1, int_or(request.query.get("page"), 1))
        pages = max(1, -(-len(chosen) // FIRMS_PAGE))
        page = min(page, pages)
        shown = scan.rows(chosen[(page - 1) * FIRMS_PAGE : page * FIRMS_PAGE])
        total = len(chosen)
        return self._page(request, "firms.html", rows=shown, total=total, page=page, pages=pages, state=state,
                          kind=kind, q=q)  # fmt: skip

    async def firm_page(self, request: web.Request) -> web.Response:
        engine = self.daemon.journal.engine
        firm_id = request.match_info["firm"]
        firm = engine.firms.get(firm_id)
        if firm is None:
            raise web.HTTPNotFound(text="没有这家企业")
        now = self._now()
        row = self.board.scan(engine, now, only=firm_id).row(firm_id)
        assert row is not None  # the firm is the policy's
        days = console.firm_days(engine, firm_id, now)
        store = self.daemon.store
        orders = [o for o in order_register(self.daemon) if o.firm == firm_id]
        visits = [v for v in store.visits() if v["firm"] == firm_id][::-1]
        alerts = [
            alert_view(a, self._names())
            for a in islice((a for a in store.alert_payloads(newest_first=True) if a.get("firm") == firm_id), 50)
        ]
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

        alerts = [
            alert_view(a, self._names())
            for a in islice(filter(keep, self.daemon.store.alert_payloads(newest_first=True)), 200)
        ]
        firms = sorted(self.daemon.journal.engine.policy.firms, key=lambda f: f.id)
        return self._page(request, "alerts.html", alerts=alerts, severity=severity, firm=firm, rule=rule, firms=firms,
                          last=f"{self.boot}-{self._seq}")  # fmt: skip

    async def reports_page(self, request: web.Request) -> web.Response:
        folder = self.daemon.settings.state_dir / "reports"
        files = sorted((p for p in folder.glob("*") if REPORT.match(p.name)), reverse=True) if folder.is_dir() else []
        by_name: dict[str, list[Path]] = {}
        for p in files:
            by_name.setdefault(p.stem, []).append(p)
        return self._page(request, "reports.html", reports=sorted(by_name.items(), reverse=True))

    async def report_file(self, request: web.Request) -> web.FileResponse:
        name = request.match_info["name"]
        path = self.daemon.settings.state_dir / "reports" / name
        if not REPORT.match(name) or not path.is_file():
            raise web.HTTPNotFound(text="没有这份报告")
        return file_response(path, name.rsplit(".", 1)[1])

    async def favicon(self, request: web.Request) -> web.Response:
        body, content_type, _digest = STATIC["favicon.svg"]
        return web.Response(body=body, content_type=content_type, headers={"Cache-Control": "max-age=86400"})

    async def photo(self, request: web.Request) -> web.FileResponse:
        name = request.match_info["name"]
        path = self.daemon.settings.state_dir / "photos" / name
        if not PHOTO.match(name) or not path.is_file():
            raise web.HTTPNotFound(text="没有这张照片")
        return file_response(path, name.rsplit(".", 1)[1])

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
