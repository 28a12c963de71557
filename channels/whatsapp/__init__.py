"""Rasa 3.6 channel for Meta's WhatsApp Business Cloud API (``channels.whatsapp.WhatsAppInput``).

The code lives in :mod:`channels.whatsapp.service`; this package re-exports its names.
"""
from channels.whatsapp.service import (  # noqa: F401
    CHANNEL_NAME,
    CHANNEL_PAYLOADS,
    DB_RETRY_SECONDS,
    DEFAULT_ERROR_TEXT,
    DIRECT_PENDING_ORPHANED,
    HOUSEKEEPING_INTERVAL,
    NO_WINDOW_KINDS,
    REF_KWARG,
    SIGNED_OVERSIZE_CHECK,
    TENANT_SEPARATOR,
    ScaleSettings,
    WhatsAppInput,
    WhatsAppOutput,
    WhatsAppService,
    WhatsAppTurnCollector,
    conversation_id,
    message_metadata,
    short_hash,
    split_conversation_id,
    verify_signature,
)
