"""The action server keeps up while one source hangs (issue 19), with real processes.

The real action server (``python -m appcare.plugins.action_server``) runs as a subprocess on the
test content; its roadworks feed is a real HTTP server on 127.0.0.1 whose answers take
10 s (the client gives up after its timeout and one retry, about 5 s). Action calls are
real HTTP POSTs of the JSON Rasa sends to ``/webhook``.

* While three citizens' roadworks calls wait for the feed, ten opening-hours calls of
  other citizens are answered, all of them before any roadworks call returns, with the
  same answers as before the hang. The three roadworks calls share one fetch.
* After the feed failed, the next roadworks call within the failure cache time answers
  "cannot look it up" at once, without a new request to the feed.
* ``action_relay_to_kcc`` posted twice at the same moment (a retried call) adds the
  citizen's text to the ticket once, with a message id and without one; and two runs in
  two threads at the same moment do so on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import requests

from appcare.ops import processes
from appcare.ports import free_port
from tests.conftest import FIXTURE_CONTENT, ROOT
from tests.support.http_server import ScriptedServer
from tests.support.postgres import fresh_schema, schema_url
from tests.support.waiting import wait_for_state

pytestmark = pytest.mark.timeout(120)

FEED_HANG_SECONDS = 10.0
NOW = "2026-11-25T10:00:00"  # a Wednesday morning: every opening-hours call gets the same answer


class ActionServer:
    """``python -m appcare.plugins.action_server`` as a subprocess; its log goes to a file."""

    def __init__(self, workdir: Path, feed_url: str) -> None:
        self.port = free_port()
        self.db_url = f"sqlite:///{workdir}/appcare.db"
        self.log = workdir / "actions.log"
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("ROADWORKS_", "APPCARE_", "ACTION_"))}
        env.update({"APPCARE_CONTENT_DIR": str(FIXTURE_CONTENT), "APPCARE_DB_URL": self.db_url,
                    "APPCARE_NOW": NOW, "ROADWORKS_URL": feed_url + "/{municipality}.json"})
        self.process = processes.start(
            [sys.executable, "-m", "appcare.plugins.action_server", "--port", str(self.port), "--interface", "127.0.0.1"],
            name="actions", log=self.log, env=env, cwd=ROOT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_until_up(self, seconds: float = 90) -> None:
        def health() -> Optional[int]:
            if self.process.poll() is not None:
                raise AssertionError(f"the action server exited:\n{self.log.read_text(errors='replace')[-3000:]}")
            try:
                return requests.get(self.url + "/health", timeout=2).status_code
            except requests.RequestException:
                return None

        wait_for_state("the action server to answer /health", health, lambda status: status == 200,
                       timeout=seconds, interval=0.2)

    def stop(self) -> None:
        processes.stop([self.process], timeout=20)  # its process group: SIGTERM, then SIGKILL


@pytest.fixture(scope="module")
def feed() -> Iterator[ScriptedServer]:
    """The municipality's roadworks feed; every answer takes FEED_HANG_SECONDS."""
    with ScriptedServer() as server:
        server.default = (200, {"roadworks": []}, FEED_HANG_SECONDS)
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, feed: ScriptedServer) -> Iterator[ActionServer]:
    action_server = ActionServer(tmp_path_factory.mktemp("action-server"), feed.url)
    try:
        action_server.wait_until_up()
        yield action_server
    finally:
        action_server.stop()


def action_call(action: str, sender: str, text: str, intent: str, entities: Optional[List[Dict[str, Any]]] = None,
                slots: Optional[Dict[str, Any]] = None, message_id: Optional[str] = "auto",
                timestamp: Optional[float] = None) -> Dict[str, Any]:
    """The body Rasa 3.6 POSTs to the action server for ``action`` after ``text``."""
    latest = {"text": text, "intent": {"name": intent, "confidence": 0.95}, "entities": entities or [],
              "message_id": uuid.uuid4().hex if message_id == "auto" else message_id,
              "metadata": {"municipality": "terneuzen"}, "intent_ranking": []}
    all_slots = {"privacy_notice_shown": True, "feedback_asked": True, "municipality": "terneuzen", **(slots or {})}
    user = {"event": "user", "timestamp": timestamp or time.time(), "text": text, "parse_data": latest,
            "input_channel": "rest", "message_id": latest["message_id"]}
    tracker = {"sender_id": sender, "slots": all_slots, "latest_message": latest, "events": [user],
               "paused": False, "followup_action": None, "active_loop": {}, "latest_action_name": "action_listen",
               "latest_input_channel": "rest"}
    return {"next_action": action, "sender_id": sender, "tracker": tracker, "domain": {}, "version": "3.6.21"}


def post(server: ActionServer, body: Dict[str, Any]) -> Tuple[List[Optional[str]], float]:
    """POSTs an action call; returns the response names of its replies and when it returned."""
    response = requests.post(server.url + "/webhook", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return [r.get("response") for r in response.json()["responses"]], time.monotonic()


def opening_hours(citizen: str) -> Dict[str, Any]:
    return action_call("action_opening_hours", citizen, "hoe laat is het stadhuis open", "opening_hours")


def roadworks(citizen: str) -> Dict[str, Any]:
    return action_call("action_roadworks", citizen, "wegwerkzaamheden op de Noordstraat?", "roadworks_status",
                       entities=[{"entity": "street", "value": "Noordstraat"}])


def feed_requests(feed: ScriptedServer, municipality: str) -> int:
    return sum(1 for path in list(feed.requests) if path == f"/{municipality}.json")


def test_other_citizens_are_answered_while_roadworks_calls_hang(server: ActionServer, feed: ScriptedServer) -> None:
    baseline = []
    for n in range(10):
        started = time.monotonic()
        replies, returned = post(server, opening_hours(f"baseline-{n}"))
        baseline.append((replies, returned - started))
    assert baseline[0][0] and all(replies == baseline[0][0] for replies, _ in baseline)
    assert feed_requests(feed, "terneuzen") == 0

    with ThreadPoolExecutor(max_workers=13) as pool:
        hanging = [pool.submit(post, server, roadworks(f"roadworks-{n}")) for n in range(3)]
        # the hang has begun: the feed holds the first request
        wait_for_state("the feed to receive the roadworks request", lambda: feed_requests(feed, "terneuzen"),
                       timeout=20)
        started = time.monotonic()
        others = [pool.submit(post, server, opening_hours(f"other-{n}")) for n in range(10)]
        answered = [future.result() for future in others]
        still_pending = sum(not future.done() for future in hanging)
        roadworks_results = [future.result() for future in hanging]

    durations = [returned - started for _, returned in answered]
    first_roadworks_return = min(returned for _, returned in roadworks_results)
    assert still_pending == 3, "a roadworks call returned before the other citizens were answered"
    assert all(returned < first_roadworks_return for _, returned in answered)
    assert max(durations) < FEED_HANG_SECONDS / 2, (
        f"during the hang {durations}; before it {[round(d, 3) for _, d in baseline]}")
    # the same answers as before the hang
    assert [replies for replies, _ in answered] == [replies for replies, _ in baseline]
    # the roadworks citizens get "cannot look it up now" after the client gave up ...
    assert all("utter_roadworks_unavailable" in replies for replies, _ in roadworks_results)
    # ... from one fetch (a first attempt and its retry), not one per citizen
    assert feed_requests(feed, "terneuzen") == 2


def test_a_failed_feed_is_not_asked_again_within_the_failure_cache_time(server: ActionServer,
                                                                         feed: ScriptedServer) -> None:
    before = feed_requests(feed, "lelystad")
    body = roadworks("failure-1")
    body["tracker"]["slots"]["municipality"] = "lelystad"
    started = time.monotonic()
    replies, returned = post(server, body)
    first_duration = returned - started
    assert "utter_roadworks_unavailable" in replies
    after_failure = feed_requests(feed, "lelystad")
    assert after_failure == before + 2  # the attempt and its retry, both timed out

    body = roadworks("failure-2")
    body["tracker"]["slots"]["municipality"] = "lelystad"
    started = time.monotonic()
    replies, returned = post(server, body)
    assert "utter_roadworks_unavailable" in replies
    assert feed_requests(feed, "lelystad") == after_failure  # the feed was not asked again
    # at once: well within the first call's wait (two timeouts of 2.5 s)
    assert returned - started < first_duration / 2, (returned - started, first_duration)


def relay_call(sender: str, text: str, message_id: Optional[str], timestamp: float) -> Dict[str, Any]:
    return action_call("action_relay_to_kcc", sender, text, "inform", slots={"handoff_active": True},
                       message_id=message_id, timestamp=timestamp)


def open_ticket(db_url: Optional[str], sender: str) -> int:
    from appcare.handoff_store import HandoffStore, default_store

    store = HandoffStore(db_url) if db_url else default_store()
    return store.open_ticket(conversation_id=sender, reason="request_human", summary="", transcript=[],
                             municipality="terneuzen").id


def citizen_texts(db_url: Optional[str], ticket_id: int) -> List[str]:
    from appcare.handoff_store import HandoffStore, default_store

    store = HandoffStore(db_url) if db_url else default_store()
    return [m["text"] for m in store.get(ticket_id).messages if m["author"] == "citizen"]


def at_once(calls: List[Any]) -> List[Any]:
    """Runs the callables in threads that start together (a barrier)."""
    barrier = threading.Barrier(len(calls))

    def run(call: Any) -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [future.result() for future in [pool.submit(run, call) for call in calls]]


def test_a_retried_relay_call_adds_the_text_once(server: ActionServer) -> None:
    sender = "31611112222"
    ticket_id = open_ticket(server.db_url, sender)
    first = relay_call(sender, "mijn aanvraag is nog niet binnen", "wamid.relay-1", time.time())
    replies = at_once([lambda: post(server, first)[0], lambda: post(server, first)[0]])
    assert replies == [[], []]  # the bot stays silent while a colleague has the conversation
    post(server, first)  # a later retry of the same call
    assert citizen_texts(server.db_url, ticket_id) == ["mijn aanvraag is nog niet binnen"]

    # without a message id: the same user event (same timestamp) is the same message ...
    stamp = time.time()
    second = relay_call(sender, "ja", None, stamp)
    at_once([lambda: post(server, second), lambda: post(server, second)])
    assert citizen_texts(server.db_url, ticket_id) == ["mijn aanvraag is nog niet binnen", "ja"]
    # ... and a later "ja" is a new message
    post(server, relay_call(sender, "ja", None, stamp + 5))
    assert citizen_texts(server.db_url, ticket_id) == ["mijn aanvraag is nog niet binnen", "ja", "ja"]


# ----------------------------------------------------------- two threads, two databases
def run_relay(sender: str, text: str, message_id: Optional[str], timestamp: float) -> List[Dict[str, Any]]:
    """The real action on a real tracker (as the action server builds it), in this thread."""
    from rasa_sdk import Tracker
    from rasa_sdk.executor import CollectingDispatcher

    from actions.handoff import ActionRelayToKcc

    tracker = Tracker.from_dict(relay_call(sender, text, message_id, timestamp)["tracker"])
    dispatcher = CollectingDispatcher()
    asyncio.run(ActionRelayToKcc().run(dispatcher, tracker, {}))
    return dispatcher.messages


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """APPCARE_DB_URL for the test: the test's SQLite file, or a schema of its own in
    PostgreSQL (127.0.0.1:5432, user postgres, database test), dropped afterwards."""
    if request.param == "sqlite":
        yield os.environ["APPCARE_DB_URL"]  # tests/conftest.py: a file in tmp_path
        return
    with fresh_schema("relay_test") as schema:
        url = schema_url(schema)
        monkeypatch.setenv("APPCARE_DB_URL", url)
        yield url


@pytest.mark.usefixtures("fixture_content")
def test_two_runs_of_the_same_relay_at_the_same_moment_add_the_text_once(database: str) -> None:
    sender = "31633334444"
    ticket_id = open_ticket(None, sender)
    expected = []
    for n in range(8):  # several rounds: the two runs meet at a different point each time
        text = f"aanvulling {n}"
        stamp = time.time()
        message_id = f"wamid.round-{n}" if n % 2 == 0 else None  # odd rounds: no message id
        assert at_once([lambda: run_relay(sender, text, message_id, stamp)] * 2) == [[], []]
        expected.append(text)
        assert citizen_texts(None, ticket_id) == expected
