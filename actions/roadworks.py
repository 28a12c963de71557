"""Roadworks: by street or area (asks for the street when missing), detours and
duration, looked up in the municipality's roadworks source.

A conversation about roadworks remembers the place: "en tot wanneer?" or "is er een
omleiding?" after an answer about a street or an area (a village, a district) is about
that same street or area, until the citizen names another one.

The answer says where it comes from: works from a feed marked as example data come with
"this is example information" and the municipality's page in the same message (strict
mode and production never use example data: the citizen gets the page); "no known works"
names the date of the overview; without a feed the citizen gets the page instead of
what would read like an all-clear."""
from __future__ import annotations

import re
from typing import List, Optional, Tuple

from appcare import clock, labels
from appcare.plugins.nlu.streets import dutch_capitalisation
from appcare.roadworks_feed import Feed, Roadwork, RoadworksUnavailable, default_client, log_startup_status

from actions.base import AppcareAction, Turn


def _date(day, lang: str = "nl") -> str:
    return clock.format_date(day, with_weekday=False, lang=lang)


# Words of the roadworks lines (appcare/labels.yml).
UNTIL = labels.per_language("roadworks.until")
NO_END_DATE = labels.per_language("roadworks.no_end_date")
DETOUR = labels.per_language("roadworks.detour")


def _until(end, lang: str = "nl") -> str:
    """"tot 4 december" for a line of an overview; works without an end date in the
    source say so instead of "tot onbekend"."""
    words = "en" if lang == "en" else "nl"
    if not end:
        return NO_END_DATE[words]
    return f"{UNTIL[words]} {_date(end, lang)}"


# Follow-up questions in a roadworks conversation without a street or area of their own.
_DURATION = re.compile(
    r"\b(?:tot\s+wanneer|hoe\s*lang|wanneer\s+(?:is\s+(?:het|dat|die|hij|ze)\s+|zijn\s+ze\s+)?"
    r"(?:klaar|af|gereed|voorbij|afgelopen|weer\s+open|open)|einddatum|"
    r"how\s+long|until\s+when|till\s+when|bis\s+wann|wie\s+lange|jusqu'?\s*(?:à|a)\s+quand|"
    r"combien\s+de\s+temps|do\s+kiedy|jak\s+d[łl]ugo|ne\s+zaman|ne\s+kadar)", re.IGNORECASE)
_DETOUR = re.compile(r"\b(?:omleiding|omrijden|omweg|andere\s+route|detour|diversion|umleitung|d[ée]viation|objazd)",
                     re.IGNORECASE)


def roadworks_page(turn: Turn) -> str:
    """The municipality's roadworks page, else its website (strict mode: verified only)."""
    content = turn.content
    return turn.fact(content.roadworks.page_url) or content.contact.website.value


def _say_none(turn: Turn, feed: Feed, street: Optional[str], area: Optional[str], page: str) -> None:
    """No known works on the street, in the area or on the day asked about. From example
    data: no real overview (never an all-clear); from a dated overview: its date."""
    if feed.example:
        turn.say("utter_roadworks_example_none", url=page)
        return
    # "op Noordstraat"; "in Axel"; without a place: on the day or in the period asked about
    name = "utter_roadworks_none" if street else ("utter_roadworks_none_area" if area else "utter_roadworks_none_then")
    place = dutch_capitalisation(street) if street else area
    today = turn.now.date()
    if feed.generated == today:
        turn.say(f"{name}_today", place=place, url=page)
    elif feed.generated:
        date = _date(feed.generated, turn.lang)
        if feed.generated.year != today.year:
            date = f"{date} {feed.generated.year}"
        turn.say(f"{name}_dated", place=place, date=date, url=page)
    else:
        turn.say(name, place=place, url=page)


def _say_example_notice(turn: Turn, feed: Optional[Feed], page: str) -> None:
    """Works from example data: "Let op: dit is voorbeeldinformatie ..." right before them
    (the channel sends the texts of one turn as one message)."""
    if feed is not None and feed.example:
        turn.say("utter_roadworks_example_notice", url=page)


def followup_intent(text: str) -> Optional[str]:
    """roadworks_duration for "en tot wanneer?", "hoe lang nog", roadworks_detour for
    "en de omleiding?"; None for other texts."""
    if _DURATION.search(text or ""):
        return "roadworks_duration"
    if _DETOUR.search(text or ""):
        return "roadworks_detour"
    return None


def place_of(turn: Turn, remember: bool) -> Tuple[Optional[str], Optional[str]]:
    """(street, area) of this message; with ``remember`` the ones named earlier in the
    conversation when the message names neither. A new street forgets the earlier area and
    a new area the earlier street, so that a later follow-up is about the last place named."""
    street, area = turn.entity("street"), turn.entity("area")
    if area and area.strip().lower() == turn.content.municipality.id:
        area = None  # "werkzaamheden in Lelystad": the whole municipality, not an area in it
    if street and not area and turn.tracker.get_slot("area"):
        turn.set("area", None)
    if area and not street and turn.tracker.get_slot("street"):
        turn.set("street", None)
    if street or area or not remember:
        return street, area
    return turn.remembered("street"), turn.remembered("area")


def answer_roadworks(turn: Turn, intent: str, followup: bool = False) -> None:
    """``followup``: the message continues a roadworks conversation (it came in as a bare
    value or a short question), so the street or area named before still counts."""
    content = turn.content
    page = roadworks_page(turn)
    street, area = place_of(turn, followup or intent != "roadworks_status")
    day_text = turn.entity("date_expr")
    if day_text and clock.is_bare_day_part(day_text):
        day_text = None  # "wordt er 's nachts gewerkt?" names no day
    ask_street = not street and not area and (intent in ("roadworks_detour", "roadworks_duration") or not day_text)
    if ask_street:
        # In one go: the known works (the citizen's street may be among them), then
        # which street or area it is about.
        try:
            feed: Optional[Feed] = default_client().feed(content)
        except RoadworksUnavailable:
            feed = None
        if feed is not None and not feed.usable:
            # no overview to look in (none configured, or example data in strict mode): the page
            turn.say("utter_roadworks_no_feed", url=page)
            turn.set("pending_question", None)
            return
        known = [r for r in feed.find() if r.active_on(turn.now.date())
                 or r.upcoming_after(turn.now.date())] if feed else []
        if known:
            items = "\n".join(f"- {r.street}: {r.description} ({_until(r.end, turn.lang)})" for r in known[:5])
            _say_example_notice(turn, feed, page)
            turn.say("utter_roadworks_overview", items=items, url=page)
        turn.say("utter_roadworks_ask_street")
        turn.set("pending_question", "street")
        return
    try:
        feed = default_client().feed(content)
    except RoadworksUnavailable:
        turn.say("utter_roadworks_unavailable", url=page)
        return
    if not feed.usable:  # no feed configured, or example data in strict mode / production
        turn.say("utter_roadworks_no_feed", url=page)
        turn.set("pending_question", None)
        return
    found = feed.find(street=street, area=area)
    today = turn.now.date()
    relevant: List[Roadwork] = [r for r in found if r.active_on(today) or r.upcoming_after(today)]
    if day_text:
        period = clock.parse_period(day_text, turn.now)
        parsed = turn.parse_day(day_text) if not period else None
        days = period[0] if period else ([parsed[0]] if parsed else [])
        if days:
            relevant = [r for r in relevant if any(r.active_on(day) for day in days)]
    english = turn.lang == "en"
    if not relevant:
        _say_none(turn, feed, street, area, page)
    elif not street and not area:
        items = "\n".join(f"- {r.street}: {r.description} ({_until(r.end, turn.lang)})" for r in relevant[:8])
        _say_example_notice(turn, feed, page)
        turn.say("utter_roadworks_overview", items=items, url=page)
    else:
        _say_example_notice(turn, feed, page)
        for work in relevant[:3]:
            hindrance = (work.hindrance[0].upper() + work.hindrance[1:] + ".") if work.hindrance else ""
            detour = f" {DETOUR['en' if english else 'nl']}: {work.detour}." if work.detour else ""
            # works without an end date: "Het is nog niet bekend ...", never "tot onbekend"
            dates = {"start": _date(work.start, turn.lang)}
            if work.end:
                dates["end"] = _date(work.end, turn.lang)
            open_end = "" if work.end else "_open_end"
            if work.upcoming_after(today):
                turn.say(f"utter_roadworks_upcoming{open_end}", street=work.street, description=work.description,
                         hindrance=hindrance, **dates)
            else:
                turn.say(f"utter_roadworks_found{open_end}", street=work.street, description=work.description,
                         hindrance=hindrance, detour=detour if intent != "roadworks_duration" or work.detour else "",
                         **dates)
    turn.set("pending_question", None)


# The action server imports the actions at start-up: say where the roadworks come from
# (an example feed, not used in strict mode; no feed configured; a real feed).
log_startup_status()


class ActionRoadworks(AppcareAction):
    NAME = "action_roadworks"

    def answer(self, turn: Turn) -> None:
        from actions.context import answer_in_context, start_topic

        if answer_in_context(turn):  # "wat kost dat?" after a marriage answer
            return
        start_topic(turn, "roadworks")
        intent = turn.intent if (turn.intent or "").startswith("roadworks_") else "roadworks_status"
        answer_roadworks(turn, intent)
        turn.set("topic", intent)
