"""Roadworks: by street or area (asks for the street when missing), detours and
duration, looked up in the municipality's roadworks source."""
from __future__ import annotations

from typing import List

from appcare import clock
from appcare.nlu.streets import dutch_capitalisation
from appcare.roadworks_feed import Roadwork, RoadworksUnavailable, default_client

from actions.base import AppcareAction, Turn


def _date(day) -> str:
    return clock.format_date(day, with_weekday=False) if day else "onbekend"


def answer_roadworks(turn: Turn, intent: str) -> None:
    content = turn.content
    page = content.roadworks.page_url.value
    street = turn.entity("street") or (turn.remembered("street") if intent != "roadworks_status" else None)
    area = turn.entity("area")
    if not street and not area:
        if intent in ("roadworks_detour", "roadworks_duration") or not turn.entity("date_expr"):
            turn.say("utter_roadworks_ask_street")
            turn.set("pending_question", "street")
            return
    try:
        found = default_client().find(content, street=street, area=area)
    except RoadworksUnavailable:
        turn.say("utter_roadworks_unavailable", url=page)
        return
    today = turn.now.date()
    relevant: List[Roadwork] = [r for r in found if r.active_on(today) or r.upcoming_after(today)]
    day_text = turn.entity("date_expr")
    if day_text:
        period = clock.parse_period(day_text, turn.now)
        parsed = clock.parse_day(day_text, turn.now) if not period else None
        days = period[0] if period else ([parsed[0]] if parsed else [])
        if days:
            relevant = [r for r in relevant if any(r.active_on(day) for day in days)]
    place = dutch_capitalisation(street) if street else (area or "die dag")
    if not relevant:
        turn.say("utter_roadworks_none", place=place, url=page)
    elif not street and not area:
        items = "\n".join(f"- {r.street}: {r.description} (tot {_date(r.end)})" for r in relevant[:8])
        turn.say("utter_roadworks_overview", items=items, url=page)
    else:
        for work in relevant[:3]:
            hindrance = (work.hindrance[0].upper() + work.hindrance[1:] + ".") if work.hindrance else ""
            detour = f" Omleiding: {work.detour}." if work.detour else ""
            if work.upcoming_after(today):
                turn.say("utter_roadworks_upcoming", street=work.street, description=work.description,
                         start=_date(work.start), end=_date(work.end), hindrance=hindrance)
            else:
                turn.say("utter_roadworks_found", street=work.street, description=work.description,
                         start=_date(work.start), end=_date(work.end), hindrance=hindrance,
                         detour=detour if intent != "roadworks_duration" or work.detour else "")
    turn.set("pending_question", None)


class ActionRoadworks(AppcareAction):
    NAME = "action_roadworks"

    def answer(self, turn: Turn) -> None:
        intent = turn.intent if (turn.intent or "").startswith("roadworks_") else "roadworks_status"
        answer_roadworks(turn, intent)
        turn.set("topic", intent)
