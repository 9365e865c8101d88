"""`[[channels]]` that load: each kind, its files resolved against the daemon file's folder, the policy's references
to channels accepted, and a secret file others can read warned about like the other secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from quotad.config.channels import DingtalkChannel, EmailChannel, WebhookChannel, WecomChannel
from quotad.config.load import load
from quotad.core.errors import ConfigError

POLICY = Path(__file__).resolve().parent / "broken" / "_valid.toml"
CHANNELS = """
[[channels]]
name = "g-wecom"
kind = "wecom"
url_file = "secrets/wecom.url"

[[channels]]
name = "ding"
kind = "dingtalk"
url_file = "secrets/ding.url"
secret_file = "secrets/ding.key"

[[channels]]
name = "hook"
kind = "webhook"
url_file = "secrets/hook.url"

[[channels]]
name = "mail"
kind = "email"
host = "127.0.0.1"
port = 2525
username = "quotad"
password_file = "secrets/mail.pass"
from = "quotad@town.test"
to = ["leader@town.test"]
"""


def township(tmp_path: Path, contacts: str = "", to: str = "") -> Path:
    text = POLICY.read_text(encoding="utf-8").replace('group = "paper"\n', f'group = "paper"\n{contacts}\n', 1)
    (tmp_path / "township.toml").write_text(text + (f"\n[reports]\nto = {to}\n" if to else ""), encoding="utf-8")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, text in [("wecom.url", "http://127.0.0.1:1/cgi-bin/webhook/send?key=k"),
                       ("ding.url", "https://127.0.0.1:1/robot/send?access_token=t"), ("ding.key", "SECx"),
                       ("hook.url", "http://127.0.0.1:1/hook"), ("mail.pass", "pw")]:  # fmt: skip
        (secrets / name).write_text(text + "\n", encoding="utf-8")
        (secrets / name).chmod(0o600)
    daemon = tmp_path / "quotad.toml"
    daemon.write_text(f'policy = "township.toml"\nstate_dir = "state"\n{CHANNELS}', encoding="utf-8")
    return daemon


def test_every_kind_loads_with_its_files_resolved(tmp_path: Path) -> None:
    contacts = 'contacts = [{ name = "王厂长", channel = "g-wecom" }, { name = "李主任", phone = "138" }]'
    loaded = load(township(tmp_path, contacts, '["mail", "ding"]'), environ={})
    assert loaded.daemon is not None
    wecom, ding, hook, mail = loaded.daemon.channels
    assert isinstance(wecom, WecomChannel)
    assert wecom.url_file == tmp_path / "secrets" / "wecom.url"
    assert isinstance(ding, DingtalkChannel)
    assert ding.secret_file == tmp_path / "secrets" / "ding.key"
    assert isinstance(hook, WebhookChannel)
    assert hook.secret_file is None
    assert isinstance(mail, EmailChannel)
    assert mail.starttls
    assert mail.sender == "quotad@town.test"
    assert mail.password_file == tmp_path / "secrets" / "mail.pass"
    assert loaded.policy.reports.to == ("mail", "ding")


def test_a_url_file_others_can_read_is_warned_about(tmp_path: Path) -> None:
    daemon = township(tmp_path)
    (tmp_path / "secrets" / "wecom.url").chmod(0o644)
    warnings = [str(w) for w in load(daemon, environ={}).warnings]
    assert f"warning: {daemon}:7: channels[0].url_file: {tmp_path}/secrets/wecom.url is readable by every user" in (
        " ".join(warnings)
    )


def test_a_policy_on_its_own_does_not_check_channel_names(tmp_path: Path) -> None:
    township(tmp_path, 'contacts = [{ name = "王厂长", channel = "nowhere" }]')
    assert load(tmp_path / "township.toml", environ={}).policy.firms[0].contacts[0].channel == "nowhere"


def test_an_empty_secret_file_is_a_problem(tmp_path: Path) -> None:
    daemon = township(tmp_path)
    (tmp_path / "secrets" / "ding.key").write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(daemon, environ={})
    assert [str(p) for p in caught.value.problems] == [
        f"{daemon}:13: channels[1].secret_file: {tmp_path}/secrets/ding.key is empty"
    ]


def test_the_example_config_addresses_loopback_only() -> None:
    shipped = Path(__file__).resolve().parent.parent.parent / "config" / "quotad.toml"
    hosts = [line.split("=", 1)[1].split("#")[0].strip() for line in shipped.read_text(encoding="utf-8").splitlines()
             if line.lstrip("# ").startswith(("host =", "url =", "listen ="))]  # fmt: skip
    assert hosts, "no address found in config/quotad.toml"
    assert all("127.0.0.1" in host for host in hosts), hosts


def test_the_station_and_the_residents_channels_are_accepted_when_they_exist(tmp_path: Path) -> None:
    daemon = township(tmp_path, to='["mail"]')
    policy = daemon.parent / "township.toml"
    extra = '\n[residents]\nexperience_dates = [2010-10-23]\nchannels = ["hook", "ding"]\n'
    policy.write_text(policy.read_text(encoding="utf-8") + extra + '\n[enforcement]\nsupply_station = "g-wecom"\n')
    loaded = load(daemon, environ={})
    assert loaded.policy.residents is not None
    assert loaded.policy.residents.channels == ("hook", "ding")
    assert loaded.policy.enforcement.supply_station == "g-wecom"
    policy.write_text(policy.read_text(encoding="utf-8").replace('supply_station = "g-wecom"', 'supply_station = "x"'))
    with pytest.raises(ConfigError) as caught:
        load(daemon, environ={})
    assert [str(p).split(": ", 2)[1:] for p in caught.value.problems] == [
        ["enforcement.supply_station", "unknown channel 'x' (the daemon file's channels: ding, g-wecom, hook, mail)"]
    ]
