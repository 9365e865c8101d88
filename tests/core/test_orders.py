"""An order's life (SPEC "Orders") and a firm's escalation (SPEC "Inspections and escalation"), on the pure core."""

from __future__ import annotations

import datetime as dt
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotad.core.enforcement import Talk, command, issue, talk
from quotad.core.engine import Engine
from quotad.core.orders import ACTIONS, OPEN, Change, Order, OrderError, transition
from quotad.core.policy import Policy
from quotad.core.state import EngineState, order_from_json, order_to_json
from tests.conftest import make_policy, policy_text, r, rules_of, run

ESCALATION = """
[enforcement]
escalation = [
  { after = 1, step = "联系领导约谈" },
  { after = 2, step = "镇纪委书记约谈" },
  { after = 3, step = "书面通报并问责" },
]
"""
AT = "2010-10-21T09:00:00+08:00"


def policy(enforcement: str = "", meter_extra: str = "", firms_extra: str = "") -> Policy:
    text = policy_text(meters=("x", "p", "s"), meter_extra=meter_extra, firms_extra=firms_extra) + enforcement
    return Policy.model_validate(tomllib.loads(text))


def change(by: str = "李督查", reason: str = "现场核实") -> Change:
    return Change("", AT, by, reason)


@settings(max_examples=200, deadline=None)
@given(used=st.floats(min_value=100.001, max_value=130.0), accuracy=st.sampled_from([0.5, 1.0, 2.0]))
def test_a_violation_within_the_meters_accuracy_makes_a_pending_order(used: float, accuracy: float) -> None:
    """x's daily limit is 100 kWh: a day over it by no more than the meter's accuracy makes a pending order, one
    beyond it an issued one; the alert says which, and keeps action = cutoff."""
    engine, alerts = run(
        policy(meter_extra=f"accuracy_pct = {accuracy}"),
        [r("x-m", "2010-10-20 00:00", 0.0), r("x-m", "2010-10-20 12:00", used)],
    )
    (violation,) = [a for a in alerts if a.severity == "violation"]
    assert (violation.rule, violation.severity, violation.action) == ("firm_daily_limit", "violation", "cutoff")
    consumed = violation.consumed_kwh
    assert consumed is not None
    expected = "pending" if consumed <= 100 * (1 + accuracy / 100) else "issued"
    order = engine.orders["x"]
    assert order.state == violation.order_state == violation.payload()["order_state"] == expected
    assert order.history == (Change(expected, violation.ts, "quotad", violation.id),)
    assert order.evidence["accuracy_pct"] == accuracy
    assert order.evidence["margin_kwh"] == round(accuracy, 3)  # of 100 kWh
    assert ("待督查到现场核实" in violation.message) == (expected == "pending")
    assert ("一停到底），请督查核实并通知供电所执行" in violation.message) == (expected == "issued")
    assert engine.cut_off(dt.date(2010, 10, 20)) == {"x"}  # pending or issued, it may not run


def test_the_widest_accuracy_of_a_firms_meters_counts() -> None:
    extra = '\n[[meters]]\nid = "x-2"\nfirm = "x"\naccuracy_pct = 2.0\n[meters.mqtt]\n'
    two = Policy.model_validate(tomllib.loads(policy_text(meters=("x",)) + extra))
    engine, _ = run(two, [r("x-m", "2010-10-20 00:00", 0.0), r("x-m", "2010-10-20 12:00", 101.5)])
    assert engine.orders["x"].state == "pending"  # 1.5% over: within the second meter's 2%


def test_confirm_inspector_makes_every_order_pending() -> None:
    engine, alerts = run(
        policy('[enforcement]\nconfirm = "inspector"\n'),
        [r("p-m", "2010-10-20 00:00", 0.0), r("p-m", "2010-10-20 12:00", 5000.0)],  # the paper mill's off day
    )
    assert engine.orders["p"].state == "pending"
    (violation,) = [a for a in alerts if a.severity == "violation"]
    assert "停电令（自 2010-10-20 起至 2010-12-31，一停到底）待督查核实后下达" in violation.message


def test_a_pending_order_silences_the_firm_and_breaches_count_only_after_it_is_confirmed() -> None:
    engine, _ = run(policy(), [r("x-m", "2010-10-20 00:00", 0.0), r("x-m", "2010-10-20 12:00", 100.5)])
    assert engine.orders["x"].state == "pending"
    assert engine.ingest(r("x-m", "2010-10-21 00:00", 100.9)) == []  # 10-20 ends within the meter's 1%
    quiet = engine.ingest(r("x-m", "2010-10-21 12:00", 250.0))  # 10-21: 149.1 kWh, under a pending order
    assert rules_of(quiet) == []  # neither its limit (silenced) nor a breach (not issued)
    confirmed = command(engine, "confirm", "x", change())
    assert confirmed.state == "issued"
    assert confirmed.breach_from == "2010-10-22"  # the day after it was issued (event time: 10-21)
    assert rules_of(engine.ingest(r("x-m", "2010-10-21 23:00", 320.0))) == []  # still its issuing day
    breach = engine.ingest(r("x-m", "2010-10-22 12:00", 420.0))
    assert rules_of(breach) == [("cutoff_breach", "breach", None, "2010-10-22")]


def test_a_pending_order_is_issued_once_the_use_goes_beyond_the_meters_accuracy() -> None:
    engine, alerts = run(policy(ESCALATION), [r("x-m", "2010-10-20 00:00", 0.0), r("x-m", "2010-10-20 12:00", 100.5)])
    assert engine.orders["x"].state == "pending"
    assert engine.ingest(r("x-m", "2010-10-20 13:00", 101.0)) == []  # 1.0 over: still within 1 kWh
    (issued,) = engine.ingest(r("x-m", "2010-10-20 14:00", 101.002))
    assert issued.id == "t/x/firm_daily_limit/2010-10-20/1.0/issued"
    assert (issued.severity, issued.action, issued.order_state) == ("violation", "cutoff", "issued")
    assert "已超出电表精度（±1%，即 1 kWh），待核实的停电令转为下达" in issued.message
    order = engine.orders["x"]
    assert [c.state for c in order.history] == ["pending", "issued"]
    assert order.breach_from == "2010-10-21"  # as if issued at once: the firm was told at the violation
    assert engine.escalations["x"].count == 1  # one violation, counted once
    assert [a.id for a in alerts if a.rule == "escalation"] == ["t/x/escalation/1"]
    inspector = policy('[enforcement]\nconfirm = "inspector"\n')
    waiting, _ = run(inspector, [r("x-m", "2010-10-20 00:00", 0.0), r("x-m", "2010-10-20 12:00", 100.5),
                                 r("x-m", "2010-10-20 14:00", 300.0)])  # fmt: skip
    assert waiting.orders["x"].state == "pending"  # under confirm = "inspector", only an inspector issues


def test_a_dismissed_order_lets_the_firm_run_and_its_rules_speak_again() -> None:
    engine, _ = run(policy(), [r("x-m", "2010-10-20 00:00", 0.0), r("x-m", "2010-10-20 12:00", 100.5)])
    dismissed = command(engine, "dismiss", "x", change(reason="电表误差，未超限"))
    assert dismissed.state == "dismissed"
    assert [c.state for c in dismissed.history] == ["pending", "dismissed"]
    assert engine.cut_off(dt.date(2010, 10, 20)) == set()
    spoken = [a for a in engine.ingest(r("x-m", "2010-10-21 12:00", 270.0)) if a.firm == "x"]
    assert rules_of(spoken) == [("firm_daily_limit", "notice", 0.8, "2010-10-21")]  # 10-21: 84.75 of 100 kWh


# every (state, action) pair: the table of SPEC
LEGAL = {
    ("pending", "confirm"): "issued",
    ("pending", "dismiss"): "dismissed",
    ("issued", "notified"): "notified",
    ("issued", "executed"): "executed",
    ("notified", "executed"): "executed",
    ("issued", "lift"): "lifted",
    ("notified", "lift"): "lifted",
    ("executed", "lift"): "lifted",
}
STATES = ("pending", "issued", "notified", "executed", "dismissed", "lifted")


def an_order(state: str) -> Order:
    return Order("x", "盛达", "t/x/firm_daily_limit/2010-10-20/1.0", "firm_daily_limit", "2010-10-20T12:00:00+08:00",
                 "2010-10-20", "2010-12-31", {}, state, (Change(state, AT, "quotad", "test"),))  # fmt: skip


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_each_transition_is_allowed_or_refused_as_spec_says(state: str, action: str) -> None:
    day = dt.date(2010, 10, 21)
    wanted = LEGAL.get((state, action))
    if wanted is None:
        with pytest.raises(OrderError, match=r"x.*t/x/firm_daily_limit"):
            transition(an_order(state), action, "x", change(), day)
        return
    after = transition(an_order(state), action, "x", change(), day)
    assert after.state == wanted
    assert after.history[-1] == Change(wanted, AT, "李督查", "现场核实")
    assert after.stands(day) == (wanted in OPEN)


def test_no_order_and_an_ended_order_are_refused_in_words() -> None:
    with pytest.raises(OrderError, match="x has no cutoff order"):
        transition(None, "confirm", "x", change(), dt.date(2010, 10, 21))
    with pytest.raises(OrderError, match="ended"):
        transition(an_order("issued"), "executed", "x", change(), dt.date(2011, 1, 1))


@settings(max_examples=100, deadline=None)
@given(actions=st.lists(st.sampled_from(sorted(ACTIONS)), max_size=8))
def test_any_sequence_of_commands_keeps_a_true_history(actions: list[str]) -> None:
    engine, _ = run(policy(), [r("x-m", "2010-10-20 00:00", 0.0), r("x-m", "2010-10-20 12:00", 100.5)])
    done = 0
    for action in actions:
        before = engine.orders["x"]
        try:
            after = command(engine, action, "x", change(reason=action))
        except OrderError:
            assert engine.orders["x"] is before  # refused: nothing changed
            continue
        done += 1
        assert after.history[:-1] == before.history
    order = engine.orders["x"]
    assert len(order.history) == 1 + done
    assert order.history[0].state == "pending"
    assert ("x" in engine.cut_off(dt.date(2010, 10, 20))) == (order.state in OPEN)


def test_an_order_made_by_hand() -> None:
    engine, _ = run(policy(ESCALATION), [r("s-m", "2010-10-21 00:00", 0.0), r("s-m", "2010-10-21 08:00", 30.0)])
    order, alerts = issue(engine, "s", change(reason="现场发现夜间生产，拒不执行"))
    assert order.alert_id == "t/s/manual_order/2010-10-21"
    assert (order.rule, order.state, order.from_day, order.until) == (
        "manual_order",
        "issued",
        "2010-10-21",
        "2010-12-31",
    )
    assert order.evidence["consumed_kwh"] == 30.0
    assert order.breach_from == "2010-10-22"
    assert [a.id for a in alerts] == ["t/s/escalation/1"]  # a violation found on site counts
    with pytest.raises(OrderError, match="already under an order"):
        issue(engine, "s", change())
    command(engine, "lift", "s", change(reason="整改到位"))
    again, _ = issue(engine, "s", change())
    assert again.alert_id == "t/s/manual_order/2010-10-21/2"  # each id once
    with pytest.raises(OrderError, match="unknown firm"):
        issue(engine, "nobody", change())


def test_escalation_climbs_through_daily_breaches_and_names_the_liaison() -> None:
    liaison = '\n[[firms]]\nid = "q"\nname = "强化厂"\nkind = "large"\ngroup = "paper"\nliaison = "李副镇长"\n'
    engine = Engine(Policy.model_validate(tomllib.loads(policy_text(meters=("q",), firms_extra=liaison) + ESCALATION)))
    alerts = []
    for n, day in enumerate(["2010-10-20", "2010-10-21", "2010-10-22", "2010-10-23"]):
        alerts += engine.ingest(r("q-m", f"{day} 06:00", 1000.0 * n))
        alerts += engine.ingest(r("q-m", f"{day} 12:00", 1000.0 * n + 500))
    escalations = [a for a in alerts if a.rule == "escalation"]
    assert [a.id for a in escalations] == [f"t/q/escalation/{n}" for n in (1, 2, 3)]
    assert all(a.severity == "warning" and a.firm == "q" for a in escalations)
    assert "书面通报并问责" in escalations[2].message
    assert "联系领导：李副镇长" in escalations[2].message
    escalated = engine.escalations["q"]
    assert (escalated.count, escalated.after) == (4, 3)  # the off day's violation, then three daily breaches
    held = talk(engine, "q", Talk(AT, "镇纪委书记", "约谈厂长，责令立即停产"))
    assert held.talks == (Talk(AT, "镇纪委书记", "约谈厂长，责令立即停产"),)
    assert held.payload("q", {3: "书面通报并问责"})["step"] == "书面通报并问责"


def test_orders_escalations_and_talks_carry_over_as_state() -> None:
    engine, _ = run(policy(ESCALATION), [r("x-m", "2010-10-20 00:00", 0.0), r("x-m", "2010-10-20 12:00", 100.5)])
    command(engine, "confirm", "x", change())
    command(engine, "notified", "x", change(reason="通知书已送达"))
    talk(engine, "x", Talk(AT, "镇长", "约谈"))
    state = engine.state()
    again = Engine(engine.policy, EngineState.from_dict(state.as_dict()))
    assert again.orders == engine.orders
    assert again.escalations == engine.escalations
    assert order_from_json(order_to_json(engine.orders["x"])) == engine.orders["x"]


def test_an_order_journaled_before_orders_had_states_is_read() -> None:
    old = {"firm": "x", "firm_name": "盛达", "alert_id": "a", "rule": "rota_off_day", "issued": AT,
           "from_day": "2010-10-20", "until": "2010-12-31", "evidence": {},
           "lifted": {"by": "站长", "reason": "复核", "at": "2010-10-22T08:00:00+08:00"}}  # fmt: skip
    order = order_from_json(old)
    assert order.state == "lifted"
    assert not order.open
    assert [c.state for c in order.history] == ["issued", "lifted"]
    assert order.history[-1].by == "站长"
    standing = order_from_json({**old, "lifted": None})
    assert standing.state == "issued"
    assert standing.breach_from == "2010-10-21"


def test_make_policy_still_gives_no_enforcement() -> None:
    assert make_policy().enforcement.escalation == ()
    assert make_policy().enforcement.confirm == "auto"
