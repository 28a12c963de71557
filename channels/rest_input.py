"""Rasa's REST channel with two fixes for citizens and privacy.

* A message that produced no reply at all (the action server is unreachable, an
  action crashed) gets the domain's ``utter_default`` instead of silence. Silence is
  only right while a KCC colleague has the conversation (an open handoff ticket).
* Failures are logged with a conversation hash, never with the message text
  (Rasa's own REST channel logs the text on errors).
* Security: a payload (``/intent{...}``) the bot did not offer and any
  ``EXTERNAL_`` intent reach Rasa as plain text (channels/payload_guard.py); the
  ``input_channel`` of the body is ignored (always ``rest``). With
  ``APPCARE_REST_TOKEN`` set, every message needs ``Authorization: Bearer <token>``
  (compared in constant time). In production (``APPCARE_ENV=production``) the
  channel refuses to start without a strong token; production uses
  credentials.prod.yml, which has no REST channel at all.

Configured in credentials.yml as ``channels.rest_input.RestInput``; its name stays
``rest``, so the webhook is still ``/webhooks/rest/webhook``.
"""
from __future__ import annotations

import asyncio
import logging
import os
from asyncio import CancelledError
from typing import Any, Awaitable, Callable, Dict, Optional, Text

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput as RasaRestInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from appcare import secrets
from appcare.pii import conversation_hash
from channels.payload_guard import guard_payload

logger = logging.getLogger(__name__)
TOKEN_VAR = "APPCARE_REST_TOKEN"
LAST_RESORT_TEXT = "Sorry, er ging iets mis aan mijn kant. Probeer het later nog eens of typ 'medewerker'."


def fallback_reply(request: Request) -> Text:
    """The domain's ``utter_default`` text (editors can change it)."""
    try:
        agent = request.app.ctx.agent
        return agent.domain.responses["utter_default"][0]["text"]
    except (AttributeError, KeyError, IndexError, TypeError):
        return LAST_RESORT_TEXT


async def silence_expected_async(sender_id: Text) -> bool:
    """:func:`silence_expected` on a worker thread: the handoff store's database
    call never blocks the event loop (other conversations' turns)."""
    return await asyncio.to_thread(silence_expected, sender_id)


def silence_expected(sender_id: Text) -> bool:
    """True while a KCC colleague has this conversation (the bot stays silent then)."""
    try:
        from appcare.handoff_store import default_store

        return default_store().open_ticket_for(sender_id) is not None
    except Exception as exc:  # noqa: BLE001 - store down: better a reply than silence
        logger.warning("handoff store unavailable while checking silence (%s)", type(exc).__name__)
        return False


class RestInput(RasaRestInput):
    """REST channel that never leaves a citizen without an answer."""

    def __init__(self) -> None:
        self.token = os.environ.get(TOKEN_VAR) or None
        # Raises in production without a strong token (no open REST door).
        secrets.check("REST channel", {TOKEN_VAR: self.token}, optional=() if secrets.production() else [TOKEN_VAR])

    @classmethod
    def name(cls) -> Text:
        return "rest"

    def _extract_input_channel(self, req: Request) -> Text:
        return self.name()  # never the body's claim: it decides where staff replies go

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[None]]) -> Blueprint:
        webhook = Blueprint("appcare_rest_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            if self.token and not secrets.same_secret(secrets.bearer_token(request.headers.get("Authorization")),
                                                      self.token):
                return response.json({"error": "missing or wrong bearer token"}, status=401)
            if not isinstance(request.json, dict):
                return response.json({"error": "expected a JSON object with sender and message"}, status=400)
            sender_id = await self._extract_sender(request)
            text = await guard_payload(getattr(request.app.ctx, "agent", None), sender_id,
                                       self._extract_message(request), self.name())
            metadata: Optional[Dict[Text, Any]] = self.get_metadata(request)
            collector = CollectingOutputChannel()
            try:
                await on_new_message(
                    UserMessage(text, collector, sender_id,
                                input_channel=self._extract_input_channel(request), metadata=metadata)
                )
            except CancelledError:
                logger.error("REST message timed out; conversation %s", conversation_hash(sender_id))
            except Exception as exc:  # noqa: BLE001
                logger.error("REST message failed (%s); conversation %s",
                             type(exc).__name__, conversation_hash(sender_id))
            if not collector.messages and not await silence_expected_async(sender_id):
                logger.warning("no reply produced; sent the default reply; conversation %s",
                               conversation_hash(sender_id))
                collector.messages.append({"recipient_id": sender_id, "text": fallback_reply(request)})
            return response.json(collector.messages)

        return webhook
