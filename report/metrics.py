"""Every figure of the performance report, computed from the Rasa tracker store and
the KCC handoff tickets for one period.

Sources (read-only; nothing is logged separately for the report):

* the ``events`` table of Rasa's SQLTrackerStore, with the settings of the
  ``tracker_store`` section of endpoints.yml (``${VAR}`` is replaced by the
  environment variable; SQLite or PostgreSQL; ``POSTGRESQL_SCHEMA`` is honoured
  like Rasa does);
* the tables ``handoff_tickets`` and ``handoff_messages`` of appcare's handoff store
  (``APPCARE_DB_URL``, default ``sqlite:///var/appcare.db``).

Definitions (docs/report.md explains them for readers of the report):

* A **conversation** is one Rasa session of one sender: the events between two
  ``session_started`` events. For a sender without any ``session_started`` event it
  is the sender's events of one local day. Only conversations with at least one
  citizen message count (a staff reply triggered through the API is no citizen
  message). A conversation belongs to the day (hour, week, month) of its first
  citizen message, in Europe/Amsterdam time.
* A **message** is a citizen message (a ``user`` event, except external intents
  ``EXTERNAL_*`` that carry staff actions). Button clicks count as messages.
* **Handed over**: a handoff to the KCC started in the conversation
  (``action_handoff_to_kcc`` ran, or ``action_clarify`` set ``handoff_active`` after
  the second miss); the reason comes from the intent (request_human,
  request_callback -> request_human, urgent, personal_case, complaint,
  out_of_scope_municipal -> out_of_scope) or is not_understood. A conversation
  whose ticket has reason ``urgent`` counts as an urgent handoff in any case.
* **Contained** (zelf beantwoord): not handed over and no message relayed to a
  colleague (a conversation that continues an earlier, still open handoff is not
  contained either).
* **In one go**: contained, and no clarifying question (``action_clarify``), no
  request to rephrase (utter_ask_rephrase_text, utter_day_not_understood,
  utter_too_long, utter_empty_message, utter_text_only; the short text for other
  languages comes with the answer in English, so it does not count) and
  no NLU fallback (intent ``nlu_fallback``).
* **Not understood**: a citizen message the bot handled (not relayed to a human)
  with intent ``nlu_fallback`` or answered by ``action_clarify``.
* **Bot reply latency**: from the citizen's ``user`` event to the first ``bot``
  event of that turn (before the next citizen message); percentiles with linear
  interpolation between the closest ranks.
* **Time to first human reply**: ticket ``created_at`` to ``first_staff_reply_at``
  (or, if empty, the first ``handoff_messages`` row of author ``staff``);
  **handling time**: ``created_at`` to ``closed_at``. Tickets belong to the period
  by ``created_at``; inside/outside KCC hours is the ticket's ``in_kcc_hours``.
* **Inside KCC hours** for a conversation or message: the municipality's KCC was
  open at its start (``appcare.content`` + ``appcare.opening_hours``: weekly hours,
  exceptions, public holidays).
* **Feedback**: clicks on the thumbs buttons (intents feedback_positive and
  feedback_negative) and a plain "ja"/"nee" (affirm/deny) while the feedback
  question was pending; "asked" counts the question ``utter_ask_feedback``.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from appcare import tracker_store
from appcare.tracker_store import EventRow  # noqa: F401  (re-exported: rows of load_events)

logger = logging.getLogger(__name__)

TZ = ZoneInfo("Europe/Amsterdam")
UTC = dt.timezone.utc
DEFAULT_ENDPOINTS = "endpoints.yml"
# Events this long before/after the period are read too, so that conversations
# crossing the period's borders are assembled correctly.
MARGIN_SECONDS = 24 * 3600

WEEKDAYS_NL = ["maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"]
MONTHS_NL = [
    "januari", "februari", "maart", "april", "mei", "juni",
    "juli", "augustus", "september", "oktober", "november", "december",
]

HANDOFF_INTENT_REASONS = {
    "request_human": "request_human",
    "request_callback": "request_human",
    "urgent": "urgent",
    "personal_case": "personal_case",
    "complaint": "complaint",
    "out_of_scope_municipal": "out_of_scope",
}
REASON_LABELS = {
    "request_human": "Vraagt om een medewerker",
    "urgent": "Dringend (mogelijk gevaar of nood)",
    "personal_case": "Persoonlijke zaak",
    "complaint": "Klacht",
    "out_of_scope": "Onderwerp buiten de assistent",
    "not_understood": "Assistent begreep de vraag niet",
    "technical_failure": "Kon niet automatisch beantwoord worden (storing)",
}
REPHRASE_RESPONSES = frozenset({
    "utter_ask_rephrase_text",
    "utter_ask_rephrase_or_human",
    "utter_wrong_answer",
    "utter_day_not_understood",
    "utter_too_long",
    "utter_empty_message",
    "utter_text_only",
})
CLARIFY_ACTION = "action_clarify"
HANDOFF_ACTION = "action_handoff_to_kcc"
RELAY_ACTION = "action_relay_to_kcc"
FEEDBACK_QUESTION = "utter_ask_feedback"
IGNORED_ACTIONS = frozenset({"action_listen", "action_session_start"})

# Topic groups (key, Dutch label); the first ones are questions citizens ask.
TOPICS: List[Tuple[str, str]] = [
    ("opening_hours", "Openingstijden"),
    ("passport_id", "Paspoort en ID-kaart"),
    ("marriage", "Trouwen en partnerschap"),
    ("roadworks", "Wegwerkzaamheden"),
    ("request_human", "Vraagt om een medewerker"),
    ("personal_case", "Persoonlijke zaak"),
    ("complaint", "Klacht"),
    ("out_of_scope_municipal", "Ander gemeentelijk onderwerp"),
    ("out_of_scope_other", "Geen gemeentelijk onderwerp"),
    ("urgent", "Dringend (gevaar of nood)"),  # not a question topic: no example texts
    ("followup", "Vervolgantwoord (ja, nee, een waarde)"),
    ("smalltalk", "Begroeting, bedankt, tot ziens"),
    ("feedback", "Feedback (duim omhoog/omlaag)"),
    ("return_to_bot", "Terug naar de assistent"),
    ("non_text", "Foto, spraakbericht of bestand"),
    ("nlu_fallback", "Niet begrepen"),
    ("other", "Overig"),
]
TOPIC_LABELS = dict(TOPICS)
QUESTION_TOPICS = frozenset(key for key, _ in TOPICS[:9])
INTENT_LABELS = {
    "opening_hours": "Openingstijden",
    "opening_hours_now": "Nu open?",
    "passport_apply": "Paspoort/ID aanvragen",
    "passport_fees": "Kosten paspoort/ID",
    "passport_bring": "Wat meenemen?",
    "passport_processing_time": "Wanneer is het klaar?",
    "passport_validity": "Geldigheid paspoort/ID",
    "passport_express": "Spoedaanvraag",
    "passport_lost": "Kwijt of gestolen",
    "passport_pickup": "Document ophalen",
    "passport_child": "ID voor een kind",
    "marriage_how": "Hoe trouwen",
    "marriage_notice": "Melding voorgenomen huwelijk",
    "marriage_costs": "Kosten trouwen",
    "marriage_free": "Gratis trouwen",
    "marriage_witnesses": "Getuigen",
    "marriage_location": "Trouwlocaties",
    "marriage_vs_partnership": "Huwelijk of partnerschap",
    "roadworks_status": "Wegwerkzaamheden",
    "roadworks_detour": "Omleiding",
    "roadworks_duration": "Duur werkzaamheden",
    "request_human": "Vraagt om een medewerker",
    "request_callback": "Wil teruggebeld worden",
    "urgent": "Dringend (gevaar of nood)",
    "personal_case": "Persoonlijke zaak",
    "complaint": "Klacht",
    "out_of_scope_municipal": "Ander gemeentelijk onderwerp",
    "out_of_scope_other": "Geen gemeentelijk onderwerp",
    "return_to_bot": "Terug naar de assistent",
    "inform": "Vervolg: een waarde",
    "affirm": "Ja",
    "deny": "Nee",
    "greet": "Begroeting",
    "goodbye": "Tot ziens",
    "thanks": "Bedankt",
    "bot_challenge": "Ben je een robot?",
    "feedback_positive": "Duim omhoog",
    "feedback_negative": "Duim omlaag",
    "non_text_message": "Foto, spraak of bestand",
    "nlu_fallback": "Niet begrepen",
}
CHANNEL_LABELS = {"whatsapp": "WhatsApp", "rest": "Web (REST)", "cmdline": "Test", "socketio": "Webchat"}
ALL = "alle"


def topic_of(intent: Optional[str]) -> str:
    if not intent:
        return "other"
    for prefix, key in (("opening_hours", "opening_hours"), ("passport_", "passport_id"),
                        ("marriage_", "marriage"), ("roadworks_", "roadworks")):
        if intent.startswith(prefix):
            return key
    if intent == "request_callback":
        return "request_human"
    if intent in ("inform", "affirm", "deny"):
        return "followup"
    if intent in ("greet", "goodbye", "thanks", "bot_challenge"):
        return "smalltalk"
    if intent in ("feedback_positive", "feedback_negative"):
        return "feedback"
    if intent == "non_text_message":
        return "non_text"
    if intent in TOPIC_LABELS:
        return intent
    return "other"


def municipality_label(municipality: str) -> str:
    return municipality.replace("_", " ").replace("-", " ").title() if municipality != ALL else "Alle"


def channel_label(channel: str) -> str:
    return CHANNEL_LABELS.get(channel, channel) if channel != ALL else "Alle"


def default_municipality() -> str:
    return os.environ.get("APPCARE_MUNICIPALITY", "terneuzen").strip().lower() or "terneuzen"


# --------------------------------------------------------------------------- period


@dataclass(frozen=True)
class Period:
    """A half-open interval [start, end) of aware datetimes (Europe/Amsterdam)."""

    start: dt.datetime
    end: dt.datetime

    @classmethod
    def from_dates(cls, first_day: dt.date, last_day: dt.date) -> "Period":
        """Local days ``first_day`` up to and including ``last_day`` (DST-correct)."""
        if last_day < first_day:
            raise ValueError(f"period ends ({last_day}) before it starts ({first_day})")
        start = dt.datetime.combine(first_day, dt.time(0), tzinfo=TZ)
        end = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(0), tzinfo=TZ)
        return cls(start, end)

    @classmethod
    def of(cls, start: Union[dt.date, dt.datetime, str], end: Union[dt.date, dt.datetime, str]) -> "Period":
        """Dates (or 'YYYY-MM-DD') are whole local days with ``end`` included;
        datetimes are instants with ``end`` excluded (naive ones are local time)."""
        start, end = _coerce(start), _coerce(end)
        if isinstance(start, dt.datetime) or isinstance(end, dt.datetime):
            s = start if isinstance(start, dt.datetime) else dt.datetime.combine(start, dt.time(0))
            e = end if isinstance(end, dt.datetime) else dt.datetime.combine(end + dt.timedelta(days=1), dt.time(0))
            s = s.astimezone(TZ) if s.tzinfo else s.replace(tzinfo=TZ)
            e = e.astimezone(TZ) if e.tzinfo else e.replace(tzinfo=TZ)
            if e < s:
                raise ValueError("period ends before it starts")
            return cls(s, e)
        return cls.from_dates(start, end)

    @property
    def start_ts(self) -> float:
        return self.start.timestamp()

    @property
    def end_ts(self) -> float:
        return self.end.timestamp()

    @property
    def first_day(self) -> dt.date:
        return self.start.date()

    @property
    def last_day(self) -> dt.date:
        last = (self.end - dt.timedelta(microseconds=1)).astimezone(TZ)
        return max(last.date(), self.first_day)

    def days(self) -> List[dt.date]:
        count = (self.last_day - self.first_day).days + 1
        return [self.first_day + dt.timedelta(days=i) for i in range(count)]

    def label(self) -> str:
        a, b = self.first_day, self.last_day
        if a == b:
            return f"{a.day} {MONTHS_NL[a.month - 1]} {a.year}"
        return f"{a.day} {MONTHS_NL[a.month - 1]} {a.year} t/m {b.day} {MONTHS_NL[b.month - 1]} {b.year}"


def _coerce(value: Union[dt.date, dt.datetime, str]) -> Union[dt.date, dt.datetime]:
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value) if "T" in value or " " in value.strip() else dt.date.fromisoformat(value)
    return value


def local(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, TZ)


def day_key(ts: float) -> str:
    return local(ts).date().isoformat()


def week_key(ts: float) -> str:
    year, week, _ = local(ts).date().isocalendar()
    return f"{year}-W{week:02d}"


def month_key(ts: float) -> str:
    return local(ts).strftime("%Y-%m")


# --------------------------------------------------------------------------- sources


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
    table = sa.table(OUTBOX_TABLE, *[sa.column(n) for n in present])
    wanted = [n for n in ("created_ts", "recipient_hash", "pricing_category", "billable") if n in present]
    query = sa.select(*[table.c[n] for n in wanted]).where(
        table.c.status == "sent", table.c.created_ts >= period.start_ts, table.c.created_ts < period.end_ts
    )
    result = []
    with engine.connect() as connection:
        if connection.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first() is None:
            return None
        for row in connection.execute(query):
            m = row._mapping
            billable = m.get("billable")
            result.append(SentMessage(
                created=float(m["created_ts"]),
                recipient_hash=m.get("recipient_hash"),
                category=(m.get("pricing_category") or None),
                billable=None if billable is None else bool(billable),
            ))
    return result


def link_sent_messages(conversations: Sequence["Conversation"], sent: Sequence[SentMessage]) -> None:
    """Gives each sent message the municipality of its conversation: the recipient's
    last conversation that started before the message (the Rasa sender id of a
    WhatsApp conversation is the citizen's id, optionally ``@<phone_number_id>``);
    without one, the default municipality."""
    from appcare.pii import conversation_hash

    by_hash: Dict[str, List[Conversation]] = defaultdict(list)
    for conversation in conversations:
        by_hash[conversation_hash(conversation.sender.partition("@")[0])].append(conversation)
    for group in by_hash.values():
        group.sort(key=lambda c: c.start)
    for message in sent:
        candidates = [c for c in by_hash.get(message.recipient_hash or "", []) if c.start <= message.created + 1.0]
        message.municipality = candidates[-1].municipality if candidates else default_municipality()


def pricing_summary(
    conversations: Sequence["Conversation"], sent: Optional[Sequence[SentMessage]],
    rates: Optional[Dict[str, float]] = None,
) -> Dict[str, Any]:
    """WhatsApp figures: messages sent, per WhatsApp conversation, billable per
    category and the estimated cost (None when a needed rate is not configured)."""
    rates = whatsapp_rates() if rates is None else rates
    available = sent is not None
    sent = list(sent or [])
    wa_conversations = sum(1 for c in conversations if c.channel == "whatsapp")
    billable = Counter(m.category or UNPRICED for m in sent if m.billable)
    cost_by_category = {cat: (round(n * rates[cat], 4) if cat in rates else None) for cat, n in billable.items()}
    complete = all(v is not None for v in cost_by_category.values())
    return {
        "whatsapp_outbox_read": available,
        "whatsapp_conversations": wa_conversations,
        "whatsapp_messages_sent": len(sent),
        "whatsapp_messages_per_conversation": _round(len(sent) / wa_conversations, 2) if wa_conversations else None,
        "whatsapp_messages_priced": sum(1 for m in sent if m.category or m.billable is not None),
        "whatsapp_billable": sum(billable.values()),
        "whatsapp_billable_by_category": dict(sorted(billable.items())),
        "whatsapp_cost_by_category_eur": dict(sorted(cost_by_category.items())),
        "whatsapp_cost_eur": round(sum(cost_by_category.values()), 2) if available and complete and rates else None,
        "whatsapp_rates_configured": bool(rates) and complete,
    }


# --------------------------------------------------------------------------- KCC hours


class KccHours:
    """Whether a municipality's KCC is open at a moment (cached per local day).

    Same rule as ``appcare.opening_hours.is_open(content, "kcc", moment)``.
    """

    def __init__(self) -> None:
        self._content: Dict[str, Any] = {}
        self._days: Dict[Tuple[str, dt.date], Optional[list]] = {}

    def _load(self, municipality: str):
        if municipality not in self._content:
            from appcare import content

            try:
                self._content[municipality] = content.load(municipality)
            except Exception as exc:  # noqa: BLE001 - unknown municipality: no KCC hours
                logger.warning("no content for municipality %s (%s)", municipality, type(exc).__name__)
                self._content[municipality] = None
        return self._content[municipality]

    def is_open(self, municipality: str, ts: float) -> Optional[bool]:
        moment = local(ts)
        key = (municipality, moment.date())
        if key not in self._days:
            from appcare import opening_hours

            content = self._load(municipality)
            self._days[key] = None if content is None else opening_hours.hours_on(content, "kcc", moment.date()).ranges
        ranges = self._days[key]
        if ranges is None:
            return None
        return any(start <= moment.time() < end for start, end in ranges)


# --------------------------------------------------------------------------- conversations


@dataclass
class Message:
    ts: float
    text: str
    intent: Optional[str]
    actions: List[str] = field(default_factory=list)
    replied_ts: Optional[float] = None
    in_kcc_hours: Optional[bool] = None

    @property
    def relayed(self) -> bool:
        """Passed on to a KCC colleague instead of being answered by the bot."""
        return RELAY_ACTION in self.actions

    @property
    def not_understood(self) -> bool:
        return CLARIFY_ACTION in self.actions or (self.intent == "nlu_fallback" and not self.relayed)

    @property
    def latency_ms(self) -> Optional[float]:
        if self.replied_ts is None:
            return None
        return max(0.0, (self.replied_ts - self.ts) * 1000.0)

    @property
    def topic(self) -> str:
        return "nlu_fallback" if self.not_understood else topic_of(self.intent)


@dataclass
class Conversation:
    sender: str  # internal only: never written to a report
    start: float
    channel: str = "onbekend"
    municipality: str = ""
    messages: List[Message] = field(default_factory=list)
    handoff_reason: Optional[str] = None
    relayed: bool = False
    clarified: bool = False
    rephrase: bool = False
    feedback_asked: int = 0
    feedback_up: int = 0
    feedback_down: int = 0
    bot_messages: int = 0
    staff_messages: int = 0
    in_kcc_hours: Optional[bool] = None
    _meta_municipality: Optional[str] = None
    _slot_municipality: Optional[str] = None
    _carried_municipality: Optional[str] = None

    @property
    def handed_over(self) -> bool:
        return self.handoff_reason is not None

    @property
    def fallback(self) -> bool:
        return any(m.intent == "nlu_fallback" and not m.relayed for m in self.messages)

    @property
    def contained(self) -> bool:
        return not self.handed_over and not self.relayed

    @property
    def one_go(self) -> bool:
        return self.contained and not (self.clarified or self.rephrase or self.fallback)

    @property
    def not_understood(self) -> int:
        return sum(1 for m in self.messages if m.not_understood)


def _intent_of(event: EventRow) -> Optional[str]:
    parse = event.data.get("parse_data") or {}
    return ((parse.get("intent") or {}).get("name")) or event.intent_name


def build_conversations(
    events: Iterable[EventRow],
    default: Optional[str] = None,
    kcc: Optional[KccHours] = None,
) -> List[Conversation]:
    """Assembles conversations from events ordered by sender and id (see module doc)."""
    default = (default or default_municipality()).lower()
    kcc = kcc or KccHours()
    by_sender: Dict[str, List[EventRow]] = defaultdict(list)
    for event in events:
        by_sender[event.sender_id].append(event)
    conversations: List[Conversation] = []
    for sender, sender_events in by_sender.items():
        sender_events.sort(key=lambda e: e.id)
        conversations.extend(_conversations_of(sender, sender_events))
    for conversation in conversations:
        conversation.municipality = (
            conversation._meta_municipality
            or conversation._slot_municipality
            or conversation._carried_municipality
            or default
        ).lower()
        conversation.in_kcc_hours = kcc.is_open(conversation.municipality, conversation.start)
        for message in conversation.messages:
            message.in_kcc_hours = kcc.is_open(conversation.municipality, message.ts)
    conversations.sort(key=lambda c: c.start)
    return conversations


def _conversations_of(sender: str, events: List[EventRow]) -> List[Conversation]:
    session_mode = any(e.type_name == "session_started" for e in events)
    slots: Dict[str, Any] = {}
    result: List[Conversation] = []
    conversation: Optional[Conversation] = None
    message: Optional[Message] = None
    external = False  # inside a turn of a staff action (EXTERNAL_* intent)
    last_action: Optional[str] = None
    for event in events:
        kind = event.type_name
        data = event.data
        if kind == "session_started":
            conversation, message, external = None, None, False
        elif kind == "slot":
            name, value = data.get("name"), data.get("value")
            if conversation is not None and not external:
                if name == "handoff_active" and value is True and last_action in (HANDOFF_ACTION, CLARIFY_ACTION):
                    if conversation.handoff_reason is None:
                        conversation.handoff_reason = (
                            "not_understood" if last_action == CLARIFY_ACTION
                            else HANDOFF_INTENT_REASONS.get(message.intent if message else "", "request_human")
                        )
                if name == "municipality" and value and conversation._slot_municipality is None:
                    conversation._slot_municipality = str(value)
            slots[name] = value
        elif kind == "user":
            intent = _intent_of(event)
            if intent and intent.startswith("EXTERNAL_"):
                external, message = True, None
                continue
            external = False
            metadata = data.get("metadata") or {}
            if conversation is None or (not session_mode and day_key(conversation.start) != day_key(event.timestamp)):
                conversation = Conversation(sender=sender, start=event.timestamp)
                conversation.channel = str(metadata.get("channel") or data.get("input_channel") or "onbekend").lower()
                conversation._carried_municipality = slots.get("municipality")
                result.append(conversation)
            if metadata.get("municipality") and conversation._meta_municipality is None:
                conversation._meta_municipality = str(metadata["municipality"])
            message = Message(ts=event.timestamp, text=str(data.get("text") or ""), intent=intent)
            conversation.messages.append(message)
            if intent == "feedback_positive" or (intent == "affirm" and slots.get("pending_question") == "feedback"):
                conversation.feedback_up += 1
            elif intent == "feedback_negative" or (intent == "deny" and slots.get("pending_question") == "feedback"):
                conversation.feedback_down += 1
        elif kind == "action":
            name = data.get("name") or event.action_name
            last_action = name
            if name in IGNORED_ACTIONS or conversation is None or external:
                continue
            if message is not None:
                message.actions.append(name)
            if name == CLARIFY_ACTION:
                conversation.clarified = True
            elif name == RELAY_ACTION:
                conversation.relayed = True
            elif name == HANDOFF_ACTION and conversation.handoff_reason is None:
                conversation.handoff_reason = HANDOFF_INTENT_REASONS.get(
                    message.intent if message else "", "request_human"
                )
        elif kind == "bot":
            if conversation is None:
                continue
            if external:
                conversation.staff_messages += 1
                continue
            conversation.bot_messages += 1
            if message is not None and message.replied_ts is None:
                message.replied_ts = event.timestamp
            utter = (data.get("metadata") or {}).get("utter_action")
            if utter in REPHRASE_RESPONSES:
                conversation.rephrase = True
            elif utter == FEEDBACK_QUESTION:
                conversation.feedback_asked += 1
    return [c for c in result if c.messages]


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], p: float) -> Optional[float]:
    """Percentile with linear interpolation between closest ranks (numpy's default)."""
    data = sorted(values)
    if not data:
        return None
    k = (len(data) - 1) * p / 100.0
    lower = math.floor(k)
    upper = min(lower + 1, len(data) - 1)
    return data[lower] + (data[upper] - data[lower]) * (k - lower)


def _rate(part: int, whole: int) -> Optional[float]:
    return round(part / whole, 4) if whole else None


def _round(value: Optional[float], digits: int = 1) -> Optional[float]:
    return None if value is None else round(value, digits)


def summarise(conversations: Sequence[Conversation], tickets: Sequence[TicketInfo],
              sent: Optional[Sequence[SentMessage]] = None,
              rates: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
    """The key figures of a set of conversations and tickets (JSON-serialisable);
    with ``sent`` (the WhatsApp outbox) also the messages sent, billable and cost."""
    n = len(conversations)
    messages = [m for c in conversations for m in c.messages]
    latencies = [m.latency_ms for m in messages if m.latency_ms is not None]
    handed = [c for c in conversations if c.handed_over]
    contained = sum(1 for c in conversations if c.contained)
    one_go = sum(1 for c in conversations if c.one_go)
    first_replies = [t.first_reply_seconds for t in tickets if t.first_reply_seconds is not None]
    handling = [t.handling_seconds for t in tickets if t.handling_seconds is not None]
    reasons = Counter(c.handoff_reason for c in handed)
    up = sum(c.feedback_up for c in conversations)
    down = sum(c.feedback_down for c in conversations)
    return {
        "conversations": n,
        "messages": len(messages),
        "bot_messages": sum(c.bot_messages for c in conversations),
        "conversations_in_kcc_hours": sum(1 for c in conversations if c.in_kcc_hours),
        "conversations_outside_kcc_hours": sum(1 for c in conversations if c.in_kcc_hours is False),
        "contained": contained,
        "containment_rate": _rate(contained, n),
        "one_go": one_go,
        "one_go_rate": _rate(one_go, n),
        "handoffs": len(handed),
        "handoff_rate": _rate(len(handed), n),
        "handoff_reasons": {reason: reasons.get(reason, 0) for reason in REASON_LABELS if reasons.get(reason)},
        "continued_with_human": sum(1 for c in conversations if c.relayed and not c.handed_over),
        "not_understood": sum(1 for m in messages if m.not_understood),
        "conversations_with_clarification": sum(1 for c in conversations if c.clarified),
        "bot_latency_ms_p50": _round(percentile(latencies, 50)),
        "bot_latency_ms_p95": _round(percentile(latencies, 95)),
        "bot_replies_measured": len(latencies),
        "tickets": len(tickets),
        "tickets_answered": len(first_replies),
        "tickets_closed": sum(1 for t in tickets if t.closed is not None),
        "human_first_reply_median_s": _round(percentile(first_replies, 50)),
        "human_first_reply_p95_s": _round(percentile(first_replies, 95)),
        "handling_time_median_s": _round(percentile(handling, 50)),
        "handling_time_p95_s": _round(percentile(handling, 95)),
        "feedback_asked": sum(c.feedback_asked for c in conversations),
        "feedback_up": up,
        "feedback_down": down,
        "feedback_positive_rate": _rate(up, up + down),
        **pricing_summary(conversations, sent, rates),
    }


# --------------------------------------------------------------------------- report data


@dataclass
class Table:
    name: str  # file name of the CSV (without .csv)
    title: str  # Dutch title in the report
    columns: List[str]
    rows: List[List[Any]]
    note: str = ""

    def as_dicts(self) -> List[Dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


@dataclass
class ReportData:
    period: Period
    generated_at: dt.datetime
    municipality_filter: Optional[str]
    municipalities: List[str]
    channels: List[str]
    totals: Dict[str, Any]
    by_municipality: Dict[str, Dict[str, Any]]
    tables: Dict[str, Table]
    series: Dict[str, Any]
    notes: List[str] = field(default_factory=list)


def _minutes(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else round(seconds / 60.0, 1)


def _ms(value: Optional[float]) -> Optional[int]:
    return None if value is None else int(round(value))


def _pct(rate: Optional[float]) -> Optional[float]:
    return None if rate is None else round(rate * 100.0, 1)


def _masked_key(text: str) -> Tuple[str, str]:
    """(normalised text, masked normalised text)."""
    from appcare import pii

    normal = re.sub(r"\s+", " ", (text or "").strip())
    normal = normal.strip(" .!?,;:").lower() if normal else ""
    return normal, pii.mask(re.sub(r"\s+", " ", (text or "").strip()).strip(" .!?,;:")).lower()


def safe_examples(texts: Iterable[str]) -> Tuple[List[Tuple[str, int]], int]:
    """Masked example texts with their counts, only those that occur at least twice
    or contain masked personal data; also returns how many distinct texts were left out."""
    counts: Counter = Counter()
    masked_any: Dict[str, bool] = {}
    for text in texts:
        if not text or text.startswith("/"):
            continue  # button payloads are no questions
        normal, masked = _masked_key(text)
        if not masked:
            continue
        counts[masked] += 1
        masked_any[masked] = masked_any.get(masked, False) or masked != normal
    shown = [(t, c) for t, c in counts.items() if c >= 2 or masked_any[t]]
    shown.sort(key=lambda item: (-item[1], item[0]))
    return shown, len(counts) - len(shown)


def link_tickets(conversations: Sequence[Conversation], tickets: Sequence[TicketInfo]) -> None:
    """Gives each ticket the channel (and municipality) of the conversation it came from:
    the sender's last conversation that started before the ticket. The ticket's own
    ``channel`` is Rasa's input channel, which is "rest" for messages relayed by other
    channels through the REST API; the conversation knows the channel from the metadata.
    A ticket with reason ``urgent`` makes that conversation an urgent handoff."""
    by_sender: Dict[str, List[Conversation]] = defaultdict(list)
    for conversation in conversations:
        by_sender[conversation.sender].append(conversation)
    for ticket in tickets:
        candidates = [c for c in by_sender.get(ticket.conversation_id, []) if c.start <= ticket.created + 1.0]
        if candidates:
            source = max(candidates, key=lambda c: c.start)
            ticket.channel = source.channel
            ticket.municipality = source.municipality
            if ticket.reason == "urgent":  # the assistant judged it urgent, whatever the intent
                source.handoff_reason = "urgent"


def compute(
    conversations: Sequence[Conversation],
    tickets: Sequence[TicketInfo],
    period: Period,
    municipality: Optional[str] = None,
    top: int = 15,
    sent: Optional[Sequence[SentMessage]] = None,
) -> ReportData:
    """All figures and tables for conversations starting in the period (optionally one
    municipality); ``sent``: the WhatsApp outbox rows (None: no outbox table)."""
    if municipality:
        municipality = municipality.lower()
    link_tickets(conversations, tickets)
    rates = whatsapp_rates()
    if sent is not None:
        link_sent_messages(conversations, sent)
        sent = [
            m for m in sent
            if period.start_ts <= m.created < period.end_ts and (not municipality or m.municipality == municipality)
        ]
    convs = [
        c for c in conversations
        if period.start_ts <= c.start < period.end_ts and (not municipality or c.municipality == municipality)
    ]
    tks = [
        t for t in tickets
        if period.start_ts <= t.created < period.end_ts and (not municipality or t.municipality == municipality)
    ]
    municipalities = sorted({c.municipality for c in convs} | {t.municipality for t in tks})
    channels = sorted({c.channel for c in convs} | {t.channel for t in tks})
    totals = summarise(convs, tks, sent, rates)
    by_municipality = {
        m: summarise([c for c in convs if c.municipality == m], [t for t in tks if t.municipality == m],
                     None if sent is None else [s for s in sent if s.municipality == m], rates)
        for m in municipalities
    }
    tables: Dict[str, Table] = {}

    # Key figures -----------------------------------------------------------
    columns = ["Kengetal", "Totaal"] + [municipality_label(m) for m in municipalities]
    key_rows = [
        ("Gesprekken", "conversations", None),
        ("Berichten van inwoners", "messages", None),
        ("Gesprekken binnen KCC-uren", "conversations_in_kcc_hours", None),
        ("Gesprekken buiten KCC-uren", "conversations_outside_kcc_hours", None),
        ("Zelf beantwoord door de assistent", "contained", None),
        ("Zelf beantwoord (%)", "containment_rate", _pct),
        ("In één keer beantwoord", "one_go", None),
        ("In één keer beantwoord (%)", "one_go_rate", _pct),
        ("Overgedragen aan het KCC", "handoffs", None),
        ("Overgedragen (%)", "handoff_rate", _pct),
        ("Niet begrepen berichten", "not_understood", None),
        ("Reactietijd assistent p50 (ms)", "bot_latency_ms_p50", _ms),
        ("Reactietijd assistent p95 (ms)", "bot_latency_ms_p95", _ms),
        ("Overdrachten (tickets)", "tickets", None),
        ("Eerste reactie medewerker, mediaan (min)", "human_first_reply_median_s", _minutes),
        ("Afhandeltijd tot sluiten, mediaan (min)", "handling_time_median_s", _minutes),
        ("Feedback gevraagd", "feedback_asked", None),
        ("Duim omhoog", "feedback_up", None),
        ("Duim omlaag", "feedback_down", None),
        ("WhatsApp-berichten verstuurd", "whatsapp_messages_sent", None),
        ("Verstuurde berichten per WhatsApp-gesprek (gemiddeld)", "whatsapp_messages_per_conversation", None),
        ("Gefactureerde WhatsApp-berichten", "whatsapp_billable", None),
        ("Geschatte kosten WhatsApp (EUR)", "whatsapp_cost_eur", _cost),
    ]
    if sent is None:  # no outbox table: no WhatsApp message figures at all
        key_rows = [row for row in key_rows if not row[1].startswith("whatsapp_")]
    rows = []
    for label, key, fmt in key_rows:
        fmt = fmt or (lambda v: v)
        rows.append([label, fmt(totals[key])] + [fmt(by_municipality[m][key]) for m in municipalities])
    tables["kerncijfers"] = Table("kerncijfers", "Kerncijfers", columns, rows,
                                  "Percentages zijn van alle gesprekken; tijden van tickets die in de periode zijn aangemaakt.")

    # WhatsApp messages and cost -------------------------------------------
    tables["whatsapp_kosten"] = _pricing_table(sent, rates, totals)

    # Per municipality and channel -----------------------------------------
    combos = sorted({(c.municipality, c.channel) for c in convs} | {(t.municipality, t.channel) for t in tks})
    rows = []
    for m, ch in combos:
        s = summarise([c for c in convs if c.municipality == m and c.channel == ch],
                      [t for t in tks if t.municipality == m and t.channel == ch])
        rows.append([municipality_label(m), channel_label(ch), s["conversations"], s["messages"],
                     _pct(s["containment_rate"]), _pct(s["one_go_rate"]), s["handoffs"], _pct(s["handoff_rate"]),
                     s["not_understood"], _ms(s["bot_latency_ms_p50"]), _ms(s["bot_latency_ms_p95"]),
                     _minutes(s["human_first_reply_median_s"]), s["feedback_up"], s["feedback_down"]])
    tables["per_gemeente_kanaal"] = Table(
        "per_gemeente_kanaal", "Per gemeente en kanaal",
        ["Gemeente", "Kanaal", "Gesprekken", "Berichten", "Zelf beantwoord (%)", "In één keer (%)",
         "Overgedragen", "Overgedragen (%)", "Niet begrepen", "Reactietijd p50 (ms)", "Reactietijd p95 (ms)",
         "Eerste reactie medewerker, mediaan (min)", "Duim omhoog", "Duim omlaag"],
        rows,
    )

    # Per day / week / month -------------------------------------------------
    bucket_columns = ["Gemeente", "Kanaal", "Gesprekken", "Berichten", "Binnen KCC-uren", "Buiten KCC-uren",
                      "Zelf beantwoord", "In één keer", "Overgedragen", "Niet begrepen", "Duim omhoog", "Duim omlaag"]
    all_days = [d.isoformat() for d in period.days()]
    bucket_keys = {
        "per_dag": ("Per dag", "Dag", day_key, all_days),
        "per_week": ("Per week", "Week", week_key, _unique(week_key(_noon(d)) for d in period.days())),
        "per_maand": ("Per maand", "Maand", month_key, _unique(month_key(_noon(d)) for d in period.days())),
    }
    for name, (title, first_column, key_fn, keys) in bucket_keys.items():
        grouped: Dict[Tuple[str, str, str], List[Conversation]] = defaultdict(list)
        for c in convs:
            grouped[(key_fn(c.start), c.municipality, c.channel)].append(c)
            grouped[(key_fn(c.start), ALL, ALL)].append(c)
        rows = []
        for key in keys:
            for m, ch in [(ALL, ALL)] + combos:
                group = grouped.get((key, m, ch), [])
                if not group and (m, ch) != (ALL, ALL):
                    continue
                rows.append([key, municipality_label(m), channel_label(ch)] + _bucket_numbers(group))
        tables[name] = Table(name, title, [first_column] + bucket_columns, rows,
                             "Een gesprek telt op de dag van het eerste bericht (Nederlandse tijd).")

    # Hour of day and weekday --------------------------------------------------
    hours_conv = Counter(local(c.start).hour for c in convs)
    hours_msg = Counter(local(m.ts).hour for c in convs for m in c.messages)
    hours_by_mun = {m: Counter(local(c.start).hour for c in convs if c.municipality == m) for m in municipalities}
    tables["per_uur"] = Table(
        "per_uur", "Per uur van de dag",
        ["Uur", "Gesprekken", "Berichten"] + [f"Gesprekken {municipality_label(m)}" for m in municipalities],
        [[f"{h:02d}:00-{h:02d}:59", hours_conv.get(h, 0), hours_msg.get(h, 0)]
         + [hours_by_mun[m].get(h, 0) for m in municipalities] for h in range(24)],
        "Gesprekken op het uur van het eerste bericht, berichten op hun eigen tijdstip (Nederlandse tijd).",
    )
    wd_conv = Counter(local(c.start).weekday() for c in convs)
    wd_msg = Counter(local(m.ts).weekday() for c in convs for m in c.messages)
    wd_by_mun = {m: Counter(local(c.start).weekday() for c in convs if c.municipality == m) for m in municipalities}
    tables["per_weekdag"] = Table(
        "per_weekdag", "Per dag van de week",
        ["Weekdag", "Gesprekken", "Berichten"] + [f"Gesprekken {municipality_label(m)}" for m in municipalities],
        [[WEEKDAYS_NL[d], wd_conv.get(d, 0), wd_msg.get(d, 0)] + [wd_by_mun[m].get(d, 0) for m in municipalities]
         for d in range(7)],
    )

    # Inside / outside KCC hours --------------------------------------------
    rows = []
    for m in [ALL] + municipalities:
        for inside, label in ((True, "Binnen KCC-uren"), (False, "Buiten KCC-uren")):
            group = [c for c in convs if (m == ALL or c.municipality == m) and bool(c.in_kcc_hours) == inside]
            group_t = [t for t in tks if (m == ALL or t.municipality == m) and t.in_kcc_hours == inside]
            s = summarise(group, group_t)
            rows.append([municipality_label(m), label, s["conversations"], s["messages"], s["handoffs"],
                         _pct(s["handoff_rate"]), s["tickets"], s["tickets_answered"],
                         _minutes(s["human_first_reply_median_s"]), _minutes(s["handling_time_median_s"])])
    tables["kcc_uren"] = Table(
        "kcc_uren", "Binnen en buiten KCC-uren",
        ["Gemeente", "Moment", "Gesprekken", "Berichten", "Overgedragen", "Overgedragen (%)", "Tickets",
         "Tickets met reactie", "Eerste reactie, mediaan (min)", "Afhandeltijd, mediaan (min)"],
        rows,
        "Gesprekken op het moment van het eerste bericht; tickets op het moment van overdracht.",
    )

    # Topics, intents, top questions, not understood -------------------------
    handled = [m for c in convs for m in c.messages if not m.relayed]
    topic_msgs = Counter(m.topic for m in handled)
    topic_convs = Counter(t for c in convs for t in {m.topic for m in c.messages if not m.relayed})
    rows = [[label, topic_convs.get(key, 0), topic_msgs.get(key, 0), _pct(_rate(topic_msgs.get(key, 0), len(handled)))]
            for key, label in TOPICS if topic_msgs.get(key)]
    rows.sort(key=lambda r: -r[2])
    tables["onderwerpen"] = Table(
        "onderwerpen", "Onderwerpen", ["Onderwerp", "Gesprekken", "Berichten", "Aandeel berichten (%)"], rows,
        "Uit de herkende intentie van elk bericht dat de assistent behandelde (niet de berichten aan een medewerker).",
    )
    intents = Counter("nlu_fallback" if m.not_understood else (m.intent or "onbekend") for m in handled)
    tables["intenties"] = Table(
        "intenties", "Herkende vragen (intenties)", ["Intentie", "Omschrijving", "Berichten"],
        [[name, INTENT_LABELS.get(name, name), count] for name, count in sorted(intents.items(), key=lambda i: (-i[1], i[0]))],
    )
    question_msgs = [m for m in handled if not m.not_understood and topic_of(m.intent) in QUESTION_TOPICS]
    topic_by_text: Dict[str, Counter] = defaultdict(Counter)
    for m in question_msgs:
        topic_by_text[_masked_key(m.text)[1]][TOPIC_LABELS[topic_of(m.intent)]] += 1
    shown, hidden = safe_examples(m.text for m in question_msgs)
    tables["topvragen"] = Table(
        "topvragen", "Meest gestelde vragen (geanonimiseerd)", ["Vraag (gemaskeerd)", "Onderwerp", "Aantal"],
        [[text, topic_by_text[text].most_common(1)[0][0] if topic_by_text[text] else "", count]
         for text, count in shown[:top]],
        f"Alleen vragen die minstens twee keer voorkwamen of waarin persoonsgegevens zijn gemaskeerd; "
        f"{hidden} unieke vraag/vragen niet getoond.",
    )
    not_understood = [m for m in handled if m.not_understood]
    shown, hidden = safe_examples(m.text for m in not_understood)
    tables["niet_begrepen"] = Table(
        "niet_begrepen", "Niet begrepen vragen (geanonimiseerd)", ["Vraag (gemaskeerd)", "Aantal"],
        [[text, count] for text, count in shown[:top]],
        f"{len(not_understood)} niet begrepen bericht(en) in totaal. Alleen teksten die minstens twee keer voorkwamen "
        f"of waarin persoonsgegevens zijn gemaskeerd; {hidden} unieke tekst(en) niet getoond.",
    )

    # Handoff reasons ----------------------------------------------------------
    rows = []
    for reason, label in REASON_LABELS.items():
        count = totals["handoff_reasons"].get(reason, 0)
        reason_tickets = [t for t in tks if t.reason == reason]
        if not count and not reason_tickets:
            continue
        s = summarise([], reason_tickets)
        rows.append([label, count, _pct(_rate(count, totals["handoffs"])), _pct(_rate(count, totals["conversations"])),
                     len(reason_tickets), s["tickets_answered"], _minutes(s["human_first_reply_median_s"]),
                     _minutes(s["handling_time_median_s"])])
    tables["overdracht_redenen"] = Table(
        "overdracht_redenen", "Overdrachten naar het KCC per reden",
        ["Reden", "Gesprekken", "Aandeel van overdrachten (%)", "Aandeel van alle gesprekken (%)", "Tickets",
         "Tickets met reactie", "Eerste reactie, mediaan (min)", "Afhandeltijd, mediaan (min)"],
        rows,
    )

    # Speed --------------------------------------------------------------------
    rows = []
    groups = (("Totaal", None), ("Binnen KCC-uren", True), ("Buiten KCC-uren", False))
    for label, inside in groups:
        values = [m.latency_ms for c in convs for m in c.messages
                  if m.latency_ms is not None and (inside is None or bool(m.in_kcc_hours) == inside)]
        rows.append(["Reactietijd assistent (ms)", label, len(values), _ms(percentile(values, 50)),
                     _ms(percentile(values, 95))])
    for title, attr in (("Eerste reactie medewerker (min)", "first_reply_seconds"),
                        ("Afhandeltijd tot sluiten (min)", "handling_seconds")):
        for label, inside in groups:
            values = [getattr(t, attr) for t in tks
                      if getattr(t, attr) is not None and (inside is None or t.in_kcc_hours == inside)]
            rows.append([title, label, len(values), _minutes(percentile(values, 50)), _minutes(percentile(values, 95))])
    tables["snelheid"] = Table(
        "snelheid", "Snelheid", ["Maat", "Moment", "Aantal", "Mediaan (p50)", "p95"], rows,
        "Reactietijd: van bericht tot eerste antwoord van de assistent. Medewerker: vanaf de overdracht.",
    )

    # Feedback -----------------------------------------------------------------
    rows = []
    for m in [ALL] + municipalities:
        s = totals if m == ALL else by_municipality[m]
        rows.append([municipality_label(m), s["feedback_asked"], s["feedback_up"], s["feedback_down"],
                     _pct(s["feedback_positive_rate"])])
    tables["feedback"] = Table(
        "feedback", "Feedback van inwoners", ["Gemeente", "Gevraagd", "Duim omhoog", "Duim omlaag", "Positief (%)"],
        rows, "Na een feitelijk antwoord vraagt de assistent één keer per inwoner: 'Heb je hier iets aan gehad?'",
    )

    # Chart series -------------------------------------------------------------
    per_day = {m: [0] * len(all_days) for m in municipalities}
    index = {d: i for i, d in enumerate(all_days)}
    for c in convs:
        i = index.get(day_key(c.start))
        if i is not None:
            per_day[c.municipality][i] += 1
    series = {
        "days": all_days,
        "conversations_per_day": per_day,
        "conversations_per_hour": [hours_conv.get(h, 0) for h in range(24)],
        "messages_per_hour": [hours_msg.get(h, 0) for h in range(24)],
        "conversations_per_weekday": [wd_conv.get(d, 0) for d in range(7)],
        "topics": [(row[0], row[2]) for row in tables["onderwerpen"].rows if row[0] not in (
            TOPIC_LABELS["smalltalk"], TOPIC_LABELS["feedback"], TOPIC_LABELS["followup"])],
        "outcomes": [
            ("In één keer beantwoord", totals["one_go"]),
            ("Beantwoord na verduidelijking", totals["contained"] - totals["one_go"]),
            ("Overgedragen aan het KCC", totals["handoffs"]),
            ("Lopend gesprek met medewerker", totals["continued_with_human"]),
        ],
        "reasons": [(REASON_LABELS[r], n) for r, n in totals["handoff_reasons"].items()],
        "latencies_ms": sorted(m.latency_ms for c in convs for m in c.messages if m.latency_ms is not None),
        "first_reply_min": {
            "Binnen KCC-uren": [t.first_reply_seconds / 60 for t in tks if t.in_kcc_hours and t.first_reply_seconds is not None],
            "Buiten KCC-uren": [t.first_reply_seconds / 60 for t in tks if not t.in_kcc_hours and t.first_reply_seconds is not None],
        },
        "feedback": {municipality_label(m): (by_municipality[m]["feedback_up"], by_municipality[m]["feedback_down"])
                     for m in municipalities},
    }
    series["kcc_weekday_hours"] = _common_weekday_kcc_hours(municipalities)
    return ReportData(
        period=period,
        generated_at=dt.datetime.now(TZ),
        municipality_filter=municipality,
        municipalities=municipalities,
        channels=channels,
        totals=totals,
        by_municipality=by_municipality,
        tables=tables,
        series=series,
    )


def _cost(value: Optional[float]) -> Any:
    return RATE_NOT_CONFIGURED if value is None else value


def _pricing_table(sent: Optional[Sequence[SentMessage]], rates: Dict[str, float], totals: Dict[str, Any]) -> Table:
    """Messages sent by the WhatsApp channel per pricing category: billable, not
    billable, the configured rate and the estimated cost."""
    columns = ["Categorie", "Verstuurd", "Gefactureerd", "Niet gefactureerd", "Tarief (EUR per bericht)",
               "Geschatte kosten (EUR)"]
    if sent is None:
        return Table("whatsapp_kosten", "WhatsApp-berichten en kosten", columns, [],
                     "Geen WhatsApp-uitgaande berichten gevonden (geen outbox-tabel in de database).")
    groups: Dict[str, List[SentMessage]] = defaultdict(list)
    for m in sent:
        groups[m.category or UNPRICED].append(m)
    order = [c for c in PRICING_CATEGORY_LABELS if c in groups] + sorted(
        c for c in groups if c not in PRICING_CATEGORY_LABELS and c != UNPRICED)
    if UNPRICED in groups:
        order.append(UNPRICED)
    rows = []
    for category in order:
        group = groups[category]
        billable = sum(1 for m in group if m.billable)
        rate = rates.get(category)
        cost = None if not billable else (round(billable * rate, 4) if rate is not None else None)
        label = PRICING_CATEGORY_LABELS.get(category, category)
        if category == UNPRICED:
            label = "Onbekend (nog geen prijsinformatie van Meta)"
        rows.append([label, len(group), billable, sum(1 for m in group if m.billable is False),
                     rate if rate is not None else RATE_NOT_CONFIGURED,
                     (cost if cost is not None else RATE_NOT_CONFIGURED) if billable else 0.0])
    rows.append(["Totaal", len(sent), totals["whatsapp_billable"],
                 sum(1 for m in sent if m.billable is False), "",
                 _cost(totals["whatsapp_cost_eur"])])
    return Table(
        "whatsapp_kosten", "WhatsApp-berichten en kosten", columns, rows,
        "Berichten die de assistent en het KCC via WhatsApp verstuurden, met de prijscategorie die Meta per bericht "
        "meldt. Kosten zijn een schatting: gefactureerde berichten maal het tarief uit de configuratie "
        "(APPCARE_WHATSAPP_RATE_<CATEGORIE>, euro per bericht); de factuur van Meta of de BSP is leidend.",
    )


def _common_weekday_kcc_hours(municipalities: Sequence[str]) -> Optional[List[str]]:
    """The KCC's Monday-Friday hours when they are the same on all five days in all
    municipalities of the report (for shading the hour chart), else None."""
    from appcare import content

    seen = set()
    for municipality in municipalities or [default_municipality()]:
        try:
            weekly = content.load(municipality).kcc.hours.value
        except Exception:  # noqa: BLE001
            return None
        seen.update(tuple(weekly[day]) for day in WEEKDAYS_NL[:5])
    return list(seen.pop()) if len(seen) == 1 else None


def _noon(day: dt.date) -> float:
    return dt.datetime.combine(day, dt.time(12), tzinfo=TZ).timestamp()


def _unique(items: Iterable[str]) -> List[str]:
    seen: List[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _bucket_numbers(group: Sequence[Conversation]) -> List[Any]:
    return [
        len(group),
        sum(len(c.messages) for c in group),
        sum(1 for c in group if c.in_kcc_hours),
        sum(1 for c in group if c.in_kcc_hours is False),
        sum(1 for c in group if c.contained),
        sum(1 for c in group if c.one_go),
        sum(1 for c in group if c.handed_over),
        sum(c.not_understood for c in group),
        sum(c.feedback_up for c in group),
        sum(c.feedback_down for c in group),
    ]


# --------------------------------------------------------------------------- entry points


def collect(
    period: Period,
    endpoints: Union[str, Path, Dict[str, Any], None] = None,
    tickets_url: Optional[str] = None,
    municipality: Optional[str] = None,
) -> ReportData:
    """Reads both stores and computes the report for ``period``."""
    notes: List[str] = []
    url = tracker_store_url(endpoints)
    events = load_events(url, period)
    conversations = build_conversations(events)
    try:
        tickets = load_tickets(tickets_url, period)
    except sa.exc.SQLAlchemyError as exc:
        logger.warning("ticket store unreadable (%s): no ticket figures", type(exc).__name__)
        notes.append("De ticketgegevens van het KCC konden niet worden gelezen; tijden van medewerkers ontbreken.")
        tickets = []
    try:
        sent = load_sent_messages(tickets_url, period)
    except sa.exc.SQLAlchemyError as exc:
        logger.warning("WhatsApp outbox unreadable (%s): no message figures", type(exc).__name__)
        notes.append("De verstuurde WhatsApp-berichten konden niet worden gelezen; berichten en kosten ontbreken.")
        sent = None
    data = compute(conversations, tickets, period, municipality, sent=sent)
    data.notes.extend(notes)
    return data


def key_figures(
    period_start: Union[dt.date, dt.datetime, str],
    period_end: Union[dt.date, dt.datetime, str],
    municipality: Optional[str] = None,
    *,
    endpoints: Union[str, Path, Dict[str, Any], None] = None,
    tickets_url: Optional[str] = None,
) -> Dict[str, Any]:
    """Key figures for the KCC desk dashboard (JSON-serialisable).

    ``period_start``/``period_end`` as dates (or 'YYYY-MM-DD') are local days with the
    end day included; as datetimes they are instants with the end excluded.
    ``endpoints`` defaults to endpoints.yml in the working directory, ``tickets_url``
    to ``APPCARE_DB_URL``. Rates are fractions (0..1) or None without conversations;
    durations are milliseconds (bot) and seconds (staff).
    """
    period = Period.of(period_start, period_end)
    data = collect(period, endpoints=endpoints, tickets_url=tickets_url, municipality=municipality)
    figures = dict(data.totals)
    figures["handoff_reasons"] = dict(figures["handoff_reasons"])
    figures.update({
        "period_start": period.start.isoformat(),
        "period_end": period.end.isoformat(),
        "municipality": municipality.lower() if municipality else None,
        "municipalities": data.municipalities,
        "channels": data.channels,
    })
    return figures
