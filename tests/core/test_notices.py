"""What goes out on the notice channels, to whom (`quotad.core.notices`, issue 16 part 2): who gets what, the ids
(stable, unique per event and channel, naming their channel), pending orders silent, the 供电所 deduplicated, the
rota notice's allowance the firm status's own figures, short enough for a lock screen."""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import replace

from hypothesis import example, given, settings
from hypothesis import strategies as st

from quotad.core.alerts import Alert
from quotad.core.enforcement import command, issue
from quotad.core.engine import Engine
from quotad.core.notice_texts import NAME_MAX, ROTA_MAX, allowance
from quotad.core.notices import (
    Notice,
    firm_channels,
    order_notices,
    reading_notices,
    report_notices,
    residents_notices,
    rota_notices,
)
from quotad.core.orders import Change, Order
from quotad.core.policy import Policy
from quotad.core.readings import Reading
from quotad.core.views import firm_status_messages
from tests.conftest import at, policy_text, r

FIRMS = ("p", "s", "x", "g", "w")
CONTACTS = {"p": ["p-wecom"], "x": ["x-wecom", "x-ding", "x-wecom"], "g": ["g-hook"], "w": ["w-wecom"]}
AT = "2010-10-21T09:00:00+08:00"


def township(
    contacts: dict[str, Sequence[str]] | None = None,
    station: str | None = "gds",
    leaders: Sequence[str] = ("leaders",),
    residents: Sequence[str] = ("town",),
    enforcement: str = "",
    meter_extra: str = "",
) -> Policy:
    """The test township (tests/conftest.py) with contacts on channels, a 供电所, leaders and residents' channels."""
    text = policy_text(meter_extra=meter_extra)
    for firm, channels in (CONTACTS if contacts is None else contacts).items():
        people = ", ".join(f'{{ name = "联系人{n}", channel = "{c}" }}' for n, c in enumerate(channels))
        text = text.replace(f'id = "{firm}"\n', f'id = "{firm}"\ncontacts = [{people}]\n', 1)
    text += "\n[enforcement]\n" + (f'supply_station = "{station}"\n' if station else "") + enforcement
    text += f"\n[reports]\nto = {json.dumps(list(leaders))}\n"
    text += f'\n[residents]\nexperience_weekday = "wed"\nchannels = {json.dumps(list(residents))}\n'
    return Policy.model_validate(tomllib.loads(text))


def feed(engine: Engine, readings: Sequence[Reading]) -> list[Notice]:
    """Each reading's notices, the orders it made or changed found as the journal finds them."""
    out = []
    for reading in readings:
        before = dict(engine.orders)
        alerts = engine.ingest(reading)
        changed = [o for f, o in engine.orders.items() if before.get(f) is not o]
        out += reading_notices(engine, alerts, changed)
    return out


def by_id(notices: Sequence[Notice]) -> dict[str, Notice]:
    return {n.id: n for n in notices}


# x: daily limit 100 kWh (rota-exempt); p: the paper group, off on 2010-10-20 (an even day from the rota's start)
X_OVER = [r("x-m", "2010-10-20 00:00", 0), r("x-m", "2010-10-20 10:00", 85), r("x-m", "2010-10-20 11:00", 95),
          r("x-m", "2010-10-20 12:00", 150)]  # fmt: skip
P_OFF_DAY = [r("p-m", "2010-10-20 00:00", 0), r("p-m", "2010-10-20 12:00", 500)]
P_BREACH = [r("p-m", "2010-10-21 00:00", 500), r("p-m", "2010-10-21 12:00", 800)]


def test_a_firms_own_notice_and_warning_go_to_each_of_its_channels_once() -> None:
    engine = Engine(township())
    notices = feed(engine, X_OVER[:3])
    assert firm_channels(engine.firms["x"]) == ("x-wecom", "x-ding")
    assert [(n.kind, n.channel, n.title) for n in notices] == [
        ("alert", "x-wecom", "用电提示 · 盛达"),
        ("alert", "x-ding", "用电提示 · 盛达"),
        ("alert", "x-wecom", "用电警告 · 盛达"),
        ("alert", "x-ding", "用电警告 · 盛达"),
    ]
    assert notices[2].id == "alert:t/x/firm_daily_limit/2010-10-20/0.9:x-wecom"
    assert notices[2].alert_id == "t/x/firm_daily_limit/2010-10-20/0.9"
    assert notices[2].firm == "x"
    assert "已达日限额 100 kWh 的 95.0%（90% 警戒线）" in notices[2].text
    assert not any(n.to_firm for n in notices)


def test_an_issued_order_sends_the_cutoff_notice_to_the_firm_and_the_supply_station() -> None:
    engine = Engine(township())
    notices = [n for n in feed(engine, X_OVER) if n.kind == "cutoff"]
    order = engine.orders["x"]
    assert order.state == "issued"
    assert [(n.id, n.to_firm) for n in notices] == [
        (f"cutoff:{order.alert_id}:x-wecom", True),
        (f"cutoff:{order.alert_id}:x-ding", True),
        (f"cutoff:{order.alert_id}:gds", False),
    ]
    assert {(n.firm, n.alert_id, n.title, n.text) for n in notices} == {
        ("x", order.alert_id, "停电通知书 · 盛达", notices[0].text)
    }
    text = notices[0].text
    assert text.startswith("盛达：")
    assert "违规事项：超日限额" in text  # RULE_NAMES
    assert "2010-10-20 用电 150.0 kWh，超过日限额 100 kWh（超出 50.0 kWh）" in text  # the evidence's arithmetic
    assert "电表读数：x-m 10-20 00:00 0.00 → 12:00 150.00 kWh" in text  # the readings
    assert "自 2010-10-20 起停止供电至 2010-12-31（一停到底），由供电所执行" in text


def test_the_order_of_an_off_day_is_told_in_the_words_of_standby() -> None:
    engine = Engine(township())
    (notice, *_rest) = [n for n in feed(engine, P_OFF_DAY) if n.kind == "cutoff"]
    assert "违规事项：错时供电停电日用电" in notice.text
    assert "2010-10-20 用电 500.0 kWh，超过保安用电 50 kWh（超出 450.0 kWh）" in notice.text


def test_a_pending_order_sends_nothing_until_it_is_confirmed() -> None:
    engine = Engine(township())
    readings = [r("x-m", "2010-10-20 00:00", 0), r("x-m", "2010-10-20 12:00", 100.5)]  # within the meter's 1%
    notices = feed(engine, readings)
    pending = engine.orders["x"]
    assert pending.state == "pending"
    assert [n for n in notices if n.kind == "cutoff"] == []
    confirmed = command(engine, "confirm", "x", Change("", AT, "李督查", "现场核实"))
    sent = order_notices(engine, pending, confirmed)
    assert [n.id for n in sent] == [f"cutoff:{pending.alert_id}:{c}" for c in ("x-wecom", "x-ding", "gds")]
    assert [n.to_firm for n in sent] == [True, True, False]


def test_a_pending_order_gone_beyond_the_meters_accuracy_sends_the_cutoff_notice_under_its_own_id() -> None:
    engine = Engine(township())
    readings = [r("x-m", "2010-10-20 00:00", 0), r("x-m", "2010-10-20 12:00", 100.5), r("x-m", "2010-10-20 13:00", 130)]
    notices = feed(engine, readings)
    order = engine.orders["x"]
    assert order.state == "issued"
    assert [n.id for n in notices if n.kind == "cutoff"] == [
        f"cutoff:{order.alert_id}:{c}" for c in ("x-wecom", "x-ding", "gds")
    ]
    text = notices[-1].text
    assert "用电 130.0 kWh，超过日限额 100 kWh（超出 30.0 kWh，已超出电表计量误差范围）" in text  # what issued it
    assert "首次越限时电表读数：x-m 10-20 00:00 0.00 → 12:00 100.50 kWh" in text  # the crossing, said as such


def test_confirm_inspector_orders_wait_and_dismissing_sends_nothing() -> None:
    engine = Engine(township(enforcement='confirm = "inspector"\n'))
    assert [n for n in feed(engine, X_OVER) if n.kind == "cutoff"] == []
    pending = engine.orders["x"]
    dismissed = command(engine, "dismiss", "x", Change("", AT, "李督查", "读数有误"))
    assert order_notices(engine, pending, dismissed) == []


def test_a_station_that_is_also_a_firm_channel_gets_one_notice_the_firms() -> None:
    engine = Engine(township(station="x-ding"))
    notices = [n for n in feed(engine, X_OVER) if n.kind == "cutoff"]
    assert [(n.channel, n.to_firm) for n in notices] == [("x-wecom", True), ("x-ding", True)]


def test_without_a_station_the_firm_alone_is_told() -> None:
    engine = Engine(township(station=None))
    assert [n.channel for n in feed(engine, X_OVER) if n.kind == "cutoff"] == ["x-wecom", "x-ding"]


def test_a_breach_goes_to_the_firm_the_station_and_the_leaders() -> None:
    engine = Engine(township(leaders=("leaders", "gds", "p-wecom")))
    notices = feed(engine, P_OFF_DAY + P_BREACH)
    breaches = [n for n in notices if n.kind == "breach"]
    (alert_id,) = {n.alert_id for n in breaches}
    assert alert_id == "t/p/cutoff_breach/2010-10-21"
    assert [n.id for n in breaches] == [f"breach:{alert_id}:{c}" for c in ("p-wecom", "gds", "leaders")]
    assert breaches[0].title == "违令用电 · 纸厂"
    assert "在停电令期间" in breaches[0].text
    assert "请立即停止用电" in breaches[0].text  # the firm is told to stop...
    assert "请督查立即到现场核查" in breaches[1].text  # ...the station and the leaders, to go and see


def test_an_escalation_goes_to_the_leaders_only() -> None:
    engine = Engine(township(enforcement='escalation = [{ after = 1, step = "联系领导约谈" }]\n'))
    notices = [n for n in feed(engine, X_OVER) if n.kind == "escalation"]
    assert [(n.id, n.title) for n in notices] == [("escalation:t/x/escalation/1:leaders", "约谈升级 · 盛达")]
    assert "联系领导约谈" in notices[0].text


def test_a_lifted_order_tells_the_firm_and_the_station_others_changes_nothing() -> None:
    engine = Engine(township())
    feed(engine, X_OVER)
    issued = engine.orders["x"]
    notified = command(engine, "notified", "x", Change("", AT, "王", "已送达"))
    assert order_notices(engine, issued, notified) == []
    executed = command(engine, "executed", "x", Change("", AT, "供电所", "已停电"))
    assert order_notices(engine, notified, executed) == []
    lifted = command(engine, "lift", "x", Change("", "2010-10-22T10:30:00+08:00", "李镇长", "整改到位"))
    sent = order_notices(engine, executed, lifted)
    assert [(n.id, n.kind, n.to_firm) for n in sent] == [
        (f"lifted:{issued.alert_id}:{c}", "lifted", False) for c in ("x-wecom", "x-ding", "gds")
    ]
    assert sent[0].title == "恢复供电通知 · 盛达"
    assert "停电令（超日限额）已解除，请供电所恢复供电" in sent[0].text
    assert "整改到位（李镇长，2010-10-22 10:30）" in sent[0].text
    assert order_notices(engine, lifted, lifted) == []  # no change: nothing


def test_an_order_by_hand_sends_the_cutoff_notice_even_after_an_earlier_one_was_lifted() -> None:
    engine = Engine(township())
    feed(engine, X_OVER)
    first = engine.orders["x"]
    lifted = command(engine, "lift", "x", Change("", AT, "李镇长", "整改到位"))
    order, _alerts = issue(engine, "x", Change("", AT, "李督查", "拒不执行"))
    sent = order_notices(engine, lifted, order)
    assert order.alert_id != first.alert_id
    assert [n.id for n in sent] == [f"cutoff:{order.alert_id}:{c}" for c in ("x-wecom", "x-ding", "gds")]
    assert "违规事项：督查下达。督查现场发现：拒不执行（李督查）" in sent[0].text
    made, _ = issue(Engine(township()), "g", Change("", AT, "李督查", "现场违规"))
    assert [n.channel for n in order_notices(engine, None, made)] == ["g-hook", "gds"]


def status(engine: Engine, firm: str, t: int) -> dict[str, object]:
    (message,) = firm_status_messages(engine, "quotad", t, [engine.firms[firm]])
    body: dict[str, object] = json.loads(message.payload)
    return body


@settings(max_examples=60, deadline=None)
@given(x_kwh=st.floats(min_value=0, max_value=99.0), g_kwh=st.floats(min_value=0, max_value=300.0))
def test_the_rota_notices_allowance_is_the_firm_status(x_kwh: float, g_kwh: float) -> None:
    engine = Engine(township())
    feed(engine, [r("x-m", "2010-10-20 00:00", 0), r("x-m", "2010-10-20 15:00", x_kwh),
                  r("g-m", "2010-10-02 00:00", 0), r("g-m", "2010-10-20 15:00", g_kwh)])  # fmt: skip
    t = at("2010-10-20 20:00")
    notices = by_id(rota_notices(engine, dt.date(2010, 10, 21), t))
    x, g = allowance(engine, engine.firms["x"], t), allowance(engine, engine.firms["g"], t)
    assert (x.day_used_kwh, x.day_limit_kwh) == (status(engine, "x", t)["consumed_kwh"], 100)
    assert (g.month_used_kwh, g.month_quota_kwh) == (status(engine, "g", t)["consumed_kwh"], 310)
    assert status(engine, "g", t)["limit_kwh"] == g.month_quota_kwh
    assert x.month_quota_kwh is None
    assert g.day_limit_kwh is None
    x_text = notices["rota:2010-10-21:x:x-wecom"].text
    assert f"日限额 100 kWh，今日已用 {x.day_used_kwh:.1f}" in x_text
    assert f"月度配额 310 kWh，本月已用 {g.month_used_kwh:.1f}" in notices["rota:2010-10-21:g:g-hook"].text


def test_each_firm_with_channels_hears_whether_it_runs_tomorrow() -> None:
    engine = Engine(township())
    feed(engine, P_OFF_DAY)  # p under an order
    t = at("2010-10-22 20:00")
    notices = rota_notices(engine, dt.date(2010, 10, 23), t)  # a Saturday: the seven group's off day, w rests
    assert [n.id for n in notices] == [
        "rota:2010-10-23:p:p-wecom", "rota:2010-10-23:x:x-wecom", "rota:2010-10-23:x:x-ding",
        "rota:2010-10-23:g:g-hook", "rota:2010-10-23:w:w-wecom",
    ]  # fmt: skip
    texts = {n.firm: n.text for n in notices}
    assert {n.title for n in notices if n.firm == "p"} == {"明日供电安排 · 纸厂"}
    assert texts["p"].startswith("纸厂：10月23日（周六）一停到底，停电至 2010-12-31。")
    assert "申报休息日，保安用电限 5 kWh" in texts["w"]
    assert texts["g"].startswith("一般：10月23日（周六）照常生产。")
    assert texts["x"].startswith("盛达：10月23日（周六）本组停电，本企业免轮停照常生产。")  # rota-exempt
    x_runs = rota_notices(engine, dt.date(2010, 10, 24), t)
    assert x_runs[1].text.startswith("盛达：10月24日（周日）照常生产。")
    assert x_runs[1].title == "10月24日（周日）供电安排 · 盛达"  # not the day after t: its date
    s_policy = township(contacts={"s": ["s-wecom"]})
    (s_off,) = rota_notices(Engine(s_policy), dt.date(2010, 10, 23), t)
    assert s_off.text.startswith("七厂：10月23日（周六）错时供电停电，保安用电限 50 kWh。")
    (s_runs,) = rota_notices(Engine(s_policy), dt.date(2010, 10, 24), t)
    assert "照常生产" in s_runs.text


def test_a_pending_firm_hears_it_may_not_run() -> None:
    engine = Engine(township())
    feed(engine, [r("x-m", "2010-10-20 00:00", 0), r("x-m", "2010-10-20 12:00", 100.5)])
    (notice, _) = [n for n in rota_notices(engine, dt.date(2010, 10, 21), at("2010-10-20 20:00")) if n.firm == "x"]
    assert "停电令待核实，不得生产" in notice.text
    assert "仅限保安用电每日 50 kWh" in notice.text  # what it may draw, not an allowance it may not use
    assert "余" not in notice.text


@settings(max_examples=100, deadline=None)
@example(name="一" * NAME_MAX, used=99999.9, limit="12345.6", tomorrow=dt.date(2010, 10, 22), pending=False)
@example(name="一" * NAME_MAX, used=12345.5, limit="12345.6", tomorrow=dt.date(2010, 10, 22), pending=False)
@given(
    name=st.text(alphabet="造纸厂机电公司有限一般企业加工点荣生盛达", min_size=1, max_size=NAME_MAX),
    used=st.floats(min_value=0, max_value=99999.9),
    limit=st.sampled_from(["4200", "12345.6", "99999"]),
    tomorrow=st.dates(min_value=dt.date(2010, 10, 22), max_value=dt.date(2010, 10, 31)),
    pending=st.booleans(),
)
def test_a_rota_notice_fits_a_lock_screen(name: str, used: float, limit: str, tomorrow: dt.date, pending: bool) -> None:
    """The longest: a general firm with a daily limit and a monthly quota, in a group, under an order."""
    extra = (f'\n[[firms]]\nid = "long"\nname = "{name}"\nkind = "general"\ngroup = "paper"\n'
             f'daily_limit_kwh = {limit}\nmonthly_quota_kwh = 99999.9\n')  # fmt: skip
    text = policy_text(firms_extra=extra, meters=("long",)).replace(
        'id = "long"\n', 'id = "long"\ncontacts = [{ name = "王", channel = "c" }]\n'
    )
    policy = Policy.model_validate(tomllib.loads(text + "\n[enforcement]\nconfirm = 'inspector'\n" * pending))
    engine = Engine(policy)
    feed(engine, [r("long-m", "2010-10-21 00:00", 0), r("long-m", "2010-10-21 10:00", used)])  # the group runs
    (notice,) = rota_notices(engine, tomorrow, at("2010-10-21 20:00"))
    assert len(notice.text) <= ROTA_MAX, notice.text
    assert notice.text.startswith(f"{name}：")


def test_residents_and_reports_go_to_their_channels() -> None:
    engine = Engine(township(residents=("town", "sms"), leaders=("leaders", "mail")))
    eve = residents_notices(engine, dt.date(2010, 10, 27), "09:00-17:00", "eve")
    assert [(n.id, n.kind) for n in eve] == [
        ("residents:2010-10-27:eve:town", "residents"), ("residents:2010-10-27:eve:sms", "residents")
    ]  # fmt: skip
    assert eve[0].text == "明日（2010-10-27，周三）09:00-17:00 为能源紧缺体验日，请居民节约用电、合理安排"
    morning = residents_notices(engine, dt.date(2010, 10, 27), "09:00-17:00", "morning")
    assert morning[0].id == "residents:2010-10-27:morning:town"
    assert morning[0].text.startswith("今日（2010-10-27，周三）")
    files = ["daily-2010-10-20.pdf", "daily-2010-10-20.xlsx"]
    reports = report_notices(engine.policy, dt.date(2010, 10, 20), files, "全镇 2010-10-20 用电 50000 kWh")
    assert [(n.id, n.files, n.text) for n in reports] == [
        (f"report:daily:2010-10-20:{c}", tuple(files), "全镇 2010-10-20 用电 50000 kWh") for c in ("leaders", "mail")
    ]
    assert Notice.from_json(reports[0].to_json()) == reports[0]
    assert residents_notices(Engine(township(residents=())), dt.date(2010, 10, 27), "09:00-17:00", "eve") == []


CHANNELS = st.sampled_from(["a", "b", "c", "gds", "lead"])


def everything(policy: Policy, people: bool = True) -> list[Notice]:
    """Every notice of a scenario: warnings, orders (one pending, confirmed), a breach, escalations, rotas,
    residents, a report, a lift."""
    engine = Engine(policy)
    readings = X_OVER + P_OFF_DAY + [r("g-m", "2010-10-20 00:00", 0), r("g-m", "2010-10-20 12:00", 311)] + P_BREACH
    out = feed(engine, readings)
    out += rota_notices(engine, dt.date(2010, 10, 22), at("2010-10-21 20:00"))
    out += residents_notices(engine, dt.date(2010, 10, 27), "09:00-17:00", "eve")
    out += report_notices(policy, dt.date(2010, 10, 21), ["daily-2010-10-21.pdf"], "日报")
    if people:
        for firm in ("x", "g"):
            before = engine.orders[firm]
            action = "confirm" if before.state == "pending" else "lift"
            out += order_notices(engine, before, command(engine, action, firm, Change("", AT, "李", "复核")))
    return out


@settings(max_examples=40, deadline=None)
@given(
    contacts=st.fixed_dictionaries({f: st.lists(CHANNELS, max_size=3) for f in FIRMS}),
    station=st.none() | CHANNELS,
    leaders=st.lists(CHANNELS, max_size=2, unique=True),
    residents=st.lists(CHANNELS, max_size=2, unique=True),
)
def test_no_two_notices_share_an_id_and_each_names_its_channel(
    contacts: dict[str, list[str]], station: str | None, leaders: list[str], residents: list[str]
) -> None:
    steps = 'escalation = [{ after = 1, step = "约谈" }, { after = 2, step = "问责" }]\n'
    policy = township(contacts, station, leaders, residents, meter_extra="accuracy_pct = 2.0", enforcement=steps)
    notices = everything(policy)
    ids = [n.id for n in notices]
    assert len(ids) == len(set(ids))
    for notice in notices:
        assert notice.id.endswith(f":{notice.channel}")
        assert re.fullmatch(r"(alert|cutoff|breach|escalation|lifted|rota|residents|report):.+:[a-z]+", notice.id)
        assert notice.kind == notice.id.split(":")[0]
        if notice.to_firm:
            assert notice.kind == "cutoff"
            assert notice.firm is not None
            assert notice.channel in firm_channels(policy.firms[FIRMS.index(notice.firm)])
    assert everything(policy) == notices  # the same inputs, the same notices
    kinds = {n.kind for n in notices}
    if contacts["x"]:
        assert {"alert", "cutoff", "lifted"} <= kinds
    if leaders:
        assert {"escalation", "report"} <= kinds


def test_only_the_firms_own_alerts_reach_it() -> None:
    engine = Engine(township())
    offline = Alert("t/x/meter_offline/2010-10-20/x-m", "2010-10-20T12:00:00+08:00", 0, "t", "x", "盛达",
                    "meter_offline", "warning", None, "2010-10-20", None, None, None, "none", None, "离线")  # fmt: skip
    violation = replace(offline, id="t/x/firm_daily_limit/2010-10-20/1.0", rule="firm_daily_limit",
                        severity="violation", level=1.0, action="cutoff", cutoff_until="2010-12-31")  # fmt: skip
    assert reading_notices(engine, [offline, violation], []) == []
    pending = Order("x", "盛达", violation.id, "firm_daily_limit", violation.ts, "2010-10-20", "2010-12-31",
                    state="pending")  # fmt: skip
    assert reading_notices(engine, [], [pending]) == []
    issued = reading_notices(engine, [], [replace(pending, state="issued")])
    assert [n.channel for n in issued] == ["x-wecom", "x-ding", "gds"]
    assert "违规事项：超日限额" in issued[0].text  # an order without evidence still names its rule
