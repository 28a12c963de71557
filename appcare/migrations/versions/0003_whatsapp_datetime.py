"""WhatsApp channel times as DateTime (naive UTC) in ``*_at`` columns, like every other table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

The channel's tables stored epoch seconds in ``*_ts`` Float columns; the other
stores keep naive UTC in ``DateTime`` ``*_at`` columns. Every such column is
converted in place, rows included, to the microsecond (``sort_at`` is WhatsApp's
message timestamp and orders a citizen's messages: the order stays exact), and
renamed (``sort_ts`` -> ``sort_at``, ...); the indexes on them follow
(``ix_whatsapp_outbox_created_ts`` -> ``..._created_at``, ...). Open messages,
their replies and the senders' leases keep their meaning, so a message waiting
during the upgrade is answered after it.

PostgreSQL: ``ALTER COLUMN ... TYPE TIMESTAMP USING (to_timestamp(x) AT TIME ZONE
'UTC')`` (one rewrite per table) and ``RENAME``; indexes and constraints stay.
SQLite cannot change a column's type: each table is rebuilt (a new table of the
target shape, the rows copied with the conversion, the old table dropped, the new
one renamed, its indexes made), in the format SQLAlchemy's ``DateTime`` stores
(``YYYY-MM-DD HH:MM:SS.ffffff``). Both work with ``--sql``.

Not for a rolling restart: an instance of an older version cannot use the converted
columns (docs/production.md, "Schema changes"). ``downgrade`` converts back.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import sqlalchemy as sa
from alembic import op
from alembic.operations import ops

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

KEY_LENGTH = 191

# table -> its time columns: (name before, name after, nullable)
TIME_COLUMNS: Dict[str, List[Tuple[str, str, bool]]] = {
    "whatsapp_inbox": [("sort_ts", "sort_at", False), ("received_ts", "received_at", False),
                       ("updated_ts", "updated_at", False)],
    "whatsapp_outbox": [("created_ts", "created_at", False), ("updated_ts", "updated_at", False)],
    "whatsapp_contacts": [("last_inbound_ts", "last_inbound_at", True), ("template_sent_ts", "template_sent_at", True),
                          ("updated_ts", "updated_at", False)],
    "whatsapp_status_events": [("event_ts", "event_at", True), ("recorded_ts", "recorded_at", False)],
    "whatsapp_sender_leases": [("expires_ts", "expires_at", False), ("acquired_ts", "acquired_at", False)],
    "whatsapp_identities": [("created_ts", "created_at", False), ("updated_ts", "updated_at", False)],
}
# indexes on a time column named after it: (table, name before, name after)
RENAMED_INDEXES = [
    ("whatsapp_outbox", "ix_whatsapp_outbox_created_ts", "ix_whatsapp_outbox_created_at"),
    ("whatsapp_status_events", "ix_whatsapp_status_events_recorded_ts", "ix_whatsapp_status_events_recorded_at"),
    ("whatsapp_identities", "ix_whatsapp_identities_updated_ts", "ix_whatsapp_identities_updated_at"),
]


def _tables(after: bool, prefix: str = "") -> sa.MetaData:
    """The six tables before (revision 0002: Float ``*_ts``) or after this revision
    (DateTime ``*_at``), named ``prefix + name``: a frozen copy, column order as
    before. Only SQLite's rebuild uses it."""
    metadata = sa.MetaData()

    def time(name: str, nullable: bool) -> sa.Column:
        for columns in TIME_COLUMNS.values():
            for before, later, _ in columns:
                if name in (before, later):
                    return sa.Column(later if after else before, sa.DateTime() if after else sa.Float(),
                                     nullable=nullable)
        raise KeyError(name)

    def suffix(name: str) -> str:
        return name + ("_at" if after else "_ts")

    sa.Table(
        prefix + "whatsapp_inbox", metadata,
        sa.Column("wamid", sa.String(length=191), nullable=False),
        sa.Column("phone_number_id", sa.String(length=64), nullable=False),
        sa.Column("wa_id", sa.String(length=KEY_LENGTH), nullable=True),
        sa.Column("sender_hash", sa.String(length=16), nullable=False),
        sa.Column("message_type", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("metadata_json", sa.Text(), nullable=True),
        time("sort_ts", False),
        time("received_ts", False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=64), nullable=True),
        time("updated_ts", False),
        sa.Column("received_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("wamid"),
        sa.Index("ix_whatsapp_inbox_open", "status", "wa_id"),
        sa.Index("ix_whatsapp_inbox_received", suffix("received")),
    )
    sa.Table(
        prefix + "whatsapp_outbox", metadata,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("inbound_wamid", sa.String(length=191), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=128), nullable=True),
        sa.Column("phone_number_id", sa.String(length=64), nullable=False),
        sa.Column("recipient", sa.String(length=KEY_LENGTH), nullable=False),
        sa.Column("recipient_hash", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload_json", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("wamid", sa.String(length=191), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=64), nullable=True),
        sa.Column("delivery_status", sa.String(length=16), nullable=True),
        sa.Column("pricing_category", sa.String(length=32), nullable=True),
        sa.Column("billable", sa.Boolean(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        time("created_ts", False),
        time("updated_ts", False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("inbound_wamid", "seq", name="uq_whatsapp_outbox_reply"),
        sa.Index(suffix("ix_whatsapp_outbox_created"), suffix("created")),
        sa.Index("ix_whatsapp_outbox_recipient_hash", "recipient_hash"),
        sa.Index("ix_whatsapp_outbox_ref", "ref"),
        sa.Index("ix_whatsapp_outbox_status", "status"),
        sa.Index("ix_whatsapp_outbox_wamid", "wamid"),
    )
    sa.Table(
        prefix + "whatsapp_contacts", metadata,
        sa.Column("phone_number_id", sa.String(length=64), nullable=False),
        sa.Column("wa_id", sa.String(length=KEY_LENGTH), nullable=False),
        time("last_inbound_ts", True),
        time("template_sent_ts", True),
        time("updated_ts", False),
        sa.PrimaryKeyConstraint("phone_number_id", "wa_id"),
    )
    sa.Table(
        prefix + "whatsapp_status_events", metadata,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("wamid", sa.String(length=191), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("recipient_hash", sa.String(length=16), nullable=True),
        time("event_ts", True),
        time("recorded_ts", False),
        sa.PrimaryKeyConstraint("id"),
        sa.Index(suffix("ix_whatsapp_status_events_recorded"), suffix("recorded")),
        sa.Index("ix_whatsapp_status_events_wamid", "wamid"),
    )
    sa.Table(
        prefix + "whatsapp_sender_leases", metadata,
        sa.Column("sender_hash", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        time("expires_ts", False),
        time("acquired_ts", False),
        sa.PrimaryKeyConstraint("sender_hash"),
    )
    sa.Table(
        prefix + "whatsapp_identities", metadata,
        sa.Column("identifier", sa.String(length=KEY_LENGTH), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("conversation_key", sa.String(length=KEY_LENGTH), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=True),
        time("created_ts", False),
        time("updated_ts", False),
        sa.PrimaryKeyConstraint("identifier"),
        sa.Index("ix_whatsapp_identities_conversation_key", "conversation_key"),
        sa.Index(suffix("ix_whatsapp_identities_updated"), suffix("updated")),
    )
    return metadata


# ------------------------------------------------------------------ conversions
def _sqlite_to_datetime(column: str) -> str:
    """Epoch seconds -> 'YYYY-MM-DD HH:MM:SS.ffffff' (rounded to the microsecond, the
    text SQLAlchemy's DateTime stores on SQLite; NULL stays NULL)."""
    micro = f"CAST(round({column} * 1000000) AS INTEGER)"
    return (f"(strftime('%Y-%m-%d %H:%M:%S', {micro} / 1000000, 'unixepoch') "
            f"|| '.' || printf('%06d', {micro} % 1000000))")


def _sqlite_to_epoch(column: str) -> str:
    """'YYYY-MM-DD HH:MM:SS[.ffffff]' -> epoch seconds (NULL stays NULL)."""
    return (f"(CAST(strftime('%s', substr({column}, 1, 19)) AS REAL) "
            f"+ CAST(substr({column}, 20) AS REAL))")


def _postgresql(after: bool) -> None:
    """Retypes and renames in place: one table rewrite per table."""
    for table, columns in TIME_COLUMNS.items():
        changes = []
        for before, later, _ in columns:
            if after:
                changes.append(f"ALTER COLUMN {before} TYPE TIMESTAMP WITHOUT TIME ZONE "
                               f"USING (to_timestamp({before}) AT TIME ZONE 'UTC')")
            else:
                changes.append(f"ALTER COLUMN {later} TYPE DOUBLE PRECISION USING (EXTRACT(EPOCH FROM {later}))")
        op.execute(f"ALTER TABLE {table} " + ", ".join(changes))
        for before, later, _ in columns:
            old, new = (before, later) if after else (later, before)
            op.execute(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}")
    for _table, before, later in RENAMED_INDEXES:
        old, new = (before, later) if after else (later, before)
        op.execute(f"ALTER INDEX {old} RENAME TO {new}")


def _sqlite(after: bool) -> None:
    """Rebuilds each table in the shape of ``after`` with its rows converted."""
    prefix = "_migrate_"
    target, temporary = _tables(after), _tables(after, prefix)
    convert: Callable[[str], str] = _sqlite_to_datetime if after else _sqlite_to_epoch
    for name, columns in TIME_COLUMNS.items():
        renamed = {(b if after else a): (a if after else b) for a, b, _ in columns}  # target name -> source name
        op.invoke(ops.CreateTableOp.from_table(temporary.tables[prefix + name]))  # without its indexes
        names = [c.name for c in target.tables[name].columns]
        selects = [convert(renamed[n]) if n in renamed else n for n in names]
        op.execute(f"INSERT INTO {prefix}{name} ({', '.join(names)}) SELECT {', '.join(selects)} FROM {name}")
        op.drop_table(name)  # with its indexes
        op.rename_table(prefix + name, name)
        for index in sorted(target.tables[name].indexes, key=lambda i: i.name):
            op.create_index(index.name, name, [c.name for c in index.columns], unique=index.unique)


def _convert(after: bool) -> None:
    if op.get_context().dialect.name == "postgresql":
        _postgresql(after)
    else:
        _sqlite(after)


def upgrade() -> None:
    _convert(after=True)


def downgrade() -> None:
    _convert(after=False)
