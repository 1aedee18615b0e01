"""Initial register schema: incidents, signals, findings, timeline, notifications, actions,
obligations and the flow runs that touched each incident.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Stored as UTC; the ORM's UTCDateTime decorates this type (tz-aware on SQLite too).
TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("dedup_key", sa.String(length=255), nullable=False),
        sa.Column("open_dedup_key", sa.String(length=255), nullable=True),
        sa.Column("emergency_type", sa.String(length=100), nullable=False),
        sa.Column("resource", sa.String(length=255), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=True),
        sa.Column("priority", sa.String(length=4), nullable=True),
        sa.Column("impact", sa.String(length=1), nullable=True),
        sa.Column("urgency", sa.String(length=1), nullable=True),
        sa.Column("regulatory_grade", sa.String(length=20), nullable=True),
        sa.Column("assessment", sa.JSON(), nullable=True),
        sa.Column("affected_clients", sa.JSON(), nullable=False),
        sa.Column("frozen_escalation", sa.JSON(), nullable=True),
        sa.Column("opened_at", TZ, nullable=False),
        sa.Column("acknowledged_at", TZ, nullable=True),
        sa.Column("mitigated_at", TZ, nullable=True),
        sa.Column("resolved_at", TZ, nullable=True),
        sa.Column("closed_at", TZ, nullable=True),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("timeline_count", sa.Integer(), nullable=False),
        sa.Column("timeline_head", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        sa.UniqueConstraint("open_dedup_key", name=op.f("uq_incidents_open_dedup_key")),
    )
    op.create_index(op.f("ix_incidents_dedup_key"), "incidents", ["dedup_key"], unique=False)
    op.create_index(op.f("ix_incidents_emergency_type"), "incidents", ["emergency_type"], unique=False)
    op.create_index(op.f("ix_incidents_status"), "incidents", ["status"], unique=False)

    op.create_table(
        "findings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("detector", sa.String(length=100), nullable=False),
        sa.Column("resource", sa.String(length=255), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("observed_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name=op.f("fk_findings_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings")),
    )
    op.create_index(op.f("ix_findings_incident_id"), "findings", ["incident_id"], unique=False)

    op.create_table(
        "incident_flow_runs",
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=False),
        sa.Column("flow_name", sa.String(length=255), nullable=False),
        sa.Column("linked_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name=op.f("fk_incident_flow_runs_incident_id_incidents")),
        sa.PrimaryKeyConstraint("incident_id", "flow_run_id", name=op.f("pk_incident_flow_runs")),
    )

    op.create_table(
        "notifications",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=True),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("recipient", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=False),
        sa.Column("template", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("sent_at", TZ, nullable=True),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name=op.f("fk_notifications_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_notifications_idempotency_key")),
    )
    op.create_index(op.f("ix_notifications_incident_id"), "notifications", ["incident_id"], unique=False)
    op.create_index(op.f("ix_notifications_status"), "notifications", ["status"], unique=False)

    op.create_table(
        "obligations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("obligation_id", sa.String(length=100), nullable=False),
        sa.Column("law", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("to", sa.Text(), nullable=False),
        sa.Column("deadline", TZ, nullable=False),
        sa.Column("immediate", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("met_at", TZ, nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name=op.f("fk_obligations_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_obligations")),
        sa.UniqueConstraint("incident_id", "obligation_id", name=op.f("uq_obligations_incident_id_obligation_id")),
    )
    op.create_index(op.f("ix_obligations_incident_id"), "obligations", ["incident_id"], unique=False)
    op.create_index(op.f("ix_obligations_status"), "obligations", ["status"], unique=False)

    op.create_table(
        "runbook_actions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("step_id", sa.String(length=100), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name=op.f("fk_runbook_actions_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runbook_actions")),
        sa.UniqueConstraint("incident_id", "step_id", name=op.f("uq_runbook_actions_incident_id_step_id")),
    )
    op.create_index(op.f("ix_runbook_actions_incident_id"), "runbook_actions", ["incident_id"], unique=False)

    op.create_table(
        "signals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=True),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("emergency_type", sa.String(length=100), nullable=False),
        sa.Column("resource", sa.String(length=255), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("dedup_key", sa.String(length=255), nullable=False),
        sa.Column("observed_at", TZ, nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name=op.f("fk_signals_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
    )
    op.create_index(op.f("ix_signals_dedup_key"), "signals", ["dedup_key"], unique=False)
    op.create_index(op.f("ix_signals_incident_id"), "signals", ["incident_id"], unique=False)

    op.create_table(
        "timeline_entries",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("occurred_at", TZ, nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name=op.f("fk_timeline_entries_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timeline_entries")),
        sa.UniqueConstraint("seq", name=op.f("uq_timeline_entries_seq")),
    )
    op.create_index(op.f("ix_timeline_entries_incident_id"), "timeline_entries", ["incident_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_timeline_entries_incident_id"), table_name="timeline_entries")
    op.drop_table("timeline_entries")
    op.drop_index(op.f("ix_signals_incident_id"), table_name="signals")
    op.drop_index(op.f("ix_signals_dedup_key"), table_name="signals")
    op.drop_table("signals")
    op.drop_index(op.f("ix_runbook_actions_incident_id"), table_name="runbook_actions")
    op.drop_table("runbook_actions")
    op.drop_index(op.f("ix_obligations_status"), table_name="obligations")
    op.drop_index(op.f("ix_obligations_incident_id"), table_name="obligations")
    op.drop_table("obligations")
    op.drop_index(op.f("ix_notifications_status"), table_name="notifications")
    op.drop_index(op.f("ix_notifications_incident_id"), table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("incident_flow_runs")
    op.drop_index(op.f("ix_findings_incident_id"), table_name="findings")
    op.drop_table("findings")
    op.drop_index(op.f("ix_incidents_status"), table_name="incidents")
    op.drop_index(op.f("ix_incidents_emergency_type"), table_name="incidents")
    op.drop_index(op.f("ix_incidents_dedup_key"), table_name="incidents")
    op.drop_table("incidents")
