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
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, replace as dc_replace
from functools import partial
import traceback
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Text

from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage

from channels.rest_input import silence_expected_async
from appcare import db as appcare_db
from appcare import logging_setup
from appcare import metrics as appcare_metrics
from appcare import secrets
from appcare.pii import conversation_hash
from channels import formatting
from channels.config import WhatsAppConfig
from channels.formatting import BotMessage
from channels.graph_api import REENGAGEMENT_CODE, GraphAPIClient, GraphAPIError
from channels.inbox import (
    IN_DOUBT,
    WINDOW_MARGIN_SECONDS,
    WINDOW_SECONDS,
    AsyncInbox,
    Claim,
    InboxItem,
    LISTENER_PREFIX,
    InboxListener,
    InboxStore,
    NewInbound,
    OutboxItem,
    ReplyRows,
    callback_data,
    listener_name,
)
from channels import turn_recovery
from channels.payload_guard import guard_payload
from channels.webhook_parser import NON_TEXT_PAYLOAD, THANKS_PAYLOAD, InboundMessage, WebhookPayloadError, parse_webhook

logger = logging.getLogger("channels.whatsapp")  # the package's one logger (its name predates the package)

CHANNEL_NAME = "whatsapp"
REF_KWARG = "whatsapp_ref"  # utter_message(..., whatsapp_ref="kcc:42") -> outbox.ref
NO_WINDOW_KINDS = {"reaction", "system"}  # do not (re)open the 24h window
HOUSEKEEPING_INTERVAL = 3600.0
DIRECT_PENDING_ORPHANED = 120.0  # a direct send still unsent after this long was cut off by a crash
DB_RETRY_SECONDS = 5.0  # inbox database down at start-up: try again this often
_MAX_CHALLENGE = 512
# An over-size webhook body is still read this far (hashed, never kept) to tell
# whether Meta signed it: then the limit is too low for real traffic (issue 16).
SIGNED_OVERSIZE_CHECK = 8 * 1024 * 1024
_MAX_INT_DIGITS = 4000  # a longer JSON integer is no field we use (Python refuses > 4300 digits)
DEFAULT_ERROR_TEXT = (
    "Sorry, door een storing kon ik je bericht nu niet verwerken. "
    "Probeer het over een paar minuten opnieuw."
)


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


@dataclass
class ScaleSettings:
    """Settings for running several instances and riding out outages.

    credentials.yml keys (under the channel) or environment variables:
    ``lease_seconds`` / ``WHATSAPP_LEASE_SECONDS`` (10): a sender's lease; a crashed
    instance's senders are taken over after this long.
    ``sweep_interval`` / ``WHATSAPP_SWEEP_INTERVAL`` (3): how often leases are
    renewed and orphaned messages looked for.
    ``stale_after`` / ``WHATSAPP_STALE_AFTER`` (10): a message untouched this long
    without a live lease is orphaned.
    ``bot_retry_seconds`` / ``WHATSAPP_BOT_RETRY_SECONDS`` (120): how long a message
    is retried while Rasa fails (tracker store, lock store down) before the citizen
    gets ``error_text`` / ``WHATSAPP_ERROR_TEXT``.
    ``confirm_seconds`` / ``WHATSAPP_CONFIRM_SECONDS`` (30): how long a send whose
    result is unknown (timeout after sending, 5xx, crash in flight) waits for Meta's
    status webhook before it is resent, once.
    ``APPCARE_INSTANCE_ID``: stable name of this instance (e.g. ``rasa-1``); a
    restarted instance then frees its own leases at once.
    ``max_turns`` / ``WHATSAPP_MAX_TURNS`` (8): Rasa turns this instance runs at the
    same time; more citizens wait their turn. Rasa's NLU and policies run on the event
    loop, so more turns at once add no throughput on a busy CPU, but every turn and every
    webhook acknowledgement then waits behind all of them. A turn waiting for a slow
    action (a hanging roadworks feed) holds its place, so keep it well above the number
    of such turns at once.

    Channel database (environment only, shared with :mod:`appcare.db`):
    ``WHATSAPP_DB_THREADS`` (4): threads that run the workers' database calls (the
    webhook has its own thread); the PostgreSQL pool keeps that many connections
    plus headroom (:func:`appcare.db.pool_size`).
    ``APPCARE_DB_CONNECT_TIMEOUT`` (5 s) and ``APPCARE_DB_STATEMENT_TIMEOUT_MS``
    (15000, 0 = off): on every PostgreSQL connection appcare opens.
    Wake-up: on PostgreSQL each instance listens on ``appcare_inbox``; an instance
    that lets go of a sender with open messages (shutdown, a worker that gave up)
    notifies, and the others take the sender over at once instead of after
    ``stale_after``. A worker that finds a sender's lease held by another instance
    leaves at once (the holder reads the open messages again before it lets go)."""

    lease_seconds: float = 10.0
    sweep_interval: float = 3.0
    stale_after: float = 10.0
    bot_retry_seconds: float = 120.0
    confirm_seconds: float = 30.0
    error_text: str = DEFAULT_ERROR_TEXT
    instance_id: str = ""
    db_threads: int = 0  # 0: WHATSAPP_DB_THREADS (appcare.db.db_threads)
    max_turns: int = 8

    def __post_init__(self) -> None:
        if not self.instance_id:
            self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        if self.db_threads <= 0:
            self.db_threads = appcare_db.db_threads()

    @classmethod
    def load(cls, credentials: Optional[Dict[str, Any]] = None) -> "ScaleSettings":
        creds = dict(credentials or {})
        values: Dict[str, Any] = {}
        for key, default in (("lease_seconds", 10.0), ("sweep_interval", 3.0), ("stale_after", 10.0),
                             ("bot_retry_seconds", 120.0), ("confirm_seconds", 30.0)):
            raw = creds.get(key)
            try:
                values[key] = float(raw) if raw is not None else _env_float(f"WHATSAPP_{key.upper()}", default)
            except (TypeError, ValueError):
                values[key] = default
        values["error_text"] = str(creds.get("error_text") or os.environ.get("WHATSAPP_ERROR_TEXT") or DEFAULT_ERROR_TEXT)
        values["instance_id"] = (os.environ.get("APPCARE_INSTANCE_ID") or "")[:120]
        try:
            raw_turns = creds.get("max_turns")
            values["max_turns"] = max(1, int(float(raw_turns) if raw_turns is not None
                                             else _env_float("WHATSAPP_MAX_TURNS", 8.0)))
        except (TypeError, ValueError):
            values["max_turns"] = 8
        settings = cls(**values)
        settings.lease_seconds = max(2.0, settings.lease_seconds)
        settings.sweep_interval = max(0.2, min(settings.sweep_interval, settings.lease_seconds / 3))
        settings.confirm_seconds = max(1.0, settings.confirm_seconds)
        return settings


def _ping_pooled_connections() -> None:
    """Pessimistic disconnect handling for every SQLAlchemy pool in this process
    (also Rasa's SQL tracker store, which has no ``pool_pre_ping``): a connection
    that died in a database outage is replaced at checkout instead of failing the
    next turn - Rasa would otherwise answer that turn from an empty in-memory
    tracker (its FailSafeTrackerStore) and not store it."""
    from sqlalchemy import event, exc
    from sqlalchemy.pool import Pool

    if getattr(Pool, "_appcare_ping", False):
        return

    @event.listens_for(Pool, "checkout")
    def _ping(dbapi_connection: Any, _record: Any, proxy: Any) -> None:
        module = type(dbapi_connection).__module__ or ""
        if not module.startswith("psycopg2"):
            return
        if getattr(getattr(proxy, "_pool", None), "_pre_ping", False):
            return  # the pool pings (pool_pre_ping) already: one round trip per checkout is enough
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
        except Exception as error:  # noqa: BLE001
            raise exc.DisconnectionError() from error

    Pool._appcare_ping = True  # type: ignore[attr-defined]


_ping_pooled_connections()


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).isoformat(timespec="milliseconds")


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


# Payloads our own parser makes (a 👍 reaction, a voice message): always accepted.
CHANNEL_PAYLOADS = (THANKS_PAYLOAD, NON_TEXT_PAYLOAD)


def message_metadata(message: InboundMessage, received_ts: float, municipality: Optional[str]) -> Dict[str, Any]:
    """Metadata handed to Rasa with a message (stored in the tracker)."""
    sent_ts = float(message.timestamp) if message.timestamp else received_ts
    metadata: Dict[str, Any] = {
        "channel": CHANNEL_NAME,
        "phone_number_id": message.phone_number_id,
        "wamid": message.wamid,
        "profile_name": message.profile_name,
        "sent_at": _iso(sent_ts),
        "received_at": _iso(received_ts),
        "delay_seconds": round(max(0.0, received_ts - sent_ts), 3),
    }
    if message.message_type != "text":
        metadata["message_type"] = message.message_type
    for key, value in message.details.items():
        metadata.setdefault(key, value)
    if municipality:
        metadata["municipality"] = municipality
    if message.username:
        metadata["username"] = message.username
    return metadata


class _BodyDigest:
    """HMAC-SHA256 and size of a request body as it streams in."""

    def __init__(self, secret: str) -> None:
        self.mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.mac.update(chunk)
        self.size += len(chunk)

    def matches(self, header: Optional[str]) -> bool:
        if not header or not header.startswith("sha256="):
            return False
        return hmac.compare_digest(self.mac.hexdigest().encode("ascii"),
                                   header[len("sha256="):].strip().lower().encode("utf-8"))


async def _read_limited(request: Request, limit: int, digest: Optional[_BodyDigest] = None) -> Optional[bytes]:
    """Reads a streamed request body; None as soon as it exceeds ``limit`` bytes
    (a huge body is never buffered completely). ``digest`` sees every byte read."""
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    if request.stream is None:  # body already read (non-streaming use)
        body = request.body or b""
        if digest is not None:
            digest.update(body)
        return body if len(body) <= limit else None
    chunks: List[bytes] = []
    size = 0
    async for chunk in request.stream:
        if digest is not None:
            digest.update(chunk)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _oversize_signed(request: Request, digest: _BodyDigest, cap: int) -> Optional[bool]:
    """Whether a body refused as too large carries Meta's signature: the rest of it is
    read into ``digest`` (never kept). False without a signature header; None when
    it is larger than ``cap`` (not checked)."""
    header = request.headers.get("x-hub-signature-256")
    if not header:
        return False
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    if declared > cap:
        return None
    if request.stream is not None:
        async for chunk in request.stream:
            digest.update(chunk)
            if digest.size > cap:
                return None
    return digest.matches(header)


def _json_int(text: str) -> Optional[int]:
    return int(text) if len(text) <= _MAX_INT_DIGITS else None


def _is_outage(exc: BaseException) -> bool:
    """A failure of our own (database unreachable, locked, timing out): the webhook is
    answered 503 and Meta retries. Anything else that a body causes would fail again
    on every redelivery, for days: that item is skipped (logged) and acknowledged."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.InternalError,
                        sa_exc.DisconnectionError, sa_exc.TimeoutError, asyncio.TimeoutError, OSError)):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and bool(exc.connection_invalidated)


def verify_signature(app_secret: str, body: bytes, header: Optional[str]) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), header[len("sha256=") :].strip().lower().encode("utf-8"))


class WhatsAppTurnCollector(OutputChannel):
    """Collects the bot messages of one turn; they are merged and sent afterwards.
    Its name is ``whatsapp`` so channel-specific responses in the domain apply."""

    def __init__(self) -> None:
        self.messages: List[BotMessage] = []

    @classmethod
    def name(cls) -> Text:
        return CHANNEL_NAME

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        self.messages.append(BotMessage("text", text=text or "", ref=kwargs.get(REF_KWARG)))

    async def send_text_with_buttons(
        self, recipient_id: Text, text: Text, buttons: List[Dict[Text, Any]], **kwargs: Any
    ) -> None:
        self.messages.append(BotMessage("buttons", text=text or "", buttons=list(buttons or []), ref=kwargs.get(REF_KWARG)))

    async def send_quick_replies(
        self, recipient_id: Text, text: Text, quick_replies: List[Dict[Text, Any]], **kwargs: Any
    ) -> None:
        await self.send_text_with_buttons(recipient_id, text, quick_replies, **kwargs)

    async def send_image_url(self, recipient_id: Text, image: Text, **kwargs: Any) -> None:
        self.messages.append(BotMessage("image", url=image, ref=kwargs.get(REF_KWARG)))

    async def send_attachment(self, recipient_id: Text, attachment: Any, **kwargs: Any) -> None:
        self.messages.append(BotMessage("attachment", attachment=attachment, ref=kwargs.get(REF_KWARG)))

    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any], **kwargs: Any) -> None:
        self.messages.append(BotMessage("custom", custom=json_message, ref=kwargs.get(REF_KWARG)))


class WhatsAppOutput(OutputChannel):
    """Sends straight away (used by Rasa's HTTP API with ``output_channel=latest``,
    e.g. KCC staff replies, and by reminders). Every message gets an outbox
    record (status sent/failed/deferred + Meta's error code); send failures are
    logged and recorded, never raised."""

    def __init__(self, service: "WhatsAppService") -> None:
        self.service = service

    @classmethod
    def name(cls) -> Text:
        return CHANNEL_NAME

    async def _send(self, recipient_id: Text, message: BotMessage) -> List[int]:
        wa_id, phone_number_id = split_conversation_id(str(recipient_id))
        payloads = formatting.message_payloads(wa_id, message)
        return await self.service.deliver(wa_id, payloads, ref=message.ref, phone_number_id=phone_number_id)

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        await self._send(recipient_id, BotMessage("text", text=text or "", ref=kwargs.get(REF_KWARG)))

    async def send_text_with_buttons(
        self, recipient_id: Text, text: Text, buttons: List[Dict[Text, Any]], **kwargs: Any
    ) -> None:
        await self._send(
            recipient_id, BotMessage("buttons", text=text or "", buttons=list(buttons or []), ref=kwargs.get(REF_KWARG))
        )

    async def send_quick_replies(
        self, recipient_id: Text, text: Text, quick_replies: List[Dict[Text, Any]], **kwargs: Any
    ) -> None:
        await self.send_text_with_buttons(recipient_id, text, quick_replies, **kwargs)

    async def send_image_url(self, recipient_id: Text, image: Text, **kwargs: Any) -> None:
        await self._send(recipient_id, BotMessage("image", url=image, ref=kwargs.get(REF_KWARG)))

    async def send_attachment(self, recipient_id: Text, attachment: Any, **kwargs: Any) -> None:
        await self._send(recipient_id, BotMessage("attachment", attachment=attachment, ref=kwargs.get(REF_KWARG)))

    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any], **kwargs: Any) -> None:
        await self._send(recipient_id, BotMessage("custom", custom=json_message, ref=kwargs.get(REF_KWARG)))


class WhatsAppService:
    """Runtime of a configured channel: store, Graph client and per-sender workers."""

    def __init__(self, config: WhatsAppConfig, scale: Optional[ScaleSettings] = None) -> None:
        self.config = config
        self.scale = scale or ScaleSettings.load()
        self.store = AsyncInbox(InboxStore(config.db_url), threads=self.scale.db_threads)
        self.graph = GraphAPIClient(
            config.access_token or "",
            config.graph_url,
            config.api_version,
            timeout=config.graph_timeout,
            max_attempts=config.max_attempts,
            backoff_base=config.backoff_base,
            backoff_max=config.backoff_max,
            send_interval=config.send_interval,
        )
        self.app: Any = None
        self.on_new_message: Optional[Callable[[UserMessage], Awaitable[Any]]] = None
        self._workers: Dict[str, asyncio.Task] = {}
        self._dirty: Dict[str, bool] = {}
        self._stopping = False
        self._housekeeping: Optional[asyncio.Task] = None
        self._maintenance: Optional[asyncio.Task] = None
        self._db_ok = True
        self._started_at = time.time()
        self._resolving: Dict[int, asyncio.Task] = {}
        self._turns = asyncio.Semaphore(self.scale.max_turns)  # Rasa turns at the same time
        self._listener: Optional[InboxListener] = None
        self._wake: Optional[asyncio.Event] = None
        self._cooldown: Dict[str, float] = {}  # sender -> until (monotonic): this instance gave up on it

    # ------------------------------------------------------------ lifecycle
    async def start(self, app: Any, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        self.app = app
        self.on_new_message = on_new_message
        self._stopping = False
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._housekeeping = loop.create_task(self._housekeeping_loop())
        self._maintenance = loop.create_task(self._maintenance_loop())
        self._started_at = time.time()
        self._start_listener(loop)
        try:
            interrupted = await self.store.fail_interrupted_direct_sends(DIRECT_PENDING_ORPHANED)
            if interrupted:
                logger.warning("WhatsApp: %d direct send(s) interrupted before sending marked failed", interrupted)
            stale = await self.store.drop_leases_of(self.scale.instance_id)
            if stale:
                logger.info("WhatsApp: released %d lease(s) left by the previous run of this instance", stale)
            senders = await self.store.unleased_senders(self.scale.instance_id)
        except Exception as exc:  # noqa: BLE001 - the maintenance loop retries
            logger.error("WhatsApp: start-up recovery postponed, database unavailable (%s)", _where(exc))
            appcare_metrics.WA_ERRORS.labels("startup").inc()
            return
        if senders:
            logger.info("WhatsApp: resuming unfinished messages of %d sender(s)", len(senders))
        for wa_id in senders:
            self.notify(wa_id)

    async def stop(self) -> None:
        """Lets in-flight work finish for ``shutdown_grace`` seconds, then cancels.
        Cancelled messages stay open in the inbox and are resumed on the next start."""
        self._stopping = True
        listener, self._listener = self._listener, None
        if listener is not None:
            # first: from now on the other instances see this one as gone and hand it no sender
            await asyncio.to_thread(listener.stop)
        if self._housekeeping:
            self._housekeeping.cancel()
        if self._maintenance:
            self._maintenance.cancel()
        for task in self._resolving.values():
            task.cancel()
        workers = [t for t in self._workers.values() if not t.done()]
        if workers:
            _, pending = await asyncio.wait(workers, timeout=self.config.shutdown_grace)
            for task in pending:
                task.cancel()
            if pending:
                # each worker releases its lease as it ends and wakes the other instances
                # (PostgreSQL NOTIFY) when its sender still has open messages
                await asyncio.gather(*pending, return_exceptions=True)
                logger.warning("WhatsApp: %d sender worker(s) cancelled at shutdown; their messages are left to "
                               "the other instances or the next start", len(pending))
        await self.graph.close()

    def _start_listener(self, loop: asyncio.AbstractEventLoop) -> None:
        """PostgreSQL: wake the maintenance loop when another instance lets go of a
        sender with open messages (SQLite has one process: nothing to listen for)."""
        engine = self.store.store.engine
        if engine.dialect.name != "postgresql" or self._listener is not None:
            return
        wake = self._wake
        me = listener_name(self.scale.instance_id)

        def on_wake(payload: str) -> None:
            if payload.startswith(LISTENER_PREFIX) and payload != me:
                return  # a sender handed to another instance (finish_and_next)
            if wake is not None and not loop.is_closed():
                loop.call_soon_threadsafe(wake.set)

        self._listener = InboxListener(engine, on_wake, instance=self.scale.instance_id).start()

    async def _housekeeping_loop(self) -> None:
        while not self._stopping:
            try:
                counts = await self.store.purge(self.config.retention_days)
                if any(counts.values()):
                    logger.info("WhatsApp: purged old records %s", counts)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                logger.error("WhatsApp: purge failed (%s)", _where(exc))
                appcare_metrics.WA_ERRORS.labels("housekeeping").inc()
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)

    async def _maintenance_loop(self) -> None:
        """Renews this instance's leases and takes over orphaned messages: those of
        a crashed instance (lease expired) or never picked up (e.g. the database
        was down when they arrived). Says in the log when the database goes away
        and comes back."""
        first = True
        next_sweep = time.monotonic() + self.scale.sweep_interval
        while not self._stopping:
            if await self._woken(next_sweep):
                await self._sweep_now()
                continue
            next_sweep = time.monotonic() + self.scale.sweep_interval
            try:
                if self._workers:
                    await self.store.renew_leases(self.scale.instance_id, self.scale.lease_seconds)
                senders = await self.store.unleased_senders(
                    self.scale.instance_id, 0.0 if first else self.scale.stale_after
                )
                first = False
                if not self._db_ok:
                    self._db_ok = True
                    logger.warning("WhatsApp: database reachable again; resuming open messages")
                    senders = await self.store.unleased_senders(self.scale.instance_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                appcare_metrics.WA_ERRORS.labels("maintenance").inc()
                if self._db_ok:
                    self._db_ok = False
                    logger.error(
                        "WhatsApp: database unavailable (%s); messages wait in the inbox and are answered when it is back",
                        _where(exc),
                    )
                continue
            taken = [wa_id for wa_id in senders if wa_id not in self._workers]
            if taken:
                logger.info("WhatsApp: picking up open messages of %d sender(s) nobody is working on", len(taken))
            for wa_id in taken:
                self.notify(wa_id)
            try:
                await self._resolve_direct_sends()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                appcare_metrics.WA_ERRORS.labels("maintenance").inc()
                logger.error("WhatsApp: checking sends with an unknown result failed (%s)", _where(exc))

    async def _woken(self, until: float) -> bool:
        """Waits until ``until`` (monotonic); True when another instance's NOTIFY
        (via :class:`InboxListener`) came first."""
        wake = self._wake
        timeout = max(0.0, until - time.monotonic())
        if wake is None:
            await asyncio.sleep(timeout)
            return False
        try:
            await asyncio.wait_for(wake.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        wake.clear()
        return True

    async def _sweep_now(self) -> None:
        """Another instance let go of a sender with open messages: take over every
        sender nobody holds, without waiting for ``stale_after``."""
        try:
            senders = await self.store.unleased_senders(self.scale.instance_id, 0.0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the regular sweep retries
            logger.warning("WhatsApp: wake-up sweep failed (%s)", _where(exc))
            return
        now = time.monotonic()
        for wa_id, until in list(self._cooldown.items()):
            if until <= now:
                del self._cooldown[wa_id]
        taken = [w for w in senders if w not in self._workers and w not in self._cooldown]
        if taken:
            logger.info("WhatsApp: woken by another instance; taking over %d sender(s)", len(taken))
        for wa_id in taken:
            self.notify(wa_id)

    async def _resolve_direct_sends(self) -> None:
        """Direct sends (staff replies) whose result is unknown, or left in flight by
        a dead instance, are settled in the background: by Meta's status webhook, or
        resent once after ``confirm_seconds``. Pending ones cut off before their POST
        are marked failed (their caller may retry; nothing reached Meta)."""
        interrupted = await self.store.fail_interrupted_direct_sends(DIRECT_PENDING_ORPHANED)
        if interrupted:
            logger.warning("WhatsApp: %d direct send(s) cut off before sending marked failed", interrupted)
        # Longer than any live POST including its retries: a row ``sending`` for longer
        # belongs to a dead instance.
        graph = self.graph
        in_flight_limit = graph.max_attempts * graph.timeout + (graph.max_attempts - 1) * graph.backoff_max + 5.0
        rows = await self.store.in_doubt_direct_sends(time.time() - in_flight_limit)
        for row in rows:
            task = self._resolving.get(row.id)
            if task is None or task.done():
                self._resolving[row.id] = asyncio.get_running_loop().create_task(self._resolve_in_doubt(row))
        for outbox_id in [i for i, t in self._resolving.items() if t.done()]:
            self._resolving.pop(outbox_id, None)

    # ------------------------------------------------------------- receiving
    async def accept(self, messages: List[InboundMessage], statuses: List[Any], received_ts: float) -> Dict[str, int]:
        allowed = set(self.config.phone_number_ids)
        items: List[NewInbound] = []
        for message in messages:
            if message.phone_number_id not in allowed:
                logger.warning("WhatsApp: message for an unknown business number ignored")
                continue
            try:
                message = await self._with_conversation_key(message)
                metadata = message_metadata(message, received_ts, self.config.tenants.get(message.phone_number_id))
            except Exception as exc:  # noqa: BLE001
                if _is_outage(exc):
                    raise
                self._skip_unstorable("message", exc)
                continue
            items.append(
                NewInbound(
                    wamid=message.wamid,
                    phone_number_id=message.phone_number_id,
                    wa_id=message.wa_id,
                    message_type=message.message_type,
                    text=message.text,
                    metadata=metadata,
                    sort_ts=float(message.timestamp or received_ts),
                    answerable=message.answerable,
                    opens_window=message.message_type not in NO_WINDOW_KINDS,
                )
            )
        record = partial(self.store.record_inbound, received_by=self.scale.instance_id)
        new_flags = await self._store_each(record, "message", items, received_ts)
        await self._store_each(self.store.record_statuses, "status", statuses, received_ts)
        counts = {"new": 0, "duplicate": 0, "ignored": 0, "statuses": len(statuses)}
        for item, is_new in zip(items, new_flags):
            if is_new is None:  # could not be stored (logged)
                continue
            sender = conversation_hash(item.wa_id)
            municipality = str(item.metadata.get("municipality") or "")
            if not is_new:
                counts["duplicate"] += 1
                appcare_metrics.WA_MESSAGES.labels(municipality, "duplicate").inc()
                logger.info("WhatsApp: duplicate delivery ignored sender=%s msg=%s", sender, short_hash(item.wamid))
                if item.answerable:
                    # The first delivery may have been stored by an instance that
                    # died before answering it: make sure someone works on it.
                    self.notify(item.wa_id)
            elif not item.answerable:
                counts["ignored"] += 1
                appcare_metrics.WA_MESSAGES.labels(municipality, "ignored").inc()
                logger.info("WhatsApp: %s recorded, not answered sender=%s", item.message_type, sender)
            else:
                counts["new"] += 1
                appcare_metrics.WA_MESSAGES.labels(municipality, "new").inc()
                logger.debug(
                    "WhatsApp: received %s sender=%s msg=%s", item.message_type, sender, short_hash(item.wamid)
                )
                self.notify(item.wa_id)
        if self._stopping and any(item.answerable for item, new in zip(items, new_flags) if new is not None):
            # stored while this instance stops: no worker starts here, another instance takes them
            try:
                await self.store.wake_others()
            except Exception as exc:  # noqa: BLE001 - picked up after stale_after anyway
                logger.warning("WhatsApp: could not wake the other instances (%s)", _where(exc))
        for status in statuses:
            appcare_metrics.WA_STATUSES.labels(str(status.status)[:16]).inc()
            if status.status == "failed":
                logger.warning(
                    "WhatsApp: delivery failed code=%s recipient=%s msg=%s",
                    status.error_code,
                    conversation_hash(status.recipient_id or status.recipient_user_id),
                    short_hash(status.wamid),
                )
        return counts

    async def _store_each(self, store: Callable[..., Awaitable[Any]], what: str, rows: Sequence[Any],
                          received_ts: float) -> List[Any]:
        """Stores ``rows`` in one call (one transaction). When that fails for another
        reason than an outage, row by row: one row the database refuses does not hold
        back the others; it is skipped, since it would fail on every redelivery.
        Returns per row its result (``record_inbound``: new or duplicate), None when
        it was skipped."""
        if not rows:
            return []
        try:
            result = await store(list(rows), received_ts)
            return list(result) if isinstance(result, list) else [result] * len(rows)
        except Exception as exc:  # noqa: BLE001
            if _is_outage(exc):
                raise
            if len(rows) == 1:
                self._skip_unstorable(what, exc)
                return [None]
        results: List[Any] = []
        for row in rows:
            try:
                result = await store([row], received_ts)
                results.append(result[0] if isinstance(result, list) else result)
            except Exception as exc:  # noqa: BLE001
                if _is_outage(exc):
                    raise
                self._skip_unstorable(what, exc)
                results.append(None)
        return results

    @staticmethod
    def _skip_unstorable(what: str, exc: BaseException) -> None:
        appcare_metrics.WA_ERRORS.labels("webhook_item").inc()
        logger.error("WhatsApp: webhook item skipped: %s could not be stored (%s)", what, _where(exc))

    async def _with_conversation_key(self, message: InboundMessage) -> InboundMessage:
        """The message with ``wa_id`` = the citizen's one conversation key (BSUID or
        phone number, see ``InboxStore.conversation_key``); a change of number / user
        id links the new identifiers to the same conversation."""
        phone, user_id = message.phone, message.user_id
        if phone is None and user_id is None:  # built without identifiers (older callers)
            phone = message.wa_id
        if message.change and (message.change.get("new_phone") or message.change.get("new_user_id")):
            key = await self.store.link_identifiers(
                phone, user_id, message.change.get("new_phone"), message.change.get("new_user_id")
            )
            logger.info("WhatsApp: %s linked to the conversation sender=%s", message.change.get("type"),
                        conversation_hash(key))
        else:
            key = await self.store.conversation_key(phone, user_id, message.username)
        return message if key == message.wa_id else dc_replace(message, wa_id=key)

    async def _addressed(self, payload: Dict[str, Any], known: Optional["tuple[str, str]"] = None) -> Dict[str, Any]:
        """A payload addressed to a conversation key: ``to`` the phone number when one
        is known, else ``recipient`` = the BSUID (username-only citizens). ``known``:
        that address, read by the caller in an earlier transaction."""
        key = payload.get("to")
        if not isinstance(key, str) or not key:
            return payload
        field, address = known or await self.store.address_of(key)
        out = dict(payload)
        out.pop("to", None)
        out[field] = address
        return out

    # --------------------------------------------------------------- workers
    def notify(self, wa_id: str) -> None:
        """A sender has open messages: make sure its worker runs."""
        if self._stopping or self.on_new_message is None:
            return
        self._dirty[wa_id] = True
        task = self._workers.get(wa_id)
        if task is None or task.done():
            self._workers[wa_id] = asyncio.get_running_loop().create_task(self._worker(wa_id))

    async def _worker(self, wa_id: str) -> None:
        """Processes a sender's open messages one at a time, in order, while
        holding the sender's lease (only one instance works on a sender).

        Per message: :meth:`InboxStore.claim_next` (lease + next message + processing,
        one transaction), the turn, the reply (:meth:`InboxStore.begin_reply_rows`),
        its sends, and :meth:`InboxStore.finish_and_next` (finished + next message, or
        the lease released when none is left, one transaction). When another instance
        holds the lease, this worker ends at once: the holder reads the open messages
        again before it releases the lease (see ``finish_and_next``)."""
        failures = 0
        me = asyncio.current_task()
        sender_hash = conversation_hash(wa_id)
        owner, ttl = self.scale.instance_id, self.scale.lease_seconds
        holding = False  # the lease may be ours: release it when this worker ends
        had_lease = False  # the last claim gave us the lease
        claim: Optional[Claim] = None
        appcare_metrics.WA_WORKERS.inc()
        try:
            while not self._stopping:
                self._dirty[wa_id] = False
                try:
                    if claim is None:
                        if not self._agent_ready():
                            go_on = await self._wait_for_agent_unless_replying(wa_id)
                            if go_on is None and self._dirty.get(wa_id):
                                continue  # nothing was open, but a message arrived meanwhile
                            if not go_on:
                                return  # shutting down (the message stays open), or nothing open
                        holding = True  # until told otherwise: a claim cut off by shutdown is released below
                        claim = await self.store.claim_next(wa_id, owner, ttl, start=self._agent_ready(),
                                                            deferred_since=self._deferred_since())
                    if claim.reason == "leased":
                        if had_lease:
                            logger.warning("WhatsApp: lease of sender=%s taken over by another instance", sender_hash)
                        holding = had_lease = False
                        return  # the holder takes every open message of this sender
                    if claim.reason == "handed":
                        holding = had_lease = False  # released for the instance that received the message
                        return
                    if claim.reason == "none":
                        holding = had_lease = False  # the lease was released in that transaction
                        claim = None
                        if self._dirty.get(wa_id):
                            continue  # a message arrived meanwhile
                        return  # no await between this check and the removal below
                    holding = had_lease = True
                    item = claim.item
                    assert item is not None
                    if claim.attempts is None and item.status != "replying":
                        # Claimed without starting it: Rasa lost its model meanwhile. Let go
                        # of the sender (an instance with a model may take it), wait, claim again.
                        claim, holding, had_lease = None, False, False
                        await self.store.release_lease(sender_hash, owner, wa_id)
                        if not await self._wait_for_agent():
                            return  # shutting down; the message stays open
                        continue
                    outcome = await self._process(item, claim.attempts, claim.has_deferred)
                    claim = None
                    if outcome is None:
                        continue  # stopping: the message stays open (resumed elsewhere or on the next start)
                    status, error = outcome
                    claim = await self.store.finish_and_next(
                        item.wamid, status, error, wa_id, owner, ttl,
                        start=self._agent_ready(), deferred_since=self._deferred_since(), hand_over=True,
                    )
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    claim = None
                    failures += 1
                    appcare_metrics.WA_ERRORS.labels("worker").inc()
                    logger.error(
                        "WhatsApp: worker error sender=%s (%s), try %d; the message stays in the inbox",
                        sender_hash, _where(exc), failures,
                    )
                    if failures >= 5:
                        # left to another instance (woken below) or to this one's sweep after stale_after
                        self._cooldown[wa_id] = time.monotonic() + self.scale.stale_after
                        return
                    await asyncio.sleep(min(30.0, 0.5 * 2**failures))
        finally:
            appcare_metrics.WA_WORKERS.dec()
            if self._workers.get(wa_id) is me:
                del self._workers[wa_id]
                self._dirty.pop(wa_id, None)
            if holding:
                try:
                    # wakes the other instances (NOTIFY) when open messages are left
                    await asyncio.shield(self.store.release_lease(sender_hash, owner, wa_id))
                except BaseException:  # noqa: BLE001 - expires by itself
                    pass

    def _deferred_since(self) -> float:
        return time.time() - max(7.0, self.config.retention_days) * 86400

    def _agent_ready(self) -> bool:
        """Rasa can take a message now (a model is loaded), or there is no Rasa agent
        to wait for (a custom handler)."""
        ctx = getattr(self.app, "ctx", None)
        if ctx is None or not hasattr(ctx, "agent"):
            return True
        agent = getattr(ctx, "agent", None)
        is_ready = getattr(agent, "is_ready", None)
        return agent is not None and (is_ready is None or bool(is_ready()))

    async def _wait_for_agent_unless_replying(self, wa_id: str) -> Optional[bool]:
        """Before a claim while Rasa has no model: a ``replying`` message (only sends
        what is stored) goes on; anything else waits here, without the sender's lease,
        so an instance with a model can take the sender meanwhile. True: go on; False:
        stopping; None: no open message."""
        item = await self.store.next_open_message(wa_id)
        if item is None:
            return None
        if item.status == "replying":
            return True
        return await self._wait_for_agent()

    async def _wait_for_agent(self) -> bool:
        """Holds processing while Rasa has no model loaded (``app.ctx.agent`` not
        ready; Rasa would silently ignore the message). False when the server
        stops meanwhile: the message stays open for the next start."""
        ctx = getattr(self.app, "ctx", None)
        if ctx is None or not hasattr(ctx, "agent"):
            return not self._stopping  # a custom handler without a Rasa agent
        waited = 0
        while not self._stopping:
            agent = getattr(ctx, "agent", None)
            is_ready = getattr(agent, "is_ready", None)
            if agent is not None and (is_ready is None or is_ready()):
                return True
            if waited % 60 == 0:
                logger.warning("WhatsApp: Rasa has no model loaded yet; holding messages")
            await asyncio.sleep(1.0)
            waited += 1
        return False

    async def _process(self, item: InboxItem, attempts: Optional[int] = None,
                       has_deferred: bool = True) -> Optional["tuple[str, Optional[str]]"]:
        """One message: the turn, its reply stored and sent. Returns how the message
        is to be finished, (status, error), or None when it stays open (the instance
        stops). ``attempts``: the processing count from the claim (None: mark it
        processing here); ``has_deferred``: deferred messages wait for this citizen."""
        sender = conversation_hash(item.wa_id)
        if item.status == "replying":
            logger.info("WhatsApp: resuming a half-sent reply sender=%s", sender)
            if await self._send_reply_rows(item.wamid, item.sort_ts, recipient=item.wa_id):
                return "done", None
            return None
        if attempts is None:
            attempts = await self.store.start_processing(item.wamid)
        sender_id = conversation_id(item.wa_id, item.phone_number_id, self.config.phone_number_id)
        municipality = str(item.metadata.get("municipality") or "") or None
        replayed: Optional[List[Dict[str, Any]]] = None
        if attempts > 1:
            # An earlier attempt was cut off (crash, kill). If Rasa finished that turn,
            # its tracker holds it: send those replies instead of a second turn.
            replayed = await turn_recovery.replies_of_completed_turn(self._agent(), sender_id, item.wamid)
            if replayed is not None:
                logger.warning(
                    "WhatsApp: turn completed by an interrupted attempt; sending its %d stored reply message(s) sender=%s",
                    len(replayed), sender,
                )
        if replayed is None and attempts > self.config.max_processing_attempts:
            return await self._give_up(item, sender_id, municipality, "too_many_attempts", attempts - 1)
        if has_deferred:
            await self._deliver_deferred(item.phone_number_id, item.wa_id)
        await self.graph.mark_as_read(item.phone_number_id, item.wamid, typing_indicator=True)

        text = item.text
        if replayed is None:
            # A button id or payload the bot did not offer (or an EXTERNAL_ intent) goes on as text.
            text = await guard_payload(self._agent(), sender_id, item.text, CHANNEL_NAME,
                                       channel_payloads=CHANNEL_PAYLOADS,
                                       fallback=str(item.metadata.get("button_title") or "") or None)
        started = time.monotonic()
        deadline = started + self.scale.bot_retry_seconds
        error: Optional[str] = None
        tries = 0
        while True:
            collector = WhatsAppTurnCollector()
            message = UserMessage(
                text,
                collector,
                sender_id,
                input_channel=CHANNEL_NAME,
                message_id=item.wamid,
                metadata=item.metadata,
            )
            if replayed is not None:
                for bot_message in replayed:
                    await collector.send_response(sender_id, dict(bot_message))
                break
            try:
                assert self.on_new_message is not None
                async with self._turns:
                    await self.on_new_message(message)
                error = None
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                tries += 1
                appcare_metrics.WA_ERRORS.labels("bot").inc()
                if collector.messages:
                    # Rasa produced its reply but failed afterwards (e.g. saving the
                    # tracker): the citizen gets the reply, the log the cause.
                    error = "bot_error_after_reply"
                    logger.error(
                        "WhatsApp: bot failed after replying sender=%s (%s); reply sent, turn may be missing from the tracker",
                        sender, _where(exc),
                    )
                    break
                if self._stopping:
                    logger.warning("WhatsApp: bot failed during shutdown sender=%s; message stays open", sender)
                    return None
                if time.monotonic() >= deadline:
                    error = "bot_unavailable"
                    logger.error(
                        "WhatsApp: bot kept failing for %.0fs sender=%s (%s); citizen told, KCC ticket opened",
                        time.monotonic() - started, sender, _where(exc),
                    )
                    collector = WhatsAppTurnCollector()
                    collector.messages.append(
                        BotMessage("text", text=await turn_recovery.failure_text_async(self._agent(), municipality))
                    )
                    await turn_recovery.open_failure_ticket(sender_id, item.text, municipality, error)
                    break
                delay = min(10.0, 0.5 * 2 ** min(tries, 5))
                logger.warning(
                    "WhatsApp: bot failed sender=%s (%s); message kept, retry %d in %.1fs",
                    sender, _where(exc), tries, delay,
                )
                await asyncio.sleep(delay)
        if error is None and not collector.messages and not await silence_expected_async(message.sender_id):
            # No reply at all (e.g. the action server is unreachable): never leave the
            # citizen without an answer. Silence is right only during a KCC handoff.
            logger.warning("WhatsApp: bot produced no reply sender=%s; sent the error text", sender)
            collector.messages.append(BotMessage("text", text=self.scale.error_text))
            error = "no_reply"
        bot_seconds = time.monotonic() - started
        appcare_metrics.WA_BOT_SECONDS.observe(bot_seconds)
        appcare_metrics.WA_TURNS.labels(error or "ok").inc()

        payloads = formatting.plan_turn(item.wa_id, collector.messages)
        if payloads:
            kinds = [formatting.describe(p) for p in payloads]
            reply = await self.store.begin_reply_rows(item.wamid, item.phone_number_id, item.wa_id, payloads, kinds)
            if not await self._send_reply_rows(item.wamid, item.sort_ts, received_ts=item.metadata.get("received_at"),
                                               reply=reply):
                return None  # shutting down with a part still unsettled: resumed as ``replying``
        failed = error in ("bot_unavailable",)
        logger.info(
            "WhatsApp: answered sender=%s with %d message(s) in %.2fs%s",
            sender,
            len(payloads),
            time.monotonic() - started,
            f" ({error})" if error else "",
        )
        return ("failed" if failed else "done"), error

    def _agent(self) -> Any:
        ctx = getattr(self.app, "ctx", None)
        return getattr(ctx, "agent", None) if ctx is not None else None

    async def _give_up(self, item: InboxItem, sender_id: str, municipality: Optional[str], why: str,
                       tries: int) -> Optional["tuple[str, Optional[str]]"]:
        """A message that could not be handled after all its attempts (it kept
        crashing the process): never dropped silently. The citizen gets the failure
        text with the phone number, the desk a ticket, the log the reason."""
        sender = conversation_hash(item.wa_id)
        logger.error("WhatsApp: message not handled after %d attempts sender=%s; failure text sent, KCC ticket opened",
                     tries, sender)
        await turn_recovery.open_failure_ticket(sender_id, item.text, municipality, why)
        text = await turn_recovery.failure_text_async(self._agent(), municipality)
        payloads = formatting.plan_turn(item.wa_id, [BotMessage("text", text=text)])
        reply = await self.store.begin_reply_rows(item.wamid, item.phone_number_id, item.wa_id, payloads,
                                                  [formatting.describe(p) for p in payloads])
        if await self._send_reply_rows(item.wamid, item.sort_ts, reply=reply):
            return "failed", why
        return None

    async def _send_reply_rows(
        self, inbound_wamid: str, sent_ts: Optional[float] = None, received_ts: Optional[str] = None,
        reply: Optional[ReplyRows] = None, recipient: Optional[str] = None,
    ) -> bool:
        """Sends a stored reply's rows in order (``reply``: as returned when it was
        stored; else read, with ``recipient``'s address). A row whose result is unknown
        (left in flight by a crash, or a timeout after sending) is settled before the
        next one goes out, so the citizen gets every part once and in order. False when
        the instance stops while a part is still unsettled (the message stays
        ``replying`` and is resumed)."""
        window_open = sent_ts is not None and time.time() - sent_ts < WINDOW_SECONDS - WINDOW_MARGIN_SECONDS - 600
        first = True
        if reply is None:
            reply = await self.store.reply_rows(inbound_wamid, recipient)
        for row in reply.rows:
            if row.status in IN_DOUBT:
                logger.warning(
                    "WhatsApp: resuming a send with unknown result recipient=%s", conversation_hash(row.recipient)
                )
                outcome = await self._resolve_in_doubt(row)
            else:
                outcome = await self._send_row(
                    row.id, row.phone_number_id, row.recipient, row.payload or {}, row.kind, row.ref, window_open,
                    address=reply.address if reply.address and row.payload and row.payload.get("to") == row.recipient
                    else None,
                )
                if outcome == "unknown":
                    fresh = await self.store.get_outgoing(row.id)
                    if fresh is not None and fresh.status in IN_DOUBT:
                        outcome = await self._resolve_in_doubt(fresh)
            if outcome == "unknown" and self._stopping:
                return False
            if outcome == "sent" and first and received_ts:
                first = False
                try:
                    received = dt.datetime.fromisoformat(str(received_ts)).timestamp()
                    appcare_metrics.WA_REPLY_LATENCY.observe(max(0.0, time.time() - received))
                except ValueError:
                    pass
        return True

    async def _deliver_deferred(self, phone_number_id: str, wa_id: str) -> None:
        rows = await self.store.deferred_for(phone_number_id, wa_id, self._deferred_since())
        if rows:
            logger.info("WhatsApp: delivering %d deferred message(s) recipient=%s", len(rows), conversation_hash(wa_id))
        for row in rows:
            await self._send_row(row.id, row.phone_number_id, row.recipient, row.payload or {}, row.kind, row.ref)

    # --------------------------------------------------------------- sending
    async def deliver(
        self,
        recipient: str,
        payloads: List[Dict[str, Any]],
        ref: Optional[str] = None,
        phone_number_id: Optional[str] = None,
    ) -> List[int]:
        """Direct sends (outside a turn): record, then send each message. Sent
        from ``phone_number_id`` (the conversation's business number), else from
        the number the citizen wrote to last."""
        if not payloads:
            return []
        phone_number_id = (
            phone_number_id or await self.store.latest_phone_number_id(recipient) or self.config.phone_number_id
        )
        kinds = [formatting.describe(p) for p in payloads]
        ids = await self.store.add_outgoing(phone_number_id, recipient, payloads, kinds, ref)
        for outbox_id, payload, kind in zip(ids, payloads, kinds):
            await self._send_row(outbox_id, phone_number_id, recipient, payload, kind, ref)
        return ids

    async def _send_row(
        self,
        outbox_id: int,
        phone_number_id: str,
        recipient: str,
        payload: Dict[str, Any],
        kind: str,
        ref: Optional[str],
        window_open: bool = False,
        from_status: Sequence[str] = ("pending", "deferred"),
        address: Optional["tuple[str, str]"] = None,
    ) -> str:
        """Sends one outbox row; returns ``sent``, ``failed``, ``deferred``,
        ``unknown`` (may have reached Meta: see :meth:`_resolve_in_doubt`) or
        ``skipped`` (another worker has the row). ``window_open``: the caller knows
        the citizen wrote less than 24h ago (a reply to a fresh message). ``address``:
        the recipient's address when the caller read it already (see ``_addressed``)."""
        if kind != "template" and not window_open and not await self.store.in_window(phone_number_id, recipient):
            return await self._outside_window(outbox_id, phone_number_id, recipient, ref)
        # Wait for the per-citizen pace *before* the row is marked in flight: a crash
        # while waiting must not look like a send Meta may have received.
        await self._wait_for_pace(recipient)
        if not await self.store.mark_sending(outbox_id, from_status):
            return "skipped"
        # Meta echoes this in every status webhook of the message: after a crash the
        # row is found again even when the HTTP answer with the wamid was lost.
        tagged = dict(await self._addressed(payload, address), biz_opaque_callback_data=callback_data(outbox_id))
        try:
            wamid = await self.graph.send_message(phone_number_id, tagged)
        except GraphAPIError as error:
            if error.in_doubt:
                await self.store.mark_unknown(outbox_id, error.short)
                appcare_metrics.WA_SEND_FAILURES.labels("unknown").inc()
                logger.warning(
                    "WhatsApp: %s result unknown recipient=%s (%s); waiting for Meta's status report",
                    kind, conversation_hash(recipient), error,
                )
                return "unknown"
            if error.code == REENGAGEMENT_CODE and kind != "template":
                return await self._outside_window(outbox_id, phone_number_id, recipient, ref)
            await self.store.mark_failed(outbox_id, error.code, error.short)
            appcare_metrics.WA_SEND_FAILURES.labels(error.short[:40]).inc()
            logger.error(
                "WhatsApp: %s not sent recipient=%s (%s)", kind, conversation_hash(recipient), error
            )
            return "failed"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            await self.store.mark_failed(outbox_id, None, "client_error")
            appcare_metrics.WA_SEND_FAILURES.labels("client_error").inc()
            logger.error("WhatsApp: %s not sent recipient=%s (%s)", kind, conversation_hash(recipient), _where(exc))
            return "failed"
        await self.store.mark_sent(outbox_id, wamid)
        appcare_metrics.WA_REPLIES.labels(kind[:32]).inc()
        return "sent"

    async def _resolve_in_doubt(self, row: OutboxItem) -> str:
        """A row that may have reached Meta (left ``sending`` by a crash, or
        ``unknown`` after a timeout/5xx). Meta's status webhook (matched on
        ``biz_opaque_callback_data``) settles it; when none arrives within
        ``confirm_seconds`` of the send (or of this instance's start, whichever is
        later) it is resent once. Still unknown after that: failed (``unconfirmed``)."""
        who = conversation_hash(row.recipient)
        if row.status == "sending":
            await self.store.mark_unknown(row.id, "interrupted_in_flight", keep_time=True)
        deadline = max(row.updated_ts, self._started_at) + self.scale.confirm_seconds
        status = await self._wait_for_confirmation(row.id, deadline)
        if status not in IN_DOUBT:
            logger.info("WhatsApp: send with unknown result confirmed by Meta (%s) recipient=%s", status, who)
            return status or "failed"
        if self._stopping:
            return "unknown"  # stays unknown; the next start (or another instance) settles it
        if row.attempts >= 2 or not row.payload:
            await self.store.fail_unconfirmed(row.id, "unconfirmed")
            logger.error("WhatsApp: send still unconfirmed after a resend; given up recipient=%s", who)
            return "failed"
        logger.warning(
            "WhatsApp: no status report within %.0fs for a send with unknown result; resending once recipient=%s",
            self.scale.confirm_seconds, who,
        )
        outcome = await self._send_row(
            row.id, row.phone_number_id, row.recipient, row.payload, row.kind, row.ref,
            window_open=row.kind == "template", from_status=("unknown",),
        )
        if outcome == "unknown":
            status = await self._wait_for_confirmation(row.id, time.time() + self.scale.confirm_seconds)
            if status in IN_DOUBT:
                await self.store.fail_unconfirmed(row.id, "unconfirmed")
                logger.error("WhatsApp: resend still unconfirmed; given up recipient=%s", who)
                return "failed"
            return status or "failed"
        return outcome

    async def _wait_for_confirmation(self, outbox_id: int, deadline: float) -> Optional[str]:
        """Polls the row until it leaves the in-doubt states or ``deadline`` passes."""
        while True:
            status = await self.store.outgoing_status(outbox_id)
            if status not in IN_DOUBT or time.time() >= deadline or self._stopping:
                return status
            await asyncio.sleep(min(0.5, max(0.05, deadline - time.time())))

    async def _wait_for_pace(self, recipient: str) -> None:
        interval = float(getattr(self.graph, "send_interval", 0) or 0)
        last = getattr(self.graph, "_last_send", {}).get(recipient)
        if interval > 0 and last is not None:
            wait = last + interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)

    async def _outside_window(self, outbox_id: int, phone_number_id: str, recipient: str, ref: Optional[str]) -> str:
        """Free-form messages need a citizen message in the last 24 hours. Outside
        it the configured template goes out instead (once until the citizen
        replies) and the message waits (``deferred``) until the citizen writes."""
        who = conversation_hash(recipient)
        if not self.config.template_name:
            logger.error(
                "WhatsApp: outside the 24h window and WHATSAPP_TEMPLATE_NAME is not set: message not sent recipient=%s",
                who,
            )
            await self.store.mark_failed(outbox_id, REENGAGEMENT_CODE, "outside_24h_window_no_template")
            return "failed"
        if await self.store.template_pending(phone_number_id, recipient):
            logger.info("WhatsApp: outside the 24h window, template already sent; message deferred recipient=%s", who)
            await self.store.mark_deferred(outbox_id, REENGAGEMENT_CODE, "outside_24h_window_deferred")
            return "deferred"
        template = formatting.template_payload(recipient, self.config.template_name, self.config.template_language)
        (template_id,) = await self.store.add_outgoing(phone_number_id, recipient, [template], ["template"], ref)
        sent = await self._send_row(template_id, phone_number_id, recipient, template, "template", ref)
        if sent == "unknown":
            # The template may have gone out; the maintenance loop settles it. The
            # message itself waits for the citizen, like after a sent template.
            sent = "sent"
        if sent != "sent":
            await self.store.mark_failed(outbox_id, REENGAGEMENT_CODE, "outside_24h_window_template_failed")
            return "failed"
        await self.store.mark_template_sent(phone_number_id, recipient)
        await self.store.mark_deferred(outbox_id, REENGAGEMENT_CODE, "outside_24h_window_template_sent")
        logger.info(
            "WhatsApp: outside the 24h window, sent template '%s' instead; message deferred recipient=%s",
            self.config.template_name,
            who,
        )
        return "deferred"


class WhatsAppInput(InputChannel):
    """WhatsApp Cloud API input channel (``channels.whatsapp.WhatsAppInput``)."""

    @classmethod
    def name(cls) -> Text:
        return CHANNEL_NAME

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        return cls(WhatsAppConfig.load(credentials), ScaleSettings.load(credentials))

    def __init__(self, config: Optional[WhatsAppConfig] = None, scale: Optional[ScaleSettings] = None) -> None:
        self.config = config or WhatsAppConfig.load()
        self.scale = scale or ScaleSettings.load()
        self.service: Optional[WhatsAppService] = None
        self.unavailable_reason: Optional[str] = None
        self._retry_task: Optional[asyncio.Task] = None
        if secrets.production() or self.config.configured:
            # Raises SecretError in production (APPCARE_ENV=production): no instance with weak secrets.
            secrets.check("WhatsApp channel", {
                "WHATSAPP_APP_SECRET": self.config.app_secret,
                "WHATSAPP_VERIFY_TOKEN": self.config.verify_token,
                "WHATSAPP_ACCESS_TOKEN": self.config.access_token,
                **({"RASA_JWT_SECRET": os.environ.get("RASA_JWT_SECRET")} if secrets.production() else {}),
            })
            if secrets.production():
                secrets.pseudonym_key()  # raises without APPCARE_PSEUDONYM_KEY
        if not self.config.configured:
            self.unavailable_reason = "not configured"
            logger.warning("WhatsApp channel not configured (set %s)", ", ".join(self.config.missing))
            return
        try:
            self.service = WhatsAppService(self.config, self.scale)
        except Exception as exc:  # noqa: BLE001 - never keep Rasa from starting
            self.unavailable_reason = "database unavailable"
            logger.error("WhatsApp channel waiting: inbox database unavailable (%s); retrying every %.0f s",
                         _where(exc), DB_RETRY_SECONDS)

    async def _connect_later(self, app: Any, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        """The inbox database was unavailable when Rasa started: keep trying, then start
        the channel (Meta retries webhooks that got a 503 meanwhile)."""
        loop = asyncio.get_running_loop()
        while self.service is None:
            await asyncio.sleep(DB_RETRY_SECONDS)
            try:
                service = await loop.run_in_executor(None, WhatsAppService, self.config, self.scale)
            except Exception as exc:  # noqa: BLE001
                logger.debug("WhatsApp: inbox database still unavailable (%s)", _where(exc))
                continue
            self.service, self.unavailable_reason = service, None
            logger.warning("WhatsApp: inbox database reachable; channel started")
            await service.start(app, on_new_message)

    def get_output_channel(self) -> Optional[OutputChannel]:
        return WhatsAppOutput(self.service) if self.service else None

    def get_metadata(self, request: Request) -> Optional[Dict[Text, Any]]:
        """Per-message metadata is built by :func:`message_metadata`; this is the
        request-level part only."""
        return {"channel": CHANNEL_NAME}

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        bp = Blueprint("whatsapp_webhook", "channels.whatsapp")
        config = self.config
        logging_setup.adopt_sanic_loggers()  # no-op unless appcare logging is configured

        @bp.route("/health", methods=["GET"])
        async def health_check(request: Request) -> HTTPResponse:
            """200 only when this instance can take messages: channel configured,
            inbox database reachable and a model loaded (HAProxy's health check, probes)."""
            service = self.service
            if service is None:
                return response.json({"status": "unavailable", "reason": self.unavailable_reason}, status=503)
            body: Dict[str, Any] = {
                "status": "ok",
                "instance": self.scale.instance_id,
                "active_senders": len(service._workers),
            }
            try:
                body["open_messages"] = await asyncio.wait_for(service.store.open_count(), 3.0)
            except Exception:  # noqa: BLE001
                body.update(status="degraded", database="unavailable")
                return response.json(body, status=503)
            ctx = getattr(request.app, "ctx", None)
            agent = getattr(ctx, "agent", None) if ctx is not None else None
            if ctx is not None and hasattr(ctx, "agent"):
                is_ready = getattr(agent, "is_ready", None)
                if agent is None or (is_ready is not None and not is_ready()):
                    body.update(status="starting", model="not loaded")
                    return response.json(body, status=503)
            return response.json(body)

        @bp.route("/metrics", methods=["GET"])
        async def metrics(_: Request) -> HTTPResponse:
            service = self.service
            if service is not None:
                try:
                    appcare_metrics.WA_OPEN.set(await asyncio.wait_for(service.store.open_count(), 3.0))
                except Exception:  # noqa: BLE001
                    pass
            body, content_type = appcare_metrics.render()
            return response.raw(body, content_type=content_type)

        @bp.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            service = self.service
            if service is None:
                return response.json({"status": "unavailable", "reason": self.unavailable_reason})
            try:
                open_messages = await service.store.open_count()
            except Exception:  # noqa: BLE001
                return response.json({"status": "degraded", "reason": "database"}, status=503)
            return response.json({"status": "ok", "open_messages": open_messages})

        @bp.route("/webhook", methods=["GET"])
        async def verify(request: Request) -> HTTPResponse:
            if self.service is None:
                return response.text("WhatsApp channel not configured", status=503)
            mode = request.args.get("hub.mode")
            token = request.args.get("hub.verify_token") or ""
            challenge = request.args.get("hub.challenge") or ""
            if (
                mode == "subscribe"
                and hmac.compare_digest(token.encode("utf-8"), (config.verify_token or "").encode("utf-8"))
                and 0 < len(challenge) <= _MAX_CHALLENGE
            ):
                logger.info("WhatsApp: webhook verified")
                return response.text(challenge)
            logger.warning("WhatsApp: webhook verification refused (wrong mode or verify token)")
            return response.text("forbidden", status=403)

        @bp.route("/webhook", methods=["POST"], stream=True)
        async def receive(request: Request) -> HTTPResponse:
            service = self.service
            if service is None:
                return response.text(f"WhatsApp channel unavailable ({self.unavailable_reason})", status=503)
            try:
                return await self._receive(request, service)
            except Exception as exc:  # noqa: BLE001 - never a 500 with a trace
                appcare_metrics.WA_ERRORS.labels("webhook").inc()
                logger.error("WhatsApp: webhook failed (%s); not stored, Meta will retry", _where(exc))
                return response.text("temporarily unavailable", status=503)

        if self.config.configured:

            @bp.listener("after_server_start")
            async def start(app: Any, _loop: Any) -> None:
                logging_setup.adopt_sanic_loggers()
                if self.service is not None:
                    await self.service.start(app, on_new_message)
                else:
                    self._retry_task = asyncio.get_running_loop().create_task(self._connect_later(app, on_new_message))

            @bp.listener("before_server_stop")
            async def stop(_app: Any, _loop: Any) -> None:
                if self._retry_task is not None:
                    self._retry_task.cancel()
                if self.service is not None:
                    await self.service.stop()

        return bp

    async def _receive(self, request: Request, service: WhatsAppService) -> HTTPResponse:
        config = self.config
        digest = _BodyDigest(config.app_secret or "")
        body = await _read_limited(request, config.max_body_bytes, digest)
        if body is None:
            if await _oversize_signed(request, digest, max(SIGNED_OVERSIZE_CHECK, config.max_body_bytes)):
                # Meta sent it and will redeliver it for days: our limit is too low.
                appcare_metrics.WA_ERRORS.labels("webhook_too_large").inc()
                logger.error(
                    "WhatsApp: SIGNED webhook body of %d bytes is larger than max_body_bytes=%d: refused (413), "
                    "Meta will retry it; raise max_body_bytes (and the proxy's body limit)",
                    digest.size, config.max_body_bytes,
                )
            else:
                logger.warning("WhatsApp: webhook body larger than %d bytes, refused", config.max_body_bytes)
            return response.text("payload too large", status=413)
        if not verify_signature(config.app_secret or "", body, request.headers.get("x-hub-signature-256")):
            logger.warning("WhatsApp: webhook signature missing or invalid, refused")
            return response.text("invalid signature", status=401)
        # Signed by Meta from here on: anything but an outage of our own is answered
        # 200 (a 4xx/5xx makes Meta redeliver the same body for days, in vain).
        try:
            payload = json.loads(body.decode("utf-8"), parse_int=_json_int)
        except RecursionError:
            logger.warning("WhatsApp: webhook ignored: JSON nested too deeply")
            return response.json({"status": "ignored"})
        except (UnicodeDecodeError, ValueError):
            logger.warning("WhatsApp: webhook body is not valid JSON, refused")
            return response.text("invalid JSON", status=400)
        try:
            result = parse_webhook(payload, allow_text_payloads=config.allow_text_payloads)
        except WebhookPayloadError as exc:
            logger.warning("WhatsApp: webhook ignored: %s", exc)
            return response.json({"status": "ignored"})
        except Exception as exc:  # noqa: BLE001 - a shape the parser did not foresee
            appcare_metrics.WA_ERRORS.labels("webhook_payload").inc()
            logger.error("WhatsApp: webhook ignored: payload could not be parsed (%s)", _where(exc))
            return response.json({"status": "ignored"})
        for reason in result.skipped:
            logger.warning("WhatsApp: webhook item skipped: %s", reason)
        for code, title in result.errors:
            logger.warning("WhatsApp: webhook reports error code=%s (%s)", code, (title or "")[:60])
        messages, statuses = result.messages, result.statuses
        received_ts = time.time()
        try:
            counts = await service.accept(messages, statuses, received_ts)
        except Exception as exc:  # noqa: BLE001
            if _is_outage(exc):
                raise  # 503: Meta retries once the database is back
            appcare_metrics.WA_ERRORS.labels("webhook_payload").inc()
            logger.error("WhatsApp: webhook skipped: could not be stored (%s)", _where(exc))
            return response.json({"status": "ignored"})
        return response.json({"status": "ok", **counts})
