"""The ticket page as a KCC colleague uses it (issue 18): a coordinator assigns and
reassigns, a colleague who is not the claimer must confirm before replying, closing a
ticket and deleting a standard answer need a confirmation (also without JavaScript)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.desk_helpers import (  # noqa: F401 - fixtures are imported too
    DeskClient,
    FakeRasa,
    make_user,
    open_ticket,
    sqlite_url,
    start_desk,
)

from appcare.handoff_store import HandoffStore
from desk.store import DeskStore


@pytest.fixture
def rig(sqlite_url):
    handoff = HandoffStore(sqlite_url)
    rasa = FakeRasa(handoff, sqlite_url)
    for name, role in (("anna", "staff"), ("bert", "staff"), ("carla", "coordinator"), ("eddy", "editor")):
        make_user(sqlite_url, name, role)
    server = start_desk(sqlite_url, rasa.url)
    rig = type("Rig", (), {})()
    rig.handoff, rig.rasa, rig.desk = handoff, rasa, DeskStore(sqlite_url)

    def client(name):
        c = DeskClient(server.url)
        assert c.login(name).status_code == 302
        return c

    rig.client = client
    yield rig
    server.stop()
    rasa.stop()


def _actions(desk, ticket_id):
    return [(a["actor"], a["action"]) for a in reversed(desk.audit_log(ticket_id=ticket_id))]


def test_coordinator_assigns_and_reassigns_a_ticket(rig):
    ticket = open_ticket(rig.handoff)
    carla = rig.client("carla")
    page = carla.get(f"/tickets/{ticket.id}").text
    assert 'id="assign-form"' in page
    # Active staff accounts with desk access; not the editor.
    assert '<option value="anna"' in page and '<option value="bert"' in page and 'value="eddy"' not in page

    assigned = carla.form(f"/tickets/{ticket.id}/assign", {"assignee": "anna"})
    assert assigned.headers["Location"].endswith("msg=assigned")
    assert rig.handoff.get(ticket.id).claimed_by == "anna"
    assert "Opnieuw toewijzen" in carla.get(f"/tickets/{ticket.id}").text

    carla.form(f"/tickets/{ticket.id}/assign", {"assignee": "bert"})
    assert rig.handoff.get(ticket.id).claimed_by == "bert"
    assert _actions(rig.desk, ticket.id)[-2:] == [("carla", "assign"), ("carla", "assign")]
    log = rig.desk.audit_log(ticket_id=ticket.id)
    assert {"to": "bert", "from": "anna"}.items() <= log[0]["detail"].items()

    # Not to an editor, and a staff member cannot assign.
    assert carla.form(f"/tickets/{ticket.id}/assign", {"assignee": "eddy"}).headers["Location"].endswith("msg=assignee")
    anna = rig.client("anna")
    assert 'id="assign-form"' not in anna.get(f"/tickets/{ticket.id}").text
    assert anna.form(f"/tickets/{ticket.id}/assign", {"assignee": "anna"}).status_code == 403
    assert rig.handoff.get(ticket.id).claimed_by == "bert"


def test_reply_on_a_colleagues_ticket_needs_toch_reageren(rig):
    ticket = open_ticket(rig.handoff)
    anna, bert, carla = rig.client("anna"), rig.client("bert"), rig.client("carla")
    anna.form(f"/tickets/{ticket.id}/claim", {})

    page = bert.get(f"/tickets/{ticket.id}").text
    assert "Dit gesprek is opgepakt door <strong>anna</strong>" in page and "Toch reageren" in page
    assert "Toch reageren" not in anna.get(f"/tickets/{ticket.id}").text

    refused = bert.form(f"/tickets/{ticket.id}/reply", {"text": "Ik help u ook."})
    assert refused.headers["Location"].endswith("msg=taken_reply")
    assert "Je antwoord is niet verstuurd" in bert.get(refused.headers["Location"]).text
    # Also a coordinator, and over the API: refused with a Dutch message.
    api = carla.post(f"/api/tickets/{ticket.id}/reply", {"text": "Van de coördinator"})
    assert api.status_code == 409 and "opgepakt door anna" in api.json()["error"]
    assert rig.rasa.intents("EXTERNAL_kcc_reply") == []

    sent = bert.form(f"/tickets/{ticket.id}/reply", {"text": "Ik help u ook.", "override": "1"})
    assert sent.headers["Location"].endswith("msg=sent")
    assert len(rig.rasa.intents("EXTERNAL_kcc_reply")) == 1
    assert ("bert", "reply_override") in _actions(rig.desk, ticket.id)
    assert rig.handoff.get(ticket.id).claimed_by == "anna"  # still anna's


def test_closing_needs_ja_sluiten(rig):
    ticket = open_ticket(rig.handoff)
    anna = rig.client("anna")
    page = anna.get(f"/tickets/{ticket.id}").text
    assert 'name="confirm"' in page and "Ja, sluiten" in page
    unconfirmed = anna.form(f"/tickets/{ticket.id}/close", {"outcome": "beantwoord"})
    assert unconfirmed.headers["Location"].split("#")[0].endswith("msg=confirm_close")
    assert "Vink &#39;Ja, sluiten&#39; aan" in anna.get(unconfirmed.headers["Location"].split("#")[0]).text \
        or "Vink 'Ja, sluiten' aan" in anna.get(unconfirmed.headers["Location"].split("#")[0]).text
    assert rig.handoff.get(ticket.id).status != "closed" and rig.rasa.intents("EXTERNAL_kcc_close") == []
    closed = anna.form(f"/tickets/{ticket.id}/close", {"outcome": "beantwoord", "confirm": "1"})
    assert closed.headers["Location"] == "/?msg=closed"
    assert rig.handoff.get(ticket.id).status == "closed"


def test_deleting_a_standard_answer_needs_ja_verwijderen(rig):
    carla = rig.client("carla")
    saved = carla.form("/answers", {"title": "Openingstijden", "text": "Wij zijn open van 9 tot 17 uur."})
    assert saved.status_code == 302
    answer_id = rig.desk.list_answers()[0]["id"]
    assert "Ja, verwijderen" in carla.get("/answers").text
    kept = carla.form(f"/answers/{answer_id}/delete", {})
    assert kept.headers["Location"].endswith("msg=confirm_delete")
    assert [a["title"] for a in rig.desk.list_answers()] == ["Openingstijden"]
    carla.form(f"/answers/{answer_id}/delete", {"confirm": "1"})
    assert rig.desk.list_answers() == []


def test_one_message_is_bericht(rig):
    ticket = open_ticket(rig.handoff, transcript=[{"sender": "citizen", "text": "hallo", "time": 1700000000.0}])
    page = rig.client("anna").get(f"/tickets/{ticket.id}").text
    assert "(1 bericht)" in page and "(1 berichten)" not in page


SECOND_HANDOFF_EVENTS = [
    {"event": "user", "text": "ik wil een medewerker", "timestamp": 1764702660.0},
    {"event": "bot", "text": "Ik geef je vraag door aan een collega.", "timestamp": 1764702661.0},
    {"event": "user", "text": "EXTERNAL: EXTERNAL_kcc_reply", "timestamp": 1764702700.0,
     "parse_data": {"intent": {"name": "EXTERNAL_kcc_reply"}}},
    {"event": "bot", "text": "Uw paspoort ligt klaar. Met vriendelijke groet, Sanne Jansen", "timestamp": 1764702700.5},
    {"event": "user", "text": "EXTERNAL: EXTERNAL_kcc_close", "timestamp": 1764702760.0,
     "parse_data": {"intent": {"name": "EXTERNAL_kcc_close"}}},
    {"event": "bot", "text": "Het gesprek met de medewerker is afgesloten.", "timestamp": 1764702760.5},
    {"event": "bot", "text": "Een paspoort kost 84,45 euro.", "timestamp": 1764702800.0},
]


def test_second_handoff_shows_the_colleagues_reply_as_staff_not_as_the_citizen(rig):
    from actions.handoff import ActionHandoffToKcc
    from appcare.handoff_store import default_store
    from tests.conftest import run_action

    run_action(ActionHandoffToKcc(), "ik wil weer een medewerker", "request_human",
               slots={"municipality": "lelystad", "topic": "passport_fees"},
               events=SECOND_HANDOFF_EVENTS, sender="31612340000")
    stored = default_store().open_ticket_for("31612340000")
    texts = [(i["sender"], i["text"]) for i in stored.transcript]
    assert not any("EXTERNAL" in t for _, t in texts)
    assert ("staff", "Uw paspoort ligt klaar. Met vriendelijke groet, Sanne Jansen") in texts
    # the citizen's own words are still masked
    assert ("citizen", "ik wil een medewerker") in texts

    # The summary names the topic as the editors do, and leaves the reason to its own column.
    assert "Paspoort/ID-kaart: wat kost het" in stored.summary and "passport_fees" not in stored.summary
    assert "Reden:" not in stored.summary

    # On the desk (same database): "Medewerker", the colleague's name, no EXTERNAL lines.
    ticket = open_ticket(rig.handoff, transcript=stored.transcript, summary=stored.summary)
    page = rig.client("anna").get(f"/tickets/{ticket.id}").text
    assert "EXTERNAL" not in page and "[naam]" not in page
    assert 'class="msg msg-staff"' in page and "Medewerker" in page and "Sanne Jansen" in page


def test_accounts_page_shows_the_last_login_in_amsterdam_time(rig):
    import datetime as dt

    from sqlalchemy import update

    from desk.store import UserRow

    with rig.desk.engine.begin() as conn:  # stored in UTC: 14:05 UTC on 1 December is 15:05 in Amsterdam
        conn.execute(update(UserRow).where(UserRow.username == "anna").values(last_login_at=dt.datetime(2026, 12, 1, 14, 5)))
    page = rig.client("carla").get("/users").text
    assert "01-12-2026 15:05" in page and "01-12-2026 14:05" not in page and "UTC" not in page


def test_colleagues_reply_goes_out_as_written_and_the_closing_text_is_the_municipalitys_response():
    import yaml

    from actions.handoff import ActionCloseHandoff, ActionDeliverStaffReply
    from tests.conftest import run_action

    written = "Goedemiddag, uw paspoort ligt klaar. U kunt het ophalen met uw oude paspoort."
    result = run_action(ActionDeliverStaffReply(), "EXTERNAL: EXTERNAL_kcc_reply", "EXTERNAL_kcc_reply",
                        [{"entity": "kcc_text", "value": written}], slots={"municipality": "lelystad"})
    assert result.text == written  # no "je" instead of "u", nothing added

    domain = yaml.safe_load((Path(__file__).resolve().parent.parent / "domain" / "handoff.yml").read_text())
    closing = domain["responses"]["utter_handoff_closed"][0]["text"]
    closed = run_action(ActionCloseHandoff(), "EXTERNAL: EXTERNAL_kcc_close", "EXTERNAL_kcc_close",
                        [{"entity": "kcc_outcome", "value": "beantwoord"}], slots={"municipality": "lelystad"})
    assert closed.text == closing
