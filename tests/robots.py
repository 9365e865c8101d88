"""Real local servers for the notice channels, on free loopback ports: nothing in the tests reaches off the machine.

`RobotServer` is one HTTP server implementing the request contracts of
- 企业微信群机器人: POST /cgi-bin/webhook/send?key=KEY, JSON `{"msgtype":"text","text":{"content":...}}`; answers
  `{"errcode":0,"errmsg":"ok"}`, 93000 for a wrong key, 45009 when rate limited;
- 钉钉自定义机器人 (加签): POST /robot/send?access_token=TOKEN&timestamp=MS&sign=SIGN, the same body; the signature
  checked as the service does (HMAC-SHA256 of "timestamp\\nsecret" with the secret, base64; a timestamp more than an
  hour off is refused), 310000 on a bad sign, 300001 for a wrong token, 130101 when rate limited;
- a webhook receiver: POST /hook, JSON, `X-Quotad-Signature: sha256=<hex HMAC of the body>` verified (401 if wrong).

`mode` makes it answer as a service in trouble: "ok", "rate" (each robot's rate-limit reply; 429 on the hook),
"5xx" (503). Every request received is kept in `received`, with whether it was accepted. The webhook receiver keeps
the `Idempotency-Key`s it accepted, as the contract asks of a receiver: a key seen before is answered 200 again and
marked `repeat` (acted on once). `hold(after=N)` makes the requests after the Nth wait for their answer (received,
acted on, not yet answered: a sender killed meanwhile never learns that they arrived) until `release()`.

`SmtpServer`: aiosmtpd on a free loopback port, keeping each message; `refuse` makes RCPT answer 550.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.brokers import free_port

__all__ = ["Received", "RobotServer", "SmtpServer", "certificate"]

WECOM_KEY = "wecom-test-key"
DINGTALK_TOKEN = "dingtalk-test-token"
DINGTALK_SECRET = "SECdingtalk-test-secret"
HOOK_SECRET = "hook-test-secret"


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    accepted: bool
    repeat: bool = False

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _State:
    mode: str = "ok"
    received: list[Received] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    answer: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)
    hold_after: int | None = None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status, answer = self._answer(url.path, query, body)
        accepted = status == 200 and answer.get("errcode", 0) == 0
        headers = {k.lower(): v for k, v in self.headers.items()}
        state = self.server.state
        key = headers.get("idempotency-key")
        repeat = accepted and key is not None and key in state.keys
        if accepted and key is not None:
            state.keys.add(key)
        state.received.append(Received(url.path, query, headers, body, accepted, repeat))
        if state.hold_after is not None and len(state.received) > state.hold_after and not state.answer.is_set():
            state.holding.set()
            state.answer.wait(30)
        raw = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _answer(self, path: str, query: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        mode = self.server.state.mode
        if mode == "5xx":
            return 503, {"error": "service unavailable"}
        if path == "/hook":
            return self._hook(body, mode)
        text = _text_message(body)
        if path == "/cgi-bin/webhook/send":
            if query.get("key") != WECOM_KEY:
                return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
            if mode == "rate":
                return 200, {"errcode": 45009, "errmsg": "api freq out of limit"}
        elif path == "/robot/send":
            if query.get("access_token") != DINGTALK_TOKEN:
                return 200, {"errcode": 300001, "errmsg": "token is not exist"}
            refused = _dingtalk_sign_problem(query)
            if refused:
                return 200, {"errcode": 310000, "errmsg": refused}
            if mode == "rate":
                return 200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
        else:
            return 404, {"error": "not found"}
        if text is None:
            return 200, {"errcode": 40008, "errmsg": "invalid message type"}
        return 200, {"errcode": 0, "errmsg": "ok"}

    def _hook(self, body: bytes, mode: str) -> tuple[int, dict[str, Any]]:
        expected = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(self.headers.get("X-Quotad-Signature", ""), expected):
            return 401, {"error": "bad signature"}
        if not self.headers.get("Idempotency-Key"):
            return 400, {"error": "no Idempotency-Key"}
        if mode == "rate":
            return 429, {"error": "too many requests"}
        return 200, {"ok": True}


def _text_message(body: bytes) -> str | None:
    try:
        payload = json.loads(body)
        content = payload["text"]["content"]
    except (ValueError, KeyError, TypeError):
        return None
    return content if payload.get("msgtype") == "text" and isinstance(content, str) and content else None


def _dingtalk_sign_problem(query: dict[str, str]) -> str | None:
    """The service's check: the timestamp within an hour of now, the sign recomputed from it and the secret."""
    timestamp, sign = query.get("timestamp", ""), query.get("sign", "")
    if not timestamp.isdigit() or abs(time.time() * 1000 - int(timestamp)) > 3600 * 1000:
        return "sign not match, more: [timestamp is over 1 hour]"
    digest = hmac.new(DINGTALK_SECRET.encode(), f"{timestamp}\n{DINGTALK_SECRET}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), sign):  # parse_qsl has URL-decoded it
        return "sign not match"
    return None


class _Server(ThreadingHTTPServer):
    state: _State


class RobotServer:
    """The robots and the webhook receiver on one free loopback port, in a thread."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = _State()
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def received(self) -> list[Received]:
        return self._server.state.received

    def set_mode(self, mode: str) -> None:
        self._server.state.mode = mode

    def hold(self, after: int = 0) -> threading.Event:
        """Requests after the first `after` received are received but not answered until `release()`; the event is
        set once one is waiting."""
        state = self._server.state
        state.holding.clear()
        state.answer.clear()
        state.hold_after = after
        return state.holding

    def release(self) -> None:
        self._server.state.answer.set()

    def url(self, kind: str, key: str | None = None) -> str:
        base = f"http://127.0.0.1:{self.port}"
        if kind == "wecom":
            return f"{base}/cgi-bin/webhook/send?key={key or WECOM_KEY}"
        if kind == "dingtalk":
            return f"{base}/robot/send?access_token={key or DINGTALK_TOKEN}"
        return f"{base}/hook"

    def __enter__(self) -> RobotServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Keeper:
    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, Message]] = []
        self.refuse = False

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append((envelope, message_from_bytes(content, policy=policy.default)))
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on a free loopback port: plain SMTP, or with `tls` (a folder from `certificate`) STARTTLS required
    before anything is sent, and with `login` (user, password) AUTH required, over TLS only."""

    def __init__(self, *, tls: Path | None = None, login: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.keeper = _Keeper()
        self.logins: list[str] = []
        options: dict[str, Any] = {}
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls / "cert.pem", tls / "key.pem")
            options.update(tls_context=context, require_starttls=True)
        if login is not None:

            def authenticator(
                server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
            ) -> AuthResult:
                given = (data.login.decode(), data.password.decode()) if isinstance(data, LoginPassword) else None
                self.logins.append(given[0] if given else "?")
                return AuthResult(success=given == login, handled=False)  # aiosmtpd answers 235 or 535

            options.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)
        self._controller = Controller(self.keeper, hostname="127.0.0.1", port=self.port, **options)

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._controller.stop()


def certificate(folder: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 (cert.pem, key.pem in `folder`), made by openssl: it is its own CA."""
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = str(folder / "key.pem"), str(folder / "cert.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    return folder
