"""Staff replies whose delivery is not known yet (issue 12: no citizen message lost
or answered twice).

The desk sends a staff reply through Rasa's HTTP API and then reads the WhatsApp
channel's outbox rows of the reply (ref ``kcc:<message id>``). When Rasa does not
answer in time, drops the connection after the request, or the channel itself does
not know yet whether Meta got the message (outbox status ``unknown``/``sending``),
the reply shows *onbekend*: it may have reached the citizen, so *Opnieuw versturen*
is refused until the outbox says ``sent`` or ``failed``. The ticket page turns it
into *verzonden* / *niet afgeleverd* by itself.

Everything runs over real HTTP: the desk (desk.app) on 127.0.0.1, a Rasa stand-in of
this file on 127.0.0.1, and outbox rows written with the real channels.inbox.InboxStore
on the desk's database (as the WhatsApp channel does while Rasa runs the action).
"""
from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional
from urllib.parse import unquote, urlparse

import pytest

from tests.support.desk_helpers import (  # noqa: F401 - fixtures are imported too
    DeskClient,
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

RASA_TIMEOUT = 1.0  # the desk's wait for Rasa in these tests (default 120 s)
NOT_YET = "We weten nog niet of dit bericht is aangekomen."
UNKNOWN_TITLE = "Nog niet bekend of WhatsApp het bericht heeft afgeleverd"


# ---------------------------------------------------------------------- the WhatsApp channel's outbox
def outbox_row(db_url: str, recipient: str, ref: str, status: str) -> int:
    """One outbox row of a staff reply, as the WhatsApp channel writes it."""
    from channels.inbox import InboxStore

    inbox = InboxStore(db_url)
    payload = {"messaging_product": "whatsapp", "to": recipient, "type": "text", "text": {"body": "..."}}
    (outbox_id,) = inbox.add_outgoing("100200300", recipient, [payload], ["text"], ref=ref)
    set_outbox_status(db_url, outbox_id, status)
    return outbox_id


def set_outbox_status(db_url: str, outbox_id: int, status: str) -> None:
    from channels.inbox import InboxStore

    inbox = InboxStore(db_url)
    if status == "sent":
        inbox.mark_sent(outbox_id, f"wamid.TEST{outbox_id}")
    elif status == "failed":
        inbox.mark_failed(outbox_id, 131026, "Message undeliverable")
    elif status in ("sending", "unknown"):
        # sending: the POST to Meta is in flight; unknown: it timed out after sending.
        inbox._update_outgoing(outbox_id, status=status, error="timeout_after_send")  # noqa: SLF001
    elif status != "pending":
        raise ValueError(status)


# ---------------------------------------------------------------------- a Rasa stand-in
class RasaStandIn:
    """Answers ``POST /conversations/<id>/trigger_intent`` like ``rasa run
    --enable-api``. Per call it first writes the reply's outbox row with status
    ``outbox`` (None: no row, as when the action never got to the channel), then:
    ``answer`` (200), ``hang`` (reads the request and never answers) or ``drop``
    (closes the connection without an answer)."""

    def __init__(self, db_url: str, port: int = 0):
        self.db_url = db_url
        self.mode = "answer"
        self.delay = 0.0  # seconds before answering
        self.outbox: Optional[str] = "sent"
        self.calls: List[Dict[str, Any]] = []
        self.rows: List[int] = []
        self.release = threading.Event()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                match = re.fullmatch(r"/conversations/(.+)/trigger_intent", urlparse(self.path).path)
                conversation_id = unquote(match.group(1)) if match else ""
                body = json.loads(raw or b"{}")
                stand_in.calls.append(body)
                ref = (body.get("entities") or {}).get("kcc_ref")
                if ref and stand_in.outbox:
                    stand_in.rows.append(outbox_row(stand_in.db_url, conversation_id, ref, stand_in.outbox))
                if stand_in.mode == "hang":
                    stand_in.release.wait(30)
                    self.close_connection = True
                    return
                if stand_in.mode == "drop":
                    self.close_connection = True
                    return
                time.sleep(stand_in.delay)
                data = json.dumps({"tracker": {"sender_id": conversation_id}, "messages": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def replies(self) -> List[Dict[str, Any]]:
        return [c for c in self.calls if c.get("name") == "EXTERNAL_kcc_reply"]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------- rig
class Rig:
    def __init__(self, db_url: str, rasa_url: Optional[str] = None, **overrides):
        self.db_url = db_url
        self.handoff = HandoffStore(db_url)
        self.desk = DeskStore(db_url)
        self.rasa = None if rasa_url else RasaStandIn(db_url)
        make_user(db_url, "anna")
        self.server = start_desk(db_url, rasa_url or self.rasa.url, rasa_timeout=RASA_TIMEOUT, **overrides)
        self.anna = DeskClient(self.server.url)
        assert self.anna.login("anna").status_code == 302

    def stop(self) -> None:
        self.server.stop()
        if self.rasa:
            self.rasa.stop()

    # What anna sees
    def messages_html(self, ticket_id: int) -> str:
        response = self.anna.get(f"/api/tickets/{ticket_id}?fragment=1", headers={"X-Desk-Poll": "1"})
        assert response.status_code == 200, response.text
        return response.json()["html"]["messages"]

    def delivery(self, ticket_id: int, message_id: int) -> str:
        ticket = self.anna.get(f"/api/tickets/{ticket_id}").json()
        return [m for m in ticket["messages"] if m["id"] == message_id][0]["delivery"]

    def retry(self, ticket_id: int, message_id: int):
        return self.anna.post(f"/api/tickets/{ticket_id}/messages/{message_id}/retry", {})

    def actions(self, ticket_id: int) -> List[str]:
        return [a["action"] for a in reversed(self.desk.audit_log(ticket_id=ticket_id))]


@pytest.fixture
def rig(sqlite_url):
    rig = Rig(sqlite_url)
    yield rig
    rig.stop()


@pytest.fixture
def rig_any_db(any_db_url):
    rig = Rig(any_db_url)
    yield rig
    rig.stop()


def _unknown_shown(html: str) -> bool:
    return "onbekend" in html and UNKNOWN_TITLE in html and "Opnieuw versturen" not in html and "niet afgeleverd" not in html


# ---------------------------------------------------------------------- no answer from Rasa
def test_rasa_taking_the_reply_without_answering_shows_unknown_until_whatsapp_confirms(rig_any_db):
    rig = rig_any_db
    ticket = open_ticket(rig.handoff, conversation_id="31612340001")
    rig.rasa.mode, rig.rasa.outbox = "hang", None  # Rasa is still busy when the desk stops waiting

    response = rig.anna.post(f"/api/tickets/{ticket.id}/reply", {"text": "Uw pas ligt klaar."})
    assert response.status_code == 200, response.text  # not "niet afgeleverd": it may arrive
    body = response.json()
    assert body["delivery"] == "unknown" and body["ok"] is True
    message_id = body["message_id"]
    assert _unknown_shown(rig.messages_html(ticket.id))
    assert "onbekend" in rig.anna.get(f"/tickets/{ticket.id}").text

    # Opnieuw versturen is refused, by the API and by the form: the citizen may have it.
    refused = rig.retry(ticket.id, message_id)
    assert refused.status_code == 409
    assert refused.json()["code"] == "unknown" and NOT_YET in refused.json()["error"]
    form = rig.anna.form(f"/tickets/{ticket.id}/messages/{message_id}/retry", {})
    assert form.status_code == 302 and "msg=retry_unknown" in form.headers["Location"]
    assert NOT_YET in rig.anna.get(form.headers["Location"]).text
    assert len(rig.rasa.replies()) == 1

    # Rasa goes on with it: the channel's POST to Meta times out too -> still onbekend.
    ref = f"kcc:{message_id}"
    row = outbox_row(rig.db_url, "31612340001", ref, "unknown")
    assert _unknown_shown(rig.messages_html(ticket.id))
    assert rig.retry(ticket.id, message_id).status_code == 409

    # Meta's status webhook confirms it: the ticket shows "verzonden" by itself.
    set_outbox_status(rig.db_url, row, "sent")
    html = rig.messages_html(ticket.id)
    assert "verzonden" in html and "onbekend" not in html
    assert rig.delivery(ticket.id, message_id) == "sent"
    assert rig.handoff.get(ticket.id).first_staff_reply_at is not None
    assert rig.retry(ticket.id, message_id).json()["delivery"] == "sent"  # nothing sent again
    assert len(rig.rasa.replies()) == 1
    assert rig.actions(ticket.id)[-2:] == ["reply_unknown", "reply_delivered"]


def test_rasa_dropping_the_connection_after_the_request_is_unknown(rig):
    ticket = open_ticket(rig.handoff, conversation_id="31612340002")
    rig.rasa.mode, rig.rasa.outbox = "drop", None  # closes the connection without an answer
    response = rig.anna.post(f"/api/tickets/{ticket.id}/reply", {"text": "Wij bellen u morgen."})
    assert response.status_code == 200 and response.json()["delivery"] == "unknown"
    message_id = response.json()["message_id"]
    assert _unknown_shown(rig.messages_html(ticket.id))
    assert rig.retry(ticket.id, message_id).status_code == 409

    # The channel was posting it to Meta: still onbekend.
    row = outbox_row(rig.db_url, "31612340002", f"kcc:{message_id}", "sending")
    assert _unknown_shown(rig.messages_html(ticket.id))
    assert rig.retry(ticket.id, message_id).status_code == 409

    # The channel finds out Meta never got it: "niet afgeleverd", and a retry is allowed.
    set_outbox_status(rig.db_url, row, "failed")
    html = rig.messages_html(ticket.id)
    assert "niet afgeleverd" in html and "Opnieuw versturen" in html and "onbekend" not in html
    rig.rasa.mode, rig.rasa.outbox = "answer", "sent"
    retry = rig.retry(ticket.id, message_id)
    assert retry.status_code == 200 and retry.json()["delivery"] == "sent"
    assert len(rig.rasa.replies()) == 2


# ---------------------------------------------------------------------- Rasa answered, WhatsApp does not know yet
def test_whatsapp_result_unknown_after_rasa_answered_then_failed_allows_retry(rig):
    ticket = open_ticket(rig.handoff, conversation_id="31612340003")
    rig.rasa.outbox = "unknown"  # the channel's POST to Meta timed out; Rasa answers 200
    response = rig.anna.post(f"/api/tickets/{ticket.id}/reply", {"text": "Goedemorgen!"})
    assert response.status_code == 200
    assert response.json()["delivery"] == "unknown"
    assert UNKNOWN_TITLE in response.json()["error"]
    message_id = response.json()["message_id"]
    assert _unknown_shown(rig.messages_html(ticket.id))
    assert rig.retry(ticket.id, message_id).status_code == 409

    # Not confirmed after the channel's own resend: failed -> Opnieuw versturen.
    set_outbox_status(rig.db_url, rig.rasa.rows[0], "failed")
    html = rig.messages_html(ticket.id)
    assert "niet afgeleverd" in html and "Opnieuw versturen" in html
    assert rig.delivery(ticket.id, message_id) == "failed"

    # The retry's own result is unknown again: the earlier failed row does not count
    # for it, so it shows onbekend (not "niet afgeleverd") and cannot be sent a third time.
    retry = rig.retry(ticket.id, message_id)
    assert retry.status_code == 200 and retry.json()["delivery"] == "unknown"
    assert _unknown_shown(rig.messages_html(ticket.id))
    assert rig.retry(ticket.id, message_id).status_code == 409
    assert len(rig.rasa.replies()) == 2

    set_outbox_status(rig.db_url, rig.rasa.rows[1], "sent")
    html = rig.messages_html(ticket.id)
    assert "verzonden" in html and "niet afgeleverd" not in html and "onbekend" not in html
    assert rig.retry(ticket.id, message_id).json()["delivery"] == "sent"
    assert len(rig.rasa.replies()) == 2


def test_form_reply_with_unknown_result_says_so(rig):
    ticket = open_ticket(rig.handoff, conversation_id="31612340004")
    rig.rasa.outbox = "sending"
    form = rig.anna.form(f"/tickets/{ticket.id}/reply", {"text": "Een ogenblik."})
    assert form.status_code == 302 and "msg=unknown" in form.headers["Location"]
    page = rig.anna.get(form.headers["Location"]).text
    assert "Nog niet bekend of je antwoord is aangekomen" in page and "onbekend" in page


def test_two_clicks_on_opnieuw_versturen_send_once(rig):
    ticket = open_ticket(rig.handoff, conversation_id="31612340008")
    rig.rasa.outbox = "failed"
    message_id = rig.anna.post(f"/api/tickets/{ticket.id}/reply", {"text": "Tweede poging"}).json()["message_id"]
    rig.rasa.outbox, rig.rasa.delay = "sent", 0.5  # the retry's call takes a moment
    tabs = [rig.anna, DeskClient(rig.server.url)]  # anna has the ticket open twice
    assert tabs[1].login("anna").status_code == 302
    answers: List[Any] = []

    def click(tab: DeskClient) -> None:
        answers.append(tab.post(f"/api/tickets/{ticket.id}/messages/{message_id}/retry", {}))

    clicks = [threading.Thread(target=click, args=(tab,)) for tab in tabs]
    for click in clicks:
        click.start()
    for click in clicks:
        click.join(20)
    assert len(rig.rasa.replies()) == 2  # the first send and one retry
    assert sorted(a.status_code for a in answers) in ([200, 200], [200, 409])
    assert rig.delivery(ticket.id, message_id) == "sent"


# ---------------------------------------------------------------------- surely not delivered
def test_refused_connection_is_not_delivered_and_can_be_sent_again(sqlite_url):
    port = free_port()  # nothing listens here yet
    rig = Rig(sqlite_url, rasa_url=f"http://127.0.0.1:{port}")
    rasa = None
    try:
        ticket = open_ticket(rig.handoff, conversation_id="31612340005")
        response = rig.anna.post(f"/api/tickets/{ticket.id}/reply", {"text": "Hallo"})
        assert response.status_code == 502
        assert response.json()["delivery"] == "failed" and "niet bereikbaar" in response.json()["error"]
        html = rig.messages_html(ticket.id)
        assert "niet afgeleverd" in html and "Opnieuw versturen" in html and "onbekend" not in html

        rasa = RasaStandIn(sqlite_url, port=port)  # Rasa is back
        retry = rig.retry(ticket.id, response.json()["message_id"])
        assert retry.status_code == 200 and retry.json()["delivery"] == "sent"
        assert len(rasa.replies()) == 1
        assert "verzonden" in rig.messages_html(ticket.id)
    finally:
        rig.stop()
        if rasa:
            rasa.stop()


# ---------------------------------------------------------------------- replies left pending
def _backdate(handoff: HandoffStore, message_id: int, seconds: float) -> None:
    from sqlalchemy import update

    from appcare.handoff_store import TicketMessageRow, utcnow

    with handoff.engine.begin() as conn:
        conn.execute(
            update(TicketMessageRow)
            .where(TicketMessageRow.id == message_id)
            .values(created_at=utcnow() - dt.timedelta(seconds=seconds))
        )


def test_reply_left_pending_by_a_stopped_desk_is_looked_up_in_the_outbox(rig):
    """The desk stopped while Rasa had the reply: the message stayed "wordt verzonden…"."""
    ticket = open_ticket(rig.handoff, conversation_id="31612340006")
    rig.handoff.claim(ticket.id, "anna")
    delivered = rig.handoff.add_staff_reply(ticket.id, "anna", "Dit kwam aan.")
    in_doubt = rig.handoff.add_staff_reply(ticket.id, "anna", "Dit misschien.")
    fresh = rig.handoff.add_staff_reply(ticket.id, "anna", "Dit wordt nu verstuurd.")
    outbox_row(rig.db_url, "31612340006", f"kcc:{delivered}", "sent")
    for message_id in (delivered, in_doubt):
        _backdate(rig.handoff, message_id, RASA_TIMEOUT + 60)

    assert rig.delivery(ticket.id, delivered) == "sent"
    assert rig.delivery(ticket.id, in_doubt) == "unknown"  # no outbox row yet: may still come
    assert rig.delivery(ticket.id, fresh) == "pending"  # its call may still be running
    for message_id in (in_doubt, fresh):
        refused = rig.retry(ticket.id, message_id)
        assert refused.status_code == 409 and refused.json()["code"] == "unknown"
    assert rig.rasa.replies() == []


def test_unknown_whatsapp_reply_with_no_send_attempt_at_all_becomes_failed_later(rig):
    """The WhatsApp channel writes its outbox row before it posts to Meta: no row long
    after the attempt means the reply never went out, so it may be sent again."""
    whatsapp = open_ticket(rig.handoff, conversation_id="31612340007")
    web = open_ticket(rig.handoff, conversation_id="web-session-1", channel="socketio")
    rig.rasa.mode, rig.rasa.outbox = "hang", None
    first = rig.anna.post(f"/api/tickets/{whatsapp.id}/reply", {"text": "Hoi"}).json()
    second = rig.anna.post(f"/api/tickets/{web.id}/reply", {"text": "Hoi"}).json()
    assert first["delivery"] == second["delivery"] == "unknown"
    for message_id in (first["message_id"], second["message_id"]):
        _backdate(rig.handoff, message_id, 3600)

    html = rig.messages_html(whatsapp.id)
    assert "niet afgeleverd" in html and "Opnieuw versturen" in html
    assert "onbekend" in rig.messages_html(web.id)  # no outbox to look at on the web chat
    assert rig.retry(web.id, second["message_id"]).status_code == 409

    rig.rasa.mode, rig.rasa.outbox = "answer", "sent"
    retry = rig.retry(whatsapp.id, first["message_id"])
    assert retry.status_code == 200 and retry.json()["delivery"] == "sent"


# ---------------------------------------------------------------------- settings
def test_default_rasa_timeout_outlasts_the_whatsapp_channels_worst_case(monkeypatch):
    from channels.config import TUNING_DEFAULTS as tuning

    from desk.rasa_client import RasaClient
    from desk.settings import Settings

    monkeypatch.delenv("DESK_RASA_TIMEOUT", raising=False)
    backoff = sum(
        min(tuning["backoff_max"], tuning["backoff_base"] * 2 ** i) for i in range(tuning["max_attempts"] - 1)
    )
    one_send = tuning["max_attempts"] * tuning["graph_timeout"] + backoff
    worst = 2 * one_send + tuning["send_interval"]  # the reply, then a template outside the 24h window
    for timeout in (Settings().rasa_timeout, Settings.from_env().rasa_timeout, RasaClient("http://x").timeout):
        assert timeout > 90 and timeout > worst
    monkeypatch.setenv("DESK_RASA_TIMEOUT", "150")
    assert Settings.from_env().rasa_timeout == 150.0
