"""What the console's parts share: its constants, the small helpers of its pages and forms, and `Base`, the
attributes and the rendering every part of the `Console` uses."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from aiohttp import web
from jinja2 import Environment

from quotad.core.alerts import SEVERITY_NAMES
from quotad.core.console import Board
from quotad.core.views import event_now
from quotad.web.auth import Session

if TYPE_CHECKING:
    from quotad.config.daemon import WebSettings
    from quotad.shell.daemon import Daemon

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
CID = re.compile(r"^[0-9a-f]{32}$")
SAFE_NEXT = re.compile(r"^/[A-Za-z0-9/_\-?=&.%]*$")
REPORT = re.compile(r"^[A-Za-z0-9_\-.]+\.(html|pdf|xlsx)$")
PHOTO = re.compile(r"^[0-9a-f]{64}\.(jpg|png|webp)$")
CONTENT_TYPES: Final = {
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


@contextlib.contextmanager
def quiet_collector() -> Iterator[None]:
    """No cyclic garbage collection while a page is made. A page of 10,000 firms makes tens of thousands of objects
    that live until it is sent, then die by reference counting; meanwhile they push the collector into full
    collections of everything the daemon made since it settled (`settle_memory`): 50-80 ms pauses measured, for
    garbage that reference counting frees anyway. The collector runs as usual between pages."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Base:
    """The attributes the console's parts share (set by `Console.__init__`), and its rendering."""

    daemon: Daemon
    settings: WebSettings
    env: Environment
    board: Board  # the firms' rows, fast (its day's fixed part kept between pages)
    boot: str  # this run's token in a stream's event ids
    _seq: int  # the last alert's number in this run

    def _refused(self, request: web.Request, status: int, text: str) -> web.Response:
        body = self.env.get_template("refused.html").render(status=status, text=text, session=None)
        response = web.Response(status=status, text=body, content_type="text/html")
        harden(response, cache=False)
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

    def _now(self) -> int:
        engine = self.daemon.journal.engine
        return event_now(engine, self.daemon.clock.now())

    def _names(self) -> dict[str, str]:
        return {f.id: f.name for f in self.daemon.journal.engine.policy.firms}


# -- helpers -----------------------------------------------------------------------------------


def _static_files() -> dict[str, tuple[bytes, str, str]]:
    """The files under static/, by their path there: (content, type, digest)."""
    types = {".css": "text/css", ".js": "application/javascript", ".svg": "image/svg+xml"}
    found: dict[str, tuple[bytes, str, str]] = {}
    root = resources.files("quotad.web") / "static"
    folders = [(root, "")]
    while folders:
        folder, prefix = folders.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                folders.append((entry, f"{prefix}{entry.name}/"))
            elif Path(entry.name).suffix in types:
                data = entry.read_bytes()
                found[prefix + entry.name] = (
                    data,
                    types[Path(entry.name).suffix],
                    hashlib.sha256(data).hexdigest()[:10],
                )
    return found


STATIC: Final = _static_files()
COMPRESSED: Final = frozenset({"text/html", "text/css", "application/javascript", "application/json", "image/svg+xml"})


def static_url(name: str) -> str:
    """`/static/NAME?v=<digest>`: a new release's files are fetched afresh, the same ones come from the cache."""
    return f"/static/{name}?v={STATIC[name][2]}"


def order_register(daemon: Daemon) -> list[Any]:
    from quotad.shell.register import order_history

    latest: dict[str, Any] = {}
    for order in order_history(daemon.store):
        latest[order.alert_id] = order
    return list(latest.values())


def redirect(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


def take_cid(request: web.Request, form: Any) -> None:
    cid = str(form.get("cid", ""))
    if CID.match(cid):
        request["cid"] = cid


def back_to(form: Any, default: str) -> str:
    back = str(form.get("back", "")) or default
    return back if SAFE_NEXT.match(back) and not back.startswith("//") else default


def with_query(path: str, **query: str) -> str:
    base = path.split("?", 1)[0]
    return base + "?" + "&".join(f"{k}={quote(v)}" for k, v in query.items())


def sse(kind: str, ident: str | None, data: str) -> bytes:
    head = f"event: {kind}\n" + (f"id: {ident}\n" if ident else "")
    return (head + "".join(f"data: {line}\n" for line in data.splitlines()) + "\n").encode()


def harden(response: web.StreamResponse, *, cache: bool) -> None:
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "same-origin")
    if not cache:
        h.setdefault("Cache-Control", "no-store")


def file_response(path: Path, ext: str) -> web.FileResponse:
    response = web.FileResponse(path, headers={"Content-Type": CONTENT_TYPES[ext]})
    return response


def alert_view(payload: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
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


def int_or(text: str | None, default: int) -> int:
    try:
        return int(text or default)
    except ValueError:
        return default


def host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def kwh_text(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def pct_text(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def hm(value: str | None) -> str:
    return str(value or "")[11:16]


def when(value: str | None) -> str:
    text = str(value or "")
    return text[5:16].replace("T", " ") if len(text) >= 16 else text
