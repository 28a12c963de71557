"""Short questions in the context of the conversation's topic.

"wat kost dat?" after a marriage answer is about the cost of marrying, even when the NLU
took it for the passport fee (most fee questions in the data are about passports); "hoe
lang van tevoren moet dat?" after the marriage notice is about the notice period, not
about how long a passport takes. A message is only read in the context of the current
topic when it names nothing of the topic the NLU chose (no "paspoort", no street) and is
short: "wat kost een paspoort?" after a marriage answer stays a passport question.
"""
from __future__ import annotations

import re
from typing import Dict, Optional

from actions.base import Turn

FAMILY_PREFIXES = {"passport": "passport_", "marriage": "marriage_", "roadworks": "roadworks_",
                   "opening_hours": "opening_hours"}
# Words that tie a message to a family of its own.
TOPIC_WORDS = {
    "passport": re.compile(r"pas(?:poort|poord|port)|\bid\b|id-?kaart|identiteit|reisdocument|rijbewijs|"
                           r"passport|id card|document", re.IGNORECASE),
    "marriage": re.compile(r"trouw|huwelijk|partnerschap|ceremonie|bruiloft|getuige|wedding|marr", re.IGNORECASE),
    "roadworks": re.compile(r"werkzaamhe|\bweg\b|straat|omleiding|afgesloten|afsluiting|road|detour", re.IGNORECASE),
    "opening_hours": re.compile(r"\bopen|gesloten|\bdicht\b|openingstijd|hoe laat|closed", re.IGNORECASE),
}
FAMILY_ENTITIES = {"passport": ("document_type",), "roadworks": ("street", "area"), "marriage": ("ceremony_type",),
                   "opening_hours": ("desk",)}
# In the context of a family, the question the NLU placed in another family means this.
IN_CONTEXT: Dict[str, Dict[str, str]] = {
    "marriage": {
        "passport_fees": "marriage_costs",
        "passport_processing_time": "marriage_notice",
        "passport_apply": "marriage_notice",
        "passport_bring": "marriage_notice",
        "passport_express": "marriage_notice",
        "roadworks_duration": "marriage_notice",
    },
    "passport": {
        "marriage_costs": "passport_fees",
        "marriage_notice": "passport_apply",
        "roadworks_duration": "passport_processing_time",
        "marriage_witnesses": "passport_bring",
    },
    "roadworks": {
        "passport_processing_time": "roadworks_duration",
        "passport_validity": "roadworks_duration",
        "marriage_notice": "roadworks_duration",
    },
}
MAX_CONTEXT_WORDS = 10
MAX_SWITCH_WORDS = 6
FAMILY_DEFAULT = {"passport": "passport_fees", "marriage": "marriage_how", "roadworks": "roadworks_status",
                  "opening_hours": "opening_hours"}
# "kan het ook online?" in a topic: the answer that says how (and whether online) it is done.
ONLINE = re.compile(r"\b(online|digitaal|internet|digid|website|via de site|thuis)\b", re.IGNORECASE)
HOW_INTENT = {"marriage": "marriage_notice", "passport": "passport_apply"}


def family_of(intent: Optional[str]) -> Optional[str]:
    for family, prefix in FAMILY_PREFIXES.items():
        if (intent or "").startswith(prefix):
            return family
    return None


def current_family(turn: Turn) -> Optional[str]:
    """The family of the conversation's topic (slot ``topic``, or the open question)."""
    pending = turn.tracker.get_slot("pending_question") or ""
    if pending in ("age", "document_type"):
        return "passport"
    if pending == "street":
        return "roadworks"
    return family_of(turn.tracker.get_slot("topic"))


def names_its_own_topic(turn: Turn, family: Optional[str]) -> bool:
    text = (turn.tracker.latest_message or {}).get("text") or ""
    if family is None:
        return False
    return bool(TOPIC_WORDS[family].search(text)) or any(turn.entity(e) for e in FAMILY_ENTITIES.get(family, ()))


def intent_in_context(turn: Turn, intent: Optional[str]) -> Optional[str]:
    """The intent ``intent`` means in the conversation's topic; None when it means itself
    (same family, no mapping, or the message names its own topic or is long)."""
    family = current_family(turn)
    predicted = family_of(intent)
    if family is None or predicted is None or predicted == family:
        return None
    mapped = IN_CONTEXT.get(family, {}).get(intent or "")
    text = (turn.tracker.latest_message or {}).get("text") or ""
    if not mapped or len(text.split()) > MAX_CONTEXT_WORDS or names_its_own_topic(turn, predicted):
        return None
    return mapped


def answer_intent(turn: Turn, intent: str) -> None:
    """Answers ``intent`` of a topic family and makes it the conversation's topic."""
    from actions.marriage import answer_marriage
    from actions.opening_hours import answer_opening_hours
    from actions.passport_id import answer_passport
    from actions.roadworks import answer_roadworks

    family = family_of(intent)
    start_topic(turn, family)
    if family == "passport":
        answer_passport(turn, intent)
    elif family == "marriage":
        answer_marriage(turn, intent)
    elif family == "roadworks":
        answer_roadworks(turn, intent, followup=True)
    else:
        answer_opening_hours(turn, now_question=intent == "opening_hours_now", followup=True)
    turn.set("topic", intent)


def answer_in_context(turn: Turn) -> bool:
    """Answers the message in the conversation's topic when it belongs there; False
    when the message is to be answered as the NLU understood it."""
    family, predicted = current_family(turn), family_of(turn.intent)
    text = (turn.tracker.latest_message or {}).get("text") or ""
    if (turn.municipality_switched and family and predicted != family and len(text.split()) <= MAX_SWITCH_WORDS
            and not (predicted and TOPIC_WORDS[predicted].search(text))):
        # "sorry, ik bedoel Lelystad": the same question for the other municipality
        answer_intent(turn, turn.tracker.get_slot("topic") or FAMILY_DEFAULT[family])
        return True
    mapped = intent_in_context(turn, turn.intent)
    if mapped is None:
        return False
    answer_intent(turn, mapped)
    return True


# Values that belong to one topic; a new topic clears the old topic's values, so that
# "wat kost een paspoort" long after "mijn zoon van 10" is not answered for the son.
TOPIC_SLOTS = {"passport": ("document_type", "age", "relation"), "roadworks": ("street", "area"),
               "opening_hours": ("last_day", "desk"), "marriage": ("ceremony_type",)}


def start_topic(turn: Turn, family: Optional[str]) -> None:
    """Clears the values of the previous topic when the conversation moves to ``family``;
    values this message gives stay."""
    old = current_family(turn)
    if family is None or old is None or old == family:
        return
    for slot in TOPIC_SLOTS.get(old, ()):
        if slot in TOPIC_SLOTS.get(family, ()) or turn.entity(slot):
            continue
        if turn.tracker.get_slot(slot) not in (None, ""):
            turn.cleared.add(slot)
            turn.set(slot, None)
