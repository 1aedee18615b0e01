"""The compliance record: post-mortem reviews, notice drafts, purges with timeline tombstones,
and the flow run on each signal.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("signals") as batch:
        batch.add_column(sa.Column("flow_run_id", sa.String(length=64), nullable=True))
        batch.create_index(batch.f("ix_signals_flow_run_id"), ["flow_run_id"], unique=False)

    op.create_table(
        "postmortem_reviews",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("root_cause", sa.Text(), nullable=False),
        sa.Column("contributing_factors", sa.JSON(), nullable=False),
        sa.Column("lessons", sa.Text(), nullable=False),
        sa.Column("action_items", sa.JSON(), nullable=False),
        sa.Column("entered_by", sa.String(length=100), nullable=False),
        sa.Column("entered_at", TZ, nullable=False),
        sa.Column("via", sa.String(length=20), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"],
                                name=op.f("fk_postmortem_reviews_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_postmortem_reviews")),
        sa.UniqueConstraint("incident_id", "revision", name=op.f("uq_postmortem_reviews_incident_id_revision")),
    )
    op.create_index(op.f("ix_postmortem_reviews_incident_id"), "postmortem_reviews", ["incident_id"], unique=False)

    op.create_table(
        "notice_drafts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("audience", sa.String(length=255), nullable=False),
        sa.Column("language", sa.String(length=10), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("drafted_at", TZ, nullable=False),
        sa.Column("drafted_by", sa.String(length=100), nullable=False),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("decided_at", TZ, nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("sent_at", TZ, nullable=True),
        sa.Column("sent_to", sa.JSON(), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name=op.f("fk_notice_drafts_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice_drafts")),
        sa.UniqueConstraint("incident_id", "kind", "audience", "version",
                            name=op.f("uq_notice_drafts_incident_id_kind_audience_version")),
    )
    op.create_index(op.f("ix_notice_drafts_incident_id"), "notice_drafts", ["incident_id"], unique=False)
    op.create_index(op.f("ix_notice_drafts_status"), "notice_drafts", ["status"], unique=False)

    op.create_table(
        "purges",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("emergency_type", sa.String(length=100), nullable=False),
        sa.Column("opened_at", TZ, nullable=True),
        sa.Column("closed_at", TZ, nullable=True),
        sa.Column("record_kinds", sa.JSON(), nullable=False),
        sa.Column("retain_until", TZ, nullable=False),
        sa.Column("purged_at", TZ, nullable=False),
        sa.Column("purged_by", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("archive", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purges")),
    )
    op.create_index(op.f("ix_purges_incident_id"), "purges", ["incident_id"], unique=False)

    op.create_table(
        "timeline_tombstones",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("purge_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["purge_id"], ["purges.id"], name=op.f("fk_timeline_tombstones_purge_id_purges")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_timeline_tombstones")),
    )
    op.create_index(op.f("ix_timeline_tombstones_incident_id"), "timeline_tombstones", ["incident_id"], unique=False)
    op.create_index(op.f("ix_timeline_tombstones_purge_id"), "timeline_tombstones", ["purge_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_timeline_tombstones_purge_id"), table_name="timeline_tombstones")
    op.drop_index(op.f("ix_timeline_tombstones_incident_id"), table_name="timeline_tombstones")
    op.drop_table("timeline_tombstones")
    op.drop_index(op.f("ix_purges_incident_id"), table_name="purges")
    op.drop_table("purges")
    op.drop_index(op.f("ix_notice_drafts_status"), table_name="notice_drafts")
    op.drop_index(op.f("ix_notice_drafts_incident_id"), table_name="notice_drafts")
    op.drop_table("notice_drafts")
    op.drop_index(op.f("ix_postmortem_reviews_incident_id"), table_name="postmortem_reviews")
    op.drop_table("postmortem_reviews")
    with op.batch_alter_table("signals") as batch:
        batch.drop_index(batch.f("ix_signals_flow_run_id"))
        batch.drop_column("flow_run_id")
