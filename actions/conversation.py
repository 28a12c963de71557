"""Conversation glue: greeting, follow-ups that only give a value ("en zaterdag?",
"12", "nee ik bedoel een id-kaart") or ask a short question in the current topic ("en
tot wanneer?", "en de dag erna?" - also when the NLU took them for a "no"), yes/no
answers, feedback, and the fallback (a clarifying question with buttons first, a
handoff after the second miss)."""
from __future__ import annotations

import re
from typing import Optional

from appcare import action_names, labels
from appcare.plugins.nlu import dates
from appcare.plugins.nlu.ages import no_age_after
from appcare.pii import number_spans

from actions.base import AppcareAction, Turn, offer_colleague_in_language
from actions.context import (
    FAMILY_DEFAULT,
    HOW_INTENT,
    MAX_CONTEXT_WORDS,
    ONLINE,
    answer_intent,
    current_family,
    family_of,
    intent_in_context,
)
from actions.handoff import request_handoff
from actions.marriage import answer_marriage
from actions.opening_hours import answer_opening_hours
from actions.passport_id import answer_lost_followup, answer_passport
from actions.roadworks import answer_roadworks, followup_intent

# Short button titles (WhatsApp allows 20 characters) for intents offered in a clarifying
# question, and the button to a colleague (appcare/labels.yml).
INTENT_TITLES = labels.group("intent_title", "nl")
EN_INTENT_TITLES = labels.group("intent_title", "en")
COLLEAGUE_BUTTON = labels.per_language("button.colleague")
_URL_ONLY = re.compile(r"^\s*(https?://|www\.)\S+\s*$", re.IGNORECASE)
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
# A follow-up about money is about the cost of the topic ("en de kosten op zaterdag?").
COST = re.compile(r"\b(kost\w*|prijs\w*|tarie\w*|betal\w*|leges|duur|goedkoper|cost\w*|price|fee)\b", re.IGNORECASE)
COST_INTENT = {"passport": "passport_fees", "marriage": "marriage_costs"}
# A "no" that closes the conversation ("nee dank je", "dat was het", "no thanks").
_CLOSING = re.compile(r"\b(dank|bedankt|thanks?|thx|tnx|dat was (het|alles)|verder niets|verder niks|laat maar|"
                      r"that'?s all|doei|bye)\b", re.IGNORECASE)


class ActionSmallTalk(AppcareAction):
    """Thanks, "are you a bot?", subjects far from the municipality and a photo or voice
    message: a fixed answer, in the citizen's language, after the first-message notice
    (automated assistant, privacy) when the conversation starts with it."""

    NAME = "action_small_talk"
    RESPONSES = {"thanks": "utter_thanks", "bot_challenge": "utter_iamabot",
                 "out_of_scope_other": "utter_out_of_scope_other", "non_text_message": "utter_text_only"}

    def answer(self, turn: Turn) -> None:
        turn.say(self.RESPONSES.get(turn.intent or "", "utter_anything_else"))
        if turn.intent == "thanks" and turn.tracker.get_slot("pending_question") == "feedback":
            turn.set("pending_question", None)


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
    return current_family(turn)


def _route_followup(turn: Turn) -> bool:
    """Answers a follow-up in the context of the last topic; False when there is none or
    the message's values belong to another topic ("en morgen?" after a fee answer)."""
    family = _topic_family(turn)
    if family is None or not any(turn.entity(name) for name in TOPIC_ENTITIES[family]):
        return False
    topic = turn.tracker.get_slot("topic") or ""
    if family in COST_INTENT and COST.search(_text(turn)):
        topic = COST_INTENT[family]  # "en de kosten op zaterdag?" after a marriage answer
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
        turn.set("topic", topic)
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
    if family in HOW_INTENT and ONLINE.search(text) and len(text.split()) <= MAX_CONTEXT_WORDS:
        answer_intent(turn, HOW_INTENT[family])  # "kan het ook online?"
        return True
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
    if any(e.get("entity") not in ("language", "reply_language") for e in message.get("entities") or []):
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


def answer_last_topic(turn: Turn) -> bool:
    """The last topic's answer again, with this message's values (another municipality:
    "sorry, ik bedoel Lelystad"); False without a topic."""
    family = current_family(turn)
    if family is None:
        return False
    topic = turn.tracker.get_slot("topic") or ""
    answer_intent(turn, topic if family_of(topic) == family else FAMILY_DEFAULT[family])
    return True


def handle_followup(turn: Turn) -> bool:
    """Answers a short follow-up in the conversation's topic (or the topic its value
    belongs to); False when nothing fits."""
    if turn.municipality_switched and not any(turn.entity(name) for name in FOLLOWUP_ENTITIES):
        return answer_last_topic(turn)
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
    return (turn.municipality_switched or any(turn.entity(name) for name in FOLLOWUP_ENTITIES)
            or is_short_question(_text(turn)))


# Bot messages that end with "anything else?": a "no" to them is a goodbye.
ANYTHING_ELSE = ("utter_anything_else", "utter_thanks", "utter_feedback_positive", "utter_deny_ok",
                 "utter_handoff_closed", "utter_back_to_bot")
# Bot messages that offer a colleague: a "yes" to them hands off.
OFFERS_COLLEAGUE = ("utter_iamabot", "utter_feedback_negative", "utter_ask_rephrase_or_human",
                    "utter_wrong_answer", "utter_other_language", "utter_out_of_scope_other")


def last_bot_response(turn: Turn) -> Optional[str]:
    """Name of the response the bot sent last (``utter_action`` of the last bot event)."""
    for event in reversed(turn.tracker.events):
        if event.get("event") == "bot":
            return (event.get("metadata") or {}).get("utter_action")
    return None


def previous_bot_turn(turn: Turn) -> set:
    """Names of all responses of the bot's previous turn (between the last two messages)."""
    names, seen_current = set(), False
    for event in reversed(turn.tracker.events):
        if event.get("event") == "user":
            if seen_current:
                break
            seen_current = True
        elif event.get("event") == "bot":
            names.add((event.get("metadata") or {}).get("utter_action"))
    return names


class ActionHandleYesNo(AppcareAction):
    """A yes or no answers the question it follows: feedback, "which street?", "anything
    else?", the offer of a colleague, a clarifying question. A bare "nee" after an
    answer is no farewell."""

    NAME = "action_handle_yes_no"
    answers_other_languages = True  # "tak" / "evet" to the offer of a colleague

    def answer(self, turn: Turn) -> None:
        pending = turn.tracker.get_slot("pending_question")
        last = last_bot_response(turn)
        deny = turn.intent == "deny"
        if deny and deny_is_followup(turn) and not turn.foreign:
            if pending == "feedback":
                turn.set("pending_question", None)  # the citizen moved on
            if not handle_followup(turn):
                turn.say("utter_ask_rephrase_text")
        elif not deny and (pending in ("colleague", "clarify") or last in OFFERS_COLLEAGUE or (
                previous_bot_turn(turn) & set(OFFERS_COLLEAGUE) and (turn.foreign or pending != "feedback"))):
            request_handoff(turn, "request_human")  # "ja" / "tak" to the offer of a colleague
        elif turn.foreign:
            offer_colleague_in_language(turn)
        elif deny and pending == "clarify":
            give_up(turn)  # none of the offered topics: a colleague takes over
        elif pending == "feedback":
            positive = not deny
            turn.say("utter_feedback_positive" if positive else "utter_feedback_negative")
            turn.set("pending_question", None)
        elif deny and pending in OPEN_QUESTIONS:
            turn.say("utter_anything_else")  # "nee" to "which street?" is no goodbye
            turn.set("pending_question", None)
        elif deny and (last in ANYTHING_ELSE or _CLOSING.search(_text(turn))):
            turn.say("utter_goodbye")
            turn.set("pending_question", None)
        elif deny:
            turn.say("utter_deny_ok")
            turn.set("pending_question", None)
        else:
            turn.say("utter_anything_else")
            turn.set("pending_question", None)


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
    request_handoff(turn, "not_understood")


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


# Buttons of a clarifying question: only topics whose confidence reaches this share of
# the message (chosen on the dev set, docs/bench.md "Clarifying question"): below it the
# second guess is rarely right, and unrelated buttons confuse more than they help.
CLARIFY_MIN_CONFIDENCE = 0.12
# Below the fallback threshold, a personal, urgent or human-request intent this confident
# is still a reason to hand off at once rather than ask which topic was meant.
HANDOFF_MIN_CONFIDENCE = 0.16
HANDOFF_INTENTS = ("urgent", "personal_case", "request_human", "request_callback", "complaint")


def human_button(turn: Turn) -> dict:
    return {"title": COLLEAGUE_BUTTON["en" if turn.lang == "en" else "nl"], "payload": "/request_human"}


def triage_handoff(turn: Turn, ranking) -> bool:
    """A message the bot did not understand, but that is most likely personal, urgent or
    a wish for a person: a colleague takes over at once, without topic buttons."""
    for item in ranking[:2]:
        name, confidence = item.get("name"), float(item.get("confidence") or 0)
        if name in HANDOFF_INTENTS and confidence >= HANDOFF_MIN_CONFIDENCE:
            request_handoff(turn, name)
            return True
    return False


def answer_close_in_context(turn: Turn, ranking, text: str) -> bool:
    """A short question the NLU was unsure of, whose likely meaning fits the conversation's
    topic ("hoe lang van tevoren moet dat?" after the marriage notice): answered in that
    topic instead of a clarifying question."""
    family = current_family(turn)
    if family is None or len(text.split()) > MAX_CONTEXT_WORDS:
        return False
    for item in ranking[:3]:
        name, confidence = item.get("name"), float(item.get("confidence") or 0)
        if confidence < CLARIFY_MIN_CONFIDENCE:
            break
        meant = name if family_of(name) == family else intent_in_context(turn, name)
        if meant and meant in INTENT_TITLES:
            answer_intent(turn, meant)
            return True
    return False


class ActionClarify(AppcareAction):
    """Fallback: a personal or urgent matter goes to a colleague at once; otherwise one
    clarifying question (buttons only for topics that are really close), and a handoff
    after the second miss, a "no" to the clarifying question or "that is not what I
    meant" after it."""

    NAME = action_names.CLARIFY_ACTION
    understood = False
    answers_other_languages = True

    def answer(self, turn: Turn) -> None:
        message = turn.tracker.latest_message or {}
        text = (message.get("text") or "").strip()
        failed = int(turn.tracker.get_slot("failed_attempts") or 0) + 1
        if not text:
            turn.say("utter_empty_message")
            return
        if turn.intent != "wrong_answer" and (
                (turn.municipality_switched and answer_last_topic(turn))
                or (len(text.split()) <= MAX_CONTEXT_WORDS and _route_question(turn))):
            turn.set("failed_attempts", 0)  # a short follow-up in the topic ("kan het ook online?")
            return
        if turn.intent != "wrong_answer" and answer_lost_followup(turn):
            if failed > 1:
                turn.set("failed_attempts", 0)
            return
        ranking = [item for item in message.get("intent_ranking") or [] if item.get("name") != "nlu_fallback"]
        if turn.intent != "wrong_answer" and triage_handoff(turn, ranking):
            return
        if turn.foreign:
            offer_colleague_in_language(turn)  # no clarifying question in a language we do not speak
            return
        if turn.intent != "wrong_answer" and answer_close_in_context(turn, ranking, text):
            turn.set("failed_attempts", 0)
            return
        if failed >= MAX_FAILED_ATTEMPTS:
            give_up(turn)
            return
        turn.set("failed_attempts", failed)
        turn.set("pending_question", "clarify")
        if turn.intent == "wrong_answer":
            turn.dispatcher.utter_message(response="utter_wrong_answer", buttons=[human_button(turn)])
            return
        if len(text) > LONG_MESSAGE:
            turn.say("utter_too_long")
            return
        if _URL_ONLY.match(text) or not re.search(r"[a-zA-Z]{2,}|[^\W\d_]{3,}", text):
            turn.say("utter_ask_rephrase_text")
            return
        titles = EN_INTENT_TITLES if turn.lang == "en" else INTENT_TITLES
        options = [item["name"] for item in ranking
                   if item.get("name") in titles and float(item.get("confidence") or 0) >= CLARIFY_MIN_CONFIDENCE][:2]
        if not options:
            turn.dispatcher.utter_message(response="utter_ask_rephrase_or_human", buttons=[human_button(turn)])
            return
        buttons = [{"title": titles[name], "payload": f"/{name}"} for name in options]
        buttons.append(human_button(turn))
        turn.dispatcher.utter_message(response="utter_ask_clarify", buttons=buttons)
