"""One SQLAlchemy engine per database URL for appcare's own tables.

``APPCARE_DB_URL`` selects the database: an SQLite file by default
(``sqlite:///var/appcare.db`` relative to the working directory), a PostgreSQL
URL in production (``postgresql://user@host/db``).
"""
from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path
from typing import Dict, Optional

from sqlalchemy import MetaData, create_engine, event, text
from sqlalchemy.engine import Engine

DEFAULT_DB_URL = "sqlite:///var/appcare.db"
_engines: Dict[str, Engine] = {}
_lock = threading.Lock()


def utcnow() -> dt.datetime:
    """Naive UTC 'now', as stored in appcare's DateTime columns."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def db_url() -> str:
    return os.environ.get("APPCARE_DB_URL", DEFAULT_DB_URL)


def get_engine(url: Optional[str] = None) -> Engine:
    url = url or db_url()
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create(url)
            _engines[url] = engine
        return engine


def _create(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, future=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, future=True)


# Any constant: the key of the PostgreSQL advisory lock that serialises table creation.
_SCHEMA_LOCK_KEY = 0x61707063  # "appc"


def create_tables(metadata: MetaData, engine: Engine) -> None:
    """``metadata.create_all`` that is safe when several processes start at once on an
    empty database (two Rasa instances, the desk, ``docker compose up``): on
    PostgreSQL concurrent ``CREATE TABLE`` races fail with a unique violation, so the
    creation runs under a transaction-level advisory lock; the second process then
    finds the tables and creates nothing."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
            metadata.create_all(connection, checkfirst=True)
        return
    metadata.create_all(engine, checkfirst=True)


def dispose_all() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
