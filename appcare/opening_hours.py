"""Opening hours per desk: regular weekly hours, the municipality's own exceptions,
public holidays; 'open now?' and the next opening moment. Times in Europe/Amsterdam."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from appcare.clock import TZ, WEEKDAY_NAMES, public_holiday
from appcare.content import HoursFact, MunicipalContent

Range = Tuple[dt.time, dt.time]


@dataclass
class DayHours:
    day: dt.date
    ranges: List[Range]
    reason: Optional[str] = None  # holiday name or exception reason when it differs
    verified: bool = True

    @property
    def closed(self) -> bool:
        return not self.ranges

    def text(self, lang: str = "nl") -> str:
        """"8:30 tot 12:00 en 13:00 tot 17:00" (in English "8:30 to 12:00 and ...")."""
        to, conj = (" to ", " and ") if lang == "en" else (" tot ", " en ")
        return conj.join(f"{_t(a)}{to}{_t(b)}" for a, b in self.ranges)


def _t(value: dt.time) -> str:
    return f"{value.hour}:{value.minute:02d}"


def _parse_ranges(items: List[str]) -> List[Range]:
    result = []
    for item in items:
        start, end = item.split("-")
        result.append((dt.time.fromisoformat(start), dt.time.fromisoformat(end)))
    return result


def hours_fact(content: MunicipalContent, desk: str) -> HoursFact:
    if desk == "kcc":
        return content.kcc.hours
    return content.desks[desk].hours


def hours_on(content: MunicipalContent, desk: str, day: dt.date) -> DayHours:
    """Hours of a desk ('balie', 'telefoon' or 'kcc') on one day."""
    fact = hours_fact(content, desk)
    for exc in content.closures.exceptions:
        if exc.date == day and (exc.desk in (None, desk)):
            return DayHours(day, _parse_ranges(exc.hours), exc.reason, exc.verified)
    holiday = public_holiday(day)
    if holiday and content.closures.closed_on_public_holidays.value:
        return DayHours(day, [], holiday, content.closures.closed_on_public_holidays.verified)
    weekly: Dict[str, List[str]] = fact.value
    return DayHours(day, _parse_ranges(weekly[WEEKDAY_NAMES[day.weekday()]]), None, fact.verified)


def is_open(content: MunicipalContent, desk: str, moment: dt.datetime) -> bool:
    local = moment.astimezone(TZ)
    hours = hours_on(content, desk, local.date())
    return any(start <= local.time() < end for start, end in hours.ranges)


def closes_at(content: MunicipalContent, desk: str, moment: dt.datetime) -> Optional[dt.datetime]:
    local = moment.astimezone(TZ)
    for start, end in hours_on(content, desk, local.date()).ranges:
        if start <= local.time() < end:
            return dt.datetime.combine(local.date(), end, tzinfo=TZ)
    return None


def next_opening(
    content: MunicipalContent, desk: str, moment: dt.datetime, horizon_days: int = 21
) -> Optional[dt.datetime]:
    """First moment at or after ``moment`` at which the desk is open."""
    local = moment.astimezone(TZ)
    for offset in range(horizon_days + 1):
        day = local.date() + dt.timedelta(days=offset)
        for start, end in hours_on(content, desk, day).ranges:
            # Combine with a zone-aware datetime so DST days get the right offset.
            opening = dt.datetime.combine(day, start, tzinfo=TZ)
            closing = dt.datetime.combine(day, end, tzinfo=TZ)
            if closing <= local:
                continue
            return max(opening, local)
    return None


def schedule_verified(
    content: MunicipalContent, desk: str, start: dt.datetime, end: Optional[dt.datetime] = None
) -> bool:
    """True when the desk's hours on every day from ``start`` to ``end`` (inclusive; only
    ``start``'s day without ``end``) come from verified facts: weekly hours, exceptions and
    the public-holiday rule. Only then may a reply name a clock time derived from them."""
    first = start.astimezone(TZ).date()
    last = end.astimezone(TZ).date() if end else first
    day = first
    while day <= last:
        if not hours_on(content, desk, day).verified:
            return False
        day += dt.timedelta(days=1)
    return True
