"""Sending one message on one channel (SPEC "Notices and channels"): 企业微信 and 钉钉 group robots, a signed JSON
webhook, SMTP. Each send answers an `Outcome`: delivered, or failed with the channel's own code and message and
whether trying again later may help (rate limited, a 5xx, the service unreachable) or not (a wrong key, a 4xx).

The standard library (urllib, smtplib), blocking, with a timeout: a send is one request, smtplib is blocking anyway,
and the caller (`quotad notify test`; the daemon's per-channel delivery, which runs each in a thread) owns retries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import mimetypes
import re
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from quotad.config.channels import Channel, DingtalkChannel, EmailChannel, WebhookChannel, WecomChannel
from quotad.config.daemon import read_secret

__all__ = ["Attachment", "Message", "Outcome", "dingtalk_signed_url", "send"]

log = logging.getLogger(__name__)

# The robots' answers that mean "too many, later": 企业微信 45009 (API freq out of limit), 钉钉 130101 (send too fast).
RATE_LIMITED = {"wecom": {45009}, "dingtalk": {130101}}
BUSY = -1  # both robots' "系统繁忙" (system busy): later
TIMEOUT_S = 15.0
_NOT_ATEXT = r"[^A-Za-z0-9.!#$%&*+/=?^_`{|}~-]"  # what a Message-ID's left part may not hold


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime: str = ""


@dataclass(frozen=True)
class Message:
    """One notice: `id` is stable (the idempotency key: the same notice sent again has the same id)."""

    id: str
    kind: str  # what it is: "test", "rota", "alert", "cutoff", "report", ...
    title: str
    text: str
    attachments: tuple[Attachment, ...] = ()
    extra: tuple[tuple[str, Any], ...] = ()  # more fields for a webhook's JSON


@dataclass(frozen=True)
class Outcome:
    """What the channel answered. `code`: the channel's own (errcode, HTTP status, SMTP reply code), or the
    error's name when there was no answer."""

    delivered: bool
    retry: bool
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code} {self.message}".strip()


def send(channel: Channel, message: Message, *, timeout: float = TIMEOUT_S, now: float | None = None) -> Outcome:
    """Send `message` on `channel` once. `now`: the Unix time DingTalk's signature is made for (default: the clock)."""
    if isinstance(channel, EmailChannel):
        return _send_email(channel, message, timeout)
    url = _first_line(channel.url_file)
    if not url.startswith(("http://", "https://")):  # checked at load, but the file may have changed since
        return Outcome(False, False, "url", f"{channel.url_file}: not an http:// or https:// URL")
    if isinstance(channel, WecomChannel):
        return _robot("wecom", url, _text_body(message), timeout)
    if isinstance(channel, DingtalkChannel):
        signed = dingtalk_signed_url(url, _first_line(channel.secret_file), time.time() if now is None else now)
        return _robot("dingtalk", signed, _text_body(message), timeout)
    return _send_webhook(channel, url, message, timeout)


def _first_line(path: Path) -> str:
    return read_secret(path).get_secret_value()


def _text_body(message: Message) -> bytes:
    content = f"{message.title}\n{message.text}" if message.title else message.text
    return json.dumps({"msgtype": "text", "text": {"content": content}}, ensure_ascii=False).encode()


def dingtalk_signed_url(url: str, secret: str, now: float) -> str:
    """DingTalk's 加签: `timestamp` (ms) and `sign` = base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}")),
    URL-encoded, appended to the robot's URL."""
    timestamp = str(int(now * 1000))
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(digest).decode())
    return f"{url}{'&' if '?' in url else '?'}timestamp={timestamp}&sign={sign}"


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes] | Outcome:
    """POST `body`: the HTTP status and the answer's body, or the outcome of a request that got no answer."""
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json; charset=utf-8")
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return Outcome(False, True, type(reason).__name__, str(reason))


def _http_outcome(status: int, answer: bytes) -> Outcome:
    text = answer.decode("utf-8", errors="replace").strip()[:500]
    if 200 <= status < 300:
        return Outcome(True, False, str(status), text)
    return Outcome(False, status == 429 or status >= 500, str(status), text)


def _robot(kind: str, url: str, body: bytes, timeout: float) -> Outcome:
    """企业微信 / 钉钉: HTTP 200 with `{"errcode": 0, "errmsg": "ok"}` is delivered; another errcode is the robot's
    refusal (a rate limit is worth retrying, a wrong key or a bad sign is not)."""
    answered = _post(url, body, {}, timeout)
    if isinstance(answered, Outcome):
        return answered
    status, raw = answered
    if status != 200:
        return _http_outcome(status, raw)
    try:
        answer = json.loads(raw)
        errcode, errmsg = int(answer["errcode"]), str(answer.get("errmsg", ""))
    except (ValueError, KeyError, TypeError):
        return Outcome(False, True, str(status), raw.decode("utf-8", errors="replace")[:500])
    if errcode == 0:
        return Outcome(True, False, "0", errmsg)
    return Outcome(False, errcode in RATE_LIMITED[kind] or errcode == BUSY, str(errcode), errmsg)


def webhook_body(message: Message) -> bytes:
    payload: dict[str, Any] = {"id": message.id, "kind": message.kind, "title": message.title, "text": message.text}
    payload.update(dict(message.extra))
    return json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()


def _send_webhook(channel: WebhookChannel, url: str, message: Message, timeout: float) -> Outcome:
    """A JSON POST with `Idempotency-Key: <id>`; `X-Quotad-Signature: sha256=<hex HMAC of the body>` when the
    channel has a secret. Any 2xx is delivered."""
    body = webhook_body(message)
    headers = {"Idempotency-Key": message.id}
    if channel.secret_file is not None:
        digest = hmac.new(_first_line(channel.secret_file).encode(), body, hashlib.sha256).hexdigest()
        headers["X-Quotad-Signature"] = f"sha256={digest}"
    answered = _post(url, body, headers, timeout)
    return answered if isinstance(answered, Outcome) else _http_outcome(*answered)


def _email(channel: EmailChannel, message: Message) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = channel.sender
    mail["To"] = ", ".join(channel.to)
    mail["Subject"] = message.title or message.text.splitlines()[0][:60]
    domain = channel.sender.rpartition("@")[2]
    mail["Message-ID"] = (
        f"<{re.sub(r'[^A-Za-z0-9.!#$%&*+/=?^_`{|}~-]', '.', message.id)}@{domain}>"  # its id, as an atom
    )
    mail.set_content(message.text)
    for item in message.attachments:
        mime = item.mime or mimetypes.guess_type(item.filename)[0] or "application/octet-stream"
        maintype, _sep, subtype = mime.partition("/")
        mail.add_attachment(item.content, maintype=maintype, subtype=subtype, filename=item.filename)
    return mail


def _send_email(channel: EmailChannel, message: Message, timeout: float) -> Outcome:
    """SMTP, STARTTLS when the channel asks (it does by default), a login when it has a user. A 4xx reply or no
    answer: retry; a 5xx (a refused login, refused recipients): not."""
    try:
        with smtplib.SMTP(channel.host, channel.port, timeout=timeout) as smtp:
            if channel.starttls:
                cafile = str(channel.ca_file) if channel.ca_file is not None else None
                smtp.starttls(context=ssl.create_default_context(cafile=cafile))
            if channel.username is not None and channel.password_file is not None:
                smtp.login(channel.username, _first_line(channel.password_file))
            refused = smtp.send_message(_email(channel, message))
    except smtplib.SMTPRecipientsRefused as exc:
        codes = sorted({code for code, _text in exc.recipients.values()})
        return Outcome(False, all(400 <= c < 500 for c in codes), ",".join(map(str, codes)), str(exc.recipients))
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode("utf-8", errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc)
        return Outcome(False, 400 <= exc.smtp_code < 500, str(exc.smtp_code), text)
    except smtplib.SMTPNotSupportedError as exc:  # STARTTLS asked of a server that does not offer it
        return Outcome(False, False, type(exc).__name__, str(exc))
    except ssl.SSLCertVerificationError as exc:  # not the relay it should be (or set ca_file): not worth retrying
        return Outcome(False, False, type(exc).__name__, str(exc))
    except (smtplib.SMTPException, OSError) as exc:
        return Outcome(False, True, type(exc).__name__, str(exc))
    if refused:
        return Outcome(True, False, "250", f"refused by some: {refused}")
    return Outcome(True, False, "250", "ok")
