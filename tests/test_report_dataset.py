"""A small, hand-computed set of conversations for the report tests.

Events are written with Rasa's own SQLTrackerStore, DialogueStateTracker and event
classes (not raw SQL); tickets through appcare's HandoffStore. All times are local
(Europe/Amsterdam). The expected figures in ``EXPECTED`` were computed by hand from
the scripts below (see the comments next to each conversation).

Period 2026-03-02 (Mon) .. 2026-03-08 (Sun), before the DST change of 29 March (CET):

C1  terneuzen whatsapp Mon 10:00  passport_fees (200 ms) + thumbs up (100 ms)          one go, KCC open
C2  terneuzen whatsapp Mon 20:00  opening_hours (300 ms), feedback asked, "nee" (150)   one go, thumbs down
C3  lelystad  rest     Tue 09:15  opening_hours (400), fallback+clarify (500), button (600)  contained, not one go
C4  terneuzen whatsapp Wed 14:00  complaint with phone number -> handoff (500); relayed "hallo?"; staff reply
C5  lelystad  whatsapp Sat 23:30  fallback+clarify (300), fallback -> handoff not_understood (400)
C6  terneuzen whatsapp, a sender WITHOUT session events: Fri 08:00 marriage_costs (250) and
    Sat 00:10 thanks (150): two conversations (one per local day), no municipality in metadata
X1/X2 outside the period: Sun 1 March 23:59 and Mon 9 March 00:00:30.
Tickets: T1 (C4) created Wed 14:00:00, first staff reply 14:20 (set_delivery), closed 15:00;
         T2 (C5) created Sat 23:30:05 outside KCC hours, first staff message Mon 09:00 (row only), open.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, List, Optional
from unittest import mock
from zoneinfo import ZoneInfo

import pytest

TZ = ZoneInfo("Europe/Amsterdam")
UTC = dt.timezone.utc


def ts(local_text: str) -> float:
    """Epoch seconds of a local Europe/Amsterdam time 'YYYY-MM-DD HH:MM[:SS]'."""
    return dt.datetime.fromisoformat(local_text).replace(tzinfo=TZ).timestamp()


def utc_naive(local_text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(local_text).replace(tzinfo=TZ).astimezone(UTC).replace(tzinfo=None)


class Script:
    """The events of one sender, built with Rasa's event classes."""

    def __init__(self, sender: str):
        self.sender = sender
        self.events: List[Any] = []

    def session(self, when: float) -> "Script":
        from rasa.shared.core.events import ActionExecuted, SessionStarted

        self.events += [
            ActionExecuted("action_session_start", timestamp=when),
            SessionStarted(timestamp=when),
            ActionExecuted("action_listen", timestamp=when),
        ]
        return self

    def user(self, when: float, text: str, intent: str, channel: str = "rest",
             metadata: Optional[Dict[str, Any]] = None) -> "Script":
        from rasa.shared.core.events import UserUttered

        intent_data = {"name": intent, "confidence": 0.93}
        parse = {"text": text, "intent": intent_data, "entities": [], "intent_ranking": [intent_data]}
        self.events.append(UserUttered(text, intent=intent_data, parse_data=parse, timestamp=when,
                                       input_channel=channel, metadata=metadata or {}))
        return self

    def action(self, when: float, name: str) -> "Script":
        from rasa.shared.core.events import ActionExecuted

        self.events.append(ActionExecuted(name, policy="RulePolicy", confidence=1.0, timestamp=when))
        return self

    def bot(self, when: float, utter: Optional[str], text: str = "antwoord") -> "Script":
        from rasa.shared.core.events import BotUttered

        metadata = {"utter_action": utter} if utter else {}
        self.events.append(BotUttered(text, data={}, metadata=metadata, timestamp=when))
        return self

    def slot(self, when: float, name: str, value: Any) -> "Script":
        from rasa.shared.core.events import SlotSet

        self.events.append(SlotSet(name, value, timestamp=when))
        return self

    def listen(self, when: float) -> "Script":
        return self.action(when, "action_listen")


def _domain():
    from tests.conftest import domain

    return domain()


def save_scripts(store, scripts: List[Script]) -> None:
    """Saves each sender's tracker with Rasa's SQLTrackerStore."""
    from rasa.shared.core.trackers import DialogueStateTracker

    async def _save() -> None:
        for script in scripts:
            tracker = DialogueStateTracker.from_events(script.sender, script.events, slots=_domain().slots)
            await store.save(tracker)

    asyncio.run(_save())


def sqlite_tracker_store(path: Path):
    from rasa.core.tracker_store import SQLTrackerStore

    return SQLTrackerStore(domain=_domain(), dialect="sqlite", db=str(path))


WA = {"channel": "whatsapp", "delay_seconds": 1.2}


def scripts() -> List[Script]:
    c1 = Script("31612340001").session(ts("2026-03-02 10:00:00"))
    t = ts("2026-03-02 10:00:01")
    c1.user(t, "Wat kost een paspoort?", "passport_fees", "whatsapp", dict(WA, municipality="terneuzen"))
    c1.action(t + 0.1, "action_passport_id").slot(t + 0.1, "municipality", "terneuzen")
    c1.bot(t + 0.2, "utter_passport_fee").bot(t + 0.25, "utter_ask_feedback")
    c1.slot(t + 0.25, "feedback_asked", True).slot(t + 0.25, "pending_question", "feedback").listen(t + 0.3)
    t = ts("2026-03-02 10:00:30")
    c1.user(t, "/feedback_positive", "feedback_positive", "whatsapp", dict(WA, municipality="terneuzen"))
    c1.action(t + 0.05, "action_record_feedback").bot(t + 0.1, "utter_feedback_positive")
    c1.slot(t + 0.1, "pending_question", None).listen(t + 0.2)

    c2 = Script("31612340002").session(ts("2026-03-02 20:00:00"))
    t = ts("2026-03-02 20:00:00")
    c2.user(t, "Wanneer is het gemeentehuis open", "opening_hours", "whatsapp", dict(WA, municipality="terneuzen"))
    c2.action(t + 0.1, "action_opening_hours").bot(t + 0.3, "utter_hours_week").bot(t + 0.35, "utter_ask_feedback")
    c2.slot(t + 0.35, "pending_question", "feedback").listen(t + 0.4)
    t = ts("2026-03-02 20:01:00")
    c2.user(t, "nee", "deny", "whatsapp", dict(WA, municipality="terneuzen"))
    c2.action(t + 0.1, "action_handle_yes_no").bot(t + 0.15, "utter_feedback_negative")
    c2.slot(t + 0.15, "pending_question", None).listen(t + 0.2)

    c3 = Script("web-visitor-3").session(ts("2026-03-03 09:15:00"))
    t = ts("2026-03-03 09:15:00")
    c3.user(t, "wanneer is het gemeentehuis open?", "opening_hours", "rest", {"municipality": "lelystad"})
    c3.action(t + 0.1, "action_opening_hours").bot(t + 0.4, "utter_hours_week").listen(t + 0.5)
    t = ts("2026-03-03 09:16:00")
    c3.user(t, "asdf qwerty", "nlu_fallback", "rest", {"municipality": "lelystad"})
    c3.action(t + 0.1, "action_clarify").bot(t + 0.5, "utter_ask_clarify").slot(t + 0.5, "failed_attempts", 1.0)
    c3.listen(t + 0.6)
    t = ts("2026-03-03 09:16:30")
    c3.user(t, "/opening_hours_now", "opening_hours_now", "rest", {"municipality": "lelystad"})
    c3.action(t + 0.1, "action_opening_hours").bot(t + 0.6, "utter_open_now").listen(t + 0.7)

    c4 = Script("31612340004").session(ts("2026-03-04 14:00:00"))
    t = ts("2026-03-04 14:00:00")
    c4.user(t, "Ik wil een klacht indienen over mijn buurman, bel me op 0612345678", "complaint", "whatsapp",
            dict(WA, municipality="terneuzen"))
    c4.action(t + 0.1, "action_handoff_to_kcc").bot(t + 0.5, "utter_handoff_complaint")
    c4.bot(t + 0.55, "utter_handoff_in_hours").slot(t + 0.55, "handoff_active", True).listen(t + 0.6)
    t = ts("2026-03-04 14:05:00")
    c4.user(t, "hallo?", "greet", "whatsapp", dict(WA, municipality="terneuzen"))
    c4.action(t + 0.1, "action_relay_to_kcc").listen(t + 0.2)
    t = ts("2026-03-04 14:20:00")
    c4.user(t, "/EXTERNAL_kcc_reply", "EXTERNAL_kcc_reply", "whatsapp")
    c4.action(t + 0.1, "action_deliver_staff_reply").bot(t + 0.2, None, "Hallo, ik ben Anja van het KCC.")
    c4.listen(t + 0.3)

    c5 = Script("31612340005").session(ts("2026-03-07 23:30:00"))
    t = ts("2026-03-07 23:30:00")
    c5.user(t, "xyz blabla", "nlu_fallback", "whatsapp", dict(WA, municipality="lelystad"))
    c5.action(t + 0.1, "action_clarify").bot(t + 0.3, "utter_ask_clarify").slot(t + 0.3, "failed_attempts", 1.0)
    c5.listen(t + 0.4)
    t = ts("2026-03-07 23:30:04")
    c5.user(t, "nog steeds xyz", "nlu_fallback", "whatsapp", dict(WA, municipality="lelystad"))
    c5.action(t + 0.1, "action_clarify").bot(t + 0.4, "utter_handoff_not_understood")
    c5.bot(t + 0.45, "utter_handoff_out_of_hours").slot(t + 0.45, "failed_attempts", 0.0)
    c5.slot(t + 0.45, "handoff_active", True).listen(t + 0.5)

    c6 = Script("31612340006")  # no session events at all: one conversation per local day
    t = ts("2026-03-06 08:00:00")
    c6.user(t, "Ik wil trouwen, wat kost dat?", "marriage_costs", "whatsapp", WA)
    c6.action(t + 0.1, "action_marriage").bot(t + 0.25, "utter_marriage_costs").listen(t + 0.3)
    t = ts("2026-03-07 00:10:00")
    c6.user(t, "bedankt", "thanks", "whatsapp", WA)
    c6.action(t + 0.05, "utter_thanks").bot(t + 0.15, "utter_thanks").listen(t + 0.2)

    x1 = Script("31612340007").session(ts("2026-03-01 23:59:00"))
    t = ts("2026-03-01 23:59:00")
    x1.user(t, "hallo", "greet", "whatsapp", dict(WA, municipality="terneuzen"))
    x1.action(t + 0.1, "action_greet").bot(t + 0.2, "utter_greet").listen(t + 0.3)
    x2 = Script("31612340008").session(ts("2026-03-09 00:00:30"))
    t = ts("2026-03-09 00:00:30")
    x2.user(t, "request", "request_human", "whatsapp", dict(WA, municipality="terneuzen"))
    x2.action(t + 0.1, "action_handoff_to_kcc").bot(t + 0.3, "utter_handoff_out_of_hours")
    x2.slot(t + 0.3, "handoff_active", True).listen(t + 0.4)
    return [c1, c2, c3, c4, c5, c6, x1, x2]


@contextmanager
def ticket_clock(moment: dt.datetime):
    with mock.patch("appcare.handoff_store.utcnow", return_value=moment):
        yield


def set_created(store, ticket_id: int, moment: dt.datetime) -> None:
    from appcare.handoff_store import TicketRow

    with store._session.begin() as session:  # noqa: SLF001 - test data with exact times
        session.get(TicketRow, ticket_id).created_at = moment


def set_message_time(store, message_id: int, moment: dt.datetime) -> None:
    from appcare.handoff_store import TicketMessageRow

    with store._session.begin() as session:  # noqa: SLF001
        session.get(TicketMessageRow, message_id).created_at = moment


def write_tickets(url: str) -> None:
    from appcare.handoff_store import HandoffStore

    store = HandoffStore(url)
    t1 = store.open_ticket("31612340004", "complaint", "Reden: klacht.", [{"sender": "citizen", "text": "klacht"}],
                           municipality="terneuzen", channel="whatsapp", in_kcc_hours=True)
    set_created(store, t1.id, utc_naive("2026-03-04 14:00:00"))
    store.append_citizen_message("31612340004", "hallo?")
    with ticket_clock(utc_naive("2026-03-04 14:10:00")):
        store.claim(t1.id, "anja")
    reply = store.add_staff_reply(t1.id, "anja", "Hallo, ik ben Anja van het KCC.")
    set_message_time(store, reply, utc_naive("2026-03-04 14:20:00"))
    with ticket_clock(utc_naive("2026-03-04 14:20:00")):
        store.set_delivery(reply, "sent")
    with ticket_clock(utc_naive("2026-03-04 15:00:00")):
        store.close(t1.id, "beantwoord")

    t2 = store.open_ticket("31612340005", "not_understood", "Reden: niet begrepen.", [],
                           municipality="lelystad", channel="whatsapp", in_kcc_hours=False)
    set_created(store, t2.id, utc_naive("2026-03-07 23:30:05"))
    staff = store.add_staff_reply(t2.id, "piet", "Goedemorgen, waarmee kan ik helpen?")  # never marked sent
    set_message_time(store, staff, utc_naive("2026-03-09 09:00:00"))

    t3 = store.open_ticket("31612340008", "request_human", "Reden: vraagt om een medewerker.", [],
                           municipality="terneuzen", channel="whatsapp", in_kcc_hours=False)
    set_created(store, t3.id, utc_naive("2026-03-09 00:00:30"))  # outside the period


PERIOD = ("2026-03-02", "2026-03-08")
# Hand-computed from the scripts above.
EXPECTED: Dict[str, Any] = {
    "conversations": 7,               # C1, C2, C3, C4, C5, C6 Friday, C6 Saturday
    "messages": 13,                   # 2 + 2 + 3 + 2 + 2 + 1 + 1 (the staff trigger is no citizen message)
    "bot_messages": 13,               # bot events outside staff turns: 3+3+3+2+3+1+1... see below
    "conversations_in_kcc_hours": 3,  # C1 Mon 10:00, C3 Tue 09:15, C4 Wed 14:00
    "conversations_outside_kcc_hours": 4,  # C2 20:00, C5 Sat, C6 Fri 08:00 (< 08:30), C6 Sat 00:10
    "contained": 5,                   # C1, C2, C3, C6 x2
    "containment_rate": 0.7143,
    "one_go": 4,                      # C1, C2, C6 x2 (C3 had a fallback and a clarifying question)
    "one_go_rate": 0.5714,
    "handoffs": 2,                    # C4 complaint, C5 not understood
    "handoff_rate": 0.2857,
    "handoff_reasons": {"complaint": 1, "not_understood": 1},
    "continued_with_human": 0,
    "not_understood": 3,              # C3 "asdf qwerty", C5 twice
    "conversations_with_clarification": 2,
    # latencies ms: 200,100 | 300,150 | 400,500,600 | 500 | 300,400 | 250 | 150 (relayed "hallo?" has none)
    "bot_latency_ms_p50": 300.0,      # sorted 12 values, rank 5.5 -> (300+300)/2
    "bot_latency_ms_p95": 545.0,      # rank 10.45 -> 500 + 0.45 * (600-500)
    "bot_replies_measured": 12,
    "tickets": 2,                     # T1, T2 (T3 is after the period)
    "tickets_answered": 2,
    "tickets_closed": 1,
    "human_first_reply_median_s": 60897.5,  # T1 1200 s, T2 Sat 23:30:05 -> Mon 09:00 = 120595 s
    "human_first_reply_p95_s": 114625.2,    # 1200 + 0.95 * 119395
    "handling_time_median_s": 3600.0,
    "handling_time_p95_s": 3600.0,
    "feedback_asked": 2,
    "feedback_up": 1,
    "feedback_down": 1,
    "feedback_positive_rate": 0.5,
}
# Bot events outside staff turns: C1 3, C2 3, C3 3, C4 2, C5 3, C6 1 + 1 = 16.
EXPECTED["bot_messages"] = 16


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    """Writes the hand-computed set; yields (endpoints dict, tickets URL)."""
    monkeypatch.delenv("APPCARE_MUNICIPALITY", raising=False)
    tracker_db = tmp_path / "tracker.db"
    save_scripts(sqlite_tracker_store(tracker_db), scripts())
    tickets_url = f"sqlite:///{tmp_path}/tickets.db"
    write_tickets(tickets_url)
    endpoints = {"tracker_store": {"type": "SQL", "dialect": "sqlite", "db": str(tracker_db)}}
    yield endpoints, tickets_url
    from appcare import db
    from report import metrics

    metrics.dispose_engines()
    db.dispose_all()


def test_dataset_is_stored_by_rasa(dataset):
    """Sanity check of the fixture itself: Rasa's own store reads the conversations back."""
    from rasa.core.tracker_store import SQLTrackerStore

    endpoints, _ = dataset
    store = SQLTrackerStore(domain=_domain(), dialect="sqlite", db=endpoints["tracker_store"]["db"])

    async def _read():
        return await store.retrieve_full_tracker("31612340004"), set(await store.keys())

    tracker, keys = asyncio.run(_read())
    assert len(keys) == 8
    assert tracker.get_slot("handoff_active") is True
    assert [e.intent_name for e in tracker.events if e.type_name == "user"] == [
        "complaint", "greet", "EXTERNAL_kcc_reply"]
