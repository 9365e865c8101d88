"""Today's inspection list (quotad/core/inspections.py) over the example township, fed for real: each kind of reason
for a firm that earns it and for none that does not, the ranking, one entry per firm, and the auditable draw."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quotad.config.load import load
from quotad.core.engine import Engine
from quotad.core.feed import counters
from quotad.core.inspections import Entry, draw, draw_key, inspection_list, list_lines, list_payload
from quotad.core.policy import Policy
from quotad.core.readings import Reading
from tests.conftest import at

CONFIG = Path(__file__).resolve().parents[2] / "config"
POLICY = load(CONFIG / "township.toml").policy
TOWN = POLICY.township.id
FIRMS = tuple(f.id for f in POLICY.firms)
D = dt.date.fromisoformat
STEP_MIN = 10


def readings(
    policy: Policy, start: str, end: str, use: Mapping[tuple[str, str], float], silent: Mapping[str, tuple[str, str]]
) -> Iterator[Reading]:
    """Every firm meter every 10 minutes over local [start, end]: a firm's use on a day ('firm', 'YYYY-MM-DD', kWh)
    spread evenly over that day, none on other days; a meter in `silent` sends nothing in its [from, to)."""
    energy = {m.id: 0.0 for m in policy.meters if m.firm is not None}
    meters = {m.id: m for m in policy.meters if m.firm is not None}
    t, stop = dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)
    while t <= stop:
        for meter_id, m in meters.items():
            if t > dt.datetime.fromisoformat(start):  # the interval just ended belongs to the day it started on
                day = (t - dt.timedelta(minutes=STEP_MIN)).date().isoformat()
                energy[meter_id] += use.get((m.firm or "", day), 0.0) * STEP_MIN / 1440
            quiet = silent.get(meter_id)
            if quiet is None or not dt.datetime.fromisoformat(quiet[0]) <= t < dt.datetime.fromisoformat(quiet[1]):
                yield Reading(
                    meter_id,
                    at(t.isoformat(sep=" "), policy.township.timezone),
                    (10_000 + energy[meter_id]) / m.multiplier,
                )
        t += dt.timedelta(minutes=STEP_MIN)


def fed(
    start: str,
    end: str,
    use: Mapping[tuple[str, str], float] | None = None,
    silent: Mapping[str, tuple[str, str]] | None = None,
    policy: Policy = POLICY,
) -> Engine:
    engine = Engine(policy)
    for reading in readings(policy, start, end, use or {}, silent or {}):
        engine.ingest(reading)
    return engine


def kinds(entries: tuple[Entry, ...]) -> dict[str, list[str]]:
    return {e.firm: [ev["kind"] for ev in e.evidence] for e in entries}


@functools.cache
def simulated() -> Engine:
    """The simulated township (quotad.core.feed) from 10-19 to 10-21 07:00: on 10-20, a seven-firm day, the paper
    mill runs at 5%, 盛达 draws 108% of its limit, w-003 works its rest day, g-006's meter is replaced, w-005's falls
    silent for half an hour; on 10-21 (the mill's day) 华宇 runs at 40%."""
    engine, stop = Engine(POLICY), at("2010-10-21 07:00")
    for reading in counters(POLICY, D("2010-10-19"), 3, step_s=300):
        if reading.t > stop:
            break
        engine.ingest(reading)
    return engine


# -- each kind of reason, for a firm that earns it and not for one that does not ----------------------------------


@pytest.mark.parametrize(
    ("use", "day", "expected"),
    [
        # 10-20: the seven run, the paper mill is off (standby 50 kWh)
        ({("rongsheng-paper", "2010-10-20"): 80.0}, "2010-10-21", {"rongsheng-paper": ["rota_off_day"]}),
        ({("rongsheng-paper", "2010-10-20"): 50.0}, "2010-10-21", {}),  # at its standby: not above it
        ({("xinghua-textile", "2010-10-20"): 7000.0}, "2010-10-21", {}),  # the seven's own day
        ({("rongsheng-paper", "2010-10-21"): 20_000.0}, "2010-10-21", {}),  # the mill's own day
        # w-001 rests on Saturdays and Sundays (standby 5 kWh); 10-23 is a Saturday, 10-22 a Friday
        # (its order is pending: the rule made it at the first reading over 5 kWh, within the meter's accuracy)
        # 6 kWh against 5: pending at the first reading over, issued once beyond the meter's 1% (5.05 kWh)
        ({("w-001", "2010-10-23"): 6.0}, "2010-10-24", {"w-001": ["rest_day"]}),
        ({("w-001", "2010-10-23"): 5.0}, "2010-10-24", {}),
        ({("w-001", "2010-10-22"): 40.0}, "2010-10-23", {}),
        # 盛达's daily limit 4,200 kWh, warning at 90% = 3,780 kWh, today or yesterday
        ({("shengda", "2010-10-21"): 3780.0}, "2010-10-21", {"shengda": ["firm_daily_limit"]}),
        ({("shengda", "2010-10-20"): 3780.0}, "2010-10-21", {"shengda": ["firm_daily_limit"]}),
        ({("shengda", "2010-10-21"): 3779.99}, "2010-10-21", {}),
        ({("shengda", "2010-10-19"): 4000.0}, "2010-10-21", {}),  # the day before yesterday
        # g-004's monthly quota 7,200 kWh, warning at 6,480 kWh, month to date
        ({("g-004", "2010-10-02"): 6480.0}, "2010-10-03", {"g-004": ["monthly_quota"]}),
        ({("g-004", "2010-10-02"): 6479.0}, "2010-10-03", {}),
    ],
)
def test_a_reason_is_given_to_the_firm_that_earns_it_and_no_other(
    use: dict[tuple[str, str], float], day: str, expected: dict[str, list[str]]
) -> None:
    first = min(D(d) for _f, d in use)
    engine = fed(f"{first - dt.timedelta(days=1)} 00:00", f"{D(day) + dt.timedelta(days=1)} 00:00", use)
    assert kinds(inspection_list(engine, D(day), sample=0)) == expected


def test_the_reason_gives_the_figures_and_the_day() -> None:
    engine = fed("2010-10-20 00:00", "2010-10-21 06:00", {("rongsheng-paper", "2010-10-20"): 80.0})
    (entry,) = inspection_list(engine, D("2010-10-21"), sample=0)
    assert entry.firm_name == "荣生公司造纸厂"
    assert entry.evidence == ({"kind": "rota_off_day", "day": "2010-10-20", "consumed_kwh": 80.0, "standby_kwh": 50.0},)
    assert entry.reasons == ("昨日（2010-10-20）为错时供电停电日，用电 80.0 kWh，超过保安用电 50 kWh",)


def test_limits_and_off_days_count_on_control_days_only() -> None:
    # the control period starts 10-01: 盛达 over its limit on 09-30 is not a quota matter
    engine = fed("2010-09-29 00:00", "2010-10-01 06:00", {("shengda", "2010-09-30"): 5000.0})
    assert kinds(inspection_list(engine, D("2010-10-01"), sample=0)) == {}
    assert kinds(inspection_list(engine, D("2010-09-30"), sample=5)) == {}  # nor is there a draw outside it


def test_on_the_first_of_the_month_the_month_just_ended_still_counts() -> None:
    engine = fed("2010-10-30 00:00", "2010-11-01 06:00", {("g-004", "2010-10-31"): 6840.0})
    (entry,) = inspection_list(engine, D("2010-11-01"), sample=0)
    assert entry.evidence == (
        {"kind": "monthly_quota", "month": "2010-10", "consumed_kwh": 6840.0, "limit_kwh": 7200.0},
    )
    assert entry.reasons == ("2010年10月累计用电 6840.0 kWh，已达月度配额 7200 kWh 的 95.0%",)
    assert inspection_list(engine, D("2010-11-02"), sample=0) == ()  # two days on, it is last month's


def test_an_order_made_before_the_day_turns_drawing_on_an_off_day_into_a_breach() -> None:
    # 10-20 and 10-22 are the mill's off days: the first over standby makes an order, the second breaches it
    use = {("rongsheng-paper", "2010-10-20"): 80.0, ("rongsheng-paper", "2010-10-22"): 120.0}
    engine = fed("2010-10-20 00:00", "2010-10-23 06:00", use)
    assert (engine.orders["rongsheng-paper"].state, engine.orders["rongsheng-paper"].from_day) == (
        "issued",
        "2010-10-20",
    )
    (entry,) = inspection_list(engine, D("2010-10-23"), sample=0)
    assert entry.evidence == (
        {"kind": "cutoff_breach", "alert_id": "xx-town/rongsheng-paper/cutoff_breach/2010-10-22", "day": "2010-10-22",
         "consumed_kwh": 120.0, "standby_kwh": 50.0, "order": "xx-town/rongsheng-paper/rota_off_day/2010-10-20"},
    )  # fmt: skip
    assert entry.reasons[0].startswith("停电令期间（2010-10-20 起至 2010-12-31）昨日（2010-10-22）仍用电 120.0 kWh")
    assert inspection_list(engine, D("2010-10-21"), sample=0)[0].evidence[0]["kind"] == "rota_off_day"


def test_a_pending_order_is_listed_to_verify_until_it_is_dismissed() -> None:
    # 4,210 kWh over 盛达's 4,200: within its meter's 1% accuracy, so its order waits for an inspector (待核实)
    engine = fed("2010-10-19 00:00", "2010-10-21 06:00", {("shengda", "2010-10-20"): 4210.0})
    order = engine.orders["shengda"]
    assert order.state == "pending"
    (entry,) = inspection_list(engine, D("2010-10-21"), sample=0)
    assert [ev["kind"] for ev in entry.evidence] == ["order_pending", "firm_daily_limit"]
    assert entry.evidence[0] == {
        "kind": "order_pending", "alert_id": "xx-town/shengda/firm_daily_limit/2010-10-20/1.0",
        "rule": "firm_daily_limit", "from": "2010-10-20", "until": "2010-12-31", "consumed_kwh": 4210.0,
        "limit_kwh": 4200.0, "excess_kwh": 10.0, "margin_kwh": 42.0,
    }  # fmt: skip
    assert entry.reasons[0] == (
        "停电令待核实（超日限额，2010-10-20 起）：判定时用电 4210.0 kWh，限额 4200 kWh，超出 10.0 kWh，"
        "在电表精度（±42 kWh）以内，请到现场核实后确认或撤销"
    )
    assert inspection_list(engine, D("2011-01-01"), sample=0) == ()  # past its `until`, the order no longer stands
    for state in ("dismissed", "issued"):
        engine.orders["shengda"] = replace(order, state=state)
        assert kinds(inspection_list(engine, D("2010-10-21"), sample=0)) == {"shengda": ["firm_daily_limit"]}


def test_drawing_on_an_off_day_under_a_pending_order_is_listed_beside_it() -> None:
    # 50.4 kWh on the mill's off day 10-20: over its standby by less than its meter's accuracy (pending); on 10-22,
    # another off day, 80 kWh: no breach (the order is unconfirmed), but the inspector who verifies should know
    use = {("rongsheng-paper", "2010-10-20"): 50.4, ("rongsheng-paper", "2010-10-22"): 80.0}
    engine = fed("2010-10-20 00:00", "2010-10-23 06:00", use)
    assert engine.orders["rongsheng-paper"].state == "pending"
    (entry,) = inspection_list(engine, D("2010-10-23"), sample=0)
    assert [ev["kind"] for ev in entry.evidence] == ["rota_off_day", "order_pending"]
    assert (entry.evidence[0]["day"], entry.evidence[0]["consumed_kwh"]) == ("2010-10-22", 80.0)
    assert not any(a.endswith("cutoff_breach/2010-10-22") for a in engine.raised)


def test_meters_offline_now_or_yesterday_or_with_an_anomaly_and_never_a_feeder() -> None:
    raw = tomllib.loads((CONFIG / "township.toml").read_text(encoding="utf-8"))
    raw["meters"].append({"id": "feeder-1", "mqtt": {"format": "json"}})  # no firm: never reports here
    policy = Policy.model_validate(raw)
    silent = {
        "g-005-main": ("2010-10-21 10:00", "2010-10-22 00:00"),
        "w-002-main": ("2010-10-20 09:00", "2010-10-20 10:00"),
    }
    engine = fed("2010-10-20 00:00", "2010-10-21 12:00", silent=silent, policy=policy)
    assert engine.ingest(Reading("g-006-main", at("2010-10-21 12:05"), 9_000.0))[0].rule == "meter_anomaly"
    assert engine.ingest(Reading("g-006-main", at("2010-10-21 12:06"), 8_000.0))[0].rule == "meter_anomaly"
    assert engine.ledger.meters["feeder-1"].offline_alerted  # offline, yet not a firm's
    entries = inspection_list(engine, D("2010-10-21"), sample=0)
    assert {e.firm: list(e.evidence) for e in entries} == {
        "g-005": [{"kind": "meter_offline", "meter": "g-005-main", "now": True, "last_ts": "2010-10-21T09:50:00+08:00",
                   "days": ["2010-10-21"]}],
        "g-006": [{"kind": "meter_anomaly", "meter": "g-006-main", "day": "2010-10-21", "count": 2}],
        "w-002": [{"kind": "meter_offline", "meter": "w-002-main", "now": False, "last_ts": "2010-10-21T12:00:00+08:00",
                   "days": ["2010-10-20"]}],
    }  # fmt: skip
    assert entries[0].reasons[0].startswith("电表 g-005-main 现在无读数（最后读数 2010-10-21 09:50）")
    assert all("可能有人动过电表" in e.reasons[0] for e in entries)
    later = {"g-005": ["meter_offline"], "g-006": ["meter_anomaly"]}  # g-005 still silent; g-006's anomalies yesterday
    assert kinds(inspection_list(engine, D("2010-10-22"), sample=0)) == later
    assert kinds(inspection_list(engine, D("2010-10-23"), sample=0)) == {"g-005": ["meter_offline"]}


# -- ranking, one entry per firm --------------------------------------------------------------------------------


def test_the_simulated_township_ranked_by_most_serious_reason_then_more_reasons_then_id() -> None:
    entries = inspection_list(simulated(), D("2010-10-21"), sample=0)
    assert [(e.firm, [ev["kind"] for ev in e.evidence]) for e in entries] == [
        ("rongsheng-paper", ["rota_off_day", "cutoff_breach"]),  # two reasons before one, whatever the ids
        ("huayu-plastics", ["rota_off_day"]),  # today, on the mill's day
        ("w-003", ["rest_day"]),  # its order pending at first, issued once beyond its meter's accuracy
        ("shengda", ["cutoff_breach", "firm_daily_limit"]),  # the same: issued on 10-20, so 10-21 is a breach
        ("g-006", ["meter_anomaly"]),
        ("w-005", ["meter_offline"]),
    ]
    assert [len(e.reasons) for e in entries] == [len(e.evidence) for e in entries]
    paper = entries[0]
    assert paper.reasons[0].startswith("昨日（2010-10-20）为错时供电停电日，用电 1299.")
    assert paper.reasons[1].startswith("停电令期间（2010-10-20 起至 2010-12-31）今日（2010-10-21）仍用电")
    assert entries[3].reasons[1].startswith("昨日（2010-10-20）用电 4539.7 kWh，超过日限额 4200 kWh（108.1%）")


def test_ties_of_kind_and_count_go_by_firm_id() -> None:
    use = {("w-001", "2010-10-23"): 9.0, ("w-004", "2010-10-23"): 9.0, ("w-005", "2010-10-24"): 40.0}
    entries = inspection_list(fed("2010-10-22 00:00", "2010-10-24 06:00", use), D("2010-10-24"), sample=0)
    assert [e.firm for e in entries] == ["w-001", "w-004", "w-005"]  # rest days all (w-004: Fri-Sat, w-005: Sun-Mon)


def test_a_restarted_engine_lists_the_same() -> None:
    engine = simulated()
    again = Engine(POLICY, engine.state())
    assert inspection_list(again, D("2010-10-21"), 3) == inspection_list(engine, D("2010-10-21"), 3)


# -- the draw ---------------------------------------------------------------------------------------------------


def test_the_draw_is_the_documented_recipe() -> None:
    text, digest = draw_key("xx-town", D("2010-10-21"), "g-003")
    assert (text, digest) == ("xx-town/2010-10-21/g-003", hashlib.sha256(b"xx-town/2010-10-21/g-003").hexdigest())
    by_hand = sorted(FIRMS, key=lambda f: hashlib.sha256(f"xx-town/2010-10-21/{f}".encode()).hexdigest())
    assert draw("xx-town", D("2010-10-21"), FIRMS, 4) == tuple(by_hand[:4])
    assert draw("yy-town", D("2010-10-21"), FIRMS, 4) != draw("xx-town", D("2010-10-21"), FIRMS, 4)


@given(
    firms=st.lists(st.sampled_from(FIRMS), max_size=40).flatmap(lambda f: st.tuples(st.just(f), st.permutations(f))),
    sample=st.integers(min_value=0, max_value=30),
    day=st.dates(min_value=dt.date(2010, 1, 1), max_value=dt.date(2030, 12, 31)),
)
def test_the_draw_depends_on_the_set_of_firms_alone(
    firms: tuple[list[str], list[str]], sample: int, day: dt.date
) -> None:
    given_order, shuffled = firms
    drawn = draw(TOWN, day, given_order, sample)
    assert drawn == draw(TOWN, day, shuffled, sample) == draw(TOWN, day, reversed(given_order), sample)
    assert len(drawn) == min(sample, len(set(given_order)))
    assert set(drawn) <= set(given_order)
    assert len(set(drawn)) == len(drawn)


def test_no_firm_is_never_drawn() -> None:
    days = [dt.date(2010, 10, 1) + dt.timedelta(days=n) for n in range(120)]
    drawn = [draw(TOWN, day, FIRMS, 2) for day in days]
    assert {f for pair in drawn for f in pair} == set(FIRMS)
    assert len(set(drawn)) > 100  # not a few pairs over and over


def test_the_sample_comes_from_the_firms_not_listed() -> None:
    engine, day = simulated(), D("2010-10-21")
    listed = [e.firm for e in inspection_list(engine, day, 0)]
    for sample in (2, 30):
        entries = inspection_list(engine, day, sample)
        assert [e.firm for e in entries[: len(listed)]] == listed
        drawn = entries[len(listed) :]
        assert all(e.evidence[0]["kind"] == "random_sample" for e in drawn)
        expected = draw(TOWN, day, [f for f in FIRMS if f not in listed], sample)
        assert [e.firm for e in drawn] == sorted(expected)
        assert len(drawn) == min(sample, len(FIRMS) - len(listed))
        key, digest = draw_key(TOWN, day, drawn[0].firm)
        assert drawn[0].evidence[0] == {"kind": "random_sample", "key": key, "sha256": digest}


def test_a_negative_sample_is_refused() -> None:
    with pytest.raises(ValueError, match="-1"):
        draw(TOWN, D("2010-10-21"), FIRMS, -1)


# -- what is published and printed ------------------------------------------------------------------------------


def test_the_payload_and_the_lines() -> None:
    entries = inspection_list(simulated(), D("2010-10-21"), 2)
    payload = list_payload(TOWN, D("2010-10-21"), entries, computed="2010-10-21T07:00:00+08:00")
    assert list(payload) == ["township", "day", "computed", "entries"]
    assert payload["township"] == "xx-town"
    assert (payload["day"], payload["computed"]) == ("2010-10-21", "2010-10-21T07:00:00+08:00")
    assert json.loads(json.dumps(payload, ensure_ascii=False)) == payload
    first = payload["entries"][0]
    assert list(first) == ["firm", "firm_name", "reasons", "evidence"]
    assert first["firm"] == "rongsheng-paper"
    assert first["evidence"][0]["consumed_kwh"] == round(first["evidence"][0]["consumed_kwh"], 3)
    lines = list_lines(entries)
    assert lines[:3] == [
        "1. 荣生公司造纸厂（rongsheng-paper）",
        f"   - {entries[0].reasons[0]}",
        f"   - {entries[0].reasons[1]}",
    ]
    assert lines[-2].startswith(f"{len(entries)}. ")
    assert list_lines(()) == ["今日督查清单为空：没有需要核查的企业"]
