"""The editors' "niet begrepen" inbox: citizen messages the bot did not understand,
read from Rasa's tracker store (the ``events`` table of the SQL tracker store of
endpoints.yml) and masked before anything is stored or shown.

A citizen message is *not understood* when, in its turn,

* NLU gave the intent ``nlu_fallback`` (reason ``fallback``), or
* the bot asked a clarifying question (``action_clarify``; reason ``clarify``), or
* it ended in a handoff because the bot did not understand (``action_clarify``
  handing over after the second miss, or ``action_handoff_to_kcc`` right after a
  clarifying question; reason ``handoff``), or
* the top intent had a confidence below the threshold (default 0.6; reason
  ``low_confidence``).

Messages relayed to a KCC colleague during a handoff, staff actions (``EXTERNAL_*``
intents) and button clicks (``/intent`` payloads) are no citizen questions and are
skipped. Only the masked text, a pseudonym of the sender (``pii.conversation_hash``),
the intent and its confidence are kept.
"""
from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple, Union
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from appcare import pii, tracker_store
from appcare.action_names import CLARIFY_ACTION, HANDOFF_ACTION, RELAY_ACTION
from appcare.tracker_store import EventRow

TZ = ZoneInfo("Europe/Amsterdam")
FALLBACK_INTENT = "nlu_fallback"
LISTEN_ACTION = "action_listen"
REASON_LABELS = {
    "fallback": "niet herkend",
    "clarify": "verduidelijkingsvraag",
    "handoff": "doorgezet: niet begrepen",
    "low_confidence": "onzeker",
}
STALE_TURN_SECONDS = 600  # a turn without action_listen after this long counts as complete

# ------------------------------------------------------------------ tracker store
@dataclass
class Missed:
    event_id: int
    sender_hash: str
    ts: float
    text: str  # masked
    intent: Optional[str]
    confidence: Optional[float]
    reason: str

    @property
    def week(self) -> str:
        return week_key(self.ts)


def week_key(ts: float) -> str:
    year, week, _ = dt.datetime.fromtimestamp(ts, TZ).isocalendar()
    return f"{year}-W{week:02d}"


def tracker_store_url(endpoints: Union[str, Path], project_dir: Optional[Path] = None) -> sa.engine.URL:
    """SQLAlchemy URL of the SQL tracker store in ``endpoints`` (as the report reads it);
    a relative SQLite path is relative to the project directory (Rasa's working dir)."""
    base = Path(project_dir) if project_dir else Path(endpoints).resolve().parent
    return tracker_store.tracker_store_url(endpoints, base_dir=base)


def read_events(url: sa.engine.URL, after_id: int, limit: int = 5000) -> List[EventRow]:
    """Events with an id above ``after_id`` (oldest first); [] when there is no store yet."""
    if tracker_store.sqlite_missing(url):
        return []
    engine = tracker_store.engine(url)
    if not sa.inspect(engine).has_table("events"):
        return []
    events = tracker_store.events_table()
    query = sa.select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)
    with engine.connect() as connection:
        return [tracker_store.event_row(row) for row in connection.execute(query)]


# ------------------------------------------------------------------ detection
@dataclass
class _Turn:
    user: EventRow
    actions: List[str]
    handed_over: bool = False
    complete: bool = False


def _intent(event: EventRow) -> Tuple[Optional[str], Optional[float]]:
    parse = event.data.get("parse_data") or {}
    intent = parse.get("intent") or {}
    name = intent.get("name") or event.intent_name
    confidence = intent.get("confidence")
    return name, (float(confidence) if confidence is not None else None)


def classify(turn: _Turn, previous_clarified: bool, low_confidence: float) -> Optional[str]:
    """The reason a turn counts as not understood, or None."""
    text = str(turn.user.data.get("text") or "").strip()
    intent, confidence = _intent(turn.user)
    if not text or text.startswith("/") or (intent or "").startswith("EXTERNAL_"):
        return None
    if RELAY_ACTION in turn.actions:
        return None
    if CLARIFY_ACTION in turn.actions:
        return "handoff" if turn.handed_over else "clarify"
    if intent == FALLBACK_INTENT:
        return "fallback"
    if HANDOFF_ACTION in turn.actions and previous_clarified and intent != "request_human":
        return "handoff"
    if confidence is not None and confidence < low_confidence:
        return "low_confidence"
    return None


def scan(
    events: Iterable[EventRow],
    low_confidence: float = 0.6,
    now: Optional[float] = None,
    clarified_before: Optional[Dict[str, bool]] = None,
) -> Tuple[List[Missed], Optional[int], Dict[str, bool], List[str]]:
    """Finds not-understood messages in events (ordered by id).

    Returns (items, hold_before, clarified, upgrades): ``hold_before`` is the id of the
    first user event whose turn is not finished yet (read again next time; None when
    everything was complete), ``clarified`` per sender hash whether its last turn was
    a clarifying question, ``upgrades`` the sender hashes whose previous clarify item
    ended in a handoff in this batch (its reason becomes ``handoff``)."""
    now = time.time() if now is None else now
    by_sender: Dict[str, List[EventRow]] = defaultdict(list)
    for event in events:
        by_sender[event.sender_id].append(event)
    items: List[Missed] = []
    hold: Optional[int] = None
    clarified: Dict[str, bool] = dict(clarified_before or {})
    upgrades: List[str] = []
    for sender, sender_events in by_sender.items():
        sender_events.sort(key=lambda e: e.id)
        digest = pii.conversation_hash(sender)
        turns: List[_Turn] = []
        turn: Optional[_Turn] = None
        for event in sender_events:
            if event.type_name == "user":
                if turn is not None:
                    turn.complete = True
                turn = _Turn(event, [])
                turns.append(turn)
            elif turn is None:
                continue
            elif event.type_name == "action":
                name = event.data.get("name") or event.action_name or ""
                if name == LISTEN_ACTION:
                    if turn.actions:
                        turn.complete = True
                        turn = None
                    continue
                turn.actions.append(name)
            elif event.type_name == "slot" and event.data.get("name") == "handoff_active" and event.data.get("value") is True:
                turn.handed_over = True
            elif event.type_name == "session_started":
                turn.complete = True
                turn = None
        previous_clarified = clarified.get(digest, False)
        last_item: Optional[Missed] = None
        for current in turns:
            if not current.complete and now - current.user.timestamp < STALE_TURN_SECONDS:
                hold = current.user.id if hold is None else min(hold, current.user.id)
                break
            reason = classify(current, previous_clarified, low_confidence)
            if HANDOFF_ACTION in current.actions and previous_clarified:
                if last_item is not None and last_item.reason == "clarify":
                    last_item.reason = "handoff"
                elif last_item is None:
                    upgrades.append(digest)
            if reason is not None:
                intent, confidence = _intent(current.user)
                last_item = Missed(
                    event_id=current.user.id, sender_hash=digest, ts=current.user.timestamp,
                    text=pii.mask(str(current.user.data.get("text") or "").strip())[:1000],
                    intent=intent, confidence=confidence, reason=reason,
                )
                items.append(last_item)
            previous_clarified = CLARIFY_ACTION in current.actions and not current.handed_over
            clarified[digest] = previous_clarified
    return items, hold, clarified, upgrades
