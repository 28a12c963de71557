"""WhatsApp messages and estimated cost in the report (issue 15), on the hand-computed
conversations of tests/test_report_dataset.py plus outbox rows of the WhatsApp channel
(written with the channel's own table in the same database as the tickets).

WhatsApp conversations in the period: c1, c2, c4, c5 and c6 (two days) = 6.
Sent in the period: c1 2 (service, billable), c2 2 (service billable, utility billable),
c4 1 (utility billable), c5 2 (service not billable, one without pricing yet) = 7.
Not counted: a failed row, and a row before the period (x1).
"""
from __future__ import annotations

import csv
import json

import pytest

from tests.test_report_dataset import PERIOD, dataset, ts  # noqa: F401

ROWS = [
    # (recipient, local time, status, category, billable)
    ("31612340001", "2026-03-02 10:00:02", "sent", "service", True),
    ("31612340001", "2026-03-02 10:00:31", "sent", "service", True),
    ("31612340002", "2026-03-02 20:00:01", "sent", "service", True),
    ("31612340002", "2026-03-02 20:01:01", "sent", "utility", True),
    ("31612340004", "2026-03-05 09:00:00", "sent", "utility", True),
    ("31612340005", "2026-03-07 23:30:01", "sent", "service", False),
    ("31612340005", "2026-03-07 23:30:05", "sent", None, None),
    ("31612340005", "2026-03-07 23:30:06", "failed", "service", True),
    ("31612340007", "2026-03-01 23:59:01", "sent", "service", True),
]


def write_outbox(url: str) -> None:
    from appcare.db import from_epoch
    from appcare.pii import conversation_hash
    from channels.inbox import InboxStore, outbox

    store = InboxStore(url)
    with store.engine.begin() as conn:
        for i, (recipient, when, status, category, billable) in enumerate(ROWS):
            conn.execute(outbox.insert().values(
                inbound_wamid=f"wamid.in{i}", seq=0, phone_number_id="123", recipient=recipient,
                recipient_hash=conversation_hash(recipient), kind="text", status=status, wamid=f"wamid.out{i}",
                pricing_category=category, billable=billable, created_at=from_epoch(ts(when)),
                updated_at=from_epoch(ts(when)),
            ))


@pytest.fixture
def priced(dataset, monkeypatch):  # noqa: F811
    for name in ("SERVICE", "UTILITY", "MARKETING", "AUTHENTICATION"):
        monkeypatch.delenv(f"APPCARE_WHATSAPP_RATE_{name}", raising=False)
    write_outbox(dataset[1])
    return dataset


def _figures(dataset, municipality=None):
    from report import metrics

    endpoints, tickets_url = dataset
    return metrics.key_figures(*PERIOD, municipality, endpoints=endpoints, tickets_url=tickets_url)


def test_messages_per_conversation_and_billable_per_category(priced):
    figures = _figures(priced)
    assert figures["whatsapp_outbox_read"] is True
    assert figures["whatsapp_conversations"] == 6
    assert figures["whatsapp_messages_sent"] == 7
    assert figures["whatsapp_messages_per_conversation"] == pytest.approx(1.17)
    assert figures["whatsapp_messages_priced"] == 6
    assert figures["whatsapp_billable"] == 5
    assert figures["whatsapp_billable_by_category"] == {"service": 3, "utility": 2}
    json.dumps(figures)


def test_cost_is_not_shown_without_rates(priced):
    from report import metrics

    figures = _figures(priced)
    assert figures["whatsapp_cost_eur"] is None
    assert figures["whatsapp_rates_configured"] is False
    assert figures["whatsapp_cost_by_category_eur"] == {"service": None, "utility": None}
    data = metrics.collect(metrics.Period.of(*PERIOD), endpoints=priced[0], tickets_url=priced[1])
    rows = {row[0]: row[1:] for row in data.tables["kerncijfers"].rows}
    assert rows["Geschatte kosten WhatsApp (EUR)"][0] == "tarief niet ingesteld"
    table = {row[0]: row[1:] for row in data.tables["whatsapp_kosten"].rows}
    assert table["Service (antwoord binnen 24 uur)"] == [4, 3, 1, "tarief niet ingesteld", "tarief niet ingesteld"]
    assert table["Totaal"][-1] == "tarief niet ingesteld"


def test_cost_only_when_every_needed_rate_is_configured(priced, monkeypatch):
    monkeypatch.setenv("APPCARE_WHATSAPP_RATE_SERVICE", "0.01")
    figures = _figures(priced)
    assert figures["whatsapp_cost_eur"] is None  # utility has no rate: no partial total
    assert figures["whatsapp_cost_by_category_eur"] == {"service": 0.03, "utility": None}

    monkeypatch.setenv("APPCARE_WHATSAPP_RATE_UTILITY", "0,02")  # a decimal comma is accepted
    figures = _figures(priced)
    assert figures["whatsapp_cost_eur"] == pytest.approx(0.07)
    assert figures["whatsapp_rates_configured"] is True
    # Lelystad (c5): two messages sent, none billable -> cost 0.
    lelystad = _figures(priced, "lelystad")
    assert (lelystad["whatsapp_messages_sent"], lelystad["whatsapp_billable"]) == (2, 0)
    assert lelystad["whatsapp_cost_eur"] == 0.0


def test_html_and_csv_show_the_cost_table(priced, monkeypatch, tmp_path):
    from report import metrics, render

    monkeypatch.setenv("APPCARE_WHATSAPP_RATE_SERVICE", "0.0084")
    monkeypatch.setenv("APPCARE_WHATSAPP_RATE_UTILITY", "0.02")
    data = metrics.collect(metrics.Period.of(*PERIOD), endpoints=priced[0], tickets_url=priced[1])
    render.write_report(data, tmp_path)
    with (tmp_path / "whatsapp_kosten.csv").open(encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["Categorie", "Verstuurd", "Gefactureerd", "Niet gefactureerd", "Tarief (EUR per bericht)",
                       "Geschatte kosten (EUR)"]
    by_label = {row[0]: row[1:] for row in rows[1:]}
    assert by_label["Service (antwoord binnen 24 uur)"] == ["4", "3", "1", "0.0084", "0.0252"]
    assert by_label["Utility (template)"] == ["2", "2", "0", "0.02", "0.04"]
    assert by_label["Onbekend (nog geen prijsinformatie van Meta)"][:3] == ["1", "0", "0"]
    assert by_label["Totaal"][-1] == "0.07"
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "WhatsApp-berichten en geschatte kosten" in html and "0,0084" in html
    assert json.loads((tmp_path / "kerncijfers.json").read_text(encoding="utf-8"))["whatsapp_cost_eur"] == 0.07


def test_without_whatsapp_messages_the_report_has_no_whatsapp_figures(dataset, tmp_path):  # noqa: F811
    """A REST-only installation: its outbox table (every installation has one since
    migrations) never held a message; an older one has no table at all."""
    from appcare import db
    from report import metrics, render

    data = metrics.collect(metrics.Period.of(*PERIOD), endpoints=dataset[0], tickets_url=dataset[1])
    assert data.totals["whatsapp_outbox_read"] is False
    with db.get_engine(dataset[1]).begin() as connection:
        connection.exec_driver_sql("DROP TABLE whatsapp_outbox")
    assert metrics.collect(metrics.Period.of(*PERIOD), endpoints=dataset[0],
                           tickets_url=dataset[1]).totals["whatsapp_outbox_read"] is False
    assert data.totals["whatsapp_cost_eur"] is None
    assert not any(row[0].startswith("WhatsApp") for row in data.tables["kerncijfers"].rows)
    render.write_report(data, tmp_path)
    assert "WhatsApp-berichten en geschatte kosten" not in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_rates_are_read_from_the_environment_only():
    from report.metrics import whatsapp_rates

    env = {"APPCARE_WHATSAPP_RATE_SERVICE": "0,01", "APPCARE_WHATSAPP_RATE_UTILITY": "",
           "APPCARE_WHATSAPP_RATE_MARKETING": "abc", "APPCARE_WHATSAPP_RATE_AUTHENTICATION": "-1", "OTHER": "1"}
    assert whatsapp_rates(env) == {"service": 0.01}
    assert whatsapp_rates({}) == {}
