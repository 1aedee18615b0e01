"""People in the loop: who acknowledged an incident and how, deferred notifications (quiet
hours), one-click acknowledgement links and approvals of runbook steps.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("acknowledged_by", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("acknowledged_via", sa.String(length=20), nullable=True))
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("due_at", TZ, nullable=True))

    op.create_table(
        "ack_links",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("person_id", sa.String(length=100), nullable=False),
        sa.Column("recipient", sa.String(length=255), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("used_at", TZ, nullable=True),
        sa.Column("used_from", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name=op.f("fk_ack_links_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ack_links")),
    )
    op.create_index(op.f("ix_ack_links_incident_id"), "ack_links", ["incident_id"], unique=False)

    op.create_table(
        "approvals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("step_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("requested_at", TZ, nullable=False),
        sa.Column("deadline", TZ, nullable=False),
        sa.Column("approvers", sa.JSON(), nullable=False),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("decided_at", TZ, nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("via", sa.String(length=20), nullable=True),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name=op.f("fk_approvals_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
    )
    op.create_index(op.f("ix_approvals_incident_id"), "approvals", ["incident_id"], unique=False)
    op.create_index(op.f("ix_approvals_status"), "approvals", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_approvals_status"), table_name="approvals")
    op.drop_index(op.f("ix_approvals_incident_id"), table_name="approvals")
    op.drop_table("approvals")
    op.drop_index(op.f("ix_ack_links_incident_id"), table_name="ack_links")
    op.drop_table("ack_links")
    # A plain DROP COLUMN (SQLite >= 3.35): rebuilding `incidents` would trip the foreign keys
    # that every other table holds on it.
    with op.batch_alter_table("notifications", recreate="never") as batch:
        batch.drop_column("due_at")
    with op.batch_alter_table("incidents", recreate="never") as batch:
        batch.drop_column("acknowledged_via")
        batch.drop_column("acknowledged_by")
