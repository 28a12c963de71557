"""The lock that serialises schema changes between processes.

PostgreSQL: a transaction-level advisory lock (``appcare.db._SCHEMA_LOCK_KEY``, the
key table creation used before migrations) taken first in the transaction the
migrations run in, so the second of two processes starting at once on an empty
database waits, then finds the schema at head and does nothing. The transaction has
no statement timeout (``APPCARE_DB_STATEMENT_TIMEOUT_MS`` would cut a migration that
rewrites a large table, and the wait of a second process).

SQLite: an exclusive ``flock`` on ``<database file>-schema.lock`` (processes on one
host, as SQLite itself; no time limit, unlike SQLite's busy timeout), and the
migrations in one ``BEGIN IMMEDIATE`` transaction; an in-memory database only needs
the caller's thread lock.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from appcare import db


@contextmanager
def schema_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction, holding the schema lock until it commits."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("SET LOCAL statement_timeout = 0"))
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": db._SCHEMA_LOCK_KEY})
            yield connection
        return
    sqlite = engine.dialect.name == "sqlite"
    with _file_lock(engine.url.database if sqlite else None):
        with engine.begin() as connection:
            if sqlite:
                # pysqlite opens no transaction for DDL (each statement would commit and
                # sync on its own): one explicit transaction makes the migrations atomic
                # and fast, and IMMEDIATE takes the write lock at once.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            yield connection


@contextmanager
def _file_lock(database: "str | None") -> Iterator[None]:
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    fd = os.open(f"{database}-schema.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
