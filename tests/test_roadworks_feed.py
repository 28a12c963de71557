"""The roadworks client against a real HTTP server on 127.0.0.1."""
from __future__ import annotations

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
def lelystad():
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
    items = RoadworksClient().find(lelystad, street="Larserdreef")
    assert items and items[0].detour
