"""The not-understood inbox: which citizen messages count as not understood (read
from a real SQLite tracker store), stored masked. The masking itself: tests/test_pii.py."""
from __future__ import annotations

import time

import sqlalchemy as sa

from desk.editor.inbox import read_events, scan, tracker_store_url
from tests.support.editor_helpers import TrackerDB



def url_of(db: TrackerDB):
    return sa.engine.make_url(f"sqlite:///{db.path}")


def events_of(db: TrackerDB):
    return read_events(url_of(db), 0)


def test_not_understood_messages_are_found(tmp_path):
    db = TrackerDB(tmp_path / "tracker.db")
    db.action("a", "action_session_start")
    db.action("a", "action_listen")
    fallback = db.turn("a", "mijn naam is Jan de Vries, kan ik een hond registreren?", "nlu_fallback", 0.3, ["action_clarify"])
    db.turn("a", "/request_human", "request_human", 1.0, ["action_handoff_to_kcc"])  # button after the clarify
    understood = db.turn("b", "hoeveel betaal ik als volwassene voor een paspoort", "passport_fees", 0.93, ["action_passport_id"])
    low = db.turn("b", "reisboekje prijs", "passport_fees", 0.52, ["action_passport_id"])
    first_c = db.turn("c", "hondenbelasting betalen", "nlu_fallback", 0.2, ["action_clarify"])
    second = db.user("c", "bel me op 0612345678 over de hond", "nlu_fallback", 0.2)
    db.action("c", "action_clarify")
    db.slot("c", "handoff_active", True)
    db.action("c", "action_listen")
    relayed = db.turn("d", "ik wacht nog op antwoord", "nlu_fallback", 0.2, ["action_relay_to_kcc"])
    external = db.turn("d", "", "EXTERNAL_kcc_reply", 1.0, ["action_deliver_staff_reply"])
    items, hold, clarified, _upgrades = scan(events_of(db), low_confidence=0.6)
    by_id = {i.event_id: i for i in items}
    assert set(by_id) == {fallback, low, first_c, second}
    assert by_id[first_c].reason == "clarify"
    assert by_id[fallback].reason == "handoff"  # the clarify ended in a handoff ("Medewerker" button)
    assert by_id[fallback].text == "mijn naam is [naam], kan ik een hond registreren?"
    assert by_id[low].reason == "low_confidence" and by_id[low].intent == "passport_fees"
    assert by_id[second].reason == "handoff" and "[telefoon]" in by_id[second].text
    assert understood not in by_id and relayed not in by_id and external not in by_id
    assert hold is None
    assert all(len(i.sender_hash) == 12 and i.sender_hash not in ("a", "b", "c") for i in items)


def test_a_turn_still_running_is_read_again_later(tmp_path):
    db = TrackerDB(tmp_path / "tracker.db")
    done = db.turn("a", "hondenpoep op straat", "nlu_fallback", 0.2, ["action_clarify"])
    running = db.user("b", "waar kan ik grofvuil kwijt", "nlu_fallback", 0.2, ts=time.time())
    items, hold, _clarified, _upgrades = scan(events_of(db))
    assert [i.event_id for i in items] == [done] and hold == running
    db.action("b", "action_clarify")
    db.action("b", "action_listen")
    items, hold, _clarified, _upgrades = scan(read_events(url_of(db), hold - 1))
    assert [i.event_id for i in items] == [running] and hold is None


def test_relative_sqlite_path_is_relative_to_the_project(tmp_path):
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text("tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: var/tracker.db\n", encoding="utf-8")
    url = tracker_store_url(endpoints, tmp_path / "project")
    assert url.database == str((tmp_path / "project" / "var" / "tracker.db").resolve())
    assert read_events(url, 0) == []  # no store yet: nothing, no error
