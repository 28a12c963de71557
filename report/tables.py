"""The report's tables, one function per table, and the series of its charts. Every
function takes the :class:`Scope` of the report: the conversations, tickets and sent
WhatsApp messages of the period (and municipality) with their key figures."""
from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from appcare.staff_labels import intent_labels
from appcare.stats import percentile
from report.conversations import Conversation, link_sent_messages, link_tickets
from report.kcc_hours import common_weekday_kcc_hours
from report.labels import (
    ALL,
    OTHER_INTENT_LABELS,
    QUESTION_TOPICS,
    REASON_LABELS,
    TOPIC_LABELS,
    TOPICS,
    WEEKDAYS_NL,
    channel_label,
    municipality_label,
    topic_of,
)
from report.period import TZ, Period, day_key, local, month_key, week_key
from report.sources import (
    PRICING_CATEGORY_LABELS,
    RATE_NOT_CONFIGURED,
    UNPRICED,
    SentMessage,
    TicketInfo,
    whatsapp_rates,
)
from report.stats import rate, summarise


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
class Scope:
    """What the tables are computed from: the conversations (``convs``), tickets
    (``tks``) and sent WhatsApp messages (``sent``; None: no outbox) of the period and
    municipality, the WhatsApp rates, and the key figures in total and per municipality."""

    period: Period
    convs: List[Conversation]
    tks: List[TicketInfo]
    sent: Optional[List[SentMessage]]
    rates: Dict[str, float]
    municipalities: List[str]
    channels: List[str]
    combos: List[Tuple[str, str]]  # (municipality, channel) pairs that occur
    totals: Dict[str, Any]
    by_municipality: Dict[str, Dict[str, Any]]


def select(
    conversations: Sequence[Conversation],
    tickets: Sequence[TicketInfo],
    period: Period,
    municipality: Optional[str] = None,
    sent: Optional[Sequence[SentMessage]] = None,
) -> Scope:
    """Links tickets and sent messages to their conversations, keeps those of the period
    (and ``municipality``, lower case) and computes the key figures."""
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
    combos = sorted({(c.municipality, c.channel) for c in convs} | {(t.municipality, t.channel) for t in tks})
    return Scope(period=period, convs=convs, tks=tks, sent=sent, rates=rates, municipalities=municipalities,
                 channels=channels, combos=combos, totals=totals, by_municipality=by_municipality)


# --------------------------------------------------------------------------- formatting


def _minutes(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else round(seconds / 60.0, 1)


def _ms(value: Optional[float]) -> Optional[int]:
    return None if value is None else int(round(value))


def _pct(fraction: Optional[float]) -> Optional[float]:
    return None if fraction is None else round(fraction * 100.0, 1)


def _cost(value: Optional[float]) -> Any:
    return RATE_NOT_CONFIGURED if value is None else value


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


def _handled(scope: Scope) -> List[Any]:
    """The citizen messages the assistant handled (not relayed to a colleague)."""
    return [m for c in scope.convs for m in c.messages if not m.relayed]


# --------------------------------------------------------------------------- tables


def key_figures_table(scope: Scope) -> Table:
    """kerncijfers: the key figures, in total and per municipality."""
    totals, by_municipality, municipalities = scope.totals, scope.by_municipality, scope.municipalities
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
    if scope.sent is None:  # no outbox table: no WhatsApp message figures at all
        key_rows = [row for row in key_rows if not row[1].startswith("whatsapp_")]
    rows = []
    for label, key, fmt in key_rows:
        fmt = fmt or (lambda v: v)
        rows.append([label, fmt(totals[key])] + [fmt(by_municipality[m][key]) for m in municipalities])
    return Table("kerncijfers", "Kerncijfers", columns, rows,
                 "Percentages zijn van alle gesprekken; tijden van tickets die in de periode zijn aangemaakt.")


def whatsapp_costs_table(scope: Scope) -> Table:
    """whatsapp_kosten: messages sent by the WhatsApp channel per pricing category:
    billable, not billable, the configured rate and the estimated cost."""
    sent, rates, totals = scope.sent, scope.rates, scope.totals
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
        category_rate = rates.get(category)
        cost = None if not billable else (round(billable * category_rate, 4) if category_rate is not None else None)
        label = PRICING_CATEGORY_LABELS.get(category, category)
        if category == UNPRICED:
            label = "Onbekend (nog geen prijsinformatie van Meta)"
        rows.append([label, len(group), billable, sum(1 for m in group if m.billable is False),
                     category_rate if category_rate is not None else RATE_NOT_CONFIGURED,
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


def municipality_channel_table(scope: Scope) -> Table:
    """per_gemeente_kanaal: the main figures per municipality and channel."""
    convs, tks = scope.convs, scope.tks
    rows = []
    for m, ch in scope.combos:
        s = summarise([c for c in convs if c.municipality == m and c.channel == ch],
                      [t for t in tks if t.municipality == m and t.channel == ch])
        rows.append([municipality_label(m), channel_label(ch), s["conversations"], s["messages"],
                     _pct(s["containment_rate"]), _pct(s["one_go_rate"]), s["handoffs"], _pct(s["handoff_rate"]),
                     s["not_understood"], _ms(s["bot_latency_ms_p50"]), _ms(s["bot_latency_ms_p95"]),
                     _minutes(s["human_first_reply_median_s"]), s["feedback_up"], s["feedback_down"]])
    return Table(
        "per_gemeente_kanaal", "Per gemeente en kanaal",
        ["Gemeente", "Kanaal", "Gesprekken", "Berichten", "Zelf beantwoord (%)", "In één keer (%)",
         "Overgedragen", "Overgedragen (%)", "Niet begrepen", "Reactietijd p50 (ms)", "Reactietijd p95 (ms)",
         "Eerste reactie medewerker, mediaan (min)", "Duim omhoog", "Duim omlaag"],
        rows,
    )


BUCKET_COLUMNS = ["Gemeente", "Kanaal", "Gesprekken", "Berichten", "Binnen KCC-uren", "Buiten KCC-uren",
                  "Zelf beantwoord", "In één keer", "Overgedragen", "Niet begrepen", "Duim omhoog", "Duim omlaag"]


def _bucket_table(scope: Scope, name: str, title: str, first_column: str, key_fn, keys: List[str]) -> Table:
    """Conversations per period bucket (day, week, month), in total and per municipality and channel."""
    grouped: Dict[Tuple[str, str, str], List[Conversation]] = defaultdict(list)
    for c in scope.convs:
        grouped[(key_fn(c.start), c.municipality, c.channel)].append(c)
        grouped[(key_fn(c.start), ALL, ALL)].append(c)
    rows = []
    for key in keys:
        for m, ch in [(ALL, ALL)] + scope.combos:
            group = grouped.get((key, m, ch), [])
            if not group and (m, ch) != (ALL, ALL):
                continue
            rows.append([key, municipality_label(m), channel_label(ch)] + _bucket_numbers(group))
    return Table(name, title, [first_column] + BUCKET_COLUMNS, rows,
                 "Een gesprek telt op de dag van het eerste bericht (Nederlandse tijd).")


def per_day_table(scope: Scope) -> Table:
    """per_dag: every day of the period."""
    return _bucket_table(scope, "per_dag", "Per dag", "Dag", day_key, [d.isoformat() for d in scope.period.days()])


def per_week_table(scope: Scope) -> Table:
    """per_week: every ISO week of the period."""
    return _bucket_table(scope, "per_week", "Per week", "Week", week_key,
                         _unique(week_key(_noon(d)) for d in scope.period.days()))


def per_month_table(scope: Scope) -> Table:
    """per_maand: every month of the period."""
    return _bucket_table(scope, "per_maand", "Per maand", "Maand", month_key,
                         _unique(month_key(_noon(d)) for d in scope.period.days()))


def per_hour_table(scope: Scope) -> Table:
    """per_uur: conversations and messages per hour of the day."""
    convs, municipalities = scope.convs, scope.municipalities
    hours_conv = Counter(local(c.start).hour for c in convs)
    hours_msg = Counter(local(m.ts).hour for c in convs for m in c.messages)
    hours_by_mun = {m: Counter(local(c.start).hour for c in convs if c.municipality == m) for m in municipalities}
    return Table(
        "per_uur", "Per uur van de dag",
        ["Uur", "Gesprekken", "Berichten"] + [f"Gesprekken {municipality_label(m)}" for m in municipalities],
        [[f"{h:02d}:00-{h:02d}:59", hours_conv.get(h, 0), hours_msg.get(h, 0)]
         + [hours_by_mun[m].get(h, 0) for m in municipalities] for h in range(24)],
        "Gesprekken op het uur van het eerste bericht, berichten op hun eigen tijdstip (Nederlandse tijd).",
    )


def per_weekday_table(scope: Scope) -> Table:
    """per_weekdag: conversations and messages per day of the week."""
    convs, municipalities = scope.convs, scope.municipalities
    wd_conv = Counter(local(c.start).weekday() for c in convs)
    wd_msg = Counter(local(m.ts).weekday() for c in convs for m in c.messages)
    wd_by_mun = {m: Counter(local(c.start).weekday() for c in convs if c.municipality == m) for m in municipalities}
    return Table(
        "per_weekdag", "Per dag van de week",
        ["Weekdag", "Gesprekken", "Berichten"] + [f"Gesprekken {municipality_label(m)}" for m in municipalities],
        [[WEEKDAYS_NL[d], wd_conv.get(d, 0), wd_msg.get(d, 0)] + [wd_by_mun[m].get(d, 0) for m in municipalities]
         for d in range(7)],
    )


def kcc_hours_table(scope: Scope) -> Table:
    """kcc_uren: conversations and tickets inside and outside KCC hours."""
    convs, tks = scope.convs, scope.tks
    rows = []
    for m in [ALL] + scope.municipalities:
        for inside, label in ((True, "Binnen KCC-uren"), (False, "Buiten KCC-uren")):
            group = [c for c in convs if (m == ALL or c.municipality == m) and bool(c.in_kcc_hours) == inside]
            group_t = [t for t in tks if (m == ALL or t.municipality == m) and t.in_kcc_hours == inside]
            s = summarise(group, group_t)
            rows.append([municipality_label(m), label, s["conversations"], s["messages"], s["handoffs"],
                         _pct(s["handoff_rate"]), s["tickets"], s["tickets_answered"],
                         _minutes(s["human_first_reply_median_s"]), _minutes(s["handling_time_median_s"])])
    return Table(
        "kcc_uren", "Binnen en buiten KCC-uren",
        ["Gemeente", "Moment", "Gesprekken", "Berichten", "Overgedragen", "Overgedragen (%)", "Tickets",
         "Tickets met reactie", "Eerste reactie, mediaan (min)", "Afhandeltijd, mediaan (min)"],
        rows,
        "Gesprekken op het moment van het eerste bericht; tickets op het moment van overdracht.",
    )


def topics_table(scope: Scope) -> Table:
    """onderwerpen: handled messages and conversations per topic group."""
    handled = _handled(scope)
    topic_msgs = Counter(m.topic for m in handled)
    topic_convs = Counter(t for c in scope.convs for t in {m.topic for m in c.messages if not m.relayed})
    rows = [[label, topic_convs.get(key, 0), topic_msgs.get(key, 0), _pct(rate(topic_msgs.get(key, 0), len(handled)))]
            for key, label in TOPICS if topic_msgs.get(key)]
    rows.sort(key=lambda r: -r[2])
    return Table(
        "onderwerpen", "Onderwerpen", ["Onderwerp", "Gesprekken", "Berichten", "Aandeel berichten (%)"], rows,
        "Uit de herkende intentie van elk bericht dat de assistent behandelde (niet de berichten aan een medewerker).",
    )


def intents_table(scope: Scope) -> Table:
    """intenties: handled messages per recognised intent."""
    intents = Counter("nlu_fallback" if m.not_understood else (m.intent or "onbekend") for m in _handled(scope))
    intent_names = intent_labels()
    return Table(
        "intenties", "Herkende vragen (intenties)", ["Intentie", "Omschrijving", "Berichten"],
        [[name, intent_names.get(name) or OTHER_INTENT_LABELS.get(name, name), count]
         for name, count in sorted(intents.items(), key=lambda i: (-i[1], i[0]))],
    )


def top_questions_table(scope: Scope, top: int = 15) -> Table:
    """topvragen: the ``top`` most asked questions, masked (see :func:`safe_examples`)."""
    question_msgs = [m for m in _handled(scope) if not m.not_understood and topic_of(m.intent) in QUESTION_TOPICS]
    topic_by_text: Dict[str, Counter] = defaultdict(Counter)
    for m in question_msgs:
        topic_by_text[_masked_key(m.text)[1]][TOPIC_LABELS[topic_of(m.intent)]] += 1
    shown, hidden = safe_examples(m.text for m in question_msgs)
    return Table(
        "topvragen", "Meest gestelde vragen (geanonimiseerd)", ["Vraag (gemaskeerd)", "Onderwerp", "Aantal"],
        [[text, topic_by_text[text].most_common(1)[0][0] if topic_by_text[text] else "", count]
         for text, count in shown[:top]],
        f"Alleen vragen die minstens twee keer voorkwamen of waarin persoonsgegevens zijn gemaskeerd; "
        f"{hidden} unieke vraag/vragen niet getoond.",
    )


def not_understood_table(scope: Scope, top: int = 15) -> Table:
    """niet_begrepen: the ``top`` most frequent messages the assistant did not understand, masked."""
    not_understood = [m for m in _handled(scope) if m.not_understood]
    shown, hidden = safe_examples(m.text for m in not_understood)
    return Table(
        "niet_begrepen", "Niet begrepen vragen (geanonimiseerd)", ["Vraag (gemaskeerd)", "Aantal"],
        [[text, count] for text, count in shown[:top]],
        f"{len(not_understood)} niet begrepen bericht(en) in totaal. Alleen teksten die minstens twee keer voorkwamen "
        f"of waarin persoonsgegevens zijn gemaskeerd; {hidden} unieke tekst(en) niet getoond.",
    )


def handoff_reasons_table(scope: Scope) -> Table:
    """overdracht_redenen: handoffs to the KCC per reason, with their tickets' times."""
    totals = scope.totals
    rows = []
    for reason, label in REASON_LABELS.items():
        count = totals["handoff_reasons"].get(reason, 0)
        reason_tickets = [t for t in scope.tks if t.reason == reason]
        if not count and not reason_tickets:
            continue
        s = summarise([], reason_tickets)
        rows.append([label, count, _pct(rate(count, totals["handoffs"])), _pct(rate(count, totals["conversations"])),
                     len(reason_tickets), s["tickets_answered"], _minutes(s["human_first_reply_median_s"]),
                     _minutes(s["handling_time_median_s"])])
    return Table(
        "overdracht_redenen", "Overdrachten naar het KCC per reden",
        ["Reden", "Gesprekken", "Aandeel van overdrachten (%)", "Aandeel van alle gesprekken (%)", "Tickets",
         "Tickets met reactie", "Eerste reactie, mediaan (min)", "Afhandeltijd, mediaan (min)"],
        rows,
    )


def speed_table(scope: Scope) -> Table:
    """snelheid: reply times of the assistant and of KCC staff, inside and outside KCC hours."""
    rows = []
    groups = (("Totaal", None), ("Binnen KCC-uren", True), ("Buiten KCC-uren", False))
    for label, inside in groups:
        values = [m.latency_ms for c in scope.convs for m in c.messages
                  if m.latency_ms is not None and (inside is None or bool(m.in_kcc_hours) == inside)]
        rows.append(["Reactietijd assistent (ms)", label, len(values), _ms(percentile(values, 50)),
                     _ms(percentile(values, 95))])
    for title, attr in (("Eerste reactie medewerker (min)", "first_reply_seconds"),
                        ("Afhandeltijd tot sluiten (min)", "handling_seconds")):
        for label, inside in groups:
            values = [getattr(t, attr) for t in scope.tks
                      if getattr(t, attr) is not None and (inside is None or t.in_kcc_hours == inside)]
            rows.append([title, label, len(values), _minutes(percentile(values, 50)),
                         _minutes(percentile(values, 95))])
    return Table(
        "snelheid", "Snelheid", ["Maat", "Moment", "Aantal", "Mediaan (p50)", "p95"], rows,
        "Reactietijd: van bericht tot eerste antwoord van de assistent. Medewerker: vanaf de overdracht.",
    )


def feedback_table(scope: Scope) -> Table:
    """feedback: the feedback question and the thumbs up/down, in total and per municipality."""
    rows = []
    for m in [ALL] + scope.municipalities:
        s = scope.totals if m == ALL else scope.by_municipality[m]
        rows.append([municipality_label(m), s["feedback_asked"], s["feedback_up"], s["feedback_down"],
                     _pct(s["feedback_positive_rate"])])
    return Table(
        "feedback", "Feedback van inwoners", ["Gemeente", "Gevraagd", "Duim omhoog", "Duim omlaag", "Positief (%)"],
        rows, "Na een feitelijk antwoord vraagt de assistent één keer per inwoner: 'Heb je hier iets aan gehad?'",
    )


# --------------------------------------------------------------------------- charts


def chart_series(scope: Scope, topics: Table) -> Dict[str, Any]:
    """The data of the report's charts; ``topics`` is the :func:`topics_table`."""
    convs, tks, totals, municipalities = scope.convs, scope.tks, scope.totals, scope.municipalities
    by_municipality = scope.by_municipality
    all_days = [d.isoformat() for d in scope.period.days()]
    per_day = {m: [0] * len(all_days) for m in municipalities}
    index = {d: i for i, d in enumerate(all_days)}
    for c in convs:
        i = index.get(day_key(c.start))
        if i is not None:
            per_day[c.municipality][i] += 1
    hours_conv = Counter(local(c.start).hour for c in convs)
    hours_msg = Counter(local(m.ts).hour for c in convs for m in c.messages)
    wd_conv = Counter(local(c.start).weekday() for c in convs)
    series = {
        "days": all_days,
        "conversations_per_day": per_day,
        "conversations_per_hour": [hours_conv.get(h, 0) for h in range(24)],
        "messages_per_hour": [hours_msg.get(h, 0) for h in range(24)],
        "conversations_per_weekday": [wd_conv.get(d, 0) for d in range(7)],
        "topics": [(row[0], row[2]) for row in topics.rows if row[0] not in (
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
    series["kcc_weekday_hours"] = common_weekday_kcc_hours(municipalities)
    return series
