"""Readiness: improvement items found by drills, the readiness check and post-mortems, tracked
until closed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "improvement_items",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("source_key", sa.String(length=255), nullable=False),
        sa.Column("open_key", sa.String(length=255), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("due_at", TZ, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("opened_at", TZ, nullable=False),
        sa.Column("last_seen_at", TZ, nullable=False),
        sa.Column("times_seen", sa.Integer(), nullable=False),
        sa.Column("closed_at", TZ, nullable=True),
        sa.Column("closed_by", sa.String(length=100), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"],
                                name=op.f("fk_improvement_items_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_improvement_items")),
        sa.UniqueConstraint("open_key", name=op.f("uq_improvement_items_open_key")),
    )
    for column in ("source", "source_key", "status", "incident_id"):
        op.create_index(op.f(f"ix_improvement_items_{column}"), "improvement_items", [column], unique=False)


def downgrade() -> None:
    for column in ("incident_id", "status", "source_key", "source"):
        op.drop_index(op.f(f"ix_improvement_items_{column}"), table_name="improvement_items")
    op.drop_table("improvement_items")
