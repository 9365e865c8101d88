"""Calendar, control period and rota: pure functions of the policy and a day."""

from quotad.schedule.calendar import Calendar, Micros, from_micros, to_micros
from quotad.schedule.control import ControlPeriod
from quotad.schedule.rota import DaySchedule, Plan

__all__ = ["Calendar", "ControlPeriod", "DaySchedule", "Micros", "Plan", "from_micros", "to_micros"]
