"""Intake: the requests it authenticated, the outbox of Prefect events, and what the intake did
with each signal (action, status, fingerprint, group key).

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "intake_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("token_id", sa.String(length=100), nullable=True),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("remote_addr", sa.String(length=64), nullable=True),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("signal_ids", sa.JSON(), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intake_requests")),
        sa.UniqueConstraint("signature", name=op.f("uq_intake_requests_signature")),
    )
    op.create_index(op.f("ix_intake_requests_source"), "intake_requests", ["source"], unique=False)
    op.create_index(op.f("ix_intake_requests_received_at"), "intake_requests", ["received_at"], unique=False)

    # Nullable columns only: a plain ADD COLUMN on SQLite too, no table rebuild.
    with op.batch_alter_table("signals") as batch:
        batch.add_column(sa.Column("action", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("status", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("fingerprint", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("group_key", sa.String(length=255), nullable=True))
    op.create_index(op.f("ix_signals_fingerprint"), "signals", ["fingerprint"], unique=False)
    op.create_index(op.f("ix_signals_group_key"), "signals", ["group_key"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("signal_id", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("delivered_at", TZ, nullable=True),
        sa.ForeignKeyConstraint(["signal_id"], ["signals.id"], name=op.f("fk_outbox_signal_id_signals")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index(op.f("ix_outbox_signal_id"), "outbox", ["signal_id"], unique=False)
    op.create_index("ix_outbox_status_next_attempt_at", "outbox", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_outbox_status_next_attempt_at", table_name="outbox")
    op.drop_index(op.f("ix_outbox_signal_id"), table_name="outbox")
    op.drop_table("outbox")
    op.drop_index(op.f("ix_signals_group_key"), table_name="signals")
    op.drop_index(op.f("ix_signals_fingerprint"), table_name="signals")
    with op.batch_alter_table("signals") as batch:
        batch.drop_column("group_key")
        batch.drop_column("fingerprint")
        batch.drop_column("status")
        batch.drop_column("action")
    op.drop_index(op.f("ix_intake_requests_received_at"), table_name="intake_requests")
    op.drop_index(op.f("ix_intake_requests_source"), table_name="intake_requests")
    op.drop_table("intake_requests")
