"""One message's turn (a mixin of :class:`WhatsAppService`): Rasa handles it with a
collecting output channel (retried while Rasa fails, replayed after a cut-off
attempt), the reply is stored and sent; a message that kept failing is given up."""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Optional

from rasa.core.channels.channel import UserMessage

from appcare.ops import metrics as appcare_metrics
from appcare.pii import conversation_hash
from channels import formatting, turn_recovery
from channels.formatting import BotMessage
from channels.inbox import AsyncInbox, InboxItem
from channels.payload_guard import guard_payload
from channels.rest_input import silence_expected_async
from channels.webhook_parser import NON_TEXT_PAYLOAD, THANKS_PAYLOAD
from channels.whatsapp.common import CHANNEL_NAME, _where, conversation_id, logger
from channels.whatsapp.output import WhatsAppTurnCollector

if TYPE_CHECKING:
    from channels.config import WhatsAppConfig
    from channels.graph_api import GraphAPIClient
    from channels.whatsapp.settings import ScaleSettings

# Payloads our own parser makes (a 👍 reaction, a voice message): always accepted.
CHANNEL_PAYLOADS = (THANKS_PAYLOAD, NON_TEXT_PAYLOAD)


class TurnMixin:
    """The turn of :class:`~channels.whatsapp.service.WhatsAppService`."""

    config: WhatsAppConfig
    scale: ScaleSettings
    store: AsyncInbox
    graph: GraphAPIClient
    app: Any
    on_new_message: Optional[Callable[[UserMessage], Awaitable[Any]]]
    _stopping: bool
    _turns: asyncio.Semaphore

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
            no_reply = self.scale.error_text or await turn_recovery.no_reply_text_async(self._agent(), municipality)
            collector.messages.append(BotMessage("text", text=no_reply))
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
