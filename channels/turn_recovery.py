"""Finishing a turn that a crashed instance left behind, without doing it twice.

Rasa saves a conversation's tracker once, at the end of a turn, with every event
of that turn. So when an instance dies while it works on a citizen's message, the
tracker either holds the whole turn (the message as a ``user`` event with the
WhatsApp message id, followed by the bot's utterances) or none of it:

* :func:`replies_of_completed_turn` reads the tracker (under Rasa's lock for the
  conversation) and returns the bot utterances of that turn, so the instance that
  takes over sends them instead of handing the message to Rasa a second time
  (no second ``user`` event, no second relay of the text to a KCC ticket);
* otherwise the message goes to Rasa as usual.

:func:`open_failure_ticket` and :func:`failure_text` serve a message that could not
be handled at all: the desk gets a ticket, the citizen a text with the phone number.
:func:`no_reply_text` serves a turn that ended without any reply.
Both run on a worker thread when called from the event loop (:func:`failure_text_async`):
the handoff store's database and the content files are never read on the loop.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, List, Optional

from appcare import labels
from appcare.pii import conversation_hash

logger = logging.getLogger(__name__)

FAILURE_REASON = "technical_failure"  # desk label: "kon niet automatisch beantwoord worden"
FAILURE_RESPONSE = "utter_channel_failure"
FALLBACK_FAILURE_TEXT = (
    "Sorry, door een storing kan ik je bericht nu niet beantwoorden. Een collega van het "
    "klantcontactcentrum kijkt ernaar. Heb je haast? Bel {phone}."
)
# A turn that produced no reply at all (e.g. the action server is unreachable).
NO_REPLY_RESPONSE = "utter_technical_problem"
FALLBACK_NO_REPLY_TEXT = "Er ging bij mij iets mis. Probeer het zo nog eens, of bel {phone}."
LOCK_WAIT_SECONDS = 30.0
# {phone} of the failure text when the municipality's content cannot be read.
NO_PHONE_TEXT = labels.text("failure.no_phone")


async def replies_of_completed_turn(agent: Any, sender_id: str, message_id: str) -> Optional[List[Dict[str, Any]]]:
    """The bot messages Rasa produced for ``message_id`` when the tracker holds that
    turn (a list, possibly empty: the bot stayed silent, e.g. during a handoff);
    None when Rasa never finished it or the tracker cannot be read."""
    tracker_store = getattr(agent, "tracker_store", None)
    if tracker_store is None or not message_id:
        return None
    lock_store = getattr(agent, "lock_store", None)
    try:
        if lock_store is not None:
            async with lock_store.lock(sender_id, wait_time_in_seconds=0.2):
                tracker = await tracker_store.retrieve(sender_id)
        else:
            tracker = await tracker_store.retrieve(sender_id)
    except Exception as exc:  # noqa: BLE001 - fall back to asking Rasa
        logger.warning("WhatsApp: could not read the conversation to resume a turn (%s)", type(exc).__name__)
        return None
    if tracker is None:
        return None
    return bot_messages_after(list(tracker.events), message_id)


def bot_messages_after(events: List[Any], message_id: str) -> Optional[List[Dict[str, Any]]]:
    """Bot utterances between the user event ``message_id`` and the next user event."""
    from rasa.shared.core.events import BotUttered, UserUttered

    start = None
    for index, event in enumerate(events):
        if isinstance(event, UserUttered) and getattr(event, "message_id", None) == message_id:
            start = index
    if start is None:
        return None
    replies: List[Dict[str, Any]] = []
    for event in events[start + 1:]:
        if isinstance(event, UserUttered):
            break
        if isinstance(event, BotUttered):
            message = event.message()
            message.pop("timestamp", None)
            replies.append(message)
    return replies


def domain_text(agent: Any, response: str, fallback: str, municipality: Optional[str]) -> str:
    """The domain response's first (Dutch) text with the municipality's phone number;
    ``fallback`` (the same words) when the loaded model has no such response."""
    text = fallback
    domain = getattr(agent, "domain", None)
    responses = getattr(domain, "responses", None) or {}
    for variant in responses.get(response) or []:
        if isinstance(variant, dict) and variant.get("text"):
            text = str(variant["text"])
            break
    return text.replace("{phone}", _phone(municipality))


def failure_text(agent: Any, municipality: Optional[str]) -> str:
    """The domain's ``utter_channel_failure`` with the municipality's phone number."""
    return domain_text(agent, FAILURE_RESPONSE, FALLBACK_FAILURE_TEXT, municipality)


def no_reply_text(agent: Any, municipality: Optional[str]) -> str:
    """The domain's ``utter_technical_problem`` with the municipality's phone number."""
    return domain_text(agent, NO_REPLY_RESPONSE, FALLBACK_NO_REPLY_TEXT, municipality)


async def failure_text_async(agent: Any, municipality: Optional[str]) -> str:
    """:func:`failure_text` on a worker thread (it may read the content files)."""
    return await asyncio.to_thread(failure_text, agent, municipality)


async def no_reply_text_async(agent: Any, municipality: Optional[str]) -> str:
    """:func:`no_reply_text` on a worker thread (it may read the content files)."""
    return await asyncio.to_thread(no_reply_text, agent, municipality)


def _phone(municipality: Optional[str]) -> str:
    try:
        from appcare import content

        return str(content.load(municipality or None).contact.phone.value)
    except Exception as exc:  # noqa: BLE001 - a broken content file must not hide the failure
        logger.error("WhatsApp: no phone number for the failure text (%s)", type(exc).__name__)
        return NO_PHONE_TEXT


async def open_failure_ticket(conversation_id: str, text: Optional[str], municipality: Optional[str],
                              why: str) -> Optional[int]:
    """A KCC ticket for a message the assistant could not answer (masked by the store)."""
    def _open() -> int:
        import datetime as dt

        from appcare import clock, content
        from appcare import opening_hours as oh
        from appcare.handoff_store import default_store

        name = municipality or content.default_municipality()
        in_hours, expected = True, None
        try:  # the same promise as a handoff by the bot (KCC hours)
            facts = content.load(name)
            now = clock.now()
            in_hours = oh.is_open(facts, "kcc", now)
            expected = oh.closes_at(facts, "kcc", now) if in_hours else oh.next_opening(facts, "kcc", now)
        except Exception:  # noqa: BLE001 - a ticket without a promise is better than none
            pass
        ticket = default_store().open_ticket(
            conversation_id=conversation_id,
            reason=FAILURE_REASON,
            # the reason has its own column in the desk: the summary holds what is new
            summary=f"Laatste bericht: {(text or '')[:300]} (technische oorzaak: {why})",
            transcript=[{"sender": "citizen", "text": text or ""}],
            municipality=name,
            channel="whatsapp",
            in_kcc_hours=in_hours,
            expected_reply_at=expected.astimezone(dt.timezone.utc).replace(tzinfo=None) if expected else None,
        )
        return ticket.id

    try:
        ticket_id = await asyncio.to_thread(_open)  # the handoff store's database call, off the event loop
    except Exception as exc:  # noqa: BLE001
        logger.error("WhatsApp: could not open a KCC ticket for an unanswered message conversation=%s (%s)",
                     conversation_hash(conversation_id), type(exc).__name__)
        return None
    logger.error("WhatsApp: message could not be answered automatically (%s); KCC ticket %s opened conversation=%s",
                 why, ticket_id, conversation_hash(conversation_id))
    return ticket_id
