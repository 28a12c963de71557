"""Schema migrations (issue 20): Alembic revisions in appcare/migrations, run by every
store at start-up under the schema lock.

On an empty SQLite file and an empty PostgreSQL database: the newest revision is the
models' schema (Alembic's own comparison finds nothing), the first revision is exactly
what ``create_all`` made before, an installation made by ``create_all`` (today's or an
older release's) is stamped and keeps its rows, a second upgrade does nothing, and
processes starting together on an empty database do not collide.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from appcare import db, migrations
from appcare.migrations import locks, runner
from appcare.migrations.__main__ import main as migrations_cli
from appcare.migrations.models import include_object, target_metadata
from tests.support.legacy_schema import old_tickets_table

ROOT = Path(__file__).resolve().parent.parent
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
pytestmark = pytest.mark.timeout(180)


# ---------------------------------------------------------------------- fixtures
def _admin_connection() -> Any:
    import psycopg2

    try:
        connection = psycopg2.connect(dbname="test", connect_timeout=3, **PG)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432 (user postgres, db test): {exc}")
    connection.autocommit = True
    return connection


class Databases:
    """Engines of one test, disposed at its end (so the database can be dropped)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engines: List[sa.engine.Engine] = []

    def engine(self, url: Optional[str] = None) -> sa.engine.Engine:
        """A new engine (another process, as far as the upgrade's once-per-engine is concerned)."""
        engine = sa.create_engine(url or self.url, future=True)
        self.engines.append(engine)
        return engine

    def close(self) -> None:
        for engine in self.engines:
            engine.dispose()
        db.dispose_all()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Databases]:
    databases = Databases(f"sqlite:///{tmp_path}/appcare.db")
    yield databases
    databases.close()


@pytest.fixture
def pg_db() -> Iterator[Databases]:
    """An empty PostgreSQL database of its own, dropped afterwards."""
    admin = _admin_connection()
    name = f"appcare_ptest_migrations_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    databases = Databases(f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        yield databases
    finally:
        databases.close()
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest) -> Databases:
    return request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db")


# ---------------------------------------------------------------------- helpers
def schema_diffs(engine: sa.engine.Engine) -> List[Any]:
    """What Alembic's autogenerate would change to make the database the models."""
    target = target_metadata()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "compare_type": True, "compare_server_default": True, "include_object": include_object(target)})
        return compare_metadata(context, target)


def revisions(engine: sa.engine.Engine) -> set:
    with engine.connect() as connection:
        return runner.current_revisions(connection)


def appcare_tables(engine: sa.engine.Engine) -> set:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def make_with_create_all(engine: sa.engine.Engine) -> None:
    """The tables as start-up made them before migrations: ``create_all`` of the
    models as they were then (revision 0001's frozen copy; later revisions changed them)."""
    with engine.begin() as connection:
        runner.baseline_schema().create_all(connection)


def ddl_snapshot(engine: sa.engine.Engine, schema: Optional[str] = None) -> Dict[str, Any]:
    """Every table's DDL (SQLite) or columns, indexes and constraints (PostgreSQL)."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(
                "SELECT type, name, sql FROM sqlite_master WHERE tbl_name != 'alembic_version' ORDER BY name")
            return {"sqlite_master": [tuple(r) for r in rows]}
        prefix = f"{schema}."
        query = {
            "columns": "SELECT table_name, column_name, data_type, character_maximum_length, is_nullable, "
                       "column_default FROM information_schema.columns WHERE table_schema = :s",
            "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = :s",
            "constraints": "SELECT cl.relname, con.conname, con.contype, pg_get_constraintdef(con.oid) "
                           "FROM pg_constraint con JOIN pg_class cl ON cl.oid = con.conrelid "
                           "JOIN pg_namespace n ON n.oid = con.connamespace WHERE n.nspname = :s",
        }
        snapshot = {}
        for key, sql in query.items():
            rows = connection.execute(sa.text(sql), {"s": schema})
            snapshot[key] = sorted(
                tuple(str(v).replace(prefix, "") if isinstance(v, str) else v for v in row)
                for row in rows if row[0] != "alembic_version"
            )
        return snapshot


def start_stores(url: str) -> None:
    """What the bot, the channel and the desk do when they start."""
    from appcare.handoff_store import HandoffStore
    from channels.inbox import InboxStore
    from desk.editor.store import EditorStore
    from desk.store import DeskStore

    for kind in (HandoffStore, InboxStore, DeskStore, EditorStore):
        kind(url)


# ---------------------------------------------------------------------- empty databases
def test_an_empty_database_is_migrated_to_the_models(any_db: Databases) -> None:
    engine = any_db.engine()
    migrations.upgrade(engine)
    assert revisions(engine) == {migrations.head()}
    assert appcare_tables(engine) == set(target_metadata().tables)
    assert schema_diffs(engine) == []


def test_the_first_revision_makes_what_create_all_made(any_db: Databases, tmp_path: Path) -> None:
    """Revision 0001 is today's create_all, to the DDL: an installation stamped at it
    has exactly the tables a new one gets."""
    if any_db.url.startswith("sqlite"):
        made, migrated = any_db.engine(f"sqlite:///{tmp_path}/made.db"), any_db.engine()
        schemas = (None, None)
    else:
        with any_db.engine().begin() as connection:
            connection.exec_driver_sql("CREATE SCHEMA made; CREATE SCHEMA migrated")
        made = any_db.engine(f"{any_db.url}?options=-csearch_path%3Dmade")
        migrated = any_db.engine(f"{any_db.url}?options=-csearch_path%3Dmigrated")
        schemas = ("made", "migrated")
    make_with_create_all(made)
    with locks.schema_lock(migrated) as connection:
        command.upgrade(runner.alembic_config(connection), migrations.BASELINE)
    assert ddl_snapshot(migrated, schemas[1]) == ddl_snapshot(made, schemas[0])


def test_the_upgrade_leaves_rasas_events_table_alone(any_db: Databases) -> None:
    engine = any_db.engine()
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE events (id INTEGER PRIMARY KEY, sender_id VARCHAR(255) NOT NULL)")
        connection.exec_driver_sql("INSERT INTO events (id, sender_id) VALUES (1, 'rasa')")
    migrations.upgrade(engine)
    assert schema_diffs(engine) == []  # autogenerate would not drop it either
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT sender_id FROM events").scalar_one() == "rasa"


# ---------------------------------------------------------------------- existing installations
def test_a_database_made_by_create_all_is_stamped_and_keeps_its_rows(any_db: Databases, caplog) -> None:
    from appcare.handoff_store import TicketRow
    from desk.store import UserRow

    engine = any_db.engine()
    make_with_create_all(engine)
    inbox = runner.baseline_schema().tables["whatsapp_inbox"]  # as create_all made it then (epoch seconds)
    now = db.utcnow()
    with engine.begin() as connection:
        ticket_id = connection.execute(TicketRow.__table__.insert().values(
            conversation_id="31600000031", channel="whatsapp", municipality="terneuzen", reason="complaint",
            summary="s", transcript="[]", status="open", created_at=now, in_kcc_hours=True, flagged=False,
            version=0)).inserted_primary_key[0]
        connection.execute(UserRow.__table__.insert().values(
            username="anna", password_hash="x", role="staff", active=True, created_at=now))
        connection.execute(inbox.insert().values(
            wamid="wamid.old", phone_number_id="1", wa_id="31600000031", sender_hash="h", message_type="text",
            text="hallo", sort_ts=1.0, received_ts=1.0, position=0, status="done", attempts=1, updated_ts=1.0))

    with caplog.at_level(logging.INFO, logger="appcare.migrations"):
        start_stores(any_db.url)
    assert "stamped at revision 0001" in caplog.text
    assert revisions(engine) == {migrations.head()}
    assert schema_diffs(engine) == []

    from appcare.handoff_store import HandoffStore
    from channels.inbox import InboxStore
    from desk.store import DeskStore

    assert HandoffStore(any_db.url).get(ticket_id).conversation_id == "31600000031"
    assert [u["username"] for u in DeskStore(any_db.url).list_users()] == ["anna"]
    assert InboxStore(any_db.url).inbound_status("wamid.old") == "done"


def test_an_older_installation_gets_the_first_revision_before_it_is_stamped(any_db: Databases) -> None:
    """An installation of an older release: only some tables (the desk never ran), a
    ticket table without the later columns, a VARCHAR(64) citizen id, an index missing."""
    engine = any_db.engine()
    # PostgreSQL enforces VARCHAR lengths and gets the column widened; SQLite ignores
    # them (a VARCHAR(64) there holds a BSUID all the same and is left as declared).
    old_key_length = 64 if engine.dialect.name == "postgresql" else 191
    metadata = sa.MetaData()
    tickets = old_tickets_table(metadata)
    sa.Table(
        "whatsapp_contacts", metadata,
        sa.Column("phone_number_id", sa.String(64), primary_key=True),
        sa.Column("wa_id", sa.String(old_key_length), primary_key=True),
        sa.Column("last_inbound_ts", sa.Float),
        sa.Column("template_sent_ts", sa.Float),
        sa.Column("updated_ts", sa.Float, nullable=False),
    )
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(tickets.insert().values(
            id=7, conversation_id="31600000032", channel="whatsapp", municipality="lelystad", reason="complaint",
            summary="s", transcript="[]", status="open", created_at=db.utcnow(), in_kcc_hours=True, flagged=False,
            version=0))

    migrations.upgrade(engine)
    assert revisions(engine) == {migrations.head()}
    assert schema_diffs(engine) == []
    lengths = {c["name"]: getattr(c["type"], "length", None) for c in sa.inspect(engine).get_columns("whatsapp_contacts")}
    assert lengths["wa_id"] == 191
    from appcare.handoff_store import HandoffStore

    old = HandoffStore(any_db.url).get(7)
    assert (old.conversation_id, old.urgent, old.callback_requested, old.language) == ("31600000032", False, False, None)


# ---------------------------------------------------------------------- repeated and concurrent upgrades
def test_a_second_upgrade_does_nothing(any_db: Databases) -> None:
    engine = any_db.engine()
    migrations.upgrade(engine)
    before = ddl_snapshot(engine, "public")

    statements: List[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    migrations.upgrade(engine)  # the same process again: not even a query
    start_stores(any_db.url)  # the stores' own engine: looks once, finds head
    assert statements == []

    again = any_db.engine()  # another process
    with locks.schema_lock(again) as connection:
        assert runner.upgrade_connection(connection) == "current"
    assert ddl_snapshot(again, "public") == before
    with again.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar_one() == 1


def test_stores_starting_together_on_an_empty_database_do_not_collide(any_db: Databases) -> None:
    """Like processes starting at once: each with its own engine (own connections, own
    once-per-engine state), so only the schema lock keeps them apart."""
    barrier = threading.Barrier(4)
    errors: List[BaseException] = []
    engines = [any_db.engine() for _ in range(4)]

    def start(engine: sa.engine.Engine) -> None:
        try:
            barrier.wait(10)
            migrations.upgrade(engine)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert revisions(engines[0]) == {migrations.head()}
    assert schema_diffs(engines[0]) == []


def test_processes_starting_together_on_an_empty_postgresql_do_not_collide(pg_db: Databases) -> None:
    start_at = time.time() + 4  # every process imports first, then all upgrade at this moment
    code = (
        "import time, sqlalchemy as sa\n"
        "from appcare import migrations\n"
        f"engine = sa.create_engine({pg_db.url!r}, future=True)\n"
        f"time.sleep(max(0.0, {start_at!r} - time.time()))\n"
        "migrations.upgrade(engine)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    processes = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=120) for p in processes]
    for process, (out, err) in zip(processes, results):
        assert process.returncode == 0 and out.strip() == "ok", err[-2000:]
    engine = pg_db.engine()
    assert revisions(engine) == {migrations.head()}
    assert schema_diffs(engine) == []


def test_a_database_of_a_newer_version_is_left_alone(any_db: Databases, caplog) -> None:
    """The old instance of a rolling restart starts after the new one migrated."""
    engine = any_db.engine()
    migrations.upgrade(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with caplog.at_level(logging.WARNING, logger="appcare.migrations"):
        migrations.upgrade(any_db.engine())
    assert "at revision 9999, which this version does not know" in caplog.text
    assert revisions(engine) == {"9999"}


def test_downgrade_to_nothing_and_up_again(any_db: Databases) -> None:
    engine = any_db.engine()
    migrations.upgrade(engine)
    with locks.schema_lock(engine) as connection:
        command.downgrade(runner.alembic_config(connection), "base")
    assert appcare_tables(engine) == set() and revisions(engine) == set()
    migrations.upgrade(any_db.engine())
    assert schema_diffs(engine) == []


def test_an_installation_at_the_first_revision_gets_received_by_and_keeps_its_messages(any_db: Databases) -> None:
    """Revision 0002 (the first column change): an installation at 0001 with open
    messages gets ``whatsapp_inbox.received_by``; the messages are still there,
    without a receiver (answered as before), and new ones store theirs."""
    from channels.inbox import InboxStore, NewInbound

    engine = any_db.engine()
    with locks.schema_lock(engine) as connection:
        command.upgrade(runner.alembic_config(connection), "0001")
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO whatsapp_inbox (wamid, phone_number_id, wa_id, sender_hash, message_type, text, "
            "metadata_json, sort_ts, received_ts, position, status, attempts, updated_ts) VALUES "
            "('wamid.OLD', '1000000001', '31600000001', 'abc', 'text', 'hoi', '{}', 1, 1, 0, 'pending', 0, 1)"))
    migrations.upgrade(any_db.engine())
    assert revisions(engine) == {migrations.head()} and schema_diffs(engine) == []
    store = InboxStore(any_db.url)
    store.record_inbound([NewInbound("wamid.NEW", "1000000001", "31600000001", "text", "nog een vraag", {}, 2.0,
                                     True, True)], 2.0, received_by="rasa-2")
    with engine.connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT wamid, text, received_by FROM whatsapp_inbox ORDER BY wamid")).all()
    assert [tuple(r) for r in rows] == [("wamid.NEW", "nog een vraag", "rasa-2"), ("wamid.OLD", "hoi", None)]
    assert store.claim_next("31600000001", "rasa-1", 30.0).item.wamid == "wamid.OLD"


SENT = 1796650000.123456  # WhatsApp's timestamp of the first open message (epoch seconds)
PNID, CITIZEN = "1000000001", "31600000001"


def _at_0002_with_float_times(databases: Databases, lease_expires: float) -> sa.engine.Engine:
    """A database at revision 0002 (times in epoch seconds) with two open messages of
    one citizen a microsecond apart (the later one stored first), a live lease on that
    citizen, the 24-hour window's contact row and an outbox row."""
    from appcare.pii import conversation_hash

    engine = databases.engine()
    with locks.schema_lock(engine) as connection:
        command.upgrade(runner.alembic_config(connection), "0002")
    message = ("INSERT INTO whatsapp_inbox (wamid, phone_number_id, wa_id, sender_hash, message_type, text, "
               "metadata_json, sort_ts, received_ts, position, status, attempts, updated_ts) VALUES "
               "(:wamid, :pnid, :wa_id, :hash, 'text', 'hoi', '{}', :sort, :received, 0, 'pending', 0, :received)")
    with engine.begin() as connection:
        hashed = conversation_hash(CITIZEN)
        for wamid, sort in (("wamid.SECOND", SENT + 0.000001), ("wamid.FIRST", SENT)):
            connection.execute(sa.text(message), dict(wamid=wamid, pnid=PNID, wa_id=CITIZEN, hash=hashed, sort=sort,
                                                      received=SENT + 1.5))
        connection.execute(sa.text(
            "INSERT INTO whatsapp_sender_leases (sender_hash, owner, expires_ts, acquired_ts) "
            "VALUES (:hash, 'rasa-1', :expires, :acquired)"), dict(hash=hashed, expires=lease_expires, acquired=SENT))
        connection.execute(sa.text(
            "INSERT INTO whatsapp_contacts (phone_number_id, wa_id, last_inbound_ts, template_sent_ts, updated_ts) "
            "VALUES (:pnid, :wa_id, :sent, NULL, :sent)"), dict(pnid=PNID, wa_id=CITIZEN, sent=SENT))
        connection.execute(sa.text(
            "INSERT INTO whatsapp_outbox (inbound_wamid, seq, phone_number_id, recipient, recipient_hash, kind, "
            "status, attempts, created_ts, updated_ts) VALUES "
            "('wamid.EARLIER', 0, :pnid, :wa_id, :hash, 'text', 'sent', 1, :sent, :sent)"),
            dict(pnid=PNID, wa_id=CITIZEN, hash=hashed, sent=SENT))
    return engine


def _utc(ts: float) -> "dt.datetime":
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).replace(tzinfo=None)


def test_an_installation_at_0002_gets_datetimes_and_its_open_messages_are_answered(any_db: Databases) -> None:
    """Revision 0003: epoch seconds become naive UTC datetimes to the microsecond, rows
    included; the open messages keep their order, the live lease and the 24-hour window
    their meaning, and the messages are claimed and answered after the upgrade."""
    import datetime as dt

    from channels.inbox import InboxStore, contacts, inbox, leases, outbox

    expires = time.time() + 600
    engine = _at_0002_with_float_times(any_db, expires)
    migrations.upgrade(any_db.engine())
    assert revisions(engine) == {migrations.head()} and schema_diffs(engine) == []
    with engine.connect() as connection:
        sorts = dict(connection.execute(sa.select(inbox.c.wamid, inbox.c.sort_at)).all())
        received = connection.execute(sa.select(inbox.c.received_at, inbox.c.updated_at)).all()
        lease = connection.execute(sa.select(leases.c.owner, leases.c.expires_at, leases.c.acquired_at)).one()
        contact = connection.execute(sa.select(contacts.c.last_inbound_at, contacts.c.template_sent_at)).one()
        created = connection.execute(sa.select(outbox.c.created_at)).scalar_one()
    assert sorts == {"wamid.FIRST": dt.datetime(2026, 12, 7, 13, 26, 40, 123456),
                     "wamid.SECOND": dt.datetime(2026, 12, 7, 13, 26, 40, 123457)}
    assert sorts["wamid.FIRST"] == _utc(SENT)
    assert set(received) == {(_utc(SENT + 1.5), _utc(SENT + 1.5))}
    assert lease.owner == "rasa-1" and abs(lease.expires_at - _utc(expires)) <= dt.timedelta(microseconds=1)
    assert lease.acquired_at == _utc(SENT)
    assert tuple(contact) == (_utc(SENT), None) and created == _utc(SENT)

    store = InboxStore(any_db.url)
    assert store.in_window(PNID, CITIZEN, now=SENT + 3600) and not store.in_window(PNID, CITIZEN, now=SENT + 86400)
    assert [r.created_ts for r in store.outgoing_for_recipient(CITIZEN)] == [pytest.approx(SENT, abs=1e-6)]
    assert store.claim_next(CITIZEN, "rasa-2", 30.0).reason == "leased"  # the lease still holds
    first = store.claim_next(CITIZEN, "rasa-1", 30.0)
    assert (first.reason, first.item.wamid, first.attempts) == ("claimed", "wamid.FIRST", 1)
    assert first.item.sort_ts == pytest.approx(SENT, abs=1e-6)
    store.begin_reply(first.item.wamid, PNID, CITIZEN, [{"text": {"body": "antwoord"}}], ["text"])
    second = store.finish_and_next(first.item.wamid, "done", None, CITIZEN, "rasa-1", 30.0)
    assert (second.reason, second.item.wamid) == ("claimed", "wamid.SECOND")
    assert store.finish_and_next(second.item.wamid, "done", None, CITIZEN, "rasa-1", 30.0).reason == "none"
    assert [store.inbound_status(w) for w in ("wamid.FIRST", "wamid.SECOND")] == ["done", "done"]


def test_revision_0003_downgrades_to_epoch_seconds(any_db: Databases) -> None:
    expires = SENT + 30.25
    engine = _at_0002_with_float_times(any_db, expires)
    migrations.upgrade(any_db.engine())
    with locks.schema_lock(engine) as connection:
        command.downgrade(runner.alembic_config(connection), "0002")
    assert revisions(engine) == {"0002"}
    with engine.connect() as connection:
        sorts = dict(connection.execute(sa.text("SELECT wamid, sort_ts FROM whatsapp_inbox")).all())
        lease = connection.execute(sa.text("SELECT expires_ts, acquired_ts FROM whatsapp_sender_leases")).one()
        contact = connection.execute(sa.text(
            "SELECT last_inbound_ts, template_sent_ts FROM whatsapp_contacts")).one()
        indexes = {i["name"] for i in sa.inspect(connection).get_indexes("whatsapp_outbox")}
    assert sorts == {"wamid.FIRST": pytest.approx(SENT, abs=1e-6), "wamid.SECOND": pytest.approx(SENT + 1e-6, abs=1e-6)}
    assert sorts["wamid.FIRST"] < sorts["wamid.SECOND"]
    assert tuple(lease) == (pytest.approx(expires, abs=1e-6), pytest.approx(SENT, abs=1e-6))
    assert contact[0] == pytest.approx(SENT, abs=1e-6) and contact[1] is None
    assert "ix_whatsapp_outbox_created_ts" in indexes
    migrations.upgrade(any_db.engine())
    assert revisions(engine) == {migrations.head()} and schema_diffs(engine) == []


# ---------------------------------------------------------------------- command line
def test_the_command_line_upgrades_checks_and_writes_sql(any_db: Databases, capsys) -> None:
    assert migrations_cli(["-x", f"url={any_db.url}", "upgrade", "head"]) == 0
    assert capsys.readouterr().out.startswith("upgraded: ")
    # autogenerate finds nothing to do: the models and the migrations agree
    assert migrations_cli(["--raiseerr", "-x", f"url={any_db.url}", "check"]) == 0
    assert "No new upgrade operations detected" in capsys.readouterr().out
    assert migrations_cli(["-x", f"url={any_db.url}", "upgrade", "head"]) == 0
    assert capsys.readouterr().out.startswith("current: ")
    assert migrations_cli(["-x", f"url={any_db.url}", "upgrade", "head", "--sql"]) == 0
    sql = capsys.readouterr().out
    assert "CREATE TABLE handoff_tickets" in sql and "INSERT INTO alembic_version" in sql
    from appcare.migrations.__main__ import next_revision_id

    assert next_revision_id() == f"{int(migrations.head()) + 1:04d}"
