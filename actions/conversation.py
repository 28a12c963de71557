"""Conversation glue: greeting, follow-ups that only give a value ("en zaterdag?",
"12", "nee ik bedoel een id-kaart"), yes/no answers, feedback, and the fallback
(a clarifying question with buttons first, a handoff after the second miss)."""
from __future__ import annotations

import re

from actions.base import AppcareAction, Turn
from actions.handoff import hand_off
from actions.marriage import answer_marriage
from actions.opening_hours import answer_opening_hours
from actions.passport_id import answer_passport
from actions.roadworks import answer_roadworks

# Short button titles (WhatsApp allows 20 characters) for intents offered in a clarifying question.
INTENT_TITLES = {
    "opening_hours": "Openingstijden",
    "opening_hours_now": "Nu open?",
    "passport_apply": "Paspoort aanvragen",
    "passport_fees": "Kosten paspoort/ID",
    "passport_bring": "Wat meenemen?",
    "passport_processing_time": "Wanneer klaar?",
    "passport_validity": "Hoe lang geldig?",
    "passport_express": "Spoedaanvraag",
    "passport_lost": "Kwijt of gestolen",
    "passport_pickup": "Document ophalen",
    "passport_child": "ID voor een kind",
    "marriage_how": "Trouwen",
    "marriage_notice": "Melding huwelijk",
    "marriage_costs": "Kosten trouwen",
    "marriage_free": "Gratis trouwen",
    "marriage_witnesses": "Getuigen",
    "marriage_location": "Trouwlocaties",
    "marriage_vs_partnership": "Huwelijk/partnerschap",
    "roadworks_status": "Wegwerkzaamheden",
    "roadworks_detour": "Omleiding",
    "roadworks_duration": "Duur werkzaamheden",
}
_URL_ONLY = re.compile(r"^\s*(https?://|www\.)\S+\s*$", re.IGNORECASE)
_ENGLISH = re.compile(r"\b(the|what|when|where|how|can|you|please|hello|is|are|do|my|open)\b", re.IGNORECASE)
_DUTCH = re.compile(r"\b(de|het|een|ik|je|jullie|wat|hoe|wanneer|is|zijn|mijn|kan|van|voor|en)\b", re.IGNORECASE)
MAX_FAILED_ATTEMPTS = 2
LONG_MESSAGE = 1500


class ActionGreet(AppcareAction):
    NAME = "action_greet"

    def answer(self, turn: Turn) -> None:
        turn.say("utter_greet", municipality_name=turn.content.municipality.name)


def _route_followup(turn: Turn) -> bool:
    """Answers a follow-up in the context of the last topic; False when there is none."""
    pending = turn.tracker.get_slot("pending_question") or ""
    topic = turn.tracker.get_slot("topic") or ""
    if pending in ("age", "document_type") or topic.startswith("passport_"):
        answer_passport(turn, topic if topic.startswith("passport_") else "passport_fees")
        turn.set("topic", topic if topic.startswith("passport_") else "passport_fees")
    elif pending == "street" or topic.startswith("roadworks_"):
        answer_roadworks(turn, topic if topic.startswith("roadworks_") else "roadworks_status")
    elif topic.startswith("opening_hours"):
        answer_opening_hours(turn)
    elif topic.startswith("marriage_"):
        answer_marriage(turn, topic)
    else:
        return False
    return True


def _route_by_entity(turn: Turn) -> bool:
    """A bare value without context: guess the topic from the entity."""
    if turn.entity("document_type") or turn.entity("age"):
        answer_passport(turn, "passport_fees")
        turn.set("topic", "passport_fees")
    elif turn.entity("street") or turn.entity("area"):
        answer_roadworks(turn, "roadworks_status")
        turn.set("topic", "roadworks_status")
    elif turn.entity("date_expr") or turn.entity("desk"):
        answer_opening_hours(turn)
        turn.set("topic", "opening_hours")
    elif turn.entity("ceremony_type"):
        answer_marriage(turn, "marriage_how")
        turn.set("topic", "marriage_how")
    else:
        return False
    return True


class ActionHandleInform(AppcareAction):
    NAME = "action_handle_inform"

    def answer(self, turn: Turn) -> None:
        has_value = any(
            turn.entity(name)
            for name in ("document_type", "age", "relation", "date_expr", "street", "area", "desk", "ceremony_type")
        )
        if has_value and _route_followup(turn):
            return
        if _route_by_entity(turn):
            return
        turn.say("utter_ask_rephrase_text")


class ActionHandleYesNo(AppcareAction):
    NAME = "action_handle_yes_no"

    def answer(self, turn: Turn) -> None:
        pending = turn.tracker.get_slot("pending_question")
        if pending == "feedback":
            positive = turn.intent == "affirm"
            turn.say("utter_feedback_positive" if positive else "utter_feedback_negative")
            turn.set("pending_question", None)
        elif turn.intent == "deny" and _route_by_entity(turn):
            return  # "nee, ik bedoel een ID-kaart"
        elif turn.intent == "deny":
            turn.say("utter_goodbye")
        else:
            turn.say("utter_anything_else")


class ActionRecordFeedback(AppcareAction):
    """Thumbs up/down after an answer; the tracker keeps the intent for the report."""

    NAME = "action_record_feedback"

    def answer(self, turn: Turn) -> None:
        positive = turn.intent == "feedback_positive"
        turn.say("utter_feedback_positive" if positive else "utter_feedback_negative")
        turn.set("pending_question", None)


class ActionClarify(AppcareAction):
    """Fallback: clarifying question with buttons, a handoff after the second miss."""

    NAME = "action_clarify"
    understood = False

    def answer(self, turn: Turn) -> None:
        message = turn.tracker.latest_message or {}
        text = (message.get("text") or "").strip()
        failed = int(turn.tracker.get_slot("failed_attempts") or 0) + 1
        if not text:
            turn.say("utter_empty_message")
            return
        if failed >= MAX_FAILED_ATTEMPTS:
            turn.say("utter_handoff_not_understood")
            turn.set("failed_attempts", 0)
            hand_off(turn, "not_understood")
            return
        turn.set("failed_attempts", failed)
        if len(text) > LONG_MESSAGE:
            turn.say("utter_too_long")
            return
        # Another language: the language entity (py3langid, appcare.nlu.language; also
        # Arabic or Cyrillic script) or, without that entity, mostly English words.
        language = turn.entity("language")
        if language and language != "nl" and not _URL_ONLY.match(text):
            turn.say("utter_other_language", phone=turn.content.contact.phone.value)
            return
        if _URL_ONLY.match(text) or not re.search(r"[a-zA-Z]{2,}", text):
            turn.say("utter_ask_rephrase_text")
            return
        if len(_ENGLISH.findall(text)) >= 2 and len(_ENGLISH.findall(text)) > len(_DUTCH.findall(text)):
            turn.say("utter_other_language", phone=turn.content.contact.phone.value)
            return
        ranking = [item.get("name") for item in message.get("intent_ranking") or []]
        options = [name for name in ranking if name in INTENT_TITLES][:2]
        buttons = [{"title": INTENT_TITLES[name], "payload": f"/{name}"} for name in options]
        buttons.append({"title": "Medewerker", "payload": "/request_human"})
        turn.dispatcher.utter_message(response="utter_ask_clarify", buttons=buttons)
