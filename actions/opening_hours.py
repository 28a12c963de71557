"""Opening hours: today, tomorrow, a weekday, a date or a holiday, a day part
("woensdagavond": is there an evening opening?) or a period ("volgende week", "tussen
kerst en oud en nieuw": one line per day); 'open now?' and the next opening moment,
per desk (balie, telefoon).

The day of every day answer is kept in the slot ``last_day`` (ISO date): follow-ups
such as "en de dag erna?", "een dag eerder?" or "ook 's avonds?" are about that day."""
from __future__ import annotations

import datetime as dt
from typing import List, Optional

from appcare import clock, labels, opening_hours as oh, synonyms
from appcare.clock import WEEKDAY_NAMES

from actions.base import AppcareAction, Turn

def desk_of(turn: Turn) -> str:
    """The desk asked about ("stadhuis" -> balie, "bellen" -> telefoon: data/nlu/synonyms.yml),
    the counter when none or another."""
    desk = synonyms.canonical(turn.entity("desk") or "")
    return desk if desk in turn.content.desks else "balie"


def answer_opening_hours(turn: Turn, now_question: bool = False, followup: bool = False) -> None:
    """``followup``: a question in an opening-hours conversation without a day of its own
    ("en tot hoe laat?") is about the day answered last."""
    content = turn.content
    desk = desk_of(turn)
    desk_info = content.desks[desk]
    hours_fact = desk_info.hours
    if turn.fact(hours_fact) is None:
        turn.say("utter_hours_refer", desk_name=desk_info.name,
                 url=content.contact.website.value, phone=content.contact.phone.value)
        return
    now = turn.now
    day_text = turn.entity("date_expr")
    if day_text and clock.is_bare_day_part(day_text) and turn.last_day() is None:
        day_text = None  # "zijn jullie 's avonds open?" without a day: the week shows the evenings
    if now_question or (day_text and day_text.strip().lower() in {"nu", "nou", "op dit moment"}):
        turn.set("last_day", now.date().isoformat())
        if oh.is_open(content, desk, now):
            closes = oh.closes_at(content, desk, now)
            turn.say("utter_open_now", desk_name=desk_info.name, closes=f"{closes.hour}:{closes.minute:02d}")
        else:
            _say_closed(turn, desk, "utter_closed_now", now)
        turn.warn_unverified(hours_fact)
        return
    if day_text:
        period = clock.parse_period(day_text, now)
        if period:
            _answer_period(turn, desk, *period)
            turn.set("last_day", None)
            turn.warn_unverified(hours_fact)
            return
        parsed = turn.parse_day(day_text)
        if not parsed:
            turn.say("utter_day_not_understood")
            return
        day, label = parsed
        _answer_day(turn, desk, day, label, part=clock.day_part(day_text), day_text=day_text)
    elif followup and turn.last_day():
        day = turn.last_day()
        _answer_day(turn, desk, day, clock.day_label(day, now.date()) if day == now.date() else clock.format_date(day))
    else:
        turn.set("last_day", None)
        week = "\n".join(
            f"{clock.weekday_name(i, turn.lang)}: {_ranges_text(oh.hours_fact(content, desk).value[name], turn.lang)}"
            for i, name in enumerate(WEEKDAY_NAMES)
        )
        turn.say("utter_hours_week", desk_name=desk_info.name, week=week)
    turn.warn_unverified(hours_fact)


# Words of the hours lines (appcare/labels.yml): between two time ranges, a closed day,
# the line after the first days of a period, a day part the desk is not open in.
AND = labels.per_language("hours.and")
CLOSED = labels.per_language("hours.closed")
MORE = labels.per_language("hours.more")
NOT_IN_PART = labels.per_language("hours.not_in_part")


def _lang(lang: str) -> str:
    return "en" if lang == "en" else "nl"


def _ranges_text(ranges, lang: str = "nl") -> str:
    if not ranges:
        return CLOSED[_lang(lang)]
    return AND[_lang(lang)].join(r.replace("-", " - ") for r in ranges)


# Hours of a day part; a desk is open in a part when one of its ranges overlaps it.
DAY_PART_WINDOWS = {
    "ochtend": (dt.time(6, 0), dt.time(12, 0)),
    "middag": (dt.time(12, 0), dt.time(18, 0)),
    "avond": (dt.time(18, 0), dt.time(23, 59)),
    "nacht": (dt.time(0, 0), dt.time(6, 0)),
}
# "'s avonds" / "in the evening" per day part.
PART_ADVERB = {"ochtend": labels.per_language("day_part.ochtend"), "middag": labels.per_language("day_part.middag"),
               "avond": labels.per_language("day_part.avond"), "nacht": labels.per_language("day_part.nacht")}
SHORT_WEEKDAYS = ["ma", "di", "wo", "do", "vr", "za", "zo"]
SHORT_MONTHS = ["jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt", "nov", "dec"]
MAX_PERIOD_LINES = 14


def _open_in_part(hours: oh.DayHours, part: str) -> bool:
    start, end = DAY_PART_WINDOWS[part]
    return any(a < end and start < b for a, b in hours.ranges)


def _answer_day(turn: Turn, desk: str, day: dt.date, label: str, part: Optional[str] = None,
                day_text: Optional[str] = None) -> None:
    content = turn.content
    desk_name = content.desks[desk].name
    hours = oh.hours_on(content, desk, day)
    turn.set("last_day", day.isoformat())
    if turn.lang == "en":
        label = clock.day_label(day, turn.now.date(), "en")
    if part and not hours.closed and not _open_in_part(hours, part):
        # "woensdagavond": say the day's hours and clearly that there is no evening opening
        core = clock.split_day_part(day_text or "")[0]
        if core:
            plain = turn.parse_day(core)
        else:  # "ook 's avonds?": the day answered last
            plain = (day, "vandaag" if day == turn.now.date() else clock.format_date(day))
        plain_label = plain[1] if plain and plain[0] == day else label
        if turn.lang == "en":
            plain_label = clock.day_label(day, turn.now.date(), "en")
        plain_label = plain_label[0].upper() + plain_label[1:]
        not_then = NOT_IN_PART[_lang(turn.lang)].format(part=PART_ADVERB[part][_lang(turn.lang)])
        turn.say("utter_hours_day", day_label=plain_label, desk_name=desk_name,
                 hours=f"{hours.text(turn.lang)}, {not_then}")
        return
    label = label[0].upper() + label[1:]
    if hours.closed:
        start = dt.datetime.combine(day, dt.time(0, 0), tzinfo=clock.TZ)
        reason = f" ({hours.reason})" if hours.reason and hours.reason.lower() not in label.lower() else ""
        _say_closed(turn, desk, "utter_hours_day_closed", max(start, turn.now), day_label=label, reason=reason)
    else:
        turn.say("utter_hours_day", day_label=label, desk_name=desk_name, hours=hours.text(turn.lang))


def _clock(value: dt.time) -> str:
    return f"{value.hour}:{value.minute:02d}"


def _period_line(day: dt.date, hours: oh.DayHours, lang: str = "nl") -> str:
    if lang == "en":
        from babel.dates import format_date as babel_date

        head = babel_date(day, "EEE d MMM", locale="en_GB")
    else:
        head = f"{SHORT_WEEKDAYS[day.weekday()]} {day.day} {SHORT_MONTHS[day.month - 1]}"
    if hours.closed:
        return f"{head}: {CLOSED[_lang(lang)]}" + (f" ({hours.reason})" if hours.reason else "")
    ranges = AND[_lang(lang)].join(f"{_clock(a)}-{_clock(b)}" for a, b in hours.ranges)
    return f"{head}: {ranges}" + (f" ({hours.reason})" if hours.reason else "")


def _answer_period(turn: Turn, desk: str, days: List[dt.date], label: str) -> None:
    """One short line per day of the period ("vr 25 dec: gesloten (Eerste Kerstdag)")."""
    content = turn.content
    lines = [_period_line(day, oh.hours_on(content, desk, day), turn.lang) for day in days[:MAX_PERIOD_LINES]]
    if len(days) > MAX_PERIOD_LINES:
        lines.append(f"{MORE[_lang(turn.lang)]}: {content.contact.website.value}")
    if turn.lang == "en" and days:
        label = f"{clock.format_date(days[0], False, 'en')} - {clock.format_date(days[-1], False, 'en')}"
    turn.say("utter_hours_week", desk_name=f"{content.desks[desk].name} {label}", week="\n".join(lines))


def _say_closed(turn: Turn, desk: str, response: str, moment: dt.datetime, **kwargs) -> None:
    content = turn.content
    nxt = oh.next_opening(content, desk, moment)
    if not nxt:
        turn.say("utter_hours_refer", desk_name=content.desks[desk].name,
                 url=content.contact.website.value, phone=content.contact.phone.value)
        return
    turn.say(response, desk_name=content.desks[desk].name,
             moment=clock.format_moment(nxt, turn.now, turn.lang), **kwargs)


class ActionOpeningHours(AppcareAction):
    NAME = "action_opening_hours"
    TOPIC = "opening_hours"

    def answer(self, turn: Turn) -> None:
        from actions.context import start_topic

        start_topic(turn, "opening_hours")
        answer_opening_hours(turn, now_question=turn.intent == "opening_hours_now")
