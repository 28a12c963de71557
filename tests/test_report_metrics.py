"""Report figures against the hand-computed conversations of tests/test_report_dataset.py:
key figures, every key table, municipality filter, empty period, a period with only
handoffs, privacy of the output, the endpoints file and the command line."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.test_report_dataset import EXPECTED, PERIOD, dataset, write_tickets  # noqa: F401


def _collect(dataset, start=PERIOD[0], end=PERIOD[1], municipality=None):
    from report import metrics

    endpoints, tickets_url = dataset
    return metrics.collect(metrics.Period.of(start, end), endpoints=endpoints, tickets_url=tickets_url,
                           municipality=municipality)


def _rows(data, name):
    return data.tables[name].rows


def test_key_figures_equal_hand_computed_values(dataset):
    from report import metrics

    endpoints, tickets_url = dataset
    figures = metrics.key_figures(*PERIOD, endpoints=endpoints, tickets_url=tickets_url)
    for key, expected in EXPECTED.items():
        if isinstance(expected, float):
            assert figures[key] == pytest.approx(expected, abs=0.06), key
        else:
            assert figures[key] == expected, key
    assert figures["municipalities"] == ["lelystad", "terneuzen"]
    assert figures["channels"] == ["rest", "whatsapp"]
    assert figures["period_start"] == "2026-03-02T00:00:00+01:00"
    assert figures["period_end"] == "2026-03-09T00:00:00+01:00"
    json.dumps(figures)  # the desk serialises it as is


def test_key_figures_table_per_municipality(dataset):
    data = _collect(dataset)
    table = data.tables["kerncijfers"]
    assert table.columns == ["Kengetal", "Totaal", "Lelystad", "Terneuzen"]
    rows = {row[0]: row[1:] for row in table.rows}
    assert rows["Gesprekken"] == [7, 2, 5]
    assert rows["Berichten van inwoners"] == [13, 5, 8]
    assert rows["Gesprekken binnen KCC-uren"] == [3, 1, 2]
    assert rows["Gesprekken buiten KCC-uren"] == [4, 1, 3]
    assert rows["Zelf beantwoord door de assistent"] == [5, 1, 4]
    assert rows["Zelf beantwoord (%)"] == [71.4, 50.0, 80.0]
    assert rows["In één keer beantwoord"] == [4, 0, 4]
    assert rows["In één keer beantwoord (%)"] == [57.1, 0.0, 80.0]
    assert rows["Overgedragen aan het KCC"] == [2, 1, 1]
    assert rows["Overgedragen (%)"] == [28.6, 50.0, 20.0]
    assert rows["Niet begrepen berichten"] == [3, 3, 0]
    # Lelystad latencies 400,500,600,300,400 -> p50 400, p95 580; Terneuzen 200,100,300,150,500,250,150
    assert rows["Reactietijd assistent p50 (ms)"] == [300, 400, 200]
    assert rows["Reactietijd assistent p95 (ms)"] == [545, 580, 440]
    assert rows["Overdrachten (tickets)"] == [2, 1, 1]
    assert rows["Eerste reactie medewerker, mediaan (min)"] == [1015.0, 2009.9, 20.0]
    assert rows["Afhandeltijd tot sluiten, mediaan (min)"] == [60.0, None, 60.0]
    assert rows["Feedback gevraagd"] == [2, 0, 2]
    assert rows["Duim omhoog"] == [1, 0, 1]
    assert rows["Duim omlaag"] == [1, 0, 1]


def test_per_municipality_and_channel(dataset):
    rows = _rows(_collect(dataset), "per_gemeente_kanaal")
    assert rows == [
        # gemeente, kanaal, gesprekken, berichten, zelf %, één keer %, overgedragen, %, niet begrepen,
        # p50, p95, eerste reactie (min), duim omhoog, duim omlaag
        ["Lelystad", "Web (REST)", 1, 3, 100.0, 0.0, 0, 0.0, 1, 500, 590, None, 0, 0],
        ["Lelystad", "WhatsApp", 1, 2, 0.0, 0.0, 1, 100.0, 2, 350, 395, 2009.9, 0, 0],
        ["Terneuzen", "WhatsApp", 5, 8, 80.0, 80.0, 1, 20.0, 0, 200, 440, 20.0, 1, 1],
    ]


def test_per_day_week_and_month(dataset):
    data = _collect(dataset)
    totals = [row for row in _rows(data, "per_dag") if row[1] == "Alle"]
    # day, conversations, messages, in KCC hours, outside, contained, one go, handed over, not understood, up, down
    assert [[r[0]] + r[3:] for r in totals] == [
        ["2026-03-02", 2, 4, 1, 1, 2, 2, 0, 0, 1, 1],
        ["2026-03-03", 1, 3, 1, 0, 1, 0, 0, 1, 0, 0],
        ["2026-03-04", 1, 2, 1, 0, 0, 0, 1, 0, 0, 0],
        ["2026-03-05", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ["2026-03-06", 1, 1, 0, 1, 1, 1, 0, 0, 0, 0],
        ["2026-03-07", 2, 3, 0, 2, 1, 1, 1, 2, 0, 0],  # C5 Sat 23:30 and C6 Sat 00:10
        ["2026-03-08", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ]
    split = [row for row in _rows(data, "per_dag") if row[0] == "2026-03-07" and row[1] != "Alle"]
    assert split == [
        ["2026-03-07", "Lelystad", "WhatsApp", 1, 2, 0, 1, 0, 0, 1, 2, 0, 0],
        ["2026-03-07", "Terneuzen", "WhatsApp", 1, 1, 0, 1, 1, 1, 0, 0, 0, 0],
    ]
    assert _rows(data, "per_week") == [
        ["2026-W10", "Alle", "Alle", 7, 13, 3, 4, 5, 4, 2, 3, 1, 1],
        ["2026-W10", "Lelystad", "Web (REST)", 1, 3, 1, 0, 1, 0, 0, 1, 0, 0],
        ["2026-W10", "Lelystad", "WhatsApp", 1, 2, 0, 1, 0, 0, 1, 2, 0, 0],
        ["2026-W10", "Terneuzen", "WhatsApp", 5, 8, 2, 3, 4, 4, 1, 0, 1, 1],
    ]
    assert _rows(data, "per_maand")[0] == ["2026-03", "Alle", "Alle", 7, 13, 3, 4, 5, 4, 2, 3, 1, 1]


def test_hour_of_day_and_weekday(dataset):
    data = _collect(dataset)
    hours = {row[0][:2]: row[1:] for row in _rows(data, "per_uur")}
    # conversations by first message: 00 (C6 Sat), 08 (C6 Fri), 09 (C3), 10 (C1), 14 (C4), 20 (C2), 23 (C5)
    nonzero = {h: v for h, v in hours.items() if v[0] or v[1]}
    assert nonzero == {
        "00": [1, 1, 0, 1], "08": [1, 1, 0, 1], "09": [1, 3, 1, 0], "10": [1, 2, 0, 1],
        "14": [1, 2, 0, 1], "20": [1, 2, 0, 1], "23": [1, 2, 1, 0],
    }
    weekdays = {row[0]: row[1:3] for row in _rows(data, "per_weekdag")}
    assert weekdays == {"maandag": [2, 4], "dinsdag": [1, 3], "woensdag": [1, 2], "donderdag": [0, 0],
                        "vrijdag": [1, 1], "zaterdag": [2, 3], "zondag": [0, 0]}


def test_inside_and_outside_kcc_hours(dataset):
    rows = _rows(_collect(dataset), "kcc_uren")
    assert rows[:2] == [
        ["Alle", "Binnen KCC-uren", 3, 7, 1, 33.3, 1, 1, 20.0, 60.0],
        ["Alle", "Buiten KCC-uren", 4, 6, 1, 25.0, 1, 1, 2009.9, None],
    ]


def test_topics_questions_and_not_understood(dataset):
    data = _collect(dataset)
    topics = {row[0]: row[1:3] for row in _rows(data, "onderwerpen")}
    assert topics == {
        "Openingstijden": [2, 3], "Niet begrepen": [2, 3], "Paspoort en ID-kaart": [1, 1],
        "Trouwen en partnerschap": [1, 1], "Klacht": [1, 1], "Vervolgantwoord (ja, nee, een waarde)": [1, 1],
        "Begroeting, bedankt, tot ziens": [1, 1], "Feedback (duim omhoog/omlaag)": [1, 1],
    }  # 12 messages: the relayed "hallo?" went to a colleague, not to the bot
    assert _rows(data, "topvragen") == [
        ["wanneer is het gemeentehuis open", "Openingstijden", 2],
        ["ik wil een klacht indienen over mijn buurman, bel me op [telefoon]", "Klacht", 1],
    ]
    assert "2 unieke" in data.tables["topvragen"].note
    assert _rows(data, "niet_begrepen") == []  # three unique, unmasked texts: none shown
    assert data.tables["niet_begrepen"].note.startswith("3 niet begrepen")
    intents = {row[0]: row[2] for row in _rows(data, "intenties")}
    assert intents["nlu_fallback"] == 3 and intents["opening_hours"] == 2 and "greet" not in intents


def test_handoff_reasons_speed_and_feedback(dataset):
    data = _collect(dataset)
    assert _rows(data, "overdracht_redenen") == [
        ["Klacht", 1, 50.0, 14.3, 1, 1, 20.0, 60.0],
        ["Assistent begreep de vraag niet", 1, 50.0, 14.3, 1, 1, 2009.9, None],
    ]
    assert _rows(data, "snelheid") == [
        ["Reactietijd assistent (ms)", "Totaal", 12, 300, 545],
        ["Reactietijd assistent (ms)", "Binnen KCC-uren", 6, 450, 575],   # 200,100,400,500,600,500
        ["Reactietijd assistent (ms)", "Buiten KCC-uren", 6, 275, 375],   # 300,150,300,400,250,150
        ["Eerste reactie medewerker (min)", "Totaal", 2, 1015.0, 1910.4],
        ["Eerste reactie medewerker (min)", "Binnen KCC-uren", 1, 20.0, 20.0],
        ["Eerste reactie medewerker (min)", "Buiten KCC-uren", 1, 2009.9, 2009.9],
        ["Afhandeltijd tot sluiten (min)", "Totaal", 1, 60.0, 60.0],
        ["Afhandeltijd tot sluiten (min)", "Binnen KCC-uren", 1, 60.0, 60.0],
        ["Afhandeltijd tot sluiten (min)", "Buiten KCC-uren", 0, None, None],
    ]
    assert _rows(data, "feedback") == [
        ["Alle", 2, 1, 1, 50.0], ["Lelystad", 0, 0, 0, None], ["Terneuzen", 2, 1, 1, 50.0],
    ]


def test_one_municipality(dataset):
    from report import metrics

    endpoints, tickets_url = dataset
    figures = metrics.key_figures("2026-03-02", "2026-03-08", "Lelystad", endpoints=endpoints, tickets_url=tickets_url)
    assert figures["municipality"] == "lelystad"
    assert (figures["conversations"], figures["messages"], figures["contained"], figures["one_go"]) == (2, 5, 1, 0)
    assert figures["handoff_reasons"] == {"not_understood": 1}
    assert figures["tickets"] == 1 and figures["human_first_reply_median_s"] == 120595.0
    assert figures["bot_latency_ms_p50"] == pytest.approx(400.0, abs=0.06)


def test_empty_period(dataset, tmp_path):
    from report import metrics, render

    endpoints, tickets_url = dataset
    figures = metrics.key_figures("2026-03-10", "2026-03-12", endpoints=endpoints, tickets_url=tickets_url)
    assert figures["conversations"] == 0 and figures["messages"] == 0 and figures["tickets"] == 0
    for key in ("containment_rate", "one_go_rate", "handoff_rate", "bot_latency_ms_p50", "bot_latency_ms_p95",
                "human_first_reply_median_s", "handling_time_median_s", "feedback_positive_rate"):
        assert figures[key] is None, key
    data = _collect(dataset, "2026-03-10", "2026-03-12")
    assert [row[3] for row in data.tables["per_dag"].rows] == [0, 0, 0]
    assert data.tables["topvragen"].rows == [] and data.tables["overdracht_redenen"].rows == []
    path = render.write_report(data, tmp_path / "empty")
    html = path.read_text(encoding="utf-8")
    assert "Geen gegevens in deze periode" in html and html.count("data:image/png;base64,") == len(render.CHARTS)


def test_period_with_only_handoffs(dataset):
    data = _collect(dataset, "2026-03-04", "2026-03-04")  # Wednesday: only C4 (complaint)
    t = data.totals
    assert (t["conversations"], t["messages"], t["handoffs"], t["contained"], t["one_go"]) == (1, 2, 1, 0, 0)
    assert (t["containment_rate"], t["one_go_rate"], t["handoff_rate"]) == (0.0, 0.0, 1.0)
    assert t["handoff_reasons"] == {"complaint": 1}
    assert (t["tickets"], t["human_first_reply_median_s"], t["handling_time_median_s"]) == (1, 1200.0, 3600.0)
    assert t["bot_latency_ms_p50"] == pytest.approx(500.0, abs=0.06) and t["bot_replies_measured"] == 1


def test_tickets_without_tracker_store(tmp_path):
    """Only handoff tickets (the tracker store does not exist yet): ticket figures, no conversations."""
    from report import metrics

    url = f"sqlite:///{tmp_path}/tickets.db"
    write_tickets(url)
    endpoints = {"tracker_store": {"type": "SQL", "dialect": "sqlite", "db": str(tmp_path / "missing.db")}}
    data = metrics.collect(metrics.Period.of(*PERIOD), endpoints=endpoints, tickets_url=url)
    assert not (tmp_path / "missing.db").exists()  # reading never creates a store
    t = data.totals
    assert (t["conversations"], t["tickets"], t["tickets_answered"], t["tickets_closed"]) == (0, 2, 2, 1)
    assert t["human_first_reply_median_s"] == 60897.5 and t["handoff_rate"] is None
    reasons = {row[0]: row[4] for row in data.tables["overdracht_redenen"].rows}
    assert reasons == {"Klacht": 1, "Assistent begreep de vraag niet": 1}
    metrics.dispose_engines()


def test_report_files_contain_no_personal_data(dataset, tmp_path):
    from report import metrics, render

    data = _collect(dataset)
    out = render.write_report(data, tmp_path / "out").parent
    files = sorted(out.iterdir())
    assert {p.name for p in files} >= {"report.html", "kerncijfers.json"} | {f"{n}.csv" for n in data.tables}
    forbidden = ["3161234000", "0612345678", "web-visitor-3", "Anja", "buurman, bel me op 06"]
    for path in files:
        text = path.read_text(encoding="utf-8-sig")
        for value in forbidden:
            assert value not in text, (path.name, value)
    assert "[telefoon]" in (out / "topvragen.csv").read_text(encoding="utf-8-sig")
    with (out / "kerncijfers.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["Kengetal", "Totaal", "Lelystad", "Terneuzen"]
    assert rows[1] == ["Gesprekken", "7", "2", "5"]
    assert json.loads((out / "kerncijfers.json").read_text(encoding="utf-8"))["conversations"] == 7


def test_safe_examples_rule():
    from report.metrics import safe_examples

    shown, hidden = safe_examples(["Wat kost een paspoort?", "wat kost een paspoort", "mijn bsn is 123456782",
                                   "iets unieks", "/feedback_positive", "/feedback_positive"])
    assert shown == [("wat kost een paspoort", 2), ("mijn bsn is [bsn]", 1)]
    assert hidden == 1


def test_endpoints_file_with_environment_variables(tmp_path, monkeypatch):
    from report import metrics

    path = tmp_path / "endpoints.yml"
    path.write_text("# Every ${VAR} must be set (a comment: not substituted)\n"
                    "action_endpoint:\n  url: ${REPORT_UNSET_ACTION_URL}\n"  # other sections are not needed
                    "tracker_store:\n  type: SQL\n  dialect: postgresql\n  url: ${DB_HOST}\n  port: ${DB_PORT}\n"
                    "  db: ${DB_NAME}\n  username: ${DB_USER}\n  password: ${DB_PASSWORD}\n", encoding="utf-8")
    monkeypatch.delenv("REPORT_UNSET_ACTION_URL", raising=False)
    monkeypatch.setenv("DB_PORT", "5432")
    monkeypatch.setenv("DB_HOST", "db.example:6543")
    monkeypatch.setenv("DB_NAME", "rasa")
    monkeypatch.setenv("DB_USER", "rasa")
    monkeypatch.setenv("DB_PASSWORD", "geheim")
    url = metrics.tracker_store_url(path)
    assert (url.drivername, url.host, url.port, url.database, url.username, url.password) == (
        "postgresql", "db.example", 6543, "rasa", "rasa", "geheim")
    monkeypatch.delenv("DB_PASSWORD")
    with pytest.raises(ValueError, match="DB_PASSWORD"):
        metrics.tracker_store_url(path)
    default = metrics.tracker_store_url(Path(__file__).resolve().parent.parent / "endpoints.yml")
    assert (default.drivername, default.database) == ("sqlite", "var/tracker.db")
    with pytest.raises(ValueError, match="SQL tracker store"):
        metrics.tracker_store_url({"tracker_store": {"type": "redis"}})


def test_periods_are_local_days():
    from report.metrics import Period

    week = Period.of("2026-03-02", "2026-03-08")
    assert (week.end - week.start).total_seconds() == 7 * 86400
    assert week.label() == "2 maart 2026 t/m 8 maart 2026"
    spring = Period.of("2026-03-29", "2026-03-29")
    assert spring.end_ts - spring.start_ts == 23 * 3600
    autumn = Period.of("2026-10-25", "2026-10-25")
    assert autumn.end_ts - autumn.start_ts == 25 * 3600
    import datetime as dt

    instants = Period.of(dt.datetime(2026, 3, 2, 8, 0), dt.datetime(2026, 3, 2, 17, 0))
    assert instants.end_ts - instants.start_ts == 9 * 3600
    with pytest.raises(ValueError):
        Period.of("2026-03-08", "2026-03-02")


def test_percentile_interpolates_between_ranks():
    from report.metrics import percentile

    assert percentile([], 50) is None
    assert percentile([7], 95) == 7
    assert percentile([100, 200, 300, 400], 50) == 250
    assert percentile([1200, 120595], 95) == pytest.approx(114625.25)


def test_command_line_writes_report(dataset, tmp_path, capsys):
    from report.__main__ import main

    endpoints, tickets_url = dataset
    endpoints_file = tmp_path / "endpoints.yml"
    endpoints_file.write_text(f"tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: {endpoints['tracker_store']['db']}\n",
                              encoding="utf-8")
    out = tmp_path / "reports" / "maart"
    code = main(["--from", "2026-03-02", "--to", "2026-03-08", "--endpoints", str(endpoints_file),
                 "--tickets-url", tickets_url, "--out", str(out)])
    assert code == 0
    assert "7 gesprekken, 13 berichten" in capsys.readouterr().out
    assert (out / "report.html").exists() and (out / "per_dag.csv").exists()
    with pytest.raises(SystemExit):
        main(["--from", "2026-03-08", "--to", "2026-03-02", "--endpoints", str(endpoints_file)])
