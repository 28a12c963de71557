"""Passport and ID card: fees by document and age, validity, processing time,
express, what to bring, applying, lost or stolen, collecting, children."""
from __future__ import annotations

import re
from typing import Optional

from appcare import labels, synonyms
from appcare.plugins.nlu.ages import age_value

from actions.base import AppcareAction, Turn, money

# {document} of the passport responses, {age_group} and {year_note} of the fee texts
# (appcare/labels.yml).
_PASSPORT, _ID_CARD = labels.per_language("document.paspoort"), labels.per_language("document.id_kaart")
DOCUMENT_NAMES = {"paspoort": _PASSPORT["nl"], "id_kaart": _ID_CARD["nl"]}
DOCUMENT_NAMES_EN = {"paspoort": _PASSPORT["en"], "id_kaart": _ID_CARD["en"]}
ANY_DOCUMENT = labels.per_language("document.either")
AGE_GROUP_MINOR = labels.per_language("age_group.minor")
AGE_GROUP_ADULT = labels.per_language("age_group.adult")
FEE_YEAR_NOTE = labels.per_language("fee_year_note")


def document_name(turn: Turn, document: Optional[str]) -> str:
    """The document's name in the conversation's language ("paspoort of ID-kaart" when none)."""
    names = DOCUMENT_NAMES_EN if turn.lang == "en" else DOCUMENT_NAMES
    return names.get(document or "", ANY_DOCUMENT["en" if turn.lang == "en" else "nl"])


def document_of(turn: Turn) -> Optional[str]:
    """paspoort or id_kaart, from any spelling in data/nlu/synonyms.yml ("ID-kaart", "id")."""
    value = synonyms.canonical(turn.remembered("document_type") or "").replace("-", "_").replace(" ", "_")
    return value if value in DOCUMENT_NAMES else None


def age_of(turn: Turn) -> Optional[int]:
    """Age from this message, else from earlier in the conversation ("17", "18+",
    "zeventien", "65-plusser", "volwassene")."""
    return age_value(turn.remembered("age"))


def fee_for(fees, document: str, age: int):
    """The fee fact for a document and age: under 18, 18 and older, and a separate
    65+ fee only where the content has one (otherwise the adult fee)."""
    if age >= 65 and getattr(fees, f"{document}_65_plus", None) is not None:
        return getattr(fees, f"{document}_65_plus")
    return getattr(fees, f"{document}_{'under_18' if age < 18 else '18_plus'}")


def _fee_year_note(turn: Turn, fact) -> str:
    if fact.year and fact.year < turn.now.year:
        return FEE_YEAR_NOTE["en" if turn.lang == "en" else "nl"].format(year=fact.year)
    return ""


def answer_fees(turn: Turn, document: Optional[str]) -> None:
    """Fees in one go: the exact fee when document and age are known, otherwise every
    fee that can apply (adult and under 18, passport and ID card) instead of a
    counter-question; a follow-up with the age or document narrows it down."""
    passport = turn.content.passport
    fees = passport.fees
    age = age_of(turn)
    documents = [document] if document else list(DOCUMENT_NAMES)
    if age is not None:
        used = [fee_for(fees, doc, age) for doc in documents]
    else:
        used = [getattr(fees, f"{doc}_{group}") for doc in documents for group in ("18_plus", "under_18")]
    if not turn.usable(*used, passport.validity_years_adult, passport.validity_years_minor):
        turn.refer()  # strict mode and an unverified fee: the website and phone instead
        return
    adult_years, minor_years = turn.fact(passport.validity_years_adult), turn.fact(passport.validity_years_minor)
    if age is not None:
        minor = age < 18
        validity = minor_years if minor else adult_years
        for doc, fee in zip(documents, used):
            age_group = (AGE_GROUP_MINOR if minor else AGE_GROUP_ADULT)["en" if turn.lang == "en" else "nl"]
            turn.say("utter_passport_fee", document=document_name(turn, doc), age_group=age_group,
                     amount=money(turn.fact(fee)), year_note=_fee_year_note(turn, fee), validity=validity)
    else:
        amounts = {}
        for doc in documents:
            adult, minor = getattr(fees, f"{doc}_18_plus"), getattr(fees, f"{doc}_under_18")
            amounts.update({f"{doc}_adult": money(turn.fact(adult)), f"{doc}_minor": money(turn.fact(minor))})
        validity = {"adult_years": adult_years, "minor_years": minor_years}
        if document:
            turn.say("utter_passport_fee_by_age", document=document_name(turn, document),
                     adult=amounts[f"{document}_adult"], minor=amounts[f"{document}_minor"],
                     year_note=_fee_year_note(turn, used[0]), **validity)
        else:
            turn.say("utter_passport_fee_overview", year_note=_fee_year_note(turn, used[0]), **amounts, **validity)
        turn.set("pending_question", "age")
    say_old_fee_year(turn, used)


def say_old_fee_year(turn: Turn, fees) -> None:
    """After a maximum fee of an earlier year: the maxima rise every year, so this
    year's fees are higher; the link to the current table."""
    old_years = sorted({f.year for f in fees if f.year and f.year < turn.now.year})
    url = turn.fact(turn.content.passport.fees_table_url) if old_years else None
    if url:
        turn.say("utter_passport_fee_old_year", year=old_years[-1], current_year=turn.now.year, url=url)


def _booking(turn: Turn):
    """("", the appointment page) or, when that page may not be quoted (unverified in
    strict mode), ("_site", the website) for the responses whose "_site" twin names no
    appointment; None when the website may not be quoted either."""
    content = turn.content
    if turn.usable(content.contact.appointment_url):
        return "", turn.fact(content.contact.appointment_url)
    site = turn.fact(content.contact.website)
    return ("_site", site) if site else None


def answer_passport(turn: Turn, intent: str) -> None:
    """Answers one passport/ID question; fees without an age or document list every
    fee that can apply. A fact that may not be quoted (unverified in strict mode) is left
    out where the answer can do without it, otherwise the citizen is referred."""
    content = turn.content
    passport = content.passport
    document = document_of(turn)
    name = document_name(turn, document)
    desk_name = content.desks["balie"].name
    booking = _booking(turn) if intent in BOOKING_INTENTS else None

    if intent == "passport_fees":
        answer_fees(turn, document)
    elif intent in BOOKING_INTENTS and booking is None:
        turn.refer()
    elif intent == "passport_apply":
        phone = turn.fact(content.contact.phone)
        in_person, appointment = passport.apply_in_person, content.desks["balie"].by_appointment
        # "Je komt zelf langs, meestal op afspraak" only as far as the content says so
        if not turn.usable(in_person) or not in_person.value:
            response, claims = "utter_passport_apply_site", []
        elif turn.usable(appointment) and appointment.value and booking[0] == "":
            response, claims = "utter_passport_apply", [in_person, appointment]
        else:
            response, claims = "utter_passport_apply_in_person_site", [in_person]
        if not phone:
            turn.refer()
        else:
            for claim in claims:
                turn.fact(claim)  # an unverified claim brings the caveat
            turn.say(response, document=name, desk_name=desk_name, url=booking[1], phone=phone)
    elif intent == "passport_bring":
        items = turn.fact(passport.bring)
        if items is None:
            turn.refer()
        else:
            turn.say(f"utter_passport_bring{booking[0]}", items="\n".join(f"- {item}" for item in items),
                     url=booking[1])
    elif intent == "passport_processing_time":
        days = turn.fact(passport.processing_working_days)
        if days is None:
            turn.refer()
        else:
            turn.say(f"utter_passport_processing{booking[0]}", document=name, days=days, url=booking[1])
            if turn.fact(passport.pickup_notification):
                turn.say("utter_passport_pickup_message", document=name)
    elif intent == "passport_validity":
        if not turn.usable(passport.validity_years_adult, passport.validity_years_minor):
            turn.refer()
        else:
            turn.say("utter_passport_validity", document=name, adult=turn.fact(passport.validity_years_adult),
                     minor=turn.fact(passport.validity_years_minor))
    elif intent == "passport_express":
        fee, phone = passport.fees.express_surcharge, turn.fact(content.contact.phone)
        if not turn.usable(fee) or not phone:
            turn.refer()
        else:
            cutoff = turn.fact(passport.express_cutoff)
            response = "utter_passport_express" if cutoff else "utter_passport_express_no_cutoff"
            turn.say(f"{response}{booking[0]}", document=name, amount=money(turn.fact(fee)),
                     year_note=_fee_year_note(turn, fee), url=booking[1], phone=phone,
                     **({"cutoff": cutoff} if cutoff else {}))
            say_old_fee_year(turn, [fee])
    elif intent == "passport_lost":
        steps = turn.fact(passport.lost_steps)
        if steps is None:
            turn.refer()
        else:
            turn.say("utter_passport_lost", document=name,
                     steps="\n".join(f"{i}. {step}" for i, step in enumerate(steps, 1)))
    elif intent == "passport_pickup":
        months = turn.fact(passport.collect_within_months)
        if months is None:
            turn.refer()
        else:
            turn.say("utter_passport_pickup", document=name, desk_name=desk_name, months=months)
            if turn.fact(passport.pickup_bring_old_document):
                turn.say("utter_passport_pickup_bring_old")
    elif intent == "passport_child":
        consent, minor = turn.fact(passport.child_consent), turn.fact(passport.validity_years_minor)
        if consent is None or minor is None:
            turn.refer()
        else:
            turn.say(f"utter_passport_child{booking[0]}", consent=consent, document=name, minor=minor,
                     url=booking[1])
    if intent != "passport_fees" or age_of(turn) is not None:
        turn.set("pending_question", None)
    AppcareAction.maybe_ask_feedback(turn)


# Answers that end with where to make an appointment (or, in their "_site" twin, where
# to read more).
BOOKING_INTENTS = ("passport_apply", "passport_bring", "passport_processing_time", "passport_express",
                   "passport_child")


# A question about the police report right after the lost/stolen answer ("moet ik dan
# naar de politie?", "do I need a police report?").
_POLICE = re.compile(r"\b(?:politie\w*|aangifte|proces[\s-]*verbaal|pv|police|polizei|anzeige|policj\w*)\b",
                     re.IGNORECASE)
MAX_FOLLOWUP_WORDS = 15


def answer_lost_followup(turn: Turn) -> bool:
    """After a passport_lost answer, a short question about the police gets the lost and
    stolen steps again (they say whether a police report is needed) instead of a handoff
    or a clarifying question. False when the message is no such follow-up."""
    text = (turn.tracker.latest_message or {}).get("text") or ""
    if turn.tracker.get_slot("topic") != "passport_lost" or not _POLICE.search(text):
        return False
    if len(text.split()) > MAX_FOLLOWUP_WORDS:
        return False  # a longer story is a personal case for a colleague
    answer_passport(turn, "passport_lost")
    turn.set("topic", "passport_lost")
    return True


class ActionPassportId(AppcareAction):
    NAME = "action_passport_id"

    @staticmethod
    def _child_after_fees(turn: Turn) -> bool:
        """"En voor mijn kind van 5?" right after a fee answer asks the child's fee, even
        when the NLU heard the question about children's documents."""
        text = (turn.tracker.latest_message or {}).get("text") or ""
        if (turn.intent != "passport_child" or turn.tracker.get_slot("topic") != "passport_fees"
                or len(text.split()) > 8):
            return False
        from actions.conversation import _age_from_number  # noqa: PLC0415 - import cycle

        _age_from_number(turn)
        if age_of(turn) is None and not turn.entity("relation"):
            return False
        answer_passport(turn, "passport_fees")  # without an age: both fees, in one go
        turn.set("topic", "passport_fees")
        return True

    def answer(self, turn: Turn) -> None:
        from actions.context import answer_in_context, start_topic

        if answer_in_context(turn):  # "wat kost dat?" after a marriage answer
            return
        start_topic(turn, "passport")
        if self._child_after_fees(turn):
            return
        intent = turn.intent if (turn.intent or "").startswith("passport_") else "passport_fees"
        answer_passport(turn, intent)
        turn.set("topic", intent)
