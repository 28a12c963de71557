"""Time zone and DST boundaries: days, hours, weeks and KCC hours are Europe/Amsterdam
local time. Events are written with Rasa's SQLTrackerStore (see test_report_dataset)."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from tests.test_report_dataset import Script, save_scripts, sqlite_tracker_store

UTC = dt.timezone.utc


def utc(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _conversation(sender: str, when: float, municipality: str = "terneuzen") -> Script:
    script = Script(sender).session(when)
    script.user(when, "wat zijn de openingstijden", "opening_hours", "whatsapp",
                {"channel": "whatsapp", "municipality": municipality})
    script.action(when + 0.1, "action_opening_hours").bot(when + 0.2, "utter_hours_week").listen(when + 0.3)
    return script


@pytest.fixture
def dst_store(tmp_path):
    scripts = [
        # Spring forward on Sunday 29 March 2026 (02:00 CET -> 03:00 CEST).
        _conversation("s-before", utc("2026-03-28T22:50:00")),   # Sat 28 March 23:50 CET
        _conversation("s-0030", utc("2026-03-28T23:30:00")),     # Sun 29 March 00:30 CET: belongs to the 29th
        _conversation("s-0330", utc("2026-03-29T01:30:00")),     # Sun 29 March 03:30 CEST
        _conversation("s-2330", utc("2026-03-29T21:30:00")),     # Sun 29 March 23:30 CEST
        _conversation("s-next", utc("2026-03-29T22:10:00")),     # Mon 30 March 00:10 CEST (UTC still the 29th)
        _conversation("s-0815", utc("2026-03-30T06:15:00")),     # Mon 30 March 08:15 CEST: KCC closed (08:30)
        _conversation("s-0845", utc("2026-03-30T06:45:00")),     # Mon 30 March 08:45 CEST: KCC open
        # Fall back on Sunday 25 October 2026 (03:00 CEST -> 02:00 CET).
        _conversation("a-0030", utc("2026-10-24T22:30:00")),     # Sun 25 Oct 00:30 CEST
        _conversation("a-0230a", utc("2026-10-25T00:30:00")),    # Sun 25 Oct 02:30 CEST (first time)
        _conversation("a-0230b", utc("2026-10-25T01:30:00")),    # Sun 25 Oct 02:30 CET (second time)
        _conversation("a-2330", utc("2026-10-25T22:30:00")),     # Sun 25 Oct 23:30 CET
        _conversation("a-0830", utc("2026-10-26T07:45:00")),     # Mon 26 Oct 08:45 CET: KCC open
    ]
    path = tmp_path / "tracker.db"
    save_scripts(sqlite_tracker_store(path), scripts)
    yield {"tracker_store": {"type": "SQL", "dialect": "sqlite", "db": str(path)}}
    from report import metrics

    metrics.dispose_engines()


def _data(endpoints, start, end):
    from report import metrics

    return metrics.collect(metrics.Period.of(start, end), endpoints=endpoints,
                           tickets_url="sqlite:////nonexistent-report-test/tickets.db")


def test_event_at_0030_on_spring_dst_day_belongs_to_that_local_day(dst_store):
    data = _data(dst_store, "2026-03-28", "2026-03-30")
    per_day = {row[0]: row[3] for row in data.tables["per_dag"].rows if row[1] == "Alle"}
    assert per_day == {"2026-03-28": 1, "2026-03-29": 3, "2026-03-30": 3}
    only_sunday = _data(dst_store, "2026-03-29", "2026-03-29")
    assert only_sunday.totals["conversations"] == 3  # 00:30 CET, 03:30 CEST, 23:30 CEST; not Monday 00:10
    hours = {row[0][:2]: row[1] for row in only_sunday.tables["per_uur"].rows if row[1]}
    assert hours == {"00": 1, "03": 1, "23": 1}
    weekdays = {row[0]: row[1] for row in only_sunday.tables["per_weekdag"].rows if row[1]}
    assert weekdays == {"zondag": 3}


def test_kcc_hours_follow_summer_time(dst_store):
    monday = _data(dst_store, "2026-03-30", "2026-03-30")
    assert monday.totals["conversations"] == 3
    assert monday.totals["conversations_in_kcc_hours"] == 1       # 08:45 CEST
    assert monday.totals["conversations_outside_kcc_hours"] == 2  # 00:10 and 08:15 CEST
    hours = {row[0][:2]: row[1] for row in monday.tables["per_uur"].rows if row[1]}
    assert hours == {"00": 1, "08": 2}


def test_autumn_dst_day_has_25_hours(dst_store):
    sunday = _data(dst_store, "2026-10-25", "2026-10-25")
    assert sunday.totals["conversations"] == 4
    hours = {row[0][:2]: row[1] for row in sunday.tables["per_uur"].rows if row[1]}
    assert hours == {"00": 1, "02": 2, "23": 1}  # 02:30 happened twice
    monday = _data(dst_store, "2026-10-26", "2026-10-26")
    assert monday.totals["conversations_in_kcc_hours"] == 1
    weeks = [row[0] for row in _data(dst_store, "2026-10-24", "2026-10-26").tables["per_week"].rows if row[1] == "Alle"]
    assert weeks == ["2026-W43", "2026-W44"]


def test_local_keys_at_year_and_dst_boundaries():
    from report.metrics import day_key, month_key, week_key

    new_year = dt.datetime(2026, 12, 31, 23, 30, tzinfo=ZoneInfo("Europe/Amsterdam")).timestamp()
    assert (day_key(new_year), week_key(new_year), month_key(new_year)) == ("2026-12-31", "2026-W53", "2026-12")
    assert day_key(utc("2026-12-31T23:30:00")) == "2027-01-01"
    assert week_key(utc("2027-01-03T12:00:00")) == "2026-W53"
