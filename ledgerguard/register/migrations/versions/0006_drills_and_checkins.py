"""Drills (scenario, sandbox, drill incident, measures, score) and staff check-ins after
一级/二级 incidents.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "drills",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("emergency_type", sa.String(length=100), nullable=False),
        sa.Column("scenario_id", sa.String(length=100), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("sandbox", sa.Text(), nullable=True),
        sa.Column("incident_id", sa.String(length=32), nullable=True),
        sa.Column("expected_level", sa.Integer(), nullable=True),
        sa.Column("level", sa.Integer(), nullable=True),
        sa.Column("measures", sa.JSON(), nullable=True),
        sa.Column("score", sa.Numeric(5, 1, asdecimal=False), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("weights", sa.JSON(), nullable=True),
        sa.Column("participants", sa.JSON(), nullable=False),
        sa.Column("report_path", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name=op.f("fk_drills_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drills")),
    )
    for column in ("emergency_type", "status", "incident_id"):
        op.create_index(op.f(f"ix_drills_{column}"), "drills", [column], unique=False)
    op.create_table(
        "staff_checkins",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("person_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("via", sa.String(length=20), nullable=False),
        sa.Column("checked_in_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"],
                                name=op.f("fk_staff_checkins_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_checkins")),
        sa.UniqueConstraint("incident_id", "person_id", name=op.f("uq_staff_checkins_incident_id_person_id")),
    )
    op.create_index(op.f("ix_staff_checkins_incident_id"), "staff_checkins", ["incident_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_staff_checkins_incident_id"), table_name="staff_checkins")
    op.drop_table("staff_checkins")
    for column in ("incident_id", "status", "emergency_type"):
        op.drop_index(op.f(f"ix_drills_{column}"), table_name="drills")
    op.drop_table("drills")
