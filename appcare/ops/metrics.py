"""Prometheus metrics of appcare (prometheus_client).

* WhatsApp channel (inside each Rasa instance): module-level counters and
  histograms below, served at ``GET /webhooks/whatsapp/metrics`` together with
  the process metrics of prometheus_client's default registry.
* KCC desk: :func:`desk_metrics` renders ticket/handoff figures read from the
  handoff store at scrape time (so every desk process reports the same numbers
  and they survive restarts); :func:`mount_desk` adds ``/metrics`` and
  ``/health`` routes plus request timing to a Sanic app.

Labels never carry personal data: municipality, kind, reason, status only.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0, 120.0)

# ----------------------------------------------------------------- WhatsApp channel
WA_MESSAGES = Counter(
    "appcare_whatsapp_messages_received_total",
    "WhatsApp messages received by the webhook, by outcome (new, duplicate, ignored)",
    ["municipality", "outcome"],
)
WA_STATUSES = Counter(
    "appcare_whatsapp_status_reports_total", "Delivery status reports from Meta", ["status"]
)
WA_REPLIES = Counter(
    "appcare_whatsapp_replies_sent_total", "Messages sent to citizens through the Graph API", ["kind"]
)
WA_SEND_FAILURES = Counter(
    "appcare_whatsapp_send_failures_total", "Messages that could not be sent", ["reason"]
)
WA_ERRORS = Counter(
    "appcare_whatsapp_errors_total",
    "Errors in the channel by place (webhook, bot, worker, housekeeping)",
    ["where"],
)
WA_TURNS = Counter(
    "appcare_whatsapp_turns_total", "Citizen messages handled by the bot, by result", ["result"]
)
WA_REPLY_LATENCY = Histogram(
    "appcare_whatsapp_reply_latency_seconds",
    "From the webhook receiving a message to the first reply message accepted by Meta",
    buckets=LATENCY_BUCKETS,
)
WA_BOT_SECONDS = Histogram(
    "appcare_whatsapp_bot_seconds", "Time Rasa took for one citizen message", buckets=LATENCY_BUCKETS
)
WA_OPEN = Gauge("appcare_whatsapp_open_messages", "Received messages not finished yet (all instances)")
WA_WORKERS = Gauge("appcare_whatsapp_active_senders", "Senders being processed by this instance")


def render(registry: CollectorRegistry = REGISTRY) -> Tuple[bytes, str]:
    """Body and content type of a Prometheus scrape."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


# ----------------------------------------------------------------------------- desk
class DeskCollector:
    """Reads the handoff tables at scrape time (one grouped query per family)."""

    def __init__(self, store_factory: Callable[[], Any]) -> None:
        self._store_factory = store_factory

    def collect(self) -> Iterable[Any]:
        from sqlalchemy import case, func, select

        from appcare.handoff_store import TicketMessageRow, TicketRow

        up = GaugeMetricFamily("appcare_desk_database_up", "1 when the handoff database answered this scrape")
        try:
            store = self._store_factory()
            with store.engine.connect() as conn:
                tickets = conn.execute(
                    select(TicketRow.municipality, TicketRow.reason, TicketRow.status, func.count()).group_by(
                        TicketRow.municipality, TicketRow.reason, TicketRow.status
                    )
                ).all()
                overdue = conn.execute(
                    select(func.count()).select_from(TicketRow).where(
                        TicketRow.status == "open", TicketRow.flagged.is_(True)
                    )
                ).scalar()
                replies = conn.execute(
                    select(TicketMessageRow.delivery, func.count())
                    .where(TicketMessageRow.author == "staff")
                    .group_by(TicketMessageRow.delivery)
                ).all()
                citizen = conn.execute(
                    select(func.count()).select_from(TicketMessageRow).where(TicketMessageRow.author == "citizen")
                ).scalar()
                delays = conn.execute(
                    select(TicketRow.created_at, TicketRow.first_staff_reply_at).where(
                        TicketRow.first_staff_reply_at.isnot(None)
                    )
                ).all()
        except Exception as exc:  # noqa: BLE001 - a scrape never fails on the database
            logger.warning("desk metrics: handoff database unavailable (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        handoffs = CounterMetricFamily(
            "appcare_handoffs", "Handoffs to the KCC (tickets ever opened)", labels=["municipality", "reason"]
        )
        by_reason: Dict[Tuple[str, str], int] = {}
        state = GaugeMetricFamily("appcare_desk_tickets", "Tickets by status", labels=["municipality", "status"])
        by_status: Dict[Tuple[str, str], int] = {}
        for municipality, reason, status, count in tickets:
            key = (municipality or "", reason or "")
            by_reason[key] = by_reason.get(key, 0) + count
            skey = (municipality or "", status or "")
            by_status[skey] = by_status.get(skey, 0) + count
        for (municipality, reason), count in sorted(by_reason.items()):
            handoffs.add_metric([municipality, reason], count)
        for (municipality, status), count in sorted(by_status.items()):
            state.add_metric([municipality, status], count)
        yield handoffs
        yield state

        flagged = GaugeMetricFamily("appcare_desk_overdue_tickets", "Open tickets not picked up in time")
        flagged.add_metric([], overdue or 0)
        yield flagged

        staff = CounterMetricFamily(
            "appcare_desk_staff_replies", "Staff replies to citizens by delivery result", labels=["delivery"]
        )
        for delivery, count in replies:
            staff.add_metric([delivery or "unknown"], count)
        yield staff

        errors = CounterMetricFamily("appcare_desk_errors", "Staff replies that could not be delivered")
        errors.add_metric([], sum(count for delivery, count in replies if delivery == "failed"))
        yield errors

        relayed = CounterMetricFamily("appcare_desk_citizen_messages", "Citizen messages relayed to tickets")
        relayed.add_metric([], citizen or 0)
        yield relayed

        seconds = [
            max(0.0, (reply - created).total_seconds()) for created, reply in delays if created and reply
        ]
        buckets = []
        for bound in DESK_REPLY_BUCKETS:
            buckets.append((str(float(bound)), sum(1 for s in seconds if s <= bound)))
        buckets.append(("+Inf", len(seconds)))
        histogram = HistogramMetricFamily(
            "appcare_desk_first_reply_seconds", "Ticket creation to the first staff reply", buckets=buckets,
            sum_value=sum(seconds),
        )
        yield histogram


DESK_REPLY_BUCKETS = (60, 300, 900, 1800, 3600, 4 * 3600, 8 * 3600, 24 * 3600, 72 * 3600)

DESK_HTTP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def desk_registry(store_factory: Optional[Callable[[], Any]] = None) -> CollectorRegistry:
    """A registry with the desk's ticket figures and HTTP timing."""
    if store_factory is None:
        from appcare.handoff_store import default_store

        store_factory = default_store
    registry = CollectorRegistry()
    registry.register(DeskCollector(store_factory))
    registry._appcare_http = Histogram(  # type: ignore[attr-defined]
        "appcare_desk_http_request_seconds", "Desk HTTP request duration", ["method", "status"],
        buckets=DESK_HTTP_BUCKETS, registry=registry,
    )
    return registry


def desk_metrics(store_factory: Optional[Callable[[], Any]] = None, registry: Optional[CollectorRegistry] = None) -> Tuple[bytes, str]:
    """Prometheus text of the desk: handoffs by municipality and reason, tickets by
    status, overdue tickets, staff replies by delivery result, delivery errors,
    relayed citizen messages, time-to-first-reply histogram."""
    return render(registry or desk_registry(store_factory))


def mount_desk(app: Any, store_factory: Optional[Callable[[], Any]] = None) -> CollectorRegistry:
    """Adds ``GET /metrics`` and ``GET /health`` to the desk's Sanic app and times
    every request. Both paths must be exempt from the login guard."""
    from sanic import response

    registry = desk_registry(store_factory)
    http = registry._appcare_http  # type: ignore[attr-defined]
    factory = store_factory
    if factory is None:
        from appcare.handoff_store import default_store

        factory = default_store

    async def metrics(_request: Any) -> Any:
        import asyncio

        body, content_type = await asyncio.get_running_loop().run_in_executor(None, render, registry)
        return response.raw(body, content_type=content_type)

    async def health(_request: Any) -> Any:
        import asyncio

        def ping() -> bool:
            from sqlalchemy import text

            with factory().engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True

        try:
            await asyncio.get_running_loop().run_in_executor(None, ping)
        except Exception as exc:  # noqa: BLE001
            return response.json({"status": "degraded", "database": "unavailable", "error": type(exc).__name__}, status=503)
        return response.json({"status": "ok", "database": "ok"})

    app.add_route(metrics, "/metrics", methods=["GET"], name="appcare_metrics")
    app.add_route(health, "/health", methods=["GET"], name="appcare_health")

    async def start_timer(request: Any) -> None:
        request.ctx.appcare_started = time.monotonic()

    async def observe(request: Any, resp: Any) -> None:
        started = getattr(request.ctx, "appcare_started", None)
        if started is not None and resp is not None:
            http.labels(request.method, str(getattr(resp, "status", 0))).observe(time.monotonic() - started)

    app.register_middleware(start_timer, "request")
    app.register_middleware(observe, "response")
    return registry
