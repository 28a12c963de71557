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

The report's modules, one job each: :mod:`report.labels` (Dutch labels, topic groups),
:mod:`report.period` (the period, local days), :mod:`report.sources` (reading the
tracker store, tickets and WhatsApp outbox; rates), :mod:`report.kcc_hours`,
:mod:`report.conversations` (conversations from events), :mod:`report.stats` (key
figures) and :mod:`report.tables` (one function per table, chart series). This module
puts them together: :func:`compute`, :func:`collect` and :func:`key_figures`, plus
:func:`percentile` (appcare.stats); it re-exports the names other code imports from it.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import sqlalchemy as sa

from appcare.stats import percentile  # noqa: F401  (re-exported)
from report import tables as _tables
from report.conversations import (  # noqa: F401  (re-exported)
    CLARIFY_ACTION,
    FEEDBACK_QUESTION,
    HANDOFF_ACTION,
    HANDOFF_INTENT_REASONS,
    IGNORED_ACTIONS,
    RELAY_ACTION,
    REPHRASE_RESPONSES,
    Conversation,
    Message,
    build_conversations,
    link_sent_messages,
    link_tickets,
)
from report.kcc_hours import KccHours  # noqa: F401  (re-exported)
from report.labels import (  # noqa: F401  (re-exported)
    ALL,
    CHANNEL_LABELS,
    MONTHS_NL,
    OTHER_INTENT_LABELS,
    QUESTION_TOPICS,
    REASON_LABELS,
    TOPIC_LABELS,
    TOPICS,
    WEEKDAYS_NL,
    channel_label,
    default_municipality,
    municipality_label,
    topic_of,
)
from report.period import TZ, UTC, Period, day_key, local, month_key, week_key  # noqa: F401  (re-exported)
from report.sources import (  # noqa: F401  (re-exported)
    DEFAULT_ENDPOINTS,
    MARGIN_SECONDS,
    OUTBOX_TABLE,
    PRICING_CATEGORY_LABELS,
    RATE_ENV_PREFIX,
    RATE_NOT_CONFIGURED,
    UNPRICED,
    EventRow,
    SentMessage,
    TicketInfo,
    dispose_engines,
    load_events,
    load_sent_messages,
    load_tickets,
    tracker_store_url,
    whatsapp_rates,
)
from report.stats import pricing_summary, summarise  # noqa: F401  (re-exported)
from report.tables import Table, safe_examples  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- report data


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
    scope = _tables.select(conversations, tickets, period, municipality, sent)
    report_tables = [
        _tables.key_figures_table(scope),
        _tables.whatsapp_costs_table(scope),
        _tables.municipality_channel_table(scope),
        _tables.per_day_table(scope),
        _tables.per_week_table(scope),
        _tables.per_month_table(scope),
        _tables.per_hour_table(scope),
        _tables.per_weekday_table(scope),
        _tables.kcc_hours_table(scope),
        _tables.topics_table(scope),
        _tables.intents_table(scope),
        _tables.top_questions_table(scope, top),
        _tables.not_understood_table(scope, top),
        _tables.handoff_reasons_table(scope),
        _tables.speed_table(scope),
        _tables.feedback_table(scope),
    ]
    by_name = {table.name: table for table in report_tables}
    return ReportData(
        period=period,
        generated_at=dt.datetime.now(TZ),
        municipality_filter=municipality,
        municipalities=scope.municipalities,
        channels=scope.channels,
        totals=scope.totals,
        by_municipality=scope.by_municipality,
        tables=by_name,
        series=_tables.chart_series(scope, by_name["onderwerpen"]),
    )


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
