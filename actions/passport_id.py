"""Passport and ID card: fees by document and age, validity, processing time,
express, what to bring, applying, lost or stolen, collecting, children."""
from __future__ import annotations

import re
from typing import Optional

from appcare.nlu.ages import age_value

from actions.base import AppcareAction, Turn, money

DOCUMENT_NAMES = {"paspoort": "paspoort", "id_kaart": "ID-kaart"}
DOCUMENT_NAMES_EN = {"paspoort": "passport", "id_kaart": "ID card"}


def document_name(turn: Turn, document: Optional[str]) -> str:
    """The document's name in the conversation's language ("paspoort of ID-kaart" when none)."""
    if turn.lang == "en":
        return DOCUMENT_NAMES_EN.get(document or "", "passport or ID card")
    return DOCUMENT_NAMES.get(document or "", "paspoort of ID-kaart")


def document_of(turn: Turn) -> Optional[str]:
    value = (turn.remembered("document_type") or "").lower().replace("-", "_").replace(" ", "_")
    if value in ("id", "idkaart", "identiteitskaart"):
        value = "id_kaart"
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
        return f" (maximum fee {fact.year})" if turn.lang == "en" else f" (maximumbedrag {fact.year})"
    return ""


def answer_fees(turn: Turn, document: Optional[str]) -> None:
    """Fees in one go: the exact fee when document and age are known, otherwise every
    fee that can apply (adult and under 18, passport and ID card) instead of a
    counter-question; a follow-up with the age or document narrows it down."""
    passport = turn.content.passport
    fees = passport.fees
    age = age_of(turn)
    documents = [document] if document else list(DOCUMENT_NAMES)
    used = []
    if age is not None:
        minor = age < 18
        validity = passport.validity_years_minor.value if minor else passport.validity_years_adult.value
        for doc in documents:
            fee = fee_for(fees, doc, age)
            used.append(fee)
            if turn.lang == "en":
                age_group = "under 18" if minor else "aged 18 or over"
            else:
                age_group = "jonger dan 18" if minor else "van 18 jaar of ouder"
            turn.say("utter_passport_fee", document=document_name(turn, doc), age_group=age_group,
                     amount=money(fee.value), year_note=_fee_year_note(turn, fee), validity=validity)
    else:
        amounts = {}
        for doc in documents:
            adult, minor = getattr(fees, f"{doc}_18_plus"), getattr(fees, f"{doc}_under_18")
            used += [adult, minor]
            amounts.update({f"{doc}_adult": money(adult.value), f"{doc}_minor": money(minor.value)})
        validity = {"adult_years": passport.validity_years_adult.value,
                    "minor_years": passport.validity_years_minor.value}
        if document:
            turn.say("utter_passport_fee_by_age", document=document_name(turn, document),
                     adult=amounts[f"{document}_adult"], minor=amounts[f"{document}_minor"],
                     year_note=_fee_year_note(turn, used[0]), **validity)
        else:
            turn.say("utter_passport_fee_overview", year_note=_fee_year_note(turn, used[0]), **amounts, **validity)
        turn.set("pending_question", "age")
    old_years = sorted({f.year for f in used if f.year and f.year < turn.now.year})
    if old_years:
        turn.say("utter_passport_fee_old_year", year=old_years[-1], url=passport.fees_table_url.value)


def answer_passport(turn: Turn, intent: str) -> None:
    """Answers one passport/ID question; fees without an age or document list every
    fee that can apply."""
    content = turn.content
    passport = content.passport
    document = document_of(turn)
    name = document_name(turn, document)
    desk_name = content.desks["balie"].name
    url = content.contact.appointment_url.value
    phone = content.contact.phone.value

    if intent == "passport_fees":
        answer_fees(turn, document)
    elif intent == "passport_apply":
        turn.say("utter_passport_apply", document=name, desk_name=desk_name, url=url, phone=phone)
        turn.warn_unverified(content.contact.appointment_url)
    elif intent == "passport_bring":
        turn.say("utter_passport_bring", items="\n".join(f"- {item}" for item in passport.bring.value), url=url)
        turn.warn_unverified(content.contact.appointment_url)
    elif intent == "passport_processing_time":
        turn.say("utter_passport_processing", document=name, days=passport.processing_working_days.value, url=url)
        turn.warn_unverified(content.contact.appointment_url)
    elif intent == "passport_validity":
        turn.say("utter_passport_validity", document=name,
                 adult=passport.validity_years_adult.value, minor=passport.validity_years_minor.value)
    elif intent == "passport_express":
        fee = passport.fees.express_surcharge
        turn.say("utter_passport_express", document=name, cutoff=passport.express_cutoff.value,
                 amount=money(fee.value), year_note=_fee_year_note(turn, fee), url=url, phone=phone)
        turn.warn_unverified(content.contact.appointment_url)
    elif intent == "passport_lost":
        steps = "\n".join(f"{i}. {step}" for i, step in enumerate(passport.lost_steps.value, 1))
        turn.say("utter_passport_lost", document=name, steps=steps)
    elif intent == "passport_pickup":
        turn.say("utter_passport_pickup", document=name, desk_name=desk_name,
                 months=passport.collect_within_months.value)
    elif intent == "passport_child":
        turn.say("utter_passport_child", consent=passport.child_consent.value, document=name,
                 minor=passport.validity_years_minor.value, url=url)
    if intent != "passport_fees" or age_of(turn) is not None:
        turn.set("pending_question", None)
    AppcareAction.maybe_ask_feedback(turn)


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
