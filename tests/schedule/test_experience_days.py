"""The residents' experience days (能源紧缺体验日) by weekday, by date, or both (issue 16: `experience_dates`)."""

from __future__ import annotations

import datetime as dt
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from quotad.core.policy import WEEKDAYS, Policy
from quotad.schedule.rota import Plan
from tests.conftest import policy_text

START, END = dt.date(2010, 10, 1), dt.date(2010, 12, 31)
DAYS = st.dates(min_value=START - dt.timedelta(days=20), max_value=END + dt.timedelta(days=20))


def residents(text: str) -> Policy:
    return Policy.model_validate(tomllib.loads(policy_text(firms_extra=f"\n[residents]\n{text}\n")))


def dates_toml(days: list[dt.date]) -> str:
    return "[" + ", ".join(d.isoformat() for d in days) + "]"


def test_dates_alone_make_experience_days() -> None:
    plan = Plan(residents('experience_dates = [2010-10-23, 2010-11-02]\nexperience_hours = "08:00-12:00"'))
    assert plan.residents_hours(dt.date(2010, 10, 23)) == "08:00-12:00"
    assert plan.residents_hours(dt.date(2010, 11, 2)) == "08:00-12:00"
    assert plan.residents_hours(dt.date(2010, 10, 30)) is None  # the same weekday as the 23rd: dates only
    assert plan.day(dt.date(2010, 10, 23)).residents_hours == "08:00-12:00"


def test_dates_add_to_the_weekday() -> None:
    plan = Plan(residents('experience_weekday = "wed"\nexperience_dates = [2010-10-23]'))
    assert plan.residents_hours(dt.date(2010, 10, 20)) == "09:00-17:00"  # a Wednesday
    assert plan.residents_hours(dt.date(2010, 10, 23)) == "09:00-17:00"  # a Saturday, by date
    assert plan.residents_hours(dt.date(2010, 10, 24)) is None


@settings(max_examples=150, deadline=None)
@given(
    weekday=st.none() | st.sampled_from(WEEKDAYS),
    dates=st.lists(st.dates(min_value=START, max_value=END), unique=True, max_size=6),
    day=DAYS,
)
def test_an_experience_day_is_the_weekday_or_a_date_inside_control(
    weekday: str | None, dates: list[dt.date], day: dt.date
) -> None:
    if weekday is None and not dates:
        return
    text = f"experience_dates = {dates_toml(dates)}" + (f'\nexperience_weekday = "{weekday}"' if weekday else "")
    plan = Plan(residents(text))
    expected = START <= day <= END and (WEEKDAYS[day.weekday()] == weekday or day in dates)
    assert (plan.residents_hours(day) == "09:00-17:00") == expected
    assert (plan.residents_hours(day) is None) == (not expected)


def test_neither_weekday_nor_dates_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs experience_weekday or experience_dates"):
        residents('experience_hours = "09:00-17:00"')


def test_a_date_listed_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="listed more than once: 2010-10-23"):
        residents("experience_dates = [2010-10-23, 2010-10-23]")


def test_residents_channels_listed_twice_are_refused() -> None:
    with pytest.raises(ValidationError, match="listed more than once: town"):
        residents('experience_weekday = "wed"\nchannels = ["town", "town"]')
