"""Business-scoped user ids (BSUID) and usernames (issue 15): parser, conversation
key, replies with ``recipient``, statuses with ``recipient_user_id``, change events,
subject access. Payloads follow Meta's documented shapes."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from channels.webhook_parser import BSUID_RE, parse_webhook

PNID = "106540352242922"


def new_bsuid() -> str:
    return "NL." + str(uuid.uuid4().int)[:20]


def new_phone() -> str:
    return "316" + str(uuid.uuid4().int)[:8]


def new_wamid() -> str:
    return "wamid.HBgL" + uuid.uuid4().hex.upper()


def envelope(value: Dict[str, Any]) -> Dict[str, Any]:
    value = dict(value)
    value.setdefault("messaging_product", "whatsapp")
    value.setdefault("metadata", {"display_phone_number": "31850000000", "phone_number_id": PNID})
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }


def message_payload(
    text: str,
    phone: Optional[str] = None,
    bsuid: Optional[str] = None,
    username: Optional[str] = None,
    ts: int = 1717405200,
    wamid: Optional[str] = None,
) -> Dict[str, Any]:
    contact: Dict[str, Any] = {"profile": {"name": "Test Persoon"}}
    message: Dict[str, Any] = {
        "id": wamid or new_wamid(), "timestamp": str(ts), "type": "text", "text": {"body": text},
    }
    if phone:
        contact["wa_id"] = phone
        message["from"] = phone
    if bsuid:
        contact["user_id"] = bsuid
        message["from_user_id"] = bsuid
    if username:
        contact["profile"]["username"] = username
    return envelope({"contacts": [contact], "messages": [message]})


def system_payload(
    stype: str, phone: Optional[str], bsuid: Optional[str], new_phone: Optional[str] = None,
    new_bsuid: Optional[str] = None, ts: int = 1717405300,
) -> Dict[str, Any]:
    message: Dict[str, Any] = {"id": new_wamid(), "timestamp": str(ts), "type": "system",
                               "system": {"type": stype, "body": "Gebruiker heeft een nieuw nummer"}}
    if phone:
        message["from"] = phone
    if bsuid:
        message["from_user_id"] = bsuid
    if new_phone:
        message["system"]["wa_id"] = new_phone
    if new_bsuid:
        message["system"]["user_id"] = new_bsuid
    return envelope({"messages": [message]})


def status_payload(
    wamid: str, status: str, phone: Optional[str] = None, bsuid: Optional[str] = None,
    callback: Optional[str] = None, errors: Optional[List[Dict[str, Any]]] = None,
) -> Dict[str, Any]:
    item: Dict[str, Any] = {"id": wamid, "status": status, "timestamp": "1717405260"}
    if phone:
        item["recipient_id"] = phone
    if bsuid:
        item["recipient_user_id"] = bsuid
    if callback:
        item["biz_opaque_callback_data"] = callback
    if errors:
        item["errors"] = errors
    return envelope({"statuses": [item]})


# ------------------------------------------------------------------- parser
def test_username_only_message_is_parsed_with_bsuid_and_username() -> None:
    bsuid = new_bsuid()
    result = parse_webhook(message_payload("hoi", bsuid=bsuid, username="jan.jansen"))
    assert not result.skipped
    (message,) = result.messages
    assert message.phone is None and message.user_id == bsuid and message.wa_id == bsuid
    assert message.username == "jan.jansen" and message.profile_name == "Test Persoon"
    assert message.answerable and message.text == "hoi"


def test_message_with_both_ids_and_invalid_bsuid() -> None:
    phone, bsuid = new_phone(), new_bsuid()
    (message,) = parse_webhook(message_payload("hoi", phone=phone, bsuid=bsuid)).messages
    assert (message.wa_id, message.phone, message.user_id) == (phone, phone, bsuid)
    for bad in ("nl.123", "NL123", "NL.12-3", "NL." + "1" * 129, "NLD.123", "NL. 1"):
        assert not BSUID_RE.match(bad)
        result = parse_webhook(message_payload("hoi", bsuid=bad))
        assert not result.messages and result.skipped == ["text message without id/from"]
    assert BSUID_RE.match("NL.13491208655302741918") and BSUID_RE.match("US." + "a" * 128)


def test_status_with_recipient_user_id_only_and_failed_without_contacts() -> None:
    bsuid = new_bsuid()
    result = parse_webhook(status_payload("wamid.A", "failed", bsuid=bsuid, errors=[{"code": 131026}]))
    (status,) = result.statuses
    assert status.recipient_id is None and status.recipient_user_id == bsuid and status.error_code == 131026


def test_change_system_messages_report_the_new_ids() -> None:
    phone, bsuid, new_p, new_b = new_phone(), new_bsuid(), new_phone(), new_bsuid()
    (message,) = parse_webhook(system_payload("user_changed_number", phone, bsuid, new_p, new_b)).messages
    assert not message.answerable and message.details["system_type"] == "user_changed_number"
    assert message.change == {"type": "user_changed_number", "new_phone": new_p, "new_user_id": new_b}
    legacy = system_payload("user_changed_number", phone, None)
    legacy["entry"][0]["changes"][0]["value"]["messages"][0]["system"]["new_wa_id"] = new_p
    (message,) = parse_webhook(legacy).messages
    assert message.change["new_phone"] == new_p and message.change["new_user_id"] is None
    (message,) = parse_webhook(system_payload("user_changed_user_id", None, bsuid, None, new_b)).messages
    assert message.change == {"type": "user_changed_user_id", "new_phone": None, "new_user_id": new_b}
    (message,) = parse_webhook(system_payload("customer_identity_changed", phone, None)).messages
    assert message.change is None and not message.answerable


# ------------------------------------------------------------ the real channel
from tests.fake_graph_api import FakeGraphAPI  # noqa: E402
from tests.test_whatsapp_channel import ChannelServer, EchoBot, make_config  # noqa: E402

import time  # noqa: E402


@pytest.fixture(scope="module")
def graph() -> Any:
    with FakeGraphAPI() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(graph: FakeGraphAPI, tmp_path_factory: pytest.TempPathFactory) -> Any:
    srv = ChannelServer(make_config(graph, tmp_path_factory.mktemp("wa_bsuid") / "appcare.db"), EchoBot()).start()
    yield srv
    srv.stop()


def sent_with(graph: FakeGraphAPI, field: str, value: str) -> List[Dict[str, Any]]:
    return [r["json"] for r in graph.delivered() if (r["json"] or {}).get(field) == value]


def wait(predicate: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def now_ts() -> int:
    return int(time.time())


def test_username_only_message_is_answered_with_recipient(server: ChannelServer, graph: FakeGraphAPI) -> None:
    bsuid = new_bsuid()
    assert server.post(message_payload("hallo", bsuid=bsuid, username="jan.jansen", ts=now_ts())).status_code == 200
    assert wait(lambda: len(sent_with(graph, "recipient", bsuid)) == 1)
    (body,) = sent_with(graph, "recipient", bsuid)
    assert "to" not in body and body["text"]["body"] == "echo: hallo"
    (call,) = server.bot.for_sender(bsuid)
    assert call["metadata"]["username"] == "jan.jansen"
    server.wait_handled(bsuid)
    assert server.store.identity_of(bsuid) == {"phone": None, "user_id": bsuid, "username": "jan.jansen"}


def test_message_with_both_ids_is_keyed_on_the_bsuid_and_sent_to_the_number(
    server: ChannelServer, graph: FakeGraphAPI
) -> None:
    phone, bsuid = new_phone(), new_bsuid()
    server.post(message_payload("beide", phone=phone, bsuid=bsuid, ts=now_ts()))
    assert wait(lambda: len(sent_with(graph, "to", phone)) == 1)
    server.wait_handled(bsuid)  # finished with the citizen: a send to the BSUID would have come by now
    assert not sent_with(graph, "recipient", bsuid)
    assert [c["text"] for c in server.bot.for_sender(bsuid)] == ["beide"]
    assert [r.status for r in server.store.outgoing_for_recipient(bsuid)] == ["sent"]


def test_citizen_first_seen_by_number_keeps_the_conversation(server: ChannelServer, graph: FakeGraphAPI) -> None:
    phone, bsuid = new_phone(), new_bsuid()
    ts = now_ts()
    server.post(message_payload("eerst", phone=phone, ts=ts))
    assert wait(lambda: len(sent_with(graph, "to", phone)) == 1)
    server.wait_handled(phone)
    server.post(message_payload("daarna", phone=phone, bsuid=bsuid, ts=ts + 1))
    assert wait(lambda: len(sent_with(graph, "to", phone)) == 2)
    server.wait_handled(phone)
    assert [c["text"] for c in server.bot.for_sender(phone)] == ["eerst", "daarna"]
    assert not server.bot.for_sender(bsuid)
    # and later without the number (username adopted): still the same conversation
    server.post(message_payload("zonder nummer", bsuid=bsuid, username="piet", ts=ts + 2))
    assert wait(lambda: len(sent_with(graph, "to", phone)) == 3)
    server.wait_handled(phone)
    assert [c["text"] for c in server.bot.for_sender(phone)][-1] == "zonder nummer"
    assert server.store.in_window(PNID, phone)
    # a new number: the conversation stays under the old key, replies go to the new number
    new_p = new_phone()
    server.post(system_payload("user_changed_number", phone, bsuid, new_p, None, ts=ts + 3))
    server.post(message_payload("nieuw", phone=new_p, bsuid=bsuid, ts=ts + 4))
    assert wait(lambda: len(sent_with(graph, "to", new_p)) == 1)
    server.wait_handled(phone)
    assert [c["text"] for c in server.bot.for_sender(phone)][-1] == "nieuw"


def test_statuses_with_recipient_user_id_settle_the_outbox(server: ChannelServer, graph: FakeGraphAPI) -> None:
    bsuid = new_bsuid()
    server.post(message_payload("status", bsuid=bsuid, ts=now_ts()))
    assert wait(lambda: len(sent_with(graph, "recipient", bsuid)) == 1)
    server.wait_handled(bsuid)
    (row,) = server.store.outgoing_for_recipient(bsuid)
    # matched on the callback data (wamid of another form), recipient only as BSUID
    assert server.post(status_payload("wamid.other" + uuid.uuid4().hex, "read", bsuid=bsuid,
                                      callback=f"appcare:{row.id}")).status_code == 200
    assert wait(lambda: server.store.get_outgoing(row.id).delivery_status == "read")
    # a failed status without contacts and without recipient_id is accepted
    bsuid2 = new_bsuid()
    server.post(message_payload("mislukt", bsuid=bsuid2, ts=now_ts()))
    assert wait(lambda: len(sent_with(graph, "recipient", bsuid2)) == 1)
    server.wait_handled(bsuid2)
    (row2,) = server.store.outgoing_for_recipient(bsuid2)
    failed = status_payload(row2.wamid, "failed", bsuid=bsuid2, callback=f"appcare:{row2.id}",
                            errors=[{"code": 131026, "title": "Message undeliverable"}])
    assert "contacts" not in failed["entry"][0]["changes"][0]["value"]
    assert server.post(failed).status_code == 200
    assert wait(lambda: server.store.get_outgoing(row2.id).status == "failed")
    assert server.store.get_outgoing(row2.id).error_code == 131026
    # a status naming another citizen does not settle the row by its callback data
    assert server.post(status_payload("wamid.x" + uuid.uuid4().hex, "delivered", bsuid=new_bsuid(),
                                      callback=f"appcare:{row.id}")).status_code == 200


def test_number_and_user_id_changes_keep_the_conversation(server: ChannelServer, graph: FakeGraphAPI) -> None:
    phone, bsuid, new_p, new_b = new_phone(), new_bsuid(), new_phone(), new_bsuid()
    ts = now_ts()
    server.post(message_payload("oud nummer", phone=phone, bsuid=bsuid, ts=ts))
    assert wait(lambda: len(sent_with(graph, "to", phone)) == 1)
    server.wait_handled(bsuid)
    assert server.post(system_payload("user_changed_number", phone, bsuid, new_p, new_b, ts=ts + 1)).status_code == 200
    server.post(message_payload("nieuw nummer", phone=new_p, bsuid=new_b, ts=ts + 2))
    assert wait(lambda: len(sent_with(graph, "to", new_p)) == 1)  # the reply goes to the new number
    server.wait_handled(bsuid)
    assert [c["text"] for c in server.bot.for_sender(bsuid)] == ["oud nummer", "nieuw nummer"]
    # username-only citizen whose user id changes
    old_b, next_b = new_bsuid(), new_bsuid()
    server.post(message_payload("een", bsuid=old_b, ts=ts))
    assert wait(lambda: len(sent_with(graph, "recipient", old_b)) == 1)
    server.wait_handled(old_b)
    server.post(system_payload("user_changed_user_id", None, old_b, None, next_b, ts=ts + 1))
    server.post(message_payload("twee", bsuid=next_b, ts=ts + 2))
    assert wait(lambda: len(sent_with(graph, "recipient", next_b)) == 1)  # to the new user id
    server.wait_handled(old_b)
    assert [c["text"] for c in server.bot.for_sender(old_b)] == ["een", "twee"]
    assert not server.bot.for_sender(next_b)


def test_subject_access_finds_the_citizen_by_bsuid_or_number(
    server: ChannelServer, graph: FakeGraphAPI, tmp_path: Path
) -> None:
    import json

    from jobs import subject_access

    phone, bsuid = new_phone(), new_bsuid()
    server.post(message_payload("privacy", phone=phone, bsuid=bsuid, username="anna", ts=now_ts()))
    assert wait(lambda: len(sent_with(graph, "to", phone)) == 1)
    server.wait_handled(bsuid)
    db_url = str(server.store.engine.url)
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text(f"tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: {tmp_path}/rasa.db\n", encoding="utf-8")
    for option, value in (("--bsuid", bsuid), ("--phone", "+" + phone)):
        out = tmp_path / f"export{option}.json"
        assert subject_access.main(["export", option, value, "--endpoints", str(endpoints),
                                    "--db-url", db_url, "--out", str(out)]) == 0
        data = json.loads(out.read_text(encoding="utf-8"))
        assert data["subject"]["wa_id"] == bsuid and set(data["subject"]["identifiers"]) == {phone, bsuid}
        assert {r["identifier"] for r in data["whatsapp_identities"]} == {phone, bsuid}
        assert [r["recipient"] for r in data["whatsapp_outbox"]] == [bsuid]
        assert len(data["whatsapp_inbox"]) == 1 and len(data["whatsapp_contacts"]) == 1
    assert subject_access.main(["erase", "--bsuid", bsuid, "--endpoints", str(endpoints),
                                "--db-url", db_url, "--yes"]) == 0
    assert server.store.identity_of(bsuid)["username"] is None
    assert server.store.outgoing_for_recipient(bsuid) == []


def test_desk_shows_the_username_where_there_is_no_number(server: ChannelServer, graph: FakeGraphAPI) -> None:
    from desk.service import ChannelDelivery

    only_user, phone, both = new_bsuid(), new_phone(), new_bsuid()
    server.post(message_payload("desk", bsuid=only_user, username="kees_k", ts=now_ts()))
    server.post(message_payload("desk", phone=phone, bsuid=both, username="els", ts=now_ts()))
    assert wait(lambda: sent_with(graph, "recipient", only_user) and sent_with(graph, "to", phone))
    desk = ChannelDelivery(str(server.store.engine.url))
    assert desk.conversation_label(only_user) == "@kees_k"
    assert desk.conversation_label(f"{only_user}@{PNID}") == "@kees_k"
    assert desk.conversation_label(both) == "…" + both[-4:]  # a number exists: not the username
    assert desk.conversation_label(phone) == "…" + phone[-4:]


def test_retention_treats_the_identifiers_as_personal_data(tmp_path: Path) -> None:
    import time as _time

    from channels.inbox import InboxStore
    from jobs import retention

    store = InboxStore(f"sqlite:///{tmp_path}/r.db")
    bsuid, phone = new_bsuid(), new_phone()
    old = _time.time() - 40 * 86400
    assert store.conversation_key(phone, bsuid, "oud", now=old) == bsuid
    recent = new_bsuid()
    store.conversation_key(None, recent, "nieuw")
    cutoff = _time.time() - 30 * 86400
    assert retention.purge_whatsapp(store.engine, cutoff, dry_run=True)["whatsapp_identities"] == 2
    assert retention.purge_whatsapp(store.engine, cutoff, dry_run=False)["whatsapp_identities"] == 2
    assert store.identity_of(recent)["username"] == "nieuw"
    assert store.identity_of(bsuid) == {"phone": None, "user_id": bsuid, "username": None}
    assert store.purge(7, now=_time.time() + 8 * 86400)["identities"] == 1


def test_postgres_widens_old_key_columns_and_keeps_long_bsuids() -> None:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    from alembic import command
    from sqlalchemy import inspect

    from appcare import db, migrations
    from appcare.migrations import locks, runner
    from channels.inbox import InboxStore
    from tests.support.cluster import ensure_database

    name = "appcare_ptest_bsuid"
    ensure_database(name)
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        store = InboxStore(url)
        with locks.schema_lock(store.engine) as connection:  # the tables as create_all made them (revision 0001)
            command.downgrade(runner.alembic_config(connection), migrations.BASELINE)
        with store.engine.begin() as conn:  # tables as created before BSUIDs (and before migrations)
            for table, column in (("whatsapp_inbox", "wa_id"), ("whatsapp_outbox", "recipient"),
                                  ("whatsapp_contacts", "wa_id")):
                conn.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE VARCHAR(64)")
            conn.exec_driver_sql("DROP TABLE alembic_version")
        db.dispose_all()  # a new process: it looks at the schema again
        store = InboxStore(url)
        lengths = {(t, c["name"]): c["type"].length for t in ("whatsapp_inbox", "whatsapp_outbox", "whatsapp_contacts")
                   for c in inspect(store.engine).get_columns(t) if c["name"] in ("wa_id", "recipient")}
        assert set(lengths.values()) == {191}
        long_id = "NL." + "A1" * 64
        phone = new_phone()
        assert store.conversation_key(phone, long_id, "lang") == long_id
        assert store.conversation_key(phone, None) == long_id
        (row_id,) = store.add_outgoing(PNID, long_id, [{"to": long_id}], ["text"], None)
        assert store.get_outgoing(row_id).recipient == long_id
        assert store.address_of(long_id) == ("to", phone)
        assert store.link_identifiers(phone, long_id, None, "NL.7") == long_id
        assert store.identity_of(long_id)["user_id"] == "NL.7"
    finally:
        db.dispose_all()
