"""What goes out on the notice channels, to whom (SPEC "Notices and channels"), as pure functions of the engine.

A `Notice` is one message for one channel. Its `id` is stable and unique for what it says and where it goes (the
delivery's idempotency key: never sent twice), so the same event always makes the same notices. Every id is
`<kind>:<what it is about>:<channel>` (a channel's name holds no ':'):

- `alert:<alert id>:<ch>`: a firm's own notice or warning alert (FIRM_RULES), to the firm's channels;
- `cutoff:<order's alert id>:<ch>`: the 停电通知书 of an order once it is issued (not while pending), to the firm's
  channels (`to_firm`) and `[enforcement] supply_station` (供电所);
- `breach:<alert id>:<ch>`: a `cutoff_breach` (违令), to the firm, the station and `[reports] to`;
- `escalation:<alert id>:<ch>`: an escalation (约谈升级), to `[reports] to`;
- `lifted:<order's alert id>:<ch>`: an issued order lifted (恢复供电通知), to the firm and the station;
- `rota:<tomorrow>:<firm>:<ch>`: a firm's own rota of tomorrow with its allowance left, to the firm;
- `residents:<day>:<when>:<ch>`: the experience day ('eve', 'morning'), to `[residents] channels`;
- `report:daily:<day>:<ch>`: the daily report, its files attached where the channel can, to `[reports] to`.

A firm's channels are the distinct `channel`s of its contacts, in order. One event goes once to a channel however
many roles name it (the firm's copy first: a station that is also a firm channel gets the firm's copy).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from quotad.core.alerts import SEVERITY_NAMES, Alert
from quotad.core.engine import Engine
from quotad.core.notice_texts import cutoff_text, day_text, lifted_text, rota_text
from quotad.core.orders import Order
from quotad.core.policy import Firm, Policy
from quotad.core.views import residents_text
from quotad.schedule.calendar import Micros

__all__ = [
    "FIRM_RULES",
    "Notice",
    "cutoff_notices",
    "firm_channels",
    "order_notices",
    "reading_notices",
    "report_notices",
    "residents_notices",
    "rota_notices",
]

# the firm's own rules whose notice and warning alerts go to the firm (its meters' alerts are the inspectors')
FIRM_RULES = frozenset({"firm_daily_limit", "monthly_quota"})
_TOLD = frozenset({"notice", "warning"})  # the severities of a firm's own alerts it is told of
_LIFTED_FROM = frozenset({"issued", "notified", "executed"})


@dataclass(frozen=True)
class Notice:
    """One message on one channel.

    `kind`: "rota", "alert" (a firm's notice or warning), "cutoff" (停电通知书), "lifted" (恢复供电), "breach",
    "escalation", "residents", "report". A cutoff notice names its order (`firm`, `alert_id`); `to_firm` marks the
    copy for the firm's own channel, whose delivery marks the order notified. A report lists its `files` (names
    under `state_dir/reports/`) to attach where the channel can (email)."""

    id: str
    channel: str
    kind: str
    title: str
    text: str
    firm: str | None = None
    alert_id: str | None = None
    to_firm: bool = False
    files: tuple[str, ...] = ()

    def to_json(self) -> str:
        body = {"id": self.id, "channel": self.channel, "kind": self.kind, "title": self.title, "text": self.text,
                "firm": self.firm, "alert_id": self.alert_id, "to_firm": self.to_firm,
                "files": list(self.files)}  # fmt: skip
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Notice:
        data = json.loads(text)
        return cls(
            str(data["id"]), str(data["channel"]), str(data["kind"]), str(data["title"]), str(data["text"]),
            data.get("firm"), data.get("alert_id"), bool(data.get("to_firm")), tuple(data.get("files") or ()),
        )  # fmt: skip


def firm_channels(firm: Firm | None) -> tuple[str, ...]:
    """The distinct channels of `firm`'s contacts, in order (none for a firm the policy no longer has)."""
    if firm is None:
        return ()
    return tuple(dict.fromkeys(c.channel for c in firm.contacts if c.channel is not None))


def _each(
    kind: str, about: str, targets: Iterable[tuple[str, bool]], title: str, text: str, *, firm: str | None = None,
    alert_id: str | None = None, files: tuple[str, ...] = (),
) -> list[Notice]:  # fmt: skip
    """One notice per distinct channel of `targets` ((channel, to_firm), the first naming of a channel wins)."""
    seen: dict[str, bool] = {}
    for channel, to_firm in targets:
        seen.setdefault(channel, to_firm)
    return [
        Notice(f"{kind}:{about}:{channel}", channel, kind, title, text, firm, alert_id, to_firm, files)
        for channel, to_firm in seen.items()
    ]


def _firm_targets(firm: Firm | None, to_firm: bool = False) -> list[tuple[str, bool]]:
    return [(channel, to_firm) for channel in firm_channels(firm)]


def _station(policy: Policy) -> list[tuple[str, bool]]:
    station = policy.enforcement.supply_station
    return [(station, False)] if station is not None else []


def _leaders(policy: Policy) -> list[tuple[str, bool]]:
    return [(channel, False) for channel in policy.reports.to]


def _name(engine: Engine, firm_id: str | None, fallback: str | None) -> str:
    firm = engine.firms.get(firm_id) if firm_id is not None else None
    return firm.name if firm is not None else (fallback or firm_id or "")


_BREACH_TO_FIRM = "请立即停止用电，督查将到现场核查；违令用电计入约谈问责"


def cutoff_notices(engine: Engine, order: Order) -> list[Notice]:
    """The 停电通知书 of `order` to the firm's channels (`to_firm`) and the 供电所's."""
    firm = engine.firms.get(order.firm)
    targets = _firm_targets(firm, to_firm=True) + _station(engine.policy)
    title = f"停电通知书 · {_name(engine, order.firm, order.firm_name)}"
    return _each("cutoff", order.alert_id, targets, title, cutoff_text(engine, order), firm=order.firm,
                 alert_id=order.alert_id)  # fmt: skip


def reading_notices(engine: Engine, alerts: Sequence[Alert], orders: Sequence[Order]) -> list[Notice]:
    """What a reading's `alerts` and the orders it made or changed (`orders`) send: a firm's own notice and warning
    alerts, breaches, escalations, and the cutoff notice of each order issued (a pending one waits for its
    inspector: `order_notices` sends it when confirmed). Also for the alerts a command raised (with no orders)."""
    policy, out = engine.policy, []
    for alert in alerts:
        firm = engine.firms.get(alert.firm) if alert.firm is not None else None
        name = _name(engine, alert.firm, alert.firm_name)
        if alert.rule in FIRM_RULES and alert.severity in _TOLD:
            kind, targets, title = "alert", _firm_targets(firm), f"用电{SEVERITY_NAMES[alert.severity]} · {name}"
        elif alert.rule == "cutoff_breach":  # the firm is told to stop; the station and the leaders, to go and see
            title, ours = f"违令用电 · {name}", alert.message.replace("请督查立即到现场核查", _BREACH_TO_FIRM)
            out += _each("breach", alert.id, _firm_targets(firm), title, ours, firm=alert.firm, alert_id=alert.id)
            kind, targets = (
                "breach",
                [t for t in _station(policy) + _leaders(policy) if t[0] not in firm_channels(firm)],
            )
        elif alert.rule == "escalation":
            kind, targets, title = "escalation", _leaders(policy), f"约谈升级 · {name}"
        else:
            continue
        out += _each(kind, alert.id, targets, title, alert.message, firm=alert.firm, alert_id=alert.id)
    for order in orders:
        if order.state == "issued":
            out += cutoff_notices(engine, order)
    return out


def order_notices(engine: Engine, before: Order | None, order: Order) -> list[Notice]:
    """What a person's command on an order sends (`before`: the firm's order before it, `order` after): an order
    become issued (confirmed from pending, or made by hand) the cutoff notice; one lifted from issued, notified or
    executed the notice that supply is restored, to the firm and the 供电所; any other change nothing."""
    same = before is not None and before.alert_id == order.alert_id
    if order.state == "issued" and not (same and before is not None and before.state == "issued"):
        return cutoff_notices(engine, order)
    if order.state == "lifted" and same and before is not None and before.state in _LIFTED_FROM:
        firm = engine.firms.get(order.firm)
        targets = _firm_targets(firm) + _station(engine.policy)
        title = f"恢复供电通知 · {_name(engine, order.firm, order.firm_name)}"
        return _each("lifted", order.alert_id, targets, title, lifted_text(order), firm=order.firm,
                     alert_id=order.alert_id)  # fmt: skip
    return []


def rota_notices(engine: Engine, tomorrow: dt.date, t: Micros) -> list[Notice]:
    """Each firm with channels its own notice of `tomorrow`: does it run (or why not), its allowance left today
    and this month as of event time `t`."""
    out = []
    lead = "明日" if engine.calendar.day_of(t) + dt.timedelta(days=1) == tomorrow else day_text(tomorrow)
    for firm in engine.policy.firms:
        targets = _firm_targets(firm)
        if targets:
            text = rota_text(engine, firm, tomorrow, t)
            out += _each("rota", f"{tomorrow}:{firm.id}", targets, f"{lead}供电安排 · {firm.name}", text, firm=firm.id)
    return out


def residents_notices(engine: Engine, day: dt.date, hours: str, when: str) -> list[Notice]:
    """The residents' experience day `day` (`when`: 'eve' the day before, 'morning' that day) to the residents'
    channels."""
    residents = engine.policy.residents
    channels = residents.channels if residents is not None else ()
    title = f"能源紧缺体验日 · {day.month}月{day.day}日"
    text = residents_text(day, hours, when)
    return _each("residents", f"{day}:{when}", [(c, False) for c in channels], title, text)


def report_notices(policy: Policy, day: dt.date, files: Sequence[str], summary: str) -> list[Notice]:
    """The daily report of `day` to each `[reports] to` channel: `summary` as its text, `files` (names under
    `state_dir/reports/`) to attach where the channel can."""
    return _each("report", f"daily:{day}", _leaders(policy), f"用电日报 · {day}", summary, files=tuple(files))
