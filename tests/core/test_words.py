"""What the township's people read: real figures at every level, the scope of the township's total, a meter's own
readings, whom to call only for today, orders that ended, exempt firms named apart, and plain Chinese."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path

from quotad.commands.status_text import status_text as _status_text
from quotad.commands.watch import format_alert
from quotad.config.load import Loaded
from quotad.core.policy import Policy
from quotad.core.views import rota_notice, status_messages
from tests.conftest import at, make_policy, policy_text, r, run


def test_several_levels_at_once_each_state_the_real_use() -> None:
    readings = [r("x-m", "2010-10-20 00:00", 0.0), r("x-m", "2010-10-20 09:00", 102.4)]
    _, alerts = run(make_policy(meters=("x",)), readings)
    assert [a.message for a in alerts] == [
        "盛达 2010-10-20 用电 102.4 kWh，已达日限额 100 kWh 的 102.4%（80% 提示线）",
        "盛达 2010-10-20 用电 102.4 kWh，已达日限额 100 kWh 的 102.4%（90% 警戒线）",
        "盛达 2010-10-20 用电 102.4 kWh，超过日限额 100 kWh（超出 2.4 kWh），应自 2010-10-20 起停止供电至 2010-12-31"
        "（一停到底），请督查核实并通知供电所执行",
    ]


def _with_feeder() -> Policy:
    text = policy_text(cap=100, township_extra='feeder_meters = ["feed"]', meters=("s",))
    text += '\n[[meters]]\nid = "feed"\n[meters.mqtt]\n'
    return Policy.model_validate(tomllib.loads(text))


def test_the_township_total_says_what_it_covers() -> None:
    readings = [r("feed", "2010-10-20 00:00", 0.0), r("feed", "2010-10-20 09:00", 85.0)]
    _, alerts = run(_with_feeder(), readings)
    assert alerts[0].message.startswith("测试镇 2010-10-20 全镇用电 85.0 kWh，")  # the feeders: the whole township
    firms_only = make_policy(cap=100, meters=("s",))
    _, alerts = run(firms_only, [r("s-m", "2010-10-20 00:00", 0.0), r("s-m", "2010-10-20 09:00", 85.0)])
    assert alerts[0].message.startswith("测试镇 2010-10-20 全镇企业用电 85.0 kWh，")  # only the firms' meters


def test_an_anomaly_shows_the_meters_own_readings_and_the_multiplied_energy() -> None:
    policy = make_policy(meter_extra="multiplier = 40.0\nmax_kw = 2500", meters=("p",))
    _, alerts = run(policy, [r("p-m", "2010-10-20 10:00", 1000.0), r("p-m", "2010-10-20 11:00", 1100.0)])
    assert alerts[0].message == (
        "纸厂 电表 p-m 读数跳变：1000.00 → 1100.00 kWh（倍率 40，折合 40000.0 → 44000.0 kWh），相当于平均功率 "
        "4000.0 kW，超过该表上限 2500 kW，请核实；这一段不计电量，以新读数为起点继续计量"
    )
    _, alerts = run(policy, [r("p-m", "2010-10-20 10:00", 1000.0), r("p-m", "2010-10-20 11:00", 3.5)])
    fell = "读数下降：1000.00 → 3.50 kWh（倍率 40，折合 40000.0 → 140.0 kWh），疑似换表或清零，请核实"
    assert fell in alerts[0].message


def test_a_load_alert_about_a_finished_day_names_no_one_to_call() -> None:
    policy = make_policy(township_extra="load_cap_kw = 40", meters=("p", "s"))  # 10 kWh per 15 minutes
    readings = [
        r("s-m", "2010-10-20 23:46", 0.0),
        r("p-m", "2010-10-21 00:00", 0.0),
        r("p-m", "2010-10-21 00:10", 12.0),  # today's interval over the cap: shed names p (paper runs on the 21st)
        r("s-m", "2010-10-20 23:58", 13.0),  # late: yesterday's 23:45 interval over the cap
    ]
    _, alerts = run(policy, readings)
    today, yesterday = (a for a in alerts if a.level == 1.0)
    assert (today.period, [s.firm for s in today.shed or ()]) == ("2010-10-21", ["p"])
    assert (yesterday.period, yesterday.shed) == ("2010-10-20", ())
    assert "建议优先联系压减" not in yesterday.message
    assert yesterday.payload()["shed"] == []


def test_an_order_that_ended_no_longer_stands() -> None:
    policy = make_policy(end="2010-10-31", meters=("p",))
    readings = [
        r("p-m", "2010-10-30 00:00", 0.0),
        r("p-m", "2010-10-30 09:00", 60.0),  # the 30th is the seven's day: the paper mill is off -> cut off
        r("p-m", "2010-11-01 09:00", 160.0),
        r("p-m", "2010-11-01 10:00", 200.0),
    ]
    engine, alerts = run(policy, readings)
    assert [a.rule for a in alerts] == ["rota_off_day"]
    assert engine.orders["p"].until == "2010-10-31"
    assert engine.cut_off(dt.date(2010, 10, 31)) == {"p"}
    assert engine.cut_off(dt.date(2010, 11, 1)) == set()
    assert [s.firm for s in engine.shed(at("2010-11-01 10:00"))] == ["p"]  # whom to call includes it again
    status = next(m for m in status_messages(engine, "quotad", at("2010-11-01 10:00")) if m.topic.endswith("/p"))
    body = json.loads(status.payload)
    assert (body["state"], body["allowed_today"]) == ("ok", True)


def test_tomorrows_rota_names_the_exempt_firm_apart() -> None:
    engine, _ = run(make_policy(meters=("p",)), [r("p-m", "2010-10-20 09:00", 0.0)])
    notice = json.loads(rota_notice(engine, "quotad", dt.date(2010, 10, 21)).payload)  # the seven are off
    assert "停电 七家（盛达除外，按日限额 100 kWh 运行）" in notice["message"]
    assert "停产" not in notice["message"]
    assert notice["exempt_running"] == ["x"]
    engine, _ = run(make_policy(meters=("x",)), [r("x-m", "2010-10-20 00:00", 0.0), r("x-m", "2010-10-20 09:00", 101)])
    notice = json.loads(rota_notice(engine, "quotad", dt.date(2010, 10, 21)).payload)  # now cut off: not running
    assert "盛达除外" not in notice["message"]
    assert "一停到底停止供电的企业 盛达" in notice["message"]


def test_the_alerts_command_says_a_cutoff_once() -> None:
    _, alerts = run(make_policy(meters=("x",)), [r("x-m", "2010-10-20 00:00", 0.0), r("x-m", "2010-10-20 09:00", 110)])
    line = format_alert(alerts[-1].payload())
    assert line.startswith("2010-10-20 09:00 [违规] 盛达 2010-10-20 用电 110.0 kWh")
    assert line.count("停止供电") == 1
    assert "处置" not in line


def test_offline_names_firm_meter_time_and_what_to_do() -> None:
    policy = make_policy(meters=("p", "s"))
    readings = [r("p-m", "2010-10-20 23:50", 0.0), r("s-m", "2010-10-20 23:55", 0.0), r("s-m", "2010-10-21 00:20", 1)]
    _, alerts = run(policy, readings)
    assert alerts[0].message == "纸厂 电表 p-m 已超过 15 分钟无读数（最后读数 2010-10-20 23:50），请核查电表和通信"


def test_status_is_all_chinese_with_the_period_of_each_figure() -> None:
    policy = make_policy(meters=("x", "g"))
    engine, _ = run(
        policy,
        [r("x-m", "2010-10-20 00:00", 0.0), r("g-m", "2010-10-20 00:00", 0.0), r("x-m", "2010-10-20 09:00", 101.04),
         r("g-m", "2010-10-20 09:00", 12.34)],
    )  # fmt: skip
    base = "quotad/t"
    retained = {m.topic: m.payload for m in status_messages(engine, "quotad", at("2010-10-20 09:00"))}
    retained[f"{base}/daemon"] = "online"
    text = _status_text(Loaded(policy, Path("township.toml")), base, retained)
    for english in ("cutoff", "ok", "offline", "online", "None", "firm_daily_limit", "True"):
        assert english not in text, english
    assert "quotad：运行中" in text
    assert "今日用电 kWh" in text
    assert "本月累计 kWh" in text
    row_x = next(line for line in text.splitlines() if line.startswith("盛达"))
    assert row_x.split()[1:5] == ["101.0", "100.0", "—", "—"]  # today's use against the daily limit
    assert "停止供电" in row_x
    row_g = next(line for line in text.splitlines() if line.startswith("一般"))
    assert row_g.split()[1:5] == ["—", "—", "12.3", "310.0"]  # the month's use against the monthly quota


def test_an_opening_is_part_of_the_months_figures_before_any_reading() -> None:
    extra = '\n[[firms]]\nid = "g2"\nname = "二"\nkind = "general"\nbaseline_kwh = 10000\n'
    policy = make_policy(firms_extra=extra + 'opening = [{ month = "2010-10", kwh = 6200.0 }]\n', meters=("g2",))
    engine, alerts = run(policy, [r("g2-m", "2010-10-19 00:00", 0.0)])
    assert alerts == []
    assert engine.ledger.firm_month_wh("g2", (2010, 10)) == 6_200_000  # what status and firm_energy show
    assert engine.ledger.firm_month_wh("g2", (2010, 11)) == 0
    engine.ingest(r("g2-m", "2010-10-19 12:00", 200.0))
    assert engine.ledger.firm_month_wh("g2", (2010, 10)) == 6_400_000


def test_status_names_each_notice_channels_queue_and_what_it_last_answered() -> None:
    """`quotad status` reads the daemon's outboxes: a daemon with channels and no InfluxDB publishes only their
    queues (a message of the right shape, not a foreign one), and one whose robot refuses says what it answered."""
    policy = make_policy(meters=("x",))
    engine, _ = run(policy, [r("x-m", "2010-10-20 00:00", 0.0)])
    base = "quotad/t"
    retained: dict[str, bytes | str] = {
        m.topic: m.payload for m in status_messages(engine, "quotad", at("2010-10-20 09:00"))
    }
    outbox = {"channel:x-wecom": {"state": "93000 invalid webhook url", "pending": 3, "delivered": 0},
              "channel:gds": {"state": "ok", "pending": 0, "delivered": 7}}  # fmt: skip
    retained[f"{base}/status/daemon"] = json.dumps({"outbox": outbox, "updated": "2010-10-20T09:00:00+08:00"})
    text = _status_text(Loaded(policy, Path("township.toml")), base, retained)
    assert "通知渠道 gds：正常；待发送 0 条，已送达 7 条（本次运行）" in text
    assert (
        "通知渠道 x-wecom：暂未送达，渠道答复：93000 invalid webhook url；待发送 3 条，已送达 0 条（本次运行）" in text
    )
    assert "InfluxDB" not in text
    assert "不是 quotad 的状态消息" not in text
