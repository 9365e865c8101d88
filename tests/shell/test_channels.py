"""The channel senders against real local servers (tests/robots.py): what each service is sent, and each answer read
as the right outcome (delivered; refused for good; worth retrying)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from quotad.config.channels import DingtalkChannel, EmailChannel, WebhookChannel, WecomChannel
from quotad.shell.channels import Attachment, Message, dingtalk_signed_url, send
from tests.brokers import free_port
from tests.robots import DINGTALK_SECRET, HOOK_SECRET, RobotServer, SmtpServer, certificate

MESSAGE = Message("m-1", "test", "quotad 测试消息", "测试镇 通知渠道 已接通")


@pytest.fixture
def robots() -> Iterator[RobotServer]:
    with RobotServer() as server:
        yield server


def secret(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def wecom(tmp_path: Path, url: str) -> WecomChannel:
    return WecomChannel(name="w", kind="wecom", url_file=secret(tmp_path, "w.url", url))


def dingtalk(tmp_path: Path, url: str, key: str = DINGTALK_SECRET) -> DingtalkChannel:
    return DingtalkChannel(
        name="d", kind="dingtalk", url_file=secret(tmp_path, "d.url", url), secret_file=secret(tmp_path, "d.key", key)
    )


def hook(tmp_path: Path, url: str, key: str | None = HOOK_SECRET) -> WebhookChannel:
    secret_file = None if key is None else secret(tmp_path, "h.key", key)
    return WebhookChannel(name="h", kind="webhook", url_file=secret(tmp_path, "h.url", url), secret_file=secret_file)


def test_wecom_delivers_the_robots_text_message(robots: RobotServer, tmp_path: Path) -> None:
    outcome = send(wecom(tmp_path, robots.url("wecom")), MESSAGE)
    assert (outcome.delivered, outcome.code, outcome.message) == (True, "0", "ok")
    (got,) = robots.received
    assert got.json() == {"msgtype": "text", "text": {"content": "quotad 测试消息\n测试镇 通知渠道 已接通"}}


@pytest.mark.parametrize(
    ("kind", "mode", "key", "code", "retry"),
    [
        ("wecom", "rate", None, "45009", True),
        ("wecom", "ok", "wrong-key", "93000", False),
        ("wecom", "5xx", None, "503", True),
        ("dingtalk", "rate", None, "130101", True),
        ("dingtalk", "ok", "wrong-token", "300001", False),
        ("dingtalk", "5xx", None, "503", True),
    ],
)
def test_a_robots_refusal_is_read_with_its_code_and_whether_to_retry(
    robots: RobotServer, tmp_path: Path, kind: str, mode: str, key: str | None, code: str, retry: bool
) -> None:
    robots.set_mode(mode)
    channel = wecom(tmp_path, robots.url(kind, key)) if kind == "wecom" else dingtalk(tmp_path, robots.url(kind, key))
    outcome = send(channel, MESSAGE)
    assert (outcome.delivered, outcome.code, outcome.retry) == (False, code, retry)


def test_dingtalk_signs_as_the_service_checks(robots: RobotServer, tmp_path: Path) -> None:
    outcome = send(dingtalk(tmp_path, robots.url("dingtalk")), MESSAGE)
    assert outcome.delivered, outcome
    (got,) = robots.received
    assert got.json()["msgtype"] == "text"
    assert abs(int(got.query["timestamp"]) - time.time() * 1000) < 60_000


def test_dingtalk_refuses_a_wrong_secret_and_a_stale_timestamp(robots: RobotServer, tmp_path: Path) -> None:
    wrong = send(dingtalk(tmp_path, robots.url("dingtalk"), key="SECwrong"), MESSAGE)
    stale = send(dingtalk(tmp_path, robots.url("dingtalk")), MESSAGE, now=time.time() - 2 * 3600)
    assert (wrong.delivered, wrong.code, wrong.retry) == (False, "310000", False)
    assert (stale.code, stale.message) == ("310000", "sign not match, more: [timestamp is over 1 hour]")


def test_the_dingtalk_sign_is_url_encoded_in_the_query() -> None:
    # base64 holds '+', '/' and '=': sent raw, '+' would arrive as a space and the service would refuse the sign
    url = dingtalk_signed_url("https://127.0.0.1/robot/send?access_token=t", "this is secret", 1577262236.757)
    assert url.startswith("https://127.0.0.1/robot/send?access_token=t&timestamp=1577262236757&sign=")
    sign = url.rpartition("sign=")[2]
    digest = hmac.new(b"this is secret", b"1577262236757\nthis is secret", hashlib.sha256).digest()
    assert urllib.parse.unquote_plus(sign) == base64.b64encode(digest).decode()
    assert not set(sign) & set("+/=")


def test_the_webhook_is_signed_and_carries_the_idempotency_key(robots: RobotServer, tmp_path: Path) -> None:
    outcome = send(hook(tmp_path, robots.url("webhook")), MESSAGE)
    assert (outcome.delivered, outcome.code) == (True, "200")
    (got,) = robots.received
    assert got.json() == {"id": "m-1", "kind": "test", "title": "quotad 测试消息", "text": "测试镇 通知渠道 已接通"}
    assert got.headers["idempotency-key"] == "m-1"
    expected = hmac.new(HOOK_SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-quotad-signature"] == f"sha256={expected}"


@pytest.mark.parametrize(
    ("mode", "key", "code", "retry"),
    [("rate", HOOK_SECRET, "429", True), ("5xx", HOOK_SECRET, "503", True), ("ok", "wrong", "401", False)],
)
def test_the_webhooks_refusals(
    robots: RobotServer, tmp_path: Path, mode: str, key: str, code: str, retry: bool
) -> None:
    robots.set_mode(mode)
    outcome = send(hook(tmp_path, robots.url("webhook"), key), MESSAGE)
    assert (outcome.delivered, outcome.code, outcome.retry) == (False, code, retry)


def test_an_unreachable_channel_is_worth_retrying(tmp_path: Path) -> None:
    outcome = send(wecom(tmp_path, f"http://127.0.0.1:{free_port()}/cgi-bin/webhook/send?key=k"), MESSAGE)
    assert (outcome.delivered, outcome.retry, outcome.code) == (False, True, "ConnectionRefusedError")


def test_a_url_file_changed_to_another_scheme_is_not_fetched(tmp_path: Path) -> None:
    outcome = send(wecom(tmp_path, f"file://{tmp_path}/w.url"), MESSAGE)
    assert (outcome.delivered, outcome.retry, outcome.code) == (False, False, "url")


def email(port: int, *, starttls: bool = False, **more: object) -> EmailChannel:
    return EmailChannel.model_validate(
        {"name": "m", "kind": "email", "host": "127.0.0.1", "port": port, "from": "quotad@town.test",
         "to": ["leader@town.test", "office@town.test"], "starttls": starttls, **more}
    )  # fmt: skip


def test_email_delivers_the_text_and_the_attachment() -> None:
    report = Attachment("日报-2010-10-19.xlsx", b"PK\x03\x04 a spreadsheet")
    with SmtpServer() as smtp:
        outcome = send(
            email(smtp.port), Message("r-2010-10-19", "report", "测试镇 日报", "昨日用电见附件。", (report,))
        )
        assert (outcome.delivered, outcome.code) == (True, "250"), outcome
        ((envelope, mail),) = smtp.keeper.messages
    assert envelope.rcpt_tos == ["leader@town.test", "office@town.test"]
    assert mail["Subject"] == "测试镇 日报"
    assert mail["Message-ID"] == "<r-2010-10-19@town.test>"
    body, attached = [part for part in mail.walk() if not part.is_multipart()]
    assert body.get_payload(decode=True).decode("utf-8").strip() == "昨日用电见附件。"
    assert attached.get_filename() == "日报-2010-10-19.xlsx"
    assert attached.get_payload(decode=True) == b"PK\x03\x04 a spreadsheet"


def test_email_refused_recipients_and_a_server_without_starttls() -> None:
    with SmtpServer() as smtp:
        smtp.keeper.refuse = True
        refused = send(email(smtp.port), MESSAGE)
        smtp.keeper.refuse = False
        no_tls = send(email(smtp.port, starttls=True), MESSAGE)  # aiosmtpd here offers no STARTTLS
    assert (refused.delivered, refused.code, refused.retry) == (False, "550", False)
    assert (no_tls.delivered, no_tls.retry, no_tls.code) == (False, False, "SMTPNotSupportedError")


def test_email_to_a_closed_port_is_worth_retrying() -> None:
    outcome = send(email(free_port()), MESSAGE)
    assert (outcome.delivered, outcome.retry) == (False, True)


def test_email_over_starttls_with_a_login(tmp_path: Path) -> None:
    """A relay that requires STARTTLS and then a login: the certificate checked against the channel's ca_file, the
    password read from its file; a wrong password refused (535, not worth retrying); without ca_file the self-signed
    certificate is not trusted (not worth retrying either)."""
    tls = certificate(tmp_path / "tls")
    (tmp_path / "mail.pass").write_text("s3cret\n")
    (tmp_path / "wrong.pass").write_text("guess\n")
    with SmtpServer(tls=tls, login=("quotad", "s3cret")) as smtp:
        trusted = {"ca_file": tls / "cert.pem", "username": "quotad"}
        sent = send(email(smtp.port, starttls=True, password_file=tmp_path / "mail.pass", **trusted), MESSAGE)
        wrong = send(email(smtp.port, starttls=True, password_file=tmp_path / "wrong.pass", **trusted), MESSAGE)
        untrusted = send(
            email(smtp.port, starttls=True, username="quotad", password_file=tmp_path / "mail.pass"), MESSAGE
        )
        plain = send(email(smtp.port), MESSAGE)  # no STARTTLS asked: the relay refuses to go on
    assert (sent.delivered, sent.code) == (True, "250"), sent
    assert (wrong.delivered, wrong.retry, wrong.code) == (False, False, "535")
    assert (untrusted.delivered, untrusted.retry, untrusted.code) == (False, False, "SSLCertVerificationError")
    assert not plain.delivered
    assert len(smtp.keeper.messages) == 1
    assert smtp.logins == ["quotad"] * 3  # the right password once; the wrong one by PLAIN, then by LOGIN
