"""Rasa event broker for RabbitMQ that publishes no directly identifying data.

Configured in endpoints.prod.yml::

    event_broker:
      type: appcare.plugins.event_broker.PseudonymisingPikaEventBroker
      url: ${RABBITMQ_HOST}
      ...

It is Rasa's Pika event broker (same exchange, queues, persistence and retries);
before an event leaves the process a copy of it is rewritten by
:func:`pseudonymise_event`:

* ``sender_id`` becomes the keyed conversation pseudonym
  (:func:`appcare.pii.conversation_hash`, key ``APPCARE_PSEUDONYM_KEY``); a
  conversation with another municipality's number (``<wa_id>@<number id>``) becomes
  ``<pseudonym>@<number id>``, so one erasure request covers all of a citizen's
  conversations. ``message_id`` (the WhatsApp wamid) is pseudonymised the same way;
* every text (``text``, ``action_text``, ``parse_data.text``, bot ``data``, string
  values anywhere else) is masked with :func:`appcare.pii.mask`, plus the sender's own
  number/id, its WhatsApp profile name, long digit runs and wamids;
* ``metadata`` keeps only :data:`METADATA_KEYS` (channel, municipality, message type,
  times, Rasa's model id ...): profile name, username, wamids are dropped;
* entity values are kept only for the categorical entities in
  :data:`PUBLIC_ENTITIES` (document type, desk, ...); others (street, age, dates,
  staff texts, anything new) become ``"[removed]"``;
* slot text values are kept only for :data:`PUBLIC_SLOTS`; ``session_started_metadata``
  (the first message's metadata: profile name, wamid), ``street``, ``area``, ``age`` and any
  slot not reviewed yet become ``"[removed]"``.

Intent names and confidences, entity names, action and policy names, slot names and
timestamps are unchanged, so statistics can still be computed.

TLS (AMQPS) is switched on with ``RABBITMQ_SSL=true`` (environment) or ``ssl: true``
in the endpoint configuration; ``RABBITMQ_CA_FILE`` / ``ssl_ca_file`` names the CA
bundle that signed the broker's certificate (default: the system's CAs). The server
certificate and host name are always verified. A client certificate is used when
Rasa's ``RABBITMQ_SSL_CLIENT_CERTIFICATE`` and ``RABBITMQ_SSL_CLIENT_KEY`` are set.
An ``amqps://`` URL as host works as in Rasa (TLS settings from the URL's query).
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
from asyncio import AbstractEventLoop
from typing import Any, Dict, Iterable, List, Optional, Text, Union

import aio_pika
from rasa.core.brokers.pika import PikaEventBroker
from rasa.shared.exceptions import RasaException
from rasa.utils.endpoints import EndpointConfig

from appcare import pii
from appcare import secrets as appcare_secrets

logger = logging.getLogger(__name__)

REMOVED = "[removed]"
# Header on every published message: the consumer can tell the event was rewritten.
HEADER = "appcare-pseudonymised"
HEADER_VALUE = "v1"

# The same lists as jobs/retention.py (KEEP_METADATA, KEEP_SLOTS): the warehouse gets
# what survives retention in the tracker store, plus masked texts and entity categories.
# Metadata kept (scalar values only); everything else is dropped. Not kept, among
# others: profile_name, username, wamid, context_wamid, reacted_wamid, emoji.
METADATA_KEYS = frozenset({
    "channel", "municipality", "phone_number_id", "message_type", "interactive_type", "sent_at",
    "received_at", "delay_seconds", "utter_action", "model_id", "assistant_id", "error_code",
    "has_caption", "forwarded",
})
# Entities whose values are categories, not facts about a person (street, area, age,
# date_expr, the desk's kcc_text/kcc_ref and any new entity are withheld).
PUBLIC_ENTITIES = frozenset({
    "document_type", "relation", "desk", "ceremony_type", "language", "reply_language",
    "kcc_outcome",
})
# Slots whose text values are categories or internal state (reviewed against
# domain/*.yml; street, area, age, last_day and new slots are withheld). Numbers and
# booleans of any slot are kept.
PUBLIC_SLOTS = frozenset({
    "municipality", "topic", "pending_question", "failed_attempts", "privacy_notice_shown",
    "feedback_asked", "handoff_active", "document_type", "relation", "desk", "ceremony_type",
    "requested_slot", "language", "reply_language", "other_language_notice", "handoff_reason",
})
SESSION_METADATA_SLOT = "session_started_metadata"
_ENTITY_KEYS = frozenset({
    "entity", "start", "end", "confidence_entity", "extractor", "role", "group", "processors",
    "confidence_role", "confidence_group",
})
_ID_FIELDS = frozenset({"sender_id", "message_id"})
_TEXT_FIELDS = frozenset({"text", "action_text"})
_LONG_DIGITS = re.compile(r"(?<!\d)\d{10,15}(?!\d)")
_WAMID = re.compile(r"\bwamid\.[A-Za-z0-9_=+/-]+")
_NUMBER_ID = re.compile(r"^\d{1,20}$")


# ------------------------------------------------------------------ transformation
def pseudonym(identifier: Optional[str]) -> Optional[str]:
    """Keyed pseudonym of a sender id or message id.

    ``<wa_id>@<phone number id>`` keeps the business number id (the municipality's
    line, not personal) so the pseudonym of the citizen's key is the same for all of
    their conversations: ``conversation_hash(<wa_id>)@<number id>``.
    """
    if not identifier:
        return identifier
    identifier = str(identifier)
    key, sep, number_id = identifier.rpartition("@")
    if sep and key and _NUMBER_ID.match(number_id):
        return f"{pii.conversation_hash(key)}@{number_id}"
    return pii.conversation_hash(identifier)


def _sender_key(sender_id: Optional[str]) -> str:
    key, sep, number_id = str(sender_id or "").rpartition("@")
    return key if sep and key and _NUMBER_ID.match(number_id) else str(sender_id or "")


class _Masker:
    """Masks the texts of one event (knows the sender's own identifiers)."""

    def __init__(self, event: Dict[str, Any]) -> None:
        self.literals: List[tuple] = []
        key = _sender_key(event.get("sender_id"))
        if len(key) >= 6:
            self.literals.append((re.compile(re.escape(key)), pii.PLACEHOLDERS["phone"] if key.isdigit() else "[id]"))
        for source in (event.get("metadata"), (event.get("parse_data") or {}).get("metadata")
                       if isinstance(event.get("parse_data"), dict) else None,
                       event.get("value") if event.get("event") == "slot" else None):
            if not isinstance(source, dict):
                continue
            for field in ("profile_name", "username"):
                name = source.get(field)
                if isinstance(name, str) and len(name.strip()) >= 2:
                    pattern = re.compile(r"(?<!\w)" + re.escape(name.strip()) + r"(?!\w)", re.IGNORECASE)
                    self.literals.append((pattern, pii.PLACEHOLDERS["name"]))

    def text(self, value: str) -> str:
        out = value
        for pattern, placeholder in self.literals:
            out = pattern.sub(placeholder, out)
        out = _WAMID.sub("[wamid]", out)
        out = pii.mask(out)
        return _LONG_DIGITS.sub(pii.PLACEHOLDERS["phone"], out)

    def deep(self, value: Any) -> Any:
        """Masks every string in a nested value; numbers, booleans and None stay."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.field(str(k), v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.deep(v) for v in value]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        return self.text(str(value))

    def field(self, key: str, value: Any) -> Any:
        if key in _ID_FIELDS:
            return pseudonym(value) if value else value
        if key == "metadata":
            return _metadata(value)
        if key == "entities":
            return self.entities(value)
        return self.deep(value)

    def entities(self, value: Any) -> Any:
        if not isinstance(value, list):
            return self.deep(value)
        out = []
        for entity in value:
            if not isinstance(entity, dict):
                out.append(self.deep(entity))
                continue
            kept = {k: self.deep(v) for k, v in entity.items() if k in _ENTITY_KEYS}
            if "value" in entity:
                kept["value"] = (self.deep(entity["value"]) if entity.get("entity") in PUBLIC_ENTITIES
                                 else REMOVED)
            out.append(kept)
        return out


def _metadata(value: Any) -> Dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    return {
        k: v for k, v in value.items()
        if k in METADATA_KEYS and (v is None or isinstance(v, (str, bool, int, float)))
    }


def pseudonymise_event(event: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of a serialised Rasa event (as published by the tracker store, with
    ``sender_id``) without directly identifying data; see the module docstring."""
    masker = _Masker(event)
    out: Dict[str, Any] = {}
    for key, value in event.items():
        if key == "value" and event.get("event") == "slot":
            name = event.get("name")
            if value is None or (name != SESSION_METADATA_SLOT and isinstance(value, (bool, int, float))):
                out[key] = value
            elif name in PUBLIC_SLOTS and isinstance(value, str):
                out[key] = masker.text(value)
            else:
                out[key] = REMOVED
        elif key in ("event", "timestamp", "name", "policy", "confidence", "input_channel"):
            out[key] = value if not isinstance(value, (dict, list)) else masker.deep(value)
        else:
            out[key] = masker.field(key, value)
    return out


# ---------------------------------------------------------------------------- TLS
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _flag(value: Union[str, bool, None], name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise RasaException(f"{name} must be true or false, not {value!r}.")


def tls_context(ca_file: Optional[str] = None) -> ssl.SSLContext:
    """Client TLS context: verifies the broker's certificate and host name against
    ``ca_file`` (or the system CAs); adds Rasa's client certificate variables."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    cert = os.environ.get("RABBITMQ_SSL_CLIENT_CERTIFICATE")
    key = os.environ.get("RABBITMQ_SSL_CLIENT_KEY")
    if cert and key:
        context.load_cert_chain(cert, key)
    return context


# ------------------------------------------------------------------------- broker
class PseudonymisingPikaEventBroker(PikaEventBroker):
    """Rasa's :class:`PikaEventBroker` that publishes :func:`pseudonymise_event`
    copies, optionally over TLS."""

    def __init__(
        self,
        host: Text,
        username: Text,
        password: Text,
        port: Union[int, Text] = 5672,
        queues: Union[List[Text], Text, None] = None,
        ssl: Union[bool, Text, None] = None,
        ssl_ca_file: Optional[Text] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(host, username, password, port=port, queues=queues, **kwargs)
        if ssl is None or (isinstance(ssl, str) and not ssl.strip()):
            ssl = os.environ.get("RABBITMQ_SSL", "")
        self.tls = _flag(ssl, "RABBITMQ_SSL (event broker `ssl`)")
        self.ssl_ca_file = (ssl_ca_file or os.environ.get("RABBITMQ_CA_FILE") or "").strip() or None
        if self.ssl_ca_file and not self.tls:
            logger.warning("event broker: RABBITMQ_CA_FILE is set but TLS is off (RABBITMQ_SSL=false)")
        # Fails at start-up in production when APPCARE_PSEUDONYM_KEY is missing or weak.
        appcare_secrets.pseudonym_key()
        if (not self.tls and not str(self.host).startswith("amqps://") and appcare_secrets.production()
                and str(self.host) not in ("localhost", "127.0.0.1", "::1")):
            logger.warning("event broker: the RabbitMQ connection is not encrypted; set RABBITMQ_SSL=true "
                           "unless the broker is on a private network (docs/production.md)")

    @classmethod
    async def from_endpoint_config(
        cls,
        broker_config: Optional[EndpointConfig],
        event_loop: Optional[AbstractEventLoop] = None,
    ) -> Optional["PseudonymisingPikaEventBroker"]:
        """Creates and connects the broker (``cafile:`` in the config is ``ssl_ca_file``)."""
        if broker_config is None:
            return None
        kwargs = dict(broker_config.kwargs)
        if broker_config.cafile and not kwargs.get("ssl_ca_file"):
            kwargs["ssl_ca_file"] = broker_config.cafile
        broker = cls(broker_config.url, **kwargs, event_loop=event_loop)
        await broker.connect()
        return broker

    async def _connect(self) -> aio_pika.abc.AbstractRobustConnection:
        if not self.tls:
            return await super()._connect()
        context = tls_context(self.ssl_ca_file)
        url = self._configure_url()
        logger.info("Connecting to RabbitMQ over TLS ...")
        last_exception: Optional[Exception] = None
        for _ in range(self._connection_attempts):
            try:
                return await aio_pika.connect_robust(
                    url=url, host=self.host, port=self.port, login=self.username, password=self.password,
                    loop=self._loop, ssl=True, ssl_context=context,
                )
            except Exception as exc:  # noqa: BLE001 - RabbitMQ may still be starting
                last_exception = exc
                logger.debug("TLS connection to RabbitMQ failed (%s), trying again", type(exc).__name__)
                await asyncio.sleep(self._retry_delay_in_seconds)
        assert last_exception is not None
        logger.error("TLS connection to RabbitMQ failed (%s)", type(last_exception).__name__)
        raise last_exception

    def publish(self, event: Dict[Text, Any], headers: Optional[Dict[Text, Text]] = None) -> None:
        """Publishes a pseudonymised copy of ``event``; never the original."""
        try:
            safe = pseudonymise_event(event)
        except Exception as exc:  # noqa: BLE001 - better lose one event than publish it raw
            logger.error("event broker: event not published, pseudonymisation failed (%s)", type(exc).__name__)
            return
        super().publish(safe, {**(headers or {}), HEADER: HEADER_VALUE})

    def _publish_unpublished_messages(self, *_: Any, **__: Any) -> None:
        # Kept messages were pseudonymised before the first attempt: publish them as
        # they are (pseudonymising twice would change the sender's pseudonym).
        while self._unpublished_events:
            PikaEventBroker.publish(self, self._unpublished_events.popleft(), {HEADER: HEADER_VALUE})


def personal_slots(domain_slots: Iterable[str]) -> List[str]:
    """Slots of a domain whose values are withheld (for reviews and tests)."""
    return sorted(name for name in domain_slots if name not in PUBLIC_SLOTS)
