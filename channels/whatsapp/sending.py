"""Sending (a mixin of :class:`WhatsAppService`): a turn's stored reply and direct
sends, each outbox row once and in order; sends with an unknown result settled by
Meta's status webhook or resent once; the 24-hour window (template, deferred
messages) and the per-citizen pace."""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Optional, Sequence

from rasa.core.channels.channel import UserMessage

from appcare.ops import metrics as appcare_metrics
from appcare.pii import conversation_hash
from channels import formatting
from channels.graph_api import REENGAGEMENT_CODE, GraphAPIError
from channels.inbox import (
    IN_DOUBT,
    WINDOW_MARGIN_SECONDS,
    WINDOW_SECONDS,
    AsyncInbox,
    OutboxItem,
    ReplyRows,
    callback_data,
)
from channels.whatsapp.common import _where, logger

if TYPE_CHECKING:
    from channels.config import WhatsAppConfig
    from channels.graph_api import GraphAPIClient
    from channels.whatsapp.settings import ScaleSettings


class SendingMixin:
    """Sending of :class:`~channels.whatsapp.service.WhatsAppService`."""

    config: WhatsAppConfig
    scale: ScaleSettings
    store: AsyncInbox
    graph: GraphAPIClient
    app: Any
    on_new_message: Optional[Callable[[UserMessage], Awaitable[Any]]]
    _stopping: bool
    _started_at: float

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
