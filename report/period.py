"""The reporting period (local days in Europe/Amsterdam time) and the day, week and
month a moment belongs to."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import List, Union
from zoneinfo import ZoneInfo

from report.labels import MONTHS_NL

TZ = ZoneInfo("Europe/Amsterdam")
UTC = dt.timezone.utc


@dataclass(frozen=True)
class Period:
    """A half-open interval [start, end) of aware datetimes (Europe/Amsterdam)."""

    start: dt.datetime
    end: dt.datetime

    @classmethod
    def from_dates(cls, first_day: dt.date, last_day: dt.date) -> "Period":
        """Local days ``first_day`` up to and including ``last_day`` (DST-correct)."""
        if last_day < first_day:
            raise ValueError(f"period ends ({last_day}) before it starts ({first_day})")
        start = dt.datetime.combine(first_day, dt.time(0), tzinfo=TZ)
        end = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(0), tzinfo=TZ)
        return cls(start, end)

    @classmethod
    def of(cls, start: Union[dt.date, dt.datetime, str], end: Union[dt.date, dt.datetime, str]) -> "Period":
        """Dates (or 'YYYY-MM-DD') are whole local days with ``end`` included;
        datetimes are instants with ``end`` excluded (naive ones are local time)."""
        start, end = _coerce(start), _coerce(end)
        if isinstance(start, dt.datetime) or isinstance(end, dt.datetime):
            s = start if isinstance(start, dt.datetime) else dt.datetime.combine(start, dt.time(0))
            e = end if isinstance(end, dt.datetime) else dt.datetime.combine(end + dt.timedelta(days=1), dt.time(0))
            s = s.astimezone(TZ) if s.tzinfo else s.replace(tzinfo=TZ)
            e = e.astimezone(TZ) if e.tzinfo else e.replace(tzinfo=TZ)
            if e < s:
                raise ValueError("period ends before it starts")
            return cls(s, e)
        return cls.from_dates(start, end)

    @property
    def start_ts(self) -> float:
        return self.start.timestamp()

    @property
    def end_ts(self) -> float:
        return self.end.timestamp()

    @property
    def first_day(self) -> dt.date:
        return self.start.date()

    @property
    def last_day(self) -> dt.date:
        last = (self.end - dt.timedelta(microseconds=1)).astimezone(TZ)
        return max(last.date(), self.first_day)

    def days(self) -> List[dt.date]:
        count = (self.last_day - self.first_day).days + 1
        return [self.first_day + dt.timedelta(days=i) for i in range(count)]

    def label(self) -> str:
        a, b = self.first_day, self.last_day
        if a == b:
            return f"{a.day} {MONTHS_NL[a.month - 1]} {a.year}"
        return f"{a.day} {MONTHS_NL[a.month - 1]} {a.year} t/m {b.day} {MONTHS_NL[b.month - 1]} {b.year}"


def _coerce(value: Union[dt.date, dt.datetime, str]) -> Union[dt.date, dt.datetime]:
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value) if "T" in value or " " in value.strip() else dt.date.fromisoformat(value)
    return value


def local(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, TZ)


def day_key(ts: float) -> str:
    return local(ts).date().isoformat()


def week_key(ts: float) -> str:
    year, week, _ = local(ts).date().isocalendar()
    return f"{year}-W{week:02d}"


def month_key(ts: float) -> str:
    return local(ts).strftime("%Y-%m")
