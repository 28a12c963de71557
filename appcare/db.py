"""One SQLAlchemy engine per database URL for appcare's own tables.

``APPCARE_DB_URL`` selects the database: an SQLite file by default
(``sqlite:///var/appcare.db`` relative to the working directory), a PostgreSQL
URL in production (``postgresql://user@host/db``).

Every PostgreSQL engine appcare creates (here and in :mod:`appcare.tracker_store`)
gets :func:`pg_connect_args`: ``connect_timeout`` (``APPCARE_DB_CONNECT_TIMEOUT``,
5 s) so an unreachable server fails fast instead of hanging a thread for minutes,
and ``statement_timeout`` (``APPCARE_DB_STATEMENT_TIMEOUT_MS``, 15000 ms; 0 turns
it off) so a statement stuck behind a lock fails instead of holding a connection.
Values already in the URL (``?connect_timeout=...``, ``options=-c statement_timeout=...``)
win. The pool is sized for the WhatsApp channel's database threads
(``WHATSAPP_DB_THREADS``, see :func:`pool_size`).

The tables come from migrations (:mod:`appcare.migrations`): :func:`ensure_schema`
brings a database to the newest revision when a store is constructed.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from sqlalchemy import MetaData, create_engine, event, inspect
from sqlalchemy.engine import Connection, Engine, URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateColumn

logger = logging.getLogger(__name__)

DEFAULT_DB_URL = "sqlite:///var/appcare.db"
CONNECT_TIMEOUT_VAR = "APPCARE_DB_CONNECT_TIMEOUT"
STATEMENT_TIMEOUT_VAR = "APPCARE_DB_STATEMENT_TIMEOUT_MS"
DB_THREADS_VAR = "WHATSAPP_DB_THREADS"
DEFAULT_CONNECT_TIMEOUT = 5  # seconds
DEFAULT_STATEMENT_TIMEOUT_MS = 15000
DEFAULT_DB_THREADS = 4
# Connections beyond the channel's threads: its webhook (ingress) thread, the
# handoff store's calls from the event loop's default executor, health checks,
# start-up and maintenance work.
POOL_HEADROOM = 4
_engines: Dict[str, Engine] = {}
_lock = threading.Lock()


def utcnow() -> dt.datetime:
    """Naive UTC 'now', as stored in appcare's DateTime columns."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


_EPOCH = dt.datetime(1970, 1, 1)


def from_epoch(ts: Optional[float]) -> Optional[dt.datetime]:
    """Epoch seconds (``time.time()``) as the naive UTC datetime a DateTime column
    stores, to the microsecond (None stays None). The WhatsApp channel computes with
    epoch seconds and converts at its store's boundary (channels/inbox.py)."""
    if ts is None:
        return None
    return _EPOCH + dt.timedelta(microseconds=round(float(ts) * 1_000_000))


def to_epoch(value: Optional[dt.datetime]) -> Optional[float]:
    """A naive UTC datetime from a DateTime column as epoch seconds (None stays None);
    the inverse of :func:`from_epoch`."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return (value - _EPOCH) / dt.timedelta(seconds=1)


def db_url() -> str:
    return os.environ.get("APPCARE_DB_URL", DEFAULT_DB_URL)


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    try:
        value = int(float(os.environ.get(name, "") or default))
    except ValueError:
        logger.warning("%s is not a number; using %s", name, default)
        value = default
    return max(minimum, value)


def db_threads() -> int:
    """Threads the WhatsApp channel uses for its database work (``WHATSAPP_DB_THREADS``, 4)."""
    return min(64, _env_int(DB_THREADS_VAR, DEFAULT_DB_THREADS, minimum=1))


def pool_size() -> int:
    """Connections kept in a PostgreSQL engine's pool: the channel's database threads,
    its ingress thread and :data:`POOL_HEADROOM` (at least SQLAlchemy's default 5)."""
    return max(5, db_threads() + 1 + POOL_HEADROOM)


def pg_connect_args(url: Union[str, URL, None] = None, connect_args: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """psycopg2 ``connect_args`` with ``connect_timeout`` and ``statement_timeout``
    added to ``connect_args`` (whose ``options``, e.g. a ``search_path``, are kept).
    A value the URL itself sets wins: SQLAlchemy would let ``connect_args`` replace
    the URL's ``options``, so those are merged in here."""
    args: Dict[str, Any] = dict(connect_args or {})
    query: Dict[str, Any] = {}
    if url is not None:
        query = dict(make_url(url).query) if isinstance(url, str) else dict(url.query)
    connect_timeout = _env_int(CONNECT_TIMEOUT_VAR, DEFAULT_CONNECT_TIMEOUT)
    if connect_timeout > 0 and "connect_timeout" not in args and "connect_timeout" not in query:
        args["connect_timeout"] = connect_timeout
    url_options = query.get("options")
    if isinstance(url_options, (tuple, list)):
        url_options = " ".join(str(o) for o in url_options)
    options = " ".join(o for o in (str(url_options or "").strip(), str(args.get("options") or "").strip()) if o)
    statement_ms = _env_int(STATEMENT_TIMEOUT_VAR, DEFAULT_STATEMENT_TIMEOUT_MS)
    if statement_ms > 0 and "statement_timeout" not in options:
        options = f"{options} -c statement_timeout={statement_ms}".strip()
    if options:
        args["options"] = options
    return args


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
    kwargs: Dict[str, Any] = {}
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        kwargs["pool_size"] = pool_size()
        if parsed.get_driver_name() == "psycopg2":
            kwargs["connect_args"] = pg_connect_args(parsed)
    return create_engine(url, pool_pre_ping=True, future=True, **kwargs)


# Any constant: the key of the PostgreSQL advisory lock that serialises schema changes
# (appcare.migrations.locks; table creation used it before migrations).
_SCHEMA_LOCK_KEY = 0x61707063  # "appc"


def ensure_schema(engine: Engine) -> None:
    """appcare's tables at the newest migration (:mod:`appcare.migrations`): every store
    calls this when it is constructed. The first call per engine runs the upgrade under
    the schema lock (safe when several processes start at once on an empty database:
    two Rasa instances, the desk, ``docker compose up``); later calls return at once."""
    from appcare import migrations

    migrations.upgrade(engine)


def add_missing_columns(metadata: MetaData, bind: Union[Engine, Connection]) -> List[str]:
    """Additive schema upgrade: ``ALTER TABLE ... ADD COLUMN`` for every column of
    ``metadata`` that an existing table lacks (``create_all`` never changes a table
    that exists), for installations from before migrations
    (:mod:`appcare.migrations.legacy`); later changes are migrations. Only columns
    that can be added to a table with rows: nullable, or with a ``server_default``
    (which existing rows then get). Nothing is dropped,
    renamed or retyped; a missing column that cannot be added this way is logged as
    an error and left alone (startup goes on as before). Returns the added columns
    as ``table.column``.

    On PostgreSQL call it inside the transaction that holds the schema advisory lock
    (:mod:`appcare.migrations.locks`). On SQLite a column added by another process at the
    same moment is recognised and skipped."""
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            return add_missing_columns(metadata, connection)
    connection = bind
    dialect = connection.dialect
    preparer = dialect.identifier_preparer
    added: List[str] = []
    for table in metadata.sorted_tables:
        inspector = inspect(connection)
        if not inspector.has_table(table.name, schema=table.schema):
            continue
        existing = {c["name"] for c in inspector.get_columns(table.name, schema=table.schema)}
        for column in table.columns:
            if column.name in existing:
                continue
            if column.primary_key or (not column.nullable and column.server_default is None):
                logger.error(
                    "database schema: column %s.%s is missing and cannot be added automatically "
                    "(make it nullable or give it a server_default, or migrate by hand)",
                    table.name, column.name,
                )
                continue
            spec = CreateColumn(column).compile(dialect=dialect)
            statement = f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {spec}"
            try:
                connection.exec_driver_sql(statement)
            except DBAPIError:
                if dialect.name == "sqlite":
                    now = {c["name"] for c in inspect(connection).get_columns(table.name, schema=table.schema)}
                    if column.name in now:  # another process was first
                        continue
                raise
            added.append(f"{table.name}.{column.name}")
            logger.info("database schema: added column %s.%s", table.name, column.name)
    return added


def dispose_all() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
