"""Start-up upgrade: appcare's tables to the newest revision, once per engine.

:func:`upgrade` is what every store runs when it is constructed (``appcare.db.ensure_schema``):
under the schema lock (:mod:`appcare.migrations.locks`) it reads ``alembic_version``
and, when that is not at head, stamps a pre-migration installation at the baseline
(:mod:`appcare.migrations.legacy`) and runs the missing revisions. An engine is
upgraded once: later stores on it find their tables without a database round trip.
A database at a revision this code does not know (a newer release migrated it, this
instance is the old one of a rolling restart) is left alone with a warning.
"""
from __future__ import annotations

import logging
import sys
import threading
import weakref
from functools import lru_cache
from pathlib import Path
from typing import Any, FrozenSet, Optional, Set

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine

from appcare.migrations import legacy, locks

logger = logging.getLogger(__name__)

DIRECTORY = Path(__file__).resolve().parent
BASELINE = "0001"  # the schema create_all made before migrations (versions/0001_initial.py)
VERSION_TABLE = "alembic_version"  # Alembic's default name

_done: "weakref.WeakSet[Engine]" = weakref.WeakSet()
_engine_locks: "weakref.WeakKeyDictionary[Engine, threading.Lock]" = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def alembic_config(connection: Optional[Connection] = None) -> Config:
    """Alembic's configuration, without an ini file."""
    config = Config(stdout=sys.stdout)  # Alembic's default is sys.stdout when it was imported
    config.set_main_option("script_location", str(DIRECTORY))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    return script_directory().get_current_head()


def baseline_schema() -> Any:
    """The tables of :data:`BASELINE` (a fresh ``MetaData``)."""
    return script_directory().get_revision(BASELINE).module.schema()


@lru_cache(maxsize=1)
def baseline_tables() -> FrozenSet[str]:
    return frozenset(baseline_schema().tables)


def upgrade(engine: Engine) -> None:
    """Brings ``engine``'s database to head, once per engine; safe to call from many
    threads and processes at once."""
    if engine in _done:
        return
    with _guard:
        lock = _engine_locks.setdefault(engine, threading.Lock())
    with lock:
        if engine in _done:
            return
        with locks.schema_lock(engine) as connection:
            upgrade_connection(connection)
        _done.add(engine)


def upgrade_connection(connection: Connection) -> str:
    """The upgrade on a connection that holds the schema lock; returns what it did:
    ``current``, ``upgraded``, ``adopted`` (pre-migration installation) or ``unknown``."""
    script = script_directory()
    heads = set(script.get_heads())
    current = current_revisions(connection)
    if current == heads:
        return "current"
    known = {s.revision for s in script.walk_revisions()}
    if current - known:
        logger.warning(
            "database schema is at revision %s, which this version does not know (a newer "
            "version migrated it); not migrating", ", ".join(sorted(current - known)),
        )
        return "unknown"
    outcome = "upgraded"
    if not current and legacy.is_pre_migration(connection, baseline_tables()):
        legacy.adopt(connection, baseline_schema())
        command.stamp(alembic_config(connection), BASELINE)
        logger.info("database schema: existing tables stamped at revision %s", BASELINE)
        outcome = "adopted"
    command.upgrade(alembic_config(connection), "head")
    logger.info("database schema at revision %s", ", ".join(sorted(heads)))
    return outcome


def current_revisions(connection: Connection) -> Set[str]:
    """The revisions in ``alembic_version`` (empty: none, or no such table). Read
    directly: Alembic's ``MigrationContext`` logs two lines each time it is made."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return set()
    return {row[0] for row in connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}")}


def forget(engine: Optional[Engine] = None) -> None:
    """Makes the next :func:`upgrade` of ``engine`` (of every engine: None) look again."""
    with _guard:
        if engine is None:
            _done.clear()
        else:
            _done.discard(engine)


# ----------------------------------------------------------------- env.py
def _configure(context: Any, **kwargs: Any) -> None:
    context.configure(
        compare_type=True,
        render_as_batch=True,  # ALTERs that SQLite can do too (batch mode is plain ALTER on PostgreSQL)
        **kwargs,
    )


def run_online(context: Any, connection: Connection, target_metadata: Any = None) -> None:
    """env.py with a connection: at start-up (it holds the schema lock and is in a
    transaction, which the migrations join) or from the command line."""
    include = None
    if target_metadata is not None:
        from appcare.migrations.models import include_object

        include = include_object(target_metadata)
    _configure(context, connection=connection, target_metadata=target_metadata, include_object=include)
    with context.begin_transaction():
        context.run_migrations()


def run_from_command_line(context: Any) -> None:
    """env.py from ``python -m appcare.migrations``: ``APPCARE_DB_URL`` (or ``-x url=...``),
    under the schema lock, compared with the models for ``--autogenerate``."""
    from appcare import db
    from appcare.migrations.models import target_metadata

    engine = db.get_engine(context.get_x_argument(as_dictionary=True).get("url"))
    with locks.schema_lock(engine) as connection:
        run_online(context, connection, target_metadata())
    forget(engine)


def run_offline(context: Any) -> None:
    """``--sql``: the SQL of the migrations for a database administrator, no connection."""
    from appcare import db

    _configure(context, url=context.get_x_argument(as_dictionary=True).get("url") or db.db_url(),
               literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()
