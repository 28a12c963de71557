"""The PostgreSQL of this machine (127.0.0.1:5432, user postgres, trust auth) for
tests of the production set-up without a Rasa model: ``needs_pg`` skips a test when
PostgreSQL is absent, the fixture ``pg_url`` gives a fresh database per test, and
``save_trackers``/``conversation``/``write_endpoints`` put Rasa conversations in its
tracker store for the retention and subject-access tests.

Import the fixture into a test module: ``from tests.support.postgres import needs_pg,
pg_url  # noqa: F401``."""
from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest


def port_open(port: int) -> bool:
    """True when something listens on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


PG_UP = port_open(5432)
needs_pg = pytest.mark.skipif(not PG_UP, reason="PostgreSQL is not running on 127.0.0.1:5432")


@pytest.fixture
def pg_url() -> Any:
    """A fresh PostgreSQL database for one test (tables dropped first)."""
    if not PG_UP:
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    from appcare import db
    from tests.support.cluster import ensure_database

    name = "appcare_ptest_units"
    db.dispose_all()
    ensure_database(name)
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    db.dispose_all()


PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}


def connect() -> Any:
    """A psycopg2 connection to the database ``test`` (autocommit off)."""
    import psycopg2

    return psycopg2.connect(connect_timeout=3, **PG)


@contextlib.contextmanager
def fresh_schema(prefix: str) -> Iterator[str]:
    """A PostgreSQL schema of its own in database ``test`` for one test (skipped when
    PostgreSQL is not reachable), dropped afterwards with everything in it; engines of
    appcare, its tracker-store readers and the report are disposed first."""
    try:
        connection = connect()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432 (user postgres, db test): {exc}")
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        from appcare import db, tracker_store

        db.dispose_all()
        tracker_store.dispose_engines()
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        connection.close()


def schema_url(schema: str) -> str:
    """appcare's database URL with ``schema`` as its search_path."""
    return f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"


def write_endpoints(tmp_path: Path, db_name: str) -> Path:
    path = tmp_path / "endpoints.yml"
    path.write_text(
        "tracker_store:\n  type: SQL\n  dialect: postgresql\n  url: ${T_DB_HOST}\n  port: 5432\n"
        f"  db: {db_name}\n  username: postgres\n  password: ''\n", encoding="utf-8")
    return path


def save_trackers(db_name: str, trackers: Dict[str, List[Any]]) -> None:
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.trackers import DialogueStateTracker

    store = SQLTrackerStore(Domain.empty(), dialect="postgresql", host="127.0.0.1", port=5432, db=db_name,
                            username="postgres", password="")
    for sender, events in trackers.items():
        asyncio.run(store.save(DialogueStateTracker.from_events(sender, events)))
    store.engine.dispose()


def conversation(sender: str, start: float, municipality: str, handoff: bool = False) -> List[Any]:
    from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, SlotSet, UserUttered

    metadata = {"channel": "whatsapp", "municipality": municipality, "phone_number_id": "1000000001",
                "wamid": "wamid.HBgLMzE2MTIzNDU2NzgV", "profile_name": "Jan de Vries", "sent_at": "x", "received_at": "y"}
    text = "Mijn BSN is 111222333 en ik woon op Dorpsstraat 12, mail jan@example.nl"
    events = [
        ActionExecuted("action_session_start", timestamp=start),
        SessionStarted(timestamp=start),
        ActionExecuted("action_listen", timestamp=start),
        UserUttered(text, intent={"name": "personal_case" if handoff else "roadworks_status", "confidence": 0.9},
                    entities=[{"entity": "street", "value": "Dorpsstraat", "start": 30, "end": 41}],
                    timestamp=start + 1, input_channel="whatsapp", message_id="wamid.HBgLMzE2MTIzNDU2NzgV",
                    metadata=metadata),
        SlotSet("street", "Dorpsstraat", timestamp=start + 1.5),
        SlotSet("municipality", municipality, timestamp=start + 1.6),
        ActionExecuted("action_handoff_to_kcc" if handoff else "action_roadworks", timestamp=start + 2),
        BotUttered("Hallo Jan, je BSN 111222333 is ontvangen", metadata={"utter_action": "utter_handoff_in_hours"},
                   timestamp=start + 2.5),
    ]
    if handoff:
        events.append(SlotSet("handoff_active", True, timestamp=start + 2.6))
    events.append(ActionExecuted("action_listen", timestamp=start + 3))
    return events
