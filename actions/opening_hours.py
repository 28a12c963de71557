"""Opening hours: today, tomorrow, a weekday, a date or a holiday; 'open now?' and
the next opening moment, per desk (balie, telefoon)."""
from __future__ import annotations

import datetime as dt

from appcare import clock, opening_hours as oh
from appcare.clock import WEEKDAY_NAMES

from actions.base import AppcareAction, Turn

DESK_ALIASES = {
    "balie": "balie", "stadhuis": "balie", "gemeentehuis": "balie", "stadswinkel": "balie",
    "loket": "balie", "publieksbalie": "balie", "burgerzaken": "balie",
    "telefoon": "telefoon", "telefonisch": "telefoon", "bellen": "telefoon", "kcc": "telefoon",
}


def desk_of(turn: Turn) -> str:
    value = (turn.entity("desk") or "").lower()
    desk = DESK_ALIASES.get(value, "balie")
    return desk if desk in turn.content.desks else "balie"


def answer_opening_hours(turn: Turn, now_question: bool = False) -> None:
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
    if now_question or (day_text and day_text.strip().lower() in {"nu", "nou", "op dit moment"}):
        if oh.is_open(content, desk, now):
            closes = oh.closes_at(content, desk, now)
            turn.say("utter_open_now", desk_name=desk_info.name, closes=f"{closes.hour}:{closes.minute:02d}")
        else:
            _say_closed(turn, desk, "utter_closed_now", now)
        turn.warn_unverified(hours_fact)
        return
    if day_text:
        parsed = clock.parse_day(day_text, now)
        if not parsed:
            turn.say("utter_day_not_understood")
            return
        day, label = parsed
        _answer_day(turn, desk, day, label)
    else:
        week = "\n".join(
            f"{name}: {_ranges_text(oh.hours_fact(content, desk).value[name])}" for name in WEEKDAY_NAMES
        )
        turn.say("utter_hours_week", desk_name=desk_info.name, week=week)
    turn.warn_unverified(hours_fact)


def _ranges_text(ranges) -> str:
    if not ranges:
        return "gesloten"
    return " en ".join(r.replace("-", " - ") for r in ranges)


def _answer_day(turn: Turn, desk: str, day: dt.date, label: str) -> None:
    content = turn.content
    desk_name = content.desks[desk].name
    hours = oh.hours_on(content, desk, day)
    label = label[0].upper() + label[1:]
    if hours.closed:
        start = dt.datetime.combine(day, dt.time(0, 0), tzinfo=clock.TZ)
        reason = f" ({hours.reason})" if hours.reason and hours.reason.lower() not in label.lower() else ""
        _say_closed(turn, desk, "utter_hours_day_closed", max(start, turn.now), day_label=label, reason=reason)
    else:
        turn.say("utter_hours_day", day_label=label, desk_name=desk_name, hours=hours.text())


def _say_closed(turn: Turn, desk: str, response: str, moment: dt.datetime, **kwargs) -> None:
    content = turn.content
    nxt = oh.next_opening(content, desk, moment)
    if not nxt:
        turn.say("utter_hours_refer", desk_name=content.desks[desk].name,
                 url=content.contact.website.value, phone=content.contact.phone.value)
        return
    turn.say(response, desk_name=content.desks[desk].name,
             moment=clock.format_moment(nxt, turn.now), **kwargs)


class ActionOpeningHours(AppcareAction):
    NAME = "action_opening_hours"
    TOPIC = "opening_hours"

    def answer(self, turn: Turn) -> None:
        answer_opening_hours(turn, now_question=turn.intent == "opening_hours_now")
