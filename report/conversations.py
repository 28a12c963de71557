"""Conversations and citizen messages built from tracker store events (the
definitions are in the docstring of :mod:`report.metrics`), and the handoff tickets and
sent WhatsApp messages linked to them."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence

from appcare.action_names import CLARIFY_ACTION, HANDOFF_ACTION, RELAY_ACTION
from report.kcc_hours import KccHours
from report.labels import default_municipality, topic_of
from report.period import day_key
from report.sources import EventRow, SentMessage, TicketInfo

HANDOFF_INTENT_REASONS = {
    "request_human": "request_human",
    "request_callback": "request_human",
    "urgent": "urgent",
    "personal_case": "personal_case",
    "complaint": "complaint",
    "out_of_scope_municipal": "out_of_scope",
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
FEEDBACK_QUESTION = "utter_ask_feedback"
IGNORED_ACTIONS = frozenset({"action_listen", "action_session_start"})


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


def link_sent_messages(conversations: Sequence[Conversation], sent: Sequence[SentMessage]) -> None:
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
