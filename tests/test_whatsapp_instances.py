"""The WhatsApp channel with several instances on one PostgreSQL database (the
real PostgreSQL of this machine; skipped when it is absent): each message answered
once and in order, a database that is down at start, the messages of a crashed
instance taken over after its lease, batched senders, health, metrics and a bot
outage."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any, List, Tuple

import pytest
import requests

from appcare.pii import conversation_hash
from tests.support.postgres import needs_pg, pg_url  # noqa: F401 - pg_url is a fixture
from tests.support.waiting import wait_for_state

pytestmark = pytest.mark.timeout(120)


def _channel_server(graph: Any, db_url: str, bot: Any, instance: str, **scale: Any) -> Any:
    from channels.whatsapp import ScaleSettings, WhatsAppInput
    from tests.test_whatsapp_channel import ChannelServer, make_config

    settings = ScaleSettings(instance_id=instance, **{"lease_seconds": 3.0, "sweep_interval": 0.5, "stale_after": 1.0, **scale})
    config = make_config(graph, Path("unused.db"), db_url=db_url)
    return ChannelServer(WhatsAppInput(config, settings), bot).start()


@needs_pg
def test_two_instances_on_one_database_answer_each_message_once_in_order(pg_url: str) -> None:
    """No sticky front at all: one citizen's messages alternate between two
    instances; the sender lease keeps them in order and handled once."""
    from tests.fake_graph_api import FakeGraphAPI
    from tests.test_whatsapp_channel import EchoBot, new_sender, text_payload

    with FakeGraphAPI() as graph:
        bot_a, bot_b = EchoBot(delay=0.15), EchoBot(delay=0.15)
        first = _channel_server(graph, pg_url, bot_a, "inst-a")
        second = _channel_server(graph, pg_url, bot_b, "inst-b")
        try:
            sender = new_sender()
            texts = [f"bericht {i}" for i in range(12)]
            base = int(time.time())
            wamids = []
            for i, text in enumerate(texts):
                server = first if i % 2 == 0 else second
                payload = text_payload(sender, [text], ts=base + i)
                wamids.append(payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"])
                assert server.post(payload).status_code == 200
            assert graph.wait_for(lambda g: len(g.delivered(sender)) == len(texts), timeout=40)
            # Both instances are finished with this sender (final inbox status of every
            # message, nothing left to send, no worker running on either instance): no
            # message can still be handled a second time, so "exactly once" is a conclusion.
            for server in (first, second):
                server.wait_handled(sender, wamids, timeout=20)
            handled = [(r["text"]) for r in sorted(bot_a.for_sender(sender) + bot_b.for_sender(sender),
                                                   key=lambda r: texts.index(r["text"]))]
            assert sorted(handled) == sorted(texts) and len(handled) == len(texts)  # each exactly once
            replies = [m["json"]["text"]["body"] for m in graph.delivered(sender)]
            assert replies == [f"echo: {t}" for t in texts]  # in order
        finally:
            first.stop()
            second.stop()


@needs_pg
def test_channel_waits_for_a_database_that_is_down_at_start(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from channels.whatsapp import routes as whatsapp
    from tests.fake_graph_api import FakeGraphAPI
    from tests.support.tcp_proxy import TcpProxy
    from tests.test_whatsapp_channel import EchoBot, new_sender, text_payload

    monkeypatch.setattr(whatsapp, "DB_RETRY_SECONDS", 0.3)
    proxy = TcpProxy("127.0.0.1", 5432).start()
    proxy.cut()  # PostgreSQL "down" while Rasa starts
    with FakeGraphAPI() as graph:
        server = _channel_server(graph, pg_url.replace(":5432/", f":{proxy.port}/"), EchoBot(), "late-db")
        try:
            health = requests.get(server.base + "/health", timeout=5)
            assert health.status_code == 503 and health.json()["reason"] == "database unavailable"
            sender = new_sender()
            assert server.post(text_payload(sender, ["eerste"])).status_code == 503  # Meta retries it later
            proxy.restore()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and requests.get(server.base + "/health", timeout=5).status_code != 200:
                time.sleep(0.2)  # poll interval of a bounded wait (asserted just below), not a guess
            assert requests.get(server.base + "/health", timeout=5).status_code == 200
            assert server.post(text_payload(sender, ["eerste"])).status_code == 200  # Meta's retry
            assert graph.wait_for(lambda g: len(g.delivered(sender)) == 1, timeout=20)
        finally:
            server.stop()
            proxy.stop()


@needs_pg
def test_messages_of_a_crashed_instance_are_taken_over_after_its_lease(pg_url: str) -> None:
    from channels.inbox import InboxStore
    from tests.fake_graph_api import FakeGraphAPI
    from tests.test_whatsapp_channel import EchoBot, new_sender, text_payload

    class TimedBot(EchoBot):
        """Also notes when (wall clock, like the lease times) each message reached the bot."""

        def __init__(self) -> None:
            super().__init__()
            self.handled_at: List[float] = []

        async def handle_message(self, message: Any) -> None:
            self.handled_at.append(time.time())
            await super().handle_message(message)

    with FakeGraphAPI() as graph:
        bot = TimedBot()
        server = _channel_server(graph, pg_url, bot, "survivor")
        try:
            sender = new_sender()
            sender_hash = conversation_hash(sender)
            store = InboxStore(pg_url)
            # The survivor's attempts to claim this sender (lease + next message), with their outcome.
            attempts: List[Tuple[float, bool]] = []
            real_claim = server.store.claim_next

            def recording_claim(wa_id: str, owner: str, ttl: float, **kwargs: Any) -> Any:
                claim = real_claim(wa_id, owner, ttl, **kwargs)
                if conversation_hash(wa_id) == sender_hash:
                    attempts.append((time.time(), claim.reason != "leased"))
                return claim

            server.store.claim_next = recording_claim
            # the crashed instance left a lease (3 s to live) while the message waits
            taken_at = time.time()
            lease_expires = taken_at + 3.0
            assert store.acquire_lease(sender_hash, "crashed", 3.0, now=taken_at)
            assert server.post(text_payload(sender, ["na de crash"])).status_code == 200
            # The survivor saw the message and was refused the live lease: it leaves the
            # sender to the holder; its sweep takes the message once the lease has expired.
            wait_for_state("the survivor to be refused the crashed instance's lease",
                           lambda: [taken for _, taken in attempts], lambda seen: False in seen, timeout=10)
            assert graph.wait_for(lambda g: len(g.delivered(sender)) == 1, timeout=15)
            server.wait_handled(sender)  # the survivor is finished with the sender: no second turn can come
            assert bot.texts(sender) == ["na de crash"]
            # not while the other instance may still work on it: the message reached the
            # bot only after the crashed instance's lease had expired (a conclusion from
            # the recorded times, not from a look at the bot after a guessed sleep)
            assert len(bot.handled_at) == 1 and bot.handled_at[0] >= lease_expires, (bot.handled_at, lease_expires)
        finally:
            server.stop()


@needs_pg
def test_batched_senders_health_metrics_and_bot_outage(pg_url: str) -> None:
    from tests.fake_graph_api import FakeGraphAPI
    from tests.test_whatsapp_channel import EchoBot, new_sender, text_payload

    class FlakyBot(EchoBot):
        failures = 2

        async def handle_message(self, message: Any) -> None:
            if message.text == "storing" and self.failures > 0:
                self.failures -= 1
                raise ConnectionError("redis down")  # what Rasa raises with the lock store down
            if message.text == "altijd kapot":
                raise ConnectionError("still down")
            await super().handle_message(message)

    with FakeGraphAPI() as graph:
        bot = FlakyBot()
        server = _channel_server(graph, pg_url, bot, "flaky", bot_retry_seconds=2.0)
        try:
            # Meta batches messages of several citizens in one POST: this instance takes
            # them all (any instance may receive any webhook behind HAProxy); a leftover
            # X-Appcare-Route header of the old front is ignored.
            one, two = new_sender(), new_sender()
            payload = text_payload(one, ["eerste burger"])
            payload["entry"][0]["changes"][0]["value"]["messages"] += text_payload(two, ["tweede burger"])["entry"][0]["changes"][0]["value"]["messages"]
            body = json.dumps(payload).encode()
            sig = "sha256=" + hmac.new(b"test-app-secret", body, hashlib.sha256).hexdigest()
            response = requests.post(server.base + "/webhook", data=body, timeout=10, headers={
                "Content-Type": "application/json", "X-Hub-Signature-256": sig, "X-Appcare-Route": conversation_hash(one)})
            assert response.status_code == 200 and response.json()["new"] == 2
            assert graph.wait_for(lambda g: len(g.delivered(one)) == 1 and len(g.delivered(two)) == 1)

            sender = new_sender()
            server.post(text_payload(sender, ["storing"]))
            assert graph.wait_for(lambda g: len(g.delivered(sender)) == 1, timeout=20)
            server.wait_handled(sender)  # finished (inbox final, worker ended): the one answer is all there is
            assert [m["json"]["text"]["body"] for m in graph.delivered(sender)] == ["echo: storing"]

            broken = new_sender()
            server.post(text_payload(broken, ["altijd kapot"]))
            assert graph.wait_for(lambda g: len(g.delivered(broken)) == 1, timeout=20)
            assert "storing" in graph.delivered(broken)[0]["json"]["text"]["body"]  # honest "try again"

            health = requests.get(server.base + "/health", timeout=5)
            assert health.status_code == 200 and health.json()["instance"] == "flaky"
            metrics = requests.get(server.base + "/metrics", timeout=5)
            assert metrics.status_code == 200 and "text/plain" in metrics.headers["content-type"]
            for name in ("appcare_whatsapp_messages_received_total", "appcare_whatsapp_replies_sent_total",
                         "appcare_whatsapp_reply_latency_seconds_bucket", "appcare_whatsapp_errors_total",
                         "appcare_whatsapp_open_messages"):
                assert name in metrics.text, name
            assert 'appcare_whatsapp_errors_total{where="bot"}' in metrics.text
        finally:
            server.stop()
