"""Webcare integration: outbound signed webhooks for new tickets and citizen messages
(verified by a test HTTP server), and the inbound reply/close endpoints with good
and bad signatures."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import pytest
import requests

from tests.support.desk_helpers import (  # noqa: F401
    DeskClient,
    FakeRasa,
    WebhookReceiver,
    make_user,
    open_ticket,
    sqlite_url,
    start_desk,
)
from tests.support.waiting import wait_for_state

from appcare.handoff_store import HandoffStore
from desk.store import DeskStore
from desk.webhooks import sign, verify

SECRET = "webcare-shared-secret"


def _signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _wait_for(predicate, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)  # poll interval of a bounded wait, not a guess at how long the work takes
    return False


def _wait_dispatcher_settled(server, db_url, timeout=15.0):
    """Waits until the desk's background worker has run two more full rounds (each
    one a scan of the ticket store for new events plus a delivery of every due
    event) and no outbox event is pending. The second round began after this call,
    when every ticket and message of the test was already stored, so whatever the
    dispatcher would ever send has been sent: "nothing more was delivered" is then
    a conclusion, not a race against a sleep."""
    worker = server.app.ctx.worker
    assert worker is not None, "the desk runs no background worker (background_interval=0?)"
    start = worker._rounds

    def state():
        pending = [e["event_key"] for e in DeskStore(db_url).outbox() if e["status"] == "pending"]
        return {"rounds": worker._rounds - start, "pending": pending}

    wait_for_state(
        "the webhook dispatcher to finish two full rounds with no event pending",
        state,
        lambda s: s["rounds"] >= 2 and not s["pending"],
        timeout,
    )


def test_sign_and_verify():
    body = b'{"a":1}'
    assert sign("k", body) == _signature(body, "k")
    assert verify("k", body, _signature(body, "k"))
    assert not verify("k", body, _signature(body, "other"))
    assert not verify("k", body + b" ", _signature(body, "k"))
    assert not verify("k", body, None)
    assert not verify(None, body, _signature(body, "k"))


def test_outbound_webhook_posts_signed_events_with_retry(sqlite_url):
    handoff = HandoffStore(sqlite_url)
    old = open_ticket(handoff)  # before the desk ever ran: not replayed
    receiver = WebhookReceiver(fail_first=1)
    server = start_desk(
        sqlite_url, webhook_url=receiver.url, webhook_secret=SECRET, background_interval=0.1
    )
    try:
        ticket = open_ticket(handoff, conversation_id="31600000001", summary="Reden: klacht.")
        handoff.append_citizen_message("31600000001", "Mijn e-mail is jan@example.nl")
        handoff.append_message(ticket.id, "note", "intern")  # notes are not sent
        # First attempt gets a 500; the retry (after ~2 s) succeeds.
        assert _wait_for(lambda: len(receiver.received) >= 2, timeout=15), receiver.attempts
        _wait_dispatcher_settled(server, sqlite_url)
        assert len(receiver.received) == 2
        events = []
        for item in receiver.received:
            headers = {k.lower(): v for k, v in item["headers"].items()}
            assert headers["x-appcare-signature"] == _signature(item["raw"])
            assert headers["content-type"].startswith("application/json")
            payload = json.loads(item["raw"])
            assert headers["x-appcare-event"] == payload["event"]
            assert headers["x-appcare-delivery"] == payload["delivery_id"]
            events.append(payload)
        created, message = events
        assert created["event"] == "ticket.created"
        assert created["ticket"]["id"] == ticket.id and created["ticket"]["id"] != old.id
        assert created["ticket"]["conversation_id"] == "31600000001"
        assert created["ticket"]["summary"] == "Reden: klacht."
        assert created["ticket"]["transcript"][0]["text"] == "ik wil een medewerker spreken"
        assert message["event"] == "ticket.message"
        assert message["ticket"]["id"] == ticket.id
        assert message["message"]["author"] == "citizen"
        assert message["message"]["text"] == "Mijn e-mail is [e-mail]"  # masked
        outbox = DeskStore(sqlite_url).outbox()
        assert {e["status"] for e in outbox} == {"sent"}
        assert max(e["attempts"] for e in outbox) == 2
    finally:
        server.stop()
        receiver.stop()

    # After a restart nothing is sent twice, and new events still go out.
    receiver2 = WebhookReceiver()
    server2 = start_desk(sqlite_url, webhook_url=receiver2.url, webhook_secret=SECRET, background_interval=0.1)
    try:
        handoff.append_citizen_message("31600000001", "Nog een vraag")
        assert _wait_for(lambda: len(receiver2.received) >= 1)
        _wait_dispatcher_settled(server2, sqlite_url)
        assert [json.loads(r["raw"])["message"]["text"] for r in receiver2.received] == ["Nog een vraag"]
    finally:
        server2.stop()
        receiver2.stop()


def test_outbound_webhook_gives_up_after_attempts(sqlite_url, monkeypatch):
    import desk.webhooks as webhooks

    handoff = HandoffStore(sqlite_url)
    receiver = WebhookReceiver(fail_first=100)
    server = start_desk(
        sqlite_url, webhook_url=receiver.url, webhook_secret=SECRET, background_interval=0.05, webhook_attempts=2
    )
    try:
        ticket = open_ticket(handoff)
        dispatcher = server.app.ctx.dispatcher
        assert _wait_for(lambda: receiver.attempts >= 1)
        # Skip the backoff wait: make the event due now.
        from sqlalchemy import update

        from desk.store import OutboxRow

        with DeskStore(sqlite_url).engine.begin() as conn:
            conn.execute(update(OutboxRow).values(next_attempt_at=webhooks.utcnow()))
        assert _wait_for(lambda: DeskStore(sqlite_url).outbox()[0]["status"] == "failed")
        assert receiver.attempts == 2
        audit = _wait_for(lambda: DeskStore(sqlite_url).audit_log(action="webhook_failed"))
        assert audit[0]["ticket_id"] == ticket.id and audit[0]["actor"] == "system"
        assert dispatcher.enabled
    finally:
        server.stop()
        receiver.stop()


@pytest.fixture
def integration(sqlite_url):
    handoff = HandoffStore(sqlite_url)
    rasa = FakeRasa(handoff)
    make_user(sqlite_url, "anna")
    server = start_desk(sqlite_url, rasa.url, webhook_secret=SECRET)
    yield server, handoff, rasa
    server.stop()
    rasa.stop()


def _post(server, path, payload, signature="good"):
    # timestamp and request_id are required (replay protection): a fresh pair unless given
    payload = dict({"timestamp": time.time(), "request_id": uuid.uuid4().hex}, **payload)
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signature == "good":
        headers["X-Appcare-Signature"] = _signature(body)
    elif signature:
        headers["X-Appcare-Signature"] = signature
    return requests.post(server.url + path, data=body, headers=headers, timeout=20)


def test_inbound_reply_and_close_with_signature(integration, sqlite_url):
    server, handoff, rasa = integration
    ticket = open_ticket(handoff, conversation_id="31655555555")

    for signature in (None, "sha256=deadbeef", _signature(b"other body")):
        refused = _post(server, "/api/integrations/reply", {"ticket_id": ticket.id, "text": "x"}, signature)
        assert refused.status_code == 401
    assert not rasa.calls

    reply = _post(server, "/api/integrations/reply", {"ticket_id": ticket.id, "text": "Antwoord uit Chatwoot", "agent": "sanne"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["delivery"] == "sent"
    assert rasa.calls[-1]["json"] == {
        "name": "EXTERNAL_kcc_reply",
        "entities": {"kcc_text": "Antwoord uit Chatwoot", "kcc_ref": f"kcc:{reply.json()['message_id']}"},
    }
    assert rasa.calls[-1]["conversation_id"] == "31655555555"
    staff = [m for m in handoff.get(ticket.id).messages if m["author"] == "staff"][0]
    assert staff["staff_user"] == "integration:sanne" and staff["delivery"] == "sent"

    rasa.status = 500
    failed = _post(server, "/api/integrations/reply", {"conversation_id": "31655555555", "text": "weer"})
    assert failed.status_code == 502 and failed.json()["delivery"] == "failed"
    rasa.status = 200

    assert _post(server, "/api/integrations/close", {"ticket_id": ticket.id, "outcome": "??"}).status_code == 400
    closed = _post(server, "/api/integrations/close", {"conversation_id": "31655555555", "outcome": "beantwoord"})
    assert closed.status_code == 200, closed.text
    assert rasa.calls[-1]["json"] == {"name": "EXTERNAL_kcc_close", "entities": {"kcc_outcome": "beantwoord"}}
    assert handoff.get(ticket.id).status == "closed"
    missing = _post(server, "/api/integrations/close", {"conversation_id": "31655555555", "outcome": "beantwoord"})
    assert missing.status_code == 404

    actions = [(a["actor"], a["action"]) for a in DeskStore(sqlite_url).audit_log(ticket_id=ticket.id)]
    assert ("integration:sanne", "reply") in actions and ("integration", "close") in actions
    assert DeskStore(sqlite_url).audit_log(action="integration_rejected")


def test_inbound_retry_and_replay_do_not_reach_the_citizen_twice(integration, sqlite_url):
    server, handoff, rasa = integration
    ticket = open_ticket(handoff, conversation_id="31656565656")
    body = {"ticket_id": ticket.id, "text": "Uw aanvraag is binnen.", "request_id": "chatwoot-msg-991",
            "timestamp": time.time()}
    first = _post(server, "/api/integrations/reply", body)
    assert first.status_code == 200 and first.json()["delivery"] == "sent"
    again = _post(server, "/api/integrations/reply", body)  # the tool retried after a timeout, or a replay
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["message_id"] == first.json()["message_id"]
    assert len([c for c in rasa.calls if c["json"]["name"] == "EXTERNAL_kcc_reply"]) == 1
    assert len([m for m in handoff.get(ticket.id).messages if m["author"] == "staff"]) == 1

    old = _post(server, "/api/integrations/reply", dict(body, request_id="chatwoot-msg-992", timestamp=time.time() - 3600))
    assert old.status_code == 401 and old.json()["code"] == "expired"

    rasa.status = 500  # a failed delivery may be tried again with the same id
    failed = _post(server, "/api/integrations/reply", dict(body, request_id="chatwoot-msg-993"))
    assert failed.status_code == 502
    rasa.status = 200
    retried = _post(server, "/api/integrations/reply", dict(body, request_id="chatwoot-msg-993"))
    assert retried.status_code == 200 and "duplicate" not in retried.json()
    assert len([c for c in rasa.calls if c["json"]["name"] == "EXTERNAL_kcc_reply"]) == 3
    assert DeskStore(sqlite_url).audit_log(action="integration_rejected")


def test_inbound_disabled_without_secret(sqlite_url):
    handoff = HandoffStore(sqlite_url)
    server = start_desk(sqlite_url)  # no DESK_WEBHOOK_SECRET
    try:
        ticket = open_ticket(handoff)
        body = json.dumps({"ticket_id": ticket.id, "text": "x"}).encode()
        response = requests.post(
            server.url + "/api/integrations/reply",
            data=body,
            headers={"Content-Type": "application/json", "X-Appcare-Signature": _signature(body, "")},
            timeout=10,
        )
        assert response.status_code == 401
        # A desk session does not open the integration endpoints either.
        make_user(sqlite_url, "anna")
        client = DeskClient(server.url)
        client.login("anna")
        assert client.post("/api/integrations/reply", {"ticket_id": ticket.id, "text": "x"}).status_code == 401
    finally:
        server.stop()
