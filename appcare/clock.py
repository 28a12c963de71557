"""Time for every time-dependent answer: one ``now()`` in Europe/Amsterdam that tests
can set, Dutch public holidays (``holidays`` library) and Dutch day expressions.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from typing import List, Optional, Tuple
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


def _holiday_date(name: str, after: dt.date) -> Optional[dt.date]:
    """First day on or after ``after`` with the holidays library's Dutch ``name``."""
    for year in (after.year, after.year + 1):
        # Bevrijdingsdag is only a "public" holiday every five years in the library.
        table = holidays.NL(years=year, language="nl", categories=("public", "optional"))
        for day, holiday_name in sorted(table.items()):
            if holiday_name.lower() == name.lower() and day >= after:
                return day
    return None


def named_day_date(name: str, after: dt.date) -> Optional[dt.date]:
    """Date of a named day (holiday library name or kerstavond/oudjaarsdag/pakjesavond)
    on or after ``after``."""
    from appcare.plugins.nlu.dates import SPECIAL_DAYS

    if name in SPECIAL_DAYS:
        month, day_of_month = SPECIAL_DAYS[name]
        day = dt.date(after.year, month, day_of_month)
        return day if day >= after else dt.date(after.year + 1, month, day_of_month)
    return _holiday_date(name, after)


def _normalise(text: str) -> str:
    t = re.sub(r"[^\w\s/'&-]", " ", text.lower())
    return re.sub(r"\s+", " ", t).strip()


_PART_LABEL = {"ochtend": "'s ochtends", "middag": "'s middags", "avond": "'s avonds", "nacht": "'s nachts"}
_TODAY_PART = {"ochtend": "vanochtend", "middag": "vanmiddag", "avond": "vanavond", "nacht": "vannacht"}


def split_day_part(text: str) -> Tuple[str, Optional[str]]:
    """The day without its part and the part: "woensdagavond" -> ("woensdag", "avond"),
    "vanmiddag" -> ("vandaag", "middag"), "morgenochtend om 9 uur" -> ("morgen", "ochtend")."""
    from appcare.plugins.nlu import dates

    t = dates.strip_time(dates.fix_weekday_typos(_normalise(text or "")))
    core, part = dates.split_day_part(t)
    core = re.sub(r"\bvroeg\b", "", core).strip(" '")
    if part and re.fullmatch(r"(?:ook|en|en ook)?", core):
        core = ""  # "ook 's avonds": a bare day part
    if part is None and re.search(r"\bmorgen\s*vroeg\b", t):
        part = "ochtend"
    return core, part


def is_bare_day_part(text: str) -> bool:
    """True for a day part without a day ("'s avonds", "en in de middag"): it means the day
    the bot answered last."""
    core, part = split_day_part(text or "")
    return bool(part) and not core


def day_part(text: str) -> Optional[str]:
    """"ochtend", "middag", "avond" or "nacht" when the expression names a part of a day."""
    return split_day_part(text)[1] if text else None


def parse_day(text: str, base: Optional[dt.datetime] = None,
              anchor: Optional[dt.date] = None) -> Optional[Tuple[dt.date, str]]:
    """Parses a Dutch day expression ("morgen", "zaterdag", "2e kerstdag", "27 april",
    "woensdagavond", "morgenochtend om kwart over negen", "oudjaarsdag", "over twee weken"),
    weekday names and today/tomorrow in English, German, French, Polish and Turkish
    ("Saturday", "am Samstag", "sobotę", "yarın"), and follow-ups relative to ``anchor``,
    the day the bot answered last (today without one): "de dag erna", "een dag eerder",
    "the next day", and a bare day part ("'s avonds", "in de middag") on that day.

    Returns (date, label) with a label fit for a reply ("morgen", "zaterdag 28 november",
    "woensdagavond 2 december"), or None when the text is not understood.
    """
    if not text:
        return None
    base = base or now()
    core, part = split_day_part(text)
    if not core and part:
        day = anchor or base.date()
        parsed: Optional[Tuple[dt.date, str]] = (day, "vandaag" if day == base.date() else format_date(day))
    else:
        parsed = _parse_plain_day(core, base, anchor)
    if not parsed or not part:
        return parsed
    day, label = parsed
    for name in WEEKDAY_NAMES:
        if label.startswith(name + " "):
            return day, f"{name}{part}{label[len(name):]}"
    if label == "vandaag":
        return day, _TODAY_PART[part]
    if label in ("morgen", "overmorgen"):
        return day, f"{label}{part}"
    return day, f"{label} {_PART_LABEL[part]}"


def _parse_plain_day(t: str, base: dt.datetime, anchor: Optional[dt.date] = None) -> Optional[Tuple[dt.date, str]]:
    from appcare.plugins.nlu import dates

    today = base.date()
    if not t:
        return None
    simple = {"vandaag": 0, "nu": 0, "morgen": 1, "overmorgen": 2, "gisteren": -1}
    if t in simple:
        day = today + dt.timedelta(days=simple[t])
        return day, t
    offset = dates.relative_offset(t)
    if offset is not None:  # "de dag erna": from the day answered last
        day = (anchor or today) + dt.timedelta(days=offset)
        return day, format_date(day)
    name = dates.named_day(t)
    if name:
        day = named_day_date(name, today)
        if day:
            return day, f"{name.lower()} ({format_date(day)})"
    if re.search(r"\b(dit |het )?weekend\b", t):
        day = today + dt.timedelta(days=(5 - today.weekday()) % 7)
        return day, f"zaterdag {format_date(day, with_weekday=False)}"
    next_week = re.search(r"\b(volgende|komende|aankomende) week\b|\bover een week\b", t) is not None
    for index, weekday in enumerate(WEEKDAY_NAMES):
        if re.search(rf"\b{weekday}s?\b", t) or t in {weekday[:2], weekday[:3]}:
            if re.search(r"\d", t):
                break  # "vrijdag 4 december": the date decides
            delta = (index - today.weekday()) % 7
            if next_week:
                delta = delta + 7 if delta <= (6 - today.weekday()) else delta
            day = today + dt.timedelta(days=delta)
            return day, f"{weekday} {format_date(day, with_weekday=False)}"
    foreign = dates.foreign_day(t)
    if foreign and not re.search(r"\d", t):
        kind, value = foreign
        if kind == "offset":
            day = today + dt.timedelta(days=value)
            return day, ("vandaag", "morgen", "overmorgen")[value]
        day = today + dt.timedelta(days=(value - today.weekday()) % 7)
        return day, f"{WEEKDAY_NAMES[value]} {format_date(day, with_weekday=False)}"
    import dateparser  # local import: slow to import, rarely needed
    from appcare.plugins.nlu.ages import number_value

    # "over twee weken" -> "over 2 weken", "over een week" -> "over 1 week" (text2num)
    numeric = t
    if re.match(r"over ", t):
        numeric = re.sub(r"\bover een\b", "over 1", t)
        numeric = re.sub(r"\b[a-zë]+\b", lambda m: str(number_value(m.group(0)) or m.group(0)), numeric)
    settings = {
        "PREFER_DATES_FROM": "future",
        "RELATIVE_BASE": base.replace(tzinfo=None),
        "DATE_ORDER": "DMY",
    }
    parsed = dateparser.parse(numeric, languages=["nl"], settings=settings)
    if not parsed and re.search(r"[^\W\d_]", t):
        # "24. Dezember", "December 24th", "24 grudnia": the other languages
        parsed = dateparser.parse(t, languages=list(dates.FOREIGN_LANGUAGES), settings=settings)
    if parsed:
        day = parsed.date()
        if day < today and not re.search(r"\b\d{4}\b", t):
            try:
                day = day.replace(year=day.year + 1)
            except ValueError:
                return None
        return day, format_date(day)
    return None


MAX_PERIOD_DAYS = 31
_RANGE_SEPARATORS = (
    (r"^(?:tussen)\s+(.+?)\s+en\s+(.+)$", True),
    (r"^(?:van|vanaf)\s+(.+?)\s+(?:tot en met|t/m|tm|tot)\s+(.+)$", True),
    (r"^(.+?)\s+(?:tot en met|t/m|tm)\s+(.+)$", True),
)


def _period_label(phrase: str, days: List[dt.date]) -> str:
    first, last = days[0], days[-1]
    if first == last:
        span = format_date(first)
    elif len(days) == 2:
        span = (f"{first.day} en {format_date(last, with_weekday=False)}" if first.month == last.month
                else f"{format_date(first, with_weekday=False)} en {format_date(last, with_weekday=False)}")
    elif first.month == last.month:
        span = f"{first.day} t/m {format_date(last, with_weekday=False)}"
    else:
        span = f"{format_date(first, with_weekday=False)} t/m {format_date(last, with_weekday=False)}"
    return f"{phrase} ({span})"


def _days(first: dt.date, last: dt.date) -> List[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def parse_period(text: str, base: Optional[dt.datetime] = None) -> Optional[Tuple[List[dt.date], str]]:
    """Parses a Dutch period ("deze week", "volgende week", "door de week", "dit weekend",
    "tussen kerst en oud en nieuw", "van maandag tot vrijdag", "de kerstdagen").

    Returns (days, label), e.g. ([25 Dec .. 31 Dec], "tussen kerst en oud en nieuw
    (25 t/m 31 december)"), or None when the text names no period (a single day).
    """
    if not text:
        return None
    base = base or now()
    today = base.date()
    t = _normalise(text)
    from appcare.plugins.nlu import dates

    t = dates.fix_weekday_typos(t)
    for pattern, _ in _RANGE_SEPARATORS:
        match = re.match(pattern, t)
        if not match:
            continue
        # "tussen kerst en oud en nieuw": try every "en" until both sides are days
        left_right = [(match.group(1), match.group(2))]
        if pattern.startswith("^(?:tussen)"):
            words = t.split()[1:]
            left_right = [(" ".join(words[:i]), " ".join(words[i + 1:]))
                          for i, w in enumerate(words) if w == "en" and 0 < i < len(words) - 1]
        for left, right in left_right:
            first, last = parse_day(left, base), parse_day(right, base)
            if not first or not last:
                continue
            start, end = first[0], last[0]
            if end < start:
                # asked during the period itself: the start lies in the past ("tussen kerst en
                # oud en nieuw" on 28 December)
                earlier = parse_day(left, base - dt.timedelta(days=MAX_PERIOD_DAYS))
                if earlier and earlier[0] <= end:
                    start = max(earlier[0], today)
            if start <= end and (end - start).days < MAX_PERIOD_DAYS:
                return _days(start, end), _period_label(t, _days(start, end))
    monday = today - dt.timedelta(days=today.weekday())
    weekday_named = any(re.search(rf"\b{name}", t) for name in WEEKDAY_NAMES)
    if re.search(r"\b(door de week|doordeweeks|doordeweekse dagen|op werkdagen)\b", t):
        start = monday if today.weekday() < 5 else monday + dt.timedelta(days=7)
        days = _days(start, start + dt.timedelta(days=4))
        return days, _period_label("door de week", days)
    if re.search(r"\b(deze|dit) week\b", t) and not weekday_named:
        days = _days(today, monday + dt.timedelta(days=6))
        return days, _period_label("deze week", days)
    if re.search(r"\b(volgende|komende|aankomende|de komende) week\b", t) and not weekday_named:
        start = monday + dt.timedelta(days=7)
        days = _days(start, start + dt.timedelta(days=6))
        return days, _period_label("volgende week", days)
    if re.search(r"\bweekends?\b", t):
        saturday = monday + dt.timedelta(days=5)
        if re.search(r"\bvolgende? weekend\b", t) and today.weekday() >= 5:
            saturday += dt.timedelta(days=7)
        days = [d for d in _days(saturday, saturday + dt.timedelta(days=1)) if d >= today]
        phrase = "volgend weekend" if re.search(r"\bvolgende? weekend\b", t) else "dit weekend"
        return days, _period_label(phrase, days)
    if re.search(r"\bkerstdagen\b", t):
        first = named_day_date("Eerste Kerstdag", today)
        days = _days(first, first + dt.timedelta(days=1))
        return days, _period_label("de kerstdagen", days)
    if re.search(r"\bfeestdagen\b", t):
        eve = named_day_date("Kerstavond", today - dt.timedelta(days=8))
        days = [d for d in _days(eve, eve + dt.timedelta(days=8)) if d >= today]
        return days, _period_label("de feestdagen", days)
    return None


def format_date(day: dt.date, with_weekday: bool = True, lang: str = "nl") -> str:
    """'maandag 30 november' (Dutch) or 'Monday 30 November' (``lang`` "en", Babel's CLDR names)."""
    if lang == "en":
        from babel.dates import format_date as babel_date

        return babel_date(day, "EEEE d MMMM" if with_weekday else "d MMMM", locale="en_GB")
    text = f"{day.day} {MONTH_NAMES[day.month - 1]}"
    return f"{WEEKDAY_NAMES[day.weekday()]} {text}" if with_weekday else text


def format_moment(moment: dt.datetime, reference: Optional[dt.datetime] = None, lang: str = "nl") -> str:
    """'vandaag om 13:00', 'morgen om 8:30', 'maandag 30 november om 8:30'; in English
    'today at 13:00', 'tomorrow at 8:30', 'Monday 30 November at 8:30'."""
    reference = reference or now()
    moment = moment.astimezone(TZ)
    delta = (moment.date() - reference.date()).days
    clock_time = f"{moment.hour}:{moment.minute:02d}"
    english = lang == "en"
    if delta == 0:
        return f"today at {clock_time}" if english else f"vandaag om {clock_time}"
    if delta == 1:
        return f"tomorrow at {clock_time}" if english else f"morgen om {clock_time}"
    return f"{format_date(moment.date(), lang=lang)} {'at' if english else 'om'} {clock_time}"


def weekday_name(index: int, lang: str = "nl") -> str:
    """Name of weekday ``index`` (0 = Monday): "maandag" or "Monday"."""
    if lang == "en":
        return ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"][index]
    return WEEKDAY_NAMES[index]


def day_label(day: dt.date, today: dt.date, lang: str = "nl") -> str:
    """"vandaag", "morgen" or "donderdag 24 december" (English: "today", ...)."""
    delta = (day - today).days
    if delta == 0:
        return "today" if lang == "en" else "vandaag"
    if delta == 1:
        return "tomorrow" if lang == "en" else "morgen"
    return format_date(day, lang=lang)


def next_working_day_text(lang: str = "nl") -> str:
    """The promise when no opening moment is known."""
    return "the next working day" if lang == "en" else "de eerstvolgende werkdag"
