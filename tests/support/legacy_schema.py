"""Tables as older releases created them, for tests of schema upgrades."""
from __future__ import annotations

import sqlalchemy as sa


def old_tickets_table(metadata: sa.MetaData) -> sa.Table:
    """``handoff_tickets`` before urgency, language and call-back were added."""
    return sa.Table(
        "handoff_tickets", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("conversation_id", sa.String(128), nullable=False, index=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("municipality", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("transcript", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime, nullable=False, index=True),
        sa.Column("in_kcc_hours", sa.Boolean, nullable=False),
        sa.Column("expected_reply_at", sa.DateTime),
        sa.Column("claimed_by", sa.String(128)),
        sa.Column("claimed_at", sa.DateTime),
        sa.Column("first_staff_reply_at", sa.DateTime),
        sa.Column("closed_at", sa.DateTime),
        sa.Column("outcome", sa.String(64)),
        sa.Column("flagged", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
