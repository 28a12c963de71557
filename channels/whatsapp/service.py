"""``WhatsAppService``, the runtime of a configured channel: its store, Graph client
and per-sender workers; starting and stopping them, and receiving (a webhook's
messages and statuses stored in the inbox, the senders' workers notified).
Scheduling, the turn and sending are mixins (:mod:`~channels.whatsapp.scheduling`,
:mod:`~channels.whatsapp.turn`, :mod:`~channels.whatsapp.sending`): they share this
object's state."""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import replace as dc_replace
from functools import partial
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence

from rasa.core.channels.channel import UserMessage

from appcare.ops import metrics as appcare_metrics
from appcare.pii import conversation_hash
from channels.config import WhatsAppConfig
from channels.graph_api import GraphAPIClient
from channels.inbox import AsyncInbox, InboxListener, InboxStore, NewInbound
from channels.webhook_parser import InboundMessage
from channels.whatsapp.common import CHANNEL_NAME, _is_outage, _where, logger, short_hash
from channels.whatsapp.scheduling import DIRECT_PENDING_ORPHANED, SchedulingMixin
from channels.whatsapp.sending import SendingMixin
from channels.whatsapp.settings import ScaleSettings
from channels.whatsapp.turn import TurnMixin

NO_WINDOW_KINDS = {"reaction", "system"}  # do not (re)open the 24h window


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).isoformat(timespec="milliseconds")


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


class WhatsAppService(SchedulingMixin, TurnMixin, SendingMixin):
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
