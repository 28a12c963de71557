"""Dutch labels of the report and how intents, municipalities and channels are named:
weekdays and months, handoff reasons, topic groups, intents and channels."""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

from appcare.clock import MONTH_NAMES, WEEKDAY_NAMES
from appcare.staff_labels import REPORT_REASON_LABELS

# The names of appcare.clock, under the names the report's modules use.
WEEKDAYS_NL = WEEKDAY_NAMES
MONTHS_NL = MONTH_NAMES

REASON_LABELS = REPORT_REASON_LABELS  # appcare.staff_labels

# Topic groups (key, Dutch label); the first ones are questions citizens ask.
TOPICS: List[Tuple[str, str]] = [
    ("opening_hours", "Openingstijden"),
    ("passport_id", "Paspoort en ID-kaart"),
    ("marriage", "Trouwen en partnerschap"),
    ("roadworks", "Wegwerkzaamheden"),
    ("request_human", "Vraagt om een medewerker"),
    ("personal_case", "Persoonlijke zaak"),
    ("complaint", "Klacht"),
    ("out_of_scope_municipal", "Ander gemeentelijk onderwerp"),
    ("out_of_scope_other", "Geen gemeentelijk onderwerp"),
    ("urgent", "Dringend (gevaar of nood)"),  # not a question topic: no example texts
    ("followup", "Vervolgantwoord (ja, nee, een waarde)"),
    ("smalltalk", "Begroeting, bedankt, tot ziens"),
    ("feedback", "Feedback (duim omhoog/omlaag)"),
    ("return_to_bot", "Terug naar de assistent"),
    ("non_text", "Foto, spraakbericht of bestand"),
    ("nlu_fallback", "Niet begrepen"),
    ("other", "Overig"),
]
TOPIC_LABELS = dict(TOPICS)
QUESTION_TOPICS = frozenset(key for key, _ in TOPICS[:9])
# Names of intents the editors' file (appcare.staff_labels.intent_labels) has no entry
# for: no example questions, the assistant sets them itself.
OTHER_INTENT_LABELS = {"nlu_fallback": "Niet begrepen", "non_text_message": "Foto, spraak of bestand"}
CHANNEL_LABELS = {"whatsapp": "WhatsApp", "rest": "Web (REST)", "cmdline": "Test", "socketio": "Webchat"}
ALL = "alle"


def topic_of(intent: Optional[str]) -> str:
    if not intent:
        return "other"
    for prefix, key in (("opening_hours", "opening_hours"), ("passport_", "passport_id"),
                        ("marriage_", "marriage"), ("roadworks_", "roadworks")):
        if intent.startswith(prefix):
            return key
    if intent == "request_callback":
        return "request_human"
    if intent in ("inform", "affirm", "deny"):
        return "followup"
    if intent in ("greet", "goodbye", "thanks", "bot_challenge"):
        return "smalltalk"
    if intent in ("feedback_positive", "feedback_negative"):
        return "feedback"
    if intent == "non_text_message":
        return "non_text"
    if intent in TOPIC_LABELS:
        return intent
    return "other"


def municipality_label(municipality: str) -> str:
    return municipality.replace("_", " ").replace("-", " ").title() if municipality != ALL else "Alle"


def channel_label(channel: str) -> str:
    return CHANNEL_LABELS.get(channel, channel) if channel != ALL else "Alle"


def default_municipality() -> str:
    return os.environ.get("APPCARE_MUNICIPALITY", "terneuzen").strip().lower() or "terneuzen"
