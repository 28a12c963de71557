"""Personal data left behind (issue 16), on the PostgreSQL of this machine
(127.0.0.1:5432, user postgres, database ``test``, trust auth): every test works in
a schema of its own (Rasa's SQL tracker store and the appcare tables), dropped
afterwards. Skipped only when PostgreSQL is unreachable.

* retention filters the slot ``session_started_metadata`` (profile name, wamid) and
  repairs conversations an earlier version anonymised;
* subject access and erasure match exact ids: numbers sharing digits and ``_``/``%``
  in a sender id never reach another citizen's rows;
* old open handoff tickets are closed as expired and anonymised;
* the desk's audit log keeps no example texts (and retention repairs old rows).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import time
from types import SimpleNamespace
from typing import Any, Dict, List

import pytest

from tests.support.postgres import PG, fresh_schema, schema_url

KEY = "privacy-test-pseudonym-key-0123456789"
METADATA = {"channel": "whatsapp", "municipality": "terneuzen", "phone_number_id": "1000000001",
            "wamid": "wamid.HBgLMzE2MTExMTExMTEVAgASGBQzQUUw", "profile_name": "Jan de Vries",
            "sent_at": "2026-01-01T10:00:00+00:00", "received_at": "2026-01-01T10:00:01+00:00"}

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def pg(monkeypatch, tmp_path):
    """A schema of its own in database ``test``: the tracker store (POSTGRESQL_SCHEMA,
    honoured by Rasa and appcare) and the appcare tables (search_path in the URL)."""
    with fresh_schema("privacy_test") as schema:
        monkeypatch.setenv("POSTGRESQL_SCHEMA", schema)
        monkeypatch.setenv("APPCARE_PSEUDONYM_KEY", KEY)
        monkeypatch.delenv("APPCARE_ENV", raising=False)
        monkeypatch.setenv("T_PG_HOST", PG["host"])
        endpoints = tmp_path / "endpoints.yml"
        endpoints.write_text("tracker_store:\n  type: SQL\n  dialect: postgresql\n  url: ${T_PG_HOST}\n  port: 5432\n"
                             "  db: test\n  username: postgres\n", encoding="utf-8")
        yield SimpleNamespace(url=schema_url(schema), schema=schema, endpoints=str(endpoints))


def save_trackers(trackers: Dict[str, List[Any]]) -> None:
    """Writes conversations with Rasa's own SQLTrackerStore (into POSTGRESQL_SCHEMA)."""
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.trackers import DialogueStateTracker

    store = SQLTrackerStore(Domain.empty(), dialect="postgresql", host=PG["host"], port=PG["port"], db=PG["dbname"],
                            username=PG["user"])
    try:
        for sender, events in trackers.items():
            asyncio.run(store.save(DialogueStateTracker.from_events(sender, events)))
    finally:
        store.engine.dispose()


def conversation(start: float, text: str = "Ik ben Jan de Vries, wanneer komt het grofvuil?",
                 metadata: Dict[str, Any] = METADATA) -> List[Any]:
    """A WhatsApp session as Rasa 3.6 stores it: action_session_start puts the metadata
    of the first message into the slot ``session_started_metadata``."""
    from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, SlotSet, UserUttered

    return [
        ActionExecuted("action_session_start", timestamp=start),
        SessionStarted(timestamp=start),
        SlotSet("session_started_metadata", dict(metadata), timestamp=start),
        ActionExecuted("action_listen", timestamp=start),
        UserUttered(text, intent={"name": "bulky_waste", "confidence": 0.93}, timestamp=start + 1,
                    input_channel="whatsapp", message_id=metadata.get("wamid"), metadata=dict(metadata)),
        SlotSet("municipality", "terneuzen", timestamp=start + 1.5),
        ActionExecuted("action_bulky_waste", timestamp=start + 2),
        BotUttered("Het grofvuil komt dinsdag.", timestamp=start + 2.5),
        ActionExecuted("action_listen", timestamp=start + 3),
    ]


def events_of(pg) -> List[Any]:
    import sqlalchemy as sa

    engine = sa.create_engine(pg.url, future=True)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT id, sender_id, type_name, data FROM events ORDER BY id")).all()
    finally:
        engine.dispose()


# ======================================================== retention: session metadata
def test_retention_removes_profile_name_and_wamid_from_session_metadata_and_repairs_old_runs(pg):
    """The slot session_started_metadata held the citizen's WhatsApp profile name and
    the wamid after "anonymisation"; new runs filter it, and a run over conversations
    anonymised before removes what was left there."""
    import sqlalchemy as sa

    from jobs import retention
    from jobs.retention import anonymise_event

    now = time.time()
    old = now - 40 * 86400
    save_trackers({"31611111111": conversation(old)})
    # What an earlier version left: an anonymous id and texts gone, the slot kept whole.
    earlier = [anonymise_event(e.as_dict()) for e in conversation(old - 86400)]
    earlier[2]["value"] = dict(METADATA)
    engine = sa.create_engine(pg.url, future=True)
    with engine.begin() as conn:
        for event in earlier:
            conn.execute(sa.text(
                "INSERT INTO events (sender_id, type_name, timestamp, intent_name, action_name, data) "
                "VALUES (:s, :t, :ts, :i, :a, :d)"),
                {"s": "anon-0123456789abcdef01234567", "t": event["event"], "ts": event["timestamp"],
                 "i": (event.get("parse_data") or {}).get("intent", {}).get("name"), "a": event.get("name"),
                 "d": json.dumps(event)})
    engine.dispose()
    assert "Jan de Vries" in "".join(r.data for r in events_of(pg))

    dry = retention.run(30, pg.endpoints, pg.url, dry_run=True)
    assert dry["repaired_events"] == 1 and "Jan de Vries" in "".join(r.data for r in events_of(pg))
    counts = retention.run(30, pg.endpoints, pg.url)
    assert counts["conversations"] == 1 and counts["repaired_events"] == 1

    rows = events_of(pg)
    dump = "\n".join(r.data for r in rows)
    for secret in ("Jan de Vries", "profile_name", "HBgL", "wamid", "31611111111"):
        assert secret not in dump, secret
    slots = [json.loads(r.data) for r in rows if r.type_name == "slot"
             and json.loads(r.data)["name"] == "session_started_metadata"]
    assert len(slots) == 2
    for slot in slots:  # what the report reads stays
        assert slot["value"]["municipality"] == "terneuzen" and slot["value"]["channel"] == "whatsapp"
        assert slot["value"]["phone_number_id"] == "1000000001"
    again = retention.run(30, pg.endpoints, pg.url)
    assert again["repaired_events"] == 0 and again["conversations"] == 0
    assert [r.data for r in events_of(pg)] == [r.data for r in rows]


# ======================================================== subject access: exact matches
def _webhook_rows(pg) -> List[str]:
    import sqlalchemy as sa

    engine = sa.create_engine(pg.url, future=True)
    try:
        with engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(sa.text("SELECT event_key FROM desk_webhook_outbox")))
    finally:
        engine.dispose()


def test_subject_access_never_reaches_a_citizen_whose_number_shares_digits(pg, tmp_path):
    """31612345678 and 316123456789 are two citizens; a REST sender id ``user_1`` is
    no pattern for ``userX1``. Exporting or erasing one leaves the other whole."""
    import sqlalchemy as sa

    from appcare.handoff_store import HandoffStore
    from appcare.pii import conversation_hash
    from channels.inbox import InboxStore, NewInbound
    from desk.editor.store import EditorStore
    from desk.store import DeskStore
    from desk.webhooks import message_payload, ticket_payload
    from jobs import subject_access

    now = time.time()
    me, other = "31612345678", "316123456789"
    save_trackers({
        me: conversation(now - 900, "ik ben van nummer een"),
        f"{me}@1000000002": conversation(now - 800, "ik ben van nummer een, andere gemeente"),
        other: conversation(now - 700, "ik ben de buurman"),
        f"{other}@1000000002": conversation(now - 600, "ik ben de buurman, andere gemeente"),
        "user_1": conversation(now - 500, "ik ben user_1"),
        "userX1@1000000002": conversation(now - 400, "ik ben userX1"),
    })
    handoff = HandoffStore(pg.url)
    desk = DeskStore(pg.url)
    tickets = {}
    for conversation_id in (me, other, f"{other}@1000000002", "user_1", "userX1@1000000002"):
        ticket = handoff.open_ticket(conversation_id, "request_human", "s", [], "terneuzen")
        handoff.append_message(ticket.id, "citizen", f"bericht van {conversation_id}")
        tickets[conversation_id] = ticket
        desk.enqueue_event(f"ticket:{ticket.id}", "ticket.created", ticket_payload(handoff.get(ticket.id)))
    for m in handoff.citizen_messages_after(0):
        desk.enqueue_event(f"message:{m['id']}", "ticket.message", message_payload(m))
    inbox = InboxStore(pg.url)
    inbox.record_inbound([NewInbound(f"wamid.{n}", "1000000001", n, "text", "hoi", {}, now, True, True)
                          for n in (me, other)], now)
    editor = EditorStore(pg.url)
    legacy = hashlib.sha256(me.encode()).hexdigest()[:12]  # a row from before keyed pseudonyms
    editor.add_inbox([
        {"source": "t", "event_id": i, "sender_hash": digest, "ts": now, "week": "2026-W10", "text": text,
         "intent": "nlu_fallback", "confidence": 0.2, "reason": "fallback"}
        for i, digest, text in ((1, conversation_hash(f"{me}@1000000002"), "vraag van mij"),
                                (2, legacy, "oude vraag van mij"), (3, conversation_hash(other), "vraag buurman"),
                                (4, conversation_hash("userX1@1000000002"), "vraag userX1"))
    ])

    out = tmp_path / "export.json"
    assert subject_access.main(["export", "--phone", "+31 6 12345678", "--endpoints", pg.endpoints,
                                "--db-url", pg.url, "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    text = out.read_text()
    assert other not in text and "buurman" not in text
    assert {e["event"].get("text") for e in data["tracker_events"] if e["type"] == "user"} == {
        "ik ben van nummer een", "ik ben van nummer een, andere gemeente"}
    assert [t["conversation_id"] for t in data["handoff_tickets"]] == [me]
    assert sorted(r["text"] for r in data["desk_editor_inbox"]) == ["oude vraag van mij", "vraag van mij"]
    mine_keys = {f"ticket:{tickets[me].id}"} | {f"message:{m['id']}" for m in data["handoff_messages"]}
    assert {r["event_key"] for r in data["desk_webhook_outbox"]} == mine_keys
    assert [r["wa_id"] for r in data["whatsapp_inbox"]] == [me]

    before = _webhook_rows(pg)
    keys_of = {c: {f"ticket:{t.id}"} | {f"message:{m['id']}" for m in handoff.get(t.id).messages}
               for c, t in tickets.items()}
    assert keys_of[me] == mine_keys
    assert subject_access.main(["erase", "--phone", me, "--endpoints", pg.endpoints, "--db-url", pg.url, "--yes"]) == 0
    assert subject_access.main(["erase", "--sender-id", "user_1", "--endpoints", pg.endpoints,
                                "--db-url", pg.url, "--yes"]) == 0
    engine = sa.create_engine(pg.url, future=True)
    with engine.connect() as conn:
        senders = {r[0] for r in conn.execute(sa.text("SELECT DISTINCT sender_id FROM events"))}
        left_tickets = sorted(r[0] for r in conn.execute(sa.text("SELECT conversation_id FROM handoff_tickets")))
        left_inbox = [r[0] for r in conn.execute(sa.text("SELECT wa_id FROM whatsapp_inbox"))]
    engine.dispose()
    assert senders == {other, f"{other}@1000000002", "userX1@1000000002"}
    assert left_tickets == sorted([other, f"{other}@1000000002", "userX1@1000000002"])
    assert left_inbox == [other]
    assert sorted(i["text"] for i in editor.inbox(status=None)) == ["vraag buurman", "vraag userX1"]
    others = set().union(*(keys_of[c] for c in (other, f"{other}@1000000002", "userX1@1000000002")))
    assert set(_webhook_rows(pg)) == others == set(before) - keys_of[me] - keys_of["user_1"]


# ======================================================== open tickets expire
def test_old_open_ticket_is_closed_as_expired_then_anonymised(pg):
    import sqlalchemy as sa

    from appcare.handoff_store import EXPIRED_NOTE, EXPIRED_OUTCOME, HandoffStore, TicketMessageRow, TicketRow
    from jobs import retention

    now = time.time()
    old = dt.datetime.utcfromtimestamp(now - 40 * 86400)
    save_trackers({"31644444444": conversation(now - 40 * 86400)})
    handoff = HandoffStore(pg.url)
    forgotten = handoff.open_ticket("31644444444", "personal_case", "BSN 111222333", [{"text": "bsn 111222333"}],
                                    "terneuzen", callback_number="0612345678")
    handoff.append_message(forgotten.id, "citizen", "Ik ben Jan de Vries, bel me terug")
    active = handoff.open_ticket("31655555555", "request_human", "mijn hond is weg", [], "terneuzen")
    handoff.claim(active.id, "anna")
    handoff.append_message(active.id, "citizen", "nog iets over mijn hond")  # written now: active
    with handoff.engine.begin() as conn:
        for ticket_id in (forgotten.id, active.id):
            conn.execute(sa.update(TicketRow.__table__).where(TicketRow.id == ticket_id).values(created_at=old))
        conn.execute(sa.update(TicketRow.__table__).where(TicketRow.id == active.id).values(claimed_at=old))
        conn.execute(sa.update(TicketMessageRow.__table__).where(TicketMessageRow.ticket_id == forgotten.id)
                     .values(created_at=old))

    dry = retention.run(30, pg.endpoints, pg.url, dry_run=True)
    assert dry["tickets_expired"] == 1 and handoff.get(forgotten.id).status == "open"
    counts = retention.run(30, pg.endpoints, pg.url)
    assert counts["tickets_expired"] == 1 and counts["tickets"] == 1 and counts["tickets_still_open"] == 1

    expired = handoff.get(forgotten.id)
    assert expired.status == "closed" and expired.outcome == EXPIRED_OUTCOME
    assert expired.conversation_id.startswith("anon-")  # anonymised like closed tickets
    assert expired.summary == "" and expired.transcript == [] and expired.callback_number is None
    history = [(m["author"], m["text"]) for m in expired.messages]
    assert ("system", EXPIRED_NOTE) in history  # the desk shows why it was closed
    assert "automatisch gesloten: bewaartermijn verstreken" in EXPIRED_NOTE.lower()
    assert all(text == "" for author, text in history if author != "system")
    assert handoff.open_ticket_for("31644444444") is None  # the bot takes the conversation back
    still = handoff.get(active.id)
    assert still.status == "claimed" and still.conversation_id == "31655555555" and still.summary == "mijn hond is weg"
    assert retention.run(30, pg.endpoints, pg.url)["tickets_expired"] == 0


# ======================================================== desk audit log
def test_retention_removes_example_texts_from_old_audit_rows(pg):
    from desk.editor.store import EditorStore, example_id
    from desk.store import DeskStore
    from jobs import retention

    desk = DeskStore(pg.url)
    citizen = "mijn naam is [naam], kan ik mijn hond aanmelden"
    desk.audit("eddy", "example_add", None, {"intent": "dog_tax", "target": None, "files": ["data/nlu/dog.yml"],
                                             "examples": [citizen], "new": citizen})
    desk.audit("eddy", "example_move", None, {"intent": "dog_tax", "target": "pets", "files": [],
                                              "examples": [citizen, "hondenbelasting"], "new": None})
    desk.audit("eddy", "fact_changed", None, {"file": "content/terneuzen.yml", "fact": "x", "old": "a", "new": "b"})
    editor = EditorStore(pg.url)
    old_ts = time.time() - 40 * 86400
    editor.add_inbox([{"source": "t", "event_id": 1, "sender_hash": "", "ts": old_ts, "week": "2026-W01",
                       "text": retention.EXPIRED_TEXT, "intent": "nlu_fallback", "confidence": 0.1,
                       "reason": "fallback", "status": "assigned", "example": citizen}])

    counts = retention.run(30, pg.endpoints, pg.url)
    assert counts["editor_audit_repaired"] == 2 and counts["editor_inbox"] == 1
    rows = {r["action"]: r for r in desk.audit_log(limit=10)}
    dump = json.dumps([r["detail"] for r in rows.values()], ensure_ascii=False)
    assert "hond" not in dump and "[naam]" not in dump
    added = rows["example_add"]
    assert added["actor"] == "eddy" and added["at"] is not None
    assert added["detail"]["intent"] == "dog_tax" and added["detail"]["count"] == 1
    assert added["detail"]["example_ids"] == [example_id(citizen)]
    assert rows["example_move"]["detail"]["count"] == 2 and rows["example_move"]["detail"]["target"] == "pets"
    assert rows["fact_changed"]["detail"]["old"] == "a"  # other audit rows untouched
    assert [i["example"] for i in editor.inbox(status=None)] == [None]
    assert retention.run(30, pg.endpoints, pg.url)["editor_audit_repaired"] == 0


# The desk over real HTTP with the editors' test project (SQLite desk database).
from tests.test_editor_desk import csrf_of, env, login  # noqa: E402,F401  (env is a fixture)


def test_examples_from_the_inbox_leave_no_citizen_text_in_the_audit_log(env, monkeypatch):
    """A citizen's not-understood question becomes an example; the editor then corrects,
    moves and deletes it. The audit log says who did what when (intent, item, example
    ids), never the citizen's words."""
    from desk.editor.store import example_id
    from desk.store import DeskStore

    monkeypatch.setenv("APPCARE_PSEUDONYM_KEY", KEY)
    env.tracker.turn("31612345678", "wat kost zo'n reisboekje voor mijn zoontje Pietje in Sluiskil",
                     "nlu_fallback", 0.3, ["action_clarify"])
    editor = login(env, "eddy")
    page = editor.get("/editor/inbox")
    item = editor.get("/api/editor/inbox").json()["items"][0]
    example = "wat kost zo'n reisboekje voor mijn zoontje Pietje in Sluiskil"
    assigned = editor.http.post(editor.url(f"/editor/inbox/{item['id']}/assign"),
                                data={"csrf_token": csrf_of(page.text), "intent": "passport_fees", "text": example},
                                allow_redirects=False)
    assert assigned.status_code == 302
    corrected = "wat kost zo'n reisboekje voor mijn zoontje in Sluiskil"
    assert editor.post("/api/editor/intents/passport_fees/edit",
                       {"examples": [example], "text": corrected}).status_code == 200
    assert editor.post("/api/editor/intents/passport_fees/move",
                       {"examples": [corrected], "target": "passport_apply"}).status_code == 200
    assert editor.post("/api/editor/intents/passport_apply/delete", {"examples": [corrected]}).status_code == 200
    assert editor.post("/api/editor/intents/passport_apply/add", {"text": "paspoort Sluiskil kosten"}).status_code == 200

    audit = {r["action"]: r for r in DeskStore(env.db_url).audit_log(actor="eddy", limit=50)}
    assert {"inbox_assigned", "example_edit", "example_move", "example_delete", "example_add"} <= set(audit)
    dump = json.dumps([r["detail"] for r in audit.values()], ensure_ascii=False)
    for word in ("reisboekje", "Pietje", "Sluiskil", "zoontje"):
        assert word not in dump, word
    assert audit["inbox_assigned"]["detail"]["item"] == item["id"]
    assert audit["inbox_assigned"]["detail"]["intent"] == "passport_fees"
    assert audit["example_move"]["detail"]["example_ids"] == [example_id(corrected)]
    assert audit["example_move"]["detail"]["target"] == "passport_apply"
    assert audit["example_add"]["detail"] == {"intent": "passport_apply", "target": None, "count": 1,
                                              "files": audit["example_add"]["detail"]["files"],
                                              "example_ids": [example_id("paspoort Sluiskil kosten")]}
    assert all(r["at"] is not None for r in audit.values())
