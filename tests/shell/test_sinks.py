"""The MQTT sink against a real mosquitto that wants a password, and one that speaks only TLS (self-signed CA)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from quotad.config.daemon import MqttSettings
from quotad.core.outputs import Message
from quotad.shell.mqtt import mqtt_client
from quotad.shell.sinks import MqttSink
from quotad.shell.store import Store
from tests.brokers import Mosquitto


def deliver(settings: MqttSettings, store: Store, seconds: float = 3.0) -> MqttSink:
    """Run the sink's delivery loop for a few seconds."""

    async def scenario() -> MqttSink:
        sink = MqttSink(settings, store, "quotad/t/daemon")
        sink.start()
        wake = asyncio.Event()
        wake.set()
        task = asyncio.create_task(sink.deliver(wake))
        await asyncio.sleep(seconds)
        task.cancel()
        await sink.stop()
        return sink

    return asyncio.run(scenario())


def subscriber(settings: MqttSettings, topic: str) -> tuple[mqtt.Client, list[str]]:
    got: list[str] = []
    client = mqtt_client(settings, "test-reader", clean=True)
    client.on_message = lambda c, u, m: got.append(m.payload.decode())
    client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
    client.connect(settings.host, settings.port)
    client.loop_start()
    time.sleep(0.5)
    return client, got


def test_username_and_password_file(tmp_path: Path) -> None:
    (tmp_path / "mq").mkdir()
    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret\n", encoding="utf-8")
    with Mosquitto(data_dir=tmp_path / "mq", users={"quotad": "s3cret"}) as broker:
        good = MqttSettings(port=broker.port, username="quotad", password_file=secret, client_id="q1")
        store = Store(tmp_path / "state")
        store.append("reading", {}, [("mqtt", "alert", Message("quotad/t/alerts/warning/x", '{"id":"a"}').to_json())])
        reader, got = subscriber(good, "quotad/t/alerts/#")
        wrong = tmp_path / "wrong.pass"
        wrong.write_text("guess\n", encoding="utf-8")
        refused = deliver(good.model_copy(update={"password_file": wrong, "client_id": "q2"}), store, 2.0)
        assert refused.delivered == 0
        assert store.backlog("mqtt") == 1  # refused by the broker: kept
        assert deliver(good, store).delivered == 1
        time.sleep(0.3)
        reader.loop_stop()
        assert got == ['{"id":"a"}']
        assert store.backlog("mqtt") == 0


def make_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it."""
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = directory / "san.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1\n", encoding="utf-8")
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=quotad test CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "2", "-extfile", str(ext))  # fmt: skip
    return ca, cert, key


def test_tls_with_a_ca_file(tmp_path: Path) -> None:
    (tmp_path / "mq").mkdir()
    ca, cert, key = make_ca(tmp_path)
    tls = f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
    with Mosquitto(data_dir=tmp_path / "mq", extra=tls) as broker:
        settings = MqttSettings(port=broker.port, ca_file=ca, client_id="q-tls")
        store = Store(tmp_path / "state")
        store.append("reading", {}, [("mqtt", "alert", Message("quotad/t/alerts/notice/x", '{"id":"b"}').to_json())])
        reader, got = subscriber(settings.model_copy(update={"client_id": "r-tls"}), "quotad/t/alerts/#")
        assert deliver(settings, store).delivered == 1
        time.sleep(0.3)
        reader.loop_stop()
        assert got == ['{"id":"b"}']
        plain = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="plain")
        try:  # the broker speaks only TLS: a plain client gets nowhere
            plain.connect("127.0.0.1", broker.port)
            plain.loop_start()
            time.sleep(0.5)
            assert not plain.is_connected()
        except OSError:
            pass
        finally:
            plain.loop_stop()


def test_an_alert_the_broker_refuses_is_kept_and_said_not_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL that forgets one alert topic: over MQTT 3.1.1 mosquitto acknowledges the refused PUBLISH like any
    other, and the alert would be gone. The sink speaks MQTT 5, sees the refusal (0x87) in the PUBACK, keeps the
    alert, says which topic in the log, delivers the others, and delivers the refused one once the ACL is fixed."""
    (tmp_path / "mq").mkdir()
    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret\n", encoding="utf-8")
    users = {"quotad": "s3cret", "inspector": "eyes"}
    forgetful = "user quotad\ntopic write quotad/t/alerts/warning/#\ntopic write quotad/t/daemon\n"
    fixed = forgetful + "topic write quotad/t/alerts/violation/#\n"
    readers = "user inspector\ntopic read quotad/t/#\n"
    store = Store(tmp_path / "state")
    for n, severity in enumerate(["warning", "violation", "warning"]):
        message = Message(f"quotad/t/alerts/{severity}/x", f'{{"id":"{n}"}}')
        store.append("reading", {}, [("mqtt", "alert", message.to_json())])
    settings = MqttSettings(username="quotad", password_file=secret, client_id="q-acl")
    inspector = MqttSettings(username="inspector", password_file=tmp_path / "eyes.pass", client_id="r-acl")
    (tmp_path / "eyes.pass").write_text("eyes\n", encoding="utf-8")
    with Mosquitto(data_dir=tmp_path / "mq", users=users, acl=forgetful + readers) as broker:
        port = {"port": broker.port}
        reader, got = subscriber(inspector.model_copy(update=port), "quotad/t/alerts/#")
        sink = deliver(settings.model_copy(update=port), store, 2.0)
        assert sink.delivered == 2
        assert sorted(got) == ['{"id":"0"}', '{"id":"2"}']
        assert [Message.from_json(i.body).topic for i in store.pending("mqtt")] == ["quotad/t/alerts/violation/x"]
        assert "MQTT broker refused quotad/t/alerts/violation/x (Not authorized)" in caplog.text
        reader.loop_stop()
        broker.acl = fixed + readers
        broker.restart()
        reader, later = subscriber(inspector.model_copy(update=port), "quotad/t/alerts/#")
        assert deliver(settings.model_copy(update=port), store, 2.0).delivered == 1
        time.sleep(0.3)
        reader.loop_stop()
    assert sorted(got) == ['{"id":"0"}', '{"id":"2"}']
    assert later == ['{"id":"1"}']  # the refused alert, once, after the fix
    assert store.backlog("mqtt") == 0
