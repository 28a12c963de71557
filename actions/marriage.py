"""Marriage and registered partnership: steps, the melding, costs, the free option,
witnesses, locations, and the difference between huwelijk and partnerschap."""
from __future__ import annotations

from appcare import labels

from actions.base import AppcareAction, Turn, money

# {ceremony} of the marriage responses, and the words of the costs and locations lines
# (appcare/labels.yml).
_MARRIAGE, _PARTNERSHIP = labels.per_language("ceremony.huwelijk"), labels.per_language("ceremony.partnerschap")
CEREMONY_NAMES = {"huwelijk": _MARRIAGE["nl"], "partnerschap": _PARTNERSHIP["nl"]}
CEREMONY_NAMES_EN = {"huwelijk": _MARRIAGE["en"], "partnerschap": _PARTNERSHIP["en"]}
ANY_CEREMONY = labels.per_language("ceremony.either")
RATE = labels.per_language("marriage.rate")
SEATS = labels.per_language("marriage.seats")


def answer_marriage(turn: Turn, intent: str) -> None:
    """Answers one marriage question. A fact that may not be quoted (unverified in strict
    mode) is left out where the answer can do without it, otherwise the citizen is referred."""
    content = turn.content
    marriage = content.marriage
    english = turn.lang == "en"
    lang = "en" if english else "nl"
    ceremony = (CEREMONY_NAMES_EN if english else CEREMONY_NAMES).get(
        (turn.remembered("ceremony_type") or "").lower(),
        ANY_CEREMONY[lang])
    # read only the facts the answer shows (an unverified one brings the caveat)
    if intent in ("marriage_how", "marriage_notice"):
        min_days, max_months = turn.fact(marriage.notice_min_days), turn.fact(marriage.notice_max_months)
    if intent not in ("marriage_witnesses", "marriage_vs_partnership"):
        info_url = turn.fact(marriage.info_url) or turn.fact(content.contact.website)
    if intent in ("marriage_costs", "marriage_free", "marriage_location"):
        phone = turn.fact(content.contact.phone)

    if intent == "marriage_how":
        if None in (min_days, max_months, info_url):
            turn.refer()
        else:
            turn.say("utter_marriage_how", ceremony=ceremony, min_days=min_days, max_months=max_months, url=info_url)
    elif intent == "marriage_notice":
        how = turn.fact(marriage.notice_how)
        if None in (how, min_days, max_months, info_url):
            turn.refer()
        else:
            online = turn.fact(marriage.notice_online)
            turn.say("utter_marriage_notice", how=how, min_days=min_days, max_months=max_months,
                     local=f" {online}" if online else "", url=info_url)
    elif intent == "marriage_costs":
        weekday, saturday = turn.fact(marriage.cost_weekday), turn.fact(marriage.cost_saturday)
        if weekday is None or saturday is None:
            if info_url and phone:
                turn.say("utter_marriage_costs_unknown", municipality_name=content.municipality.name,
                         url=info_url, phone=phone)
            else:
                turn.refer()
        else:
            year = marriage.cost_weekday.year
            free = turn.fact(marriage.free_option)
            locations = turn.fact(marriage.locations)
            amounts = {"weekday": money(weekday), "saturday": money(saturday),
                       "year_note": (f" ({RATE[lang]} {year})" if year else "")}
            if locations:
                # the fees of the municipality's page hold for each of its fixed locations
                turn.say("utter_marriage_costs", **amounts, locations="\n".join(f"- {loc.name}" for loc in locations),
                         free=f"\n{free}" if free else "")
            else:
                turn.say("utter_marriage_costs_no_locations", **amounts, free=f" {free}" if free else "")
    elif intent == "marriage_free":
        free = turn.fact(marriage.free_option)
        if free:
            turn.say("utter_marriage_free", free=free)
        elif info_url and phone:
            turn.say("utter_marriage_free_unknown", municipality_name=content.municipality.name,
                     url=info_url, phone=phone)
        else:
            turn.refer()
    elif intent == "marriage_witnesses":
        witnesses = turn.fact(marriage.witnesses)
        if witnesses is None:
            turn.refer()
        else:
            turn.say("utter_marriage_witnesses", witnesses=witnesses)
    elif intent == "marriage_location":
        locations = turn.fact(marriage.locations)
        own = turn.fact(marriage.own_location) or ""
        if locations:
            lines = "\n".join(
                f"- {loc.name}" + (f" ({loc.seats} {SEATS[lang]})" if loc.seats else "")
                for loc in locations
            )
            turn.say("utter_marriage_location", locations=lines, own=own)
        elif info_url and phone:
            turn.say("utter_marriage_location_unknown", own=own, url=info_url, phone=phone)
        else:
            turn.refer()
    elif intent == "marriage_vs_partnership":
        difference, conditions = turn.fact(marriage.difference), turn.fact(marriage.conditions)
        if difference is None or conditions is None:
            turn.refer()
        else:
            turn.say("utter_marriage_difference", difference=difference, conditions=conditions)
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
