"""The key figures of a set of conversations, tickets and sent WhatsApp messages
(JSON-serialisable): counts, rates, latency and handling-time percentiles, feedback
and WhatsApp cost. The percentile function itself is :func:`appcare.stats.percentile`."""
from __future__ import annotations

from collections import Counter
from typing import Any, Dict, Optional, Sequence

from appcare.stats import percentile
from report.conversations import Conversation
from report.labels import REASON_LABELS
from report.sources import UNPRICED, SentMessage, TicketInfo, whatsapp_rates


def rate(part: int, whole: int) -> Optional[float]:
    """``part / whole`` rounded to 4 decimals; None without a whole."""
    return round(part / whole, 4) if whole else None


def rounded(value: Optional[float], digits: int = 1) -> Optional[float]:
    """``round(value, digits)``; None stays None."""
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
        "containment_rate": rate(contained, n),
        "one_go": one_go,
        "one_go_rate": rate(one_go, n),
        "handoffs": len(handed),
        "handoff_rate": rate(len(handed), n),
        "handoff_reasons": {reason: reasons.get(reason, 0) for reason in REASON_LABELS if reasons.get(reason)},
        "continued_with_human": sum(1 for c in conversations if c.relayed and not c.handed_over),
        "not_understood": sum(1 for m in messages if m.not_understood),
        "conversations_with_clarification": sum(1 for c in conversations if c.clarified),
        "bot_latency_ms_p50": rounded(percentile(latencies, 50)),
        "bot_latency_ms_p95": rounded(percentile(latencies, 95)),
        "bot_replies_measured": len(latencies),
        "tickets": len(tickets),
        "tickets_answered": len(first_replies),
        "tickets_closed": sum(1 for t in tickets if t.closed is not None),
        "human_first_reply_median_s": rounded(percentile(first_replies, 50)),
        "human_first_reply_p95_s": rounded(percentile(first_replies, 95)),
        "handling_time_median_s": rounded(percentile(handling, 50)),
        "handling_time_p95_s": rounded(percentile(handling, 95)),
        "feedback_asked": sum(c.feedback_asked for c in conversations),
        "feedback_up": up,
        "feedback_down": down,
        "feedback_positive_rate": rate(up, up + down),
        **pricing_summary(conversations, sent, rates),
    }


def pricing_summary(
    conversations: Sequence[Conversation], sent: Optional[Sequence[SentMessage]],
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
        "whatsapp_messages_per_conversation": rounded(len(sent) / wa_conversations, 2) if wa_conversations else None,
        "whatsapp_messages_priced": sum(1 for m in sent if m.category or m.billable is not None),
        "whatsapp_billable": sum(billable.values()),
        "whatsapp_billable_by_category": dict(sorted(billable.items())),
        "whatsapp_cost_by_category_eur": dict(sorted(cost_by_category.items())),
        "whatsapp_cost_eur": round(sum(cost_by_category.values()), 2) if available and complete and rates else None,
        "whatsapp_rates_configured": bool(rates) and complete,
    }
