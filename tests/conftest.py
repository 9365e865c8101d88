"""Shared helpers: small policies written as TOML, readings at local times, running the core."""

from __future__ import annotations

import datetime as dt
import faulthandler
import os
import signal
import sys
import tomllib
from collections.abc import Iterable, Iterator
from zoneinfo import ZoneInfo

import pytest

from quotad.core.alerts import Alert
from quotad.core.engine import Engine
from quotad.core.policy import Policy
from quotad.core.readings import Reading
from quotad.schedule.calendar import to_micros
from tests.locales import english

# The suite asserts quotad's English, its default: a developer whose shell says LANG=zh_CN.UTF-8 (or LANGUAGE=zh_CN)
# must see it pass. quotad.core.i18n reads the locale at the first message, after this; the commands the tests start
# inherit it. Tests of the Chinese give their commands a locale of their own (tests/locales.py).
os.environ.update(english())
os.environ.pop("LANGUAGE", None)

# A shell's background job (`cmd &` without job control) starts with SIGINT ignored, and every process the suite
# spawns would inherit that: tests that stop a command with Ctrl-C (SIGINT) would hang. The suite makes its own
# children behave as they do from a terminal, whoever launched it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

BASE = """
[township]
id = "t"
name = "测试镇"
timezone = "{tz}"
daily_cap_kwh = {cap}
cap_from = {cap_from}
notice_at = 0.8
warning_at = 0.9
standby_kwh = 50
{township_extra}

[control]
start = {start}
end = {end}
{control_extra}

[[groups]]
id = "paper"
name = "造纸厂"

[[groups]]
id = "seven"
name = "七家"

[rota]
start = {start}
order = ["paper", "seven"]
{rota_extra}

[[firms]]
id = "p"
name = "纸厂"
kind = "large"
group = "paper"

[[firms]]
id = "s"
name = "七厂"
kind = "large"
group = "seven"

[[firms]]
id = "x"
name = "盛达"
kind = "large"
group = "seven"
rota_exempt = true
daily_limit_kwh = 100

[[firms]]
id = "g"
name = "一般"
kind = "general"
monthly_quota_kwh = 310

[[firms]]
id = "w"
name = "作坊"
kind = "workshop"
rest_days = ["sat", "sun"]
standby_kwh = 5
{firms_extra}
"""

METERS = ("p", "s", "x", "g", "w")


def policy_text(
    *,
    tz: str = "Asia/Shanghai",
    cap: float = 100000,
    cap_from: str = "2010-10-01",
    start: str = "2010-10-01",
    end: str = "2010-12-31",
    township_extra: str = "",
    control_extra: str = "",
    rota_extra: str = "",
    firms_extra: str = "",
    meters: Iterable[str] = METERS,
    meter_extra: str = "",
) -> str:
    text = BASE.format(
        tz=tz, cap=cap, cap_from=cap_from, start=start, end=end, township_extra=township_extra,
        control_extra=control_extra, rota_extra=rota_extra, firms_extra=firms_extra,
    )  # fmt: skip
    for firm in meters:
        text += f'\n[[meters]]\nid = "{firm}-m"\nfirm = "{firm}"\n{meter_extra}\n[meters.mqtt]\n'
    return text


def make_policy(**kw: object) -> Policy:
    return Policy.model_validate(tomllib.loads(policy_text(**kw)))  # type: ignore[arg-type]


def at(text: str, tz: str = "Asia/Shanghai") -> int:
    """Event time of a local 'YYYY-MM-DD HH:MM[:SS]' in `tz`."""
    return to_micros(dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)))


def r(meter: str, when: str, kwh: float, tz: str = "Asia/Shanghai") -> Reading:
    return Reading(meter, at(when, tz), kwh)


def run(policy: Policy, readings: Iterable[Reading]) -> tuple[Engine, list[Alert]]:
    engine = Engine(policy)
    alerts: list[Alert] = []
    for reading in readings:
        alerts += engine.ingest(reading)
    return engine, alerts


def rules_of(alerts: Iterable[Alert]) -> list[tuple[str, str, float | None, str]]:
    return [(a.rule, a.severity, a.level, a.period) for a in alerts]


@pytest.fixture
def policy() -> Policy:
    return make_policy()


TEST_LIMIT_S = 600  # the slowest test takes about a minute; one ten times longer is hung


@pytest.fixture(autouse=True)
def _no_test_hangs() -> Iterator[None]:
    """A test that hangs ends the run with every thread's stack on stderr, rather than holding CI for its 90
    minutes (once seen: a cancelled Modbus poller whose cancellation a library had swallowed)."""
    faulthandler.dump_traceback_later(TEST_LIMIT_S, exit=True, file=sys.__stderr__)
    yield
    faulthandler.cancel_dump_traceback_later()
