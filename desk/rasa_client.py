"""Sends staff actions to the citizen through Rasa's HTTP API.

Rasa runs the bot's actions for the external intents, so the reply goes out on the
channel the citizen used last (``output_channel=latest``) with that channel's rules
(WhatsApp's 24-hour window and template rule):

* ``EXTERNAL_kcc_reply`` with entity ``kcc_text``  -> ``action_deliver_staff_reply``
* ``EXTERNAL_kcc_close`` with entity ``kcc_outcome`` -> ``action_close_handoff``

Outcomes of one call (``RasaResult``):

* 2xx: Rasa ran the action; the WhatsApp channel's outbox tells what it did (desk.service).
* non-2xx: Rasa answered with an error (the outbox is still checked: an action that got
  as far as the channel may have sent the reply).
* no answer although the request may have reached Rasa (read timeout, connection
  broken after sending): ``unanswered`` -- the reply may still go out, so it is *not*
  "not delivered".
* the request surely did not reach Rasa (connect timeout, connection refused, name
  not resolved, invalid URL): "not delivered".

Authentication: Rasa runs with ``--jwt-secret "$RASA_JWT_SECRET" --jwt-method HS256``;
every request carries ``Authorization: Bearer <JWT>``, a token signed with that secret,
valid for five minutes, for the user ``kcc-desk`` with role ``admin`` (rasa/server.py
``requires_auth`` lets an admin act on every conversation). Nothing secret goes in the
URL (URLs end up in access logs).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional
from urllib.parse import quote

import jwt
import requests
from urllib3.exceptions import NewConnectionError

REPLY_INTENT = "EXTERNAL_kcc_reply"
CLOSE_INTENT = "EXTERNAL_kcc_close"
JWT_USER = {"username": "kcc-desk", "role": "admin"}
JWT_LIFETIME = 300  # seconds
JWT_ALGORITHM = "HS256"


def auth_headers(jwt_secret: Optional[str]) -> Dict[str, str]:
    """``Authorization: Bearer <JWT>`` for Rasa's HTTP API (empty without a secret: a
    development Rasa without authentication)."""
    if not jwt_secret:
        return {}
    token = jwt.encode(
        {"user": dict(JWT_USER), "exp": int(time.time()) + JWT_LIFETIME}, jwt_secret, algorithm=JWT_ALGORITHM
    )
    return {"Authorization": f"Bearer {token}"}


@dataclass
class RasaResult:
    ok: bool
    status: Optional[int] = None
    error: Optional[str] = None
    bot_messages: List[Dict[str, Any]] = field(default_factory=list)
    # No answer, but the request may have reached Rasa (and the reply the citizen).
    unanswered: bool = False


# Raised before anything is sent: the request surely did not reach Rasa.
_NOT_SENT = (
    requests.exceptions.ConnectTimeout,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
)


def surely_not_sent(exc: requests.RequestException) -> bool:
    """True when ``exc`` happened before the request was sent (connect timeout, a
    refused connection, an unknown host, a bad URL). Anything else (read timeout,
    connection reset or closed after sending, TLS or protocol errors) may have come
    after Rasa received the request."""
    if isinstance(exc, _NOT_SENT):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)  # urllib3 MaxRetryError wraps the cause
        return isinstance(reason, NewConnectionError)  # refused, unreachable, name not resolved
    return False


class RasaClient:
    def __init__(self, base_url: str, jwt_secret: Optional[str] = None, timeout: float = 120.0):
        self.base_url = base_url.rstrip("/")
        self.jwt_secret = jwt_secret
        self.timeout = timeout

    def trigger_intent(self, conversation_id: str, name: str, entities: Dict[str, Any]) -> RasaResult:
        url = f"{self.base_url}/conversations/{quote(conversation_id, safe='')}/trigger_intent"
        params = {"output_channel": "latest"}
        try:
            response = requests.post(
                url,
                params=params,
                headers=auth_headers(self.jwt_secret),
                json={"name": name, "entities": entities},
                timeout=(min(5.0, self.timeout), self.timeout),
            )
        except requests.RequestException as exc:
            if surely_not_sent(exc):
                return RasaResult(ok=False, error=f"assistent niet bereikbaar ({type(exc).__name__})")
            return RasaResult(
                ok=False, unanswered=True, error=f"assistent gaf geen antwoord ({type(exc).__name__})"
            )
        if not 200 <= response.status_code < 300:
            detail = ""
            try:
                body = response.json()
                detail = str(body.get("message") or body.get("reason") or "")[:150]
            except ValueError:
                pass
            return RasaResult(
                ok=False,
                status=response.status_code,
                error=f"assistent antwoordde {response.status_code}" + (f": {detail}" if detail else ""),
            )
        messages: List[Dict[str, Any]] = []
        try:
            messages = list(response.json().get("messages") or [])
        except (ValueError, AttributeError):
            pass
        return RasaResult(ok=True, status=response.status_code, bot_messages=messages)

    def send_reply(self, conversation_id: str, text: str, ref: Optional[str] = None) -> RasaResult:
        """``ref`` (``kcc:<message id>``) goes along as entity ``kcc_ref``: an action that
        passes it on (``utter_message(..., whatsapp_ref=ref)``) lets the desk find the
        WhatsApp channel's outbox records of this reply (see desk.service)."""
        entities = {"kcc_text": text}
        if ref:
            entities["kcc_ref"] = ref
        return self.trigger_intent(conversation_id, REPLY_INTENT, entities)

    def close(self, conversation_id: str, outcome: str) -> RasaResult:
        return self.trigger_intent(conversation_id, CLOSE_INTENT, {"kcc_outcome": outcome})
