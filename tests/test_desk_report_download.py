"""The coordinator downloads the full performance report (report/) from the overview:
the HTML page and a ZIP of the CSV files for a chosen period, without a shell."""
from __future__ import annotations

import datetime as dt
import io
import zipfile

import pytest

from tests.support.desk_helpers import DeskClient, make_user, start_desk
from tests.support.editor_helpers import TrackerDB



@pytest.fixture
def env(tmp_path):
    db_url = f"sqlite:///{tmp_path}/desk.db"
    tracker = TrackerDB(tmp_path / "tracker.db")
    tracker.turn("31611111111", "wat kost een paspoort", "passport_fees", 0.97, ["action_passport_id"])
    tracker.turn("31622222222", "wanneer is het gemeentehuis open", "opening_hours", 0.95, ["action_opening_hours"])
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text(f"tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: {tmp_path}/tracker.db\n",
                         encoding="utf-8")
    for name, role in (("carla", "coordinator"), ("anna", "staff"), ("eddy", "editor")):
        make_user(db_url, name, role)
    desk = start_desk(db_url, endpoints=str(endpoints))
    yield type("Env", (), {"db_url": db_url, "desk": desk})
    desk.stop()
    tracker.close()


def login(env, name):
    client = DeskClient(env.desk.url)
    assert client.login(name).status_code == 302
    return client


def period():
    today = dt.date.today()
    return (today - dt.timedelta(days=6)).isoformat(), (today + dt.timedelta(days=1)).isoformat()


def test_coordinator_downloads_report_and_csv_files(env):
    coordinator = login(env, "carla")
    overview = coordinator.get("/overview").text
    assert "Volledig rapport downloaden" in overview and 'action="/overview/report"' in overview
    assert "make report" not in overview  # no shell command for the coordinator
    start, end = period()
    page = coordinator.get(f"/overview/report?from={start}&to={end}&format=html")
    assert page.status_code == 200
    assert page.headers["Content-Disposition"] == f'attachment; filename="rapport_{start}_{end}.html"'
    assert "<html" in page.text and "gesprekken" in page.text.lower()
    archive = coordinator.get(f"/overview/report?from={start}&to={end}&format=zip")
    assert archive.status_code == 200 and archive.headers["Content-Type"] == "application/zip"
    assert archive.headers["Content-Disposition"] == f'attachment; filename="rapport_{start}_{end}_csv.zip"'
    names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert len([n for n in names if n.endswith(".csv")]) >= 3 and "kerncijfers.json" in names
    import json

    figures = json.loads(zipfile.ZipFile(io.BytesIO(archive.content)).read("kerncijfers.json"))
    assert figures["conversations"] == 2 and figures["period_start"].startswith(start)  # the tracker store was read
    from desk.store import DeskStore

    entry = DeskStore(env.db_url).audit_log(action="report_downloaded")[0]
    assert entry["actor"] == "carla" and entry["detail"] == {"from": start, "to": end, "format": "zip"}
    assert "rapport gedownload" in coordinator.get("/overview").text  # in the coordinator's latest actions


def test_wrong_period_gets_a_dutch_message_and_others_may_not(env):
    coordinator = login(env, "carla")
    start, end = period()
    backwards = coordinator.get(f"/overview/report?from={end}&to={start}&format=html")
    assert backwards.status_code == 422 and "De einddatum ligt vóór de begindatum." in backwards.text
    assert f'value="{end}"' in backwards.text  # the chosen dates stay in the form
    missing = coordinator.get("/overview/report?from=&to=2026-11-30")
    assert missing.status_code == 422 and "Vul een begindatum in." in missing.text
    too_long = coordinator.get("/overview/report?from=2024-01-01&to=2026-01-01")
    assert too_long.status_code == 422 and "hoogstens een jaar" in too_long.text
    for name in ("anna", "eddy"):
        assert login(env, name).get(f"/overview/report?from={start}&to={end}").status_code == 403
    assert DeskClient(env.desk.url).get(f"/overview/report?from={start}&to={end}").status_code in (302, 401)
