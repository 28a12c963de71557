"""Exactly-once as the citizen sees it (issue 12): every message is answered and no
answer arrives twice, also when a send times out after Meta took it, when the
connection is refused, when an instance dies in the middle of a turn or a send, and
when a message cannot be handled at all.

The channel runs in a real Sanic server; Meta is tests/fake_graph_api.py, a real
HTTP server that, like Meta, reports on every message it took with signed status
webhooks echoing ``biz_opaque_callback_data``. Rasa's own in-memory tracker and
lock stores stand in for the production ones where a test needs a tracker.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, List

import pytest

from channels.whatsapp import ScaleSettings, WhatsAppInput
from tests.fake_graph_api import FakeGraphAPI
from tests.support.tcp_proxy import TcpProxy
from tests.test_whatsapp_channel import (
    APP_SECRET,
    ChannelServer,
    EchoBot,
    make_config,
    new_sender,
    text_payload,
    wait_until,
    wamid_of,
)

pytestmark = pytest.mark.timeout(90)


def channel(graph_or_url: Any, db: Path, confirm_seconds: float = 30.0, **overrides: Any) -> WhatsAppInput:
    config = make_config(graph_or_url, db, **overrides)
    return WhatsAppInput(config, ScaleSettings(confirm_seconds=confirm_seconds, sweep_interval=0.3))


def rows(server: ChannelServer, sender: str) -> List[Any]:
    return server.store.outgoing_for_recipient(sender)


def settled(server: ChannelServer, sender: str, wamid: str, timeout: float = 30) -> List[Any]:
    """The channel's own "finished with this message" (final inbox status, no send
    still open or in doubt, worker ended), then the sender's outbox rows."""
    server.wait_handled(sender, [wamid], timeout)
    found = rows(server, sender)
    assert found, "nothing was sent"
    return found


@pytest.fixture
def graph() -> Any:
    with FakeGraphAPI() as fake:
        yield fake


# ----------------------------------------------------------------- send results
def test_send_taken_by_meta_then_timed_out_is_delivered_once(tmp_path: Path, graph: FakeGraphAPI) -> None:
    server = ChannelServer(channel(graph, tmp_path / "a.db", graph_timeout=1.0), EchoBot()).start()
    graph.report_statuses_to(server.base + "/webhook", APP_SECRET)
    sender = new_sender()
    graph.script("accept_then_timeout")  # Meta takes the reply; its HTTP answer never comes
    try:
        payload = text_payload(sender, ["hallo"])
        assert server.post(payload).status_code == 200
        found = settled(server, sender, wamid_of(payload))
    finally:
        server.stop()
    assert [r.status for r in found] == ["sent"]
    assert found[0].wamid and found[0].wamid.startswith("wamid.FAKE")  # learnt from the status webhook
    assert len(graph.messages(sender)) == 1, "posted again although Meta had it"
    assert len(graph.delivered(sender)) == 1
    body = graph.messages(sender)[0]["json"]
    assert body["biz_opaque_callback_data"] == f"appcare:{found[0].id}"


@pytest.mark.parametrize("lost_how", ["swallow", 500])
def test_send_that_never_reached_meta_is_resent_once(tmp_path: Path, graph: FakeGraphAPI, lost_how: Any) -> None:
    server = ChannelServer(channel(graph, tmp_path / "b.db", confirm_seconds=1.5, graph_timeout=1.0),
                           EchoBot()).start()
    graph.report_statuses_to(server.base + "/webhook", APP_SECRET)
    sender = new_sender()
    graph.script(lost_how)  # result unknown, and no status report ever comes for it
    try:
        payload = text_payload(sender, ["hallo"])
        assert server.post(payload).status_code == 200
        found = settled(server, sender, wamid_of(payload))
    finally:
        server.stop()
    sends = graph.messages(sender)
    assert [r.status for r in found] == ["sent"]
    assert [s["answer"] for s in sends] == [lost_how, "ok"], "resent exactly once, after the bounded wait"
    assert sends[0]["json"] == sends[1]["json"]  # the same message, same callback data
    assert len(graph.delivered(sender)) == 1


def test_refused_connection_is_retried_at_once(tmp_path: Path, graph: FakeGraphAPI,
                                               caplog: pytest.LogCaptureFixture) -> None:
    host, port = graph.server.server_address[:2]
    proxy = TcpProxy(host, port).start()
    proxy.cut()  # nothing listens: the request surely does not reach Meta
    caplog.set_level(logging.WARNING, logger="channels.graph_api")
    config_graph = type("G", (), {"url": f"http://127.0.0.1:{proxy.port}"})()
    server = ChannelServer(channel(config_graph, tmp_path / "c.db", backoff_base=0.4, backoff_max=2.0),
                           EchoBot()).start()
    sender = new_sender()
    try:
        payload = text_payload(sender, ["hallo"])
        assert server.post(payload).status_code == 200
        assert wait_until(lambda: any("send try 1/" in r.getMessage() and "ClientConnectorError" in r.getMessage()
                                      for r in caplog.records), 20)
        proxy.restore()
        found = settled(server, sender, wamid_of(payload))
    finally:
        server.stop()
        proxy.stop()
    assert [r.status for r in found] == ["sent"]
    assert len(graph.messages(sender)) == 1 and len(graph.delivered(sender)) == 1


# ------------------------------------------------------------------- crashes
def die_during_second_part(graph: FakeGraphAPI, db: Path, second_part: str) -> Any:
    """An instance answers with two parts: part 1 is sent, part 2 (scripted
    ``second_part``) is in flight when the instance goes down. Returns (sender, payload)."""
    sender = new_sender()
    graph.script("ok", second_part)
    first = ChannelServer(channel(graph, db, graph_timeout=5.0), EchoBot()).start()
    payload = text_payload(sender, ["two"])
    try:
        first.post(payload)
        assert graph.wait_for(lambda g: len(g.messages(sender)) == 2)
    finally:
        first.stop()
    return sender, payload


def test_crash_during_send_is_settled_by_the_status_webhook(tmp_path: Path, graph: FakeGraphAPI) -> None:
    db = tmp_path / "d.db"
    sender, payload = die_during_second_part(graph, db, "hang")  # Meta takes part 2 later
    second_bot = EchoBot()
    second = ChannelServer(channel(graph, db), second_bot).start()
    try:
        # Meta did take part 2; its status webhook reaches the new instance.
        graph.report_statuses_to(second.base + "/webhook", APP_SECRET)
        graph.release_hanging()
        found = settled(second, sender, wamid_of(payload))
    finally:
        second.stop()
    assert second_bot.received == []  # Rasa is not asked again
    assert [r.status for r in found] == ["sent", "sent"]
    assert len(graph.messages(sender)) == 2  # nothing resent


def test_crash_before_the_send_reached_meta_is_resent_once(tmp_path: Path, graph: FakeGraphAPI) -> None:
    db = tmp_path / "e.db"
    sender, payload = die_during_second_part(graph, db, "swallow")  # part 2 never reaches Meta
    second = ChannelServer(channel(graph, db, confirm_seconds=1.5), EchoBot()).start()
    graph.report_statuses_to(second.base + "/webhook", APP_SECRET)
    try:
        found = settled(second, sender, wamid_of(payload))
    finally:
        second.stop()
    assert [r.status for r in found] == ["sent", "sent"]
    answers = [m["answer"] for m in graph.messages(sender)]
    assert answers == ["ok", "swallow", "ok"]
    assert len(graph.delivered(sender)) == 2  # each part once


class TrackerBot(EchoBot):
    """Answers like Rasa does: the turn's events are saved in Rasa's tracker store
    at the end of the turn. With ``crash_after_save`` it then never returns, like an
    instance killed after Rasa finished the turn but before the channel stored it."""

    def __init__(self, tracker_store: Any, lock_store: Any, crash_after_save: bool = False) -> None:
        super().__init__()
        self.tracker_store, self.lock_store = tracker_store, lock_store
        self.crash_after_save = crash_after_save

    async def handle_message(self, message: Any) -> None:
        from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered

        with self.lock:
            self.received.append({"sender": message.sender_id, "text": message.text})
        tracker = await self.tracker_store.get_or_create_tracker(message.sender_id)
        tracker.update(UserUttered(message.text, message_id=message.message_id))
        answer = f"antwoord op: {message.text}"
        tracker.update(ActionExecuted("utter_answer"))
        tracker.update(BotUttered(answer, data={"buttons": [{"title": "Ja", "payload": "/affirm"}]}))
        await self.tracker_store.save(tracker)
        if self.crash_after_save:
            await asyncio.sleep(3600)
        await message.output_channel.send_response(
            message.sender_id, {"text": answer, "buttons": [{"title": "Ja", "payload": "/affirm"}]})


def test_turn_finished_by_a_killed_instance_is_not_run_twice(tmp_path: Path, graph: FakeGraphAPI) -> None:
    from rasa.core.lock_store import InMemoryLockStore
    from rasa.core.tracker_store import InMemoryTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import UserUttered

    tracker_store, lock_store = InMemoryTrackerStore(Domain.empty()), InMemoryLockStore()
    db = tmp_path / "f.db"
    sender = new_sender()
    first_bot = TrackerBot(tracker_store, lock_store, crash_after_save=True)
    first = ChannelServer(channel(graph, db), first_bot).start()
    payload = text_payload(sender, ["wat kost een paspoort"])
    try:
        assert first.post(payload).status_code == 200
        assert wait_until(lambda: first_bot.texts(sender) == ["wat kost een paspoort"])
        assert wait_until(lambda: tracker_store.store.get(sender) is not None)
    finally:
        first.stop()  # dies after Rasa saved the turn, before the reply was stored
    assert graph.messages(sender) == []
    second_bot = TrackerBot(tracker_store, lock_store)
    second = ChannelServer(channel(graph, db), second_bot).start()
    try:
        found = settled(second, sender, wamid_of(payload))
    finally:
        second.stop()
    assert second_bot.received == [], "the turn was run a second time"
    tracker = asyncio.run(tracker_store.retrieve(sender))
    assert sum(isinstance(e, UserUttered) for e in tracker.events) == 1
    assert [r.status for r in found] == ["sent"]
    sent = graph.messages(sender)[0]["json"]
    assert sent["type"] == "interactive" and sent["interactive"]["body"]["text"] == "antwoord op: wat kost een paspoort"


def test_message_that_cannot_be_handled_gets_phone_number_and_a_ticket(
    tmp_path: Path, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from appcare.handoff_store import HandoffStore

    db = tmp_path / "g.db"
    monkeypatch.setenv("APPCARE_DB_URL", f"sqlite:///{db}")
    sender = new_sender()
    payload = text_payload(sender, ["hang"])  # crashes the instance every time
    first = ChannelServer(channel(graph, db, max_processing_attempts=1), EchoBot()).start()
    try:
        assert first.post(payload).status_code == 200
        assert wait_until(lambda: first.bot.texts(sender) == ["hang"])
    finally:
        first.stop()
    caplog.set_level(logging.ERROR, logger="channels")
    second_bot = EchoBot()
    second = ChannelServer(channel(graph, db, max_processing_attempts=1), second_bot).start()
    try:
        found = settled(second, sender, wamid_of(payload))
    finally:
        second.stop()
    assert second_bot.received == []
    assert second.store.inbound_status(wamid_of(payload)) == "failed"
    texts = [m["json"]["text"]["body"] for m in graph.messages(sender)]
    assert len(texts) == 1 and "14 0320" in texts[0] and "collega" in texts[0], texts  # Lelystad's number
    assert [r.status for r in found] == ["sent"]
    tickets = [t for t in HandoffStore(f"sqlite:///{db}").list() if t.conversation_id == sender]
    assert len(tickets) == 1 and tickets[0].reason == "technical_failure" and tickets[0].status == "open"
    assert any("KCC ticket" in r.getMessage() for r in caplog.records)
    assert not any(sender in r.getMessage() for r in caplog.records)  # no phone number in the log


def test_relay_to_a_ticket_is_idempotent_per_message(tmp_path: Path) -> None:
    from appcare.handoff_store import HandoffStore

    store = HandoffStore(f"sqlite:///{tmp_path / 'h.db'}")
    ticket = store.open_ticket("31600000001", "request_human", "s", [], "terneuzen")
    for _ in range(3):  # the same turn repeated after crashes
        assert store.append_citizen_message("31600000001", "nog een vraag", message_id="wamid.X1") == ticket.id
    store.append_citizen_message("31600000001", "en nog een", message_id="wamid.X2")
    texts = [m["text"] for m in store.get(ticket.id).messages if m["author"] == "citizen"]
    assert texts == ["nog een vraag", "en nog een"]
