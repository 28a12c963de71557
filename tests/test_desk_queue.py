"""The queue as KCC staff use it (issue 18): 1,000 waiting tickets in pages of 50,
search and filters as GET parameters (also on /api/queue), the "Dringend" and
"Klachten" sections, the citizen's language, time left until the promised answer,
the "Gesloten" tab and the citizen's earlier tickets on the ticket page."""
from __future__ import annotations

import datetime as dt
import re
import time

import pytest

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


@pytest.fixture
def rig(any_db_url):
    handoff = HandoffStore(any_db_url)
    rasa = FakeRasa(handoff, any_db_url)
    make_user(any_db_url, "anna", "staff")
    make_user(any_db_url, "bert", "staff")
    server = start_desk(any_db_url, rasa.url)
    anna, bert = DeskClient(server.url), DeskClient(server.url)
    assert anna.login("anna").status_code == 302 and bert.login("bert").status_code == 302
    rig = type("Rig", (), {})()
    rig.db_url, rig.handoff, rig.server, rig.anna, rig.bert = any_db_url, handoff, server, anna, bert
    yield rig
    server.stop()
    rasa.stop()


def _row_ids(html: str) -> list:
    return [int(i) for i in re.findall(r'<tr data-ticket-id="(\d+)"', html)]


def _rows(html: str) -> dict:
    rows = {}
    for chunk in html.split('<tr data-ticket-id="')[1:]:
        ticket_id, rest = chunk.split('"', 1)
        rows[int(ticket_id)] = rest.split("</tr>", 1)[0]
    return rows


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _api_ids(client, query: str = "") -> list:
    response = client.get("/api/queue" + (("?" + query) if query else ""))
    assert response.status_code == 200
    return [t["id"] for t in response.json()["tickets"]]


def test_a_queue_of_1000_tickets_is_paged(sqlite_url):
    handoff = HandoffStore(sqlite_url)
    rasa = FakeRasa(handoff, sqlite_url)
    make_user(sqlite_url, "anna", "staff")
    now = utcnow()
    transcript = '[{"sender": "citizen", "text": "ik wil een medewerker spreken"}]'
    with handoff.engine.begin() as conn:
        conn.execute(TicketRow.__table__.insert(), [
            {"conversation_id": f"3161{n:07d}", "channel": "whatsapp", "municipality": "lelystad",
             "reason": "request_human", "summary": f"Reden: vraagt om een medewerker. Vraag {n}.",
             "transcript": transcript, "status": "open", "created_at": now - dt.timedelta(minutes=2000 - n),
             "in_kcc_hours": True, "flagged": False, "version": 0, "urgent": False, "callback_requested": False}
            for n in range(1000)
        ])
    server = start_desk(sqlite_url, rasa.url)
    try:
        anna = DeskClient(server.url)
        assert anna.login("anna").status_code == 302
        anna.get("/")  # warm-up (templates compiled)
        started = time.perf_counter()
        page = anna.get("/")
        seconds = time.perf_counter() - started
        print(f"\nqueue page with 1000 open tickets: {seconds * 1000:.0f} ms, {len(page.content)} bytes, "
              f"{len(_row_ids(page.text))} rows")
        assert page.status_code == 200
        ids = _row_ids(page.text)
        assert len(ids) == 50  # one page, not a thousand rows
        assert len(page.content) < 150_000
        text = _text(page.text)
        assert "1000 gesprekken" in text and "pagina 1 van 20" in text
        assert re.search(r'href="/\?page=20"', page.text) and 'rel="next"' in page.text
        assert ids[0] == min(ids)  # waiting longest first
        last = anna.get("/?page=20")
        assert len(_row_ids(last.text)) == 50 and not set(_row_ids(last.text)) & set(ids)
        # The counts at the top are the whole queue's, the title's too.
        assert ">1000</strong> wachtend" in page.text

        api = anna.get("/api/queue?page=2&fragment=1")
        body = api.json()
        print(f"/api/queue?fragment=1 with 1000 open tickets: {len(api.content)} bytes")
        assert body["page"] == 2 and body["pages"] == 20 and len(body["tickets"]) == 50
        assert 'data-query="page=20"' in last.text  # the live update stays on page 20
        assert len(_row_ids(body["html"])) == 50 and len(api.content) < 250_000
    finally:
        server.stop()
        rasa.stop()


def test_search_and_filters_as_get_parameters(rig):
    h = rig.handoff
    passport = open_ticket(h, summary="Reden: vraagt om een medewerker. Paspoort kwijt.", minutes_ago=40,
                           municipality="terneuzen")
    polish = open_ticket(h, language="pl", channel="rest", minutes_ago=5)
    by_phone = open_ticket(h, conversation_id="31612345678", minutes_ago=2)
    mine = open_ticket(h, minutes_ago=10)
    theirs = open_ticket(h, minutes_ago=8)
    closed = open_ticket(h, summary="Reden: klacht over afval. Container niet geleegd.", reason="personal_case")
    assert rig.anna.post(f"/api/tickets/{mine.id}/claim", {}).status_code == 200
    assert rig.bert.post(f"/api/tickets/{theirs.id}/claim", {}).status_code == 200
    h.close(closed.id, "beantwoord")

    h.append_citizen_message(h.get(by_phone.id).conversation_id, "Mijn Rijbewijs is verlopen")
    a = rig.anna
    assert _api_ids(a, "q=paspoort") == [passport.id]  # the summary, case-insensitive
    assert _api_ids(a, "q=rijbewijs") == [by_phone.id]  # what the citizen wrote after the handoff
    assert _api_ids(a, f"q=%23{polish.id}") == [polish.id]  # "#12": the ticket number
    assert _api_ids(a, "q=12345678") == [by_phone.id]  # part of the phone number
    assert _api_ids(a, "q=medewerker+spreken") and set(_api_ids(a, "q=niet+bestaand")) == set()
    assert _api_ids(a, "municipality=terneuzen") == [passport.id]
    assert _api_ids(a, "language=pl") == [polish.id]
    assert polish.id not in _api_ids(a, "language=nl")
    assert _api_ids(a, "channel=rest") == [polish.id]
    assert _api_ids(a, "claimed=me") == [mine.id]
    assert _api_ids(a, "claimed=bert") == [theirs.id]
    assert _api_ids(a, "claimed=me") != _api_ids(rig.bert, "claimed=me")
    assert set(_api_ids(a, "claimed=none")) == {passport.id, polish.id, by_phone.id}
    assert set(_api_ids(a, "wait=9")) == {passport.id, mine.id}  # waiting longer than 9 minutes
    assert _api_ids(a, "sla=late") == [passport.id]  # 40 min unclaimed in KCC hours
    assert _api_ids(a, "sort=newest")[0] == by_phone.id
    assert _api_ids(a, "sort=oldest")[0] == passport.id
    assert closed.id not in _api_ids(a)

    # The page: a labelled form above the table, keeping the chosen values.
    page = a.get("/?municipality=terneuzen&sort=newest")
    assert _row_ids(page.text) == [passport.id]
    for field in ("f-q", "f-reason", "f-municipality", "f-channel", "f-language", "f-claimed", "f-wait",
                  "f-sla", "f-sort"):
        assert f'<label for="{field}">' in page.text and f'id="{field}"' in page.text
    assert '<option value="terneuzen" selected>' in page.text
    assert '<option value="newest" selected>' in page.text
    assert "1 gesprek gevonden" in _text(page.text)
    empty = a.get("/?q=niet+bestaand")
    assert "Geen gesprekken gevonden" in _text(empty.text)
    # The live update asks for the same view.
    assert 'data-query="municipality=terneuzen&amp;sort=newest"' in page.text

    # Closed tickets: the "Gesloten" tab, searchable.
    gesloten = a.get("/?tab=closed&q=container")
    assert _row_ids(gesloten.text) == [closed.id]
    assert "Beantwoord" in _text(_rows(gesloten.text)[closed.id])
    assert _api_ids(a, "tab=closed") == [closed.id]


def test_urgent_and_complaints_on_top_with_time_left(rig):
    h = rig.handoff
    normal = open_ticket(h, minutes_ago=30)
    soon = open_ticket(h, minutes_ago=5)
    evening = open_ticket(h, minutes_ago=60, in_kcc_hours=False, expected_reply_at=utcnow() + dt.timedelta(hours=2))
    night = open_ticket(h, minutes_ago=90, in_kcc_hours=False,
                        expected_reply_at=utcnow() - dt.timedelta(minutes=12, seconds=30))
    complaint = open_ticket(h, reason="complaint", summary="Reden: klacht.")
    urgent = open_ticket(h, reason="urgent", urgent=True, summary="Reden: dringend.")

    page = rig.anna.get("/")
    assert page.status_code == 200
    assert _row_ids(page.text)[:2] == [urgent.id, complaint.id]
    sections = re.findall(r'<tr class="queue-section[^"]*" id="section-(\w+)"', page.text)
    assert sections == ["urgent", "complaints", "main"]
    text = _text(page.text)
    assert text.index("Dringend (1)") < text.index("Klachten (1)") < text.index("Overige gesprekken")
    rows = {i: _text(r) for i, r in _rows(page.text).items()}
    assert "klacht" in rows[complaint.id] and "dringend" in rows[urgent.id]

    # Time left until the promised answer, per row; no repeated out-of-hours sentence.
    assert "nog 10 min" in rows[soon.id] or "nog 9 min" in rows[soon.id]
    assert "15 min te laat" in rows[normal.id]
    assert "nog 1 u 59 min" in rows[evening.id] or "nog 2 u 00 min" in rows[evening.id]
    assert "12 min te laat" in rows[night.id]
    assert "antwoord beloofd" not in " ".join(rows.values())
    assert text.count("buiten KCC-tijd doorgezet") == 1  # explained once above the table

    by_sla = _api_ids(rig.anna, "sort=sla")
    main = [i for i in by_sla if i not in (urgent.id, complaint.id)]
    assert main == [normal.id, night.id, soon.id, evening.id]  # least time left first
    assert set(_api_ids(rig.anna, "sla=late")) == {normal.id, night.id}
    api = {t["id"]: t for t in rig.anna.get("/api/queue").json()["tickets"]}
    assert api[night.id]["sla_label"] == "12 min te laat" and api[night.id]["sla_late"] is True
    assert api[urgent.id]["section"] == "urgent" and api[complaint.id]["section"] == "complaints"
    # Filtered on a reason, the complaints still come in their section.
    assert _api_ids(rig.anna, "reason=complaint") == [complaint.id]


def test_language_column(rig):
    polish = open_ticket(rig.handoff, language="pl")
    dutch = open_ticket(rig.handoff, language="nl")
    rows = {i: _text(r) for i, r in _rows(rig.anna.get("/").text).items()}
    assert "Pools" in rows[polish.id] and "Nederlands" in rows[dutch.id]
    page = rig.anna.get("/")
    assert '<option value="pl">Pools</option>' in page.text


def test_ticket_page_lists_the_citizens_earlier_tickets(rig):
    h = rig.handoff
    first = open_ticket(h, conversation_id="31611112222", summary="Reden: persoonlijke zaak. Parkeervergunning.",
                        reason="personal_case")
    h.close(first.id, "beantwoord")
    other = open_ticket(h, conversation_id="31633334444")
    again = open_ticket(h, conversation_id="31611112222")
    page = rig.anna.get(f"/tickets/{again.id}")
    assert page.status_code == 200
    section = page.text.split('id="earlier-tickets"', 1)[1].split("</section>", 1)[0]
    assert f'href="/tickets/{first.id}"' in section and "Parkeervergunning" in _text(section)
    assert "Beantwoord" in _text(section)
    assert f'/tickets/{other.id}"' not in section and f'/tickets/{again.id}"' not in section
    lone = rig.anna.get(f"/tickets/{other.id}")
    assert "Geen eerdere gesprekken" in _text(lone.text.split('id="earlier-tickets"', 1)[1])
