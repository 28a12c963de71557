"""Rasa 3.6 channel for Meta's WhatsApp Business Cloud API.

``credentials.yml``::

    channels.whatsapp.WhatsAppInput:

Webhook: ``/webhooks/whatsapp/webhook`` (GET verification, POST messages),
health: ``GET /webhooks/whatsapp/``. Settings come from environment variables
(see :mod:`channels.config` and docs/whatsapp.md).

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
never appear in logs; a sender is logged as the first 12 hex chars of sha256(wa_id).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import time
import traceback
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage

from appcare.pii import conversation_hash
from channels import formatting
from channels.config import WhatsAppConfig
from channels.formatting import BotMessage
from channels.graph_api import REENGAGEMENT_CODE, GraphAPIClient, GraphAPIError
from channels.inbox import (
    WINDOW_MARGIN_SECONDS,
    WINDOW_SECONDS,
    AsyncInbox,
    InboxItem,
    InboxStore,
    NewInbound,
)
from channels.webhook_parser import InboundMessage, WebhookPayloadError, parse_webhook

logger = logging.getLogger(__name__)

CHANNEL_NAME = "whatsapp"
REF_KWARG = "whatsapp_ref"  # utter_message(..., whatsapp_ref="kcc:42") -> outbox.ref
NO_WINDOW_KINDS = {"reaction", "system"}  # do not (re)open the 24h window
HOUSEKEEPING_INTERVAL = 3600.0
_MAX_CHALLENGE = 512


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).isoformat(timespec="milliseconds")


def short_hash(value: Optional[str]) -> str:
    return hashlib.sha256((value or "").encode("utf-8")).hexdigest()[:8]


def _where(exc: BaseException) -> str:
    """Content-free location of an exception: ``Type at file:line``."""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        return f"{type(exc).__name__} at {last.filename.rsplit('/', 1)[-1]}:{last.lineno}"
    return type(exc).__name__


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
    return metadata


async def _read_limited(request: Request, limit: int) -> Optional[bytes]:
    """Reads a streamed request body; None as soon as it exceeds ``limit`` bytes
    (a huge body is never buffered completely)."""
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    if request.stream is None:  # body already read (non-streaming use)
        body = request.body or b""
        return body if len(body) <= limit else None
    chunks: List[bytes] = []
    size = 0
    async for chunk in request.stream:
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


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
        payloads = formatting.message_payloads(str(recipient_id), message)
        return await self.service.deliver(str(recipient_id), payloads, ref=message.ref)

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

    def __init__(self, config: WhatsAppConfig) -> None:
        self.config = config
        self.store = AsyncInbox(InboxStore(config.db_url))
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

    # ------------------------------------------------------------ lifecycle
    async def start(self, app: Any, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        self.app = app
        self.on_new_message = on_new_message
        self._stopping = False
        self._housekeeping = asyncio.get_running_loop().create_task(self._housekeeping_loop())
        interrupted = await self.store.fail_interrupted_direct_sends()
        if interrupted:
            logger.warning("WhatsApp: %d direct send(s) interrupted by the last shutdown marked failed", interrupted)
        senders = await self.store.senders_with_open_messages()
        if senders:
            logger.info("WhatsApp: resuming unfinished messages of %d sender(s)", len(senders))
        for wa_id in senders:
            self.notify(wa_id)

    async def stop(self) -> None:
        """Lets in-flight work finish for ``shutdown_grace`` seconds, then cancels.
        Cancelled messages stay open in the inbox and are resumed on the next start."""
        self._stopping = True
        if self._housekeeping:
            self._housekeeping.cancel()
        workers = [t for t in self._workers.values() if not t.done()]
        if workers:
            _, pending = await asyncio.wait(workers, timeout=self.config.shutdown_grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                logger.warning("WhatsApp: %d sender worker(s) cancelled at shutdown; resumed on next start", len(pending))
        await self.graph.close()

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
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)

    # ------------------------------------------------------------- receiving
    async def accept(self, messages: List[InboundMessage], statuses: List[Any], received_ts: float) -> Dict[str, int]:
        allowed = set(self.config.phone_number_ids)
        items: List[NewInbound] = []
        for message in messages:
            if message.phone_number_id not in allowed:
                logger.warning("WhatsApp: message for an unknown business number ignored")
                continue
            metadata = message_metadata(message, received_ts, self.config.tenants.get(message.phone_number_id))
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
        new_flags = await self.store.record_inbound(items, received_ts) if items else []
        if statuses:
            await self.store.record_statuses(statuses, received_ts)
        counts = {"new": 0, "duplicate": 0, "ignored": 0, "statuses": len(statuses)}
        for item, is_new in zip(items, new_flags):
            sender = conversation_hash(item.wa_id)
            if not is_new:
                counts["duplicate"] += 1
                logger.info("WhatsApp: duplicate delivery ignored sender=%s msg=%s", sender, short_hash(item.wamid))
            elif not item.answerable:
                counts["ignored"] += 1
                logger.info("WhatsApp: %s recorded, not answered sender=%s", item.message_type, sender)
            else:
                counts["new"] += 1
                logger.debug(
                    "WhatsApp: received %s sender=%s msg=%s", item.message_type, sender, short_hash(item.wamid)
                )
                self.notify(item.wa_id)
        for status in statuses:
            if status.status == "failed":
                logger.warning(
                    "WhatsApp: delivery failed code=%s recipient=%s msg=%s",
                    status.error_code,
                    conversation_hash(status.recipient_id),
                    short_hash(status.wamid),
                )
        return counts

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
        failures = 0
        me = asyncio.current_task()
        try:
            while not self._stopping:
                self._dirty[wa_id] = False
                try:
                    item = await self.store.next_open_message(wa_id)
                    if item is None:
                        if self._dirty.get(wa_id):
                            continue
                        return  # no await between this check and the removal below
                    await self._process(item)
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    failures += 1
                    logger.error(
                        "WhatsApp: worker error sender=%s (%s), try %d", conversation_hash(wa_id), _where(exc), failures
                    )
                    if failures >= 5:
                        return  # stays open; resumed on the next message or restart
                    await asyncio.sleep(min(30.0, 0.5 * 2**failures))
        finally:
            if self._workers.get(wa_id) is me:
                del self._workers[wa_id]
                self._dirty.pop(wa_id, None)

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

    async def _process(self, item: InboxItem) -> None:
        sender = conversation_hash(item.wa_id)
        if item.status == "replying":
            logger.info("WhatsApp: resuming a half-sent reply sender=%s", sender)
            await self._send_reply_rows(item.wamid, item.sort_ts)
            await self.store.finish_inbound(item.wamid, "done")
            return
        if not await self._wait_for_agent():
            return  # shutting down; the message stays open and is resumed on the next start
        attempts = await self.store.start_processing(item.wamid)
        if attempts > self.config.max_processing_attempts:
            logger.error("WhatsApp: message dropped after %d processing attempts sender=%s", attempts - 1, sender)
            await self.store.finish_inbound(item.wamid, "failed", "too_many_attempts")
            return
        await self._deliver_deferred(item.phone_number_id, item.wa_id)
        await self.graph.mark_as_read(item.phone_number_id, item.wamid, typing_indicator=True)

        collector = WhatsAppTurnCollector()
        message = UserMessage(
            item.text,
            collector,
            item.wa_id,
            input_channel=CHANNEL_NAME,
            message_id=item.wamid,
            metadata=item.metadata,
        )
        started = time.monotonic()
        error: Optional[str] = None
        try:
            assert self.on_new_message is not None
            await self.on_new_message(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            error = "bot_error"
            logger.error("WhatsApp: bot failed on a message sender=%s (%s)", sender, _where(exc))

        payloads = formatting.plan_turn(item.wa_id, collector.messages)
        if payloads:
            kinds = [formatting.describe(p) for p in payloads]
            await self.store.begin_reply(item.wamid, item.phone_number_id, item.wa_id, payloads, kinds)
            await self._send_reply_rows(item.wamid, item.sort_ts)
        await self.store.finish_inbound(item.wamid, "failed" if error else "done", error)
        logger.info(
            "WhatsApp: answered sender=%s with %d message(s) in %.2fs",
            sender,
            len(payloads),
            time.monotonic() - started,
        )

    async def _send_reply_rows(self, inbound_wamid: str, sent_ts: Optional[float] = None) -> None:
        window_open = sent_ts is not None and time.time() - sent_ts < WINDOW_SECONDS - WINDOW_MARGIN_SECONDS - 600
        for row in await self.store.unsent_reply_rows(inbound_wamid):
            if row.status == "sending":
                # We crashed while this request was in flight: Meta may or may not
                # have delivered it. Not resending keeps "never answered twice".
                logger.warning(
                    "WhatsApp: message interrupted in flight, not resent (at-most-once) recipient=%s",
                    conversation_hash(row.recipient),
                )
                await self.store.mark_failed(row.id, None, "interrupted_in_flight")
                continue
            await self._send_row(
                row.id, row.phone_number_id, row.recipient, row.payload or {}, row.kind, row.ref, window_open
            )

    async def _deliver_deferred(self, phone_number_id: str, wa_id: str) -> None:
        since = time.time() - max(7.0, self.config.retention_days) * 86400
        rows = await self.store.deferred_for(phone_number_id, wa_id, since)
        if rows:
            logger.info("WhatsApp: delivering %d deferred message(s) recipient=%s", len(rows), conversation_hash(wa_id))
        for row in rows:
            await self._send_row(row.id, row.phone_number_id, row.recipient, row.payload or {}, row.kind, row.ref)

    # --------------------------------------------------------------- sending
    async def deliver(self, recipient: str, payloads: List[Dict[str, Any]], ref: Optional[str] = None) -> List[int]:
        """Direct sends (outside a turn): record, then send each message."""
        if not payloads:
            return []
        phone_number_id = await self.store.latest_phone_number_id(recipient) or self.config.phone_number_id
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
    ) -> bool:
        """Sends one outbox row. ``window_open``: the caller knows the citizen
        wrote less than 24h ago (a reply to a fresh message): skip the lookup."""
        if kind != "template" and not window_open and not await self.store.in_window(phone_number_id, recipient):
            return await self._outside_window(outbox_id, phone_number_id, recipient, ref)
        await self.store.mark_sending(outbox_id)
        try:
            wamid = await self.graph.send_message(phone_number_id, payload)
        except GraphAPIError as error:
            if error.code == REENGAGEMENT_CODE and kind != "template":
                return await self._outside_window(outbox_id, phone_number_id, recipient, ref)
            await self.store.mark_failed(outbox_id, error.code, error.short)
            logger.error(
                "WhatsApp: %s not sent recipient=%s (%s)", kind, conversation_hash(recipient), error
            )
            return False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            await self.store.mark_failed(outbox_id, None, "client_error")
            logger.error("WhatsApp: %s not sent recipient=%s (%s)", kind, conversation_hash(recipient), _where(exc))
            return False
        await self.store.mark_sent(outbox_id, wamid)
        return True

    async def _outside_window(self, outbox_id: int, phone_number_id: str, recipient: str, ref: Optional[str]) -> bool:
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
            return False
        if await self.store.template_pending(phone_number_id, recipient):
            logger.info("WhatsApp: outside the 24h window, template already sent; message deferred recipient=%s", who)
            await self.store.mark_deferred(outbox_id, REENGAGEMENT_CODE, "outside_24h_window_deferred")
            return False
        template = formatting.template_payload(recipient, self.config.template_name, self.config.template_language)
        (template_id,) = await self.store.add_outgoing(phone_number_id, recipient, [template], ["template"], ref)
        sent = await self._send_row(template_id, phone_number_id, recipient, template, "template", ref)
        if not sent:
            await self.store.mark_failed(outbox_id, REENGAGEMENT_CODE, "outside_24h_window_template_failed")
            return False
        await self.store.mark_template_sent(phone_number_id, recipient)
        await self.store.mark_deferred(outbox_id, REENGAGEMENT_CODE, "outside_24h_window_template_sent")
        logger.info(
            "WhatsApp: outside the 24h window, sent template '%s' instead; message deferred recipient=%s",
            self.config.template_name,
            who,
        )
        return False


class WhatsAppInput(InputChannel):
    """WhatsApp Cloud API input channel (``channels.whatsapp.WhatsAppInput``)."""

    @classmethod
    def name(cls) -> Text:
        return CHANNEL_NAME

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        return cls(WhatsAppConfig.load(credentials))

    def __init__(self, config: Optional[WhatsAppConfig] = None) -> None:
        self.config = config or WhatsAppConfig.load()
        self.service: Optional[WhatsAppService] = None
        self.unavailable_reason: Optional[str] = None
        if not self.config.configured:
            self.unavailable_reason = "not configured"
            logger.warning("WhatsApp channel not configured (set %s)", ", ".join(self.config.missing))
            return
        try:
            self.service = WhatsAppService(self.config)
        except Exception as exc:  # noqa: BLE001 - never keep Rasa from starting
            self.unavailable_reason = "database unavailable"
            logger.error("WhatsApp channel disabled: inbox database unavailable (%s)", _where(exc))

    def get_output_channel(self) -> Optional[OutputChannel]:
        return WhatsAppOutput(self.service) if self.service else None

    def get_metadata(self, request: Request) -> Optional[Dict[Text, Any]]:
        """Per-message metadata is built by :func:`message_metadata`; this is the
        request-level part only."""
        return {"channel": CHANNEL_NAME}

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        bp = Blueprint("whatsapp_webhook", __name__)
        service = self.service
        config = self.config

        @bp.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            if service is None:
                return response.json({"status": "unavailable", "reason": self.unavailable_reason})
            try:
                open_messages = await service.store.open_count()
            except Exception:  # noqa: BLE001
                return response.json({"status": "degraded", "reason": "database"}, status=503)
            return response.json({"status": "ok", "open_messages": open_messages})

        @bp.route("/webhook", methods=["GET"])
        async def verify(request: Request) -> HTTPResponse:
            if service is None:
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
            if service is None:
                return response.text("WhatsApp channel not configured", status=503)
            try:
                return await self._receive(request, service)
            except Exception as exc:  # noqa: BLE001 - never a 500 with a trace
                logger.error("WhatsApp: webhook failed (%s); Meta will retry", _where(exc))
                return response.text("temporarily unavailable", status=503)

        if service is not None:

            @bp.listener("after_server_start")
            async def start(app: Any, _loop: Any) -> None:
                await service.start(app, on_new_message)

            @bp.listener("before_server_stop")
            async def stop(_app: Any, _loop: Any) -> None:
                await service.stop()

        return bp

    async def _receive(self, request: Request, service: WhatsAppService) -> HTTPResponse:
        config = self.config
        body = await _read_limited(request, config.max_body_bytes)
        if body is None:
            logger.warning("WhatsApp: webhook body larger than %d bytes, refused", config.max_body_bytes)
            return response.text("payload too large", status=413)
        if not verify_signature(config.app_secret or "", body, request.headers.get("x-hub-signature-256")):
            logger.warning("WhatsApp: webhook signature missing or invalid, refused")
            return response.text("invalid signature", status=401)
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            logger.warning("WhatsApp: webhook body is not valid JSON, refused")
            return response.text("invalid JSON", status=400)
        try:
            result = parse_webhook(payload, allow_text_payloads=config.allow_text_payloads)
        except WebhookPayloadError as exc:
            logger.warning("WhatsApp: webhook ignored: %s", exc)
            return response.json({"status": "ignored"})
        for reason in result.skipped:
            logger.warning("WhatsApp: webhook item skipped: %s", reason)
        for code, title in result.errors:
            logger.warning("WhatsApp: webhook reports error code=%s (%s)", code, (title or "")[:60])
        received_ts = time.time()
        counts = await service.accept(result.messages, result.statuses, received_ts)
        return response.json({"status": "ok", **counts})
