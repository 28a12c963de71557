"""Who works on which sender, and when (a mixin of :class:`WhatsAppService`, whose
state these methods share): per-sender workers under a lease, the maintenance loop
(lease renewal, orphaned messages, sends with an unknown result), the PostgreSQL
LISTEN wake-up and its sweep, housekeeping, and waiting for Rasa's model."""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, Optional

from rasa.core.channels.channel import UserMessage

from appcare.ops import metrics as appcare_metrics
from appcare.pii import conversation_hash
from channels.inbox import LISTENER_PREFIX, AsyncInbox, Claim, InboxListener, listener_name
from channels.whatsapp.common import _where, logger

if TYPE_CHECKING:
    from channels.config import WhatsAppConfig
    from channels.graph_api import GraphAPIClient
    from channels.whatsapp.settings import ScaleSettings

HOUSEKEEPING_INTERVAL = 3600.0
DIRECT_PENDING_ORPHANED = 120.0  # a direct send still unsent after this long was cut off by a crash


class SchedulingMixin:
    """Workers, maintenance, sweep and wake-up of :class:`~channels.whatsapp.service.WhatsAppService`."""

    config: WhatsAppConfig
    scale: ScaleSettings
    store: AsyncInbox
    graph: GraphAPIClient
    app: Any
    on_new_message: Optional[Callable[[UserMessage], Awaitable[Any]]]
    _stopping: bool
    _workers: Dict[str, asyncio.Task]
    _dirty: Dict[str, bool]
    _db_ok: bool
    _resolving: Dict[int, asyncio.Task]
    _listener: Optional[InboxListener]
    _wake: Optional[asyncio.Event]
    _cooldown: Dict[str, float]

    # ------------------------------------------------- maintenance and wake-up
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
