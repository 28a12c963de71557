"""Handoff to the KCC (klantcontactcentrum) and the conversation while a human has it.

``action_handoff_to_kcc`` opens a ticket in the handoff store with reason, summary
and masked transcript, tells the citizen when to expect an answer (aware of KCC
hours, weekends and holidays) and sets ``handoff_active``; from then on the
HandoffPolicy routes messages to ``action_relay_to_kcc`` until staff close the
ticket (``action_close_handoff``) or the citizen returns to the bot.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any, Dict, List, Optional

from rasa_sdk.events import FollowupAction

from appcare import action_names, clock, labels, opening_hours as oh
from appcare.handoff_store import default_store
from appcare.staff_labels import intent_labels
from appcare.pii import conversation_hash, phone_numbers

from actions.base import AppcareAction, Turn
from actions.passport_id import answer_lost_followup

logger = logging.getLogger(__name__)

REASONS = {
    "not_understood": ("not_understood", "utter_handoff_not_understood"),
    "request_human": ("request_human", None),
    "request_callback": ("request_human", None),
    "urgent": ("urgent", "utter_handoff_urgent"),
    "personal_case": ("personal_case", "utter_handoff_personal"),
    "complaint": ("complaint", "utter_handoff_complaint"),
    "out_of_scope_municipal": ("out_of_scope", "utter_handoff_scope"),
}


# A complaint about the assistant itself ("stomme bot", "je snapt er niks van").
BOT_FRUSTRATION = re.compile(
    r"\b(bot|chatbot|robot|computer|assistent|ding)\b|snap(t|pen)? (er )?(niks|niets|het niet)|"
    r"begrijp(t|en)? (er )?(niks|niets|me niet|het niet)|useless|you don'?t understand", re.IGNORECASE)


EXTERNAL_PREFIX = "EXTERNAL: "  # Rasa's text of a user event for an external intent (trigger_intent)


def transcript_of(turn: Turn, limit: int = 30) -> List[Dict[str, Any]]:
    """The conversation so far, for staff. The desk's own actions of an earlier
    handoff come in as external intents (EXTERNAL_kcc_reply, EXTERNAL_kcc_close): the
    citizen never typed those, so they are left out; what the bot said right after a
    kcc_reply is the colleague's reply ("staff")."""
    items = []
    after_staff_reply = False
    for event in turn.tracker.events:
        kind = event.get("event")
        text = str(event.get("text") or "")
        if kind == "user":
            external = text.startswith(EXTERNAL_PREFIX) or (
                (event.get("parse_data") or {}).get("intent", {}).get("name", "").startswith("EXTERNAL_")
            )
            after_staff_reply = external and "kcc_reply" in text + str(
                ((event.get("parse_data") or {}).get("intent") or {}).get("name", "")
            )
            if text and not external and not text.startswith("/"):
                items.append({"sender": "citizen", "text": text, "time": event.get("timestamp")})
        elif kind == "bot" and text:
            sender = "staff" if after_staff_reply else "bot"
            items.append({"sender": sender, "text": text, "time": event.get("timestamp")})
    return items[-limit:]


def intent_label(intent: str) -> str:
    """The Dutch name the editors gave an intent (appcare.staff_labels.intent_labels, read
    each time so their changes count); the intent name itself when it has none."""
    return intent_labels().get(intent) or intent


def summary_of(turn: Turn, reason: str) -> str:
    """What staff read in the queue besides the reason (which has its own column)."""
    last_text = (turn.tracker.latest_message or {}).get("text") or ""
    topic = turn.tracker.get_slot("topic")
    parts = []
    if topic:
        parts.append(f"Onderwerp eerder in gesprek: {intent_label(str(topic)).rstrip('.')}.")
    if last_text and not last_text.startswith("/"):
        parts.append(f"Laatste bericht: {last_text[:300]}")
    return " ".join(parts)


# {on_number} of the callback promise when the citizen wrote a phone number.
ON_NUMBER = labels.per_language("handoff.on_number")


def _clock_text(moment: dt.datetime) -> str:
    return f"{moment.hour}:{moment.minute:02d}"


def hand_off(turn: Turn, reason: str, callback: bool = False) -> None:
    """Opens a ticket and tells the citizen what happens next. ``reason`` "urgent"
    flags the ticket (first in the desk's queue) and gives the crisis numbers at once;
    ``callback`` records the wish to be phoned back (and the number the citizen wrote)."""
    content = turn.content
    now = turn.now
    urgent = reason == "urgent"
    in_hours = oh.is_open(content, "kcc", now)
    expected = oh.closes_at(content, "kcc", now) if in_hours else oh.next_opening(content, "kcc", now)
    text = (turn.tracker.latest_message or {}).get("text") or ""
    numbers = phone_numbers(text) if callback else []
    language = turn.native if turn.native != "nl" else None
    if urgent:
        _say_crisis_numbers(turn)  # before anything that can fail
    try:
        ticket = default_store().open_ticket(
            conversation_id=turn.tracker.sender_id,
            reason=reason,
            summary=summary_of(turn, reason),
            transcript=transcript_of(turn),
            municipality=content.municipality.id,
            channel=turn.tracker.get_latest_input_channel() or "rest",
            in_kcc_hours=in_hours,
            expected_reply_at=expected.astimezone(dt.timezone.utc).replace(tzinfo=None) if expected else None,
            urgent=urgent,
            language=language,
            callback_requested=callback,
            callback_number=numbers[0] if numbers else None,
        )
    except Exception as exc:  # noqa: BLE001 - store down: honest reply, nothing hidden
        logger.error("handoff store unavailable (%s); conversation %s",
                     type(exc).__name__, conversation_hash(turn.tracker.sender_id))
        _say_handoff_failed(turn)
        return
    logger.info("handoff ticket %s opened, reason %s%s%s, conversation %s",
                ticket.id, reason, ", callback wish" if callback else "",
                f", language {language}" if language else "", conversation_hash(turn.tracker.sender_id))
    moment = clock.format_moment(expected, now, turn.lang) if expected else None
    # A clock time ("vandaag vóór 17:00", "morgen om 8:30") only from verified KCC hours;
    # placeholder hours promise "zo snel mogelijk", on the next working day when the KCC
    # is presumably closed for the rest of today.
    exact = oh.schedule_verified(content, "kcc", now, expected)
    soon = in_hours or bool(expected and expected.astimezone(clock.TZ).date() == now.astimezone(clock.TZ).date())
    on_number = ON_NUMBER["nl" if turn.lang == "nl" else "en"] if numbers else ""
    if turn.foreign:
        if not urgent:
            turn.say("utter_handoff_other_language")
    elif not exact:
        when = "soon" if soon else "next_working_day"
        if urgent:
            turn.say(f"utter_handoff_urgent_{when}")
        elif callback:
            turn.say(f"utter_handoff_callback_{when}", on_number=on_number)
        else:
            turn.say(f"utter_handoff_{when}")
    elif urgent:
        if in_hours and expected:
            turn.say("utter_handoff_urgent_in_hours", until=_clock_text(expected))
        else:
            turn.say("utter_handoff_urgent_out_of_hours", moment=moment or clock.next_working_day_text(turn.lang))
    elif callback:
        if in_hours and expected:
            turn.say("utter_handoff_callback_in_hours", on_number=on_number, until=_clock_text(expected))
        else:
            turn.say("utter_handoff_callback_out_of_hours", on_number=on_number,
                     moment=moment or clock.next_working_day_text(turn.lang))
    elif in_hours and expected:
        turn.say("utter_handoff_in_hours", until=_clock_text(expected))
    else:
        turn.say("utter_handoff_out_of_hours", moment=moment or clock.next_working_day_text(turn.lang))
    turn.set("handoff_active", True)
    turn.set("pending_question", None)
    turn.set("failed_attempts", 0)


def _say_handoff_failed(turn: Turn) -> None:
    """No ticket could be opened: the phone number (when it may be quoted), else try later."""
    phone = turn.fact(turn.content.contact.phone)
    if phone:
        turn.say("utter_handoff_failed", phone=phone)
    else:
        turn.say("utter_handoff_failed_later")


def _say_crisis_numbers(turn: Turn) -> None:
    crisis = turn.content.crisis
    # The national crisis numbers are given in every mode, without a caveat: withholding
    # or hedging them for a citizen in danger would be worse (content.SAFETY_PREFIXES).
    turn.say("utter_urgent_numbers", emergency=crisis.emergency.value,
             suicide_line=crisis.suicide_line.value, domestic_violence_line=crisis.domestic_violence_line.value)
    line = turn.fact(crisis.municipal_line)
    if line:
        turn.say("utter_urgent_municipal_line", phone=line)


class ActionHandoffToKcc(AppcareAction):
    """Every explicit wish for a person, a callback, a personal or urgent matter, a
    complaint and municipal topics the bot does not cover: a colleague takes over."""

    NAME = action_names.HANDOFF_ACTION
    answers_other_languages = True

    def answer(self, turn: Turn) -> None:
        # Another action may have decided the handoff (a second miss, a "no" to the
        # clarifying question, an unsure but urgent message): its reason is in the slot.
        trigger = turn.tracker.get_slot("handoff_reason") or turn.intent or ""
        if turn.tracker.get_slot("handoff_reason"):
            turn.set("handoff_reason", None)
        elif (turn.intent in ("personal_case", "out_of_scope_municipal") and not turn.foreign
                and answer_lost_followup(turn)):
            return  # "moet ik dan aangifte doen?" right after the lost/stolen answer
        reason, intro = REASONS.get(trigger, ("request_human", None))
        if reason == "complaint" and BOT_FRUSTRATION.search((turn.tracker.latest_message or {}).get("text") or ""):
            intro = "utter_handoff_frustrated"  # angry at the bot, not at the municipality
        if intro and not (turn.foreign and reason != "urgent"):
            turn.say(intro)
        hand_off(turn, reason, callback=trigger == "request_callback")


def request_handoff(turn: Turn, trigger: str) -> None:
    """Lets ``action_handoff_to_kcc`` run next (Rasa's FollowupAction) for ``trigger``: a
    key of REASONS ("not_understood", "urgent", "request_human", ...). One action opens
    every ticket, so the tracker shows each handoff the same way (report, evaluation)."""
    turn.set("handoff_reason", trigger)
    turn.set("failed_attempts", 0)
    turn.events.append(FollowupAction(ActionHandoffToKcc.NAME))


def relay_id(tracker: Any) -> Optional[str]:
    """What makes relaying the latest message idempotent: its ``message_id``, else one
    derived from the sender, the user event's timestamp and the text.

    Rasa gives every message an id, but a tracker without one (an older or imported
    tracker, a channel that sets none) would get the text added again each time the
    action call is retried. Rasa stamps the user event once, when the message arrives,
    and a retried call carries that same event; a second message with the same text
    ("ja") has a later timestamp, and the sender keeps other conversations apart. Without
    a timestamp as well there is no way to tell a retry from a repeat: None (the text is
    added, rather than a message lost)."""
    latest = tracker.latest_message or {}
    if latest.get("message_id"):
        return str(latest["message_id"])
    stamp = next((e.get("timestamp") for e in reversed(tracker.events or []) if e.get("event") == "user"), None)
    if stamp is None:
        return None
    return f"derived:{tracker.sender_id}:{stamp}:{latest.get('text') or ''}"


class ActionRelayToKcc(AppcareAction):
    """Appends a citizen message to the open ticket; the bot itself stays silent."""

    NAME = action_names.RELAY_ACTION
    answers_other_languages = True

    def answer(self, turn: Turn) -> None:
        latest = turn.tracker.latest_message or {}
        text = latest.get("text") or ""
        try:
            # a retried action call (same message) does not add the text twice
            ticket_id = default_store().append_citizen_message(
                turn.tracker.sender_id, text, message_id=relay_id(turn.tracker))
        except Exception as exc:  # noqa: BLE001
            logger.error("could not append to ticket (%s); conversation %s",
                         type(exc).__name__, conversation_hash(turn.tracker.sender_id))
            _say_handoff_failed(turn)
            return
        if ticket_id is None:
            # The ticket was closed outside Rasa (e.g. by a webcare tool): the bot is back.
            turn.set("handoff_active", False)
            turn.say("utter_handoff_closed")


class ActionReturnToBot(AppcareAction):
    NAME = action_names.RETURN_ACTION
    answers_other_languages = True

    def answer(self, turn: Turn) -> None:
        if not turn.tracker.get_slot("handoff_active"):
            turn.say("utter_already_bot")
            return
        try:
            default_store().close_for_conversation(turn.tracker.sender_id, "citizen_returned")
        except Exception as exc:  # noqa: BLE001
            logger.error("could not close ticket (%s)", type(exc).__name__)
        turn.set("handoff_active", False)
        turn.say("utter_back_to_bot")


class ActionDeliverStaffReply(AppcareAction):
    """Sends a KCC staff reply (external intent EXTERNAL_kcc_reply) on the citizen's channel."""

    NAME = action_names.DELIVER_STAFF_REPLY_ACTION
    answers_other_languages = True

    def _preamble(self, turn: Turn, municipality: str) -> None:
        pass  # staff messages get no privacy notice or late apology

    def answer(self, turn: Turn) -> None:
        text = turn.entity("kcc_text")
        if text:
            # The ref lets the desk find the WhatsApp delivery record of this reply.
            ref = turn.entity("kcc_ref")
            turn.dispatcher.utter_message(text=text, **({"whatsapp_ref": ref} if ref else {}))


class ActionCloseHandoff(AppcareAction):
    NAME = action_names.CLOSE_HANDOFF_ACTION
    answers_other_languages = True

    def _preamble(self, turn: Turn, municipality: str) -> None:
        pass

    def answer(self, turn: Turn) -> None:
        outcome = turn.entity("kcc_outcome") or "closed"
        try:
            default_store().close_for_conversation(turn.tracker.sender_id, outcome)
        except Exception as exc:  # noqa: BLE001
            logger.error("could not close ticket (%s)", type(exc).__name__)
        turn.set("handoff_active", False)
        turn.say("utter_handoff_closed")
