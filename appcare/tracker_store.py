"""Reading Rasa's SQL tracker store directly: its URL from an endpoints file, a
cached engine, and the ``events`` table as rows.

Shared by the performance report (report/sources.py), the editors' not-understood
inbox (desk/editor/inbox.py), retention and subject access (jobs/). Rasa's own
``SQLTrackerStore`` rebuilds whole trackers; these readers need the events of many
conversations at once, so they query the table Rasa writes.
"""
from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union
from urllib.parse import urlsplit

import sqlalchemy as sa

from appcare.db import pg_connect_args

SQL_STORE_TYPES = ("sql", "rasa.core.tracker_store.sqltrackerstore")
_ENV = re.compile(r"\$\{([^}]+)\}")


class TrackerStoreConfigError(ValueError):
    """The endpoints file names no SQL tracker store, or uses an unset variable."""


def read_endpoints(path: Union[str, Path], section: Optional[str] = None) -> Dict[str, Any]:
    """endpoints.yml as a dict (or only ``section``), with ``${VAR}`` in values replaced
    from the environment as Rasa does; an unset variable is an error. With ``section``
    only that section's variables need to be set."""
    import yaml

    def _substitute(value: Any) -> Any:
        if isinstance(value, str):
            def _replace(match: "re.Match[str]") -> str:
                name = match.group(1)
                if name not in os.environ:
                    raise TrackerStoreConfigError(f"{path}: environment variable ${{{name}}} is not set")
                return os.environ[name]

            return _ENV.sub(_replace, value)
        if isinstance(value, dict):
            return {key: _substitute(item) for key, item in value.items()}
        if isinstance(value, list):
            return [_substitute(item) for item in value]
        return value

    document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if section is not None:
        return {section: _substitute(document.get(section))}
    return _substitute(document)


def tracker_store_url(
    endpoints: Union[str, Path, Dict[str, Any]], base_dir: Optional[Union[str, Path]] = None
) -> sa.engine.URL:
    """The SQLAlchemy URL of the SQL tracker store of an endpoints file (or its parsed
    dict). A relative SQLite path is taken relative to ``base_dir`` (Rasa's working
    directory) when given, else left as it is (relative to the current directory)."""
    config = endpoints if isinstance(endpoints, dict) else read_endpoints(endpoints, "tracker_store")
    store = (config or {}).get("tracker_store") or {}
    if str(store.get("type") or "").lower() not in SQL_STORE_TYPES:
        raise TrackerStoreConfigError(
            f"an SQL tracker store is needed; the endpoints file has tracker_store type '{store.get('type')}'"
        )
    dialect = str(store.get("dialect") or "sqlite")
    host = store.get("url") or store.get("host")  # Rasa passes `url:` as the host
    if host and "://" in str(host):
        return sa.engine.make_url(str(host))
    port = store.get("port")
    if host:
        parsed = urlsplit(f"scheme://{host}")
        port = parsed.port or port
        host = parsed.hostname or host
    database = str(store.get("db") or "rasa.db")
    if dialect == "sqlite" and base_dir is not None and database != ":memory:" and not Path(database).is_absolute():
        database = str((Path(base_dir) / database).resolve())
    return sa.engine.URL.create(
        dialect,
        username=store.get("username") or None,
        password=store.get("password") or None,
        host=host or None,
        port=int(port) if port not in (None, "") else None,
        database=database,
        query=store.get("query") or {},
    )


_engines: Dict[str, sa.engine.Engine] = {}
_engines_lock = threading.Lock()


def engine(url: Union[str, sa.engine.URL]) -> sa.engine.Engine:
    """A cached engine for the tracker store (``POSTGRESQL_SCHEMA`` applied like Rasa's
    create_engine_kwargs; on PostgreSQL with appcare's connect and statement timeouts,
    see :func:`appcare.db.pg_connect_args`)."""
    url = sa.engine.make_url(url) if isinstance(url, str) else url
    schema = os.environ.get("POSTGRESQL_SCHEMA", "")
    key = url.render_as_string(hide_password=False) + "|" + schema
    with _engines_lock:
        cached = _engines.get(key)
        if cached is None:
            kwargs: Dict[str, Any] = {"future": True}
            if url.get_backend_name() == "postgresql":
                kwargs["pool_pre_ping"] = True
                connect_args = {"options": f"-csearch_path={schema}"} if schema else {}
                if url.get_driver_name() == "psycopg2":
                    # connect_timeout and statement_timeout (APPCARE_DB_*), merged with the search_path
                    connect_args = pg_connect_args(url, connect_args)
                if connect_args:
                    kwargs["connect_args"] = connect_args
            cached = sa.create_engine(url, **kwargs)
            _engines[key] = cached
        return cached


def dispose_engines() -> None:
    with _engines_lock:
        for cached in _engines.values():
            cached.dispose()
        _engines.clear()


def sqlite_missing(url: sa.engine.URL) -> bool:
    """True for a SQLite store whose file does not exist yet (nothing to read)."""
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database or ""
    return bool(database) and database != ":memory:" and not Path(database).exists()


def events_table() -> sa.Table:
    """Rasa's ``events`` table (the columns these readers use)."""
    return sa.Table(
        "events", sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sender_id", sa.String(255)),
        sa.Column("type_name", sa.String(255)),
        sa.Column("timestamp", sa.Float),
        sa.Column("intent_name", sa.String(255)),
        sa.Column("action_name", sa.String(255)),
        sa.Column("data", sa.Text),
    )


@dataclass
class EventRow:
    id: int
    sender_id: str
    type_name: str
    timestamp: float
    intent_name: Optional[str]
    action_name: Optional[str]
    data: Dict[str, Any]


def event_row(row: Any) -> EventRow:
    """An ``events`` row as :class:`EventRow` (unreadable JSON data becomes ``{}``)."""
    try:
        data = json.loads(row.data) if row.data else {}
    except ValueError:
        data = {}
    return EventRow(int(row.id), str(row.sender_id), str(row.type_name), float(row.timestamp or 0.0),
                    row.intent_name, row.action_name, data if isinstance(data, dict) else {})
