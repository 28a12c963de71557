"""KCC desk tickets over real HTTP: the queue (on SQLite and PostgreSQL), flagging,
claim races, replies delivered through (a fake) Rasa, failed deliveries and retry,
notes, closing, the audit log and a restart of the desk that loses nothing."""
from __future__ import annotations

import threading

import pytest

from tests.support.desk_helpers import (  # noqa: F401 - fixtures are imported too
    DeskClient,
    FakeRasa,
    any_db_url,
    free_port,
    make_user,
    open_ticket,
    pg_url,
    sqlite_url,
    start_desk,
)

from appcare.handoff_store import HandoffStore
from desk.store import DeskStore


@pytest.fixture
def rig(any_db_url):
    """A desk with two staff members and a coordinator, and a fake Rasa."""
    handoff = HandoffStore(any_db_url)
    rasa = FakeRasa(handoff, any_db_url)
    for name, role in (("anna", "staff"), ("bert", "staff"), ("carla", "coordinator")):
        make_user(any_db_url, name, role)
    server = start_desk(any_db_url, rasa.url)
    rig = type("Rig", (), {})()
    rig.db_url, rig.handoff, rig.rasa, rig.server = any_db_url, handoff, rasa, server
    rig.desk = DeskStore(any_db_url)
    rig.client = lambda name: _logged_in(server.url, name)
    yield rig
    server.stop()
    rasa.stop()


def _logged_in(url, name):
    client = DeskClient(url)
    assert client.login(name).status_code == 302
    return client


def _actions(desk, ticket_id):
    return [(a["actor"], a["action"]) for a in reversed(desk.audit_log(ticket_id=ticket_id))]


# ---------------------------------------------------------------------- queue (SQLite + PostgreSQL)
def test_queue_shows_open_tickets_with_waiting_time_and_flags_overdue(rig):
    fresh = open_ticket(rig.handoff, municipality="terneuzen", reason="complaint")
    late = open_ticket(rig.handoff, minutes_ago=20)
    import datetime as dt

    from appcare.handoff_store import utcnow

    evening = open_ticket(
        rig.handoff, minutes_ago=60, in_kcc_hours=False, expected_reply_at=utcnow() + dt.timedelta(hours=12)
    )
    closed = open_ticket(rig.handoff)
    rig.handoff.close(closed.id, "dubbel")

    anna = rig.client("anna")
    queue = anna.get("/api/queue").json()
    by_id = {t["id"]: t for t in queue["tickets"]}
    assert set(by_id) == {fresh.id, late.id, evening.id}
    assert queue["tickets"][0]["id"] == fresh.id  # the complaint, in its own section "Klachten" (issue 18)
    assert queue["tickets"][1]["id"] == late.id  # then overdue first
    assert by_id[late.id]["overdue"] and by_id[late.id]["waiting_label"] == "20 min"
    assert not by_id[fresh.id]["overdue"]
    assert not by_id[evening.id]["overdue"]  # outside KCC hours: the citizen knows when to expect an answer
    assert by_id[fresh.id]["reason_label"] == "klacht"
    assert by_id[fresh.id]["municipality"] == "terneuzen"
    assert by_id[fresh.id]["channel_label"] == "WhatsApp"
    assert queue["counts"] == {"open": 3, "claimed": 0, "overdue": 1}

    page = anna.get("/")
    assert page.status_code == 200
    assert f'data-ticket-id="{late.id}" class="ticket-row status-open overdue"' in page.text
    fragment = anna.get("/api/queue?fragment=1").json()["html"]
    assert "te laat" in fragment and "klacht" in fragment

    # The periodic task persists the flag and audits it, once.
    service = rig.server.app.ctx.service
    assert service.flag_overdue() == [late.id]
    assert service.flag_overdue() == []
    assert rig.handoff.get(late.id).flagged
    assert ("system", "flagged") in _actions(rig.desk, late.id)

    # A claimed ticket is no longer overdue; the queue shows who has it.
    assert anna.post(f"/api/tickets/{late.id}/claim", {}).status_code == 200
    queue = anna.get("/api/queue").json()
    claimed = [t for t in queue["tickets"] if t["id"] == late.id][0]
    assert claimed["status"] == "claimed" and claimed["claimed_by"] == "anna" and not claimed["overdue"]


def test_claim_race_two_staff_one_wins(rig):
    anna, bert = rig.client("anna"), rig.client("bert")
    for _ in range(5):
        ticket = open_ticket(rig.handoff)
        barrier = threading.Barrier(2)
        results = {}

        def claim(name, client):
            barrier.wait()
            results[name] = client.post(f"/api/tickets/{ticket.id}/claim", {})

        threads = [threading.Thread(target=claim, args=a) for a in (("anna", anna), ("bert", bert))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        codes = sorted(r.status_code for r in results.values())
        assert codes == [200, 409], codes
        winner = "anna" if results["anna"].status_code == 200 else "bert"
        loser = "bert" if winner == "anna" else "anna"
        assert "al opgepakt door " + winner in results[loser].json()["error"]
        assert rig.handoff.get(ticket.id).claimed_by == winner
        actions = _actions(rig.desk, ticket.id)
        assert actions.count((winner, "claim")) == 1 and (loser, "claim_refused") in actions


def test_store_claim_is_atomic_under_many_threads(any_db_url):
    store = HandoffStore(any_db_url)
    ticket = open_ticket(store)
    barrier = threading.Barrier(8)
    wins = []

    def claim(i):
        barrier.wait()
        if store.claim(ticket.id, f"user{i}"):
            wins.append(i)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(wins) == 1
    assert store.get(ticket.id).claimed_by == f"user{wins[0]}"


# ---------------------------------------------------------------------- reply, note, close
def test_reply_goes_through_rasa_trigger_intent(rig):
    ticket = open_ticket(rig.handoff, conversation_id="31612345678")
    anna = rig.client("anna")
    response = anna.post(f"/api/tickets/{ticket.id}/reply", {"text": "Goedemiddag, ik help u graag."})
    assert response.status_code == 200, response.text
    assert response.json()["delivery"] == "sent"

    call = rig.rasa.intents("EXTERNAL_kcc_reply")[0]
    assert call["path"] == "/conversations/31612345678/trigger_intent"
    assert call["query"]["output_channel"] == "latest"
    message_id = response.json()["message_id"]
    assert call["json"] == {
        "name": "EXTERNAL_kcc_reply",
        "entities": {"kcc_text": "Goedemiddag, ik help u graag.", "kcc_ref": f"kcc:{message_id}"},
    }

    stored = rig.handoff.get(ticket.id)
    assert stored.claimed_by == "anna"  # replying picks an open ticket up
    staff = [m for m in stored.messages if m["author"] == "staff"]
    assert staff[0]["text"] == "Goedemiddag, ik help u graag." and staff[0]["delivery"] == "sent"
    assert staff[0]["staff_user"] == "anna"
    assert stored.first_staff_reply_at is not None
    assert _actions(rig.desk, ticket.id) == [
        ("anna", "claim"),
        ("anna", "reply"),
        ("anna", "reply_delivered"),
    ]
    page = anna.get(f"/tickets/{ticket.id}")
    assert "Goedemiddag, ik help u graag." in page.text and "verzonden" in page.text

    # Someone else cannot answer a ticket anna holds.
    bert = rig.client("bert")
    refused = bert.post(f"/api/tickets/{ticket.id}/reply", {"text": "Ik ook"})
    assert refused.status_code == 409 and "anna" in refused.json()["error"]
    assert len(rig.rasa.intents("EXTERNAL_kcc_reply")) == 1


def test_rasa_credentials_never_go_in_the_url(sqlite_url, monkeypatch):
    # The desk authenticates with a JWT header (tests/test_security_desk.py checks it);
    # URLs end up in access logs, so no token rides along as ?token= any more.
    monkeypatch.setenv("RASA_JWT_SECRET", "jwt-secret-for-the-desk-tests-0123456789")
    monkeypatch.setenv("RASA_TOKEN", "s3cret-token")
    handoff = HandoffStore(sqlite_url)
    rasa = FakeRasa(handoff)
    make_user(sqlite_url, "anna")
    server = start_desk(sqlite_url, rasa.url)
    try:
        ticket = open_ticket(handoff)
        assert _logged_in(server.url, "anna").post(f"/api/tickets/{ticket.id}/reply", {"text": "Hoi"}).status_code == 200
        assert rasa.calls[0]["query"] == {"output_channel": "latest"}
    finally:
        server.stop()
        rasa.stop()


def test_failed_delivery_is_shown_and_can_be_retried(rig):
    ticket = open_ticket(rig.handoff)
    anna = rig.client("anna")
    rig.rasa.status = 500
    response = anna.post(f"/api/tickets/{ticket.id}/reply", {"text": "Uw aanvraag is binnen."})
    assert response.status_code == 502
    body = response.json()
    assert body["delivery"] == "failed" and "500" in body["error"]
    message_id = body["message_id"]
    stored = [m for m in rig.handoff.get(ticket.id).messages if m["id"] == message_id][0]
    assert stored["delivery"] == "failed" and stored["text"] == "Uw aanvraag is binnen."
    page = anna.get(f"/tickets/{ticket.id}")
    assert "niet afgeleverd" in page.text and "Opnieuw versturen" in page.text
    assert ("anna", "reply_failed") in _actions(rig.desk, ticket.id)

    # The form path says so too.
    failed_form = anna.form(f"/tickets/{ticket.id}/reply", {"text": "Nog een poging"})
    assert failed_form.status_code == 302 and "msg=failed" in failed_form.headers["Location"]

    rig.rasa.status = 200
    retry = anna.post(f"/api/tickets/{ticket.id}/messages/{message_id}/retry", {})
    assert retry.status_code == 200 and retry.json()["delivery"] == "sent"
    assert rig.rasa.calls[-1]["json"]["entities"]["kcc_text"] == "Uw aanvraag is binnen."
    stored = [m for m in rig.handoff.get(ticket.id).messages if m["id"] == message_id][0]
    assert stored["delivery"] == "sent" and stored["error"] is None
    assert ("anna", "reply_retry") in _actions(rig.desk, ticket.id)


def test_whatsapp_send_failure_recorded_by_the_channel_is_shown_as_failed(rig):
    """Rasa answers 200 even when WhatsApp refused the message: the channel records it
    in its outbox under the reply's kcc_ref, and the desk reads that."""
    ticket = open_ticket(rig.handoff, conversation_id="31622223333")
    anna = rig.client("anna")
    rig.rasa.whatsapp_outcome = "failed"
    response = anna.post(f"/api/tickets/{ticket.id}/reply", {"text": "Bent u er nog?"})
    assert response.status_code == 502
    assert response.json()["delivery"] == "failed" and "131026" in response.json()["error"]
    assert "niet afgeleverd" in anna.get(f"/tickets/{ticket.id}").text

    rig.rasa.whatsapp_outcome = "deferred"
    deferred = anna.post(f"/api/tickets/{ticket.id}/reply", {"text": "Ik hoor graag van u."})
    assert deferred.status_code == 200 and deferred.json()["delivery"] == "deferred"
    assert "uitgesteld" in anna.get(f"/tickets/{ticket.id}").text

    rig.rasa.whatsapp_outcome = "sent"
    retry = anna.post(f"/api/tickets/{ticket.id}/messages/{response.json()['message_id']}/retry", {})
    assert retry.status_code == 200 and retry.json()["delivery"] == "sent"
    actions = [a for _, a in _actions(rig.desk, ticket.id)]
    assert actions.count("reply_failed") == 1 and "reply_deferred" in actions and "reply_delivered" in actions


def test_unreachable_rasa_means_failed(sqlite_url):
    handoff = HandoffStore(sqlite_url)
    make_user(sqlite_url, "anna")
    server = start_desk(sqlite_url, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    try:
        ticket = open_ticket(handoff)
        response = _logged_in(server.url, "anna").post(f"/api/tickets/{ticket.id}/reply", {"text": "Hallo"})
        assert response.status_code == 502 and "niet bereikbaar" in response.json()["error"]
        assert handoff.get(ticket.id).messages[-1]["delivery"] == "failed"
    finally:
        server.stop()


def test_citizen_messages_and_notes_show_up_live(rig):
    ticket = open_ticket(rig.handoff, conversation_id="31698765432")
    anna = rig.client("anna")
    before = anna.get(f"/api/tickets/{ticket.id}?fragment=1", headers={"X-Desk-Poll": "1"}).json()
    assert before["transcript"][0]["text"] == "ik wil een medewerker spreken"
    assert before["messages"] == []
    # The bot's action_relay_to_kcc appends what the citizen writes (masked).
    rig.handoff.append_citizen_message("31698765432", "Mijn BSN is 123456782, kunt u helpen?")
    after = anna.get(f"/api/tickets/{ticket.id}?fragment=1", headers={"X-Desk-Poll": "1"}).json()
    assert after["version"] != before["version"]
    assert after["messages"][0]["author"] == "citizen"
    assert "123456782" not in after["messages"][0]["text"] and "[BSN]" in after["messages"][0]["text"]
    assert "[BSN]" in after["html"]["messages"]

    note = anna.post(f"/api/tickets/{ticket.id}/note", {"text": "Terugbellen na 14:00"})
    assert note.status_code == 200
    detail = anna.get(f"/api/tickets/{ticket.id}").json()
    assert detail["messages"][-1]["author"] == "note" and detail["messages"][-1]["staff_user"] == "anna"
    assert not rig.rasa.calls  # notes never reach the citizen
    assert ("anna", "note") in _actions(rig.desk, ticket.id)
    assert anna.post(f"/api/tickets/{ticket.id}/note", {"text": "  "}).status_code == 400
    assert anna.get("/api/tickets/999999").status_code == 404


def test_close_with_outcome_hands_back_to_the_bot(rig):
    ticket = open_ticket(rig.handoff, conversation_id="31611112222")
    anna = rig.client("anna")
    assert anna.post(f"/api/tickets/{ticket.id}/close", {"outcome": "onzin"}).status_code == 400
    response = anna.post(f"/api/tickets/{ticket.id}/close", {"outcome": "beantwoord"})
    assert response.status_code == 200, response.text
    call = rig.rasa.intents("EXTERNAL_kcc_close")[0]
    assert call["path"] == "/conversations/31611112222/trigger_intent"
    assert call["query"]["output_channel"] == "latest"
    assert call["json"] == {"name": "EXTERNAL_kcc_close", "entities": {"kcc_outcome": "beantwoord"}}
    closed = rig.handoff.get(ticket.id)
    assert closed.status == "closed" and closed.outcome == "beantwoord"
    assert _actions(rig.desk, ticket.id)[-1] == ("anna", "close")
    assert ticket.id not in [t["id"] for t in anna.get("/api/queue").json()["tickets"]]
    again = anna.post(f"/api/tickets/{ticket.id}/close", {"outcome": "beantwoord"})
    assert again.status_code == 409
    assert anna.post(f"/api/tickets/{ticket.id}/reply", {"text": "nog iets"}).status_code == 409


def test_close_when_rasa_fails_keeps_ticket_open_unless_coordinator_forces(rig):
    ticket = open_ticket(rig.handoff)
    anna, carla = rig.client("anna"), rig.client("carla")
    rig.rasa.status = 503
    failed = anna.post(f"/api/tickets/{ticket.id}/close", {"outcome": "doorverwezen"})
    assert failed.status_code == 502 and "staat nog open" in failed.json()["error"]
    assert rig.handoff.get(ticket.id).status == "claimed"
    # Staff cannot force; the coordinator can.
    assert anna.post(f"/api/tickets/{ticket.id}/close", {"outcome": "doorverwezen", "force": True}).status_code == 502
    forced = carla.post(f"/api/tickets/{ticket.id}/close", {"outcome": "doorverwezen", "force": True})
    assert forced.status_code == 200 and forced.json()["forced"]
    assert rig.handoff.get(ticket.id).status == "closed"
    actions = _actions(rig.desk, ticket.id)
    assert ("anna", "close_failed") in actions and ("carla", "force_close") in actions


def test_form_flow_claim_reply_note_close(rig):
    ticket = open_ticket(rig.handoff)
    anna = rig.client("anna")
    page = anna.get(f"/tickets/{ticket.id}")
    assert 'id="claim-button"' in page.text
    assert anna.form(f"/tickets/{ticket.id}/claim", {}).headers["Location"].endswith("msg=claimed")
    page = anna.get(f"/tickets/{ticket.id}?msg=claimed")
    assert "Je hebt dit gesprek opgepakt." in page.text and 'id="release-button"' in page.text
    bert = rig.client("bert")
    taken = bert.form(f"/tickets/{ticket.id}/claim", {})
    assert taken.headers["Location"].endswith("msg=taken")
    assert "al opgepakt" in bert.get(f"/tickets/{ticket.id}?msg=taken").text
    assert anna.form(f"/tickets/{ticket.id}/reply", {"text": "Dag!"}).headers["Location"].endswith("msg=sent")
    assert anna.form(f"/tickets/{ticket.id}/note", {"text": "intern"}).headers["Location"].endswith("msg=noted")
    closed = anna.form(f"/tickets/{ticket.id}/close", {"outcome": "beantwoord", "confirm": "1"})
    assert closed.status_code == 302 and closed.headers["Location"] == "/?msg=closed"
    assert rig.handoff.get(ticket.id).status == "closed"
    assert [a for _, a in _actions(rig.desk, ticket.id)] == [
        "claim", "claim_refused", "reply", "reply_delivered", "note", "close"
    ]
    # Every audit row says who, what, when and which ticket.
    for row in rig.desk.audit_log(ticket_id=ticket.id):
        assert row["actor"] and row["action"] and row["at"] and row["ticket_id"] == ticket.id


def test_release_puts_ticket_back(rig):
    ticket = open_ticket(rig.handoff)
    anna, bert, carla = rig.client("anna"), rig.client("bert"), rig.client("carla")
    assert anna.post(f"/api/tickets/{ticket.id}/claim", {}).status_code == 200
    assert bert.post(f"/api/tickets/{ticket.id}/release", {}).status_code == 409
    assert carla.post(f"/api/tickets/{ticket.id}/release", {}).status_code == 200
    assert rig.handoff.get(ticket.id).status == "open"
    assert bert.post(f"/api/tickets/{ticket.id}/claim", {}).status_code == 200


# ---------------------------------------------------------------------- restart
def test_restart_of_the_desk_loses_nothing(any_db_url):
    handoff = HandoffStore(any_db_url)
    rasa = FakeRasa(handoff)
    make_user(any_db_url, "anna")
    make_user(any_db_url, "carla", "coordinator")
    first = start_desk(any_db_url, rasa.url)
    try:
        ticket = open_ticket(handoff)
        other = open_ticket(handoff)
        anna = _logged_in(first.url, "anna")
        carla = _logged_in(first.url, "carla")
        assert carla.post("/api/answers", {"title": "Groet", "text": "Goedendag!"}).status_code == 200
        assert anna.post(f"/api/tickets/{ticket.id}/reply", {"text": "Ik kijk ernaar."}).status_code == 200
        assert anna.post(f"/api/tickets/{ticket.id}/note", {"text": "Notitie"}).status_code == 200
        before_ticket = anna.get(f"/api/tickets/{ticket.id}").json()
        before_queue = anna.get("/api/queue").json()
    finally:
        first.stop()

    # While the desk is down the bot keeps appending citizen messages.
    handoff.append_citizen_message(ticket.conversation_id, "Ben er nog!")

    second = start_desk(any_db_url, rasa.url)  # a new app on the same database
    try:
        anna.base_url = second.url
        carla.base_url = second.url
        # Server-side sessions survive the restart.
        after_ticket = anna.get(f"/api/tickets/{ticket.id}").json()
        assert after_ticket["status"] == "claimed" and after_ticket["claimed_by"] == "anna"
        assert after_ticket["messages"][: len(before_ticket["messages"])] == before_ticket["messages"]
        assert after_ticket["messages"][-1]["text"] == "Ben er nog!"
        assert {t["id"] for t in anna.get("/api/queue").json()["tickets"]} == {
            t["id"] for t in before_queue["tickets"]
        } == {ticket.id, other.id}
        assert [a["title"] for a in anna.get("/api/answers").json()["answers"]] == ["Groet"]
        assert anna.post(f"/api/tickets/{ticket.id}/close", {"outcome": "beantwoord"}).status_code == 200
        actions = [a for _, a in _actions(DeskStore(any_db_url), ticket.id)]
        assert actions == ["claim", "reply", "reply_delivered", "note", "close"]
    finally:
        second.stop()
        rasa.stop()
