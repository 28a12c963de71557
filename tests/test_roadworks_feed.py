"""The roadworks client against a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import datetime as dt

import pytest

from appcare import content, roadworks_feed
from appcare.roadworks_feed import RoadworksClient, RoadworksUnavailable
from tests.support.http_server import ScriptedServer

FEED = {
    "municipality": "lelystad",
    "roadworks": [
        {"id": "1", "street": "Larserdreef", "area": "Oost", "description": "nieuw asfalt",
         "start": "2026-11-01", "end": "2026-12-01", "hindrance": "afgesloten", "detour": "via de Oostranddreef"},
        {"id": "2", "street": "Stationsdreef", "description": "riool", "start": "bad-date"},
    ],
}


@pytest.fixture
def lelystad(fixture_content):
    return content.load("lelystad")


def test_fetches_and_parses_feed(monkeypatch, lelystad):
    with ScriptedServer() as server:
        server.default = (200, FEED, 0)
        monkeypatch.setenv("ROADWORKS_URL", server.url + "/feed/{municipality}.json")
        items = RoadworksClient().find(lelystad, street="larserdreef")
        assert [r.street for r in items] == ["Larserdreef"]
        assert server.requests == ["/feed/lelystad.json"]


def test_retries_once_after_server_error(monkeypatch, lelystad):
    with ScriptedServer() as server:
        server.replies = [(500, {"error": "boom"}, 0)]
        server.default = (200, FEED, 0)
        monkeypatch.setenv("ROADWORKS_URL", server.url)
        assert len(RoadworksClient().all(lelystad)) == 1  # the broken entry is skipped
        assert len(server.requests) == 2


def test_down_source_raises_unavailable(monkeypatch, lelystad):
    with ScriptedServer() as server:
        server.default = (503, {}, 0)
        monkeypatch.setenv("ROADWORKS_URL", server.url)
        with pytest.raises(RoadworksUnavailable):
            RoadworksClient().all(lelystad)


def test_hanging_source_times_out(monkeypatch, lelystad):
    monkeypatch.setattr(roadworks_feed, "TIMEOUT_SECONDS", 0.3)
    with ScriptedServer() as server:
        server.default = (200, FEED, 2.0)
        monkeypatch.setenv("ROADWORKS_URL", server.url)
        with pytest.raises(RoadworksUnavailable):
            RoadworksClient().all(lelystad)


def test_invalid_json_is_unavailable(monkeypatch, lelystad):
    with ScriptedServer() as server:
        server.default = (200, b"<html>not json", 0)
        monkeypatch.setenv("ROADWORKS_URL", server.url)
        with pytest.raises(RoadworksUnavailable):
            RoadworksClient().all(lelystad)


def test_short_cache(monkeypatch, lelystad):
    with ScriptedServer() as server:
        server.default = (200, FEED, 0)
        monkeypatch.setenv("ROADWORKS_URL", server.url)
        client = RoadworksClient()
        client.all(lelystad)
        client.all(lelystad)
        assert len(server.requests) == 1


def test_embedded_default_is_local_file(lelystad):
    items = RoadworksClient().find(lelystad, street="Larserdreef")  # tests/fixtures/content/roadworks
    assert items and items[0].detour


def test_example_marker_and_date_are_parsed(monkeypatch, lelystad):
    with ScriptedServer() as server:
        server.default = (200, {**FEED, "example": True, "generated": "2026-12-07"}, 0)
        monkeypatch.setenv("ROADWORKS_URL", server.url)
        feed = RoadworksClient().feed(lelystad)
    assert feed.example and feed.usable and feed.generated == dt.date(2026, 12, 7) and len(feed.items) == 1


def test_older_updated_field_gives_the_date_in_dutch_time(monkeypatch, lelystad):
    """`updated` as a UTC date-time late in the evening is the next day in the Netherlands."""
    with ScriptedServer() as server:
        server.default = (200, {**FEED, "updated": "2026-12-06T23:30:00Z"}, 0)
        monkeypatch.setenv("ROADWORKS_URL", server.url)
        feed = RoadworksClient().feed(lelystad)
    assert not feed.example and feed.generated == dt.date(2026, 12, 7)


@pytest.mark.parametrize("variable,value", [("APPCARE_STRICT_FACTS", "1"), ("APPCARE_ENV", "production")])
def test_example_feed_is_not_used_in_strict_mode_or_production(monkeypatch, lelystad, variable, value):
    with ScriptedServer() as server:
        server.default = (200, {**FEED, "example": True}, 0)
        monkeypatch.setenv("ROADWORKS_URL", server.url)
        client = RoadworksClient()
        assert client.find(lelystad, street="Larserdreef")  # development: used (and said to be examples)
        monkeypatch.setenv(variable, value)
        feed = client.feed(lelystad)
        assert feed.example and not feed.usable and client.find(lelystad, street="Larserdreef") == []


def test_a_real_feed_is_used_in_strict_mode(monkeypatch, lelystad):
    monkeypatch.setenv("APPCARE_STRICT_FACTS", "1")
    with ScriptedServer() as server:
        server.default = (200, FEED, 0)
        monkeypatch.setenv("ROADWORKS_URL", server.url)
        assert [r.street for r in RoadworksClient().find(lelystad, street="Larserdreef")] == ["Larserdreef"]


def test_no_feed_configured_is_no_usable_feed(lelystad):
    without_file = lelystad.copy(deep=True)
    without_file.roadworks.feed_file = None
    feed = RoadworksClient().feed(without_file)
    assert feed.source == "none" and not feed.usable and feed.find() == []


def test_shipped_feed_files_are_marked_as_examples():
    """content/roadworks/*.json holds example entries only: the marker must stay, so that
    citizens are told and strict mode / production never use them."""
    import json

    files = sorted((content.PROJECT_ROOT / "content" / "roadworks").glob("*.json"))
    assert files
    for path in files:
        document = json.loads(path.read_text(encoding="utf-8"))
        assert document.get("example") is True, path.name
        feed = roadworks_feed.parse_feed(document, "file")
        assert feed.example and feed.generated, path.name


def test_a_failure_is_remembered_for_a_short_time(monkeypatch, lelystad):
    """After a failed fetch the client raises at once, without asking the source, until
    ROADWORKS_FAILURE_CACHE_SECONDS have passed; then it asks again."""
    with ScriptedServer() as server:
        server.replies = [(503, {}, 0), (503, {}, 0)]  # the attempt and its retry
        server.default = (200, FEED, 0)
        monkeypatch.setenv("ROADWORKS_URL", server.url)
        client = RoadworksClient()
        with pytest.raises(RoadworksUnavailable):
            client.all(lelystad)
        with pytest.raises(RoadworksUnavailable, match="failed recently"):
            client.all(lelystad)
        assert len(server.requests) == 2  # the source is up again, but was not asked
        monkeypatch.setattr(roadworks_feed, "FAILURE_CACHE_SECONDS", 0)
        assert len(client.all(lelystad)) == 1
        assert len(server.requests) == 3


def test_concurrent_callers_share_one_fetch(monkeypatch, lelystad):
    """Callers asking while the feed is being fetched wait for that fetch: one request
    (and its retry) for all of them, and all get its outcome."""
    import threading

    monkeypatch.setattr(roadworks_feed, "TIMEOUT_SECONDS", 0.3)
    with ScriptedServer() as server:
        server.default = (200, FEED, 2.0)  # hangs past the timeout
        monkeypatch.setenv("ROADWORKS_URL", server.url)
        client = RoadworksClient()
        barrier = threading.Barrier(6)
        outcomes = []

        def ask() -> None:
            barrier.wait()
            try:
                client.all(lelystad)
                outcomes.append("feed")
            except RoadworksUnavailable:
                outcomes.append("unavailable")

        threads = [threading.Thread(target=ask) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert outcomes == ["unavailable"] * 6
        assert len(server.requests) == 2
        server.default = (200, FEED, 0)
        barrier = threading.Barrier(6)
        monkeypatch.setattr(roadworks_feed, "FAILURE_CACHE_SECONDS", 0)
        outcomes.clear()
        threads = [threading.Thread(target=ask) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert outcomes == ["feed"] * 6
        assert len(server.requests) == 3  # one more request, then the cache
