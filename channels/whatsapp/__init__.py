"""Rasa 3.6 channel for Meta's WhatsApp Business Cloud API.

``credentials.yml``::

    channels.whatsapp.WhatsAppInput:

Webhook: ``/webhooks/whatsapp/webhook`` (GET verification, POST messages),
health: ``GET /webhooks/whatsapp/`` and ``GET /webhooks/whatsapp/health`` (503 when
the database or the model is not available), Prometheus metrics:
``GET /webhooks/whatsapp/metrics``. Settings come from environment variables
(see :mod:`channels.config`, docs/whatsapp.md and docs/production.md).

Several Rasa instances may share one ``APPCARE_DB_URL`` (PostgreSQL): a sender is
processed only by the instance holding its lease (``whatsapp_sender_leases``); an
instance that finds the lease held elsewhere leaves the sender to the holder, which
reads the sender's open messages again before it lets go. An instance that lets go
of a sender with open messages left (shutdown, a worker that gave up) wakes the
others with PostgreSQL ``NOTIFY``; messages left by a crashed instance are taken over
when its lease expires. So a load balancer may send any webhook to any instance
(HAProxy, round robin: deploy/haproxy.cfg).

Flow of a message: the POST is authenticated (X-Hub-Signature-256), parsed,
persisted in ``whatsapp_inbox`` (wamid unique: duplicates are dropped) and
acknowledged with 200. One worker per citizen then takes that citizen's open
messages in timestamp order: read receipt + typing indicator, Rasa handles the
message with a collecting output channel, the turn's messages are merged and
stored in ``whatsapp_outbox`` together with the inbox state ``replying``, sent,
and only then the message is ``done``. After a restart, open messages are picked
up again: ``pending``/``processing`` ones go to Rasa again (nothing was sent
yet), ``replying`` ones only send what is still unsent.

Personal data (numbers, profile names, texts, wamids - they encode the number)
never appear in logs; a sender is logged as its keyed pseudonym (appcare.pii.conversation_hash).

Modules: :mod:`~channels.whatsapp.routes` (``WhatsAppInput``: the Sanic routes, webhook
body checks), :mod:`~channels.whatsapp.service` (``WhatsAppService``: lifecycle and
receiving), :mod:`~channels.whatsapp.scheduling` (per-sender workers, leases,
maintenance, wake-up), :mod:`~channels.whatsapp.turn` (one Rasa turn),
:mod:`~channels.whatsapp.sending` (sending, confirmation, the 24-hour window),
:mod:`~channels.whatsapp.output` (the output channels), :mod:`~channels.whatsapp.settings`
(``ScaleSettings``), :mod:`~channels.whatsapp.common` (names and helpers they share) and
:mod:`~channels.whatsapp.db_ping` (the pool checkout ping, registered on import).
"""
from __future__ import annotations

from channels.whatsapp import db_ping  # noqa: F401 - registers the pool checkout ping, once
from channels.whatsapp.common import (  # noqa: F401
    CHANNEL_NAME,
    REF_KWARG,
    TENANT_SEPARATOR,
    conversation_id,
    short_hash,
    split_conversation_id,
)
from channels.whatsapp.output import WhatsAppOutput, WhatsAppTurnCollector  # noqa: F401
from channels.whatsapp.routes import DB_RETRY_SECONDS, SIGNED_OVERSIZE_CHECK, WhatsAppInput, verify_signature  # noqa: F401
from channels.whatsapp.scheduling import DIRECT_PENDING_ORPHANED, HOUSEKEEPING_INTERVAL  # noqa: F401
from channels.whatsapp.service import NO_WINDOW_KINDS, WhatsAppService, message_metadata  # noqa: F401
from channels.whatsapp.settings import ScaleSettings  # noqa: F401
from channels.whatsapp.turn import CHANNEL_PAYLOADS  # noqa: F401

__all__ = [
    "CHANNEL_NAME",
    "CHANNEL_PAYLOADS",
    "DB_RETRY_SECONDS",
    "DIRECT_PENDING_ORPHANED",
    "HOUSEKEEPING_INTERVAL",
    "NO_WINDOW_KINDS",
    "REF_KWARG",
    "SIGNED_OVERSIZE_CHECK",
    "TENANT_SEPARATOR",
    "ScaleSettings",
    "WhatsAppInput",
    "WhatsAppOutput",
    "WhatsAppService",
    "WhatsAppTurnCollector",
    "conversation_id",
    "message_metadata",
    "short_hash",
    "split_conversation_id",
    "verify_signature",
]
