"""The report's data sources, read-only: the ``events`` table of Rasa's SQL tracker
store (endpoints.yml), the KCC handoff tickets and the WhatsApp outbox of appcare's
database (``APPCARE_DB_URL``), and the WhatsApp rates from the environment."""
from __future__ import annotations

import datetime as dt
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import sqlalchemy as sa

from appcare import tracker_store
from appcare.tracker_store import EventRow  # noqa: F401  (re-exported: rows of load_events)
from report.labels import default_municipality
from report.period import UTC, Period

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINTS = "endpoints.yml"
# Events this long before/after the period are read too, so that conversations
# crossing the period's borders are assembled correctly.
MARGIN_SECONDS = 24 * 3600


# --------------------------------------------------------------------------- tracker store and tickets


def tracker_store_url(endpoints: Union[str, Path, Dict[str, Any], None] = None) -> sa.engine.URL:
    """The SQLAlchemy URL of the SQL tracker store configured in endpoints.yml."""
    return tracker_store.tracker_store_url(endpoints or DEFAULT_ENDPOINTS)


dispose_engines = tracker_store.dispose_engines


def load_events(url: Union[str, sa.engine.URL], period: Period, margin: float = MARGIN_SECONDS) -> List[EventRow]:
    """Events of every sender with a citizen message in the period (plus ``margin``)."""
    url = sa.engine.make_url(url) if isinstance(url, str) else url
    if tracker_store.sqlite_missing(url):
        logger.warning("tracker store %s does not exist: no conversations", url.database)
        return []
    engine = tracker_store.engine(url)
    if not sa.inspect(engine).has_table("events"):
        logger.warning("tracker store has no events table: no conversations")
        return []
    events = tracker_store.events_table()
    senders = (
        sa.select(events.c.sender_id)
        .where(events.c.type_name == "user", events.c.timestamp >= period.start_ts, events.c.timestamp < period.end_ts)
        .distinct()
    )
    query = (
        sa.select(events)
        .where(
            events.c.sender_id.in_(senders),
            events.c.timestamp >= period.start_ts - margin,
            events.c.timestamp < period.end_ts + margin,
        )
        .order_by(events.c.sender_id, events.c.id)
    )
    with engine.connect() as connection:
        return [tracker_store.event_row(row) for row in connection.execute(query)]


@dataclass
class TicketInfo:
    id: int
    conversation_id: str  # internal only (a sender id): never written to a report
    created: float
    municipality: str
    channel: str
    reason: str
    in_kcc_hours: bool
    first_reply: Optional[float]
    closed: Optional[float]
    outcome: Optional[str]
    status: str

    @property
    def first_reply_seconds(self) -> Optional[float]:
        return None if self.first_reply is None else max(0.0, self.first_reply - self.created)

    @property
    def handling_seconds(self) -> Optional[float]:
        return None if self.closed is None else max(0.0, self.closed - self.created)


def _utc_ts(moment: Optional[dt.datetime]) -> Optional[float]:
    """Ticket times are naive UTC (appcare.handoff_store.utcnow)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def load_tickets(url: Optional[str], period: Period) -> List[TicketInfo]:
    """Handoff tickets created in the period, with their first staff reply."""
    from appcare import db
    from appcare.handoff_store import TicketMessageRow, TicketRow

    url = url or db.db_url()
    parsed = sa.engine.make_url(url)
    if tracker_store.sqlite_missing(parsed):
        logger.warning("ticket store %s does not exist: no tickets", parsed.database)
        return []
    engine = db.get_engine(url)
    if not sa.inspect(engine).has_table(TicketRow.__tablename__):
        return []
    start = period.start.astimezone(UTC).replace(tzinfo=None)
    end = period.end.astimezone(UTC).replace(tzinfo=None)
    tickets = TicketRow.__table__
    messages = TicketMessageRow.__table__
    first_staff = (
        sa.select(sa.func.min(messages.c.created_at))
        .where(messages.c.ticket_id == tickets.c.id, messages.c.author == "staff")
        .scalar_subquery()
    )
    # Only the columns read here: a database whose ticket table predates newer
    # columns (added when the bot or desk starts) can still be reported on.
    columns = [tickets.c[name] for name in (
        "id", "conversation_id", "created_at", "municipality", "channel", "reason", "in_kcc_hours",
        "first_staff_reply_at", "closed_at", "outcome", "status",
    )]
    query = (
        sa.select(*columns, first_staff.label("first_staff_message_at"))
        .where(tickets.c.created_at >= start, tickets.c.created_at < end)
        .order_by(tickets.c.id)
    )
    result = []
    with engine.connect() as connection:
        for row in connection.execute(query):
            first = row.first_staff_reply_at or row.first_staff_message_at
            if isinstance(first, str):  # SQLite returns the sub-select as text
                first = dt.datetime.fromisoformat(first)
            result.append(TicketInfo(
                id=row.id,
                conversation_id=row.conversation_id,
                created=_utc_ts(row.created_at),
                municipality=(row.municipality or default_municipality()).lower(),
                channel=row.channel or "rest",
                reason=row.reason or "request_human",
                in_kcc_hours=bool(row.in_kcc_hours),
                first_reply=_utc_ts(first),
                closed=_utc_ts(row.closed_at),
                outcome=row.outcome,
                status=row.status,
            ))
    return result


# --------------------------------------------------------------------------- WhatsApp pricing

OUTBOX_TABLE = "whatsapp_outbox"
RATE_ENV_PREFIX = "APPCARE_WHATSAPP_RATE_"
RATE_NOT_CONFIGURED = "tarief niet ingesteld"
PRICING_CATEGORY_LABELS = {
    "service": "Service (antwoord binnen 24 uur)",
    "utility": "Utility (template)",
    "marketing": "Marketing (template)",
    "authentication": "Authenticatie (template)",
    "authentication_international": "Authenticatie internationaal (template)",
    "referral_conversion": "Referral conversion",
}
UNPRICED = "onbekend"


@dataclass
class SentMessage:
    """One message the WhatsApp channel sent (a ``whatsapp_outbox`` row with status
    ``sent``) and the pricing Meta reported for it (None until a status with
    ``pricing`` arrived)."""
    created: float
    recipient_hash: Optional[str]  # internal only
    category: Optional[str]
    billable: Optional[bool]
    municipality: str = ""


def whatsapp_rates(environ: Optional[Dict[str, str]] = None) -> Dict[str, float]:
    """Rates in euro per message per pricing category from ``APPCARE_WHATSAPP_RATE_<CATEGORY>``
    (e.g. ``APPCARE_WHATSAPP_RATE_SERVICE=0.01``; a decimal comma is accepted). Unset,
    empty or invalid values are left out: no rate is ever invented."""
    environ = os.environ if environ is None else environ
    rates: Dict[str, float] = {}
    for name, value in environ.items():
        if not name.startswith(RATE_ENV_PREFIX) or not str(value).strip():
            continue
        try:
            rate = float(str(value).strip().replace(",", "."))
        except ValueError:
            logger.warning("%s is not a number: ignored", name)
            continue
        if rate < 0 or math.isnan(rate) or math.isinf(rate):
            logger.warning("%s is not a valid rate: ignored", name)
            continue
        rates[name[len(RATE_ENV_PREFIX):].lower()] = rate
    return rates


def load_sent_messages(url: Optional[str], period: Period) -> Optional[List[SentMessage]]:
    """Messages the WhatsApp channel sent in the period (outbox of ``APPCARE_DB_URL``);
    None when the outbox has never held a message (REST-only or development installs:
    since migrations every installation has the table) or there is no outbox table. A
    table that predates the pricing columns gives messages without pricing."""
    from appcare import db

    url = url or db.db_url()
    parsed = sa.engine.make_url(url)
    if tracker_store.sqlite_missing(parsed):
        return None
    engine = db.get_engine(url)
    inspector = sa.inspect(engine)
    if not inspector.has_table(OUTBOX_TABLE):
        return None
    present = {c["name"] for c in inspector.get_columns(OUTBOX_TABLE)}
    # created_at: naive UTC (revision 0003); created_ts: epoch seconds (a database not yet migrated)
    types = {"created_at": sa.DateTime(), "created_ts": sa.Float()}
    table = sa.table(OUTBOX_TABLE, *[sa.column(n, types.get(n)) for n in present])
    created = "created_at" if "created_at" in present else "created_ts"
    start, end = period.start_ts, period.end_ts
    if created == "created_at":
        start, end = db.from_epoch(start), db.from_epoch(end)
    wanted = [n for n in (created, "recipient_hash", "pricing_category", "billable") if n in present]
    query = sa.select(*[table.c[n] for n in wanted]).where(
        table.c.status == "sent", table.c[created] >= start, table.c[created] < end
    )
    result = []
    with engine.connect() as connection:
        if connection.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first() is None:
            return None
        for row in connection.execute(query):
            m = row._mapping
            billable = m.get("billable")
            result.append(SentMessage(
                created=db.to_epoch(m[created]) if created == "created_at" else float(m[created]),
                recipient_hash=m.get("recipient_hash"),
                category=(m.get("pricing_category") or None),
                billable=None if billable is None else bool(billable),
            ))
    return result

