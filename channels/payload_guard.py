"""Citizens cannot trigger intents the bot did not offer.

Rasa reads a message that starts with ``/`` as a payload: ``/passport_fees`` or
``/EXTERNAL_kcc_close{"ticket_id": 7}`` skips the NLU and runs that intent with
those entities. Buttons the bot sends carry such payloads, so a tap must keep
working; anything else must not:

* intents starting with ``EXTERNAL_`` belong to the desk (Rasa's HTTP API,
  ``trigger_intent``), never to an input channel;
* a payload is accepted only when the bot offered it as a button in one of its
  last :data:`RECENT_BOT_MESSAGES` messages of this conversation, or when our own
  channel made it (e.g. the WhatsApp parser's ``/thanks`` for a 👍 reaction).

A refused payload is not dropped: it reaches the NLU as plain text (the button's
title when the channel knows it, else the text without the slash), so the citizen
still gets an answer. Both input channels (REST and WhatsApp) call
:func:`guard_payload`.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Optional, Set, Tuple

logger = logging.getLogger(__name__)

EXTERNAL_PREFIX = "EXTERNAL_"
RECENT_BOT_MESSAGES = 20


def payload_intent(text: str) -> Optional[str]:
    """The intent name of a ``/intent{...}`` or ``/intent@0.9`` payload, else None."""
    if not text or not text.startswith("/"):
        return None
    name = text[1:]
    for stop in ("{", "@", " ", "\n"):
        name = name.split(stop, 1)[0]
    return name


def offered_payloads(events: Iterable[Any]) -> Set[str]:
    """Payloads of the buttons in the last bot messages of a tracker's events."""
    bot_events = [e for e in events if getattr(e, "type_name", None) == "bot" or _event_name(e) == "bot"]
    offered: Set[str] = set()
    for event in bot_events[-RECENT_BOT_MESSAGES:]:
        data = getattr(event, "data", None)
        if data is None and isinstance(event, dict):
            data = event.get("data")
        for key in ("buttons", "quick_replies"):
            for button in (data or {}).get(key) or []:
                if isinstance(button, dict) and isinstance(button.get("payload"), str):
                    offered.add(button["payload"].strip())
    return offered


def _event_name(event: Any) -> Optional[str]:
    return event.get("event") if isinstance(event, dict) else None


def check(text: str, offered: Set[str], channel_payloads: Iterable[str] = (),
          fallback: Optional[str] = None) -> Tuple[str, Optional[str]]:
    """(text Rasa should receive, refusal reason or None)."""
    intent = payload_intent((text or "").strip())
    if intent is None:
        return text, None
    stripped = text.strip()
    if stripped in set(channel_payloads):
        return text, None
    if intent.upper().startswith(EXTERNAL_PREFIX):
        reason = "external_intent"
    elif stripped in offered:
        return text, None
    else:
        reason = "not_offered"
    plain = (fallback or "").strip() or stripped.lstrip("/").strip()
    # Without the slash it is text for the NLU, which has no examples of EXTERNAL_ intents.
    return plain.lstrip("/").strip(), reason


async def guard_payload(agent: Any, sender_id: str, text: Optional[str], channel: str,
                        channel_payloads: Iterable[str] = (), fallback: Optional[str] = None) -> Optional[str]:
    """The text to hand to Rasa for a message of ``sender_id`` on ``channel``.

    Only messages that start with ``/`` cost a tracker read. When the tracker
    cannot be read, a payload is refused (plain text is always safe)."""
    if text is None or payload_intent(text.strip()) is None or text.strip() in set(channel_payloads):
        return text
    offered: Set[str] = set()
    try:
        tracker = await agent.tracker_store.retrieve(sender_id)
        if tracker is not None:
            offered = offered_payloads(tracker.events)
    except Exception as exc:  # noqa: BLE001 - a store outage must not let a payload through
        logger.warning("payload check: tracker unavailable (%s); payload treated as text", type(exc).__name__)
    guarded, reason = check(text, offered, channel_payloads, fallback)
    if reason:
        logger.warning("%s: refused a payload the bot did not offer (%s); passed on as text", channel, reason)
    return guarded
