"""Urgent tickets, the citizen's language and the wish to be called back, as KCC
staff see them in the desk (real HTTP, SQLite and PostgreSQL); the store upgrading an
open ticket; the additive schema upgrade of an existing ticket table; subject access,
erasure and retention of the callback number."""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.desk_helpers import (  # noqa: F401 - fixtures are imported too
    DeskClient,
    FakeRasa,
    any_db_url,
    make_user,
    open_ticket,
    pg_url,
    sqlite_url,
    start_desk,
)

from appcare.handoff_store import HandoffStore, TicketRow, utcnow
from tests.support.legacy_schema import old_tickets_table

NEW_COLUMNS = {"urgent", "language", "callback_requested", "callback_number"}


@pytest.fixture
def rig(any_db_url):
    handoff = HandoffStore(any_db_url)
    rasa = FakeRasa(handoff, any_db_url)
    make_user(any_db_url, "anna", "staff")
    server = start_desk(any_db_url, rasa.url)
    client = DeskClient(server.url)
    assert client.login("anna").status_code == 302
    rig = type("Rig", (), {})()
    rig.db_url, rig.handoff, rig.server, rig.anna = any_db_url, handoff, server, client
    yield rig
    server.stop()
    rasa.stop()


def _rows(html: str) -> dict:
    """Queue rows of a page or fragment: ticket id -> the row's HTML, in page order."""
    rows = {}
    for chunk in html.split('<tr data-ticket-id="')[1:]:
        ticket_id, rest = chunk.split('"', 1)
        rows[int(ticket_id)] = rest.split("</tr>", 1)[0]
    return rows


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


# ---------------------------------------------------------------------- queue and ticket page
def test_urgent_ticket_comes_first_and_is_marked(rig):
    waiting_long = open_ticket(rig.handoff, minutes_ago=20)  # overdue: first until now
    waiting = open_ticket(rig.handoff, minutes_ago=3, reason="complaint")
    urgent = open_ticket(rig.handoff, reason="urgent", urgent=True, summary="Reden: dringend.")

    queue = rig.anna.get("/api/queue").json()
    # Dringend, then the complaint (section "Klachten", issue 18), then the others.
    assert [t["id"] for t in queue["tickets"]] == [urgent.id, waiting.id, waiting_long.id]
    first = queue["tickets"][0]
    assert first["urgent"] is True and first["reason_label"] == "dringend (mogelijk gevaar of nood)"
    assert [t["urgent"] for t in queue["tickets"][1:]] == [False, False]

    page = rig.anna.get("/")
    assert page.status_code == 200
    rows = _rows(page.text)
    assert list(rows) == [urgent.id, waiting.id, waiting_long.id]
    assert "Dringend" in _text(rows[urgent.id])  # a word, not only a colour
    assert 'class="ticket-row status-open urgent"' in page.text
    assert all("Dringend" not in _text(rows[i]) for i in (waiting_long.id, waiting.id))
    fragment = rig.anna.get("/api/queue?fragment=1").json()["html"]  # what the page refreshes to
    assert list(_rows(fragment)) == [urgent.id, waiting.id, waiting_long.id]
    assert "Dringend" in _text(_rows(fragment)[urgent.id])

    ticket_page = _text(rig.anna.get(f"/tickets/{urgent.id}").text)
    assert "Dringend" in ticket_page and "Mogelijk gevaar of acute nood" in ticket_page
    assert "Dringend" not in _text(rig.anna.get(f"/tickets/{waiting.id}").text)

    # Claimed, it stays above the others (a colleague has it; still the most pressing).
    assert rig.anna.post(f"/api/tickets/{urgent.id}/claim", {}).status_code == 200
    assert [t["id"] for t in rig.anna.get("/api/queue").json()["tickets"]][0] == urgent.id


def test_a_ticket_that_becomes_urgent_moves_to_the_top(rig):
    older = open_ticket(rig.handoff, minutes_ago=10)
    ticket = open_ticket(rig.handoff, conversation_id="31600000077", minutes_ago=5)
    before = rig.anna.get("/api/queue").json()
    assert [t["id"] for t in before["tickets"]] == [older.id, ticket.id]

    # The citizen, still waiting, writes something the assistant judges urgent.
    again = open_ticket(rig.handoff, conversation_id="31600000077", reason="urgent", urgent=True)
    assert again.id == ticket.id
    after = rig.anna.get("/api/queue").json()
    assert [t["id"] for t in after["tickets"]] == [ticket.id, older.id]
    assert after["version"] != before["version"]  # the open queue page refreshes itself
    status = rig.anna.get(f"/api/tickets/{ticket.id}?fragment=1").json()["html"]["status"]
    assert "Dringend" in _text(status)


def test_language_and_callback_wish_are_shown(rig):
    polish = open_ticket(rig.handoff, language="pl", callback_requested=True, callback_number="06 12345678")
    english = open_ticket(rig.handoff, language="en", callback_requested=True)
    dutch = open_ticket(rig.handoff, language="nl")
    unknown = open_ticket(rig.handoff, language="xx")

    rows = _rows(rig.anna.get("/").text)
    assert "Taal: Pools" in _text(rows[polish.id]) and "Terugbellen" in _text(rows[polish.id])
    assert "Taal: Engels" in _text(rows[english.id]) and "Terugbellen" in _text(rows[english.id])
    assert "Taal" not in _text(rows[dutch.id]) and "Terugbellen" not in _text(rows[dutch.id])
    assert "Taal: xx" in _text(rows[unknown.id])

    queue = rig.anna.get("/api/queue")
    by_id = {t["id"]: t for t in queue.json()["tickets"]}
    assert by_id[polish.id]["language"] == "pl" and by_id[polish.id]["language_label"] == "Pools"
    assert by_id[polish.id]["callback_requested"] is True
    assert by_id[dutch.id]["language_label"] is None and by_id[dutch.id]["callback_requested"] is False
    assert "12345678" not in queue.text  # the number only on the ticket page

    page = _text(rig.anna.get(f"/tickets/{polish.id}").text)
    assert "Wil teruggebeld worden op 06 12345678" in page and "Pools (pl)" in page
    page = _text(rig.anna.get(f"/tickets/{english.id}").text)
    # a WhatsApp conversation: staff see the number to call (the citizen asked for it)
    assert f"Wil teruggebeld worden op +{english.conversation_id}" in page and "Engels (en)" in page
    page = _text(rig.anna.get(f"/tickets/{dutch.id}").text)
    assert "teruggebeld" not in page and "Taal" not in page
    detail = rig.anna.get(f"/api/tickets/{polish.id}").json()
    assert detail["callback_number"] == "06 12345678"
    assert detail["callback_label"] == "Wil teruggebeld worden op 06 12345678"


# ---------------------------------------------------------------------- the store
def test_open_ticket_upgrades_the_open_ticket_of_the_conversation(any_db_url, caplog):
    store = HandoffStore(any_db_url)
    first = store.open_ticket("31600000011", "request_human", "Reden: vraagt om een medewerker.", [], "lelystad")
    assert (first.urgent, first.language, first.callback_requested, first.callback_number) == (False, None, False, None)

    with caplog.at_level(logging.DEBUG):
        upgraded = store.open_ticket(
            "31600000011", "urgent", "Reden: dringend. Bel me op 0612345678", [{"sender": "citizen", "text": "help"}],
            "lelystad", urgent=True, language="ar", callback_requested=True, callback_number="06-12345678",
        )
    assert upgraded.id == first.id
    assert upgraded.urgent and upgraded.language == "ar"
    assert upgraded.callback_requested and upgraded.callback_number == "06-12345678"
    assert upgraded.reason == "request_human" and upgraded.summary == first.summary  # the first handoff's
    assert upgraded.version == first.version + 1
    assert f"handoff ticket {first.id} updated by a new handoff" in caplog.text
    assert "12345678" not in caplog.text and "12345678" not in repr(upgraded)  # never in a log

    # Later handoffs never take anything back; a language is only filled in, not replaced.
    again = store.open_ticket("31600000011", "request_human", "s", [], "lelystad", language="en")
    assert again.urgent and again.language == "ar" and again.callback_number == "06-12345678"
    assert again.version == upgraded.version  # nothing changed
    newer = store.open_ticket("31600000011", "request_human", "s", [], "lelystad", callback_number="020 1234567")
    assert newer.callback_number == "020 1234567"  # the number given last is the one to call
    assert store.get(first.id).urgent is True

    store.close(first.id, "beantwoord")
    fresh = store.open_ticket("31600000011", "request_human", "s", [], "lelystad")
    assert fresh.id != first.id and not fresh.urgent and fresh.callback_number is None


def test_summary_stays_masked_while_the_callback_number_is_kept_for_staff(any_db_url):
    store = HandoffStore(any_db_url)
    ticket = store.open_ticket(
        "31600000012", "request_human", "Laatste bericht: bel me terug op 0612345678",
        [{"sender": "citizen", "text": "bel me terug op 0612345678"}], "lelystad",
        callback_requested=True, callback_number=" 0612345678 ",
    )
    stored = store.get(ticket.id)
    assert "0612345678" not in stored.summary and "0612345678" not in json.dumps(stored.transcript)
    assert stored.callback_number == "0612345678" and stored.callback_requested
    # A number alone implies the wish.
    implied = store.open_ticket("31600000013", "request_human", "s", [], "lelystad", callback_number="0201234567")
    assert implied.callback_requested


# ---------------------------------------------------------------------- schema upgrade
def _old_shaped_tables(url: str) -> int:
    """The ticket tables as they were before urgent/language/callback, with one ticket."""
    metadata = sa.MetaData()
    tickets = old_tickets_table(metadata)
    sa.Table(
        "handoff_messages", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ticket_id", sa.Integer, sa.ForeignKey("handoff_tickets.id"), index=True, nullable=False),
        sa.Column("author", sa.String(16), nullable=False),
        sa.Column("staff_user", sa.String(128)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("delivery", sa.String(16)),
        sa.Column("error", sa.String(255)),
    )
    engine = sa.create_engine(url, future=True)
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            return conn.execute(tickets.insert().values(
                conversation_id="31600000021", channel="whatsapp", municipality="terneuzen",
                reason="complaint", summary="Reden: klacht.", transcript="[]", status="open",
                created_at=utcnow() - dt.timedelta(minutes=5), in_kcc_hours=True, flagged=False, version=0,
            )).inserted_primary_key[0]
    finally:
        engine.dispose()


def _columns(url: str) -> set:
    engine = sa.create_engine(url, future=True)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns("handoff_tickets")}
    finally:
        engine.dispose()


def test_existing_ticket_table_gets_the_new_columns(any_db_url):
    from report import metrics

    old_id = _old_shaped_tables(any_db_url)
    assert not NEW_COLUMNS & _columns(any_db_url)
    # The report (read-only, never upgrades) still reads a table that was not upgraded yet.
    period = metrics.Period.of(utcnow().date() - dt.timedelta(days=1), utcnow().date() + dt.timedelta(days=1))
    assert [t.reason for t in metrics.load_tickets(any_db_url, period)] == ["complaint"]

    store = HandoffStore(any_db_url)  # what the bot and the desk do when they start
    assert NEW_COLUMNS <= _columns(any_db_url)
    old = store.get(old_id)
    assert (old.urgent, old.language, old.callback_requested, old.callback_number) == (False, None, False, None)
    assert [t.id for t in store.list(status=["open"], urgent_first=True)] == [old_id]

    new = store.open_ticket("31600000022", "urgent", "s", [], "terneuzen", urgent=True, language="tr")
    assert [t.id for t in store.list(status=["open"], urgent_first=True)] == [new.id, old_id]
    upgraded = store.open_ticket("31600000021", "request_human", "s", [], "terneuzen", callback_requested=True)
    assert upgraded.id == old_id and upgraded.callback_requested and not upgraded.urgent

    from appcare import db

    assert db.add_missing_columns(TicketRow.metadata, store.engine) == []  # idempotent
    HandoffStore(any_db_url)  # a second process starting: nothing to do, no error


def test_a_column_that_cannot_be_added_is_left_alone_and_logged(sqlite_url, caplog):
    from appcare import db

    engine = db.get_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE things (id INTEGER PRIMARY KEY)")
    metadata = sa.MetaData()
    sa.Table("things", metadata, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("name", sa.String(10), nullable=False),  # no server default: old rows would break it
             sa.Column("note", sa.String(10)))
    with caplog.at_level(logging.ERROR, logger="appcare.db"):
        assert db.add_missing_columns(metadata, engine) == ["things.note"]
    assert "things.name is missing and cannot be added" in caplog.text


# ---------------------------------------------------------------------- privacy tools
def _tracker_endpoints(tmp_path: Path) -> Path:
    path = tmp_path / "endpoints.yml"
    path.write_text(f"tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: {tmp_path}/rasa.db\n", encoding="utf-8")
    return path


def test_subject_access_exports_and_erases_the_callback_number(any_db_url, tmp_path):
    from jobs import subject_access

    store = HandoffStore(any_db_url)
    mine = store.open_ticket("31612345678", "urgent", "Reden: dringend.", [], "terneuzen", urgent=True,
                             language="pl", callback_requested=True, callback_number="020 7654321")
    # Someone else asks to be called back on the subject's number.
    other = store.open_ticket("31699999999", "request_human", "Reden: geheim van een ander.", [], "terneuzen",
                              callback_requested=True, callback_number="06-12345678")
    endpoints = _tracker_endpoints(tmp_path)
    out = tmp_path / "export.json"
    assert subject_access.main(["export", "--phone", "+31 6 12345678", "--endpoints", str(endpoints),
                                "--db-url", any_db_url, "--out", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    [ticket] = data["handoff_tickets"]
    assert ticket["id"] == mine.id and ticket["callback_number"] == "020 7654321"
    assert ticket["callback_requested"] is True and ticket["urgent"] is True and ticket["language"] == "pl"
    assert [(r["id"], r["callback_number"]) for r in data["handoff_callback_numbers"]] == [(other.id, "06-12345678")]
    assert "31699999999" not in out.read_text(encoding="utf-8")
    assert "geheim van een ander" not in out.read_text(encoding="utf-8")

    assert subject_access.main(["erase", "--phone", "+31612345678", "--endpoints", str(endpoints),
                                "--db-url", any_db_url, "--yes"]) == 0
    assert store.get(mine.id) is None
    kept = store.get(other.id)
    assert kept is not None and kept.callback_number is None and kept.callback_requested
    assert kept.summary == "Reden: geheim van een ander."


def test_retention_removes_the_callback_number_and_keeps_the_rest(any_db_url):
    from jobs import retention

    store = HandoffStore(any_db_url)
    old = store.open_ticket("31600000031", "urgent", "Reden: dringend.", [], "terneuzen", urgent=True,
                            language="so", callback_requested=True, callback_number="06 11223344")
    store.close(old.id, "beantwoord")
    still_open = store.open_ticket("31600000032", "request_human", "s", [], "terneuzen", callback_number="06 55667788")
    with store.engine.begin() as conn:
        conn.execute(sa.update(TicketRow).where(TicketRow.id.in_([old.id, still_open.id]))
                     .values(created_at=utcnow() - dt.timedelta(days=40)))
    store.append_message(still_open.id, "citizen", "nog steeds bereikbaar")  # active: not expired by retention
    cutoff = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)).timestamp()
    counts = retention.anonymise_tickets(store.engine, cutoff, {}, retention.Anonymiser(b"k" * 32), dry_run=False)
    assert counts["tickets"] == 1 and counts["tickets_still_open"] == 1

    anonymised = store.get(old.id)
    assert anonymised.callback_number is None and anonymised.summary == ""
    assert anonymised.urgent and anonymised.language == "so" and anonymised.callback_requested
    assert anonymised.reason == "urgent"
    assert store.get(still_open.id).callback_number == "06 55667788"  # a colleague may still call


# ---------------------------------------------------------------------- report
def test_report_counts_urgent_handoffs_like_the_others():
    from appcare.tracker_store import EventRow
    from report import metrics

    period = metrics.Period.of("2026-03-03", "2026-03-03")
    start = period.start_ts + 10 * 3600  # 10:00 local
    events, ids = [], iter(range(1, 100))

    def conversation(sender, at, intent, handoff):
        meta = {"municipality": "terneuzen", "channel": "whatsapp"}
        events.append(EventRow(next(ids), sender, "user", at, intent, None,
                               {"text": "…", "parse_data": {"intent": {"name": intent}}, "metadata": meta}))
        if handoff:
            events.append(EventRow(next(ids), sender, "action", at + 1, None, "action_handoff_to_kcc",
                                   {"name": "action_handoff_to_kcc"}))
            events.append(EventRow(next(ids), sender, "slot", at + 1.1, None, None,
                                   {"name": "handoff_active", "value": True}))
        events.append(EventRow(next(ids), sender, "bot", at + 0.5, None, None, {"text": "…"}))

    def ticket(ticket_id, sender, at, reason):
        return metrics.TicketInfo(id=ticket_id, conversation_id=sender, created=at + 1, municipality="terneuzen",
                                  channel="rest", reason=reason, in_kcc_hours=True, first_reply=at + 120,
                                  closed=None, outcome=None, status="claimed")

    conversation("31600000041", start, "urgent", handoff=True)
    # The intent was another, but the assistant opened the ticket as urgent.
    conversation("31600000042", start + 60, "request_human", handoff=True)
    conversation("31600000043", start + 120, "request_callback", handoff=True)
    conversation("31600000044", start + 180, "opening_hours", handoff=False)
    tickets = [ticket(1, "31600000041", start, "urgent"), ticket(2, "31600000042", start + 60, "urgent"),
               ticket(3, "31600000043", start + 120, "request_human")]

    data = metrics.compute(metrics.build_conversations(events, default="terneuzen"), tickets, period)
    assert data.totals["handoffs"] == 3 and data.totals["conversations"] == 4
    assert data.totals["handoff_reasons"] == {"urgent": 2, "request_human": 1}
    rows = {row[0]: row for row in data.tables["overdracht_redenen"].rows}
    assert rows["Dringend (mogelijk gevaar of nood)"][1] == 2  # conversations
    assert rows["Dringend (mogelijk gevaar of nood)"][4] == 2  # tickets
    assert rows["Vraagt om een medewerker"][1] == 1


def test_callback_without_a_number_on_whatsapp_shows_the_number_to_call():
    """Staff must be able to call back a citizen who wrote "bel me terug" on WhatsApp."""
    import datetime as dt

    from appcare.handoff_store import Ticket
    from desk.service import callback_label

    ticket = Ticket(id=1, conversation_id="31612345678", channel="whatsapp", municipality="terneuzen",
                    reason="request_human", summary="", transcript=[], status="open",
                    created_at=dt.datetime(2026, 12, 7, 9), in_kcc_hours=True, expected_reply_at=None,
                    callback_requested=True)
    assert "+31612345678" in callback_label(ticket)
    ticket.channel = "rest"
    assert callback_label(ticket).endswith("(nummer van dit gesprek)")
