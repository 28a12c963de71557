"""The same hand-computed figures from a PostgreSQL tracker store (127.0.0.1:5432, user
postgres, database test, trust auth). Rasa's SQLTrackerStore writes the events into a
schema of its own (``POSTGRESQL_SCHEMA``, which Rasa and the report both honour);
the schema is dropped afterwards. Skipped only when PostgreSQL is unreachable."""
from __future__ import annotations

import pytest

from tests.support.postgres import PG, connect, fresh_schema
from tests.test_report_dataset import EXPECTED, PERIOD, save_scripts, scripts, write_tickets



@pytest.fixture
def pg_schema(monkeypatch):
    with fresh_schema("report_test") as schema:
        monkeypatch.setenv("POSTGRESQL_SCHEMA", schema)
        yield schema


def test_same_figures_from_postgresql(pg_schema, tmp_path, monkeypatch):
    from rasa.core.tracker_store import SQLTrackerStore

    from report import metrics
    from tests.test_report_dataset import _domain

    monkeypatch.delenv("APPCARE_MUNICIPALITY", raising=False)
    store = SQLTrackerStore(domain=_domain(), dialect="postgresql", host=PG["host"], port=PG["port"],
                            username=PG["user"], db=PG["dbname"])
    try:
        save_scripts(store, scripts())
    finally:
        store.engine.dispose()
    with connect() as connection, connection.cursor() as cursor:
        cursor.execute(f'SELECT count(*), count(DISTINCT sender_id) FROM "{pg_schema}".events')
        events, senders = cursor.fetchone()
    assert senders == 8 and events == 100  # as in the SQLite store

    tickets_url = f"sqlite:///{tmp_path}/tickets.db"
    write_tickets(tickets_url)
    # Production style: the settings come from the environment through ${VAR}.
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text("tracker_store:\n  type: SQL\n  dialect: postgresql\n  url: ${REPORT_PG_HOST}\n"
                         "  port: 5432\n  db: ${REPORT_PG_DB}\n  username: ${REPORT_PG_USER}\n", encoding="utf-8")
    monkeypatch.setenv("REPORT_PG_HOST", PG["host"])
    monkeypatch.setenv("REPORT_PG_DB", PG["dbname"])
    monkeypatch.setenv("REPORT_PG_USER", PG["user"])
    figures = metrics.key_figures(*PERIOD, endpoints=str(endpoints), tickets_url=tickets_url)
    for key, expected in EXPECTED.items():
        if isinstance(expected, float):
            assert figures[key] == pytest.approx(expected, abs=0.06), key
        else:
            assert figures[key] == expected, key

    data = metrics.collect(metrics.Period.of(*PERIOD), endpoints=str(endpoints), tickets_url=tickets_url)
    totals = [row[3] for row in data.tables["per_dag"].rows if row[1] == "Alle"]
    assert totals == [2, 1, 1, 0, 1, 2, 0]
    assert data.tables["topvragen"].rows[0] == ["wanneer is het gemeentehuis open", "Openingstijden", 2]
