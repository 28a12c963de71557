"""Security of the inbound webcare integration (POST /api/integrations/reply|close):
a captured signed request cannot be replayed, timestamp and request_id are
required, and a request_id whose first request died mid-way can be retried once.
Real HTTP against the desk; Rasa is the recording FakeRasa of the desk tests."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
import uuid

import pytest
import requests
from sqlalchemy import update

from tests.support.desk_helpers import (  # noqa: F401
    FakeRasa,
    any_db_url,
    open_ticket,
    pg_url,
    sqlite_url,
    start_desk,
)

from appcare.handoff_store import HandoffStore, utcnow
from desk.store import DeskStore, IntegrationRequestRow

SECRET = "webcare-shared-secret-0123456789"


def _sign(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def _send(server, body: bytes, path: str = "/api/integrations/reply") -> requests.Response:
    headers = {"Content-Type": "application/json", "X-Appcare-Signature": _sign(body)}
    return requests.post(server.url + path, data=body, headers=headers, timeout=20)


def _body(**fields) -> bytes:
    return json.dumps(fields).encode()


@pytest.fixture
def integration(any_db_url):
    handoff = HandoffStore(any_db_url)
    rasa = FakeRasa(handoff)
    server = start_desk(any_db_url, rasa.url, webhook_secret=SECRET)
    yield server, handoff, rasa, any_db_url
    server.stop()
    rasa.stop()


def _staff_replies(handoff, ticket_id):
    return [m for m in handoff.get(ticket_id).messages if m["author"] == "staff"]


def test_replayed_signed_request_does_not_reply_twice(integration):
    server, handoff, rasa, _ = integration
    ticket = open_ticket(handoff)
    body = _body(ticket_id=ticket.id, text="Uw melding is ontvangen.", timestamp=time.time(),
                 request_id=f"crm-{uuid.uuid4().hex}")
    first = _send(server, body)
    assert first.status_code == 200, first.text
    replay = _send(server, body)  # the very same bytes, signature and all
    assert replay.json()["duplicate"] is True
    assert replay.json()["message_id"] == first.json()["message_id"]
    assert len(rasa.intents("EXTERNAL_kcc_reply")) == 1
    assert len(_staff_replies(handoff, ticket.id)) == 1


@pytest.mark.parametrize("missing", ["timestamp", "request_id"])
def test_timestamp_and_request_id_are_required(integration, missing):
    server, handoff, rasa, db_url = integration
    ticket = open_ticket(handoff)
    fields = {"ticket_id": ticket.id, "text": "Antwoord", "timestamp": time.time(), "request_id": "crm-1"}
    for variant in ({k: v for k, v in fields.items() if k != missing}, dict(fields, **{missing: ""}),
                    dict(fields, **{missing: None})):
        for path in ("/api/integrations/reply", "/api/integrations/close"):
            refused = _send(server, _body(**variant), path)
            assert refused.status_code == 400, refused.text
            assert refused.json()["field"] == missing
            assert missing in refused.json()["error"]
    assert not rasa.calls
    assert not _staff_replies(handoff, ticket.id)
    assert handoff.get(ticket.id).status != "closed"
    assert DeskStore(db_url).audit_log(action="integration_rejected")


@pytest.mark.parametrize("stamp", [-3600, +3600, "NaN", "gisteren", True])
def test_stale_or_bad_timestamp_is_refused(integration, stamp):
    server, handoff, rasa, _ = integration
    ticket = open_ticket(handoff)
    timestamp = time.time() + stamp if isinstance(stamp, int) and not isinstance(stamp, bool) else stamp
    body = json.dumps({"ticket_id": ticket.id, "text": "Antwoord", "request_id": f"crm-{uuid.uuid4().hex}",
                       "timestamp": timestamp}).encode()  # json writes NaN as a bare NaN
    refused = _send(server, body)
    assert refused.status_code == 401 and refused.json()["code"] == "expired"
    assert not rasa.calls and not _staff_replies(handoff, ticket.id)


def _backdate_claim(db_url: str, request_id: str, minutes: float) -> None:
    store = DeskStore(db_url)
    with store.engine.begin() as conn:
        conn.execute(
            update(IntegrationRequestRow)
            .where(IntegrationRequestRow.request_id == request_id)
            .values(created_at=utcnow() - dt.timedelta(minutes=minutes))
        )


def test_claim_of_a_crashed_request_expires_and_the_retry_runs_once(integration):
    server, handoff, rasa, db_url = integration
    ticket = open_ticket(handoff)
    request_id = f"crm-{uuid.uuid4().hex}"
    # The first attempt claimed the id and then the desk process died: no answer stored.
    assert DeskStore(db_url).claim_request(request_id, "reply") is None

    def attempt():
        return _send(server, _body(ticket_id=ticket.id, text="Het is geregeld.", timestamp=time.time(),
                                   request_id=request_id))

    running = attempt()  # a fresh claim may still be running: no second reply
    assert running.status_code == 409 and running.json()["code"] == "in_progress"
    assert not rasa.calls

    _backdate_claim(db_url, request_id, minutes=30)  # long after any request could still run
    retried = attempt()
    assert retried.status_code == 200, retried.text
    assert "duplicate" not in retried.json()
    again = attempt()
    assert again.status_code == 200 and again.json()["duplicate"] is True
    _backdate_claim(db_url, request_id, minutes=30)  # a completed request never expires this way
    assert attempt().json()["duplicate"] is True
    assert len(rasa.intents("EXTERNAL_kcc_reply")) == 1
    assert len(_staff_replies(handoff, ticket.id)) == 1
    assert DeskStore(db_url).audit_log(action="integration_claim_expired")


def test_wrong_signature_is_refused_before_anything_else(integration):
    server, handoff, rasa, _ = integration
    ticket = open_ticket(handoff)
    body = _body(ticket_id=ticket.id, text="x", timestamp=time.time(), request_id="crm-x")
    for signature in (None, "", "sha256=" + "0" * 64, _sign(body).upper(), _sign(body + b" ")):
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Appcare-Signature"] = signature
        refused = requests.post(server.url + "/api/integrations/reply", data=body, headers=headers, timeout=10)
        assert refused.status_code == 401
    assert not rasa.calls
    # The refused attempts did not claim the request_id: the real request still goes through.
    assert _send(server, body).status_code == 200
