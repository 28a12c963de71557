"""The desk's /health and /metrics answer without a session and hold no personal data."""
from __future__ import annotations

import requests

from tests.support.desk_helpers import open_ticket, sqlite_url, start_desk  # noqa: F401

from appcare.handoff_store import HandoffStore


def test_health_and_metrics_without_login(sqlite_url):
    open_ticket(HandoffStore(sqlite_url), summary="GEHEIM-ONDERWERP-4711")
    server = start_desk(sqlite_url)
    try:
        health = requests.get(f"{server.url}/health", timeout=10)
        assert health.status_code == 200
        metrics = requests.get(f"{server.url}/metrics", timeout=10)
        assert metrics.status_code == 200 and "# HELP" in metrics.text
        assert "GEHEIM-ONDERWERP-4711" not in metrics.text
        assert requests.get(f"{server.url}/api/queue", timeout=10).status_code == 401
    finally:
        server.stop()


def test_coordinator_overview_shows_report_key_figures(sqlite_url, tmp_path, monkeypatch):
    from tests.support.desk_helpers import DeskClient, make_user

    # The desk reads the tracker store named in endpoints.yml; this test's own (an empty
    # one), not whatever var/tracker.db the working directory happens to hold.
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text(f"tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: {tmp_path}/tracker.db\n")
    monkeypatch.setattr("report.sources.DEFAULT_ENDPOINTS", str(endpoints))
    make_user(sqlite_url, "carla", "coordinator")
    server = start_desk(sqlite_url)
    try:
        coordinator = DeskClient(server.url)
        coordinator.login("carla")
        page = coordinator.get("/overview")
        assert page.status_code == 200 and "Kerncijfers laatste 30 dagen" in page.text
        assert 'id="kf-conversations">0<' in page.text  # the figures, not "nu niet beschikbaar"
        figures = coordinator.get("/api/overview").json()["key_figures"]
        assert figures is not None, "the overview has no key figures (see the desk's log)"
        assert {"conversations", "containment_rate", "handoff_rate"} <= set(figures)
        assert figures["conversations"] == 0 and figures["containment_rate"] is None
    finally:
        server.stop()
