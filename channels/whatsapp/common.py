"""Names and helpers the modules of :mod:`channels.whatsapp` share: the channel's
name, a conversation's Rasa sender id, pseudonyms and content-free error
descriptions for the log, and what counts as an outage of our own."""
from __future__ import annotations

import asyncio
import logging
import traceback
from typing import Optional

from appcare.pii import conversation_hash

# One logger for the whole package, with the name it had as one module.
logger = logging.getLogger("channels.whatsapp")

CHANNEL_NAME = "whatsapp"
REF_KWARG = "whatsapp_ref"  # utter_message(..., whatsapp_ref="kcc:42") -> outbox.ref

TENANT_SEPARATOR = "@"


def conversation_id(wa_id: str, phone_number_id: Optional[str], primary: Optional[str]) -> str:
    """Rasa sender id of a citizen's conversation with one business number.

    Messages to the default number (``WHATSAPP_PHONE_NUMBER_ID``) use the bare
    wa_id. With several municipalities on one installation, a conversation with
    another number is ``<wa_id>@<phone_number_id>``: a citizen who writes to two
    gemeenten has two separate conversations (slots such as ``municipality`` never
    leak from one to the other)."""
    if phone_number_id and primary and phone_number_id != primary:
        return f"{wa_id}{TENANT_SEPARATOR}{phone_number_id}"
    return wa_id


def split_conversation_id(sender_id: str) -> "tuple[str, Optional[str]]":
    """(wa_id, phone_number_id or None) of a Rasa sender id (see :func:`conversation_id`)."""
    wa_id, sep, pnid = str(sender_id).partition(TENANT_SEPARATOR)
    return wa_id, (pnid if sep and pnid else None)


def short_hash(value: Optional[str]) -> str:
    return conversation_hash(value)[:8]  # keyed pseudonym (appcare.pii.pseudonym)


def _where(exc: BaseException) -> str:
    """Content-free location of an exception: ``Type at file:line``."""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        return f"{type(exc).__name__} at {last.filename.rsplit('/', 1)[-1]}:{last.lineno}"
    return type(exc).__name__


def _is_outage(exc: BaseException) -> bool:
    """A failure of our own (database unreachable, locked, timing out): the webhook is
    answered 503 and Meta retries. Anything else that a body causes would fail again
    on every redelivery, for days: that item is skipped (logged) and acknowledged."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.InternalError,
                        sa_exc.DisconnectionError, sa_exc.TimeoutError, asyncio.TimeoutError, OSError)):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and bool(exc.connection_invalidated)
