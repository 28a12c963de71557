"""Time for every time-dependent answer: one ``now()`` in Europe/Amsterdam that tests
can set, Dutch public holidays (``holidays`` library) and Dutch day expressions.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from typing import Optional, Tuple
from zoneinfo import ZoneInfo

import holidays

TZ = ZoneInfo("Europe/Amsterdam")
WEEKDAY_NAMES = ["maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"]
MONTH_NAMES = [
    "januari", "februari", "maart", "april", "mei", "juni",
    "juli", "augustus", "september", "oktober", "november", "december",
]
_fixed_now: Optional[dt.datetime] = None


def set_now(moment: Optional[dt.datetime]) -> None:
    """Freezes ``now()`` (tests, simulations); ``None`` returns to the real clock."""
    global _fixed_now
    _fixed_now = moment.astimezone(TZ) if moment and moment.tzinfo else (
        moment.replace(tzinfo=TZ) if moment else None
    )


def now() -> dt.datetime:
    """Current time in Europe/Amsterdam (``APPCARE_NOW`` = ISO time overrides it)."""
    if _fixed_now is not None:
        return _fixed_now
    fixed = os.environ.get("APPCARE_NOW")
    if fixed:
        moment = dt.datetime.fromisoformat(fixed)
        return moment.astimezone(TZ) if moment.tzinfo else moment.replace(tzinfo=TZ)
    return dt.datetime.now(TZ)


def public_holiday(day: dt.date) -> Optional[str]:
    """Dutch name of the public holiday on ``day``, or None."""
    return holidays.NL(years=day.year, language="nl").get(day)


# Holiday expressions as citizens type them -> holidays library name.
_HOLIDAY_ALIASES = [
    (r"(2e|tweede)\s*kerst(dag)?", "Tweede Kerstdag"),
    (r"(1e|eerste)\s*kerst(dag)?|kerstmis|kerst", "Eerste Kerstdag"),
    (r"nieuwjaar(sdag)?|1\s*januari", "Nieuwjaarsdag"),
    (r"goede\s*vrijdag", "Goede Vrijdag"),
    (r"(2e|tweede)\s*paas(dag|maandag)|paasmaandag", "Tweede paasdag"),
    (r"(1e|eerste)\s*paasdag|pasen|paaszondag", "Eerste paasdag"),
    (r"koning(s|innen?)dag", "Koningsdag"),
    (r"bevrijdingsdag", "Bevrijdingsdag"),
    (r"hemelvaart(sdag)?", "Hemelvaartsdag"),
    (r"(2e|tweede)\s*pinkster(dag|en)?|pinkstermaandag", "Tweede Pinksterdag"),
    (r"(1e|eerste)\s*pinksterdag|pinksteren", "Eerste Pinksterdag"),
]


def _holiday_date(name: str, after: dt.date) -> Optional[dt.date]:
    for year in (after.year, after.year + 1):
        # Bevrijdingsdag is only a "public" holiday every five years in the library.
        table = holidays.NL(years=year, language="nl", categories=("public", "optional"))
        for day, holiday_name in sorted(table.items()):
            if holiday_name.lower() == name.lower() and day >= after:
                return day
    return None


def parse_day(text: str, base: Optional[dt.datetime] = None) -> Optional[Tuple[dt.date, str]]:
    """Parses a Dutch day expression ("morgen", "zaterdag", "2e kerstdag", "27 april").

    Returns (date, label) with a label fit for a reply ("morgen", "zaterdag 28 november"),
    or None when the text is not understood.
    """
    if not text:
        return None
    base = base or now()
    today = base.date()
    t = re.sub(r"[^\w\s/-]", " ", text.lower()).strip()
    t = re.sub(r"\s+", " ", t)
    simple = {"vandaag": 0, "nu": 0, "morgen": 1, "overmorgen": 2, "gisteren": -1}
    if t in simple:
        day = today + dt.timedelta(days=simple[t])
        return day, t
    for pattern, name in _HOLIDAY_ALIASES:
        if re.fullmatch(pattern, t) or re.search(rf"\b(?:{pattern})\b", t):
            day = _holiday_date(name, today)
            if day:
                return day, f"{name.lower()} ({format_date(day)})"
    if re.search(r"\b(dit |het )?weekend\b", t):
        day = today + dt.timedelta(days=(5 - today.weekday()) % 7)
        return day, f"zaterdag {format_date(day, with_weekday=False)}"
    next_week = "volgende week" in t or "komende week" in t
    for index, name in enumerate(WEEKDAY_NAMES):
        if re.search(rf"\b{name[:2]}{name[2:]}s?\b", t) or t in {name[:2], name[:3]}:
            if re.search(r"\d", t):
                break  # "vrijdag 4 december": the date decides
            delta = (index - today.weekday()) % 7
            if next_week:
                delta = delta + 7 if delta <= (6 - today.weekday()) else delta
            day = today + dt.timedelta(days=delta)
            return day, f"{name} {format_date(day, with_weekday=False)}"
    import dateparser  # local import: slow to import, rarely needed

    parsed = dateparser.parse(
        t,
        languages=["nl"],
        settings={
            "PREFER_DATES_FROM": "future",
            "RELATIVE_BASE": base.replace(tzinfo=None),
            "DATE_ORDER": "DMY",
        },
    )
    if parsed:
        day = parsed.date()
        if day < today and not re.search(r"\b\d{4}\b", t):
            try:
                day = day.replace(year=day.year + 1)
            except ValueError:
                return None
        return day, format_date(day)
    return None


def format_date(day: dt.date, with_weekday: bool = True) -> str:
    text = f"{day.day} {MONTH_NAMES[day.month - 1]}"
    return f"{WEEKDAY_NAMES[day.weekday()]} {text}" if with_weekday else text


def format_moment(moment: dt.datetime, reference: Optional[dt.datetime] = None) -> str:
    """'vandaag om 13:00', 'morgen om 8:30', 'maandag 30 november om 8:30'."""
    reference = reference or now()
    moment = moment.astimezone(TZ)
    delta = (moment.date() - reference.date()).days
    clock_time = f"{moment.hour}:{moment.minute:02d}"
    if delta == 0:
        return f"vandaag om {clock_time}"
    if delta == 1:
        return f"morgen om {clock_time}"
    return f"{format_date(moment.date())} om {clock_time}"
