"""Conversation glue: greeting, follow-ups that only give a value ("en zaterdag?",
"12", "nee ik bedoel een id-kaart") or ask a short question in the current topic ("en
tot wanneer?", "en de dag erna?" - also when the NLU took them for a "no"), yes/no
answers, feedback, and the fallback (a clarifying question with buttons first, a
handoff after the second miss)."""
from __future__ import annotations

import re
from typing import Optional

from appcare.nlu import dates
from appcare.nlu.ages import no_age_after
from appcare.pii import number_spans

from actions.base import AppcareAction, Turn
from actions.handoff import hand_off
from actions.marriage import answer_marriage
from actions.opening_hours import answer_opening_hours
from actions.passport_id import answer_lost_followup, answer_passport
from actions.roadworks import answer_roadworks, followup_intent

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
# Entities that make a short message a follow-up ("en zaterdag?", "nee, een ID-kaart").
FOLLOWUP_ENTITIES = ("document_type", "age", "relation", "date_expr", "street", "area", "desk", "ceremony_type")
# Entities a topic can use; a follow-up with none of them is about another topic.
TOPIC_ENTITIES = {
    "passport": ("document_type", "age", "relation"),
    "roadworks": ("street", "area", "date_expr"),
    "opening_hours": ("date_expr", "desk"),
    "marriage": ("ceremony_type", "date_expr"),  # "en op zaterdag?" after the costs
}
# Pending questions the bot really asked (a bare "nee" to them is no goodbye).
OPEN_QUESTIONS = ("street", "document_type")
# A short question: "en tot wanneer", "hoe lang nog", "and when?", "en ook op zaterdag?".
_QUESTION_WORD = (r"(?:wat|wie|waar\w*|wanneer|hoe\w*|welke?|waarom|what|when|where|how|which|who|why|"
                  r"wann|wo|welche\w*|quand|où|comment|quel\w*|kiedy|gdzie|jak|ile)")
_QUESTION_START = re.compile(
    rf"^\s*(?:(?:en|and|und|et)\s+)?(?:(?:tot|until|till|bis|do|ook|nog|dan)\s+)?{_QUESTION_WORD}\b", re.IGNORECASE)
_AND_START = re.compile(r"^\s*(?:en|and)\b", re.IGNORECASE)
_DIGITS = re.compile(r"\d+")
MAX_AGE = 120


class ActionGreet(AppcareAction):
    NAME = "action_greet"

    def answer(self, turn: Turn) -> None:
        turn.say("utter_greet", municipality_name=turn.content.municipality.name)


def _text(turn: Turn) -> str:
    return ((turn.tracker.latest_message or {}).get("text") or "").strip()


def is_short_question(text: str) -> bool:
    """"en tot wanneer", "hoe lang nog", "en de dag erna?", "and on Saturday?"."""
    text = (text or "").strip()
    return bool(_QUESTION_START.match(text)) or (bool(_AND_START.match(text)) and text.endswith("?"))


def _topic_family(turn: Turn) -> Optional[str]:
    pending = turn.tracker.get_slot("pending_question") or ""
    topic = turn.tracker.get_slot("topic") or ""
    if pending in ("age", "document_type") or topic.startswith("passport_"):
        return "passport"
    if pending == "street" or topic.startswith("roadworks_"):
        return "roadworks"
    if topic.startswith("opening_hours"):
        return "opening_hours"
    if topic.startswith("marriage_"):
        return "marriage"
    return None


def _route_followup(turn: Turn) -> bool:
    """Answers a follow-up in the context of the last topic; False when there is none or
    the message's values belong to another topic ("en morgen?" after a fee answer)."""
    family = _topic_family(turn)
    if family is None or not any(turn.entity(name) for name in TOPIC_ENTITIES[family]):
        return False
    topic = turn.tracker.get_slot("topic") or ""
    if family == "passport":
        answer_passport(turn, topic if topic.startswith("passport_") else "passport_fees")
        turn.set("topic", topic if topic.startswith("passport_") else "passport_fees")
    elif family == "roadworks":
        intent = followup_intent(_text(turn)) or (topic if topic.startswith("roadworks_") else "roadworks_status")
        answer_roadworks(turn, intent, followup=True)
        turn.set("topic", intent)
    elif family == "opening_hours":
        answer_opening_hours(turn, followup=True)  # "en telefonisch?": the same day
    else:
        answer_marriage(turn, topic)
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


def _route_question(turn: Turn) -> bool:
    """A short question without a value, in the current topic: "en tot wanneer?" or
    "hoe lang nog" after roadworks (duration of the same street or area), "en tot hoe
    laat?" after opening hours (the day answered last)."""
    text = _text(turn)
    family = _topic_family(turn)
    if not text or family is None:
        return False
    if family == "roadworks":
        topic = turn.tracker.get_slot("topic") or ""
        intent = followup_intent(text)
        if intent is None:
            if not is_short_question(text):
                return False
            intent = topic if topic.startswith("roadworks_") else "roadworks_status"
        answer_roadworks(turn, intent, followup=True)
        turn.set("topic", intent)
        return True
    if family == "opening_hours" and is_short_question(text):
        answer_opening_hours(turn, followup=True)
        return True
    return False


def _age_from_number(turn: Turn) -> None:
    """After a fee answer, a message without entities whose only number is an age in any
    language ("ma 5 lat", "he is 7", "er ist 9") gives that age. Digits of a phone number,
    BSN, postcode or date, amounts and durations are no age."""
    if turn.tracker.get_slot("topic") != "passport_fees" and turn.tracker.get_slot("pending_question") != "age":
        return
    message = turn.tracker.latest_message or {}
    if any(e.get("entity") != "language" for e in message.get("entities") or []):
        return
    text = message.get("text") or ""
    blocked = number_spans(text)
    blocked += [(a, b) for a, b, _ in dates.find_dates(text, blocked)]
    numbers = [m for m in _DIGITS.finditer(text)
               if not any(a <= m.start() and m.end() <= b for a, b in blocked)]
    if len(numbers) != 1:
        return
    number = numbers[0]
    if (int(number.group(0)) > MAX_AGE or no_age_after(text, number.end())
            or re.search(r"[€$£]\s*$", text[:number.start()])):
        return
    turn.assume("age", str(int(number.group(0))))


def handle_followup(turn: Turn) -> bool:
    """Answers a short follow-up in the conversation's topic (or the topic its value
    belongs to); False when nothing fits."""
    if answer_lost_followup(turn):
        return True
    _age_from_number(turn)
    if any(turn.entity(name) for name in FOLLOWUP_ENTITIES) and (_route_followup(turn) or _route_by_entity(turn)):
        return True
    return _route_question(turn)


class ActionHandleInform(AppcareAction):
    NAME = "action_handle_inform"

    def answer(self, turn: Turn) -> None:
        if not handle_followup(turn):
            turn.say("utter_ask_rephrase_text")


def deny_is_followup(turn: Turn) -> bool:
    """A "no" from the NLU that is really a follow-up: it carries a value ("nee, een
    ID-kaart", "en de dag erna?") or is a short question ("en tot wanneer", "hoe lang nog")."""
    return any(turn.entity(name) for name in FOLLOWUP_ENTITIES) or is_short_question(_text(turn))


class ActionHandleYesNo(AppcareAction):
    NAME = "action_handle_yes_no"

    def answer(self, turn: Turn) -> None:
        pending = turn.tracker.get_slot("pending_question")
        if turn.intent == "deny" and deny_is_followup(turn):
            if pending == "feedback":
                turn.set("pending_question", None)  # the citizen moved on
            if not handle_followup(turn):
                turn.say("utter_ask_rephrase_text")
        elif pending == "feedback":
            positive = turn.intent == "affirm"
            turn.say("utter_feedback_positive" if positive else "utter_feedback_negative")
            turn.set("pending_question", None)
        elif turn.intent == "deny" and pending in OPEN_QUESTIONS:
            turn.say("utter_anything_else")  # "nee" to "which street?" is no goodbye
            turn.set("pending_question", None)
        elif turn.intent == "deny":
            turn.say("utter_goodbye")
        else:
            turn.say("utter_anything_else")


class ActionGoodbye(AppcareAction):
    """Goodbye, unless the "goodbye" is a follow-up question in disguise: "en de dag
    erna?" and "en tot wanneer" share words with "dag!" and "tot ziens"."""

    NAME = "action_goodbye"

    def answer(self, turn: Turn) -> None:
        if deny_is_followup(turn) and (turn.tracker.get_slot("topic") or turn.entity("date_expr")):
            if turn.tracker.get_slot("pending_question") == "feedback":
                turn.set("pending_question", None)
            if handle_followup(turn):
                return
        turn.say("utter_goodbye")


def give_up(turn: Turn) -> None:
    """Second miss in a row: a colleague takes over (reason not_understood)."""
    turn.say("utter_handoff_not_understood")
    turn.set("failed_attempts", 0)
    hand_off(turn, "not_understood")


class ActionRecordFeedback(AppcareAction):
    """Thumbs up/down after an answer; the tracker keeps the intent for the report."""

    NAME = "action_record_feedback"

    def answer(self, turn: Turn) -> None:
        if turn.tracker.get_slot("pending_question") != "feedback" and int(
                turn.tracker.get_slot("failed_attempts") or 0) > 0:
            # thumbs down (or up) to a clarifying question, not to an answer: a second miss
            give_up(turn)
            return
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
        if answer_lost_followup(turn):
            if failed > 1:
                turn.set("failed_attempts", 0)
            return
        if failed >= MAX_FAILED_ATTEMPTS:
            give_up(turn)
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
