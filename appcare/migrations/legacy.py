"""Installations from before migrations: tables made by ``create_all``, no
``alembic_version``.

Such a database gets the baseline revision's schema without losing a row (tables a
store never made, columns and indexes added in later releases, PostgreSQL VARCHARs
widened, as start-up did before migrations) and is then stamped at the baseline; the
revisions after it run as on any other installation. Never drops or narrows anything.
"""
from __future__ import annotations

import logging
from typing import Iterable, List

from sqlalchemy import MetaData, String, inspect
from sqlalchemy.engine import Connection

from appcare import db

logger = logging.getLogger(__name__)


def is_pre_migration(connection: Connection, baseline_tables: Iterable[str]) -> bool:
    """Some baseline table exists (the caller knows there is no ``alembic_version``).
    Only some may: an installation that never started the desk has no desk tables."""
    return bool(set(inspect(connection).get_table_names()) & set(baseline_tables))


def adopt(connection: Connection, baseline: MetaData) -> List[str]:
    """Brings a pre-migration database to ``baseline``; returns what it changed."""
    present = set(inspect(connection).get_table_names())
    created = [t.name for t in baseline.sorted_tables if t.name not in present]
    baseline.create_all(connection, tables=[baseline.tables[n] for n in created])
    changes = [f"created {name}" for name in created]
    changes += [f"added column {c}" for c in db.add_missing_columns(baseline, connection)]
    changes += [f"created index {i}" for i in _add_missing_indexes(baseline, connection, skip=set(created))]
    changes += [f"widened {c}" for c in _widen_strings(baseline, connection, skip=set(created))]
    for change in changes:
        logger.info("database schema (before migrations): %s", change)
    return changes


def _add_missing_indexes(baseline: MetaData, connection: Connection, skip: set) -> List[str]:
    added = []
    for table in baseline.sorted_tables:
        if table.name in skip:
            continue
        existing = {i["name"] for i in inspect(connection).get_indexes(table.name)}
        for index in sorted(table.indexes, key=lambda i: i.name):
            if index.name not in existing:
                index.create(connection)
                added.append(index.name)
    return added


def _widen_strings(baseline: MetaData, connection: Connection, skip: set) -> List[str]:
    """PostgreSQL enforces VARCHAR lengths: a column created shorter (the citizen's id
    was VARCHAR(64) before BSUIDs) is widened, which rewrites no rows. SQLite ignores
    lengths."""
    if connection.dialect.name != "postgresql":
        return []
    preparer = connection.dialect.identifier_preparer
    widened = []
    for table in baseline.sorted_tables:
        if table.name in skip:
            continue
        lengths = {c["name"]: getattr(c["type"], "length", None) for c in inspect(connection).get_columns(table.name)}
        for column in table.columns:
            want = column.type.length if isinstance(column.type, String) else None
            have = lengths.get(column.name)
            if want and have and have < want:
                connection.exec_driver_sql(
                    f"ALTER TABLE {preparer.format_table(table)} ALTER COLUMN {preparer.quote(column.name)} "
                    f"TYPE VARCHAR({want})"
                )
                widened.append(f"{table.name}.{column.name}")
    return widened
