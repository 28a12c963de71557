"""jobs.subject_access on the real PostgreSQL of this machine (skipped when it is
absent): a citizen's data exported and erased across the tracker store, tickets, the
WhatsApp inbox and outbox and the editors' inbox, and nobody else's."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.postgres import conversation, save_trackers, write_endpoints
from tests.support.postgres import needs_pg, pg_url  # noqa: F401 - pg_url is a fixture

pytestmark = pytest.mark.timeout(120)


@needs_pg
def test_subject_access_export_and_erase(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy as sa

    from appcare.handoff_store import HandoffStore
    from channels.inbox import InboxStore, NewInbound
    from jobs import subject_access

    db_name = pg_url.rsplit("/", 1)[1]
    monkeypatch.setenv("T_DB_HOST", "127.0.0.1")
    now = time.time()
    save_trackers(db_name, {
        "31612345678": conversation("31612345678", now - 600, "terneuzen", handoff=True),
        "31612345678@1000000002": conversation("31612345678@1000000002", now - 300, "lelystad"),
        "31699999999": conversation("31699999999", now - 300, "terneuzen"),
    })
    handoff = HandoffStore(pg_url)
    mine = handoff.open_ticket("31612345678", "personal_case", "s", [], "terneuzen")
    handoff.append_message(mine.id, "citizen", "hallo")
    handoff.open_ticket("31699999999", "complaint", "s", [], "terneuzen")
    inbox = InboxStore(pg_url)
    inbox.record_inbound([NewInbound("wamid.SA1", "1000000001", "31612345678", "text", "hoi", {}, now, True, True),
                          NewInbound("wamid.SA2", "1000000001", "31699999999", "text", "hoi", {}, now, True, True)], now)
    inbox.add_outgoing("1000000001", "31612345678", [{"to": "31612345678", "text": {"body": "x"}}], ["text"])
    from appcare.pii import conversation_hash
    from desk.editor.store import EditorStore

    editor = EditorStore(pg_url)
    editor.add_inbox([
        {"source": "t", "event_id": i, "sender_hash": conversation_hash(sender), "ts": now, "week": "2026-W48",
         "text": text, "intent": "nlu_fallback", "confidence": 0.2, "reason": "fallback"}
        for i, sender, text in ((1, "31612345678@1000000002", "hondenpoep"), (2, "31699999999", "grofvuil"))
    ])
    endpoints = write_endpoints(tmp_path, db_name)
    out = tmp_path / "export.json"
    assert subject_access.normalise_phone("06-12345678") == "31612345678"
    assert subject_access.normalise_phone("0031 6 12345678") == "31612345678"

    assert subject_access.main(["export", "--phone", "+31 6 12345678", "--endpoints", str(endpoints),
                                "--db-url", pg_url, "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    senders = {sender for sender in ("31612345678", "31612345678@1000000002")}
    expected = len(conversation("x", 0, "x", handoff=True)) + len(conversation("x", 0, "x"))
    assert len(data["tracker_events"]) == expected  # both conversations (two municipalities)
    assert data["handoff_tickets"][0]["id"] == mine.id and data["handoff_messages"][0]["text"] == "hallo"
    assert [r["wamid"] for r in data["whatsapp_inbox"]] == ["wamid.SA1"]
    assert len(data["whatsapp_outbox"]) == 1 and data["whatsapp_contacts"][0]["wa_id"] == "31612345678"
    assert [r["text"] for r in data["desk_editor_inbox"]] == ["hondenpoep"]  # the other municipality's too
    assert "31699999999" not in out.read_text()

    assert subject_access.main(["erase", "--phone", "+31612345678", "--endpoints", str(endpoints),
                                "--db-url", pg_url, "--yes"]) == 0
    engine = sa.create_engine(pg_url, future=True)
    with engine.connect() as conn:
        left = {r[0] for r in conn.execute(sa.text("SELECT DISTINCT sender_id FROM events"))}
        tickets = [r[0] for r in conn.execute(sa.text("SELECT conversation_id FROM handoff_tickets"))]
        inbox_rows = [r[0] for r in conn.execute(sa.text("SELECT wamid FROM whatsapp_inbox"))]
        outbox_rows = conn.execute(sa.text("SELECT count(*) FROM whatsapp_outbox")).scalar()
    engine.dispose()
    assert left == {"31699999999"} and not (left & senders)
    assert tickets == ["31699999999"] and inbox_rows == ["wamid.SA2"] and outbox_rows == 0
    assert [item["text"] for item in editor.inbox(status=None)] == ["grofvuil"]
