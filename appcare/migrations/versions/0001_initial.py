"""Initial schema: appcare's tables as create_all made them before migrations (issue 20).

Revision ID: 0001
Revises:
Create Date: 2026-12-07

Every table, column, index and constraint is written out here (drafted with
autogenerate against an empty database, then reviewed): a frozen copy, never the
models, so this revision means the same schema forever. :func:`schema` is also what
an installation from before migrations is brought to before it is stamped at this
revision (``appcare.migrations.legacy``).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.operations import ops

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def schema() -> sa.MetaData:
    """The tables of revision 0001 (a new ``MetaData`` on every call)."""
    metadata = sa.MetaData()
    _handoff(metadata)
    _whatsapp(metadata)
    _desk(metadata)
    _editor(metadata)
    return metadata


def _handoff(metadata: sa.MetaData) -> None:
    sa.Table(
        "handoff_tickets", metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("municipality", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("transcript", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("in_kcc_hours", sa.Boolean(), nullable=False),
        sa.Column("expected_reply_at", sa.DateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("first_staff_reply_at", sa.DateTime(), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("urgent", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("callback_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("callback_number", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_handoff_tickets_conversation_id", "conversation_id"),
        sa.Index("ix_handoff_tickets_created_at", "created_at"),
        sa.Index("ix_handoff_tickets_status", "status"),
    )
    sa.Table(
        "handoff_messages", metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(length=16), nullable=False),
        sa.Column("staff_user", sa.String(length=128), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("delivery", sa.String(length=16), nullable=True),
        sa.Column("error", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["handoff_tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_handoff_messages_ticket_id", "ticket_id"),
    )
    sa.Table(
        "handoff_relayed", metadata,
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
        sa.Index("ix_handoff_relayed_created_at", "created_at"),
    )


def _whatsapp(metadata: sa.MetaData) -> None:
    sa.Table(
        "whatsapp_inbox", metadata,
        sa.Column("wamid", sa.String(length=191), nullable=False),
        sa.Column("phone_number_id", sa.String(length=64), nullable=False),
        sa.Column("wa_id", sa.String(length=191), nullable=True),
        sa.Column("sender_hash", sa.String(length=16), nullable=False),
        sa.Column("message_type", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("metadata_json", sa.Text(), nullable=True),
        sa.Column("sort_ts", sa.Float(), nullable=False),
        sa.Column("received_ts", sa.Float(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=64), nullable=True),
        sa.Column("updated_ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("wamid"),
        sa.Index("ix_whatsapp_inbox_open", "status", "wa_id"),
        sa.Index("ix_whatsapp_inbox_received", "received_ts"),
    )
    sa.Table(
        "whatsapp_outbox", metadata,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("inbound_wamid", sa.String(length=191), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=128), nullable=True),
        sa.Column("phone_number_id", sa.String(length=64), nullable=False),
        sa.Column("recipient", sa.String(length=191), nullable=False),
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
        sa.Column("created_ts", sa.Float(), nullable=False),
        sa.Column("updated_ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("inbound_wamid", "seq", name="uq_whatsapp_outbox_reply"),
        sa.Index("ix_whatsapp_outbox_created_ts", "created_ts"),
        sa.Index("ix_whatsapp_outbox_recipient_hash", "recipient_hash"),
        sa.Index("ix_whatsapp_outbox_ref", "ref"),
        sa.Index("ix_whatsapp_outbox_status", "status"),
        sa.Index("ix_whatsapp_outbox_wamid", "wamid"),
    )
    sa.Table(
        "whatsapp_contacts", metadata,
        sa.Column("phone_number_id", sa.String(length=64), nullable=False),
        sa.Column("wa_id", sa.String(length=191), nullable=False),
        sa.Column("last_inbound_ts", sa.Float(), nullable=True),
        sa.Column("template_sent_ts", sa.Float(), nullable=True),
        sa.Column("updated_ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("phone_number_id", "wa_id"),
    )
    sa.Table(
        "whatsapp_status_events", metadata,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("wamid", sa.String(length=191), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("recipient_hash", sa.String(length=16), nullable=True),
        sa.Column("event_ts", sa.Float(), nullable=True),
        sa.Column("recorded_ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_whatsapp_status_events_recorded_ts", "recorded_ts"),
        sa.Index("ix_whatsapp_status_events_wamid", "wamid"),
    )
    sa.Table(
        "whatsapp_sender_leases", metadata,
        sa.Column("sender_hash", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("expires_ts", sa.Float(), nullable=False),
        sa.Column("acquired_ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("sender_hash"),
    )
    sa.Table(
        "whatsapp_identities", metadata,
        sa.Column("identifier", sa.String(length=191), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("conversation_key", sa.String(length=191), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=True),
        sa.Column("created_ts", sa.Float(), nullable=False),
        sa.Column("updated_ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("identifier"),
        sa.Index("ix_whatsapp_identities_conversation_key", "conversation_key"),
        sa.Index("ix_whatsapp_identities_updated_ts", "updated_ts"),
    )


def _desk(metadata: sa.MetaData) -> None:
    sa.Table(
        "desk_users", metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("password_hash", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_login_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    sa.Table(
        "desk_sessions", metadata,
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["desk_users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_desk_sessions_expires_at", "expires_at"),
        sa.Index("ix_desk_sessions_user_id", "user_id"),
    )
    sa.Table(
        "desk_audit_log", metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_desk_audit_log_action", "action"),
        sa.Index("ix_desk_audit_log_at", "at"),
        sa.Index("ix_desk_audit_log_ticket_id", "ticket_id"),
    )
    sa.Table(
        "desk_standard_answers", metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("municipality", sa.String(length=64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    sa.Table(
        "desk_webhook_outbox", metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_key", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_key"),
        sa.Index("ix_desk_webhook_outbox_status", "status"),
    )
    sa.Table(
        "desk_integration_requests", metadata,
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
        sa.Index("ix_desk_integration_requests_created_at", "created_at"),
    )
    sa.Table(
        "desk_login_throttle", metadata,
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(), nullable=True),
        sa.Column("blocked_until", sa.DateTime(), nullable=True),
        sa.Column("audited_at", sa.DateTime(), nullable=True),
        sa.Column("unaudited", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
        sa.Index("ix_desk_login_throttle_last_failure_at", "last_failure_at"),
    )
    sa.Table(
        "desk_kv", metadata,
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    sa.Table(
        "desk_reply_attempts", metadata,
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("earlier_outbox", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("message_id"),
    )


def _editor(metadata: sa.MetaData) -> None:
    sa.Table(
        "desk_editor_inbox", metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("sender_hash", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("week", sa.String(length=10), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("intent", sa.String(length=128), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("assigned_intent", sa.String(length=128), nullable=True),
        sa.Column("example", sa.Text(), nullable=True),
        sa.Column("handled_by", sa.String(length=128), nullable=True),
        sa.Column("handled_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "event_id", name="uq_desk_editor_inbox_event"),
        sa.Index("ix_desk_editor_inbox_sender_hash", "sender_hash"),
        sa.Index("ix_desk_editor_inbox_status", "status"),
        sa.Index("ix_desk_editor_inbox_ts", "ts"),
        sa.Index("ix_desk_editor_inbox_week", "week"),
    )
    sa.Table(
        "desk_editor_jobs", metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("started_by", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("old_model", sa.Text(), nullable=True),
        sa.Column("new_model", sa.Text(), nullable=True),
        sa.Column("old_figures", sa.Text(), nullable=True),
        sa.Column("new_figures", sa.Text(), nullable=True),
        sa.Column("reasons", sa.Text(), nullable=True),
        sa.Column("log_tail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    sa.Table(
        "desk_editor_models", metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("eval_key", sa.String(length=64), nullable=True),
        sa.Column("figures", sa.Text(), nullable=True),
        sa.Column("published_at", sa.DateTime(), nullable=True),
        sa.Column("published_by", sa.String(length=128), nullable=True),
        sa.Column("previous_path", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    sa.Table(
        "desk_editor_lock", metadata,
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("acquired_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def upgrade() -> None:
    for table in schema().sorted_tables:
        op.invoke(ops.CreateTableOp.from_table(table))
        for index in sorted(table.indexes, key=lambda i: i.name):
            op.invoke(ops.CreateIndexOp.from_index(index))


def downgrade() -> None:
    for table in reversed(schema().sorted_tables):
        op.drop_table(table.name)
