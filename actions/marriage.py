"""Marriage and registered partnership: steps, the melding, costs, the free option,
witnesses, locations, and the difference between huwelijk and partnerschap."""
from __future__ import annotations

from actions.base import AppcareAction, Turn, money

CEREMONY_NAMES = {"huwelijk": "huwelijk", "partnerschap": "partnerschap"}
CEREMONY_NAMES_EN = {"huwelijk": "marriage", "partnerschap": "registered partnership"}


def answer_marriage(turn: Turn, intent: str) -> None:
    content = turn.content
    marriage = content.marriage
    info_url = (marriage.info_url.value if marriage.info_url else content.contact.website.value)
    phone = content.contact.phone.value
    english = turn.lang == "en"
    ceremony = (CEREMONY_NAMES_EN if english else CEREMONY_NAMES).get(
        (turn.remembered("ceremony_type") or "").lower(),
        "marriage or registered partnership" if english else "huwelijk of partnerschap")
    min_days = marriage.notice_min_days.value
    max_months = marriage.notice_max_months.value

    if intent == "marriage_how":
        turn.say("utter_marriage_how", ceremony=ceremony, min_days=min_days, max_months=max_months, url=info_url)
    elif intent == "marriage_notice":
        online = turn.fact(marriage.notice_online)
        turn.say("utter_marriage_notice", how=marriage.notice_how.value, min_days=min_days,
                 max_months=max_months, local=f" {online}" if online else "", url=info_url)
        turn.warn_unverified(marriage.notice_online)
    elif intent == "marriage_costs":
        weekday, saturday = turn.fact(marriage.cost_weekday), turn.fact(marriage.cost_saturday)
        if weekday is None or saturday is None:
            turn.say("utter_marriage_costs_unknown", municipality_name=content.municipality.name,
                     url=info_url, phone=phone)
        else:
            year = marriage.cost_weekday.year
            free = turn.fact(marriage.free_option)
            turn.say("utter_marriage_costs", weekday=money(weekday), saturday=money(saturday),
                     year_note=(f" ({'rate' if english else 'tarief'} {year})" if year else ""),
                     free=f" {free}" if free else "")
            turn.warn_unverified(marriage.cost_weekday, marriage.cost_saturday)
    elif intent == "marriage_free":
        free = turn.fact(marriage.free_option)
        if free:
            turn.say("utter_marriage_free", free=free)
        else:
            turn.say("utter_marriage_free_unknown", municipality_name=content.municipality.name,
                     url=info_url, phone=phone)
    elif intent == "marriage_witnesses":
        turn.say("utter_marriage_witnesses", witnesses=marriage.witnesses.value)
    elif intent == "marriage_location":
        locations = turn.fact(marriage.locations)
        own = turn.fact(marriage.own_location) or ""
        if locations:
            lines = "\n".join(
                f"- {loc.name}" + (f" ({loc.seats} {'seats' if english else 'plaatsen'})" if loc.seats else "")
                for loc in locations
            )
            turn.say("utter_marriage_location", locations=lines, own=own)
        else:
            turn.say("utter_marriage_location_unknown", own=own, url=info_url)
    elif intent == "marriage_vs_partnership":
        turn.say("utter_marriage_difference", difference=marriage.difference.value,
                 conditions=marriage.conditions.value)
    AppcareAction.maybe_ask_feedback(turn)


class ActionMarriage(AppcareAction):
    NAME = "action_marriage"

    def answer(self, turn: Turn) -> None:
        from actions.context import answer_in_context, start_topic

        if answer_in_context(turn):  # "wat kost dat?" after a marriage answer
            return
        start_topic(turn, "marriage")
        intent = turn.intent if (turn.intent or "").startswith("marriage_") else "marriage_how"
        answer_marriage(turn, intent)
        turn.set("topic", intent)
