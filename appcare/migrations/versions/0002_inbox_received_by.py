"""whatsapp_inbox.received_by: the instance whose webhook stored the message.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07

Lets the instance holding a citizen's lease hand that citizen's next message to the
live instance HAProxy gave the webhook to, so the load stays spread over the
instances (channels/inbox.py, ``finish_and_next``). Nullable: rows stored before
this revision, or by an older instance during a rolling restart, have none and are
answered as before.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("whatsapp_inbox", sa.Column("received_by", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("whatsapp_inbox") as batch:
        batch.drop_column("received_by")
